"""The `advgen` console script: one sub-command per stage, each a module with `main(argv) -> int`.

    advgen train recipes/digits_standard.yaml
    advgen generate recipes/digits_det.yaml [KEY=VALUE ...] [--overwrite]
    advgen convert-checkpoint SRC DST
    advgen verify recipes/verify_digits_det.yaml
    advgen reproduce recipes/reproduce_cpu.yaml   (Table 1 / Figure 2b in one command; --plan: FLOPs per stage)
    advgen report  |  advgen card OUT...  |  advgen publish OUT... --repo-id ID  |  advgen bench ...  |  advgen bench-e2e RECIPE

This module owns the error contract of every command: a module's `main` raises an `advgen.errors.AdvgenError`
(a bad recipe, checkpoint, dataset, output, option...) and `run` prints it as ONE line on stderr,
`advgen COMMAND: error: MESSAGE`, and returns exit status 2; `parser` gives each command an argparse parser whose
usage errors take the same path. Scripts started by `accelerate launch advgen/X.py` end in `run` too.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, Optional

from advgen.errors import AdvgenError, UsageError

COMMANDS = {
    "train": ("advgen.models.train", "train a source model (standard or adversarial) and write a checkpoint"),
    "generate": ("advgen.generate", "generate a dataset (also: accelerate launch advgen/generate.py RECIPE)"),
    "convert-checkpoint": ("advgen.models.convert", "convert a plain/robustness-library checkpoint to safetensors+JSON"),
    "verify": ("advgen.verify", "train a fresh model on a generated set, evaluate on the original test set"),
    "report": ("advgen.report", "rebuild the README results table from verification reports"),
    "card": ("advgen.cards", "render the dataset card of one or more outputs, without uploading"),
    "publish": ("advgen.publish", "publish outputs as one multi-config dataset repo on the Hub"),
    "reproduce": ("advgen.reproduce", "Table 1 / Figure 2b in one command: source models, four sets, verification"),
    "bench": ("advgen.tools.bench", "time the attack against the bare loop and torchattacks"),
    "bench-e2e": ("advgen.tools.bench_e2e", "time end-to-end generate against the attack alone, 1 vs N processes"),
    "gaussian": ("advgen.gaussian", "the Section 4 Gaussian model: measured vs Theorems 1-3, Figure 4"),
    "transfer": ("advgen.transfer", "Figure 3: accuracy when trained on D̂rand/D̂det against transfer rate, per arch"),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message):          # argparse would print the usage and exit; we raise, and `run` prints one line
        raise UsageError(message)


def parser(prog: str, description: str = "", **kw) -> argparse.ArgumentParser:
    """An argparse parser for `advgen COMMAND` whose errors are one line, exit 2 (via `run`); -h still prints help."""
    return _Parser(prog=prog, description=description, **kw)


def one_line(text) -> str:
    """Library messages span lines; what the CLI prints stays one line."""
    return " ".join(str(text).split())


def run(command: str, main: Callable[[Optional[list]], int], argv: Optional[list] = None) -> int:
    """`main(argv)`, with any AdvgenError as `advgen COMMAND: error: ...` on stderr and exit status 2."""
    try:
        return main(argv)
    except AdvgenError as e:
        print(f"advgen {command}: error: {one_line(e)}", file=sys.stderr)
        return 2


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["--version"], ["-V"]):
        from advgen import __version__
        print(f"advgen {__version__}")
        return 0
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
    return run(argv[0], module.main, argv[1:])


if __name__ == "__main__":
    sys.exit(main())
