"""Bad input and interruption (Step 6): nothing deleted outside an output, no silent mixing of two models, and every
bad input one line on stderr, exit 2, nothing written.

Most cases run `advgen generate`'s main() in-process (the console script's code path without an interpreter start;
~1 s each on the session's tiny model); the ones that need a real process (another working directory, dropped
file permissions, an offline Hub client, the threads of a fresh process) run `advgen generate` for real.
Cost on 2 CPU cores: ~40 s.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, advgen


def gen_main(capsys, monkeypatch, *args):
    """`advgen generate` in-process: (exit code, stderr lines). One torch thread, as in the rest of the test process."""
    from advgen.cli import main

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    capsys.readouterr()                 # what earlier steps printed
    rc = main(["generate", *map(str, args)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return rc, err


def one_line(rc, err) -> str:
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith("advgen generate: error: "), err
    return err[0]


def save_model(path: Path, meta: dict, in_channels=None, seed=0, perturb_from=None):
    """A checkpoint at `path`: random small_cnn weights (or `perturb_from`'s, nudged), meta as given."""
    import torch

    from advgen.models import build_classifier, load_checkpoint, save_checkpoint

    meta = {k: v for k, v in meta.items() if k != "sha256"}
    if in_channels is not None:
        meta.update(in_channels=in_channels, mean=[0.5] * in_channels, std=[0.25] * in_channels)
    torch.manual_seed(seed)
    if perturb_from is not None:
        model = load_checkpoint(perturb_from)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.01 * torch.randn_like(p))
    else:
        model = build_classifier(meta["arch"], meta["num_classes"], meta["in_channels"], meta["mean"], meta["std"],
                                 meta["width"], meta["feature_dim"])
    save_checkpoint(model, path, meta)
    return path


def copy_checkpoint(src: Path, dst: Path) -> Path:
    shutil.copy(src, dst)
    shutil.copy(src.with_suffix(".json"), dst.with_suffix(".json"))
    return dst


def unprivileged(cmd: list) -> list:
    """`cmd` without the right to ignore file permissions: root keeps them unless they are dropped."""
    if os.geteuid() != 0:
        return cmd
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: file permissions cannot be tested")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", *cmd]


def generate_process(*args, env=None, cwd=REPO, prefix=()):
    """`advgen generate` as a real process, with exactly the environment given (OMP_NUM_THREADS unset unless given)."""
    base = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    base.update(PYTHONUNBUFFERED="1", TQDM_DISABLE="1", **(env or {}))
    return subprocess.run([*prefix, sys.executable, "-m", "advgen.cli", "generate", *map(str, args)], cwd=cwd,
                          env=base, capture_output=True, text=True, timeout=300)


def error_line(p) -> str:
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert p.returncode == 2 and len(lines) == 1 and "Traceback" not in p.stderr, p.stderr[-3000:]
    assert lines[0].startswith("advgen generate: error: ")
    return lines[0]


# ------------------------------------------------------------------------------------------------------------------
# 1. --overwrite deletes only an advgen output
# ------------------------------------------------------------------------------------------------------------------

def test_empty_output_dir_with_overwrite_touches_nothing(gen_recipe, tmp_path, monkeypatch, capsys):
    """`output.dir= --overwrite` used to rmtree the working directory."""
    recipe, _ = gen_recipe()
    work = tmp_path / "work"
    (work / "mine").mkdir(parents=True)
    (work / "notes.txt").write_text("my own file")
    (work / "mine" / "data.bin").write_bytes(b"123")
    before = sorted(p.relative_to(work).as_posix() for p in work.rglob("*"))
    p = advgen("generate", recipe, "output.dir=", "--overwrite", cwd=work, check=False)
    assert "output.dir: is empty; give the output a directory of its own" in error_line(p)
    monkeypatch.chdir(work)
    rc, err = gen_main(capsys, monkeypatch, recipe, "output.dir=.", "--overwrite")
    assert "is the working directory or a directory above it" in one_line(rc, err)
    assert sorted(p.relative_to(work).as_posix() for p in work.rglob("*")) == before
    assert (work / "notes.txt").read_text() == "my own file"


