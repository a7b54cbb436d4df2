"""Every recipe schema (train, generate, verify, reproduce): frozen dataclasses loaded strictly from YAML, with
dotted command-line overrides.

    recipe = load_recipe("recipes/digits_det.yaml", GenerateRecipe, ["attack.eps=1.5"])
    attack = recipe.attack.build(model)          # the configured attack, ready to run on batches

Every key is checked when the YAML loads, not at the first sample: an unknown key names itself and
lists the valid ones, a value of the wrong type or out of range is quoted with the field it belongs
to. `dump_recipe` writes the resolved recipe (defaults filled in) next to every output.

A relative path inside a recipe (source.path, model.checkpoint, model.train_recipe, a verification
entry's path, a pipeline's stage recipes) that does not exist from the working directory but does next
to the recipe file is taken relative to the recipe; hub ids and absolute paths are left alone.

A generation recipe's `dataset` decides its attack: d_det / d_rand are targeted PGD (`PGDConfig`; targets
(y + 1) mod C / uniform), d_robust / d_nonrobust representation inversion (`InversionConfig`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from advgen.errors import RecipeError


def _fail(where: str, msg: str):
    raise RecipeError(f"{where}: {msg}" if where else msg)


def _check(cond: bool, where: str, msg: str):
    if not cond:
        _fail(where, msg)


# ----------------------------------------------------------------------------------------------
# Schema
# ----------------------------------------------------------------------------------------------

# scikit-learn digits: advgen's fixed split (the dataset has none), train_test_split(random_state=0, stratify=y,
# test_size=0.3) -> 1,257 train / 540 test; here (not in sources.py) so the torch-free card can print it.
DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.3


@dataclass(frozen=True)
class SourceConfig:
    """Where labelled images come from (advgen.sources)."""

    kind: Literal["hf", "digits", "imagefolder", "synthetic"] = "hf"
    path: str = ""                 # hf: hub id or local dir; imagefolder: root dir
    name: Optional[str] = None     # hf: dataset config name
    split: str = "train"           # split the dataset is generated from
    test_split: str = "test"       # split used to measure accuracy
    image_column: str = "img"      # hf: column holding the image
    label_column: str = "label"    # hf: column holding the integer label
    limit: Optional[int] = None    # keep only the first `limit` samples of each split (subsets, tests)
    test_limit: Optional[int] = None  # the test split's own limit (null = `limit`): evaluate on more or fewer images
    image_size: Optional[int] = None  # imagefolder: resize+center-crop to this size (pixels)
    # imagefolder: super-classes as inclusive ranges of the folder's class indices, e.g.
    # {dog: [[151, 268]], cat: [[281, 285]]}; images outside every range are dropped.
    class_groups: Optional[dict[str, list[list[int]]]] = None
    # synthetic: a seeded toy problem for tests (class-dependent blobs), never a paper dataset
    num_classes: int = 10
    num_samples: int = 256
    shape: list[int] = field(default_factory=lambda: [3, 16, 16])

    def validate(self, where: str):
        if self.kind in ("hf", "imagefolder"):
            _check(bool(self.path), f"{where}.path", f"source kind {self.kind!r} needs a path (hub id or directory)")
        if self.kind == "hf" and self.path.startswith(("/", "./", "../", "~")):
            _check(Path(self.path).expanduser().exists(), f"{where}.path",
                   f"local dataset {self.path!r} does not exist (give an existing directory or a hub id)")
        if self.kind == "imagefolder":
            _check(Path(self.path).is_dir(), f"{where}.path", f"directory {self.path!r} does not exist")
        _check(self.limit is None or self.limit > 0, f"{where}.limit", f"must be > 0, got {self.limit!r}")
        _check(self.test_limit is None or self.test_limit > 0, f"{where}.test_limit",
               f"must be > 0, got {self.test_limit!r}")
        _check(self.image_size is None or self.image_size > 0, f"{where}.image_size",
               f"must be > 0, got {self.image_size!r}")
        if self.class_groups is not None:
            _check(self.kind == "imagefolder", f"{where}.class_groups", "only applies to kind 'imagefolder'")
            for name, ranges in self.class_groups.items():
                for r in ranges:
                    _check(len(r) == 2 and r[0] <= r[1], f"{where}.class_groups.{name}",
                           f"each range is [first, last] with first <= last, got {r!r}")
        _check(self.num_classes >= 2, f"{where}.num_classes", f"must be >= 2, got {self.num_classes!r}")
        _check(len(self.shape) == 3 and all(s > 0 for s in self.shape), f"{where}.shape",
               f"must be [channels, height, width], got {self.shape!r}")


@dataclass(frozen=True)
class ModelConfig:
    """A classifier architecture (advgen.models.nets)."""

    arch: Literal["small_cnn", "resnet18", "resnet50", "airbench", "mlp", "gap_cnn", "wide_cnn", "tiny_vgg", "tiny_densenet", "vgg16", "densenet121", "inception_v3"] = "resnet18"
    width: int = 32                # small_cnn: channels of the first conv
    feature_dim: int = 64          # small_cnn: width of the penultimate layer (g for inversion)
    # Normalisation inside the model; null = per-channel mean/std of the training split.
    mean: Optional[list[float]] = None
    std: Optional[list[float]] = None

    def validate(self, where: str):
        _check(self.width > 0 and self.feature_dim > 0, where, "width and feature_dim must be > 0")
        for k in ("mean", "std"):
            v = getattr(self, k)
            _check(v is None or len(v) in (1, 3), f"{where}.{k}", f"must list 1 or 3 channel values, got {v!r}")
        _check(self.std is None or all(s > 0 for s in self.std), f"{where}.std", f"must be > 0, got {self.std!r}")


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation, applied batched on the device."""

    crop_padding: int = 0          # random crop after zero-padding by this many pixels (0 = off)
    flip: bool = False             # random horizontal flip
    jitter: float = 0.0            # brightness/contrast/saturation jitter strength (0 = off)
    rotate_deg: float = 0.0        # random rotation in [-deg, deg] (0 = off)

    def validate(self, where: str):
        _check(self.crop_padding >= 0, f"{where}.crop_padding", f"must be >= 0, got {self.crop_padding!r}")
        _check(self.jitter >= 0, f"{where}.jitter", f"must be >= 0, got {self.jitter!r}")
        _check(self.rotate_deg >= 0, f"{where}.rotate_deg", f"must be >= 0, got {self.rotate_deg!r}")


