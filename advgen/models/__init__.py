"""Models: architectures (nets.py), checkpoint I/O (checkpoint.py), training loops (train.py)."""

from __future__ import annotations

import json
from pathlib import Path

from advgen.models.checkpoint import (CheckpointError, load_checkpoint, read_meta, readable_sha256, save_checkpoint,
                                      sha256_file)
from advgen.models.nets import Classifier, build_classifier

__all__ = ["Classifier", "CheckpointError", "build_classifier", "load_checkpoint", "read_meta",
           "save_checkpoint", "sha256_file", "resolve_checkpoint"]


CONVERTED_DIR = Path("cache/converted")


def resolve_checkpoint(ref, train_if_missing: bool = True) -> str:
    """Path of the source model's checkpoint for a generation recipe's `model:` block.

    `checkpoint:` is used as is when it is one of ours (.safetensors + .json); a PyTorch file (a plain state dict
    or the robustness library's layout, read with weights_only=True) is converted once into
    cache/converted/<name>-<sha256[:12]>.safetensors and that is used. `train_recipe:` is trained once and cached
    at that recipe's `checkpoint` path; it is retrained only when the cached JSON records a different recipe.
    """
    if ref.checkpoint is not None:
        src = Path(ref.checkpoint)
        if src.suffix == ".safetensors":
            return ref.checkpoint
        dst = CONVERTED_DIR / f"{src.stem}-{readable_sha256(src)[:12]}.safetensors"
        if not (dst.is_file() and dst.with_suffix(".json").is_file()):
            if not train_if_missing:
                raise CheckpointError(f"{ref.checkpoint!r} is not converted yet (expected {str(dst)!r})")
            from advgen.models.convert import convert_checkpoint

            dst.parent.mkdir(parents=True, exist_ok=True)
            convert_checkpoint(src, dst, overwrite=True)
            print(f"converted {ref.checkpoint} -> {dst} (advgen convert-checkpoint does this explicitly)")
        return str(dst)
    from advgen.recipe import TrainRecipe, load_recipe, to_dict

    recipe = load_recipe(ref.train_recipe, TrainRecipe)
    path = Path(recipe.checkpoint)
    meta_file = path.with_suffix(".json")
    if path.is_file() and meta_file.is_file():
        try:
            cached = json.loads(meta_file.read_text()).get("recipe")
        except (ValueError, OSError, AttributeError):     # a broken JSON is no cache: train again
            cached = None
        if cached == json.loads(json.dumps(to_dict(recipe))):
            return str(path)
    if not train_if_missing:
        raise CheckpointError(f"checkpoint for {ref.train_recipe!r} is not built yet")
    from advgen.models.train import train_model

    train_model(recipe)
    return str(path)
