"""Generated sets read back as one training set: an advgen output's shards, a `load_dataset` directory, a Hub config.

    ts = load_trainset(DatasetEntry(path="runs/digits_det"))                  # the WebDataset shards (PNG pixels)
    ts = load_trainset(DatasetEntry(path="runs/digits_det", use_npy=True))    # the float32 copies before rounding
    ts = load_trainset(DatasetEntry(path="me/digits-robust-features", config="d_det"))     # from the Hub

What `advgen verify` and `advgen transfer` train on. An advgen output (manifest.json present) is read from its tar
shards, each checked against the sha256 in the manifest; anything else goes through
`datasets.load_dataset(path, config, split="train")` with columns image, label and (for the figures) source_index.
`identity(entry)` is the output a set came from: the sha256 of the output's manifest.json, or of the Hub repo's
manifests/<config>.json as `advgen publish` wrote it (None for a dataset advgen did not make); a verification row
records it, and a dataset card attaches the row to the output with that manifest.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np
import torch

from advgen.errors import DatasetError
from advgen.writers.layout import MANIFEST, MARKER_DIR, RECIPE, SHARD_DIR, manifest_sha256, sha256_file
from advgen.writers.shards import decode_png

if TYPE_CHECKING:
    from advgen.recipe import DatasetEntry


@dataclass
class TrainSet:
    images: torch.Tensor                   # uint8 [N, C, H, W] (PNG pixels) or float32 [0,1] (npy copy)
    labels: torch.Tensor                   # int64 [N]
    class_names: list[str]
    source_index: Optional[torch.Tensor]   # int64 [N]: position in the source split, for the sample grid
    origin: str                            # what was read, for the report


HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def locate(entry: "DatasetEntry") -> str:
    """'advgen' (complete output dir), 'hf_dir' or 'hub'; raises DatasetError for missing/incomplete ones."""
    p = Path(entry.path)
    if p.is_dir():
        if (p / MANIFEST).is_file():
            return "advgen"
        if any((p / n).exists() for n in (MARKER_DIR, SHARD_DIR, RECIPE)):
            raise DatasetError(f"{entry.path}: no {MANIFEST}: incomplete output, re-run generate "
                               f"(advgen generate {p / RECIPE})")
        if entry.use_npy:
            raise DatasetError(f"{entry.path}: use_npy needs an advgen output dir (the .npy copies are in its shards)")
        return "hf_dir"
    local_looking = entry.path.startswith(("/", "./", "../", "~")) or not HUB_ID.fullmatch(entry.path) \
        or Path(entry.path.split("/")[0]).is_dir()
    if local_looking:
        raise DatasetError(f"{entry.path}: no such dataset directory (generate it with `advgen generate RECIPE`)")
    if entry.use_npy:
        raise DatasetError(f"{entry.path}: use_npy needs a local advgen output dir, not a Hub id")
    return "hub"


def load_trainset(entry: "DatasetEntry") -> TrainSet:
    where = locate(entry)
    if where == "advgen":
        return _load_advgen(Path(entry.path), entry.use_npy)
    return _load_hf(entry.path, entry.config, where)


def identity(entry: "DatasetEntry") -> Optional[str]:
    """The sha256 of the manifest of the output `entry` reads (see the module docstring), or None."""
    where = locate(entry)
    if where == "advgen":
        return manifest_sha256(entry.path)
    return _hub_manifest_sha256(entry.path, entry.config) if where == "hub" else None


def read_shard(tar: Path) -> dict[str, dict[str, bytes]]:
    """{sample key: {extension: bytes}} of one WebDataset shard, in the order it was written."""
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(tar) as tf:
        for m in tf.getmembers():
            key, _, ext = m.name.partition(".")
            samples.setdefault(key, {})[ext] = tf.extractfile(m).read()
    return samples


def _load_advgen(out: Path, use_npy: bool) -> TrainSet:
    """Read every sample of a complete advgen output from its WebDataset shards (checksums checked)."""
    manifest = json.loads((out / MANIFEST).read_text())
    images, labels, index = [], [], []
    for shard in manifest["shards"]:
        tar = out / shard["tar"]
        if not tar.is_file() or sha256_file(tar) != shard["tar_sha256"]:
            raise DatasetError(f"{out}: {shard['tar']} is missing or does not match {MANIFEST}; re-generate it")
        for key, s in read_shard(tar).items():
            if use_npy:
                if "npy" not in s:
                    raise DatasetError(f"{out}: shards hold no .npy copies (generated with output.npy: false); "
                                       "set use_npy: false or re-generate with output.npy=true")
                img = np.load(io.BytesIO(s["npy"]), allow_pickle=False).astype(np.float32)
            else:
                img = decode_png(s["png"])
            images.append(img)
            labels.append(int(s["cls"]))
            index.append(int(json.loads(s["json"])["source_index"]))
    if len(labels) != manifest["count"]:
        raise DatasetError(f"{out}: shards hold {len(labels)} samples, {MANIFEST} says {manifest['count']}")
    return TrainSet(images=torch.from_numpy(np.stack(images)), labels=torch.tensor(labels, dtype=torch.int64),
                    class_names=list(manifest["source"]["class_names"]),
                    source_index=torch.tensor(index, dtype=torch.int64),
                    origin=f"{out} ({'npy float32' if use_npy else 'png uint8'}, {len(labels)} samples)")


def _load_hf(path: str, config: Optional[str], where: str) -> TrainSet:
    import datasets

    from advgen.sources import to_chw

    try:
        ds = datasets.load_dataset(path, config, split="train")
    except Exception as e:  # datasets raises many types (FileNotFoundError, DatasetNotFoundError, HTTP errors)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DatasetError(f"{path}{' config ' + config if config else ''}: cannot load it "
                           f"({type(e).__name__}: {first})") from None
    for col in ("image", "label"):
        if col not in ds.column_names:
            raise DatasetError(f"{path}: no column {col!r} (columns: {', '.join(ds.column_names)}); "
                               "an advgen dataset has image, label, source_index")
    feat = ds.features["label"]
    labels = np.asarray(ds["label"], dtype=np.int64)
    names = list(feat.names) if hasattr(feat, "names") else [str(i) for i in range(int(labels.max()) + 1)]
    imgs = ds.select_columns(["image"]).with_format("numpy")[:]["image"]
    if not isinstance(imgs, np.ndarray) or imgs.dtype != np.uint8:
        raise DatasetError(f"{path}: images differ in size or mode; an advgen dataset has one shape")
    index = torch.tensor(ds["source_index"], dtype=torch.int64) if "source_index" in ds.column_names else None
    return TrainSet(images=torch.from_numpy(to_chw(imgs)), labels=torch.from_numpy(labels), class_names=names,
                    source_index=index,
                    origin=f"{path}{':' + config if config else ''} ({where}, {len(labels)} samples)")


def _hub_manifest_sha256(repo_id: str, config: Optional[str]) -> Optional[str]:
    """sha256 of manifests/<config>.json in a dataset repo `advgen publish` made; None when it has none."""
    if not config:
        return None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return sha256_file(hf_hub_download(repo_id, f"manifests/{config}.json", repo_type="dataset"))
    except (HfHubHTTPError, OSError):     # not published by advgen (no manifests/), or unreachable now
        return None
