"""Transferability (Section 3.3, Figure 3): does an architecture's accuracy when trained on a D̂det / D̂rand
predict how often the source model's adversarial examples transfer to it?

    advgen transfer recipes/transfer_digits.yaml [KEY=VALUE ...]      # e.g. seeds=[0,1,2] report_dir=/tmp/t

The paper trains five architectures (VGG-16, Inception-v3, ResNet-18, DenseNet, ResNet-50) on the D̂det
made against a standard ResNet-50 and plots, per architecture, the test accuracy on the original test set
(x) against "how often adversarial examples transfer from the original model to standard classifiers with
that architecture" (y): roughly 25-50% accuracy against 60-100% transfer, higher with higher accuracy.
The main text does not say which adversarial examples are transferred or how success is counted (its
Appendix D.9 repeats Figure 3 with targeted attacks); here that is recipe fields, and what is measured is:

- x, per architecture and seed: a fresh model of the architecture, standard training on the generated set
  (`dataset`: D̂rand or D̂det, labelled with the attack's targets), accuracy on the original test split.
- y, per architecture and seed: another fresh model of the architecture, standard training on the original
  training split D (`train_d`, seed + `d_seed_offset`, so that it is never the source model itself). The
  transfer examples are targeted PGD (`attack`: give it the attack that made the set) against the source
  model (`source_model`: the model that made the set) on the first `transfer_limit` test images, targets
  (y+1) mod C ("det") or uniform over the C-1 other classes ("rand": a target equal to y would be a success
  for free), stored rounded to uint8 like the generated sets, made once (plain fp32 model) for all models.
  Transfer rate ("targeted", the figure's y) = fraction classified as the target by the D-trained model;
  also recorded: "untargeted" = fraction not classified as the true label. `count: fooled` (default) counts
  only the examples that fool the source itself (targeted success on the source); `all` counts every one.
- the correlation across architectures of the per-architecture means (over seeds): Pearson r with its
  two-sided p-value, and Spearman's rho; the source's own architecture, when it is one of them, is marked,
  and the correlation without it is reported as well (it alone can make a correlation). A control: the
  same correlation with the accuracy on D in place of x (if that predicts the rate as well, the generated
  set adds nothing).

Writes to `report_dir` (default reports/<name>): transfer.json (per architecture: both accuracies, both
rates, mean ± std over seeds, per-seed values, seconds), transfer.md (the table and the correlation),
figure3.png (the scatter with error bars, the least-squares line, r and rho, as the paper's Figure 3), and
runs/ (each finished model's numbers and the transfer examples, so a killed run resumes where it stopped).

Exit status: 0 report written; 2 the recipe, the generated set or the checkpoint cannot be used (one line).

Cost on 2 CPU cores shared with other work (OMP_NUM_THREADS=1, nice): recipes/transfer_digits.yaml (6
architectures x 3 seeds x 2 models, 30 epochs on 1,257 digits each, attack on 540 digits) 4-5 min;
recipes/transfer_cifar_cpu.yaml (36 models on 1,000-2,000 CIFAR images, attack on 1,000) 37 min under a load
of 5-7 (its first seed alone, attack on 500, took under 3 min on a quieter machine); the paper's five CIFAR
architectures (recipes/transfer_cifar_gpu.yaml) are GPU work: 10 models of 150 epochs on 50,000 images.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import torch

from advgen.cli import command_parser, run, say
from advgen.errors import DatasetError, RecipeError
from advgen.recipe import (AttackConfig, DatasetEntry, ModelConfig, SourceConfig, TrainConfig, _check, load_recipe,
                           to_dict)
from advgen.report import pct
from advgen.writers.layout import read_keyed_run, write_json
from advgen.writers.reader import TrainSet, load_trainset, locate

# ----------------------------------------------------------------------------------------------
# Recipe
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchEntry:
    """One architecture (one point of Figure 3): per seed, one model trained on the generated set, one on D."""

    model: ModelConfig = field(default_factory=ModelConfig)   # arch, width, feature_dim; mean/std null: D's stats
    title: str = ""                        # label in the figure and table (default: the entry's key)
    lr: Optional[float] = None             # training on the generated set; null = the recipe's train.lr
    epochs: Optional[int] = None           # null = the recipe's train.epochs
    lr_d: Optional[float] = None           # training on D; null = the recipe's train_d.lr
    epochs_d: Optional[int] = None         # null = the recipe's train_d.epochs

    def validate(self, where: str):
        for k in ("lr", "lr_d"):
            v = getattr(self, k)
            _check(v is None or v > 0, f"{where}.{k}", f"must be > 0, got {v!r}")
        for k in ("epochs", "epochs_d"):
            v = getattr(self, k)
            _check(v is None or v >= 1, f"{where}.{k}", f"must be >= 1, got {v!r}")
        _check(self.model.arch != "airbench", f"{where}.model.arch",
               "'airbench' needs its own trainer; transfer trains every architecture with the same loop (fit)")


@dataclass(frozen=True)
class TransferRecipe:
    """`advgen transfer RECIPE`: the architectures, the generated set, the source model and its attack."""

    name: str
    source: SourceConfig                   # the ORIGINAL data: `split` is D, `test_split` the test set
    dataset: str                           # the generated set: advgen output dir, dataset dir or Hub id
    source_model: str                      # checkpoint whose adversarial examples are transferred (the set's source)
    archs: dict[str, ArchEntry]            # key = name in the report, in recipe order
    attack: AttackConfig = field(default_factory=AttackConfig)   # targeted PGD making the transfer examples
    config: Optional[str] = None           # Hub config name of `dataset`
    use_npy: bool = False                  # advgen output dir: train on the float32 copy instead of the PNGs
    train: TrainConfig = field(default_factory=TrainConfig)      # standard training on the generated set
    train_d: TrainConfig = field(default_factory=TrainConfig)    # standard training on D (transfer-rate models)
    transfer_limit: Optional[int] = None   # attack the first N test images (null: the whole test split)
    count: Literal["fooled", "all"] = "fooled"   # transfer rate over: examples that fool the source / all
    rate: Literal["targeted", "untargeted"] = "targeted"   # the rate plotted and correlated (both are recorded)
    alpha: float = 0.05                    # the correlation "holds" when Pearson r > 0 with p < alpha
    seeds: list[int] = field(default_factory=lambda: [0])   # one pair of fresh models per seed and architecture
    # The D-trained models use seed + d_seed_offset: with the source's own architecture, training and seed, a model
    # trained on D would be the source model itself, bit for bit (a run that makes one stops with an error).
    d_seed_offset: int = 1000
    attack_seed: int = 0                   # seeds the "rand" targets of the transfer examples
    batch_size: int = 500                  # test images per attack / evaluation batch
    report_dir: Optional[str] = None       # null = reports/<name>
    device: Literal["auto", "cpu", "cuda"] = "auto"
    resume: bool = True                    # reuse finished models and transfer examples from report_dir/runs/

    def validate(self, where: str = ""):
        _check(bool(self.dataset), "dataset", "name the generated set (an advgen output dir, e.g. runs/digits_rand)")
        _check(Path(self.source_model).is_file(), "source_model",
               f"file {self.source_model!r} does not exist; train it with `advgen train RECIPE`")
        _check(bool(self.archs), "archs", "list at least one architecture")
        for key in self.archs:
            _check(re.fullmatch(r"[A-Za-z0-9_.-]+", key) is not None, f"archs.{key}",
                   "names may use letters, digits, '_', '.', '-' (they become file names)")
        _check(self.attack.kind == "pgd", "attack.kind",
               f"transfer examples are targeted PGD ('pgd'), got {self.attack.kind!r}")
        for k in ("train", "train_d"):
            _check(getattr(self, k).adversarial is None, f"{k}.adversarial",
                   "Figure 3's models are standard-trained; remove the adversarial block")
        _check(bool(self.seeds) and len(set(self.seeds)) == len(self.seeds), "seeds",
               f"must be a non-empty list of distinct integers, got {self.seeds!r}")
        _check(self.transfer_limit is None or self.transfer_limit >= 1, "transfer_limit",
               f"must be >= 1, got {self.transfer_limit!r}")
        _check(0.0 < self.alpha < 1.0, "alpha", f"must be in (0, 1), got {self.alpha!r}")
        _check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size!r}")
        _check(self.attack_seed >= 0, "attack_seed", f"must be >= 0, got {self.attack_seed!r}")
        _check(all(s >= 0 for s in self.seeds) and self.d_seed_offset >= 0, "seeds",
               f"seeds and d_seed_offset must be >= 0, got {self.seeds!r} and {self.d_seed_offset!r}")

    @property
    def out_dir(self) -> Path:
        return Path(self.report_dir or f"reports/{self.name}")

    def entry(self) -> DatasetEntry:
        return DatasetEntry(path=self.dataset, config=self.config, use_npy=self.use_npy)

    def train_config(self, name: str, part: str) -> TrainConfig:
        """The training of arch `name` on the generated set (part "generated") or on D (part "original")."""
        a = self.archs[name]
        if part == "generated":
            return dataclasses.replace(self.train, lr=a.lr or self.train.lr, epochs=a.epochs or self.train.epochs)
        return dataclasses.replace(self.train_d, lr=a.lr_d or self.train_d.lr,
                                   epochs=a.epochs_d or self.train_d.epochs)


def load_transfer_recipe(path, overrides=()) -> TransferRecipe:
    recipe = load_recipe(path, TransferRecipe, overrides)
    d = recipe.dataset       # ./x or ../x missing from the cwd but next to the recipe, as load_recipe does for paths
    base = Path(path).parent
    if d.startswith(("./", "../")) and not Path(d).exists() and (base / d).exists():
        recipe = dataclasses.replace(recipe, dataset=str((base / d).resolve()))
    return recipe


# ----------------------------------------------------------------------------------------------
# Transfer examples: targeted PGD against the source model on the test split
# ----------------------------------------------------------------------------------------------

@dataclass
class Examples:
    images: torch.Tensor        # uint8 [N, C, H, W]: x_adv rounded as the generated sets store it
    labels: torch.Tensor        # int64 [N] true labels
    targets: torch.Tensor       # int64 [N]
    fooled: torch.Tensor        # bool [N]: the source model classifies x_adv as the target
    source_clean: torch.Tensor  # bool [N]: the source model classifies the clean image correctly
    l2: torch.Tensor            # float32 [N]: ||x_adv - x||_2 after rounding


def transfer_targets(labels: torch.Tensor, num_classes: int, rule: str, seed: int) -> torch.Tensor:
    """det: (y + 1) mod C; rand: uniform over the C - 1 classes other than y (seeded)."""
    if rule == "det":
        return (labels + 1) % num_classes
    g = torch.Generator().manual_seed(seed)
    return (labels + torch.randint(1, num_classes, labels.shape, generator=g)) % num_classes


def make_examples(recipe: TransferRecipe, model, test, device: torch.device) -> Examples:
    n = min(len(test), recipe.transfer_limit or len(test))
    labels = test.labels[:n].cpu()
    targets = transfer_targets(labels, test.num_classes, recipe.attack.targets, recipe.attack_seed)
    attack = recipe.attack.build(model)        # targeted PGD on the plain fp32 model
    g = torch.Generator(device=device).manual_seed(recipe.attack_seed)     # random_start only
    out = {k: [] for k in ("images", "fooled", "clean", "l2")}
    for i in range(0, n, recipe.batch_size):
        x_u8 = test.images(torch.arange(i, min(n, i + recipe.batch_size))).to(device)
        x = x_u8.float() / 255.0
        y, t = labels[i:i + recipe.batch_size].to(device), targets[i:i + recipe.batch_size].to(device)
        x_adv, _ = attack(x, t, generator=g)
        adv_u8 = (x_adv * 255.0).round().clamp(0, 255).to(torch.uint8)
        with torch.no_grad():
            out["fooled"].append((model(adv_u8.float() / 255.0).argmax(1) == t).cpu())
            out["clean"].append((model(x).argmax(1) == y).cpu())
        out["images"].append(adv_u8.cpu())
        out["l2"].append(((adv_u8.float() - x_u8.float()) / 255.0).flatten(1).norm(dim=1).cpu())
    return Examples(torch.cat(out["images"]), labels, targets, torch.cat(out["fooled"]), torch.cat(out["clean"]),
                    torch.cat(out["l2"]))


ATTACK_KEYS = ("norm", "eps", "step_size", "steps", "random_start", "keep_best", "targets")


def examples_key(recipe: TransferRecipe, ckpt_sha: str, device: torch.device) -> str:
    """What the transfer examples depend on: the source model's bytes, the attack's values (named one by one, so a
    new field of the shared attack schema does not discard finished runs), the test images, the seed, the device."""
    key = {"ckpt": ckpt_sha, "attack": {k: getattr(recipe.attack, k) for k in ATTACK_KEYS},
           "limit": recipe.transfer_limit, "seed": recipe.attack_seed, "source": dataclasses.asdict(recipe.source),
           "device": device.type}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def cached_examples(recipe: TransferRecipe, key: str) -> Optional[tuple[Examples, float]]:
    from safetensors.torch import load_file

    f = recipe.out_dir / RUNS_DIR / "examples.safetensors"
    meta = f.with_suffix(".json")
    if not (recipe.resume and f.is_file() and meta.is_file()):
        return None
    try:
        info = json.loads(meta.read_text())
        if info.get("key") != key:
            return None
        t = load_file(str(f))
    except Exception:       # a half-written or foreign file: make the examples again
        return None
    ex = Examples(t["images"], t["labels"], t["targets"], t["fooled"].bool(), t["source_clean"].bool(), t["l2"])
    return ex, float(info.get("seconds", 0.0))


def save_examples(recipe: TransferRecipe, key: str, ex: Examples, seconds: float) -> None:
    from safetensors.torch import save_file

    f = recipe.out_dir / RUNS_DIR / "examples.safetensors"
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = f.with_name(f.name + ".tmp")
    save_file({"images": ex.images.contiguous(), "labels": ex.labels, "targets": ex.targets,
               "fooled": ex.fooled.to(torch.uint8), "source_clean": ex.source_clean.to(torch.uint8), "l2": ex.l2},
              str(tmp))
    tmp.replace(f)
    write_json(f.with_suffix(".json"), {"key": key, "seconds": seconds})


# ----------------------------------------------------------------------------------------------
# One architecture, one seed
# ----------------------------------------------------------------------------------------------

def model_name(m: ModelConfig) -> str:
    if m.arch in ("small_cnn", "mlp", "gap_cnn", "wide_cnn", "tiny_vgg"):
        return f"{m.arch}(w{m.width},f{m.feature_dim})"
    if m.arch in ("tiny_densenet", "densenet121"):
        return f"{m.arch}(growth {m.width})"
    return m.arch


def build_model(m: ModelConfig, num_classes: int, in_channels: int, mean, std, device):
    from advgen.models.nets import build_classifier

    mean = list(m.mean or mean)
    std = list(m.std or std)
    if in_channels > 1:
        mean, std = (mean * in_channels if len(mean) == 1 else mean), (std * in_channels if len(std) == 1 else std)
    return build_classifier(m.arch, num_classes, in_channels, mean, std, m.width, m.feature_dim).to(device)


def train_fresh(recipe: TransferRecipe, name: str, part: str, images, labels, num_classes: int, mean, std,
                seed: int, device: torch.device):
    """A fresh model of arch `name`, standard-trained on (images, labels); returns (frozen model, last loss)."""
    from advgen.models.checkpoint import freeze
    from advgen.models.train import fit

    torch.manual_seed(seed)
    model = build_model(recipe.archs[name].model, num_classes, images.shape[1], mean, std, device)
    if images.dtype != torch.uint8:     # fit() reads images.float() / 255: float copies in [0,1] go in scaled
        images = images.float() * 255.0
    losses = fit(model, images, labels, recipe.train_config(name, part), seed=seed, device=device,
                 desc=f"{name} {part} seed {seed}")
    return freeze(model), losses[-1]


@torch.no_grad()
def predict(model, images_u8: torch.Tensor, batch_size: int) -> torch.Tensor:
    dev = next(model.parameters()).device
    return torch.cat([model(images_u8[i:i + batch_size].to(dev).float() / 255.0).argmax(1).cpu()
                      for i in range(0, len(images_u8), batch_size)])


def run_generated(recipe, name, seed, train: TrainSet, test, mean, std, device) -> dict:
    """x of Figure 3: trained on the generated set, accuracy on the original test split."""
    t0 = time.perf_counter()
    model, loss = train_fresh(recipe, name, "generated", train.images, train.labels, len(train.class_names), mean,
                              std, seed, device)
    acc = float((predict(model, test.all_images(), recipe.batch_size) == test.labels.cpu()).float().mean())
    return {"acc": acc, "train_loss": loss, "seconds": round(time.perf_counter() - t0, 2)}


def run_original(recipe, name, seed, original, test, ex: Examples, mean, std, device, source) -> dict:
    """y of Figure 3: trained on D, how often the source's adversarial examples move it to their target."""
    t0 = time.perf_counter()
    model, loss = train_fresh(recipe, name, "original", original.all_images(), original.labels,
                              original.num_classes, mean, std, seed + recipe.d_seed_offset, device)
    if is_copy(model, source):
        raise RecipeError(f"archs.{name}, seed {seed}: the model trained on D is the source model itself (same "
                          "architecture, training and seed); choose another d_seed_offset or other seeds")
    acc = float((predict(model, test.all_images(), recipe.batch_size) == test.labels.cpu()).float().mean())
    pred = predict(model, ex.images, recipe.batch_size)
    mask = ex.fooled if recipe.count == "fooled" else torch.ones_like(ex.fooled)
    n = int(mask.sum())
    targeted = float((pred == ex.targets)[mask].float().mean()) if n else float("nan")
    untargeted = float((pred != ex.labels)[mask].float().mean()) if n else float("nan")
    return {"acc": acc, "transfer_targeted": targeted, "transfer_untargeted": untargeted, "counted": n,
            "train_loss": loss, "params": sum(p.numel() for p in model.parameters()),
            "seconds": round(time.perf_counter() - t0, 2)}


