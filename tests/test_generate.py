"""End to end through real `accelerate launch` processes: world-size independence, two machines on
loopback, crash (kill -9) and resume, the shipped digits_det recipe; and clear errors (in-process: the console
script's code path; tests/test_safety.py runs it as a real process too)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, accelerate_launch, write_yaml
from advgen.writers.shards import decode_png


def files_of(out: Path) -> dict:
    return {p.relative_to(out).as_posix(): p.read_bytes()
            for sub in ("shards", "data") for p in sorted((out / sub).glob("*"))}


def small_recipe(path: Path, ckpt: Path, out: Path, **attack) -> Path:
    return write_yaml(path, {
        "name": "t_det", "dataset": "d_det", "source": {"kind": "digits", "limit": 150},
        "model": {"checkpoint": str(ckpt)},
        "attack": {"norm": "l2", "eps": 1.5, "step_size": 0.3, "steps": 10,
                   **attack},
        "output": {"dir": str(out), "shard_size": 32, "npy": True},   # 5 shards, the last one short
        "batch_size": 12, "seed": 3, "device": "cpu"})     # the CPU path, also on a machine with a GPU


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model):
    """One uninterrupted 1-process run; the other runs must reproduce its bytes."""
    d = tmp_path_factory.mktemp("ref")
    recipe = small_recipe(d / "recipe.yaml", tiny_model, d / "out")
    accelerate_launch([recipe], num_processes=1)
    return recipe, d / "out"


def test_one_process_output_is_complete_and_consistent(reference):
    from advgen.sources import digits_split

    _, out = reference
    m = json.loads((out / "manifest.json").read_text())
    assert m["world_size"] == 1 and m["count"] == 150 and m["num_shards"] == 5
    assert [s["count"] for s in m["shards"]] == [32, 32, 32, 32, 22]
    x_train, y_train, rows = digits_split()[:3]
    position = {int(r): p for p, r in enumerate(rows)}      # source_index is the row of load_digits()
    import webdataset as wds

    n = 0
    for shard in m["shards"]:
        for s in wds.WebDataset(str(out / shard["tar"]), shardshuffle=False):
            meta = json.loads(s["json"])
            i = position[meta["source_index"]]
            img = decode_png(s["png"]).astype(np.float64) / 255
            orig = x_train[i].astype(np.float64) / 255
            assert meta["source_label"] == y_train[i] and meta["label"] == (y_train[i] + 1) % 10 == int(s["cls"])
            # provenance is measured on the stored uint8 image
            assert meta["l2"] == pytest.approx(np.linalg.norm(img - orig), abs=1e-5)
            assert meta["linf"] == pytest.approx(np.abs(img - orig).max(), abs=1e-6)
            assert meta["l2"] <= 1.5 + 0.5 / 255 * 8 + 1e-6
            n += 1
    assert n == 150
    assert m["stats"]["mean_success"] > 0.9
    assert m["checkpoint"]["sha256"] and m["recipe"]["attack"]["eps"] == 1.5
    assert (out / "recipe.yaml").is_file() and (out / "README.md").is_file()
    # the preview: a PNG sample grid, recorded (and so checked by card / publish) in the manifest
    from PIL import Image

    from advgen.writers.layout import sha256_file
    assert m["preview"] == {"path": "preview.png", "sha256": sha256_file(out / "preview.png")}
    with Image.open(out / "preview.png") as im:
        assert im.format == "PNG" and im.size[0] > 2 * im.size[1]       # 8 columns, 2 rows


def test_two_processes_give_identical_bytes(reference, tmp_path):
    recipe, ref_out = reference
    out = tmp_path / "out2"
    accelerate_launch([recipe, f"output.dir={out}"], num_processes=2)
    ranks = {json.loads(p.read_text())["rank"] for p in (out / "markers").glob("*.json")}
    assert ranks == {0, 1}, "both ranks must have written shards"
    assert json.loads((out / "manifest.json").read_text())["world_size"] == 2
    assert files_of(out) == files_of(ref_out)


def test_resume_deals_the_remaining_shards_to_every_rank(reference, tmp_path):
    """Shards 1 and 3 left to do after a crash: both used to go to rank 1 (i % 2) while rank 0 waited; the remaining
    shards are dealt round-robin instead, and the bytes are still those of one uninterrupted run."""
    import yaml

    recipe, ref_out = reference
    out = tmp_path / "resumed"
    shutil.copytree(ref_out, out)
    saved = yaml.safe_load((out / "recipe.yaml").read_text())
    saved["output"]["dir"] = str(out)
    (out / "recipe.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    (out / "manifest.json").unlink()
    for i in (1, 3):
        for p in (out / "markers" / f"shard-{i:05d}.json", out / "shards" / f"shard-{i:05d}.tar",
                  out / "data" / f"train-{i:05d}.parquet"):
            p.unlink()
    kept = {i: (out / "markers" / f"shard-{i:05d}.json").read_bytes() for i in (0, 2, 4)}
    accelerate_launch([recipe, f"output.dir={out}"], num_processes=2)
    ranks = {i: json.loads((out / "markers" / f"shard-{i:05d}.json").read_text())["rank"] for i in (1, 3)}
    assert ranks == {1: 0, 3: 1}
    assert {i: (out / "markers" / f"shard-{i:05d}.json").read_bytes() for i in (0, 2, 4)} == kept
    assert files_of(out) == files_of(ref_out)
    m = json.loads((out / "manifest.json").read_text())
    assert m["world_size"] == 2 and m["count"] == 150 and m["speed"]["threads"] == 1   # OMP_NUM_THREADS=1 (conftest)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_machines_on_loopback_give_identical_bytes(reference, tmp_path):
    recipe, ref_out = reference
    out = tmp_path / "out_2m"
    port = free_port()
    procs = []
    for rank in (0, 1):
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "2",
               "--num_processes", "2", "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1",
               "--main_process_port", str(port), "--mixed_precision", "no", "--dynamo_backend", "no",
               str(REPO / "advgen" / "generate.py"), str(recipe), f"output.dir={out}"]
        procs.append(subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(log[-3000:] for log in logs)
    ranks = {json.loads(p.read_text())["rank"] for p in (out / "markers").glob("*.json")}
    assert ranks == {0, 1}
    assert json.loads((out / "manifest.json").read_text())["world_size"] == 2
    assert files_of(out) == files_of(ref_out)


def test_kill_9_mid_run_then_resume(reference, tmp_path):
    """kill -9 once a shard is finished; the re-run skips the finished shards and ends with the bytes of one
    uninterrupted run."""
    recipe, ref_out = reference
    out = tmp_path / "out_crash"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", str(REPO / "advgen" / "generate.py"),
           str(recipe), f"output.dir={out}"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and not list((out / "markers").glob("*.json")):
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = sorted(p.name for p in (out / "markers").glob("*.json"))
    assert 1 <= len(done_before) < 5, f"kill landed at the wrong time: {done_before}"
    assert not (out / "manifest.json").exists(), "an interrupted output must not look complete"
    mtimes = {n: (out / "markers" / n).stat().st_mtime_ns for n in done_before}

    p = accelerate_launch([recipe, f"output.dir={out}"], num_processes=1)
    assert (out / "manifest.json").is_file()
    for n, t in mtimes.items():     # finished shards were skipped, not rewritten
        assert (out / "markers" / n).stat().st_mtime_ns == t
    assert not list(out.rglob("*.tmp"))
    assert files_of(out) == files_of(ref_out)
    assert p.returncode == 0


def generate_errors(capsys, *args) -> list[str]:
    """`advgen generate ARGS` in this process, expected to fail: its stderr lines (exit status 2 checked)."""
    from advgen.cli import main

    capsys.readouterr()
    assert main(["generate", *map(str, args)]) == 2
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_refuses_output_from_another_recipe(reference, tmp_path, capsys):
    recipe, ref_out = reference
    (err,) = generate_errors(capsys, recipe, f"output.dir={ref_out}", "attack.eps=1.0")
    assert "holds a dataset from a different recipe (attack.eps: 1.5 -> 1.0)" in err
    assert (ref_out / "manifest.json").is_file()   # untouched


def test_corrupt_checkpoint_is_a_clear_error(tmp_path, tiny_model, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(tiny_model.read_bytes()[:100])
    bad.with_suffix(".json").write_text(tiny_model.with_suffix(".json").read_text())
    recipe = small_recipe(tmp_path / "r.yaml", bad, tmp_path / "out")
    (err,) = generate_errors(capsys, recipe)
    assert err.startswith("advgen generate: error: ") and "is corrupt" in err
    assert not (tmp_path / "out" / "manifest.json").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the CPU-only message")
def test_device_cuda_without_cuda_is_a_clear_error(tmp_path, tiny_model, capsys):
    recipe = small_recipe(tmp_path / "r.yaml", tiny_model, tmp_path / "out")
    assert generate_errors(capsys, recipe, "device=cuda") == [
        "advgen generate: error: device: 'cuda' but torch sees no CUDA device here; use device: auto or cpu"]
    assert not (tmp_path / "out").exists()


def test_digits_det_recipe_end_to_end(tmp_path):
    """The README's main job, as shipped, on its first shard (256 of the 1,257 images; the source model is trained
    into cache/ once): its eps was chosen for >= 95% targeted success."""
    out = tmp_path / "digits_det"
    t0 = time.time()
    accelerate_launch(["recipes/digits_det.yaml", f"output.dir={out}", "source.limit=256"], num_processes=1)
    seconds = time.time() - t0
    m = json.loads((out / "manifest.json").read_text())
    assert m["count"] == 256 and m["dataset"] == "d_det" and m["num_shards"] == 1
    assert m["stats"]["mean_success"] >= 0.95          # the recipe's eps was chosen for this
    assert m["stats"]["mean_l2"] <= 1.4 + 0.01
    assert m["checkpoint"]["metrics"]["test_acc"] > 0.95
    from datasets import load_dataset

    ds = load_dataset(str(out), split="train")
    assert len(ds) == 256 and ds.features["label"].names == [str(i) for i in range(10)]
    assert seconds < 600


def test_fast_default_matches_exact_fp32_and_is_recorded(reference, tmp_path):
    """The default speed settings (BN folded, channels_last; bf16 only where native) give the targeted success and
    mean l2 of the exact fp32 eager run (precision fp32, no folding, NCHW), and the manifest says what ran."""
    from advgen.generate import generate
    from advgen.recipe import GenerateRecipe, load_recipe

    recipe, out = reference
    exact = generate(load_recipe(recipe, GenerateRecipe, [f"output.dir={tmp_path / 'exact'}", "precision=fp32",
                                                          "channels_last=false", "fuse_bn=false"]))
    fast, slow = (json.loads((o / "manifest.json").read_text()) for o in (out, exact))
    assert fast["speed"]["channels_last"] is True and fast["speed"]["fuse_bn"] is True
    assert fast["speed"]["batch_size"] == 12 and fast["speed"]["device"] == "cpu"
    assert {k: v for k, v in slow["speed"].items() if not k.endswith("seconds") and k != "threads"} == {
        "device": "cpu", "autocast": "fp32", "channels_last": False, "compile": False, "fuse_bn": False,
        "batch_size": 12}
    assert slow["speed"]["threads"] >= 1
    assert 0 <= slow["speed"]["writer_wait_seconds"] <= slow["seconds"]["total_last_run"]
    assert abs(fast["stats"]["mean_success"] - slow["stats"]["mean_success"]) <= 0.02      # 3 of 150 images
    assert fast["stats"]["mean_l2"] == pytest.approx(slow["stats"]["mean_l2"], rel=0.01)


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
@pytest.mark.gpu
def test_cuda_generate_auto_batch_staged_source_and_fast_path(reference, tmp_path):
    """On a GPU: batch_size auto is probed, the source is staged on the device, and the default fast path (bf16
    where native) keeps targeted success within 2 points and mean l2 within 2% of exact fp32 on the same GPU."""
    from advgen.generate import generate
    from advgen.recipe import GenerateRecipe, load_recipe

    recipe, _ = reference
    runs = {}
    for name, over in (("fast", ["batch_size=auto"]),
                       ("exact", ["precision=fp32", "channels_last=false", "fuse_bn=false"])):
        out = generate(load_recipe(recipe, GenerateRecipe, [f"output.dir={tmp_path / name}", "device=cuda", *over]))
        runs[name] = json.loads((out / "manifest.json").read_text())
    fast, exact = runs["fast"], runs["exact"]
    assert fast["speed"]["device"] == "cuda" and 1 <= fast["speed"]["batch_size"] <= 1024
    assert abs(fast["stats"]["mean_success"] - exact["stats"]["mean_success"]) <= 0.02
    assert fast["stats"]["mean_l2"] == pytest.approx(exact["stats"]["mean_l2"], rel=0.02)


@pytest.mark.parametrize("env, recipe_over, want", [
    ({}, {}, ("auto", "auto", [])),
    ({"ACCELERATE_MIXED_PRECISION": "no", "ACCELERATE_DYNAMO_BACKEND": "NO"}, {}, ("auto", "auto", [])),
    ({"ACCELERATE_MIXED_PRECISION": "bf16"}, {}, ("bf16", "auto", ["precision auto follows"])),
    ({"ACCELERATE_MIXED_PRECISION": "bf16"}, {"precision": "fp32"}, ("fp32", "auto", ["precision fp32 (the recipe) wins"])),
    ({"ACCELERATE_MIXED_PRECISION": "no"}, {"precision": "bf16"}, ("bf16", "auto", ["precision bf16 (the recipe) wins"])),
    ({"ACCELERATE_DYNAMO_BACKEND": "INDUCTOR"}, {}, ("auto", True, ["compile auto follows"])),
    ({"ACCELERATE_DYNAMO_BACKEND": "INDUCTOR"}, {"compile": False}, ("auto", False, ["compile false (the recipe) wins"])),
])
def test_precision_and_compile_follow_the_launcher_unless_the_recipe_says(gen_recipe, env, recipe_over, want):
    """`accelerate launch --mixed_precision bf16` / `--dynamo_backend` used to be ignored without a word."""
    from advgen.generate import follow_launcher
    from advgen.recipe import GenerateRecipe, load_recipe

    path, _ = gen_recipe(**recipe_over)
    precision, compile_, notes = follow_launcher(load_recipe(path, GenerateRecipe), env)
    assert (precision, compile_) == want[:2]
    assert len(notes) == len(want[2]) and all(n.startswith(w) for n, w in zip(notes, want[2]))


def test_fp16_launcher_is_a_one_line_error(gen_recipe):
    from advgen.errors import RecipeError
    from advgen.generate import follow_launcher
    from advgen.recipe import GenerateRecipe, load_recipe

    path, _ = gen_recipe()
    with pytest.raises(RecipeError, match="mixed_precision is fp16.*--mixed_precision bf16 or no"):
        follow_launcher(load_recipe(path, GenerateRecipe), {"ACCELERATE_MIXED_PRECISION": "fp16"})


def test_accelerate_mixed_precision_bf16_reaches_the_attack(gen_recipe):
    path, out = gen_recipe(source__limit=32)
    p = accelerate_launch([path], extra=["--mixed_precision", "bf16"])
    assert "precision auto follows accelerate's --mixed_precision bf16" in p.stdout
    assert "runs on 1 proc, cpu, bfloat16" in p.stdout          # the speed settings as words, not a dict
    assert json.loads((out / "manifest.json").read_text())["speed"]["autocast"] == "bfloat16"


def test_shipped_recipe_by_name_under_accelerate_launch_m_from_another_directory(tmp_path):
    """`accelerate launch -m advgen.generate digits_det` outside the repo (the README's recipes are package data)."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--num_processes", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "advgen.generate", "digits_det",
           "source.limit=24", "output.dir=out", "output.shard_size=24"]
    p = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.returncode == 0, p.stderr[-3000:]
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m["count"] == 24 and m["recipe"]["name"] == "digits_det"
    assert "values were not passed" not in p.stderr
