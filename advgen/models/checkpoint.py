"""Checkpoints: weights as safetensors, everything else in a JSON beside them (never a pickle).

    save_checkpoint(model, "cache/digits_standard.safetensors", meta)
    model = load_checkpoint("cache/digits_standard.safetensors")    # eval mode, frozen, [0,1] -> logits

PyTorch files (.pt, the robustness library's checkpoints) are read by advgen.models.convert, which also writes
them out in this format; `advgen.models.load_model(path)` takes either.

The JSON (`X.json` next to `X.safetensors`) holds arch, num_classes, in_channels, width,
feature_dim, mean, std, the sha256 of the weights file, the resolved training recipe and the measured
test accuracy. Loading checks all of it: a JSON that is not one, names an unknown arch or lacks a key,
weights whose bytes no longer match the recorded sha256 or whose shapes do not fit the architecture,
and a file that cannot be read are each a one-line CheckpointError.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from advgen.cli import CONVERTIBLE_ARCHS
from advgen.errors import CheckpointError
from advgen.models.nets import Classifier, build_classifier
from advgen.models.robustbench import build_from_meta as build_robustbench
from advgen.models.files import readable_sha256
from advgen.writers.layout import sha256_file

ARCHS = CONVERTIBLE_ARCHS        # ("small_cnn", "resnet18", "resnet50"), named in advgen.cli for --help
ARCH_KEYS = ("arch", "num_classes", "in_channels", "width", "feature_dim", "mean", "std")


def meta_path(path) -> Path:
    return Path(path).with_suffix(".json")


def save_checkpoint(model: Classifier, path, meta: dict):
    """Write weights then JSON, each atomically (tmp + rename), so a crash never leaves a half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    missing = [k for k in ARCH_KEYS if k not in meta]
    if missing:
        raise ValueError(f"checkpoint meta lacks {missing}")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt", "arch": meta["arch"]})
    tmp.replace(path)
    meta = dict(meta, sha256=sha256_file(path))
    jtmp = meta_path(path).with_name(meta_path(path).name + ".tmp")
    jtmp.write_text(json.dumps(meta, indent=2))
    jtmp.replace(meta_path(path))


def read_meta(path) -> dict:
    mp = meta_path(path)
    if not mp.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} has no {mp.name} beside it; "
                              "convert it with `advgen convert-checkpoint SRC DST`")
    try:
        meta = json.loads(mp.read_text())
    except OSError as e:
        raise CheckpointError(f"{str(mp)!r} cannot be read ({e.strerror or e}); fix its permissions") from None
    except ValueError as e:
        raise CheckpointError(f"{str(mp)!r} is not valid JSON ({e}); re-save or re-convert the checkpoint") from None
    missing = [k for k in ARCH_KEYS if k not in meta] if isinstance(meta, dict) else list(ARCH_KEYS)
    if missing:
        raise CheckpointError(f"{str(mp)!r} is not an advgen checkpoint JSON (no {', '.join(missing)}); "
                              "re-save or re-convert the checkpoint")
    return meta


def build_from_meta(meta: dict, path=None) -> Classifier:
    """The architecture the JSON describes (random weights); a JSON no model can be built from is a CheckpointError."""
    if meta.get("arch") == "robustbench":      # a RobustBench model (advgen convert-checkpoint --robustbench)
        return build_robustbench(meta, path)
    try:
        return build_classifier(meta["arch"], meta["num_classes"], meta["in_channels"], meta["mean"], meta["std"],
                                meta.get("width", 32), meta.get("feature_dim", 64))
    except (ValueError, TypeError, RuntimeError) as e:     # unknown arch, a string where a number goes...
        raise CheckpointError(f"{str(meta_path(path)) if path else 'the checkpoint JSON'!r} describes no model "
                              f"advgen can build ({' '.join(str(e).split())[:200]}); re-save or re-convert the "
                              "checkpoint") from None


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    """Eval mode (BN uses running stats) and no parameter gradients: attacks only need d/dx."""
    model.eval()
    model.requires_grad_(False)
    return model


def load_checkpoint(path, arch=None, device="cpu") -> Classifier:
    """Eval-mode, frozen Classifier from X.safetensors + X.json; `arch`, if given, must match the JSON.
    (A PyTorch file: advgen.models.load_model.)"""
    path = Path(path)
    if arch is not None and arch not in ARCHS:   # also catches a device passed positionally
        raise CheckpointError(f"unknown arch {arch!r}; choose {', '.join(ARCHS)}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    if path.suffix != ".safetensors":
        raise CheckpointError(f"checkpoint {str(path)!r} is not .safetensors; a PyTorch file is read by "
                              "advgen.models.load_model, or converted once with `advgen convert-checkpoint SRC DST`")
    meta = read_meta(path)
    if arch is not None and meta["arch"] != arch:
        raise CheckpointError(f"checkpoint {str(path)!r} holds {meta['arch']} weights, not the requested "
                              f"arch {arch!r}")
    digest = readable_sha256(path)
    model = build_from_meta(meta, path)
    try:
        state = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for truncated/corrupt files
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt ({e}); retrain or re-download it") from None
    if meta.get("sha256") is not None and digest != meta["sha256"]:     # readable, but not the bytes that were saved
        raise CheckpointError(f"checkpoint {str(path)!r} does not match the sha256 recorded in "
                              f"{meta_path(path).name} ({digest[:12]}… vs {str(meta['sha256'])[:12]}…): the weights "
                              "changed after they were saved; retrain, re-download or re-convert it")
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:            # a tensor of the wrong shape for the JSON's architecture
        first = next((line.strip() for line in str(e).splitlines() if "size mismatch" in line), str(e))
        raise CheckpointError(f"checkpoint {str(path)!r}: the weights do not fit the architecture in "
                              f"{meta_path(path).name} ({meta['arch']}, width {meta.get('width')}, feature_dim "
                              f"{meta.get('feature_dim')}, {meta['in_channels']} channels, {meta['num_classes']} "
                              f"classes): {first[:200]}; fix the JSON or re-convert the checkpoint") from None
    if missing or unexpected:
        raise CheckpointError(f"checkpoint {str(path)!r} does not match arch {meta['arch']!r}: "
                              f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    return freeze(model.to(device))