def is_copy(model, source) -> bool:
    a, b = model.state_dict(), source.state_dict()
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape and torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


RUNS_DIR = "runs"


def run_key(recipe: TransferRecipe, name: str, part: str, seed: int, device, data_id: str) -> str:
    """What one model's numbers depend on: architecture, training, data (and for D-trained models, the transfer
    examples), seed and device type."""
    seed = seed + (recipe.d_seed_offset if part == "original" else 0)      # the seed the model trains with
    key = {"model": dataclasses.asdict(recipe.archs[name].model), "part": part, "seed": seed, "device": device.type,
           "train": dataclasses.asdict(recipe.train_config(name, part)), "data": data_id,
           "source": dataclasses.asdict(recipe.source), "count": recipe.count, "batch_size": recipe.batch_size}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def cached_run(recipe: TransferRecipe, stem: str, key: str) -> Optional[dict]:
    return read_keyed_run(recipe.out_dir / RUNS_DIR / f"{stem}.json", key) if recipe.resume else None


# ----------------------------------------------------------------------------------------------
# Correlation and the whole run
# ----------------------------------------------------------------------------------------------

def _finite(v) -> Optional[float]:
    return float(v) if v is not None and math.isfinite(float(v)) else None


def correlation(xs: list[float], ys: list[float], alpha: float) -> dict:
    """Pearson r (two-sided p), Spearman rho and the least-squares line y = slope * x + intercept; None where the
    points cannot say (fewer than 3, or a constant coordinate)."""
    from scipy import stats

    n = len(xs)
    out = {"n": n, "pearson_r": None, "pearson_p": None, "spearman_rho": None, "spearman_p": None,
           "slope": None, "intercept": None, "holds": False, "alpha": alpha}
    if n < 3 or np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return out
    r, p = stats.pearsonr(xs, ys)
    rho, sp = stats.spearmanr(xs, ys)
    slope, intercept = np.polyfit(xs, ys, 1)
    out.update(pearson_r=_finite(r), pearson_p=_finite(p), spearman_rho=_finite(rho), spearman_p=_finite(sp),
               slope=_finite(slope), intercept=_finite(intercept))
    out["holds"] = bool(out["pearson_r"] is not None and out["pearson_r"] > 0 and out["pearson_p"] < alpha)
    return out


