"""advgen.cli owns the error contract: any AdvgenError of any command is one line on stderr and exit status 2;
argparse's usage errors take the same path; anything else is a bug and keeps its traceback."""

import pytest

from advgen import cli
from advgen.errors import AdvgenError, CheckpointError, RecipeError


def test_an_error_is_one_line_and_exit_2(capsys):
    def main(argv):
        raise CheckpointError("checkpoint 'x'\nspans\n  three lines")

    assert cli.run("train", main, []) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == "advgen train: error: checkpoint 'x' spans three lines\n"


def test_usage_errors_and_unknown_commands_exit_2(capsys):
    for argv, message in ((["generate"], "the following arguments are required: recipe"),
                          (["verify", "r.yaml", "--nope"], "unrecognized arguments: --nope"),
                          (["report", "--readme"], "argument --readme: expected one argument")):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"advgen {argv[0]}: error: {message}"), err
    assert cli.main(["nope"]) == 2
    assert "unknown command 'nope'" in capsys.readouterr().err


def test_every_command_maps_to_a_module_with_main():
    import importlib

    for name, (module, _) in cli.COMMANDS.items():
        assert callable(importlib.import_module(module).main), name


def test_other_exceptions_are_not_swallowed():
    def main(argv):
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        cli.run("generate", main, [])
    assert issubclass(RecipeError, AdvgenError)
