"""Labelled uint8 images with their source index, from four kinds of source.

    src = load_source(SourceConfig(kind="digits"), split="train")
    x = src.images(torch.arange(8))   # uint8 [8, 1, 8, 8]
    src.labels[:8], src.indices[:8], src.class_names

Kinds:
- hf:          any Hugging Face dataset by hub id (e.g. "uoft-cs/cifar10") or local directory, through
               `datasets.load_dataset`; image and label columns are configurable.
- digits:      scikit-learn's 8x8 digits (ships with scikit-learn, no download). Pixels 0..16 are
               scaled to 0..255 by rounding. Fixed split: stratified 70/30 with
               `train_test_split(random_state=0)` -> 1,257 train / 540 test images.
- imagefolder: torchvision ImageFolder, optionally resized, with an optional grouping of class
               indices into super-classes (Restricted ImageNet's nine ranges, PAPER_NOTES).
- synthetic:   seeded class-dependent blobs for tests of the machinery (not a paper dataset).

`indices` are positions in the chosen split (before `limit`) — for digits, rows of
`sklearn.datasets.load_digits()` — so every generated sample points back at the image it was made from.
`fingerprint()` is a sha256 of what a generation reads (images, labels, indices, class names), so a resumed run can
tell that its source changed (~0.3 s for CIFAR-10's 50k images).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from advgen.recipe import DIGITS_SPLIT_SEED, DIGITS_TEST_FRACTION, RecipeError, SourceConfig


@dataclass
class Source:
    labels: torch.Tensor            # int64 [N]
    indices: torch.Tensor           # int64 [N], position in the original split (digits: load_digits() row)
    class_names: list[str]
    shape: tuple[int, int, int]     # C, H, W
    _images: Optional[torch.Tensor] = None                  # uint8 [N, C, H, W] when held in memory
    _loader: Optional[Callable[[np.ndarray], torch.Tensor]] = None  # lazy: positions -> uint8 batch
    _files: Optional[Callable[[], list]] = None     # lazy sources: (name, size, mtime) of each file, for fingerprint
    _fingerprint: Optional[str] = None              # cached by fingerprint(); kept by staged()

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def images(self, positions) -> torch.Tensor:
        """uint8 [B, C, H, W] for positions 0..N-1 of this source (not source indices), on the staged device."""
        if self._images is not None:
            if torch.is_tensor(positions):
                positions = positions.to(self._images.device)
            return self._images[positions]
        return self._loader(np.asarray(positions))

    def staged(self, device) -> "Source":
        """The same source with every image held on `device` (uint8: CIFAR-10's 50k images are 150 MB)."""
        imgs = self._images if self._images is not None else self.all_images()
        return dataclasses.replace(self, _images=imgs.to(device), _loader=None)

    def all_images(self) -> torch.Tensor:
        return self.images(torch.arange(len(self)))

    def fingerprint(self) -> str:
        """sha256 of the uint8 images, labels, indices, class names and shape (files' names, sizes and mtimes for a
        lazy source, whose images are not decoded for this); computed once."""
        if self._fingerprint is None:
            h = hashlib.sha256(json.dumps({"class_names": self.class_names, "shape": list(self.shape)}).encode())
            for t in (self.labels, self.indices):
                h.update(np.ascontiguousarray(t.cpu().numpy(), dtype=np.int64))
            if self._images is not None:
                h.update(np.ascontiguousarray(self._images.cpu().numpy()))
            else:
                h.update(json.dumps(self._files() if self._files else None).encode())
            self._fingerprint = h.hexdigest()
        return self._fingerprint


def load_source(cfg: SourceConfig, split: Optional[str] = None) -> Source:
    split = split or cfg.split
    loader = {"hf": _load_hf, "digits": _load_digits, "imagefolder": _load_imagefolder,
              "synthetic": _load_synthetic}[cfg.kind]
    limit = split_limit(cfg, split)
    src = loader(dataclasses.replace(cfg, limit=limit), split)
    if limit is not None and limit < len(src):
        n = limit
        files = src._files
        src = Source(labels=src.labels[:n], indices=src.indices[:n], class_names=src.class_names,
                     shape=src.shape, _images=None if src._images is None else src._images[:n], _loader=src._loader,
                     _files=None if files is None else (lambda: files()[:n]))
    return src


def split_limit(cfg: SourceConfig, split: str) -> Optional[int]:
    """How many leading samples of `split` are kept: `test_limit` for the test split when set, else `limit`."""
    if split == cfg.test_split and cfg.test_limit is not None:
        return cfg.test_limit
    return cfg.limit


def to_chw(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 3:           # N, H, W -> grey
        arr = arr[:, None]
    elif arr.ndim == 4 and arr.shape[-1] in (1, 3, 4):
        arr = arr.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(arr[:, :3])


def open_hf_split(cfg: SourceConfig, split: str):
    """The `datasets` split a source names (nothing decoded), or a one-line RecipeError saying what to fix."""
    import os

    import datasets

    try:
        return datasets.load_dataset(cfg.path, cfg.name, split=split)
    except (OSError, ValueError) as e:       # OSError: not found, no network, HTTP errors of the Hub client
        detail = " ".join(str(e).split())[:300]
        if not os.path.exists(cfg.path):       # a mistyped relative directory is taken for a Hub id: say both
            raise RecipeError(f"source.path: {cfg.path!r} is not a local directory and could not be loaded from "
                              f"the Hub ({type(e).__name__}: {detail}); fix the path (relative paths are taken from "
                              "the working directory, then the recipe's) or the hub id / network") from None
        raise RecipeError(f"source.path: cannot load {cfg.path!r} split {split!r}: {detail}") from None


def _load_hf(cfg: SourceConfig, split: str) -> Source:
    ds = open_hf_split(cfg, split)
    for col in (cfg.image_column, cfg.label_column):
        if col not in ds.column_names:
            raise RecipeError(f"source: column {col!r} not in {cfg.path!r} (columns: {', '.join(ds.column_names)}); "
                              "set source.image_column / source.label_column")
    if cfg.limit is not None:
        ds = ds.select(range(min(cfg.limit, len(ds))))
    feat = ds.features[cfg.label_column]
    labels = np.asarray(ds[cfg.label_column], dtype=np.int64)
    names = list(feat.names) if hasattr(feat, "names") else [str(i) for i in range(int(labels.max()) + 1)]
    # Decode in chunks: numpy formatting of an Image column decodes to HWC uint8 arrays.
    images = []
    fmt = ds.select_columns([cfg.image_column]).with_format("numpy")
    for start in range(0, len(ds), 5000):
        batch = fmt[start:start + 5000][cfg.image_column]
        if isinstance(batch, np.ndarray) and batch.dtype != object:
            images.append(to_chw(batch))
        else:  # images of different sizes or modes come back as an object array
            raise RecipeError(f"source: images in {cfg.path!r} differ in size or mode; resize them first "
                              "or use kind 'imagefolder' with image_size")
    arr = np.concatenate(images) if images else np.zeros((0, 3, 1, 1), np.uint8)
    return Source(labels=torch.from_numpy(labels), indices=torch.arange(len(labels)), class_names=names,
                  shape=tuple(arr.shape[1:]), _images=torch.from_numpy(arr))


def digits_split():
    """The fixed digits split: (x_train, y_train, idx_train, x_test, y_test, idx_test); x uint8 [N,1,8,8]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    idx = np.arange(len(x))
    i_tr, i_te = train_test_split(idx, test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SPLIT_SEED,
                                  stratify=d.target)
    return x[i_tr], d.target[i_tr], i_tr, x[i_te], d.target[i_te], i_te


def _load_digits(cfg: SourceConfig, split: str) -> Source:
    x_tr, y_tr, i_tr, x_te, y_te, i_te = digits_split()
    if split not in ("train", "test"):
        raise RecipeError(f"source.split: digits has splits 'train' and 'test', got {split!r}")
    x, y, i = (x_tr, y_tr, i_tr) if split == "train" else (x_te, y_te, i_te)
    # indices: the row of sklearn.datasets.load_digits(), so a sample traces back without advgen's split
    return Source(labels=torch.from_numpy(y.astype(np.int64)), indices=torch.from_numpy(i.astype(np.int64)),
                  class_names=[str(c) for c in range(10)], shape=(1, 8, 8), _images=torch.from_numpy(x))


def _load_imagefolder(cfg: SourceConfig, split: str) -> Source:
    import os

    from PIL import Image
    from torchvision.datasets import ImageFolder

    root = os.path.join(cfg.path, split) if os.path.isdir(os.path.join(cfg.path, split)) else cfg.path
    folder = ImageFolder(root)
    targets = np.asarray(folder.targets, dtype=np.int64)
    positions = np.arange(len(targets))
    names = list(folder.classes)
    if cfg.class_groups:
        group_of = np.full(len(folder.classes), -1, dtype=np.int64)
        for g, ranges in enumerate(cfg.class_groups.values()):
            for lo, hi in ranges:
                if hi >= len(folder.classes):
                    raise RecipeError(f"source.class_groups: range {[lo, hi]} goes past the "
                                      f"{len(folder.classes)} classes in {root!r}")
                group_of[lo:hi + 1] = g
        keep = group_of[targets] >= 0
        positions, targets = positions[keep], group_of[targets[keep]]
        names = list(cfg.class_groups)
    size = cfg.image_size

    def load(pos: np.ndarray) -> torch.Tensor:
        out = []
        for p in pos:
            img = Image.open(folder.samples[positions[p]][0]).convert("RGB")
            if size is not None:
                w, h = img.size
                s = size / min(w, h)
                img = img.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
                w, h = img.size
                left, top = (w - size) // 2, (h - size) // 2
                img = img.crop((left, top, left + size, top + size))
            out.append(torch.from_numpy(np.asarray(img).transpose(2, 0, 1).copy()))
        shapes = {t.shape for t in out}
        if len(shapes) > 1:
            raise RecipeError(f"source: images in {root!r} differ in size; set source.image_size")
        return torch.stack(out) if out else torch.zeros((0, 3, 1, 1), dtype=torch.uint8)

    def files() -> list:
        """(path relative to root, size, mtime) of each kept image, in position order."""
        out = []
        for p in positions:
            path = folder.samples[p][0]
            st = os.stat(path)
            out.append([os.path.relpath(path, root), st.st_size, st.st_mtime_ns])
        return out

    shape = tuple(load(np.array([0]))[0].shape) if len(targets) else (3, 1, 1)
    return Source(labels=torch.from_numpy(targets), indices=torch.from_numpy(positions), class_names=names,
                  shape=shape, _loader=load, _files=files)


def _load_synthetic(cfg: SourceConfig, split: str) -> Source:
    """Each class has a fixed random template; samples are template + noise, clipped to uint8."""
    c, h, w = cfg.shape
    g = torch.Generator().manual_seed(1234)
    templates = torch.rand(cfg.num_classes, c, h, w, generator=g)
    g.manual_seed({"train": 1, "test": 2}.get(split, 3))
    y = torch.randint(cfg.num_classes, (cfg.num_samples,), generator=g)
    x = (templates[y] * 0.6 + 0.4 * torch.rand(cfg.num_samples, c, h, w, generator=g)) * 255
    return Source(labels=y, indices=torch.arange(cfg.num_samples), shape=(c, h, w),
                  class_names=[f"class{i}" for i in range(cfg.num_classes)],
                  _images=x.round().clamp(0, 255).to(torch.uint8))