@dataclass(frozen=True)
class PGDConfig:
    """Targeted PGD: D̂det and D̂rand (Section 3.2). Defaults: the paper's CIFAR-10 settings (PAPER_NOTES)."""

    norm: Literal["l2", "linf"] = "l2"
    eps: float = 0.5               # radius of the perturbation ball in [0,1] pixel space
    step_size: float = 0.1         # length of one normalised step (l2) or sign step (linf)
    steps: int = 100               # number of descent steps
    random_start: bool = False     # start from a random point in the ball (paper: no)
    # [unsure] the robustness library kept the lowest-loss iterate by default (use_best=True)
    keep_best: bool = True

    def validate(self, where: str):
        _check(self.eps > 0, f"{where}.eps", f"must be > 0, got {self.eps!r}")
        _check(self.step_size > 0, f"{where}.step_size", f"must be > 0, got {self.step_size!r}")
        _check(self.steps >= 1, f"{where}.steps", f"must be >= 1, got {self.steps!r}")

    def build(self, model, autocast_dtype=None):
        """`attack(x, targets, generator=None) -> (x_adv, CE to the targets)`: targeted PGD against `model`."""
        from advgen.attacks.pgd import targeted_pgd

        return functools.partial(targeted_pgd, model, norm=self.norm, eps=self.eps, step_size=self.step_size,
                                 steps=self.steps, random_start=self.random_start, keep_best=self.keep_best,
                                 autocast_dtype=autocast_dtype)


