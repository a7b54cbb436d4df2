"""`advgen reproduce` for real on a shrunken digits pipeline (recipes/reproduce_digits.yaml with small limits and
few steps): every stage runs, the report has the Table 1 rows beside the paper, a second run redoes nothing, a
changed upstream redoes exactly what depends on it, and a run killed with -9 and resumed by two accelerate processes
gives the bytes and numbers of the uninterrupted one-process run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, advgen, run

RECIPE = REPO / "recipes" / "reproduce_digits.yaml"
# ~30 s per full run on 1 core: 200 digits, 3 epochs, 20 inversion / 10 PGD steps, 1 seed of 2 epochs.
SMALL = ["source.limit=200", "source.test_limit=150",
         "standard_model.train.epochs=4", "robust_model.train.epochs=8", "robust_model.train.adversarial.steps=3",
         "d_robust.attack.steps=40", "d_nonrobust.attack.steps=20", "d_rand.attack.steps=10", "d_det.attack.steps=10",
         "d_robust.output.shard_size=25", "d_nonrobust.output.shard_size=50",
         "verify.seeds=[0]", "verify.train.epochs=2", "verify.eval.steps=3", "verify.eval.extra_eps=[1.0]"]
STAGES = ["standard_model", "robust_model", "d_robust", "d_nonrobust", "d_rand", "d_det", "verify"]


def reproduce(out: Path, *extra, **kw):
    return advgen("reproduce", RECIPE, f"dir={out}", *SMALL, *extra, check=False, **kw)


def records(out: Path) -> dict:
    return {s: json.loads((out / "stages" / f"{s}.json").read_text()) for s in STAGES}


def dataset_bytes(out: Path) -> dict:
    return {p.relative_to(out).as_posix(): p.read_bytes()
            for p in sorted((out / "datasets").glob("*/shards/*.tar")) + sorted((out / "datasets").glob("*/data/*"))}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    out = tmp_path_factory.mktemp("repro") / "run"
    p = reproduce(out)
    assert p.returncode in (0, 1), p.stderr[-3000:]
    return out, p


def test_every_stage_runs_and_the_report_has_table1_beside_the_paper(pipeline):
    out, p = pipeline
    report = json.loads((out / "report.json").read_text())
    assert p.returncode == (0 if report["passed"] else 1)
    assert [r["dataset"] for r in report["table1"]] == ["baseline_std", "baseline_adv", "d_robust", "d_nonrobust",
                                                         "d_rand", "d_det"]
    for r in report["table1"]:
        assert 0.0 <= r["robust_acc"] <= r["std_acc"] <= 1.0 and r["seeds"] == [0]
    recs = records(out)
    assert all(r["status"] == "done" and r["seconds"] > 0 for r in recs.values())
    for r in recs.values():     # the machine's busy time includes the stage's own (to the 10 ms tick)
        assert r["machine_cpu_seconds"] >= r["cpu_seconds_rank0"] - 0.1 and r["machine_cores"] >= 1, r
    # the link the pipeline makes: each set was generated from the checkpoint its model stage trained
    for name, model in (("d_robust", "robust_model"), ("d_det", "standard_model")):
        m = json.loads((out / "datasets" / name / "manifest.json").read_text())
        assert m["checkpoint"]["sha256"] == recs[model]["outputs"]["sha256"]
        assert m["count"] == 200
    gen = {g["dataset"]: g for g in report["generation"]}
    assert gen["d_det"]["success"] == pytest.approx(
        json.loads((out / "datasets" / "d_det" / "manifest.json").read_text())["stats"]["mean_success"])
    assert gen["d_robust"]["rel_dist_final"] < gen["d_robust"]["rel_dist_init"]
    robust = report["source_models"][1]
    assert robust["model"] == "robust_model" and robust["clean"] > 0.3 and robust["num_test"] == 150
    md = (out / "report.md").read_text()
    assert "| Std training on D |" in md and "| D̂det |" in md and "paper std" in md and "| machine CPU s |" in md
    for fig in ("verify/accuracy.png", "verify/figure2a.png", "verify/robustness.png", "stage_times.png"):
        assert (out / fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", fig
        assert f"]({fig})" in md
    assert len(list((out / "verify" / "runs").glob("*.json"))) == 6


def test_second_run_redoes_nothing(pipeline):
    out, first = pipeline
    before = records(out)
    t0 = time.time()
    p = reproduce(out)
    assert p.returncode == first.returncode, p.stderr[-2000:]
    assert p.stdout.count("inputs unchanged: skipped") == len(STAGES)
    assert records(out) == before
    assert time.time() - t0 < 60


def test_a_changed_upstream_redoes_what_depends_on_it_only(pipeline, tmp_path):
    import shutil

    src, _ = pipeline
    out = tmp_path / "run"
    shutil.copytree(src, out)
    before = records(out)         # a moved or copied run keeps its finished stages (paths count relative to it)
    runs_before = {f.name: f.stat().st_mtime_ns for f in (out / "verify" / "runs").glob("*.json")}
    p = reproduce(out, "standard_model.train.epochs=5")
    assert p.returncode in (0, 1), p.stderr[-3000:]
    after = records(out)
    assert after["robust_model"] == before["robust_model"]                 # not upstream of the change
    assert after["standard_model"]["key"] != before["standard_model"]["key"]
    for name in ("d_nonrobust", "d_rand", "d_det"):
        assert after[name]["finished"] >= after["standard_model"]["finished"]
        m = json.loads((out / "datasets" / name / "manifest.json").read_text())
        assert m["checkpoint"]["sha256"] == after["standard_model"]["outputs"]["sha256"]
    runs_after = {f.name: f.stat().st_mtime_ns for f in (out / "verify" / "runs").glob("*.json")}
    # verification reuses the models whose training set did not change (D and D̂R)
    assert runs_after["baseline_std-seed0.json"] == runs_before["baseline_std-seed0.json"]
    assert runs_after["baseline_adv-seed0.json"] == runs_before["baseline_adv-seed0.json"]
    assert runs_after["d_det-seed0.json"] != runs_before["d_det-seed0.json"]


def test_kill_9_mid_generation_then_two_processes_resume_to_the_same_bytes(pipeline, tmp_path):
    """kill -9 during D̂R's generation, then resume with two accelerate processes: the finished stages are kept, D̂R
    resumes at its unfinished shard, and every set and every number equals the uninterrupted one-process run's (the
    output depends neither on the interruption nor on the number of processes)."""
    ref, _ = pipeline
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONUNBUFFERED="1", TQDM_DISABLE="1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "advgen.cli", "reproduce", str(RECIPE), f"dir={out}", *SMALL]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    markers = out / "datasets" / "d_robust" / "markers"
    while time.time() < deadline and len(list(markers.glob("*.json"))) < 1:
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "datasets" / "d_robust" / "manifest.json").exists()
    assert json.loads((out / "stages" / "d_robust.json").read_text())["status"] == "running"
    kept = {p.name: p.read_bytes() for p in markers.glob("*.json")}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "--multi_gpu", "--num_processes", "2",
           str(REPO / "advgen" / "reproduce.py"), str(RECIPE), f"dir={out}", *SMALL]
    p = run(cmd, check=False)
    assert p.returncode in (0, 1), p.stderr[-3000:]
    assert "[standard_model] done before" in p.stdout and "[d_robust] running" in p.stdout
    assert {n: (markers / n).read_bytes() for n in kept} == kept          # finished shards were not redone
    recs = records(out)
    assert recs["d_det"]["world_size"] == recs["verify"]["world_size"] == 2
    assert dataset_bytes(out) == dataset_bytes(ref)
    a, b = json.loads((out / "report.json").read_text()), json.loads((ref / "report.json").read_text())
    assert [(r["std_acc"], r["robust_acc"]) for r in a["table1"]] == [(r["std_acc"], r["robust_acc"])
                                                                       for r in b["table1"]]


def in_process(capsys, monkeypatch, *args) -> tuple[int, str, str]:
    """`advgen reproduce ARGS` in this process (the console script's code path, without a fresh interpreter)."""
    from advgen.cli import main

    monkeypatch.chdir(REPO)
    capsys.readouterr()
    rc = main(["reproduce", *map(str, args)])
    return (rc, *capsys.readouterr())


def test_plan_prints_flops_per_stage_and_writes_json(tmp_path, capsys, monkeypatch):
    rc, out, err = in_process(capsys, monkeypatch, RECIPE, "--plan", "--device", "cpu", "--out", tmp_path / "plan.json")
    assert rc == 0, err
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert [s["stage"] for s in plan["stages"]] == STAGES
    inv = next(s for s in plan["stages"] if s["stage"] == "d_robust")
    pgd = next(s for s in plan["stages"] if s["stage"] == "d_det")
    assert inv["flops"] == pytest.approx(10 * pgd["flops"], rel=0.02)     # 1000 vs 100 steps on the same images
    assert inv["images"] == 1257 and plan["total_seconds"] == pytest.approx(plan["total_flops"] / 0.05e12)
    assert "| d_robust | inversion 1000 steps | 1,257 |" in out


def test_plan_of_an_unreachable_source_is_one_line(capsys, monkeypatch):
    rc, _, err = in_process(capsys, monkeypatch, RECIPE, "--plan", "source.kind=hf", "source.path=no_such_dir")
    assert rc == 2 and "source.path: 'no_such_dir' is not a local directory" in err and "Traceback" not in err


@pytest.mark.parametrize("args, message", [
    (["datasets.d_det.recipe=recipes/digits_rand.yaml"], "makes 'd_rand', not 'd_det'"),
    (["verify.datasets.baseline_adv=null"], "baseline_adv"),
    (["d_det.attack.epz=1"], "d_det: "),
    (["robust_model=1"], "give a key of the robust_model stage's recipe"),
    (["verify.recipe=nope.yaml"], "does not exist"),
])
def test_bad_pipelines_fail_with_one_line_before_anything_runs(tmp_path, args, message, capsys, monkeypatch):
    out = tmp_path / "run"
    rc, _, err = in_process(capsys, monkeypatch, RECIPE, f"dir={out}", *args)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("advgen reproduce: error: ") and message in lines[0], lines
    assert not out.exists()
