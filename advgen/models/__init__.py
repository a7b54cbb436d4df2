"""Models: architectures (nets.py), checkpoint I/O (checkpoint.py), training loops (train.py)."""

from __future__ import annotations

import json
from pathlib import Path

from advgen.models.checkpoint import CheckpointError, load_checkpoint, read_meta, save_checkpoint, sha256_file
from advgen.models.nets import Classifier, build_classifier

__all__ = ["Classifier", "CheckpointError", "build_classifier", "load_checkpoint", "read_meta",
           "save_checkpoint", "sha256_file", "resolve_checkpoint"]


def resolve_checkpoint(ref, train_if_missing: bool = True) -> str:
    """Path of the source model's checkpoint for a generation recipe's `model:` block.

    `checkpoint:` is used as is. `train_recipe:` is trained once and cached at that recipe's
    `checkpoint` path; it is retrained only when the cached JSON records a different recipe.
    """
    if ref.checkpoint is not None:
        return ref.checkpoint
    from advgen.recipe import TrainRecipe, load_recipe, to_dict

    recipe = load_recipe(ref.train_recipe, TrainRecipe)
    path = Path(recipe.checkpoint)
    meta_file = path.with_suffix(".json")
    if path.is_file() and meta_file.is_file():
        cached = json.loads(meta_file.read_text()).get("recipe")
        if cached == json.loads(json.dumps(to_dict(recipe))):
            return str(path)
    if not train_if_missing:
        raise CheckpointError(f"checkpoint for {ref.train_recipe!r} is not built yet")
    from advgen.models.train import train_model

    train_model(recipe)
    return str(path)
