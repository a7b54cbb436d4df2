"""Verify generated datasets: train a fresh model on each, evaluate it on the ORIGINAL test set.

    advgen verify recipes/verify_digits_det.yaml [KEY=VALUE ...]      # e.g. seeds=[0,1,2] report_dir=/tmp/r
    accelerate launch advgen/verify.py recipes/fast/verify.yaml  # N processes share the (dataset, seed) runs

For every entry of the recipe's `datasets` (a generated set, or a baseline: standard / adversarial
training on the original training split D) and every seed: build a fresh model, train it with
standard training (advgen.models.train.fit, or the airbench trainer), measure standard accuracy and
robust accuracy under untargeted PGD at `eval.eps` on the source's test split. The mean ± std over
seeds is compared with the entry's `expected` ranges and the paper's numbers (Table 1, Figure 2b).

Writes to `report_dir` (default reports/<name>): report.json (one `results` entry per dataset with
per-seed values; a copy also goes to OUT/verify/<name>.json of each advgen output verified, where
`advgen card` / `advgen publish` find it), report.md (the table), samples_<dataset>.png (originals beside generated images,
as Figure 2a), accuracy.png (standard and robust accuracy per training set, as Figure 2b) and, with
`eval.extra_eps`, robustness.png (accuracy against the attack radius).

Exit status: 0 all results inside their expected ranges and all `orderings` hold; 1 otherwise (each
failure printed); 2 the recipe or a dataset cannot be used (one line on stderr).

A generated set is read from
- an advgen output dir (manifest.json present): the WebDataset shards, PNG pixels or, with
  `use_npy: true`, the lossless float32 copy stored before uint8 rounding;
- any other directory or a Hub id (+ `config`): `datasets.load_dataset(path, config, split="train")`
  with columns image, label and (for the sample grid) source_index.

Cost on 2 shared CPU cores (OMP_NUM_THREADS=1): one digits model (small CNN, 30 epochs, four PGD
evaluations) 15-60 s, an adversarially trained one 2-3 min; recipes/verify_digits_study.yaml (60
models) 30-50 min. A CIFAR ResNet-50 for 150 epochs is hours on one GPU (recipes/fast/verify.yaml: seconds).
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):   # run as a script (accelerate launch advgen/verify.py): make `advgen` importable
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import dataclasses
import io
import json
import re
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import torch

from advgen.recipe import (AirbenchConfig, AttackConfig, AugmentConfig, ModelConfig, RecipeError, SourceConfig,
                           TrainConfig, _check, load_recipe, non_default, to_dict)
from advgen.report import markdown_table, pct

# ----------------------------------------------------------------------------------------------
# Recipe
# ----------------------------------------------------------------------------------------------


def _check_range(r, where: str):
    _check(r is None or (len(r) == 2 and 0.0 <= r[0] <= r[1] <= 1.0), where,
           f"must be [low, high] with 0 <= low <= high <= 1 (accuracy as a fraction), got {r!r}")


@dataclass(frozen=True)
class ExpectedConfig:
    """Accepted ranges of the mean over seeds; null = not checked."""

    std_acc: Optional[list[float]] = None      # [low, high], fraction of the test set
    robust_acc: Optional[list[float]] = None   # [low, high] at eval.eps

    def validate(self, where: str):
        _check_range(self.std_acc, f"{where}.std_acc")
        _check_range(self.robust_acc, f"{where}.robust_acc")


@dataclass(frozen=True)
class PaperConfig:
    """The paper's number for this training set (PAPER_NOTES), shown beside ours; null = none."""

    std_acc: Optional[float] = None
    robust_acc: Optional[float] = None
    ref: str = ""                              # where it comes from, e.g. "Table 1", "Figure 2b (read off)"

    def validate(self, where: str):
        for k in ("std_acc", "robust_acc"):
            v = getattr(self, k)
            _check(v is None or 0.0 <= v <= 1.0, f"{where}.{k}", f"must be a fraction in [0, 1], got {v!r}")


@dataclass(frozen=True)
class DatasetEntry:
    """One training set of the comparison (one group of bars in Figure 2b)."""

    kind: Literal["generated", "baseline_std", "baseline_adv"] = "generated"
    path: str = ""                 # generated: advgen output dir, a load_dataset dir, or a Hub id
    config: Optional[str] = None   # Hub config name (one config per generated set)
    use_npy: bool = False          # advgen output dir: train on the float32 copy instead of the PNGs
    title: str = ""                # label in the figures (default: the entry's key)
    # Per-set training changes (the paper's lr and augmentation differ per set); null = recipe's `train`.
    lr: Optional[float] = None
    epochs: Optional[int] = None
    augment: Optional[AugmentConfig] = None
    # PGD inside the training loop: required for baseline_adv; on a generated set it is a robust-feature leakage
    # probe (a robustly trained model cannot use the non-robust features that label D̂det / D̂rand, so its
    # accuracy on the original test set is what robust features leaking through the perturbation carry)
    adversarial: Optional[AttackConfig] = None
    seeds: Optional[list[int]] = None            # this entry's seeds (null = the recipe's)
    expected: ExpectedConfig = field(default_factory=ExpectedConfig)
    paper: PaperConfig = field(default_factory=PaperConfig)

    def validate(self, where: str):
        if self.kind == "generated":
            _check(bool(self.path), f"{where}.path", "a generated set needs a path (output dir, dataset dir or hub id)")
        else:
            _check(not self.path and not self.use_npy, where,
                   f"kind {self.kind!r} trains on the recipe's source split; remove path / use_npy")
        _check(self.kind != "baseline_adv" or self.adversarial is not None, f"{where}.adversarial",
               "kind 'baseline_adv' needs the attack of its adversarial training")
        _check(self.kind != "baseline_std" or self.adversarial is None, f"{where}.adversarial",
               "kind 'baseline_std' is standard training; use kind 'baseline_adv' for adversarial training on D")
        _check(self.seeds is None or (bool(self.seeds) and len(set(self.seeds)) == len(self.seeds)),
               f"{where}.seeds", f"must be a non-empty list of distinct integers, got {self.seeds!r}")
        _check(self.lr is None or self.lr > 0, f"{where}.lr", f"must be > 0, got {self.lr!r}")
        _check(self.epochs is None or self.epochs >= 1, f"{where}.epochs", f"must be >= 1, got {self.epochs!r}")