def test_unsafe_or_foreign_output_dirs_are_refused_before_anything_is_touched(gen_recipe, tmp_path, monkeypatch,
                                                                               capsys):
    from advgen.generate import check_output_dir
    from advgen.recipe import RecipeError

    home, cwd = tmp_path / "home", tmp_path / "work" / "sub"
    home.mkdir()
    cwd.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    # check_output_dir is read-only: safe to ask about the root and the home directory
    for path, why in ((Path("/"), "is a filesystem root"),
                      (Path(".."), "is the working directory or a directory above"),
                      (home, "is the home directory or a directory above it")):
        with pytest.raises(RecipeError, match=why):
            check_output_dir(path, overwrite=True)
    # a directory with someone's files is not deleted by --overwrite, and is named
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("years of work")
    recipe, _ = gen_recipe()
    rc, err = gen_main(capsys, monkeypatch, recipe, f"output.dir={foreign}", "--overwrite")
    assert "is not an advgen output (no recipe.yaml, manifest.json or markers/ of one), so --overwrite will not " \
           "delete it" in one_line(rc, err)
    assert (foreign / "thesis.tex").read_text() == "years of work"
    # an output dir that is a file
    afile = tmp_path / "afile"
    afile.write_text("x")
    rc, err = gen_main(capsys, monkeypatch, recipe, f"output.dir={afile}")
    assert f"{str(afile)!r} is a file, not a directory" in one_line(rc, err)
    rc, err = gen_main(capsys, monkeypatch, recipe, f"output.dir={afile}/out")
    assert f"{str(afile)!r} is a file, not a directory" in one_line(rc, err)
    assert afile.read_text() == "x"


# ------------------------------------------------------------------------------------------------------------------
# 2. A resume never mixes two models
# ------------------------------------------------------------------------------------------------------------------

def test_resume_with_a_retrained_model_refuses_then_redoes_when_asked(gen_recipe, tiny_model, tmp_path, monkeypatch,
                                                                      capsys):
    from advgen.generate import generate
    from advgen.recipe import GenerateRecipe, load_recipe

    ckpt = copy_checkpoint(tiny_model, tmp_path / "model.safetensors")
    recipe, out = gen_recipe(model__checkpoint=str(ckpt))          # 120 images, 4 shards
    generate(load_recipe(recipe, GenerateRecipe))
    old_sha = json.loads((out / "manifest.json").read_text())["checkpoint"]["sha256"]
    for i in (2, 3):                                   # interrupted after two shards
        (out / "markers" / f"shard-{i:05d}.json").unlink()
    (out / "manifest.json").unlink()
    done = {i: (out / "markers" / f"shard-{i:05d}.json").read_bytes() for i in (0, 1)}
    save_model(ckpt, json.loads(ckpt.with_suffix(".json").read_text()), perturb_from=tiny_model)   # "retrained"
    new_sha = json.loads(ckpt.with_suffix(".json").read_text())["sha256"]
    assert new_sha != old_sha

    rc, err = gen_main(capsys, monkeypatch, recipe)
    assert (f"2 finished shard(s) come from other inputs (shard 0 was made with checkpoint_sha256 "
            f"'{old_sha[:12]}…', this run has '{new_sha[:12]}…'); pass --redo-mismatched") in one_line(rc, err)
    assert {i: (out / "markers" / f"shard-{i:05d}.json").read_bytes() for i in (0, 1)} == done
    assert not (out / "manifest.json").exists()

    rc, err = gen_main(capsys, monkeypatch, recipe, "--redo-mismatched")
    assert rc == 0, err
    m = json.loads((out / "manifest.json").read_text())
    assert m["checkpoint"]["sha256"] == new_sha and m["num_shards"] == 4
    for i in range(4):
        made_from = json.loads((out / "markers" / f"shard-{i:05d}.json").read_text())["provenance"]
        assert made_from == {"checkpoint_sha256": new_sha, "source_fingerprint": m["source"]["fingerprint"],
                             "advgen_version": m["advgen_version"]}


