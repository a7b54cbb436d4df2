"""RobustBench models as source models: D̂R from today's robust CIFAR-10 models instead of the paper's ResNet-50.

    model = load_robustbench("Wang2023Better_WRN-28-10", "cifar10", "L2", features="logits:input")
    model(x)            # [0,1] images -> logits (the RobustBench model itself)
    model.features(x)   # the chosen layer's output (or input), flattened: g(x) for the inversion
    advgen convert-checkpoint models cache/wang_l2.safetensors --robustbench Wang2023Better_WRN-28-10 \\
        --features logits:input     # then `model: {checkpoint: cache/wang_l2.safetensors}` in a d_robust recipe

Where the weights come from (`robustbench` must be installed: `pip install robustbench` or `advgen[robustbench]`;
the architecture is always the package's own model-zoo entry, `robustbench.model_zoo.models.model_dicts`):

- `checkpoint=FILE`: that file, offline;
- else `{model_dir}/{dataset}/{threat_model}/{name}.pt` (RobustBench's own cache layout, model_dir default
  `./models` as in RobustBench) when it exists, offline;
- else online: `robustbench.utils.load_model(...)` downloads it into that layout and builds the model. RobustBench
  reads the file with torch.load's default, which is weights_only=True only from torch 2.6 on, so older torch is
  refused (download it elsewhere and pass the file).

Offline files are read with torch.load(weights_only=True) (advgen.models.files.read_torch_file): a dict with
'state_dict' or a plain state dict; 'module.' and 'model.' prefixes are stripped with RobustBench's own
`rm_substr_from_state_dict`, as its loader does. Ensemble entries (several files) are not supported.

Inputs: every RobustBench model takes [0,1] pixels (the benchmark feeds ToTensor images, AutoAttack works in the
[0,1] box) and normalises inside when it was trained with normalisation (DMWideResNet's mean/std,
Engstrom2019Robustness' mu/sigma; Sehwag2021Proxy_R18 was trained on raw [0,1] pixels). advgen adds nothing: the
saved JSON records mean 0 and std 1 with `normalization: "inside the RobustBench model"`.

The features layer is chosen explicitly, never guessed: `NAME` (a module of the RobustBench net, e.g. `layer.3`) is
that module's output, `NAME:input` its input (RobustBench nets pool with F.avg_pool2d, so the penultimate features
g are the input of the final Linear: `logits:input` for DMWideResNet/DMPreActResNet, `fc:input` for WideResNet,
`linear:input` for ResNet). The layer must run exactly once per forward; a Conv2d output or a BatchNorm2d input is
refused because advgen folds BatchNorm into the conv before it for attacks (fuse_bn), which changes those values.
Capture is a forward hook registered for the call only, so deep copies (fuse_bn) keep working.

Saved checkpoints (safetensors + JSON, arch "robustbench") are rebuilt by `build_from_meta` below, which
advgen.models.checkpoint.build_from_meta calls for that arch.

Tests: python -m pytest -q tests/test_robustbench.py
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn

from advgen.errors import CheckpointError
from advgen.models.files import one_line, read_torch_file, readable_sha256

INSTALL_HINT = "pip install robustbench (or pip install 'advgen[robustbench]')"
DEFAULT_MODEL_DIR = "./models"          # robustbench.utils.load_model's default
INPUT_SIZE = {"cifar10": 32, "cifar100": 32, "imagenet": 224}
# normalisation constants some architectures set themselves; RobustBench's loader also tolerates them missing
NORM_BUFFERS = ("mu", "sigma", "mean", "std")
INSIDE = "inside the RobustBench model"


# ----------------------------------------------------------------------------------------------
# The robustbench package
# ----------------------------------------------------------------------------------------------

def import_robustbench():
    """(model_zoo.models, model_zoo.enums, utils) of the installed robustbench; a CheckpointError if it is missing.

    robustbench <= 1.1.1's package __init__ imports its data loaders, which need setuptools' pkg_resources (removed
    in setuptools 81). The model zoo and `utils.load_model` do not: when only that import fails, the package is
    registered without running its __init__ (robustbench.load_cifar10 & co. then stay unavailable, as they were).
    """
    names = ("robustbench.model_zoo.models", "robustbench.model_zoo.enums", "robustbench.utils")
    try:
        return _import_quietly(names)
    except ModuleNotFoundError as e:
        if e.name is not None and e.name.split(".")[0] == "robustbench":
            raise CheckpointError(f"RobustBench models need the robustbench package, which is not installed: "
                                  f"{INSTALL_HINT}") from None
        if e.name != "pkg_resources":
            raise CheckpointError(f"the robustbench package cannot be imported ({one_line(e, 200)}); "
                                  f"reinstall it: {INSTALL_HINT}") from None
    spec = importlib.util.find_spec("robustbench")
    sys.modules["robustbench"] = importlib.util.module_from_spec(spec)    # the package, minus its __init__
    try:
        return _import_quietly(names)
    except ImportError as e:
        del sys.modules["robustbench"]
        raise CheckpointError(f"the robustbench package cannot be imported ({one_line(e, 200)}); "
                              f"reinstall it: {INSTALL_HINT}") from None


def _import_quietly(names) -> tuple:
    """The modules, without the deprecation notices robustbench and timm print on import (torch.jit.interface,
    timm.models.layers...): they are not the user's to fix, and the CLI would print each one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return tuple(importlib.import_module(n) for n in names)