@dataclass(frozen=True)
class EvalConfig:
    """Robust accuracy: untargeted PGD (no random start) on the original test split."""

    eps: float = 0.25                          # radius in [0,1] pixel space (paper, CIFAR: l2 0.25)
    norm: Literal["l2", "linf"] = "l2"
    steps: int = 20                            # PGD steps (the authors used 7; more is stricter)
    step_size: Optional[float] = None          # null = 2.5 * eps / steps
    batch_size: int = 500                      # test images per evaluation batch
    extra_eps: list[float] = field(default_factory=list)   # also report robust accuracy at these radii (not checked)
    # also report accuracy against the shifted labels (y + 1) mod C of the test set (the paper's Appendix D check
    # of D̂det: a model that learned the robust features of y under label y + 1 scores there)
    shifted_labels: bool = False

    def validate(self, where: str):
        _check(self.eps > 0, f"{where}.eps", f"must be > 0, got {self.eps!r}")
        _check(all(e > 0 for e in self.extra_eps), f"{where}.extra_eps", f"must be > 0, got {self.extra_eps!r}")
        _check(self.steps >= 1, f"{where}.steps", f"must be >= 1, got {self.steps!r}")
        _check(self.step_size is None or self.step_size > 0, f"{where}.step_size",
               f"must be > 0, got {self.step_size!r}")


_NUM = r"\d+(?:\.\d*)?|\.\d+"
_TERM = (rf"(?:(?P<k{{i}}>{_NUM})\s*\*\s*)?(?P<name{{i}}>[A-Za-z0-9_.-]+?)\.(?P<metric{{i}}>std_acc|robust_acc)"
         rf"(?:\s*(?P<sign{{i}}>[+-])\s*(?P<c{{i}}>{_NUM}))?|(?P<const{{i}}>{_NUM})")
ORDERING = re.compile(rf"(?:{_TERM.format(i=0)})\s*(?P<op>>=|<=|>|<)\s*(?:{_TERM.format(i=1)})")
CLAIM_HELP = ("expected 'NAME.METRIC > NAME.METRIC' with METRIC std_acc or robust_acc; either side may be scaled and "
              "shifted ('0.6 * A.std_acc', 'A.robust_acc + 0.10') or a number, and the operator one of > < >= <=")


@dataclass(frozen=True)
class ClaimTerm:
    """k * NAME.METRIC + c, or the constant c (name None)."""

    name: Optional[str]
    metric: Optional[str]
    k: float = 1.0
    c: float = 0.0

    def value(self, by_name: dict) -> float:
        return self.c if self.name is None else self.k * by_name[self.name][self.metric] + self.c

    def spread(self, by_name: dict) -> float:
        return 0.0 if self.name is None else abs(self.k) * by_name[self.name][self.metric + "_std"]


def parse_claim(text: str) -> Optional[tuple[ClaimTerm, str, ClaimTerm]]:
    """'d_robust.robust_acc > baseline_std.robust_acc + 0.10' -> (left, '>', right); None if it does not parse."""
    m = ORDERING.fullmatch(text.strip())
    if m is None:
        return None

    def term(i):
        g = {k: m.group(f"{k}{i}") for k in ("k", "name", "metric", "sign", "c", "const")}
        if g["const"] is not None:
            return ClaimTerm(None, None, 0.0, float(g["const"]))
        c = float(g["c"]) * (-1 if g["sign"] == "-" else 1) if g["c"] is not None else 0.0
        return ClaimTerm(g["name"], g["metric"], float(g["k"]) if g["k"] else 1.0, c)

    return term(0), m.group("op"), term(1)


def claim_names(text: str) -> list[str]:
    left, _, right = parse_claim(text)
    return [t.name for t in (left, right) if t.name is not None]


@dataclass(frozen=True)
class VerifyRecipe:
    """`advgen verify RECIPE`: the training sets to compare and how each model is trained and measured."""

    name: str
    source: SourceConfig                       # the ORIGINAL data: test_split to evaluate, split for baselines
    datasets: dict[str, DatasetEntry]          # key = name in the report, in recipe order
    model: ModelConfig = field(default_factory=ModelConfig)   # mean/std null: stats of source.split
    train: TrainConfig = field(default_factory=TrainConfig)   # eval_eps/eval_steps unused: see `eval`
    trainer: Literal["fit", "airbench"] = "fit"               # fit: advgen.models.train.fit
    airbench: AirbenchConfig = field(default_factory=AirbenchConfig)   # trainer "airbench" only
    eval: EvalConfig = field(default_factory=EvalConfig)
    seeds: list[int] = field(default_factory=lambda: [0])     # one fresh model per seed and dataset
    report_dir: Optional[str] = None           # null = reports/<name>
    samples: int = 8                           # image pairs in each samples_<dataset>.png
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Reuse finished (dataset, seed) models from report_dir/runs/ whose inputs are unchanged, so a killed run
    # resumes at the model it was training; false = train every model again.
    resume: bool = True
    # Generated sets drawn beside their originals for the same source images (Figure 2a), e.g.
    # [d_robust, d_nonrobust]; written as figure2a.png.
    grid: list[str] = field(default_factory=list)
    # Claims between training sets, checked on the means: "A.metric > B.metric", metric std_acc or
    # robust_acc, e.g. "d_robust.robust_acc > d_nonrobust.robust_acc" (Figure 2b's ordering).
    orderings: list[str] = field(default_factory=list)

    def validate(self, where: str = ""):
        for i, text in enumerate(self.orderings):
            _check(parse_claim(text) is not None, f"orderings[{i}]", f"{CLAIM_HELP}, got {text!r}")
            for name in claim_names(text):
                _check(name in self.datasets, f"orderings[{i}]",
                       f"{name!r} is not a dataset of this recipe ({', '.join(self.datasets)})")
        _check(bool(self.datasets), "datasets", "list at least one training set")
        _check(bool(self.seeds) and len(set(self.seeds)) == len(self.seeds), "seeds",
               f"must be a non-empty list of distinct integers, got {self.seeds!r}")
        _check(self.train.adversarial is None, "train.adversarial",
               "verification trains with standard training; put adversarial training in a 'baseline_adv' entry")
        _check(self.samples >= 1, "samples", f"must be >= 1, got {self.samples!r}")
        _check(self.trainer != "airbench" or self.model.arch == "airbench", "trainer",
               f"trainer 'airbench' trains model.arch 'airbench' only, got {self.model.arch!r}")
        for name in self.grid:
            _check(name in self.datasets and self.datasets[name].kind == "generated", "grid",
                   f"{name!r} is not a generated set of this recipe ({', '.join(self.datasets)})")
        for key in self.datasets:
            _check(re.fullmatch(r"[A-Za-z0-9_.-]+", key) is not None, f"datasets.{key}",
                   "names may use letters, digits, '_', '.', '-' (they become file names)")

    @property
    def out_dir(self) -> Path:
        return Path(self.report_dir or f"reports/{self.name}")


