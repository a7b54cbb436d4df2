"""Load existing PyTorch checkpoints (ours, bare nets, MadryLab `robustness`) safely, and convert them.

    model, meta = load_torch_checkpoint("cifar_l2_0_5.pt")           # eval mode, frozen, [0,1] -> logits
    advgen convert-checkpoint cifar_l2_0_5.pt cache/robust.safetensors [--arch resnet50] [--mean ..] [--std ..]
    advgen convert-checkpoint models cache/rb.safetensors --robustbench NAME --features logits:input   (robustbench.py)

`load_model(path)` takes either kind of file: `.safetensors` (advgen.models.checkpoint) or a PyTorch file.
Understood layouts (after unwrapping `{'model': ...}` / `{'state_dict': ...}` and one DataParallel
`module.` prefix):

- `robustness`: `model.*` (the net), `normalizer.new_mean/new_std` ([3,1,1] buffers), and copies
  under `attacker.model.*` / `attacker.normalize.*` (ignored; a warning if they differ);
- our `Classifier`: `normalize.mean/std` + `model.*`;
- a bare net (`conv1.weight`, ...): no normalisation stored, so mean/std come from the arguments or
  default to CIFAR-10's (with a warning).

The architecture (small_cnn / resnet18 / resnet50), num_classes and in_channels are read off the
weight names and shapes; an `arch=` argument must agree. Every file is read with
`torch.load(..., weights_only=True)`: a file holding arbitrary Python objects is refused with a
CheckpointError and none of its code runs.

Tests: python -m pytest -q tests/test_convert.py
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Optional

import torch

from advgen.cli import command_parser, run
from advgen.errors import CheckpointError, UsageError
from advgen.models.checkpoint import ARCHS, freeze, load_checkpoint, meta_path, read_meta, save_checkpoint
from advgen.models.files import one_line, read_torch_file, readable_sha256
from advgen.models.nets import CIFAR_MEAN, CIFAR_STD, Classifier, build_net
from advgen.writers.layout import sha256_file

# (block kind, blocks per stage) of the CIFAR ResNets in nets.py / robustness cifar_models/resnet.py
RESNETS = {("basic", (2, 2, 2, 2)): "resnet18", ("bottleneck", (3, 4, 6, 3)): "resnet50"}
# keys under which training scripts nest the weights: robustness uses 'model' (older: 'state_dict')
WRAPPER_KEYS = ("model", "state_dict", "model_state_dict", "net")


def _is_state_dict(obj) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def unwrap_state_dict(obj, path) -> tuple[dict, dict]:
    """The weights of a loaded file, and the training info beside them (epoch)."""
    if _is_state_dict(obj):
        return dict(obj), {}
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint {str(path)!r} holds a {type(obj).__name__}, not a state dict")
    for key in WRAPPER_KEYS:
        if _is_state_dict(obj.get(key)):
            info = {}
            epoch = obj.get("epoch")
            if isinstance(epoch, torch.Tensor) and epoch.numel() == 1:
                epoch = epoch.item()
            if isinstance(epoch, int) and not isinstance(epoch, bool):
                info["epoch"] = epoch
            return dict(obj[key]), info
    raise CheckpointError(f"checkpoint {str(path)!r} holds no state dict: top-level keys "
                          f"{sorted(map(str, obj))[:8]}, none of {list(WRAPPER_KEYS)} maps names to tensors")


def _strip(state: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _vec(t: torch.Tensor) -> list[float]:
    # float32 -> Python float is exact, so mean/std survive JSON and rebuild bit-identically
    return [float(x) for x in t.detach().float().flatten()]


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    # torch.load keeps shared storage, so in a genuine file the copies are the same memory: skip the compare
    if (a.data_ptr(), a.shape, a.stride(), a.dtype) == (b.data_ptr(), b.shape, b.stride(), b.dtype):
        return True
    return a.shape == b.shape and torch.equal(a, b)


def split_layout(state: dict, path) -> tuple[str, dict, list | None, list | None]:
    """(layout, net state dict, mean or None, std or None); layout is robustness|classifier|bare."""
    if all(k.startswith("module.") for k in state):    # saved from nn.DataParallel
        state = _strip(state, "module.")
    keys = set(state)
    if any(k.startswith(("normalizer.", "attacker.")) for k in keys):
        net = _strip(state, "model.") or _strip(state, "attacker.model.")
        twin = _strip(state, "attacker.model.")
        if twin and (twin.keys() != net.keys() or any(not _same(twin[k], net[k]) for k in net)):
            # the library's attacker shares the very same module, so a genuine file has equal copies
            warnings.warn(f"{Path(path).name}: module.attacker.model.* differs from module.model.*; "
                          "using module.model.*", stacklevel=3)
        norms = [p for p in ("normalizer.", "attacker.normalize.") if f"{p}new_mean" in keys and f"{p}new_std" in keys]
        if not norms:
            raise CheckpointError(f"checkpoint {str(path)!r} looks like a robustness-library checkpoint "
                                  "but has no normalizer.new_mean/new_std")
        mean, std = _vec(state[norms[0] + "new_mean"]), _vec(state[norms[0] + "new_std"])
        if len(norms) == 2 and (mean, std) != (_vec(state[norms[1] + "new_mean"]),
                                              _vec(state[norms[1] + "new_std"])):
            warnings.warn(f"{Path(path).name}: attacker.normalize differs from normalizer; using normalizer",
                          stacklevel=3)
        return "robustness", net, mean, std
    if "normalize.mean" in keys and "normalize.std" in keys:
        extra = sorted(k for k in keys if not k.startswith(("model.", "normalize.")))
        if extra:
            raise CheckpointError(f"checkpoint {str(path)!r} has unexpected keys {extra[:3]} beside "
                                  "normalize.* and model.*")
        return "classifier", _strip(state, "model."), _vec(state["normalize.mean"]), _vec(state["normalize.std"])
    if all(k.startswith("model.") for k in keys):       # a wrapper that kept no normalisation
        state = _strip(state, "model.")
    return "bare", state, None, None


def infer_arch(net: dict, path) -> dict:
    """arch, num_classes, in_channels, width, feature_dim read off the names and shapes of a net's weights."""
    def shape(key):
        if key not in net:
            raise CheckpointError(f"checkpoint {str(path)!r}: cannot infer the architecture, no {key!r} among "
                                  f"its weights (first keys: {sorted(net)[:4]})")
        return tuple(net[key].shape)

    if "fc.weight" in net and "layer1.0.conv1.weight" in net:
        raise CheckpointError(f"checkpoint {str(path)!r} is an ImageNet-style ResNet (fc head, 7x7 stem); only the "
                              "CIFAR ResNets (robustness cifar_models: resnet18, resnet50) are supported")
    c_out, in_channels = shape("conv1.weight")[:2]
    num_classes, feature_dim = shape("linear.weight")
    if "fc.weight" in net and "conv3.weight" in net and not any(k.startswith("layer") for k in net):
        return {"arch": "small_cnn", "num_classes": num_classes, "in_channels": in_channels, "width": c_out,
                "feature_dim": feature_dim}
    if "layer1.0.conv1.weight" not in net:
        raise CheckpointError(f"checkpoint {str(path)!r}: weights match none of {', '.join(ARCHS)} "
                              f"(first keys: {sorted(net)[:4]})")
    block = "bottleneck" if "layer1.0.conv3.weight" in net else "basic"
    counts = tuple(len({k.split(".")[1] for k in net if k.startswith(f"layer{i}.")}) for i in range(1, 5))
    arch = RESNETS.get((block, counts))
    if arch is None or c_out != 64:
        raise CheckpointError(f"checkpoint {str(path)!r} is a ResNet with {block} blocks {list(counts)} and "
                              f"stem width {c_out}; only the CIFAR resnet18 (basic [2, 2, 2, 2]) and resnet50 "
                              "(bottleneck [3, 4, 6, 3]) with width 64 are supported")
    return {"arch": arch, "num_classes": num_classes, "in_channels": in_channels, "width": 64,
            "feature_dim": feature_dim}