def same_as_source(m: ModelConfig, meta: dict) -> bool:
    if m.arch != meta.get("arch"):
        return False
    return m.arch not in ("small_cnn", "mlp", "gap_cnn", "wide_cnn", "tiny_vgg", "tiny_densenet", "densenet121") or (
        m.width == meta.get("width") and (m.arch in ("tiny_densenet", "densenet121")
                                          or m.feature_dim == meta.get("feature_dim")))


def transfer(recipe: TransferRecipe) -> dict:
    """Train every (architecture, seed) pair of models, measure, write the report dir; return the report."""
    from advgen.models.checkpoint import load_checkpoint, read_meta, sha256_file
    from advgen.models.train import channel_stats, pick_device
    from advgen.sources import load_source
    from advgen.writers.manifest import advgen_version, git_sha

    t_start = time.time()
    try:
        device = pick_device(recipe.device)
    except ValueError as e:
        raise RecipeError(str(e)) from None
    entry = recipe.entry()
    try:
        where = locate(entry)
    except DatasetError as e:
        raise DatasetError(f"dataset: {e}") from None
    model = load_checkpoint(recipe.source_model, device=device)
    ckpt_sha = sha256_file(recipe.source_model)
    meta = read_meta(recipe.source_model) if recipe.source_model.endswith(".safetensors") else {}
    original = load_source(recipe.source, recipe.source.split).staged(torch.device("cpu"))   # decoded once
    test = load_source(recipe.source, recipe.source.test_split).staged(torch.device("cpu"))
    try:
        train = load_trainset(entry)
    except DatasetError as e:
        raise DatasetError(f"dataset: {e}") from None
    if tuple(train.images.shape[1:]) != tuple(original.shape) or len(train.class_names) != original.num_classes:
        raise DatasetError(f"dataset: {len(train.class_names)} classes of {list(train.images.shape[1:])} images, the "
                           f"source has {original.num_classes} of {list(original.shape)}; name the source the set was "
                           "generated from")
    manifest = json.loads((Path(recipe.dataset) / "manifest.json").read_text()) if where == "advgen" else {}
    mean, std = channel_stats(original.all_images())      # every model normalises with D's statistics

    # The transfer examples, once for all architectures.
    ex_key = examples_key(recipe, ckpt_sha, device)
    cached = cached_examples(recipe, ex_key)
    if cached is not None:
        ex, attack_seconds = cached
    else:
        t0 = time.perf_counter()
        say(f"{recipe.name}: attacking {min(len(test), recipe.transfer_limit or len(test))} test images on the "
            f"source model ({recipe.attack.norm} eps {recipe.attack.eps:g}, {recipe.attack.steps} steps, targets "
            f"{recipe.attack.targets})")
        ex = make_examples(recipe, model, test, device)
        attack_seconds = round(time.perf_counter() - t0, 2)
        save_examples(recipe, ex_key, ex, attack_seconds)
    say(f"{recipe.name}: source fooled on {float(ex.fooled.float().mean()):.3f} of {len(ex.labels)} test images "
        f"(mean l2 {float(ex.l2.mean()):.3f})")

    data_ids = {"generated": {"dataset": (hashlib.sha256((Path(recipe.dataset) / "manifest.json").read_bytes())
                                          .hexdigest() if where == "advgen" else recipe.dataset),
                              "config": recipe.config, "use_npy": recipe.use_npy},
                "original": {"examples": ex_key}}
    jobs = [(name, seed) for name in recipe.archs for seed in recipe.seeds]
    per = {}
    for k, (name, seed) in enumerate(jobs):
        for part in ("generated", "original"):
            key = run_key(recipe, name, part, seed, device, json.dumps(data_ids[part], sort_keys=True))
            stem = f"{name}-seed{seed}-{part}"
            r = cached_run(recipe, stem, key)
            if r is None:
                say(f"{recipe.name}: model {2 * k + (part == 'original') + 1} of {2 * len(jobs)}: {name} seed {seed} "
                    f"on {'the generated set' if part == 'generated' else 'D'}")
                r = (run_generated(recipe, name, seed, train, test, mean, std, device) if part == "generated" else
                     run_original(recipe, name, seed, original, test, ex, mean, std, device, model))
                write_json(recipe.out_dir / RUNS_DIR / f"{stem}.json", {"key": key, "run": r})
            per[(name, seed, part)] = r
        g, o = per[(name, seed, "generated")], per[(name, seed, "original")]
        say(f"{recipe.name}: {name} seed {seed}: acc trained on the set {g['acc']:.4f}, on D {o['acc']:.4f}; "
            f"transfer {o['transfer_targeted']:.4f} targeted, {o['transfer_untargeted']:.4f} untargeted")

    rows = [summarise(recipe, name, [(per[(name, s, "generated")], per[(name, s, "original")], s)
                                     for s in recipe.seeds], meta) for name in recipe.archs]
    y_key = "transfer_rate" if recipe.rate == "targeted" else "untargeted_rate"
    corr = correlation([r["acc_generated"] for r in rows], [r[y_key] for r in rows], recipe.alpha)
    others = [r for r in rows if not r["same_as_source"]]
    corr_wo = (correlation([r["acc_generated"] for r in others], [r[y_key] for r in others], recipe.alpha)
               if len(others) < len(rows) else None)
    # control: does plain accuracy on D predict the transfer rate as well (then the set adds nothing)?
    corr_d = correlation([r["acc_original"] for r in rows], [r[y_key] for r in rows], recipe.alpha)
    set_name = manifest.get("dataset") or ("d_" + recipe.attack.targets)
    report = {
        "name": recipe.name, "kind": "transfer", "advgen_version": advgen_version(), "git_sha": git_sha(),
        "device": str(device),
        "source": {"kind": recipe.source.kind, "path": recipe.source.path, "split": recipe.source.split,
                   "test_split": recipe.source.test_split, "num_train": len(original), "num_test": len(test)},
        "dataset": {"path": recipe.dataset, "set": set_name, "origin": train.origin, "num_train": len(train.labels),
                    "made_by_checkpoint_sha256": (manifest.get("checkpoint") or {}).get("sha256"),
                    "attack": (manifest.get("recipe") or {}).get("attack")},
        "source_model": {"path": recipe.source_model, "sha256": ckpt_sha, "arch": meta.get("arch"),
                         "width": meta.get("width"), "feature_dim": meta.get("feature_dim"),
                         "made_the_dataset": (manifest.get("checkpoint") or {}).get("sha256") == ckpt_sha
                         if manifest else None,
                         "test_acc": float(ex.source_clean.float().mean())},
        "attack": {**dataclasses.asdict(recipe.attack), "num_images": len(ex.labels),
                   "target_rule": "(y+1) mod C" if recipe.attack.targets == "det" else "uniform over classes != y",
                   "source_success": float(ex.fooled.float().mean()), "mean_l2": float(ex.l2.mean()),
                   "stored_as": "uint8 (rounded)", "count": recipe.count, "counted": int(ex.fooled.sum())
                   if recipe.count == "fooled" else len(ex.labels), "seconds": attack_seconds},
        "rate": recipe.rate, "seeds": list(recipe.seeds),
        "archs": rows,
        "correlation": {"x": "acc_generated", "y": y_key, **corr, "verdict": verdict(corr)},
        "correlation_without_source_arch": ({"x": "acc_generated", "y": y_key, **corr_wo, "verdict": verdict(corr_wo)}
                                            if corr_wo else None),
        "correlation_acc_on_d": {"x": "acc_original", "y": y_key, **corr_d, "verdict": verdict(corr_d)},
        "paper": {"ref": "Figure 3 (CIFAR-10, D̂det of a standard ResNet-50; values read off, per-arch unknown)",
                  "acc_range": [0.25, 0.50], "transfer_range": [0.60, 1.00]},
        "seconds": round(time.time() - t_start, 2),     # this invocation (finished models are reused)
        "compute_seconds": round(attack_seconds + sum(r["seconds"] for r in per.values()), 2),   # attack + all models
        "recipe": json.loads(json.dumps(to_dict(recipe))),
    }
    write_report(recipe, report)
    return report


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for one value)."""
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def summarise(recipe: TransferRecipe, name: str, runs: list[tuple[dict, dict, int]], meta: dict) -> dict:
    a = recipe.archs[name]
    stats = {}
    for out, part, key in (("acc_generated", 0, "acc"), ("acc_original", 1, "acc"),
                           ("transfer_rate", 1, "transfer_targeted"), ("untargeted_rate", 1, "transfer_untargeted")):
        m, s = mean_std([r[part][key] for r in runs])
        stats[out], stats[out + "_std"] = m, s
    return {
        "name": name, "title": a.title or name, "model": model_name(a.model), "arch": a.model.arch,
        "width": a.model.width, "feature_dim": a.model.feature_dim,
        "params": runs[0][1]["params"], "same_as_source": same_as_source(a.model, meta), **stats,
        "train": {part: {k: v for k, v in dataclasses.asdict(recipe.train_config(name, part)).items()
                         if k in ("epochs", "batch_size", "optimizer", "lr", "weight_decay", "milestones", "augment")}
                  for part in ("generated", "original")},
        "seconds": round(float(sum(r[0]["seconds"] + r[1]["seconds"] for r in runs)), 2),   # all its models
        "per_seed": [{"seed": s, "acc_generated": g["acc"], "acc_original": o["acc"],
                      "transfer_rate": o["transfer_targeted"], "untargeted_rate": o["transfer_untargeted"],
                      "counted": o["counted"], "train_loss_generated": g["train_loss"],
                      "train_loss_original": o["train_loss"], "seconds_generated": g["seconds"],
                      "seconds_original": o["seconds"]} for g, o, s in runs],
    }


# ----------------------------------------------------------------------------------------------
# Report: JSON, markdown, Figure 3
# ----------------------------------------------------------------------------------------------

SET_TITLE = {"d_det": "D̂det", "d_rand": "D̂rand"}


def corr_text(c: dict) -> str:
    if c["pearson_r"] is None:
        return f"undefined ({c['n']} architectures, or a constant coordinate)"
    return (f"Pearson r = {c['pearson_r']:+.2f} (p = {c['pearson_p']:.3g}), Spearman ρ = {c['spearman_rho']:+.2f} "
            f"(p = {c['spearman_p']:.3g}), {c['n']} architectures")


def verdict(c: dict) -> str:
    """'holds' (r > 0 with p < alpha), 'positive, not significant', 'does not hold' (r <= 0) or 'undefined'."""
    if c["pearson_r"] is None:
        return "undefined"
    if c["holds"]:
        return "holds"
    return "positive, not significant" if c["pearson_r"] > 0 else "does not hold"


def write_report(recipe: TransferRecipe, report: dict) -> None:
    out = recipe.out_dir
    out.mkdir(parents=True, exist_ok=True)
    figure3(report, out / "figure3.png")
    report["figures"] = {"figure3": "figure3.png"}
    write_json(out / "transfer.json", report)
    set_t = SET_TITLE.get(report["dataset"]["set"], report["dataset"]["set"])
    at, c = report["attack"], report["correlation"]
    md = [f"# Transferability (Section 3.3, Figure 3): {report['name']}", "",
          f"Per architecture and seed, one fresh model is trained on {set_t} (`{report['dataset']['path']}`, "
          f"{report['dataset']['num_train']} images) and tested on the original {report['source']['test_split']} split "
          f"({report['source']['kind']}{' ' + report['source']['path'] if report['source']['path'] else ''}, "
          f"{report['source']['num_test']} images): *acc on {set_t}*. "
          f"Another is trained on D ({report['source']['num_train']} images; *acc on D*) and shown the targeted "
          f"{at['norm']} PGD examples (ε {at['eps']:g}, {at['steps']} steps of {at['step_size']:g}, targets "
          f"{at['target_rule']}) made on the source model `{report['source_model']['path']}` "
          f"({report['source_model']['arch']}) from the first {at['num_images']} test images: *transfer* = "
          f"fraction it classifies as the target, *untargeted* = fraction not classified as the true label, over "
          f"the {at['counted']} examples " + ("that fool the source" if at["count"] == "fooled" else "made") +
          f" (the source: {100 * at['source_success']:.1f}% targeted success, mean ‖δ‖₂ {at['mean_l2']:.3f}). "
          f"Mean ± std over seeds {report['seeds']}; seconds = all of the architecture's models, on "
          f"{report['device']} (attack + every model: {report['compute_seconds']:.0f} s).", "",
          f"| architecture | model | params | acc on {set_t} | acc on D | transfer (targeted) | untargeted | seconds |",
          "|---|---|---|---|---|---|---|---|"]
    for r in report["archs"]:
        md.append(f"| {r['title']}{' (source arch)' if r['same_as_source'] else ''} | {r['model']} | "
                  f"{r['params']:,} | {pct(r['acc_generated'], r['acc_generated_std'])} | "
                  f"{pct(r['acc_original'], r['acc_original_std'])} | "
                  f"{pct(r['transfer_rate'], r['transfer_rate_std'])} | "
                  f"{pct(r['untargeted_rate'], r['untargeted_rate_std'])} | {r['seconds']:.1f} |")
    ylab = "targeted transfer" if report["rate"] == "targeted" else "untargeted transfer"
    md += ["", f"Correlation of acc on {set_t} with {ylab} (per-architecture means): {corr_text(c)}. "
               f"Verdict (holds = r > 0 with p < {c['alpha']:g}): **{verdict(c)}**."]
    cw = report["correlation_without_source_arch"]
    if cw:
        md.append(f"Without the source's own architecture: {corr_text(cw)}; {verdict(cw)}.")
    md.append(f"Control, accuracy on D (not on {set_t}) against the same rate: "
              f"{corr_text(report['correlation_acc_on_d'])}.")
    md += ["", "Paper (Figure 3, CIFAR-10, D̂det of a standard ResNet-50; five architectures): about 25–50% "
               "accuracy against 60–100% transfer, higher accuracy with higher transfer; per-architecture values "
               "are not given.", "", "![Figure 3: transfer rate against accuracy](figure3.png)", ""]
    (out / "transfer.md").write_text("\n".join(md))


def figure3(report: dict, path: Path) -> None:
    """Figure 3: transfer rate (y) against accuracy when trained on the generated set (x), one point per
    architecture (error bars: std over seeds), the least-squares line and the correlation in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y_key = report["correlation"]["y"]
    rows = report["archs"]
    xs = [100 * r["acc_generated"] for r in rows]
    ys = [100 * r[y_key] for r in rows]
    fig, ax = plt.subplots(figsize=(5.6, 4.4))
    for r, x, y in zip(rows, xs, ys):
        ax.errorbar(x, y, xerr=100 * r["acc_generated_std"], yerr=100 * r[y_key + "_std"], fmt="o",
                    color="#d62728" if r["same_as_source"] else "#1f77b4", capsize=2, markersize=5)
        ax.annotate(r["title"] + (" (source arch)" if r["same_as_source"] else ""), (x, y), textcoords="offset points",
                    xytext=(5, 4), fontsize=8)
    c = report["correlation"]
    if c["slope"] is not None:
        lo, hi = min(xs), max(xs)
        pad = 0.05 * (hi - lo)
        line = np.array([lo - pad, hi + pad])
        ax.plot(line, c["slope"] * line + 100 * c["intercept"], "--", color="grey", linewidth=1)
    set_t = SET_TITLE.get(report["dataset"]["set"], report["dataset"]["set"])
    ax.set_xlabel(f"test accuracy (%; trained on {set_t})")
    ax.set_ylabel(f"transfer success rate (%; {'targeted' if y_key == 'transfer_rate' else 'untargeted'})")
    title = f"{report['name']}: {corr_text(c).replace(', Spearman', chr(10) + 'Spearman')}"
    ax.set_title(title, fontsize=8)
    ax.margins(x=0.15, y=0.1)        # room for the labels right of the outermost points
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    """`advgen transfer RECIPE [KEY=VALUE ...]`; errors (advgen.errors) go to advgen.cli.run: one line, exit 2."""
    p = command_parser("transfer")
    args = p.parse_intermixed_args(argv)
    recipe = load_transfer_recipe(args.recipe, args.overrides)
    report = transfer(recipe)
    say(f"{recipe.name}: report -> {recipe.out_dir / 'transfer.md'}")
    for r in report["archs"]:
        print(f"  {r['title']:<16} acc on set {pct(r['acc_generated'], r['acc_generated_std']):>14}   "
              f"transfer {pct(r['transfer_rate'], r['transfer_rate_std']):>14}")
    print(f"  {corr_text(report['correlation'])}: {verdict(report['correlation'])}")
    return 0


if __name__ == "__main__":
    sys.exit(run("transfer", main))