@dataclass(frozen=True)
class AttackConfig(PGDConfig):
    """PGD outside generation: inside adversarial training (TrainConfig.adversarial, untargeted, last iterate),
    verification's adversarial entries, and `advgen transfer`'s targeted examples (which read kind and targets)."""

    kind: Literal["pgd", "inversion"] = "pgd"                # advgen transfer refuses anything but 'pgd'
    targets: Literal["rand", "det"] = "det"  # advgen transfer: rand = t uniform over classes; det = t = (y+1) mod C


@dataclass(frozen=True)
class InversionConfig:
    """Representation inversion: D̂R and D̂NR (Section 3.1), normalised l2 steps on ||g(z) - g(x)||, no eps ball."""

    step_size: float = 0.1         # length of one normalised l2 step in [0,1] pixel space (paper, CIFAR: 0.1)
    steps: int = 100               # number of descent steps (paper, CIFAR: 1000; the recipes set it)
    keep_best: bool = True         # keep each image's lowest-distance iterate
    # start image: "train" = another training image drawn independently of the label (paper, Section 3.1),
    # "noise" = uniform noise (paper, Appendix D.1)
    x0: Literal["train", "noise"] = "train"
    normalize_loss: bool = False   # [unsure] divide the feature distance by ||g(x)||

    def validate(self, where: str):
        _check(self.step_size > 0, f"{where}.step_size", f"must be > 0, got {self.step_size!r}")
        _check(self.steps >= 1, f"{where}.steps", f"must be >= 1, got {self.steps!r}")

    def build(self, model, autocast_dtype=None):
        """`attack(x, x0) -> (x_r, feature distance)`: invert `model`'s penultimate features of x from x0."""
        from advgen.attacks.inversion import invert

        return functools.partial(invert, model, steps=self.steps, step_size=self.step_size,
                                 normalize_loss=self.normalize_loss, keep_best=self.keep_best,
                                 autocast_dtype=autocast_dtype)


@dataclass(frozen=True)
class TrainConfig:
    """Supervised training (standard, or adversarial when `adversarial` is set)."""

    epochs: int = 150
    batch_size: int = 128
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: list[int] = field(default_factory=lambda: [50, 100])  # epochs where lr is divided by 10
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # adversarial training: untargeted PGD inside the loop (norm, eps, step_size, steps are used)
    adversarial: Optional[AttackConfig] = None
    eval_eps: Optional[float] = None   # also measure robust accuracy at this l2/linf eps (default: adversarial eps)
    eval_steps: int = 20               # PGD steps of the robustness evaluation
    eval_extra_eps: list[float] = field(default_factory=list)   # also measure robust accuracy at these radii

    def validate(self, where: str):
        _check(self.epochs >= 1, f"{where}.epochs", f"must be >= 1, got {self.epochs!r}")
        _check(self.batch_size >= 1, f"{where}.batch_size", f"must be >= 1, got {self.batch_size!r}")
        _check(self.lr > 0, f"{where}.lr", f"must be > 0, got {self.lr!r}")
        _check(self.weight_decay >= 0, f"{where}.weight_decay", f"must be >= 0, got {self.weight_decay!r}")
        _check(self.eval_eps is None or self.eval_eps > 0, f"{where}.eval_eps", f"must be > 0, got {self.eval_eps!r}")
        _check(all(e > 0 for e in self.eval_extra_eps), f"{where}.eval_extra_eps",
               f"must be > 0, got {self.eval_extra_eps!r}")