def _resolve_norm(name, stored, given, in_channels, path) -> list[float] | None:
    if given is not None:
        given = [float(x) for x in given]
        if len(given) != in_channels:
            raise CheckpointError(f"--{name} has {len(given)} values but the model takes {in_channels} channels")
        if stored is not None and any(abs(a - b) > 1e-6 for a, b in zip(given, stored)):
            raise CheckpointError(f"checkpoint {str(path)!r} stores {name} {stored}, which disagrees with the "
                                  f"given {given}; drop the argument to use the stored one")
    if stored is not None and len(stored) != in_channels:
        raise CheckpointError(f"checkpoint {str(path)!r} stores a {len(stored)}-channel {name} for a "
                              f"{in_channels}-channel model")
    return stored if stored is not None else given


def load_torch_checkpoint(path, arch: str | None = None, mean=None, std=None) -> tuple[Classifier, dict]:
    """(eval-mode frozen Classifier on CPU, meta in our JSON format) from a .pt/.pth/.ckpt file.

    mean/std are needed only for a bare net (else they must agree with the stored ones).
    """
    path = Path(path)
    if arch is not None and arch not in ARCHS:
        raise CheckpointError(f"unknown arch {arch!r}; choose {', '.join(ARCHS)}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    digest = readable_sha256(path)   # also surfaces unreadable files as one clear error
    state, info = unwrap_state_dict(read_torch_file(path), path)
    layout, net, stored_mean, stored_std = split_layout(state, path)
    shape = infer_arch(net, path)
    if arch is not None and arch != shape["arch"]:
        raise CheckpointError(f"checkpoint {str(path)!r} holds {shape['arch']} weights, not the requested "
                              f"arch {arch!r}")
    c = shape["in_channels"]
    mean = _resolve_norm("mean", stored_mean, mean, c, path)
    std = _resolve_norm("std", stored_std, std, c, path)
    norm_from = "checkpoint" if stored_mean is not None else "arguments"
    if mean is None or std is None:
        if c != 3:
            raise CheckpointError(f"checkpoint {str(path)!r} stores no input normalisation and has {c} input "
                                  "channels; give mean and std (--mean/--std)")
        # a wrong mean/std silently shifts every input, so defaulting must never be quiet
        norm_from = "default" if (mean, std) == (None, None) else "arguments+default"
        mean, std = mean or list(CIFAR_MEAN), std or list(CIFAR_STD)
        warnings.warn(f"{path.name} stores no input normalisation; using mean {mean} and std {std} "
                      "(CIFAR-10 defaults where not given); pass mean/std (--mean/--std) if the model was "
                      "trained with others", UserWarning, stacklevel=2)

    # built on the meta device: random init of a ResNet-50 costs more than the whole load, and every
    # entry is overwritten from the file (checked below)
    with torch.device("meta"):
        net_module = build_net(shape["arch"], shape["num_classes"], c, shape["width"], shape["feature_dim"])
    net_module = net_module.to_empty(device="cpu")
    for k, v in net_module.state_dict().items():
        if k.endswith("num_batches_tracked"):   # PyTorch < 0.4.1 files lack it; eval-mode BN never reads it
            v.zero_()
    try:
        missing, unexpected = net_module.load_state_dict(net, strict=False)
    except RuntimeError as e:  # shape mismatch
        raise CheckpointError(f"checkpoint {str(path)!r} does not fit {shape['arch']}: "
                              f"{one_line(e, 200)}") from None
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise CheckpointError(f"checkpoint {str(path)!r} does not match arch {shape['arch']!r}: "
                              f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    model = Classifier(net_module, mean, std)
    meta = dict(shape, mean=list(mean), std=list(std),
                source_format="robustness" if layout == "robustness" else "state_dict",
                layout=layout, normalization_from=norm_from,
                converted_from={"name": path.name, "sha256": digest}, **info, metrics={})
    return freeze(model), meta


def load_model(path, arch: str | None = None, device="cpu") -> Classifier:
    """Eval-mode, frozen Classifier from X.safetensors + X.json or from a PyTorch file (.pt/.pth/.ckpt/...: the
    robustness library saves `checkpoint.pt.best`, so every other suffix is read as one, with weights_only=True)."""
    if Path(path).suffix == ".safetensors":
        return load_checkpoint(path, arch=arch, device=device)
    if arch is not None and arch not in ARCHS:
        raise CheckpointError(f"unknown arch {arch!r}; choose {', '.join(ARCHS)}")
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    model, _ = load_torch_checkpoint(path, arch=arch)
    return freeze(model.to(device))


def convert_checkpoint(src, dst, arch: str | None = None, mean=None, std=None, overwrite: bool = False) -> dict:
    """Write DST (.safetensors) + DST.json from SRC (a torch file, or one of our checkpoints); return the meta."""
    src, dst = Path(src), Path(dst)
    if dst.suffix != ".safetensors":
        raise CheckpointError(f"destination {str(dst)!r} must end in .safetensors")
    if dst.resolve() == src.resolve():
        raise CheckpointError("source and destination are the same file")
    if not overwrite and (dst.exists() or dst.with_suffix(".json").exists()):
        raise CheckpointError(f"destination {str(dst)!r} exists; pass --overwrite to replace it")
    if src.suffix == ".safetensors":
        # one of ours: re-save it (validates it, and records where it came from); keeps recipe/metrics
        if mean is not None or std is not None:
            raise CheckpointError("--mean/--std apply only to torch files; an advgen checkpoint stores them")
        model = load_checkpoint(src, arch=arch)
        meta = read_meta(src)
        meta.pop("sha256", None)   # the source's own hash; save_checkpoint writes DST's
        meta.update(source_format="advgen", converted_from={"name": src.name, "sha256": sha256_file(src)})
        meta.setdefault("metrics", {})
    else:
        model, meta = load_torch_checkpoint(src, arch=arch, mean=mean, std=std)
    save_checkpoint(model, dst, meta)
    return json.loads(meta_path(dst).read_text())


def convert_robustbench(dst, name: str, dataset: str = "cifar10", threat_model: str = "L2", model_dir=None,
                        checkpoint=None, features: Optional[str] = None, overwrite: bool = False) -> dict:
    """Write DST (.safetensors) + DST.json holding RobustBench model `name`; returns the meta as written."""
    from advgen.models.robustbench import load_robustbench, robustbench_meta

    dst = Path(dst)
    if dst.suffix != ".safetensors":
        raise CheckpointError(f"destination {str(dst)!r} must end in .safetensors")
    if not overwrite and (dst.exists() or meta_path(dst).exists()):
        raise CheckpointError(f"destination {str(dst)!r} exists; pass --overwrite to replace it")
    model = load_robustbench(name, dataset, threat_model, model_dir=model_dir, checkpoint=checkpoint,
                             features=features)
    save_checkpoint(model, dst, robustbench_meta(model))
    return json.loads(meta_path(dst).read_text())


def main(argv=None) -> int:
    """`advgen convert-checkpoint SRC DST [--arch ARCH] [--mean M M M] [--std S S S] [--overwrite]`;
    `advgen convert-checkpoint SRC DST --robustbench NAME --features LAYER [--dataset D] [--threat-model T]`."""
    p = command_parser("convert-checkpoint")
    args = p.parse_args(argv)
    if args.robustbench is None and args.features is not None:
        raise UsageError("--features applies only with --robustbench NAME")
    if args.robustbench is not None and (args.arch or args.mean or args.std):
        raise UsageError("--arch/--mean/--std do not apply with --robustbench (the zoo entry fixes the architecture)")
    if args.robustbench is not None and args.features is None:
        raise UsageError("--robustbench needs --features LAYER (e.g. logits:input, the penultimate features)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if args.robustbench is not None:
                src_dir = not (Path(args.src).is_file() or Path(args.src).suffix in (".pt", ".pth", ".ckpt"))
                meta = convert_robustbench(args.dst, args.robustbench, args.dataset, args.threat_model,
                                           model_dir=args.src if src_dir else None,
                                           checkpoint=None if src_dir else args.src,
                                           features=args.features, overwrite=args.overwrite)
            else:
                meta = convert_checkpoint(args.src, args.dst, args.arch, args.mean, args.std, args.overwrite)
        except (CheckpointError, OSError) as e:
            error = one_line(e, 600)
        else:
            error = None
    for w in caught:   # one line each, not the warnings module's two-line format
        print(f"advgen convert-checkpoint: warning: {one_line(w.message, 600)}", file=sys.stderr)
    if error is not None:
        raise CheckpointError(error)
    if args.robustbench is not None:
        print(f"{args.src} (RobustBench {args.robustbench}, features {args.features}: {meta['feature_dim']}-d, "
              f"{meta['num_classes']} classes) -> {args.dst}")
        return 0
    print(f"{args.src} ({meta['source_format']}, {meta['arch']}, {meta['num_classes']} classes) -> {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(run("convert-checkpoint", main))
