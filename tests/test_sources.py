"""Sources: digits' fixed split, a local HF dataset dir, a hub id through the loopback Hub, ImageFolder
with class grouping."""

import numpy as np
import pytest
import torch
from PIL import Image

from advgen.recipe import RecipeError, SourceConfig
from advgen.sources import digits_split, load_source
from tests.conftest import CIFAR


def test_digits_fixed_split():
    x_tr, y_tr, i_tr, x_te, y_te, i_te = digits_split()
    assert x_tr.shape == (1257, 1, 8, 8) and x_te.shape == (540, 1, 8, 8) and x_tr.dtype == np.uint8
    assert not set(i_tr) & set(i_te) and x_tr.max() == 255
    src = load_source(SourceConfig(kind="digits"), "train")
    assert torch.equal(src.labels, torch.from_numpy(y_tr.astype(np.int64)))
    assert src.num_classes == 10 and src.shape == (1, 8, 8)
    # indices are rows of sklearn's load_digits(), so a sample traces back without advgen's split
    from sklearn.datasets import load_digits

    raw = load_digits()
    assert torch.equal(src.indices, torch.from_numpy(i_tr.astype(np.int64)))
    assert np.array_equal(raw.target[src.indices.numpy()], y_tr)
    assert np.array_equal(np.rint(raw.images[src.indices.numpy()] * 255 / 16).astype(np.uint8)[:, None], x_tr)
    with pytest.raises(RecipeError, match="digits has splits"):
        load_source(SourceConfig(kind="digits"), "validation")


@pytest.mark.skipif(not CIFAR.is_dir(), reason="offline CIFAR-10 copy not present")
def test_local_hf_dataset_with_limit():
    src = load_source(SourceConfig(kind="hf", path=str(CIFAR), limit=50), "test")
    from datasets import load_dataset

    ref = load_dataset(str(CIFAR), split="test").select(range(50))
    assert len(src) == 50 and src.shape == (3, 32, 32)
    assert src.class_names[:2] == ["airplane", "automobile"]
    assert np.array_equal(src.images(torch.tensor([7]))[0].numpy().transpose(1, 2, 0), np.asarray(ref[7]["img"]))
    assert src.labels.tolist() == ref["label"]
    with pytest.raises(RecipeError, match="column 'image' not in"):
        load_source(SourceConfig(kind="hf", path=str(CIFAR), image_column="image", limit=5), "test")


def test_hub_id_through_loopback_hub(hub_server, hub_api, hub_repo_id, tmp_path):
    """The real download path: load_dataset(<hub id>) against the Hub-compatible server."""
    from datasets import ClassLabel, Dataset, Features, Image as HFImage

    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (12, 6, 6, 3), dtype=np.uint8)
    feats = Features({"img": HFImage(), "label": ClassLabel(names=["a", "b", "c"])})
    (tmp_path / "data").mkdir()
    Dataset.from_dict({"img": [Image.fromarray(i) for i in imgs], "label": [i % 3 for i in range(12)]},
                      features=feats).to_parquet(str(tmp_path / "data" / "train-00000.parquet"))
    hub_api.create_repo(hub_repo_id, repo_type="dataset")
    hub_api.upload_folder(folder_path=str(tmp_path), repo_id=hub_repo_id, repo_type="dataset")
    src = load_source(SourceConfig(kind="hf", path=hub_repo_id), "train")
    assert len(src) == 12 and src.class_names == ["a", "b", "c"]
    assert np.array_equal(src.all_images().numpy().transpose(0, 2, 3, 1), imgs)


def test_imagefolder_with_class_groups(tmp_path):
    rng = np.random.default_rng(0)
    for c in range(6):
        d = tmp_path / "train" / f"class{c:02d}"
        d.mkdir(parents=True)
        for k in range(3):
            Image.fromarray(rng.integers(0, 256, (10, 14, 3), dtype=np.uint8)).save(d / f"{k}.png")
    cfg = SourceConfig(kind="imagefolder", path=str(tmp_path), image_size=8,
                       class_groups={"low": [[0, 1]], "high": [[4, 5]]})
    src = load_source(cfg, "train")
    assert src.class_names == ["low", "high"] and len(src) == 12          # classes 2 and 3 dropped
    assert src.labels.tolist() == [0] * 6 + [1] * 6
    assert src.indices.tolist() == list(range(6)) + list(range(12, 18))   # positions in the full folder
    assert src.images(torch.arange(3)).shape == (3, 3, 8, 8)
    bad = SourceConfig(kind="imagefolder", path=str(tmp_path), class_groups={"x": [[4, 9]]})
    with pytest.raises(RecipeError, match="goes past the 6 classes"):
        load_source(bad, "train")


def test_fingerprint_follows_what_a_generation_reads():
    """A resume compares it with the shards' markers: equal for the same images, different for any other subset."""
    a, b = (load_source(SourceConfig(kind="digits", limit=100)) for _ in range(2))
    assert a.fingerprint() == b.fingerprint() and len(a.fingerprint()) == 64
    assert load_source(SourceConfig(kind="digits", limit=101)).fingerprint() != a.fingerprint()
    assert load_source(SourceConfig(kind="synthetic", num_samples=100, shape=[1, 8, 8])).fingerprint() != a.fingerprint()
    assert a.staged("cpu").fingerprint() == a.fingerprint()
