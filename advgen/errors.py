"""Every error a user can cause and fix: one class per kind, all under `AdvgenError`.

A stage raises one of these with a one-line message that names the file or key, the value and the fix;
`advgen.cli` turns any `AdvgenError` into that line on stderr (`advgen COMMAND: error: ...`) and exit status 2.
Anything else that escapes is a bug, and keeps its traceback.

No imports: every module, torch-free ones included, can raise these.
"""

from __future__ import annotations


class AdvgenError(ValueError):
    """A bad input (recipe, checkpoint, dataset, output, command line): the message is the whole story."""


class UsageError(AdvgenError):
    """A command line argparse cannot read, or an option value out of range."""


class RecipeError(AdvgenError):
    """A recipe that cannot be used; the message names the key, the value and the fix."""


class CheckpointError(AdvgenError):
    """A checkpoint that cannot be read, or does not describe a model advgen can build."""


class DatasetError(AdvgenError):
    """A training set that cannot be read (verify, transfer); the message names the path and the fix."""


class OutputError(AdvgenError):
    """A generated output that is incomplete (no manifest, a missing shard) or changed after it was written."""


class CardError(AdvgenError):
    """An output or report the dataset card cannot be made from."""


class PublishError(AdvgenError):
    """Anything that stops a publish; never carries the token."""


class PipelineError(AdvgenError):
    """A pipeline (`advgen reproduce`) whose stages do not fit together."""


class ReportError(AdvgenError):
    """A report, manifest or README that `advgen report` cannot read or update."""


class BenchError(AdvgenError):
    """A benchmark that could not run as asked (a generate subprocess failed, too few images)."""
