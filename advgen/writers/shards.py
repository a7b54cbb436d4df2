"""WebDataset tar shards + per-shard parquet, written atomically, with completion markers.

Layout of an output directory:

    shards/shard-00000.tar         WebDataset: <key>.png, <key>.cls, <key>.json [, <key>.npy]
    data/train-00000.parquet       the same samples for `datasets` (Image + ClassLabel features)
    markers/shard-00000.json       written last: count, sha256 of tar and parquet, summed stats
    recipe.yaml, manifest.json, README.md

Shard i holds source positions [i*shard_size, (i+1)*shard_size): a fixed partition, so the files do
not depend on how many processes wrote them. A shard counts as finished only when its marker exists,
has the shape write_shard gives it and the checksums in it match the files (advgen.writers.layout.read_marker);
anything else is redone on the next run. The marker also records what the shard was made
from (`provenance`: checkpoint sha256, source fingerprint, advgen version), so a resume can refuse to
mix shards of two models.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from advgen.writers.layout import (DATA_DIR, MARKER_DIR, SHARD_DIR, marker_path, parquet_path, sha256_file,
                                   tar_path)

TAR_MTIME = 0           # fixed int tar header time: identical runs give identical bytes (a float adds a PAX header per member)
PNG_COMPRESS_LEVEL = 6   # fixed so bytes do not depend on library defaults


def sample_key(source_index: int) -> str:
    return f"{source_index:08d}"


def to_uint8(x) -> np.ndarray:
    """float [0,1] -> uint8 by rounding (webdataset's own encoder truncates, which biases every pixel down)."""
    return np.clip(np.rint(np.asarray(x, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def encode_png(img_chw: np.ndarray) -> bytes:
    """uint8 [C, H, W] -> PNG bytes (grey for 1 channel, RGB for 3)."""
    arr = img_chw[0] if img_chw.shape[0] == 1 else img_chw.transpose(1, 2, 0)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes -> uint8 [C, H, W]."""
    arr = np.asarray(Image.open(io.BytesIO(data)))
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def encode_npy(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(x, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


@dataclass
class Sample:
    source_index: int
    label: int                 # the new label (t for D̂rand/D̂det, y for D̂R/D̂NR)
    image: np.ndarray          # uint8 [C, H, W], what is stored
    meta: dict                 # per-sample provenance (JSON-serialisable, same keys for every sample)
    float_image: Optional[np.ndarray] = None   # float32 [C, H, W] before rounding, when npy is on


def _atomic_replace(tmp: Path, dst: Path):
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    tmp.replace(dst)


def hf_features(class_names: list[str], meta_example: dict):
    """`datasets` features for the parquet/README: image, label, then one column per provenance key."""
    from datasets import ClassLabel, Features, Image as HFImage, Value

    feats = {"image": HFImage(), "label": ClassLabel(names=list(class_names))}
    for k, v in sorted(meta_example.items()):
        if k == "label":
            continue
        if isinstance(v, bool):
            feats[k] = Value("bool")
        elif isinstance(v, int):
            feats[k] = Value("int64")
        elif isinstance(v, float):
            feats[k] = Value("float64")
        else:
            feats[k] = Value("string")
    return Features(feats)


def write_shard(out: Path, i: int, samples: list[Sample], class_names: list[str], stats: dict,
                parquet: bool = True, rank: int = 0, provenance: Optional[dict] = None) -> dict:
    """Write shard i (tar, then parquet, then the marker) and return the marker dict.

    `provenance` (what the shard was made from) goes into the marker only: the tar and parquet bytes do not
    depend on it."""
    import webdataset as wds

    for sub in (SHARD_DIR, DATA_DIR, MARKER_DIR):
        (out / sub).mkdir(parents=True, exist_ok=True)
    tar, tmp = tar_path(out, i), tar_path(out, i).with_suffix(".tar.tmp")
    with open(tmp, "wb") as f:
        writer = wds.TarWriter(f, encoder=False, mtime=TAR_MTIME, user="advgen", group="advgen")
        for s in samples:
            rec = {"__key__": sample_key(s.source_index), "png": encode_png(s.image),
                   "cls": str(s.label).encode(), "json": json.dumps(s.meta, sort_keys=True).encode()}
            if s.float_image is not None:
                rec["npy"] = encode_npy(s.float_image)
            writer.write(rec)
        writer.close()
    _atomic_replace(tmp, tar)
    marker = {"shard": i, "count": len(samples), "rank": rank, "tar": tar.relative_to(out).as_posix(),
              "tar_sha256": sha256_file(tar), "stats": stats}
    if provenance is not None:
        marker["provenance"] = provenance
    if parquet:
        marker.update(write_parquet(out, i, samples, class_names))
    mtmp = marker_path(out, i).with_suffix(".json.tmp")
    mtmp.write_text(json.dumps(marker, indent=1, sort_keys=True))
    _atomic_replace(mtmp, marker_path(out, i))
    return marker


@contextlib.contextmanager
def _datasets_bars_off():
    from datasets.utils import logging as datasets_logging

    was_on = datasets_logging.is_progress_bar_enabled()
    datasets_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            datasets_logging.enable_progress_bar()


def write_parquet(out: Path, i: int, samples: list[Sample], class_names: list[str]) -> dict:
    from datasets import Dataset

    feats = hf_features(class_names, samples[0].meta) if samples else None
    cols = {"image": [{"bytes": encode_png(s.image), "path": None} for s in samples],
            "label": [s.label for s in samples]}
    for k in feats or {}:
        if k not in cols:
            cols[k] = [s.meta[k] for s in samples]
    path, tmp = parquet_path(out, i), parquet_path(out, i).with_suffix(".parquet.tmp")
    with _datasets_bars_off():      # one bar per generation run is enough; the caller's setting comes back after
        Dataset.from_dict(cols, features=feats).to_parquet(str(tmp))
    _atomic_replace(tmp, path)
    return {"parquet": path.relative_to(out).as_posix(), "parquet_sha256": sha256_file(path)}


def clear_shard(out: Path, i: int):
    """Remove whatever an interrupted run left of shard i."""
    for p in (marker_path(out, i), tar_path(out, i), parquet_path(out, i)):
        for q in (p, p.with_suffix(p.suffix + ".tmp")):
            q.unlink(missing_ok=True)
