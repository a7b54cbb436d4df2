"""Typed recipes: frozen dataclasses loaded strictly from YAML, with dotted command-line overrides.

    recipe = load_recipe("recipes/digits_det.yaml", GenerateRecipe, ["attack.eps=1.5"])

Every key is checked when the YAML loads, not at the first sample: an unknown key names itself and
lists the valid ones, a value of the wrong type or out of range is quoted with the field it belongs
to. `dump_recipe` writes the resolved recipe (defaults filled in) next to every output.

A relative path inside a recipe (source.path, model.checkpoint, model.train_recipe) that does not
exist from the working directory but does next to the recipe file is taken relative to the recipe;
hub ids and absolute paths are left alone.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml


class RecipeError(ValueError):
    """A recipe that cannot be used; the message names the key, the value and the fix."""


def _fail(where: str, msg: str):
    raise RecipeError(f"{where}: {msg}" if where else msg)


def _check(cond: bool, where: str, msg: str):
    if not cond:
        _fail(where, msg)


# ----------------------------------------------------------------------------------------------
# Schema
# ----------------------------------------------------------------------------------------------

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
class AttackConfig:
    """Targeted PGD (D̂rand / D̂det) or representation inversion (D̂R / D̂NR).

    Defaults are the paper's CIFAR-10 settings for targeted PGD (PAPER_NOTES, Section 3.2).
    """

    kind: Literal["pgd", "inversion"] = "pgd"
    norm: Literal["l2", "linf"] = "l2"
    eps: float = 0.5               # radius of the perturbation ball in [0,1] pixel space
    step_size: float = 0.1         # length of one normalised step (l2) or sign step (linf)
    steps: int = 100               # number of descent steps
    targets: Literal["rand", "det"] = "det"  # rand: t uniform over classes; det: t = (y+1) mod C
    random_start: bool = False     # start from a random point in the ball (paper: no)
    # [unsure] the robustness library kept the lowest-loss iterate by default (use_best=True)
    keep_best: bool = True
    # inversion only: start image: "train" = another training image drawn independently of the
    # label (paper, Section 3.1), "noise" = uniform noise (paper, Appendix D.1)
    x0: Literal["train", "noise"] = "train"
    # inversion only: [unsure] divide the feature distance by ||g(x)||
    normalize_loss: bool = False

    def validate(self, where: str):
        _check(self.eps > 0, f"{where}.eps", f"must be > 0, got {self.eps!r}")
        _check(self.step_size > 0, f"{where}.step_size", f"must be > 0, got {self.step_size!r}")
        _check(self.steps >= 1, f"{where}.steps", f"must be >= 1, got {self.steps!r}")


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
    bf16: bool = True                  # autocast the forward to bf16 on CUDA (ignored on CPU)

    def validate(self, where: str):
        _check(0 <= self.label_smoothing < 1, f"{where}.label_smoothing",
               f"must be in [0, 1), got {self.label_smoothing!r}")
        _check(0 <= self.warmup < 1, f"{where}.warmup", f"must be in [0, 1), got {self.warmup!r}")
        _check(self.whiten_samples >= 1, f"{where}.whiten_samples", f"must be >= 1, got {self.whiten_samples!r}")


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


@dataclass(frozen=True)
class GenerateRecipe:
    """`advgen generate RECIPE` / `accelerate launch advgen/generate.py RECIPE`."""

    name: str
    source: SourceConfig
    model: SourceModelRef
    attack: AttackConfig = field(default_factory=AttackConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    dataset: Literal["d_det", "d_rand", "d_robust", "d_nonrobust"] = "d_det"  # which of the paper's sets
    # images per attack batch (fixed: results do not depend on world size); "auto": the largest that fits on a
    # GPU (from 1024 down), 250 on CPU
    batch_size: Union[int, Literal["auto"]] = 250
    seed: int = 0
    # Speed (advgen.attacks.fast.prepare); "auto" = the fastest the hardware runs natively. The resolved values go
    # into the manifest. Perturbation, step and projection are fp32 whatever these say.
    precision: Literal["auto", "fp32", "bf16"] = "auto"   # autocast dtype of the model's forward/backward
    channels_last: Union[bool, Literal["auto"]] = "auto"  # NHWC (auto: on)
    compile: Union[bool, Literal["auto"]] = "auto"        # torch.compile the model (auto: off, see fast.py)
    fuse_bn: bool = True                                  # fold eval BatchNorm into the conv before it (exact)
    # CUDA only: deterministic cuDNN/cuBLAS kernels and no autotuning, so with a fixed batch_size the bytes do not
    # depend on the number of processes or on resumes (same GPU model and library versions); false: faster kernels
    deterministic: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def validate(self, where: str = ""):
        _check(self.seed >= 0, "seed", f"must be >= 0, got {self.seed!r}")
        _check(self.batch_size == "auto" or self.batch_size >= 1, "batch_size",
               f"must be >= 1 or 'auto', got {self.batch_size!r}")
        kinds = {"d_det": "pgd", "d_rand": "pgd", "d_robust": "inversion", "d_nonrobust": "inversion"}
        _check(kinds[self.dataset] == self.attack.kind, "attack.kind",
               f"dataset {self.dataset!r} is made with attack.kind {kinds[self.dataset]!r}, got {self.attack.kind!r}")
        if self.dataset in ("d_det", "d_rand"):
            want = self.dataset[2:]
            _check(self.attack.targets == want, "attack.targets",
                   f"dataset {self.dataset!r} needs targets {want!r}, got {self.attack.targets!r}")


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
        return {_coerce(kt, k, where): _coerce(vt, v, f"{where}.{k}") for k, v in value.items()}
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


_PATH_KEYS = {("source", "path"), ("model", "checkpoint"), ("model", "train_recipe"), ("checkpoint",),
              ("dataset_path",), ("test_source", "path"), ("standard_model", "recipe"), ("robust_model", "recipe"),
              ("verify", "recipe"), ("datasets", "d_robust", "recipe"), ("datasets", "d_nonrobust", "recipe"),
              ("datasets", "d_rand", "recipe"), ("datasets", "d_det", "recipe")}


def _resolve_paths(data: dict, base: Path, prefix=()):
    """Paths starting with ./ or ../ that do not exist from the cwd are taken relative to the recipe."""
    for k, v in list(data.items()):
        key = prefix + (k,)
        if isinstance(v, dict):
            _resolve_paths(v, base, key)
        elif key in _PATH_KEYS and isinstance(v, str) and v and not os.path.isabs(v) and not Path(v).exists():
            candidate = base / v
            if candidate.exists():
                data[k] = os.path.normpath(str(candidate))


def load_recipe(path: str | os.PathLike, cls, overrides: list[str] = ()):
    """Load a recipe YAML strictly into `cls`, applying dotted overrides first."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe file {str(path)!r} does not exist")
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


def dump_recipe(recipe, path: str | os.PathLike):
    Path(path).write_text(yaml.safe_dump(to_dict(recipe), sort_keys=False))