def _resolve_entry_paths(recipe: VerifyRecipe, base: Path) -> VerifyRecipe:
    """Like recipe.load_recipe for top-level paths: ./x or ../x missing from the cwd but next to the recipe."""
    entries = {}
    for k, e in recipe.datasets.items():
        p = e.path
        if p.startswith(("./", "../")) and not Path(p).exists() and (base / p).exists():
            e = dataclasses.replace(e, path=os.path.normpath(str(base / p)))
        entries[k] = e
    return dataclasses.replace(recipe, datasets=entries)


def load_verify_recipe(path, overrides=()) -> VerifyRecipe:
    recipe = load_recipe(path, VerifyRecipe, overrides)
    return _resolve_entry_paths(recipe, Path(path).parent)


def select(recipe: VerifyRecipe, names: list[str]) -> VerifyRecipe:
    """The recipe restricted to `names` (recipe order kept); orderings about other sets are dropped."""
    unknown = [n for n in names if n not in recipe.datasets]
    if unknown:
        raise RecipeError(f"--only: {unknown[0]!r} is not a dataset of {recipe.name} ({', '.join(recipe.datasets)})")
    keep = {k: e for k, e in recipe.datasets.items() if k in names}
    orderings = [o for o in recipe.orderings
                 if all(n in keep for n in claim_names(o))]
    return dataclasses.replace(recipe, datasets=keep, orderings=orderings, grid=[n for n in recipe.grid if n in keep])


# ----------------------------------------------------------------------------------------------
# Training sets
# ----------------------------------------------------------------------------------------------

class DatasetError(ValueError):
    """A training set that cannot be read; the message is one line naming the path and the fix."""


@dataclass
class TrainSet:
    images: torch.Tensor                   # uint8 [N, C, H, W] (PNG pixels) or float32 [0,1] (npy copy)
    labels: torch.Tensor                   # int64 [N]
    class_names: list[str]
    source_index: Optional[torch.Tensor]   # int64 [N]: position in the source split, for the sample grid
    origin: str                            # what was read, for the report


HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def locate(entry: DatasetEntry) -> str:
    """'advgen' (complete output dir), 'hf_dir' or 'hub'; raises DatasetError for missing/incomplete ones."""
    p = Path(entry.path)
    if p.is_dir():
        if (p / "manifest.json").is_file():
            return "advgen"
        if any((p / n).exists() for n in ("markers", "shards", "recipe.yaml")):
            raise DatasetError(f"{entry.path}: no manifest.json: incomplete output, re-run generate "
                               f"(advgen generate {p / 'recipe.yaml'})")
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


def load_trainset(entry: DatasetEntry) -> TrainSet:
    where = locate(entry)
    if where == "advgen":
        return _load_advgen(Path(entry.path), entry.use_npy)
    return _load_hf(entry.path, entry.config, where)


def _load_advgen(out: Path, use_npy: bool) -> TrainSet:
    """Read every sample of a complete advgen output from its WebDataset shards (checksums checked)."""
    from advgen.models.checkpoint import sha256_file
    from advgen.writers.shards import decode_png

    manifest = json.loads((out / "manifest.json").read_text())
    images, labels, index = [], [], []
    for shard in manifest["shards"]:
        tar = out / shard["tar"]
        if not tar.is_file() or sha256_file(tar) != shard["tar_sha256"]:
            raise DatasetError(f"{out}: {shard['tar']} is missing or does not match manifest.json; re-generate it")
        samples: dict[str, dict] = {}
        with tarfile.open(tar) as tf:
            for m in tf.getmembers():
                key, _, ext = m.name.partition(".")
                samples.setdefault(key, {})[ext] = tf.extractfile(m).read()
        for key, s in samples.items():
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
        raise DatasetError(f"{out}: shards hold {len(labels)} samples, manifest.json says {manifest['count']}")
    return TrainSet(images=torch.from_numpy(np.stack(images)), labels=torch.tensor(labels, dtype=torch.int64),
                    class_names=list(manifest["source"]["class_names"]),
                    source_index=torch.tensor(index, dtype=torch.int64),
                    origin=f"{out} ({'npy float32' if use_npy else 'png uint8'}, {len(labels)} samples)")


def _load_hf(path: str, config: Optional[str], where: str) -> TrainSet:
    import datasets

    from advgen.sources import _to_chw

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
    return TrainSet(images=torch.from_numpy(_to_chw(imgs)), labels=torch.from_numpy(labels), class_names=names,
                    source_index=index,
                    origin=f"{path}{':' + config if config else ''} ({where}, {len(labels)} samples)")