def robustbench_version() -> Optional[str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("robustbench")
    except PackageNotFoundError:
        return None


def zoo_entry(name: str, dataset: str = "cifar10", threat_model: str = "L2") -> dict:
    """The model-zoo entry ({'model': constructor, 'gdrive_id': ...}) of `name`; unknown names are a CheckpointError."""
    zoo, enums, _ = import_robustbench()
    try:
        ds = enums.BenchmarkDataset(dataset)
    except ValueError:
        raise CheckpointError(f"unknown RobustBench dataset {dataset!r}; choose "
                              f"{', '.join(d.value for d in enums.BenchmarkDataset)}") from None
    try:
        tm = enums.ThreatModel(threat_model)
    except ValueError:
        raise CheckpointError(f"unknown RobustBench threat model {threat_model!r}; choose "
                              f"{', '.join(t.value for t in enums.ThreatModel)}") from None
    models = zoo.model_dicts.get(ds, {}).get(tm)
    if not models:
        raise CheckpointError(f"RobustBench has no {dataset}/{threat_model} models")
    if name not in models:
        close = difflib.get_close_matches(name, list(models), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"e.g. {', '.join(list(models)[:4])}"
        raise CheckpointError(f"unknown RobustBench model {name!r} for {dataset}/{threat_model} "
                              f"({len(models)} known; {hint}); see robustbench.model_zoo.models.model_dicts")
    entry = models[name]
    if isinstance(entry.get("gdrive_id"), (list, tuple)):
        raise CheckpointError(f"RobustBench model {name!r} is an ensemble of {len(entry['gdrive_id'])} checkpoints; "
                              "advgen loads single models only")
    return entry


def layout_path(name: str, dataset: str = "cifar10", threat_model: str = "L2", model_dir=None) -> Path:
    """Where RobustBench keeps `name`'s weights: {model_dir}/{dataset}/{threat_model}/{name}.pt."""
    return Path(model_dir if model_dir is not None else DEFAULT_MODEL_DIR) / dataset / threat_model / f"{name}.pt"


# ----------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------

def parse_features(spec) -> tuple[str, bool]:
    """'NAME' -> (NAME, False: its output); 'NAME:input' -> (NAME, True); 'NAME:output' -> (NAME, False)."""
    if not isinstance(spec, str) or not spec.strip():
        raise CheckpointError(f"features must name a layer of the RobustBench net (NAME or NAME:input, e.g. "
                              f"'logits:input' for the penultimate features), got {spec!r}")
    layer, _, side = spec.strip().partition(":")
    if side not in ("", "input", "output"):
        raise CheckpointError(f"features {spec!r}: after ':' comes 'input' or 'output', not {side!r}")
    return layer, side == "input"


def feature_choices(net: nn.Module) -> list[str]:
    """Suggested feature layers: the final Linear's input (the penultimate features) first, then the top-level
    modules (any module name is accepted, NAME or NAME:input)."""
    linears = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    out = [f"{linears[-1]}:input"] if linears else []
    return out + [n for n, m in net.named_children() if n not in linears[-1:] and not isinstance(m, nn.Conv2d)]


class RobustBenchModel(nn.Module):
    """A RobustBench net as an advgen source model: [0,1] images -> logits, `features(x)` = the chosen layer.

    Same interface as advgen.models.nets.Classifier (forward, features, features_and_logits); `model` is the
    RobustBench net itself, so state-dict keys are `model.<the net's keys>`.
    """

    def __init__(self, net: nn.Module, features: str, info: Optional[dict] = None):
        super().__init__()
        self.model = net
        self.feature_spec = features
        self.layer, self.take_input = parse_features(features)
        self.info = dict(info or {})           # name, dataset, threat_model (not weights: not in the state dict)
        modules = dict(net.named_modules())
        module = modules.get(self.layer) if self.layer else None
        if module is None:
            raise CheckpointError(
                f"unknown features layer {self.layer!r} for RobustBench model {self.info.get('name', type(net).__name__)!r}; "
                f"valid choices: {', '.join(repr(c) for c in feature_choices(net))} (the first is the penultimate "
                "features), or any module name of the net, NAME or NAME:input")
        if isinstance(module, nn.Conv2d) and not self.take_input or \
                isinstance(module, nn.modules.batchnorm._BatchNorm) and self.take_input:
            raise CheckpointError(f"features {features!r} is a {'BatchNorm input' if self.take_input else 'Conv2d output'}, "
                                  "which advgen's attacks change by folding BatchNorm into the conv (fuse_bn); choose "
                                  "the BatchNorm's output or a later layer")

    def _capture(self, x) -> tuple[torch.Tensor, torch.Tensor, int]:
        seen = []
        module = self.model.get_submodule(self.layer)     # looked up per call: fuse_bn may have replaced it
        if self.take_input:
            handle = module.register_forward_pre_hook(lambda m, args: seen.append(args[0] if args else None))
        else:
            handle = module.register_forward_hook(lambda m, args, out: seen.append(out))
        try:
            logits = self.model(x)
        finally:
            handle.remove()
        if not seen or not isinstance(seen[-1], torch.Tensor):
            raise CheckpointError(f"features layer {self.feature_spec!r} gave no tensor in the forward pass; "
                                  "choose a layer that runs once on a tensor")
        return seen[-1].flatten(1), logits, len(seen)

    def features(self, x):
        return self._capture(x)[0]

    def forward(self, x):
        return self.model(x)

    def features_and_logits(self, x):
        f, logits, _ = self._capture(x)
        return f, logits

    @torch.no_grad()
    def probe(self, in_channels: int = 3, size: int = 32) -> tuple[int, int]:
        """(feature_dim, num_classes) from one blank image; the layer must run exactly once per forward."""
        p = next(iter(self.model.parameters()), None)
        x = torch.zeros(1, in_channels, size, size, device=p.device if p is not None else "cpu")
        try:
            f, logits, calls = self._capture(x)
        except RuntimeError as e:
            raise CheckpointError(f"RobustBench model {self.info.get('name')!r} does not run on a "
                                  f"{in_channels}x{size}x{size} image ({one_line(e, 200)})") from None
        if calls != 1:
            raise CheckpointError(f"features layer {self.feature_spec!r} runs {calls} times per forward; choose one "
                                  f"that runs once, e.g. {feature_choices(self.model)[0]!r}")
        if logits.dim() != 2:
            raise CheckpointError(f"RobustBench model {self.info.get('name')!r} gives outputs of shape "
                                  f"{tuple(logits.shape)}, not [batch, classes]")
        return f.shape[1], logits.shape[1]


def _freeze(model: nn.Module) -> nn.Module:
    model.eval()
    model.requires_grad_(False)
    return model


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------

def read_state_dict(path, name: str) -> dict:
    """The net's weights from a file in RobustBench's layout, read with torch.load(weights_only=True), unwrapped and
    with prefixes stripped as robustbench.utils.load_model does."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"RobustBench checkpoint {str(path)!r} does not exist; download it with robustbench "
                              "(online: leave out checkpoint/SRC file and give the model dir) or give another file")
    obj = read_torch_file(path)
    if ("Kireev2021Effectiveness" in name or name == "Andriushchenko2020Understanding") \
            and isinstance(obj, Mapping) and "last" in obj:
        obj = obj["last"]                      # as RobustBench: the last of ('last', 'best')
    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not (isinstance(obj, Mapping) and obj and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                     for k, v in obj.items())):
        keys = sorted(map(str, obj))[:6] if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(f"RobustBench checkpoint {str(path)!r} holds no state dict (a dict of tensors, or one "
                              f"under 'state_dict'); found {keys}")
    _, _, rb_utils = import_robustbench()
    state = rb_utils.rm_substr_from_state_dict(dict(obj), "module.")
    return dict(rb_utils.rm_substr_from_state_dict(state, "model."))


def _load_weights(net: nn.Module, state: dict, name: str, path) -> None:
    """Load `state` into `net` (RobustBench's architecture); a mismatch is a CheckpointError naming the keys."""
    own = net.state_dict()
    if own and all(k.startswith("model.") for k in own) and not any(k.startswith("model.") for k in state):
        state = {"model." + k: v for k, v in state.items()}     # ImageNet entries wrap the net with its normalisation
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as e:          # a tensor of the wrong shape
        first = next((ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln), str(e))
        raise CheckpointError(f"RobustBench checkpoint {str(path)!r} does not fit the architecture of {name!r}: "
                              f"{one_line(first, 200)}") from None
    buffers = dict(net.named_buffers())
    missing = [k for k in missing if not (k in buffers and k.rsplit(".", 1)[-1] in NORM_BUFFERS + ("num_batches_tracked",))]
    if missing:
        raise CheckpointError(f"RobustBench checkpoint {str(path)!r} does not match the architecture of {name!r}: "
                              f"{len(missing)} weights missing (first: {missing[:3]}); is it {name}'s file?")
    if unexpected:
        warnings.warn(f"{Path(path).name}: ignoring {len(unexpected)} entries {name!r} does not use "
                      f"(first: {unexpected[:3]})", stacklevel=3)


def _online(name: str, dataset: str, threat_model: str, model_dir) -> nn.Module:
    """robustbench.utils.load_model: downloads into {model_dir}/{dataset}/{threat_model}/{name}.pt and builds it."""
    weights_only_default = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 6)
    forced_off = os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "0").lower() in ("1", "y", "yes", "true")
    if not weights_only_default or forced_off:
        raise CheckpointError(f"RobustBench's loader unpickles with torch.load's default, which executes code on this "
                              f"torch ({torch.__version__}{', TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD set' if forced_off else ''}"
                              f"); use torch >= 2.6, or download {name}.pt elsewhere and pass it as the checkpoint file")
    _, _, rb_utils = import_robustbench()
    try:
        net = rb_utils.load_model(model_name=name, model_dir=str(model_dir), dataset=dataset,
                                  threat_model=threat_model)
    except Exception as e:  # noqa: BLE001 - network, gdown and unpickling errors of a third-party loader
        raise CheckpointError(f"robustbench could not load {name!r} ({type(e).__name__}: {one_line(e, 200)}); "
                              f"offline, put the file at {str(layout_path(name, dataset, threat_model, model_dir))!r} "
                              "or pass it as the checkpoint file") from None
    return net


def load_robustbench(name: str, dataset: str = "cifar10", threat_model: str = "L2", model_dir=None,
                     checkpoint=None, features: Optional[str] = None, device="cpu") -> RobustBenchModel:
    """An eval-mode, frozen RobustBenchModel: [0,1] images -> logits, `.features(x)` = the `features` layer.

    checkpoint: a file in RobustBench's layout (offline). Otherwise {model_dir}/{dataset}/{threat_model}/{name}.pt
    is used when present, and downloaded through robustbench.utils.load_model when not. `features` is required
    (see the module docstring); after loading, `model.info` names the model and the weights file (`path`, `sha256`).
    """
    parse_features(features)                        # a missing/malformed spec fails before any download
    entry = zoo_entry(name, dataset, threat_model)
    path = Path(checkpoint) if checkpoint is not None else layout_path(name, dataset, threat_model, model_dir)
    info = {"name": name, "dataset": dataset, "threat_model": threat_model}
    if checkpoint is not None or path.is_file():
        state = read_state_dict(path, name)
        net = entry["model"]()
        _load_weights(net, state, name, path)
    else:
        net = _online(name, dataset, threat_model, model_dir if model_dir is not None else DEFAULT_MODEL_DIR)
    if path.is_file():
        info.update(path=str(path), sha256=readable_sha256(path))
    model = RobustBenchModel(net, features, info)
    _freeze(model)
    model.info["feature_dim"], model.info["num_classes"] = model.probe(3, INPUT_SIZE.get(dataset, 32))
    return _freeze(model.to(device))


# ----------------------------------------------------------------------------------------------
# advgen checkpoints (safetensors + JSON)
# ----------------------------------------------------------------------------------------------

def robustbench_meta(model: RobustBenchModel) -> dict:
    """The JSON of an advgen checkpoint holding `model` (arch "robustbench"; rebuilt by build_from_meta)."""
    i = model.info
    meta = {"arch": "robustbench", "num_classes": i["num_classes"], "in_channels": 3, "width": None,
            "feature_dim": i["feature_dim"], "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0],
            "normalization": INSIDE,
            "robustbench": {"name": i["name"], "dataset": i["dataset"], "threat_model": i["threat_model"],
                            "features": model.feature_spec, "package_version": robustbench_version()},
            "source_format": "robustbench",
            "adversarial": i["threat_model"] in ("L2", "Linf") and i["name"] != "Standard",
            "metrics": {}}
    if "sha256" in i:
        meta["converted_from"] = {"name": Path(i["path"]).name, "sha256": i["sha256"]}
    return meta


def build_from_meta(meta: dict, path=None) -> RobustBenchModel:
    """The RobustBench architecture a checkpoint JSON (arch "robustbench") describes, with its features layer
    (weights from the architecture's init: load_checkpoint overwrites them from the safetensors)."""
    where = str(path) if path is not None else "the checkpoint JSON"
    rb = meta.get("robustbench")
    if not isinstance(rb, dict) or not all(isinstance(rb.get(k), str) for k in ("name", "dataset", "threat_model",
                                                                                 "features")):
        raise CheckpointError(f"{where!r} has arch 'robustbench' but no robustbench block with name, dataset, "
                              "threat_model and features; re-convert it with advgen convert-checkpoint --robustbench")
    entry = zoo_entry(rb["name"], rb["dataset"], rb["threat_model"])
    model = RobustBenchModel(entry["model"](), rb["features"], dict(rb))
    _freeze(model)
    feature_dim, num_classes = model.probe(meta.get("in_channels", 3), INPUT_SIZE.get(rb["dataset"], 32))
    if (feature_dim, num_classes) != (meta.get("feature_dim"), meta.get("num_classes")):
        raise CheckpointError(f"{where!r} records feature_dim {meta.get('feature_dim')} and {meta.get('num_classes')} "
                              f"classes, but {rb['name']} with features {rb['features']!r} gives {feature_dim} and "
                              f"{num_classes} (another robustbench version?); re-convert the checkpoint")
    model.info.update(feature_dim=feature_dim, num_classes=num_classes)
    return model