# ------------------------------------------------------------------------------------------------------------------
# 3. A checkpoint is checked against its JSON and against the source
# ------------------------------------------------------------------------------------------------------------------

def test_checkpoints_that_do_not_fit_are_one_line_errors_and_write_nothing(gen_recipe, tiny_model, tmp_path,
                                                                          monkeypatch, capsys):
    meta = json.loads(tiny_model.with_suffix(".json").read_text())
    cases = {}
    cases["3-channel model on 1-channel digits"] = (
        save_model(tmp_path / "rgb.safetensors", meta, in_channels=3),
        "takes 3-channel images but the source's are 1x8x8 (1 channel(s)); train a model on this source")
    flipped = copy_checkpoint(tiny_model, tmp_path / "flipped.safetensors")
    data = bytearray(flipped.read_bytes())
    data[-10] ^= 1                                      # a weight's bit: still loads, no longer what was saved
    flipped.write_bytes(bytes(data))
    cases["bytes changed after saving"] = (flipped, "does not match the sha256 recorded in flipped.json")
    wide = copy_checkpoint(tiny_model, tmp_path / "wide.safetensors")
    wide.with_suffix(".json").write_text(json.dumps(dict(meta, width=32)))
    cases["shapes do not fit the JSON"] = (wide, "the weights do not fit the architecture in wide.json (small_cnn, "
                                                 "width 32")
    broken = copy_checkpoint(tiny_model, tmp_path / "broken.safetensors")
    broken.with_suffix(".json").write_text('{"arch": "small_cnn", ')
    cases["broken JSON"] = (broken, "broken.json' is not valid JSON")
    vgg = copy_checkpoint(tiny_model, tmp_path / "vgg.safetensors")
    vgg.with_suffix(".json").write_text(json.dumps(dict(meta, arch="vgg")))
    cases["unknown arch"] = (vgg, "describes no model advgen can build (unknown arch 'vgg'")
    listed = copy_checkpoint(tiny_model, tmp_path / "listed.safetensors")
    listed.with_suffix(".json").write_text("[1, 2]")
    cases["JSON of the wrong shape"] = (listed, "is not an advgen checkpoint JSON (no arch, num_classes")
    for case, (ckpt, message) in cases.items():
        recipe, out = gen_recipe(model__checkpoint=str(ckpt))
        rc, err = gen_main(capsys, monkeypatch, recipe)
        assert message in one_line(rc, err), case
        assert not out.exists(), f"{case}: the failed run left {sorted(out.rglob('*'))}"


def test_early_failure_leaves_nothing_and_the_corrected_run_is_not_refused(gen_recipe, tiny_model, tmp_path,
                                                                            monkeypatch, capsys):
    """The corrected re-run used to be refused as "a different recipe" because the failed run had written
    recipe.yaml. The corrected run is a fresh process without OMP_NUM_THREADS: it runs one thread per core."""
    meta = json.loads(tiny_model.with_suffix(".json").read_text())
    recipe, out = gen_recipe(model__checkpoint=str(save_model(tmp_path / "rgb.safetensors", meta, in_channels=3)),
                             source__limit=40, attack__steps=2)
    assert "takes 3-channel images" in one_line(*gen_main(capsys, monkeypatch, recipe))
    assert not out.exists()
    p = generate_process(recipe, f"model.checkpoint={tiny_model}")
    assert p.returncode == 0, p.stderr[-3000:]
    m = json.loads((out / "manifest.json").read_text())
    assert m["count"] == 40 and m["speed"]["threads"] == len(os.sched_getaffinity(0))
    assert {"torch", "numpy", "Pillow", "datasets", "webdataset"} <= set(m["versions"])
    assert all(isinstance(v, str) for v in m["versions"].values())


