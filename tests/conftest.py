"""Shared fixtures. The Hub plugin comes first: it sets HF_ENDPOINT & co. before anything imports
huggingface_hub or datasets (they read those variables once, at import)."""

pytest_plugins = ["tests.support.conftest_hub"]

import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

# One intra-op thread in the test process: on 2 shared cores, torch's 2 threads thrash (measured:
# a 5 s training fixture took 88 s under load). advgen's commands run in-process read OMP_NUM_THREADS (and keep
# to one thread too); run() passes it to subprocesses; no progress bars in the test log.
torch.set_num_threads(1)
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["TQDM_DISABLE"] = "1"

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
CIFAR = SHARED / "data" / "cifar10"
if not CIFAR.is_dir() and (REPO / ".gpu_data" / "cifar10").is_dir():    # the GPU machine: scripts/gpu_check.sh carries it
    CIFAR = REPO / ".gpu_data" / "cifar10"


def run(cmd, timeout=600, check=True, **kw) -> subprocess.CompletedProcess:
    """Run a real command (console script, accelerate launch) from the repo root; show its output on failure."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", TQDM_DISABLE="1", OMP_NUM_THREADS="1")
    env.update(kw.pop("env", {}))
    p = subprocess.run([str(c) for c in cmd], cwd=kw.pop("cwd", REPO), capture_output=True, text=True,
                       timeout=timeout, env=env, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} exited {p.returncode}\nSTDOUT:\n{p.stdout[-3000:]}\nSTDERR:\n{p.stderr[-5000:]}")
    return p


def advgen(*args, **kw):
    return run([sys.executable, "-m", "advgen.cli", *args], **kw)


def accelerate_launch(script_args, num_processes=1, extra=(), **kw):
    """`accelerate launch` for real. Two CPU ranks need --multi_gpu (accelerate's --cpu starts only one)."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no"]
    if num_processes > 1:
        cmd += ["--multi_gpu", "--num_processes", str(num_processes)]
    else:
        cmd += ["--num_processes", "1"]
    cmd += list(extra) + [str(REPO / "advgen" / "generate.py"), *script_args]
    return run(cmd, **kw)


def write_yaml(path: Path, data: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def make_det_set(d: Path, model: Path, limit: int, shard_size: int, npy: bool = False) -> Path:
    """D̂det of the first `limit` digits (3 PGD steps of 0.5, eps 1.5, against `model`), made by the real
    `advgen generate` under `d`; returns the output dir."""
    recipe = write_yaml(d / "gen.yaml", {
        "name": "t_det", "dataset": "d_det", "source": {"kind": "digits", "limit": limit},
        "model": {"checkpoint": str(model)},
        "attack": {"norm": "l2", "eps": 1.5, "step_size": 0.5, "steps": 3},
        "output": {"dir": str(d / "out"), "shard_size": shard_size, "npy": npy}, "batch_size": shard_size,
        "seed": 0})
    advgen("generate", recipe)
    return d / "out"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A small CNN trained on digits for a few epochs (~5 s): the source model of attack/generate tests."""
    from advgen.models.train import train_model
    from advgen.recipe import TrainRecipe, from_dict

    d = tmp_path_factory.mktemp("tiny_model")
    recipe = from_dict(TrainRecipe, {
        "name": "tiny_digits", "source": {"kind": "digits"},
        "model": {"arch": "small_cnn", "width": 16, "feature_dim": 32},
        "train": {"epochs": 12, "batch_size": 64, "optimizer": "adam", "lr": 0.003, "weight_decay": 0.0,
                  "milestones": []},
        "checkpoint": str(d / "tiny.safetensors"), "seed": 0})
    meta = train_model(recipe)
    assert meta["metrics"]["test_acc"] > 0.9, meta["metrics"]
    return d / "tiny.safetensors"


@pytest.fixture
def gen_recipe(tmp_path, tiny_model):
    """A small digits D̂det recipe on the tiny model: returns (recipe path, output dir)."""
    def make(**over):
        data = {"name": "t_det", "dataset": "d_det", "source": {"kind": "digits", "limit": 120},
                "model": {"checkpoint": str(tiny_model)},
                "attack": {"norm": "l2", "eps": 1.5, "step_size": 0.3, "steps": 10},
                "output": {"dir": str(tmp_path / "out"), "shard_size": 32, "npy": True},
                "batch_size": 16, "seed": 3}
        for k, v in over.items():
            node = data
            keys = k.split("__")
            for kk in keys[:-1]:
                node = node[kk]
            node[keys[-1]] = v
        return write_yaml(tmp_path / "recipe.yaml", data), Path(data["output"]["dir"])
    return make
