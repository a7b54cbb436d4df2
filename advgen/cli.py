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
import logging
import os
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


# ----------------------------------------------------------------------------------------------------------------
# The arguments of the commands whose modules import torch, defined here (torch-free) so `advgen CMD --help` answers
# at once; each module's main parses with `command_parser(CMD)`.
# ----------------------------------------------------------------------------------------------------------------

CONVERTIBLE_ARCHS = ("small_cnn", "resnet18", "resnet50")     # what convert-checkpoint recognises in a .pt
BENCH_METHODS = ("floor", "torchattacks", "advgen", "advgen_fp32", "inversion")


def _recipe_args(p, kind: str, example: str):
    p.add_argument("recipe", help=f"{kind} recipe: a YAML file, or the name of a recipe shipped with advgen")
    p.add_argument("overrides", nargs="*", help=f"dotted overrides, e.g. {example}")


def _train_args(p):
    _recipe_args(p, "training", "train.epochs=5")


def _generate_args(p):
    _recipe_args(p, "generation", "attack.eps=0.25 output.dir=runs/x")
    p.add_argument("--overwrite", action="store_true",
                   help="delete an existing output dir first (only an advgen output: recipe.yaml, manifest or markers)")
    p.add_argument("--redo-mismatched", action="store_true",
                   help="redo finished shards made from another checkpoint, source or advgen version (default: refuse)")


def _convert_args(p):
    p.add_argument("src", help="source checkpoint: .pt/.pth/.ckpt (robustness layout, Classifier or bare "
                               "state dict) or an advgen .safetensors")
    p.add_argument("dst", help="destination .safetensors (its .json is written beside it)")
    p.add_argument("--arch", choices=CONVERTIBLE_ARCHS, help="expected architecture (default: inferred from the weights)")
    p.add_argument("--mean", type=float, nargs="+", help="input mean, for a bare net that stores none")
    p.add_argument("--std", type=float, nargs="+", help="input std, for a bare net that stores none")
    p.add_argument("--overwrite", action="store_true", help="replace an existing DST")
    rb = p.add_argument_group("RobustBench models (advgen.models.robustbench; needs pip install robustbench)")
    rb.add_argument("--robustbench", metavar="NAME", help="SRC is RobustBench model NAME's .pt file, or else a directory "
                    "in RobustBench's layout (DIR/DATASET/THREAT_MODEL/NAME.pt; downloaded there when missing)")
    rb.add_argument("--features", metavar="LAYER", help="with --robustbench: the layer whose output is g(x) for "
                    "inversion, NAME or NAME:input (e.g. logits:input, the final Linear's input)")
    rb.add_argument("--dataset", default="cifar10", help="with --robustbench (default: cifar10)")
    rb.add_argument("--threat-model", default="L2", help="with --robustbench (default: L2)")


def _verify_args(p):
    _recipe_args(p, "verification", "seeds=[0,1,2] train.epochs=2 datasets.d_det.use_npy=true")
    p.add_argument("--only", help="comma-separated dataset names: train and report only these (and their orderings)")