def test_unreadable_checkpoint_and_unwritable_output_say_so(gen_recipe, tiny_model, tmp_path):
    ckpt = copy_checkpoint(tiny_model, tmp_path / "locked.safetensors")
    ckpt.chmod(0)
    recipe, out = gen_recipe(model__checkpoint=str(ckpt))
    try:
        p = generate_process(recipe, env={"OMP_NUM_THREADS": "1"}, prefix=unprivileged([]))
        assert "locked.safetensors' cannot be read (Permission denied); fix its permissions" in error_line(p)
        assert not out.exists()
        ro = tmp_path / "read_only"
        ro.mkdir()
        ro.chmod(0o555)
        p = generate_process(recipe, f"model.checkpoint={tiny_model}", f"output.dir={ro / 'out'}",
                             env={"OMP_NUM_THREADS": "1"}, prefix=unprivileged([]))
        assert f"is not writable ({str(ro)!r} does not let this user create files)" in error_line(p)
        assert list(ro.iterdir()) == []
    finally:
        ckpt.chmod(0o644)


# ------------------------------------------------------------------------------------------------------------------
# 4. A marker that does not validate means "not finished"
# ------------------------------------------------------------------------------------------------------------------

def test_marker_of_the_wrong_shape_is_redone(gen_recipe, monkeypatch, capsys):
    from advgen.generate import generate
    from advgen.recipe import GenerateRecipe, load_recipe

    recipe, out = gen_recipe()
    generate(load_recipe(recipe, GenerateRecipe))
    files = {p.relative_to(out).as_posix(): p.read_bytes() for sub in ("shards", "data")
             for p in sorted((out / sub).glob("*"))}
    good = (out / "markers" / "shard-00001.json").read_text()
    (out / "markers" / "shard-00001.json").write_text("[1, 2]")     # valid JSON, not a marker
    (out / "manifest.json").unlink()
    rc, err = gen_main(capsys, monkeypatch, recipe)
    assert rc == 0, err
    redone = json.loads((out / "markers" / "shard-00001.json").read_text())
    assert redone["tar_sha256"] == json.loads(good)["tar_sha256"]
    assert {p.relative_to(out).as_posix(): p.read_bytes() for sub in ("shards", "data")
            for p in sorted((out / sub).glob("*"))} == files
    assert json.loads((out / "manifest.json").read_text())["count"] == 120


# ------------------------------------------------------------------------------------------------------------------
# One-line errors for the rest
# ------------------------------------------------------------------------------------------------------------------

def test_bad_values_and_sources_are_one_line_errors(gen_recipe, monkeypatch, capsys):
    recipe, out = gen_recipe()
    for override, message in (("seed=-1", "seed: must be >= 0, got -1"),
                              ("attack.eps=.inf", "attack.eps: expected a finite number, got inf"),
                              ("attack.step_size=.nan", "attack.step_size: expected a finite number, got nan")):
        rc, err = gen_main(capsys, monkeypatch, recipe, override)
        assert message in one_line(rc, err), override
    assert not out.exists()


def test_unreachable_hub_or_mistyped_path_is_one_line(gen_recipe, tmp_path):
    """`source.path=nonexist_dir` is taken for a Hub id; offline that was a ConnectionError traceback."""
    recipe, out = gen_recipe()
    p = generate_process(recipe, "source.kind=hf", "source.path=nonexist_dir", cwd=tmp_path,
                         env={"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert ("source.path: 'nonexist_dir' is not a local directory and could not be loaded from the Hub "
            "(ConnectionError") in error_line(p)
    assert "fix the path (relative paths are taken from the working directory, then the recipe's)" in p.stderr
    assert not out.exists()