@dataclass(frozen=True)
class AirbenchConfig:
    """The airbench-only part of a training recipe (epochs, batch, lr, momentum, wd, augment: TrainConfig).

    With trainer "airbench", TrainConfig.lr and weight_decay are airbench's per-1,024-examples values
    (airbench94: lr 11.5, momentum 0.85, weight_decay 0.0153, batch 1024); milestones are unused.
    """

    label_smoothing: float = 0.2       # cross-entropy label smoothing
    bias_scaler: float = 64.0          # lr multiplier (not wd) for BatchNorm biases
    whiten_bias_epochs: int = 3        # epochs the whitening conv's bias trains before it is frozen
    warmup: float = 0.23               # fraction of steps of linear lr warm-up (from 0.2x to 1x)
    final_lr: float = 0.07             # lr multiplier reached at the last step (linear warm-down)
    lookahead: bool = True             # EMA-lookahead of the weights every 5 steps (decay 0.95^5 * t^3)
    whiten_samples: int = 5000         # training images used for the whitening init
    whiten_eps: float = 5e-4           # added to each patch eigenvalue: gain 1/sqrt(lambda + eps); larger caps the gain
                                       # of the directions natural images barely use (a lever, LEVERS.md)
    whiten_drop: int = 0               # blind the whitening to the N lowest-variance patch directions (their filters
                                       # copy kept ones): on a 4:2:0 JPEG copy of CIFAR-10 the 6 lowest are chroma
                                       # detail the encoder removed (levers/jpeg); a lever, LEVERS.md
    whiten: bool = True                # false: the first 2x2 conv is an ordinary conv (default init, trained with
                                       # the rest, bias never frozen): a lever on the input-space geometry
    bf16: bool = True                  # autocast the forward to bf16 on CUDA (ignored on CPU)

    def validate(self, where: str):
        _check(0 <= self.label_smoothing < 1, f"{where}.label_smoothing",
               f"must be in [0, 1), got {self.label_smoothing!r}")
        _check(0 <= self.warmup < 1, f"{where}.warmup", f"must be in [0, 1), got {self.warmup!r}")
        _check(self.whiten_samples >= 1, f"{where}.whiten_samples", f"must be >= 1, got {self.whiten_samples!r}")
        _check(self.whiten_eps > 0, f"{where}.whiten_eps", f"must be > 0, got {self.whiten_eps!r}")
        _check(isinstance(self.whiten_drop, int) and self.whiten_drop >= 0, f"{where}.whiten_drop",
               f"must be an integer >= 0 (patch directions to drop), got {self.whiten_drop!r}")


@dataclass(frozen=True)
class OutputConfig:
    dir: str = "runs/out"          # output directory (shards/, data/, manifest.json)
    shard_size: int = 1000         # samples per WebDataset shard (fixed partition of source indices)
    npy: bool = False              # also store the lossless float32 image (x_adv before rounding)
    hf_export: bool = True         # write parquet + README so `load_dataset(dir)` works

    def validate(self, where: str):
        _check(self.dir.strip() != "", f"{where}.dir", "is empty; give the output a directory of its own, "
               "e.g. output.dir=runs/x")
        _check(self.shard_size >= 1, f"{where}.shard_size", f"must be >= 1, got {self.shard_size!r}")


@dataclass(frozen=True)
class SourceModelRef:
    """The source model of a generation recipe: a checkpoint, or a training recipe built once and cached."""

    checkpoint: Optional[str] = None
    train_recipe: Optional[str] = None

    def validate(self, where: str):
        _check((self.checkpoint is None) != (self.train_recipe is None), where,
               "give exactly one of 'checkpoint' (a .safetensors or PyTorch .pt path) or 'train_recipe' "
               "(a training recipe path)")
        if self.train_recipe is not None:
            _check(Path(self.train_recipe).is_file(), f"{where}.train_recipe",
                   f"file {self.train_recipe!r} does not exist")
        if self.checkpoint is not None:
            _check(Path(self.checkpoint).is_file(), f"{where}.checkpoint",
                   f"file {self.checkpoint!r} does not exist; train one with `advgen train RECIPE` "
                   "or name a train_recipe instead")


@dataclass(frozen=True)
class TrainRecipe:
    """`advgen train RECIPE`: train a source model and write a checkpoint (safetensors + JSON)."""

    name: str
    source: SourceConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    trainer: Literal["fit", "airbench"] = "fit"   # fit: advgen.models.train.fit; airbench: models/airbench.py
    airbench: AirbenchConfig = field(default_factory=AirbenchConfig)   # trainer "airbench" only
    checkpoint: str = "cache/model.safetensors"   # where the trained weights go
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def validate(self, where: str = ""):
        _check(self.checkpoint.endswith(".safetensors"), "checkpoint",
               f"must end in .safetensors, got {self.checkpoint!r}")
        _check(self.seed >= 0, "seed", f"must be >= 0, got {self.seed!r}")
        _check(self.trainer != "airbench" or self.model.arch == "airbench", "trainer",
               f"trainer 'airbench' trains model.arch 'airbench' only, got {self.model.arch!r}")


