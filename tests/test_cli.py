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


def test_help_and_version_answer_without_importing_torch():
    """`advgen COMMAND --help` in well under a second: no command's --help imports torch (it used to take 2-3 s)."""
    import subprocess
    import sys
    import time

    code = ("import sys, io, contextlib\nfrom advgen.cli import main, COMMANDS\n"
            "for name in COMMANDS:\n"
            "    with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "        assert main([name, '--help']) == 0 and 'usage: advgen ' + name in out.getvalue(), name\n"
            "    assert 'torch' not in sys.modules, name\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "    assert main(['--version']) == 0 and out.getvalue().startswith('advgen ')\n")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert time.perf_counter() - t0 < 10          # all 12 commands together; ~0.6 s here


def test_command_parsers_are_the_ones_main_uses():
    """The --help parser is the one each command's main parses with, so the help cannot drift from the code."""
    import importlib.util
    from pathlib import Path

    for name in cli.ARGUMENTS:
        p = cli.command_parser(name)
        assert p.prog == f"advgen {name}" and p.description
        with pytest.raises(AdvgenError):
            p.parse_args(["--no-such-option"])
        source = Path(importlib.util.find_spec(cli.COMMANDS[name][0]).origin).read_text()
        assert f'command_parser("{name}")' in source and "add_argument(" not in source, name


def test_flags_may_come_between_overrides(capsys):
    """`advgen generate digits_det --overwrite attack.eps=1` used to fail with "unrecognized arguments": each
    command's main reads flags between the overrides (here it gets as far as looking for the recipe)."""
    for name, flag in (("train", None), ("generate", "--overwrite"), ("verify", "--only=d_det"),
                       ("bench-e2e", "--repeats=2"), ("transfer", None)):
        argv = [name, "no_such_recipe_xyz", "a.b=1"] + ([flag] if flag else []) + ["c=2"]
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert "'no_such_recipe_xyz' does not exist" in err and "unrecognized" not in err, (name, err)


def test_quiet_and_verbose(gen_recipe):
    """`advgen -q generate ...` says nothing but warnings (no progress lines, no bars); the default says how it runs
    and where the output went; ADVGEN_VERBOSITY carries the choice into `accelerate launch`ed ranks."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    path, out = gen_recipe(source__limit=16, output__shard_size=16)
    env = {k: v for k, v in os.environ.items() if k not in ("TQDM_DISABLE", "ADVGEN_VERBOSITY")}

    def advgen(*args):
        return subprocess.run([sys.executable, "-m", "advgen.cli", *args], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=300)

    normal = advgen("generate", str(path), "--overwrite")
    assert normal.returncode == 0, normal.stderr[-2000:]
    assert "t_det: runs on 1 proc" in normal.stdout and "t_det: 16 samples in 1 shards" in normal.stdout
    assert "img/s" in normal.stderr                                # the progress bar
    quiet = advgen("-q", "generate", str(path), "--overwrite")
    assert quiet.returncode == 0 and quiet.stdout == "" and "img/s" not in quiet.stderr, quiet.stdout + quiet.stderr
    verbose = advgen("--verbose", "generate", str(path), "--overwrite")
    assert verbose.returncode == 0 and "t_det: runs on 1 proc" in verbose.stdout
    env["ADVGEN_VERBOSITY"] = "-1"                                # what `advgen -q` hands to launched ranks
    assert advgen("generate", str(path), "--overwrite").stdout == ""