# ----------------------------------------------------------------------------------------------
# Training and evaluation
# ----------------------------------------------------------------------------------------------

def model_name(recipe: VerifyRecipe) -> str:
    m = recipe.model
    if m.arch == "small_cnn":
        return f"small_cnn(w{m.width},f{m.feature_dim})"
    if m.arch == "airbench":
        return f"airbench(w{m.width})"
    return m.arch


def entry_seeds(recipe: VerifyRecipe, entry: DatasetEntry) -> list[int]:
    return list(entry.seeds) if entry.seeds is not None else list(recipe.seeds)


def entry_train_config(recipe: VerifyRecipe, entry: DatasetEntry) -> TrainConfig:
    t = recipe.train
    return dataclasses.replace(t, lr=entry.lr if entry.lr is not None else t.lr,
                               epochs=entry.epochs if entry.epochs is not None else t.epochs,
                               augment=entry.augment if entry.augment is not None else t.augment,
                               adversarial=entry.adversarial)


def train_and_eval(recipe: VerifyRecipe, entry: DatasetEntry, name: str, train: TrainSet, test, mean, std,
                   seed: int, device: torch.device) -> dict:
    """One fresh model: train on `train`, measure clean and robust accuracy on the uint8 test images."""
    from advgen.models.checkpoint import freeze
    from advgen.models.nets import build_classifier
    from advgen.models.train import accuracy, fit, robust_accuracy

    cfg = entry_train_config(recipe, entry)
    torch.manual_seed(seed)
    c = train.images.shape[1]
    model = build_classifier(recipe.model.arch, len(train.class_names), c, mean, std, recipe.model.width,
                             recipe.model.feature_dim).to(device)
    images = train.images
    if images.dtype != torch.uint8:
        # fit() reads pixels as images.float() / 255; float copies in [0,1] go in scaled by 255 (exact to 1 ulp)
        images = images.float() * 255.0
    t0 = time.perf_counter()
    if recipe.trainer == "airbench":
        from advgen.models.airbench import train_airbench

        losses = train_airbench(model, train.images, train.labels, cfg, recipe.airbench, seed=seed, device=device,
                                desc=f"{name} seed {seed}")
    else:
        losses = fit(model, images, train.labels, cfg, seed=seed, device=device, desc=f"{name} seed {seed}")
    freeze(model)
    t1 = time.perf_counter()
    ev = recipe.eval
    test_images = test.all_images()
    std_acc = accuracy(model, test_images, test.labels, batch_size=ev.batch_size)
    rob_acc = robust_accuracy(model, test_images, test.labels, eps=ev.eps, norm=ev.norm, steps=ev.steps,
                              step_size=ev.step_size, batch_size=ev.batch_size)
    extra = {f"{e:g}": robust_accuracy(model, test_images, test.labels, eps=e, norm=ev.norm, steps=ev.steps,
                                       batch_size=ev.batch_size) for e in ev.extra_eps}
    t2 = time.perf_counter()
    shifted = {}
    if ev.shifted_labels:
        shifted["shifted_acc"] = accuracy(model, test_images, (test.labels + 1) % len(train.class_names),
                                          batch_size=ev.batch_size)
    return {"seed": seed, "std_acc": std_acc, "robust_acc": rob_acc, "robust_acc_at": extra, **shifted,
            "train_loss": losses[-1],
            "train_seconds": round(t1 - t0, 2), "eval_seconds": round(t2 - t1, 2), "seconds": round(t2 - t0, 2)}