# The paper's four sets: which attack makes each, and (PGD) the target rule.
ATTACK_OF = {"d_det": PGDConfig, "d_rand": PGDConfig, "d_robust": InversionConfig, "d_nonrobust": InversionConfig}
TARGETS_OF = {"d_det": "det", "d_rand": "rand"}      # det: t = (y + 1) mod C; rand: t uniform over the C classes


@dataclass(frozen=True)
class GenerateRecipe:
    """`advgen generate RECIPE` / `accelerate launch advgen/generate.py RECIPE`."""

    name: str
    source: SourceConfig
    model: SourceModelRef
    # which of the paper's sets; it decides the attack: d_det / d_rand targeted PGD (targets (y+1) mod C /
    # uniform, stored with label t), d_robust / d_nonrobust representation inversion (stored with label y)
    dataset: Literal["d_det", "d_rand", "d_robust", "d_nonrobust"] = "d_det"
    attack: Union[PGDConfig, InversionConfig] = field(default_factory=PGDConfig)   # the block `dataset` names
    output: OutputConfig = field(default_factory=OutputConfig)
    # images per attack batch (fixed: results do not depend on world size); "auto": the largest that fits on a
    # GPU (from 1024 down), 250 on CPU
    batch_size: Union[int, Literal["auto"]] = 250
    seed: int = 0
    # Speed (advgen.models.fast.prepare); "auto" = the fastest the hardware runs natively. The resolved values go
    # into the manifest. Perturbation, step and projection are fp32 whatever these say.
    precision: Literal["auto", "fp32", "bf16"] = "auto"   # autocast dtype of the model's forward/backward
    channels_last: Union[bool, Literal["auto"]] = "auto"  # NHWC (auto: on)
    compile: Union[bool, Literal["auto"]] = "auto"        # torch.compile the model (auto: off, see fast.py)
    fuse_bn: bool = True                                  # fold eval BatchNorm into the conv before it (exact)
    # CUDA only: deterministic cuDNN/cuBLAS kernels and no autotuning, so with a fixed batch_size the bytes do not
    # depend on the number of processes or on resumes (same GPU model and library versions); false: faster kernels
    deterministic: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @staticmethod
    def field_types(data: dict) -> dict:
        """The schema of the attack block follows `dataset` (an unknown dataset is reported by its own field)."""
        dataset = data.get("dataset", "d_det")
        return {"attack": ATTACK_OF[dataset]} if isinstance(dataset, str) and dataset in ATTACK_OF else {}

    @property
    def targets(self) -> Optional[str]:
        """The target rule of a PGD set ("det" or "rand"); None for an inversion set."""
        return TARGETS_OF.get(self.dataset)

    def validate(self, where: str = ""):
        _check(self.seed >= 0, "seed", f"must be >= 0, got {self.seed!r}")
        _check(self.batch_size == "auto" or self.batch_size >= 1, "batch_size",
               f"must be >= 1 or 'auto', got {self.batch_size!r}")
        want = ATTACK_OF[self.dataset]
        _check(type(self.attack) is want, "attack",
               f"dataset {self.dataset!r} is made with {want.__name__}, not {type(self.attack).__name__}")


