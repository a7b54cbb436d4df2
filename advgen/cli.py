"""The `advgen` console script: one sub-command per stage.

    advgen train recipes/digits_standard.yaml
    advgen generate recipes/digits_det.yaml [KEY=VALUE ...] [--overwrite]
"""

from __future__ import annotations

import argparse
import sys


def _train(argv) -> int:
    from advgen.models.checkpoint import CheckpointError
    from advgen.models.train import train_model
    from advgen.recipe import RecipeError, TrainRecipe, load_recipe

    p = argparse.ArgumentParser(prog="advgen train", description="Train a source model from a recipe.")
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.epochs=5")
    args = p.parse_args(argv)
    try:
        train_model(load_recipe(args.recipe, TrainRecipe, args.overrides))
    except (RecipeError, CheckpointError) as e:
        print(f"advgen train: error: {e}", file=sys.stderr)
        return 2
    return 0


def _generate(argv) -> int:
    from advgen.generate import main

    return main(argv)


COMMANDS = {
    "train": (_train, "train a source model (standard or adversarial) and write a checkpoint"),
    "generate": (_generate, "generate a dataset (also: accelerate launch advgen/generate.py RECIPE)"),
}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: advgen COMMAND [ARGS]\n\ncommands:")
        for name, (_, help_) in COMMANDS.items():
            print(f"  {name:<20} {help_}")
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nadvgen: error: unknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    return COMMANDS[argv[0]][0](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
