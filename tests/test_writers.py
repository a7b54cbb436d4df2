"""Writer round trip through the real loaders (webdataset, datasets), rounding, corruption detection."""

import io
import json
import tarfile

import numpy as np
import pytest

from advgen.writers.layout import read_marker, sha256_file, tar_path
from advgen.writers.manifest import write_hf_readme
from advgen.writers.shards import Sample, clear_shard, decode_png, encode_png, to_uint8, write_shard

CLASSES = ["zero", "one", "two"]


def make_samples(n=7, shape=(3, 5, 4), seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        f = rng.random(shape, dtype=np.float32)
        out.append(Sample(source_index=100 + i, label=i % 3, image=to_uint8(f), float_image=f,
                          meta={"source_index": 100 + i, "source_label": (i + 2) % 3, "label": i % 3,
                                "l2": float(i) / 10, "linf": 0.01 * i, "loss": 0.5, "success": i % 2 == 0}))
    return out


def test_to_uint8_rounds_not_truncates():
    x = np.array([0.0, 0.5 / 255 + 1e-6, 1.49 / 255, 1.51 / 255, 254.6 / 255, 1.0, 1.2, -0.1])
    assert to_uint8(x).tolist() == [0, 1, 1, 2, 255, 255, 255, 0]


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 6, 5)])
def test_png_round_trip_is_exact(shape):
    img = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    assert np.array_equal(decode_png(encode_png(img)), img)


def test_shard_round_trip_through_webdataset_and_datasets(tmp_path):
    import webdataset as wds
    from datasets import load_dataset

    samples = make_samples()
    marker = write_shard(tmp_path, 0, samples, CLASSES, {"l2": 2.1})
    assert marker["count"] == 7 and read_marker(tmp_path, 0) == marker
    write_hf_readme(tmp_path, "t")

    # webdataset's own reader: every sample has the same keys, pixels and labels are exact
    got = list(wds.WebDataset(str(tar_path(tmp_path, 0)), shardshuffle=False))
    assert [g["__key__"] for g in got] == [f"{100 + i:08d}" for i in range(7)]
    for g, s in zip(got, samples):
        assert {k for k in g if not k.startswith("__")} == {"png", "cls", "json", "npy"}
        assert np.array_equal(decode_png(g["png"]), s.image)
        assert int(g["cls"]) == s.label
        assert json.loads(g["json"]) == s.meta
        assert np.array_equal(np.load(io.BytesIO(g["npy"])), s.float_image)

    # datasets: parquet via the README configs, with Image + ClassLabel features
    ds = load_dataset(str(tmp_path), split="train")
    assert ds.features["label"].names == CLASSES
    assert type(ds.features["image"]).__name__ == "Image"
    for row, s in zip(ds, samples):
        assert np.array_equal(np.asarray(row["image"]).transpose(2, 0, 1), s.image)
        assert row["label"] == s.label and row["source_index"] == s.source_index
        assert row["success"] == s.meta["success"]

    # datasets' webdataset builder on the tar shards
    w = load_dataset("webdataset", data_files=str(tmp_path / "shards" / "*.tar"), split="train")
    assert w["cls"] == [s.label for s in samples]
    assert np.array_equal(np.asarray(w[3]["png"]).transpose(2, 0, 1), samples[3].image)


def test_tar_bytes_are_reproducible(tmp_path):
    write_shard(tmp_path / "a", 0, make_samples(), CLASSES, {})
    write_shard(tmp_path / "b", 0, make_samples(), CLASSES, {})
    assert tar_path(tmp_path / "a", 0).read_bytes() == tar_path(tmp_path / "b", 0).read_bytes()
    with tarfile.open(tar_path(tmp_path / "a", 0)) as tf:
        assert {m.mtime for m in tf.getmembers()} == {0}


def test_corrupt_or_partial_shards_are_not_complete(tmp_path):
    write_shard(tmp_path, 0, make_samples(), CLASSES, {})
    tp = tar_path(tmp_path, 0)
    data = bytearray(tp.read_bytes())
    data[600] ^= 0xFF
    tp.write_bytes(bytes(data))
    assert read_marker(tmp_path, 0) is None            # checksum mismatch: redo this shard
    write_shard(tmp_path, 1, make_samples(), CLASSES, {})
    (tmp_path / "data" / "train-00001.parquet").unlink()
    assert read_marker(tmp_path, 1) is None
    clear_shard(tmp_path, 1)
    assert not [p for d in ("shards", "data", "markers") for p in (tmp_path / d).glob("*00001*")]


@pytest.mark.parametrize("case", ["list", "string", "count_text", "other_shard", "tar_outside", "no_sha", "stats_list",
                                  "not_utf8"])
def test_markers_of_the_wrong_shape_are_not_finished(tmp_path, case):
    """A marker is "finished" only with the shape write_shard gives it; anything else (valid JSON included) is redone,
    and a marker cannot point at a file outside its shard."""
    marker = write_shard(tmp_path, 0, make_samples(), CLASSES, {"l2": 1.0})
    assert read_marker(tmp_path, 0) == marker
    outside = tmp_path / "elsewhere.tar"
    outside.write_bytes(b"not a shard")
    bad = {"list": [1, 2], "string": "done", "count_text": dict(marker, count="7"),
           "other_shard": dict(marker, shard=3),
           "tar_outside": dict(marker, tar="elsewhere.tar", tar_sha256=sha256_file(outside)),
           "no_sha": {k: v for k, v in marker.items() if k != "parquet_sha256"},
           "stats_list": dict(marker, stats=[1.0])}
    mp = tmp_path / "markers" / "shard-00000.json"
    mp.write_bytes(b"\xff\xfe{" if case == "not_utf8" else json.dumps(bad[case]).encode())
    assert read_marker(tmp_path, 0) is None