# ----------------------------------------------------------------------------------------------
# Verification (advgen verify)
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

    def seeds_of(self, entry: DatasetEntry) -> list[int]:
        return list(entry.seeds) if entry.seeds is not None else list(self.seeds)

    def train_config(self, entry: DatasetEntry) -> TrainConfig:
        """The recipe's training with the entry's own lr, epochs, augmentation and (adversarial) attack."""
        t = self.train
        return dataclasses.replace(t, lr=entry.lr if entry.lr is not None else t.lr,
                                   epochs=entry.epochs if entry.epochs is not None else t.epochs,
                                   augment=entry.augment if entry.augment is not None else t.augment,
                                   adversarial=entry.adversarial)

    def only(self, names: list[str]) -> "VerifyRecipe":
        """The recipe restricted to `names` (recipe order kept); orderings about other sets are dropped."""
        unknown = [n for n in names if n not in self.datasets]
        if unknown:
            raise RecipeError(f"--only: {unknown[0]!r} is not a dataset of {self.name} ({', '.join(self.datasets)})")
        keep = {k: e for k, e in self.datasets.items() if k in names}
        orderings = [o for o in self.orderings if all(n in keep for n in claim_names(o))]
        return dataclasses.replace(self, datasets=keep, orderings=orderings, grid=[n for n in self.grid if n in keep])


# ----------------------------------------------------------------------------------------------
# Pipeline (advgen reproduce)
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StageRef:
    """One stage of a pipeline: the stage's own recipe file plus overrides applied on top of it."""

    recipe: str                    # a train, generate or verify recipe (relative paths: to the pipeline recipe)
    overrides: list[str] = field(default_factory=list)   # dotted KEY=VALUE overrides, e.g. ["train.epochs=10"]

    def validate(self, where: str):
        _check(Path(self.recipe).is_file(), f"{where}.recipe", f"file {self.recipe!r} does not exist")
        for i, text in enumerate(self.overrides):
            _check("=" in text, f"{where}.overrides[{i}]", f"expected KEY=VALUE, got {text!r}")


PIPELINE_DATASETS = ("d_robust", "d_nonrobust", "d_rand", "d_det")


@dataclass(frozen=True)
class ReproduceRecipe:
    """`advgen reproduce RECIPE`: Table 1 / Figure 2b in one command, as a chain of stage recipes.

    The pipeline fills in what links the stages (each generation's source model, every output dir, the
    verification's dataset paths); everything else comes from the stage recipes and their overrides.
    """

    name: str
    standard_model: StageRef       # training recipe of the standard source model (D̂NR, D̂rand, D̂det)
    robust_model: StageRef         # training recipe of the adversarially trained source model (D̂R)
    datasets: dict[str, StageRef]  # d_robust, d_nonrobust, d_rand, d_det -> their generation recipes
    verify: StageRef               # verification recipe naming the four sets and the two baselines
    dir: str = "runs/reproduce"    # every stage writes under here: models/, datasets/, verify/, stages/
    # overrides applied to every stage recipe, before the stage's own (e.g. source.path=../shared/data/cifar10)
    common: list[str] = field(default_factory=list)
    min_success: float = 0.9       # targeted success D̂rand / D̂det must reach (fraction of the set)
    # Throughput assumed by `--plan` to turn FLOPs into time, per device kind (achieved, not peak).
    plan_tflops: dict[str, float] = field(default_factory=lambda: {"cuda": 250.0, "cpu": 0.1})

    def validate(self, where: str = ""):
        _check(sorted(self.datasets) == sorted(PIPELINE_DATASETS), "datasets",
               f"list exactly {', '.join(PIPELINE_DATASETS)}, got {', '.join(self.datasets) or 'none'}")
        _check(0.0 <= self.min_success <= 1.0, "min_success", f"must be in [0, 1], got {self.min_success!r}")
        _check(bool(self.dir), "dir", "must name a directory")
        _check(all(v > 0 for v in self.plan_tflops.values()), "plan_tflops", f"must be > 0, got {self.plan_tflops!r}")


# ----------------------------------------------------------------------------------------------
# Strict loading
# ----------------------------------------------------------------------------------------------

def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", str(tp))


