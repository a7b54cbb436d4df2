"""The `advgen` console script: one sub-command per stage, each a module with `main(argv) -> int`.

    advgen train recipes/digits_standard.yaml
    advgen generate recipes/digits_det.yaml [KEY=VALUE ...] [--overwrite]
    advgen convert-checkpoint SRC DST
    advgen verify recipes/verify_digits_det.yaml
    advgen reproduce recipes/reproduce_cpu.yaml   (Table 1 / Figure 2b in one command; --plan: FLOPs per stage)
    advgen report  |  advgen card OUT...  |  advgen publish OUT... --repo-id ID  |  advgen bench ...  |  advgen bench-e2e RECIPE
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "train": ("advgen.models.train", "train a source model (standard or adversarial) and write a checkpoint"),
    "generate": ("advgen.generate", "generate a dataset (also: accelerate launch advgen/generate.py RECIPE)"),
    "convert-checkpoint": ("advgen.models.convert", "convert a plain/robustness-library checkpoint to safetensors+JSON"),
    "verify": ("advgen.verify", "train a fresh model on a generated set, evaluate on the original test set"),
    "report": ("advgen.report", "rebuild the README results table from verification reports"),
    "card": ("advgen.cards", "render the dataset card of one or more outputs, without uploading"),
    "publish": ("advgen.publish", "publish outputs as one multi-config dataset repo on the Hub"),
    "reproduce": ("advgen.reproduce", "Table 1 / Figure 2b in one command: source models, four sets, verification"),
    "bench": ("advgen.bench", "time the attack against the bare loop and torchattacks"),
    "bench-e2e": ("advgen.bench_e2e", "time end-to-end generate against the attack alone, 1 vs N processes"),
    "gaussian": ("advgen.gaussian", "the Section 4 Gaussian model: measured vs Theorems 1-3, Figure 4"),
    "transfer": ("advgen.transfer", "Figure 3: accuracy when trained on D̂rand/D̂det against transfer rate, per arch"),
}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: advgen COMMAND [ARGS]   (advgen COMMAND -h for its options)\n\ncommands:")
        for name, (_, help_) in COMMANDS.items():
            print(f"  {name:<20} {help_}")
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nadvgen: error: unknown command {argv[0]!r}; choose one of {', '.join(COMMANDS)}",
                  file=sys.stderr)
            return 2
        return 0
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
