"""scripts/gpu_check.sh runs blind on a lent GPU: its step selection, background steps and JSON must work first time.
On this CPU the steps chosen here run their no-GPU paths (env reports, oom says there is no CUDA)."""
import json
import os
import subprocess

from tests.conftest import CIFAR, REPO


def run_check(tmp_path, steps):
    env = dict(os.environ, GPU_CHECK_SMOKE="1", GPU_CHECK_BOX_SCALE="6", GPU_CHECK_STEPS=steps,
               GPU_CHECK_OUT=str(tmp_path / "gpu"), OUT=str(tmp_path / "out"))
    return subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


def test_chosen_steps_run_in_the_background_and_each_writes_json(tmp_path):
    p = run_check(tmp_path, "env& oom")
    assert p.returncode == 0, p.stdout + p.stderr
    summary = json.loads((tmp_path / "gpu" / "summary.json").read_text())
    assert summary == {"env": "ok", "oom": "ok"}
    assert json.loads((tmp_path / "gpu" / "env.json").read_text())["torch"]
    assert (tmp_path / "out" / "gpu" / "summary.json").is_file()       # copied where device.run fetches from
    # the runs' tarball comes back when there are gpu runs to pack (a clean clone has none)
    assert (tmp_path / "out" / "gpu_runs.tgz").is_file() == any((REPO / "runs").glob("gpu_*"))


def test_an_unknown_step_stops_before_anything_runs(tmp_path):
    p = run_check(tmp_path, "env pipelin")
    assert p.returncode == 2 and "unknown step pipelin" in p.stdout
    assert not (tmp_path / "gpu" / "env.json").exists()


def test_pipeline_overrides_reach_reproduce_and_run_in_a_dir_of_their_own(tmp_path):
    env = dict(os.environ, GPU_CHECK_SMOKE="1", GPU_CHECK_PIPELINE="reproduce_fast10k", GPU_CHECK_DATA=str(CIFAR),
               GPU_CHECK_PIPELINE_ARGS="standard_model.airbench.whiten=false standard_model.airbench.whiten_eps=-1")
    p = subprocess.run(["python", "scripts/gpu_check.py", "pipeline", str(tmp_path)], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)
    res = json.loads((tmp_path / "pipeline.json").read_text())
    assert res["overrides"] == ["standard_model.airbench.whiten=false", "standard_model.airbench.whiten_eps=-1"]
    assert res["run_dir"].startswith("runs/gpu_fast10k_") and res["returncode"] == 2, (p.stdout, res)
    assert "airbench.whiten_eps: must be > 0" in res["tail"]