def _mean_std(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def summarise(recipe: VerifyRecipe, name: str, entry: DatasetEntry, runs: list[dict], origin: str,
              num_train: int, num_test: int) -> dict:
    runs = sorted(runs, key=lambda r: entry_seeds(recipe, entry).index(r["seed"]))
    std_m, std_s = _mean_std([r["std_acc"] for r in runs])
    rob_m, rob_s = _mean_std([r["robust_acc"] for r in runs])
    failures = []
    for key, value in (("std_acc", std_m), ("robust_acc", rob_m)):
        rng = getattr(entry.expected, key)
        if rng is not None and not rng[0] <= value <= rng[1]:
            failures.append(f"{key} {value:.4f} outside [{rng[0]}, {rng[1]}]")
    cfg = entry_train_config(recipe, entry)
    ev = recipe.eval
    return {
        "dataset": name, "kind": entry.kind, "title": entry.title or name, "data": origin,
        "use_npy": entry.use_npy, "model": model_name(recipe), "trainer": recipe.trainer,
        "train": {"epochs": cfg.epochs, "lr": cfg.lr, "optimizer": cfg.optimizer,
                  "augment": dataclasses.asdict(cfg.augment),
                  # adversarial training attacks with the last PGD iterate (keep_best is not used there)
                  "adversarial": dict(dataclasses.asdict(cfg.adversarial), keep_best=False, iterate="last")
                  if cfg.adversarial else None},
        "num_train": num_train, "num_test": num_test,
        "std_acc": std_m, "std_acc_std": std_s, "robust_acc": rob_m, "robust_acc_std": rob_s,
        "eps": ev.eps, "norm": ev.norm, "eval_steps": ev.steps,
        "eval_step_size": ev.step_size or 2.5 * ev.eps / ev.steps,
        "paper_std_acc": entry.paper.std_acc, "paper_robust_acc": entry.paper.robust_acc,
        "paper_ref": entry.paper.ref or None,
        "expected": {"std_acc": entry.expected.std_acc, "robust_acc": entry.expected.robust_acc},
        "passed": not failures, "failures": failures,
        "robust_acc_at": {e: dict(zip(("mean", "std"), _mean_std([r["robust_acc_at"][e] for r in runs])))
                          for e in runs[0]["robust_acc_at"]},
        "seeds": [r["seed"] for r in runs],
        **({"shifted_acc": _mean_std([r["shifted_acc"] for r in runs])[0],
            "shifted_acc_std": _mean_std([r["shifted_acc"] for r in runs])[1]} if "shifted_acc" in runs[0] else {}),
        "seconds": round(float(np.mean([r["seconds"] for r in runs])), 2),   # per model: train + eval
        "seconds_total": round(float(np.sum([r["seconds"] for r in runs])), 2),
        "per_seed": runs,
    }


def pick_device(name: str, state) -> torch.device:
    from advgen.models.train import pick_device as pick

    if name != "cpu" and torch.cuda.is_available():
        return state.device                       # this rank's GPU under accelerate launch
    try:
        return pick(name)
    except ValueError as e:
        raise RecipeError(str(e)) from None


def verify(recipe: VerifyRecipe) -> dict:
    """Run every (dataset, seed) model, write the report dir (main process), return the report."""
    from accelerate.utils import gather_object

    from advgen.generate import make_state, threads_per_rank

    from advgen.models.train import channel_stats
    from advgen.sources import load_source
    from advgen.writers.manifest import advgen_version, git_sha

    state = make_state()            # long process-group timeout; gloo when ranks outnumber GPUs
    torch.set_num_threads(threads_per_rank())
    device = pick_device(recipe.device, state)
    t_start = time.time()
    for name, entry in recipe.datasets.items():       # fail fast, before any training
        if entry.kind == "generated":
            try:
                locate(entry)
            except DatasetError as e:
                raise DatasetError(f"datasets.{name}: {e}") from None
    original = load_source(recipe.source, recipe.source.split)
    test = load_source(recipe.source, recipe.source.test_split)
    mean, std = recipe.model.mean, recipe.model.std
    if mean is None or std is None:        # the same normalisation for every training set: D's statistics
        m, s = channel_stats(original.all_images())
        mean, std = mean or m, std or s
    c = original.shape[0]
    mean = list(mean) * c if len(mean) == 1 and c > 1 else list(mean)
    std = list(std) * c if len(std) == 1 and c > 1 else list(std)

    jobs = [(name, seed) for name, entry in recipe.datasets.items() for seed in entry_seeds(recipe, entry)]
    run_keys = {job: run_key(recipe, *job, device) for job in jobs}
    done = {job: r for job in jobs if (r := cached_run(recipe, job, run_keys[job])) is not None}
    pending = [job for job in jobs if job not in done]
    state.wait_for_everyone()           # every rank has read the same cache before anyone writes to it
    mine = deal(pending, [job_cost(recipe, name) for name, _ in pending], state.num_processes)[state.process_index]
    if state.is_main_process and done:
        print(f"{recipe.name}: {len(done)} of {len(jobs)} models already trained ({recipe.out_dir / RUNS_DIR}); "
              f"{len(pending)} to go", flush=True)
    sets: dict[str, TrainSet] = {}
    runs, error = list(done.values()) if state.is_main_process else [], None
    try:
        for k, (name, seed) in enumerate(mine):
            entry = recipe.datasets[name]
            if name not in sets:
                sets[name] = trainset_of(recipe, name, entry, original)
            print(f"{recipe.name}: model {k + 1} of {len(mine)}"
                  + (f" on rank {state.process_index}" if state.num_processes > 1 else "")
                  + f": {name} seed {seed}", flush=True)
            r = train_and_eval(recipe, entry, name, sets[name], test, mean, std, seed, device)
            r.update(dataset=name, origin=sets[name].origin, num_train=len(sets[name].labels))
            print(f"{recipe.name}: {name} seed {seed}: std acc {r['std_acc']:.4f}, robust acc {r['robust_acc']:.4f} "
                  f"({recipe.eval.norm} eps {recipe.eval.eps}) in {r['seconds']:.1f} s", flush=True)
            save_run(recipe, (name, seed), run_keys[(name, seed)], r)
            runs.append(r)
    except (DatasetError, RecipeError) as e:          # tell the other ranks instead of leaving them in the gather
        error = f"{type(e).__name__}: {e}"
    if state.num_processes > 1:
        gathered = gather_object([(runs, error)])
        runs = [r for rs, _ in gathered for r in rs]
        error = next((err for _, err in gathered if err), None)
    if error:
        raise DatasetError(error.split(": ", 1)[1])
    report = None
    if state.is_main_process:
        results = []
        for name, entry in recipe.datasets.items():
            rs = [r for r in runs if r["dataset"] == name]
            keys = ("seed", "std_acc", "robust_acc", "robust_acc_at", "shifted_acc", "train_loss", "train_seconds",
                    "eval_seconds", "seconds")
            per_seed = [{k: r[k] for k in keys if k in r} for r in rs]
            results.append(summarise(recipe, name, entry, per_seed, rs[0]["origin"], rs[0]["num_train"], len(test)))
        orderings = check_orderings(recipe, results)
        report = {
            "name": recipe.name, "advgen_version": advgen_version(), "git_sha": git_sha(),
            "device": str(device), "world_size": state.num_processes,
            "source": {"kind": recipe.source.kind, "path": recipe.source.path, "split": recipe.source.split,
                       "test_split": recipe.source.test_split, "num_test": len(test)},
            "model": {"name": model_name(recipe), "mean": mean, "std": std},
            "eval": {"eps": recipe.eval.eps, "norm": recipe.eval.norm, "steps": recipe.eval.steps,
                     "step_size": recipe.eval.step_size or 2.5 * recipe.eval.eps / recipe.eval.steps,
                     "random_start": False},
            "seeds": list(recipe.seeds),
            "passed": all(r["passed"] for r in results) and all(o["holds"] for o in orderings),
            "seconds": round(time.time() - t_start, 2),
            "recipe": json.loads(json.dumps(to_dict(recipe))),
            "results": results,
            "orderings": orderings,
        }
        write_report(recipe, report, original, sets)
    state.wait_for_everyone()
    return report


RUNS_DIR = "runs"


def run_key(recipe: VerifyRecipe, name: str, seed: int, device: torch.device) -> str:
    """What one model's numbers depend on: its training set (an advgen output by its manifest's bytes), the
    training and evaluation settings, the source, the seed and the device type."""
    import hashlib

    entry = recipe.datasets[name]
    data = {"kind": entry.kind, "path": entry.path, "config": entry.config, "use_npy": entry.use_npy}
    if entry.kind == "generated" and (Path(entry.path) / "manifest.json").is_file():   # the bytes, wherever they are
        data = {"kind": entry.kind, "use_npy": entry.use_npy,
                "manifest_sha256": hashlib.sha256((Path(entry.path) / "manifest.json").read_bytes()).hexdigest()}
    # non-default fields only: a schema field added later (with a default) keeps earlier runs reusable
    key = {"data": data, "train": non_default(entry_train_config(recipe, entry)), "model": non_default(recipe.model),
           "trainer": recipe.trainer, "airbench": non_default(recipe.airbench) if recipe.trainer == "airbench" else None,
           "eval": non_default(recipe.eval), "source": non_default(recipe.source), "seed": seed, "device": device.type}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _run_file(recipe: VerifyRecipe, job: tuple[str, int]) -> Path:
    return recipe.out_dir / RUNS_DIR / f"{job[0]}-seed{job[1]}.json"


def cached_run(recipe: VerifyRecipe, job: tuple[str, int], key: str) -> Optional[dict]:
    """The finished run of (dataset, seed) when `resume` is on and its inputs are unchanged, else None."""
    f = _run_file(recipe, job)
    if not recipe.resume or not f.is_file():
        return None
    try:
        obj = json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return obj["run"] if isinstance(obj, dict) and obj.get("key") == key and isinstance(obj.get("run"), dict) else None


def save_run(recipe: VerifyRecipe, job: tuple[str, int], key: str, run: dict) -> None:
    _write_json(_run_file(recipe, job), {"key": key, "run": run})


def job_cost(recipe: VerifyRecipe, name: str) -> float:
    """Relative cost of one model: epochs x (1 + PGD steps per batch when adversarially trained)."""
    cfg = entry_train_config(recipe, recipe.datasets[name])
    return cfg.epochs * (1 + (cfg.adversarial.steps if cfg.adversarial else 0))


def deal(jobs: list, costs: list[float], n: int) -> list[list]:
    """Longest job first to the least loaded rank (ties: lowest rank): the same answer on every rank."""
    load, out = [0.0] * n, [[] for _ in range(n)]
    for i in sorted(range(len(jobs)), key=lambda i: -costs[i]):
        r = min(range(n), key=lambda r: (load[r], r))
        out[r].append(jobs[i])
        load[r] += costs[i]
    return out


def trainset_of(recipe: VerifyRecipe, name: str, entry: DatasetEntry, original) -> TrainSet:
    """The training set of one entry: a generated set read from disk/Hub, or the source split D for baselines."""
    if entry.kind != "generated":
        return TrainSet(images=original.all_images(), labels=original.labels, class_names=original.class_names,
                        source_index=original.indices,
                        origin=f"{recipe.source.kind}:{recipe.source.path or ''} split {recipe.source.split} "
                               f"({len(original)} samples)")
    try:
        ts = load_trainset(entry)
    except DatasetError as e:
        raise DatasetError(f"datasets.{name}: {e}") from None
    check_compatible(name, ts, original)
    return ts


def check_orderings(recipe: VerifyRecipe, results: list[dict]) -> list[dict]:
    """Each claim "A.m > B.m" on the means, with the gap and the two seed spreads (is the gap above noise?)."""
    by_name = {r["dataset"]: r for r in results}
    holds = {">": lambda a, b: a > b, "<": lambda a, b: a < b, ">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b}
    out = []
    for text in recipe.orderings:
        left, op, right = parse_claim(text)
        va, vb = left.value(by_name), right.value(by_name)
        out.append({"claim": text.strip(), "left": va, "right": vb, "gap": va - vb, "holds": holds[op](va, vb),
                    "left_std": left.spread(by_name), "right_std": right.spread(by_name)})
    return out


def check_compatible(name: str, train: TrainSet, original) -> None:
    if tuple(train.images.shape[1:]) != tuple(original.shape):
        raise DatasetError(f"datasets.{name}: images are {list(train.images.shape[1:])}, the source's test images "
                           f"{list(original.shape)}; verify against the source the set was generated from")
    if len(train.class_names) != original.num_classes:
        raise DatasetError(f"datasets.{name}: {len(train.class_names)} classes, the source has {original.num_classes}")


# ----------------------------------------------------------------------------------------------
# Report: JSON, markdown, figures
# ----------------------------------------------------------------------------------------------

def write_report(recipe: VerifyRecipe, report: dict, original, sets: dict[str, TrainSet]):
    out = recipe.out_dir
    out.mkdir(parents=True, exist_ok=True)
    figures = {}
    for name, entry in recipe.datasets.items():
        if entry.kind != "generated":
            continue
        ts = sets.get(name) or load_trainset(entry)     # another rank may have trained on it
        if ts.source_index is not None:
            f = out / f"samples_{name}.png"
            if sample_grid(ts, original, recipe.samples, f, entry.title or name):
                figures[name] = f.name
    accuracy_chart(report, out / "accuracy.png")
    report["figures"] = {"accuracy": "accuracy.png"}
    if recipe.eval.extra_eps:
        robustness_curve(report, out / "robustness.png")
        report["figures"]["robustness"] = "robustness.png"
    report["figures"].update({f"samples_{k}": v for k, v in figures.items()})
    if recipe.grid:
        grid_sets = {recipe.datasets[k].title or k: sets.get(k) or load_trainset(recipe.datasets[k]) for k in recipe.grid}
        if figure2a(original, grid_sets, recipe.samples, out / "figure2a.png"):
            report["figures"]["figure2a"] = "figure2a.png"
    _write_json(out / "report.json", report)
    for output, names in verified_outputs(recipe).items():   # the card of each output finds its reports there
        _write_json(output / "verify" / f"{recipe.name}.json", {**report, "verified_datasets": names})
    ev = report["eval"]
    md = [f"# Verification: {report['name']}", "",
          f"Each model ({report['model']['name']}, trainer {recipe.trainer}) is trained from scratch on the "
          f"set named in the first column and evaluated on the original {report['source']['kind']} "
          f"{report['source']['test_split']} split ({report['source']['num_test']} images). Robust accuracy: "
          f"untargeted {ev['norm']} PGD, ε {ev['eps']:g}, {ev['steps']} steps of {ev['step_size']:.4g}, no random "
          f"start. Mean ± std over seeds {report['seeds']}; seconds = train + evaluate, per model, on "
          f"{report['device']}. Paper numbers: CIFAR-10 / ResNet-50 (PAPER_NOTES), where the paper has one.", "",
          markdown_table(report["results"]), ""]
    for r in report["results"]:
        if r["failures"]:
            md.append(f"- **{r['dataset']}** outside its expected range: {'; '.join(r['failures'])}")
    if report["orderings"]:
        md += ["", "| claim | left | right | gap | holds |", "|---|---|---|---|---|"]
        for o in report["orderings"]:
            md.append(f"| {o['claim']} | {pct(o['left'], o['left_std'])} | {pct(o['right'], o['right_std'])} | "
                      f"{100 * o['gap']:+.1f} pts | {'yes' if o['holds'] else '**NO**'} |")
    extra = [e for r in report["results"] for e in r["robust_acc_at"]]
    if extra:
        eps_list = list(dict.fromkeys(extra))
        md += ["", "Robust accuracy at other radii (same attack, not checked):", "",
               "| dataset | " + " | ".join(f"ε {e}" for e in eps_list) + " |", "|---|" + "---|" * len(eps_list)]
        for r in report["results"]:
            cells = [pct(r["robust_acc_at"][e]["mean"], r["robust_acc_at"][e]["std"]) if e in r["robust_acc_at"]
                     else "—" for e in eps_list]
            md.append(f"| {r['dataset']} | " + " | ".join(cells) + " |")
    shifted = [r for r in report["results"] if "shifted_acc" in r]
    if shifted:
        md += ["", "Accuracy against the shifted test labels (y + 1) mod C (Appendix D: a D̂det model that learned the "
               "robust features of y under the label y + 1 scores here):", "", "| dataset | shifted-label acc |",
               "|---|---|"] + [f"| {r['dataset']} | {pct(r['shifted_acc'], r['shifted_acc_std'])} |" for r in shifted]
    leak = [r for r in report["results"] if r["kind"] == "generated" and r["train"]["adversarial"]]
    if leak:
        md += ["", "Robust-feature leakage: models trained ADVERSARIALLY on a generated set cannot use the non-robust "
               "features that carry its labels, so their accuracy on the original test set is what robust features "
               "leaking through the perturbation carry (chance: 1 / classes):", "",
               "| dataset | adversarial training | std acc | robust acc |", "|---|---|---|---|"]
        for r in leak:
            a = r["train"]["adversarial"]
            md.append(f"| {r['dataset']} | {a['norm']} ε {a['eps']:g}, {a['steps']} steps | "
                      f"{pct(r['std_acc'], r['std_acc_std'])} | {pct(r['robust_acc'], r['robust_acc_std'])} |")
    md += ["", "![accuracy per training set](accuracy.png)", ""]
    if "robustness" in report["figures"]:
        md += ["![robust accuracy against the attack radius](robustness.png)", ""]
    if "figure2a" in report["figures"]:
        md += ["![the same source images in D and the generated sets (Figure 2a)](figure2a.png)", ""]
    for name, f in figures.items():
        md += [f"![{name}: originals (top) and generated images (bottom)]({f})", ""]
    (out / "report.md").write_text("\n".join(md))


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    tmp.replace(path)


def verified_outputs(recipe: VerifyRecipe) -> dict[Path, list[str]]:
    """{local advgen output dir: names of the recipe's entries trained on it} (Hub ids and plain dirs: none)."""
    outs: dict[Path, list[str]] = {}
    for name, entry in recipe.datasets.items():
        if entry.kind == "generated" and locate(entry) == "advgen":
            outs.setdefault(Path(entry.path), []).append(name)
    return outs


def sample_grid(ts: TrainSet, original, n: int, path: Path, title: str) -> bool:
    """Figure 2a: the first n samples, original image (top, its label) above the generated one (its label)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pos_of = {int(i): p for p, i in enumerate(original.indices.tolist())}
    picks = [j for j in range(len(ts.labels)) if int(ts.source_index[j]) in pos_of][:n]
    if not picks:
        return False
    fig, axes = plt.subplots(2, len(picks), figsize=(1.3 * len(picks) + 0.6, 3.5), squeeze=False)
    for col, j in enumerate(picks):
        p = pos_of[int(ts.source_index[j])]
        for row, (img, label) in enumerate(((original.images([p])[0], int(original.labels[p])),
                                             (ts.images[j], int(ts.labels[j])))):
            x = img.float() / 255.0 if img.dtype == torch.uint8 else img.float()
            arr = x.clamp(0, 1).permute(1, 2, 0).numpy()
            ax = axes[row][col]
            ax.imshow(arr[..., 0] if arr.shape[2] == 1 else arr, cmap="gray" if arr.shape[2] == 1 else None,
                      vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(original.class_names[label] if label < len(original.class_names) else str(label),
                         fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0][0].set_ylabel("original", fontsize=9)
        axes[1][0].set_ylabel(title, fontsize=9)
    fig.suptitle(f"{title}: originals (top, true label) and training images (bottom, training label)", fontsize=9)
    fig.tight_layout(h_pad=1.2)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def figure2a(original, sets: dict[str, TrainSet], n: int, path: Path) -> bool:
    """Figure 2a: the same n source images as the original D (top row) and in each generated set (one row each),
    every cell titled with its training label; False when the sets share no source image with the original."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pos_of = {int(i): p for p, i in enumerate(original.indices.tolist())}
    rows_of = {}
    for title, ts in sets.items():
        if ts.source_index is None:
            return False
        rows_of[title] = {int(i): j for j, i in enumerate(ts.source_index.tolist())}
    common = [i for i in original.indices.tolist() if all(i in r for r in rows_of.values())][:n]
    if not common:
        return False
    names = original.class_names
    fig, axes = plt.subplots(1 + len(sets), len(common), figsize=(1.2 * len(common) + 1.0, 1.45 * (1 + len(sets))),
                             squeeze=False)
    rows = [("D (original)", lambda i: (original.images([pos_of[i]])[0], int(original.labels[pos_of[i]])))]
    for title, ts in sets.items():
        rows.append((title, lambda i, ts=ts, r=rows_of[title]: (ts.images[r[i]], int(ts.labels[r[i]]))))
    for row, (title, get) in enumerate(rows):
        for col, i in enumerate(common):
            img, label = get(i)
            x = img.float() / 255.0 if img.dtype == torch.uint8 else img.float()
            arr = x.clamp(0, 1).permute(1, 2, 0).numpy()
            ax = axes[row][col]
            ax.imshow(arr[..., 0] if arr.shape[2] == 1 else arr, cmap="gray" if arr.shape[2] == 1 else None,
                      vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(names[label] if label < len(names) else str(label), fontsize=8, pad=2)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row][0].set_ylabel(title, fontsize=9)
    fig.suptitle("The same source images in D and in each generated set (titles: training labels)", fontsize=9)
    fig.tight_layout(h_pad=0.6)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def accuracy_chart(report: dict, path: Path):
    """Figure 2b: standard and robust test accuracy per training set, ours (error bar = std over seeds)
    beside the paper's (hatched) where it has a number; other radii are in robustness_curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results, ev = report["results"], report["eval"]

    def ours(key):
        return [r[key] for r in results], [r[key + "_std"] for r in results]

    series = [("std (ours)", *ours("std_acc"), "#1f77b4", None),
              ("std (paper)", [r["paper_std_acc"] for r in results], None, "#aec7e8", "//"),
              (f"robust ε {ev['eps']:g} (ours)", *ours("robust_acc"), "#ff7f0e", None),
              ("robust (paper)", [r["paper_robust_acc"] for r in results], None, "#ffbb78", "//")]
    series = [s for s in series if any(v is not None for v in s[1])]
    x = np.arange(len(results))
    w = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.45 * len(series) * len(results) + 2.0), 4.4))
    for i, (label, vals, err, color, hatch) in enumerate(series):
        heights = [100 * (v if v is not None else 0.0) for v in vals]
        ax.bar(x + (i - (len(series) - 1) / 2) * w, heights, w, label=label, color=color, hatch=hatch,
               yerr=None if err is None else [100 * e for e in err], capsize=2, edgecolor="black", linewidth=0.4)
    ax.set_xticks(x)
    ax.set_xticklabels([r["title"] + (" (npy)" if r.get("use_npy") and "npy" not in r["title"] else "")
                        for r in results], fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(f"{report['name']}: {report['model']['name']}, {len(report['seeds'])} seed(s)\n"
                 f"robust = untargeted {ev['norm']} PGD, {ev['steps']} steps, on the original test set", fontsize=9)
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.09), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def robustness_curve(report: dict, path: Path):
    """Test accuracy against the PGD radius (0 = clean), one line per training set, error bars = std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ev = report["eval"]
    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    for r in report["results"]:
        pts = {0.0: (r["std_acc"], r["std_acc_std"]), float(r["eps"]): (r["robust_acc"], r["robust_acc_std"])}
        pts.update({float(e): (v["mean"], v["std"]) for e, v in r["robust_acc_at"].items()})
        eps = sorted(pts)
        ax.errorbar(eps, [100 * pts[e][0] for e in eps], yerr=[100 * pts[e][1] for e in eps], marker="o",
                    markersize=3, capsize=2, label=r["title"])
    ax.set_xlabel(f"{ev['norm']} radius ε of the untargeted PGD attack ({ev['steps']} steps)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{report['name']}: accuracy under attack, {len(report['seeds'])} seed(s)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    from advgen.models.checkpoint import CheckpointError

    p = argparse.ArgumentParser(prog="advgen verify",
                                description="Train fresh models on generated sets, evaluate on the original test set.")
    p.add_argument("recipe", help="verification recipe YAML (recipes/verify_*.yaml)")
    p.add_argument("overrides", nargs="*",
                   help="dotted overrides, e.g. seeds=[0,1,2] train.epochs=2 datasets.d_det.use_npy=true")
    p.add_argument("--only", help="comma-separated dataset names: train and report only these (and their orderings)")
    args = p.parse_intermixed_args(argv)
    try:
        recipe = load_verify_recipe(args.recipe, args.overrides)
        if args.only:
            recipe = select(recipe, args.only.split(","))
        report = verify(recipe)
    except (RecipeError, DatasetError, CheckpointError) as e:
        print(f"advgen verify: error: {e}", file=sys.stderr)
        return 2
    if report is None:          # not the main process
        return 0
    print(f"{recipe.name}: report -> {recipe.out_dir / 'report.md'}")
    print(markdown_table(report["results"]))
    failed = [r for r in report["results"] if not r["passed"]]
    for r in failed:
        print(f"advgen verify: {r['dataset']}: {'; '.join(r['failures'])}", file=sys.stderr)
    broken = [o for o in report["orderings"] if not o["holds"]]
    for o in broken:
        print(f"advgen verify: ordering does not hold: {o['claim']} ({100 * o['left']:.1f}% vs "
              f"{100 * o['right']:.1f}%)", file=sys.stderr)
    return 1 if failed or broken else 0


if __name__ == "__main__":
    sys.exit(main())