def _coerce(tp, value, where: str):
    """Check `value` against the annotation `tp`; build nested dataclasses. Raises RecipeError."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, where)
            except RecipeError:
                if len([x for x in args if x is not type(None)]) == 1:
                    raise
        _fail(where, f"expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            _fail(where, f"unknown value {value!r}; choose one of {', '.join(repr(c) for c in choices)}")
        return value
    if origin is list:
        if not isinstance(value, list):
            _fail(where, f"expected a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            _fail(where, f"expected a mapping, got {value!r}")
        kt, vt = typing.get_args(tp)
        # an entry of a mapping of blocks set to null is left out (e.g. verify.datasets.d_det_leak=null)
        return {_coerce(kt, k, where): _coerce(vt, v, f"{where}.{k}") for k, v in value.items()
                if not (v is None and dataclasses.is_dataclass(vt))}
    if tp is bool:
        if not isinstance(value, bool):
            _fail(where, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(where, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(where, f"expected a number, got {value!r}")
        number = float(value) if isinstance(value, float) or abs(value) < 2 ** 1023 else math.inf
        if not math.isfinite(number):     # JSON has no inf/nan: the manifest could not record them
            _fail(where, f"expected a finite number, got {value!r}")
        return number
    if tp is str:
        if not isinstance(value, str):
            _fail(where, f"expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {tp!r} at {where}")  # a bug in the schema, not the recipe


def _build(cls, data, where: str):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        _fail(where, f"expected a mapping of {cls.__name__} fields, got {data!r}")
    hints = typing.get_type_hints(cls)
    chosen = cls.field_types(data) if hasattr(cls, "field_types") else {}    # a block whose schema a key decides
    hints.update(chosen)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        prefix = f"{where}." if where else ""
        _fail("", f"unknown key {prefix + unknown[0]!r}; valid keys{' of ' + where if where else ''}: "
                  f"{', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        sub = f"{where}.{name}" if where else name
        if name in data:
            kwargs[name] = _coerce(hints[name], data[name], sub)
        elif name in chosen:
            kwargs[name] = _coerce(hints[name], {}, sub)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            _fail(sub, "missing required key")
    obj = cls(**kwargs)
    if hasattr(obj, "validate"):
        obj.validate(where)
    return obj


def parse_override(text: str) -> tuple[list[str], Any]:
    """'attack.eps=0.25' -> (['attack', 'eps'], 0.25); the value is parsed as YAML."""
    if "=" not in text:
        raise RecipeError(f"override {text!r} is not KEY=VALUE (e.g. attack.eps=0.25)")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as e:
        raise RecipeError(f"override {text!r}: value is not valid YAML ({e.problem})") from None
    return key.strip().split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    data = dict(data)
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for k in keys[:-1]:
            child = node.get(k)
            child = dict(child) if isinstance(child, dict) else {}
            node[k] = child
            node = child
        node[keys[-1]] = value
    return data


# Keys that hold a local path ("*": any name, e.g. a verification entry or a pipeline's dataset stage).
_PATH_KEYS = {("source", "path"), ("model", "checkpoint"), ("model", "train_recipe"), ("checkpoint",),
              ("standard_model", "recipe"), ("robust_model", "recipe"), ("verify", "recipe"),
              ("datasets", "*", "recipe"), ("datasets", "*", "path")}


def _is_path_key(key: tuple) -> bool:
    return any(len(key) == len(p) and all(a == b or b == "*" for a, b in zip(key, p)) for p in _PATH_KEYS)


def _resolve_paths(data: dict, base: Path, prefix=()):
    """Relative input paths that do not exist from the cwd are taken relative to the recipe file, then to the two
    directories above it (recipes name each other as `recipes/x.yaml`, from the repo root), so a recipe works from
    any directory; outputs (output.dir, a train recipe's cache) stay relative to the cwd."""
    for k, v in list(data.items()):
        key = prefix + (k,)
        if isinstance(v, dict):
            _resolve_paths(v, base, key)
        elif _is_path_key(key) and isinstance(v, str) and v and not os.path.isabs(v) and not Path(v).exists():
            candidate = next((b / v for b in (base, *base.parents)[:3] if (b / v).exists()), None)
            if candidate is not None:
                data[k] = os.path.normpath(str(candidate))


def packaged_recipes_dir() -> Optional[Path]:
    """recipes/ of the source tree, or the copy installed as advgen/recipes (pyproject package-dir)."""
    here = Path(__file__).resolve().parent
    return next((d for d in (here.parent / "recipes", here / "recipes") if (d / "digits_det.yaml").is_file()), None)


def find_recipe(name: str | os.PathLike) -> Path:
    """A recipe file: `name` itself when it exists, else the recipe of that name shipped with advgen
    ("digits_det", "digits_det.yaml", "fast/d_det"), so `advgen generate digits_det` works from any directory."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = packaged_recipes_dir()
    if shipped is not None and not path.is_absolute() and ".." not in path.parts:
        for candidate in (shipped / path, shipped / f"{path}.yaml"):
            if candidate.is_file():
                return candidate
    names = sorted(p.relative_to(shipped).with_suffix("").as_posix() for p in shipped.rglob("*.yaml")) if shipped \
        else []
    close = [n for n in names if path.stem in n][:5]
    raise RecipeError(f"recipe file {str(name)!r} does not exist and is not a recipe shipped with advgen"
                      + (f" (did you mean {', '.join(close)}?)" if close else
                         f" ({len(names)} shipped, e.g. digits_det, cifar_det, reproduce_cpu)" if names else ""))


def load_recipe(path: str | os.PathLike, cls, overrides: list[str] = ()):
    """Load a recipe YAML strictly into `cls` (a file, or the name of a shipped recipe), applying dotted overrides
    first."""
    path = find_recipe(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of keys, got {type(data).__name__}")
    data = apply_overrides(data, list(overrides))
    _resolve_paths(data, path.parent)
    try:
        return _build(cls, data, "")
    except RecipeError as e:
        raise RecipeError(f"{path}: {e}") from None


def from_dict(cls, data: dict):
    return _build(cls, data, "")


def to_dict(recipe) -> dict:
    return dataclasses.asdict(recipe)


def non_default(obj):
    """The fields of a recipe dataclass that differ from their defaults, recursively (a dict). A field added to a
    schema later, with a default, leaves the keys of stages made before it unchanged."""
    if not dataclasses.is_dataclass(obj):
        return obj
    out = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if f.default is not dataclasses.MISSING and v == f.default:
            continue
        if f.default_factory is not dataclasses.MISSING and v == f.default_factory():
            continue
        out[f.name] = non_default(v) if dataclasses.is_dataclass(v) else (
            {k: non_default(x) for k, x in v.items()} if isinstance(v, dict) else v)
    return out


def saved_differences(saved, recipe) -> list[str]:
    """Where a resolved recipe written earlier (an output's recipe.yaml, a checkpoint's JSON) differs from `recipe`,
    as 'key: old -> new'. Keys this schema no longer has are skipped: they were dropped because they changed nothing
    (attack.kind and attack.targets of a generation recipe, now implied by `dataset`; x0 and normalize_loss of a
    PGD block). Fields added to the schema since `saved` was written count as their defaults."""
    if isinstance(saved, dict) and dataclasses.is_dataclass(recipe):
        saved = _with_defaults(type(recipe), saved)
    return _diff(saved, json.loads(json.dumps(to_dict(recipe))))


def _with_defaults(cls, data: dict) -> dict:
    """`data` with every field of dataclass `cls` it lacks filled in with that field's default (recursively)."""
    hints = typing.get_type_hints(cls)
    out = dict(data)
    for f in dataclasses.fields(cls):
        if f.name in out:
            if dataclasses.is_dataclass(hints[f.name]) and isinstance(out[f.name], dict):
                out[f.name] = _with_defaults(hints[f.name], out[f.name])
            continue
        if f.default is not dataclasses.MISSING:
            v = f.default
        elif f.default_factory is not dataclasses.MISSING:
            v = f.default_factory()
        else:
            continue
        out[f.name] = json.loads(json.dumps(to_dict(v) if dataclasses.is_dataclass(v) else v))
    return out


def _diff(old, new, prefix=""):
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in new:
            out += _diff(old.get(k), new[k], f"{prefix}{k}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


def dump_recipe(recipe, path: str | os.PathLike):
    Path(path).write_text(yaml.safe_dump(to_dict(recipe), sort_keys=False))