def _bench_args(p):
    p.add_argument("--model", choices=["small_cnn", "resnet18", "resnet50"],
                   help="architecture (random weights); default resnet18, or the checkpoint's")
    p.add_argument("--checkpoint", help="a trained .safetensors checkpoint: adds targeted success and mean l2")
    p.add_argument("--data", help="HF dataset dir for real images (e.g. ../shared/data/cifar10); "
                                  "default: digits for 1-channel models, else random images")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--eps", type=float, default=0.5)
    p.add_argument("--step-size", type=float, default=0.1)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per method (median reported)")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads for every method (0: leave)")
    p.add_argument("--eval-batches", type=int, default=1, help="batches for success/l2 (with --checkpoint)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto", help="advgen default mode")
    p.add_argument("--channels-last", choices=["auto", "on", "off"], default="auto")
    p.add_argument("--compile", choices=["auto", "on", "off"], default="auto")
    p.add_argument("--no-fuse-bn", action="store_true", help="do not fold BatchNorm into convs")
    p.add_argument("--methods", default=",".join(BENCH_METHODS),
                   help="comma-separated subset of " + ",".join(BENCH_METHODS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="write the JSON here")


def _bench_e2e_args(p):
    _recipe_args(p, "generation", "attack.steps=20 (as for advgen generate)")
    p.add_argument("--processes", default="1", help="comma-separated process counts to launch (default 1)")
    p.add_argument("--threads", type=int, default=0, help="cores in total (default: all)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--out", help="write the JSON here")


def _transfer_args(p):
    _recipe_args(p, "transfer", "seeds=[0,1] train.epochs=5")


ARGUMENTS = {   # command: (description, add the arguments)
    "train": ("Train a source model from a recipe.", _train_args),
    "generate": ("Generate a dataset from a recipe.", _generate_args),
    "convert-checkpoint": ("Convert a robustness-library / plain PyTorch checkpoint to safetensors + JSON. SRC is read "
                           "with torch.load(weights_only=True); arbitrary pickles are refused.", _convert_args),
    "verify": ("Train fresh models on generated sets, evaluate on the original test set.", _verify_args),
    "bench": ("Time advgen's targeted PGD against the bare loop and torchattacks, on one batch (methods: floor, "
              "torchattacks, advgen, advgen_fp32, inversion; median of --repeats).", _bench_args),
    "bench-e2e": ("Time a whole `generate` against the attack compute alone, and 1 vs N processes.", _bench_e2e_args),
    "transfer": ("Figure 3: accuracy when trained on a generated set against the transfer rate.", _transfer_args),
}


def command_parser(command: str) -> argparse.ArgumentParser:
    """The parser of `advgen COMMAND` for the commands in ARGUMENTS (one-line errors, like `parser`)."""
    description, add = ARGUMENTS[command]
    p = parser(f"advgen {command}", description=description)
    add(p)
    return p


def one_line(text) -> str:
    """Library messages span lines; what the CLI prints stays one line."""
    return " ".join(str(text).split())


# ----------------------------------------------------------------------------------------------------------------
# What a run says: progress lines through the "advgen" logger (accelerate's, once a process group exists: the main
# process says it once), -q / -v / ADVGEN_VERBOSITY choose how much.
# ----------------------------------------------------------------------------------------------------------------

LOGGER = "advgen"
QUIET, NORMAL, VERBOSE = -1, 0, 1


class _Stdout(logging.Handler):
    """Writes to whatever sys.stdout is at the time (a test's capture, a redirected stream)."""

    def emit(self, record):
        sys.stdout.write(self.format(record) + "\n")
        sys.stdout.flush()


def configure_logging(verbosity: Optional[int] = None) -> int:
    """-q (QUIET): warnings and errors only, no progress bars; NORMAL: advgen's progress lines; -v (VERBOSE): also the
    libraries' own info logs (accelerate, datasets, huggingface_hub). Read from ADVGEN_VERBOSITY when not given, and
    written there, so the ranks `accelerate launch` starts and advgen's subprocesses say as much."""
    if verbosity is None:
        text = os.environ.get("ADVGEN_VERBOSITY", "0").strip()
        verbosity = int(text) if text.lstrip("-").isdigit() else NORMAL
    os.environ["ADVGEN_VERBOSITY"] = str(verbosity)
    if verbosity <= QUIET:
        os.environ["TQDM_DISABLE"] = "1"
    log = logging.getLogger(LOGGER)
    if not any(isinstance(h, _Stdout) for h in log.handlers):
        handler = _Stdout()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.WARNING if verbosity <= QUIET else logging.INFO if verbosity == NORMAL else logging.DEBUG)
    for name in ("accelerate", "datasets", "huggingface_hub"):
        if verbosity >= VERBOSE:
            logging.getLogger(name).setLevel(logging.INFO)
    return verbosity


def bars_off(off: bool = False) -> bool:
    """`disable=` for a progress bar that passes its own: also off under -q (tqdm reads TQDM_DISABLE only when the
    caller passes no disable)."""
    return off or os.environ.get("TQDM_DISABLE", "").strip().lower() in ("1", "true", "yes")


def say(message: str, main_process_only: bool = True) -> None:
    """One progress line, unless -q. Once accelerate's state exists (generate, verify, reproduce under accelerate
    launch), through accelerate's logger, which lets only the main process speak unless main_process_only=False."""
    if "accelerate" in sys.modules:             # never imports accelerate (torch) for the torch-free commands
        from accelerate.state import PartialState

        if PartialState._shared_state:
            from accelerate.logging import get_logger

            get_logger(LOGGER).info(message, main_process_only=main_process_only)
            return
    logging.getLogger(LOGGER).info(message)


def run(command: str, main: Callable[[Optional[list]], int], argv: Optional[list] = None) -> int:
    """`main(argv)`, with any AdvgenError as `advgen COMMAND: error: ...` on stderr and exit status 2."""
    configure_logging()
    try:
        return main(argv)
    except AdvgenError as e:
        print(f"advgen {command}: error: {one_line(e)}", file=sys.stderr)
        return 2


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    while argv[:1] and argv[0] in ("-q", "--quiet", "-v", "--verbose"):     # advgen -q COMMAND ...
        configure_logging(QUIET if argv.pop(0) in ("-q", "--quiet") else VERBOSE)
    if argv[:1] in (["--version"], ["-V"]):
        from advgen import __version__
        print(f"advgen {__version__}")
        return 0
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: advgen [-q | -v] COMMAND [ARGS]   (advgen COMMAND -h for its options; -q: warnings only, no "
              "progress bars; -v: also the libraries' logs; or ADVGEN_VERBOSITY=-1/0/1)\n\ncommands:")
        for name, (_, help_) in COMMANDS.items():
            print(f"  {name:<20} {help_}")
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nadvgen: error: unknown command {argv[0]!r}; choose one of {', '.join(COMMANDS)}",
                  file=sys.stderr)
            return 2
        return 0
    if argv[0] in ARGUMENTS and any(a in ("-h", "--help") for a in argv[1:]):
        command_parser(argv[0]).print_help()      # without importing the command's module (torch): instant
        return 0
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return run(argv[0], module.main, argv[1:])


if __name__ == "__main__":
    sys.exit(main())
