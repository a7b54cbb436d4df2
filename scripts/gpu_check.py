"""The blind GPU check, one step per call: `python scripts/gpu_check.py STEP OUT_DIR`, each writing OUT_DIR/STEP.json.

scripts/gpu_check.sh runs the steps in the order of ../shared/GPU_NOTES.md, each under `timeout`, so a step that
hangs or runs long costs its own box and nothing else; every step writes its JSON when it ends (and `pipeline`
leaves its stage records behind whatever happens). Steps:

    env          device, capability, versions, TF32/cuDNN flags, free memory
    tests        the gpu-marked tests (pytest -m gpu)
    verifier     the fast CIFAR verifier (airbench94, recipes/fast/verify.yaml settings) on D: clean accuracy with and
                 without test-time augmentation, seconds; keeps its weights for `precision`
    determinism  two fresh 1-process generate runs of a synthetic source: same bytes? then delete shards, resume, same?
    bench        sync audit of the attack loop, then `advgen bench` ResNet-50 batch 500 against torchattacks (TFLOP/s)
    precision    bf16 against fp32 on the verifier: targeted PGD (success, mean l2) and inversion (feature distance,
                 ||x_r - x||) on one batch, with the tolerances stated in the JSON
    oom          accelerate's batch-size search under a small per-process memory fraction
    pipeline     as much of recipes/$GPU_CHECK_PIPELINE.yaml (default reproduce_fast) as its box allows (stage
                 records give the times); reproduce_fast10k fits whole. GPU_CHECK_PIPELINE_ARGS: overrides for it
                 (STAGE.KEY=VALUE ...), run in a dir of their own

CPU smoke run of the same code, tiny sizes (what CI-less sessions can check): GPU_CHECK_SMOKE=1.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SMOKE = os.environ.get("GPU_CHECK_SMOKE") == "1"
DATA = os.environ.get("GPU_CHECK_DATA", str(REPO / ".gpu_data" / "cifar10"))


def device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() and not SMOKE else "cpu")


def write(out: Path, step: str, result: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{step}.json").write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps({step: result}, default=str)[:2000], flush=True)


def cifar(split: str, limit: int | None = None):
    from advgen.recipe import SourceConfig
    from advgen.sources import load_source

    return load_source(SourceConfig(kind="hf", path=DATA, limit=limit, test_limit=limit), split)


def step_env(out: Path) -> dict:
    import torch

    r = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
         "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "tf32_cudnn": torch.backends.cudnn.allow_tf32,
         "cudnn_benchmark": torch.backends.cudnn.benchmark, "cudnn_deterministic": torch.backends.cudnn.deterministic}
    for name in ("accelerate", "datasets", "webdataset", "torchattacks", "safetensors", "numpy", "PIL"):
        try:
            r[name] = __import__(name).__version__
        except Exception as e:  # noqa: BLE001 - a report, not a program path
            r[name] = f"missing ({type(e).__name__})"
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        free, total = torch.cuda.mem_get_info()
        r.update(device=p.name, capability=f"{p.major}.{p.minor}", sms=p.multi_processor_count,
                 memory_gib=round(total / 2**30, 1), free_gib=round(free / 2**30, 1),
                 device_count=torch.cuda.device_count())
    return r


def step_tests(out: Path) -> dict:
    xml = out / "tests.xml"
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
                        f"--junitxml={xml}", "tests"], cwd=REPO, capture_output=True, text=True)
    import xml.etree.ElementTree as ET

    r = {"returncode": p.returncode, "tail": p.stdout[-3000:]}
    if xml.is_file():
        suite = ET.parse(xml).getroot()
        suite = suite if suite.tag == "testsuite" else suite[0]
        r.update({k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")})
    return r


def _verifier(train, test, epochs: int, seed: int = 0):
    import torch

    from advgen.models.airbench import AirbenchNet, train_airbench, tta_logits
    from advgen.models.checkpoint import freeze
    from advgen.models.nets import CIFAR_MEAN, CIFAR_STD, Classifier
    from advgen.models.train import accuracy
    from advgen.recipe import AirbenchConfig, AugmentConfig, TrainConfig

    dev = device()
    cfg = TrainConfig(epochs=epochs, batch_size=1024, lr=11.5, momentum=0.85, weight_decay=0.0153, milestones=[],
                      augment=AugmentConfig(crop_padding=2, flip=True))
    torch.manual_seed(seed)
    model = Classifier(AirbenchNet(3, 10, 64), CIFAR_MEAN, CIFAR_STD).to(dev)
    _sync(dev)
    t0 = time.perf_counter()
    train_airbench(model, train.all_images(), train.labels, cfg, AirbenchConfig(), seed=seed, device=dev)
    _sync(dev)
    seconds = time.perf_counter() - t0
    freeze(model)
    x, y = test.all_images(), test.labels
    with torch.no_grad():
        tta = sum(int((tta_logits(model, x[i:i + 1000].to(dev).float() / 255).argmax(1) == y[i:i + 1000].to(dev))
                      .sum()) for i in range(0, len(y), 1000)) / len(y)
    return model, {"epochs": epochs, "train_images": len(train), "test_images": len(test),
                   "train_seconds": round(seconds, 2), "acc": accuracy(model, x, y), "acc_tta": tta}


def _sync(dev):
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def step_verifier(out: Path) -> dict:
    import torch
    from safetensors.torch import save_file

    n = 2000 if SMOKE else None
    model, r = _verifier(cifar("train", n), cifar("test", n), epochs=1 if SMOKE else 12)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
              str(out / "verifier.safetensors"))
    r["target"] = ("airbench94: >= 93% without TTA on the original CIFAR-10; the offline JPEG copy measured 90.1% "
                   "on an H200 (2026-11-29)")
    r["device"] = str(device()) + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "")
    return r


def step_determinism(out: Path) -> dict:
    import shutil

    work = out / "determinism"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    train = {"name": "gpu_det_model", "source": {"kind": "synthetic", "num_samples": 512, "shape": [3, 32, 32]},
             "model": {"arch": "small_cnn" if SMOKE else "resnet18"},
             "train": {"epochs": 1, "batch_size": 128, "milestones": []},
             "checkpoint": str(work / "model.safetensors")}
    gen = {"name": "gpu_det", "dataset": "d_det", "source": train["source"], "model": {"checkpoint": train["checkpoint"]},
           "attack": {"eps": 0.5, "step_size": 0.1, "steps": 20},
           "output": {"dir": "", "shard_size": 128}, "batch_size": 64, "seed": 0}
    import yaml

    (work / "train.yaml").write_text(yaml.safe_dump(train))
    _advgen("train", work / "train.yaml")
    runs = {}
    for tag in ("a", "b"):
        gen["output"]["dir"] = str(work / tag)
        (work / f"{tag}.yaml").write_text(yaml.safe_dump(gen))
        t0 = time.perf_counter()
        _advgen("generate", work / f"{tag}.yaml")
        runs[tag] = round(time.perf_counter() - t0, 2)

    def files(d):
        return {p.relative_to(d).as_posix(): p.read_bytes() for sub in ("shards", "data") for p in sorted((d / sub).iterdir())}

    same = files(work / "a") == files(work / "b")
    for i in (1, 3):                         # lose two shards, resume
        for p in (work / "b").glob(f"*/*{i:05d}*"):
            p.unlink()
    (work / "b" / "manifest.json").unlink()
    _advgen("generate", work / "b.yaml")
    return {"same_bytes_two_runs": same, "same_bytes_after_resume": files(work / "a") == files(work / "b"),
            "seconds": runs, "note": "fixed batch_size 64; cudnn deterministic settings as generate sets them"}


def _advgen(*args):
    p = subprocess.run([sys.executable, "-m", "advgen.cli", *map(str, args)], cwd=REPO, capture_output=True,
                       text=True, env=dict(os.environ, TQDM_DISABLE="1"))
    if p.returncode != 0:
        raise RuntimeError(f"advgen {' '.join(map(str, args))} exited {p.returncode}: {p.stderr[-1500:]}")
    return p


def step_bench(out: Path) -> dict:
    import warnings

    import torch

    from advgen.models.fast import prepare
    from advgen.attacks.pgd import targeted_pgd
    from advgen.models.nets import CIFAR_MEAN, CIFAR_STD, build_classifier

    dev = device()
    r = {}
    if dev.type == "cuda":                       # host-device syncs inside the attack loop: expect none
        model = build_classifier("resnet18", 10, 3, CIFAR_MEAN, CIFAR_STD).to(dev).eval()
        fast, dtype = prepare(model, device=dev)
        x = torch.rand(64, 3, 32, 32, device=dev)
        t = torch.randint(10, (64,), device=dev)
        targeted_pgd(fast, x, t, steps=2, autocast_dtype=dtype)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            targeted_pgd(fast, x, t, steps=5, autocast_dtype=dtype)
            torch.cuda.set_sync_debug_mode("default")
        r["sync_warnings"] = [str(w.message)[:200] for w in caught]
    bench = out / "bench_resnet50.json"
    args = ["bench", "--model", "resnet50", "--device", dev.type, "--batch", "4" if SMOKE else "500",
            "--steps", "2" if SMOKE else "10", "--repeats", "1" if SMOKE else "3", "--out", bench]
    r["table"] = _advgen(*args).stdout[-3000:]
    r["bench"] = json.loads(bench.read_text())
    return r


def step_precision(out: Path) -> dict:
    import torch

    from advgen.models.fast import prepare
    from advgen.attacks.inversion import invert, relative_distance
    from advgen.attacks.pgd import targeted_pgd
    from advgen.models.checkpoint import freeze
    from advgen.models.nets import CIFAR_MEAN, CIFAR_STD, Classifier
    from advgen.models.airbench import AirbenchNet

    dev = device()
    model = Classifier(AirbenchNet(3, 10, 64), CIFAR_MEAN, CIFAR_STD)
    w = out / "verifier.safetensors"
    if w.is_file():
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(w)))
    freeze(model.to(dev))
    n = 16 if SMOKE else 500
    test = cifar("test", n)
    x = test.all_images().to(dev).float() / 255
    t = (test.labels.to(dev) + 1) % 10
    r = {"trained_weights": w.is_file(), "images": n}
    for name, precision in (("fp32", "fp32"), ("bf16", "bf16")):
        fast, dtype = prepare(model, precision=precision, device=dev)
        xa, _ = targeted_pgd(fast, x, t, eps=0.5, step_size=0.1, steps=10 if SMOKE else 100, autocast_dtype=dtype)
        xq = (xa * 255).round() / 255
        with torch.no_grad():
            succ = float((model(xq).argmax(1) == t).float().mean())
        x0 = x.roll(1, 0)
        xr, _ = invert(fast, x, x0, steps=10 if SMOKE else 1000, step_size=0.1, autocast_dtype=dtype)
        r[name] = {"pgd_success": succ, "pgd_mean_l2": float((xq - x).flatten(1).norm(dim=1).mean()),
                   "inversion_rel_dist_fp32": float(relative_distance(model, xr, x).mean()),
                   "inversion_l2_to_x": float((xr - x).flatten(1).norm(dim=1).mean())}
    a, b = r["fp32"], r["bf16"]
    r["tolerances"] = {"pgd_success_points": 2.0, "pgd_mean_l2_rel": 0.02, "inversion_rel_dist_rel": 0.10,
                       "inversion_l2_rel": 0.05}
    r["within"] = {
        "pgd_success": abs(a["pgd_success"] - b["pgd_success"]) * 100 <= 2.0,
        "pgd_mean_l2": abs(a["pgd_mean_l2"] - b["pgd_mean_l2"]) <= 0.02 * a["pgd_mean_l2"],
        "inversion_rel_dist": abs(a["inversion_rel_dist_fp32"] - b["inversion_rel_dist_fp32"])
        <= 0.10 * a["inversion_rel_dist_fp32"],
        "inversion_l2": abs(a["inversion_l2_to_x"] - b["inversion_l2_to_x"]) <= 0.05 * a["inversion_l2_to_x"]}
    return r


def step_oom(out: Path) -> dict:
    import torch

    from advgen.models.fast import auto_batch_size, prepare
    from advgen.attacks.pgd import targeted_pgd
    from advgen.models.nets import CIFAR_MEAN, CIFAR_STD, build_classifier

    dev = device()
    if dev.type != "cuda":
        return {"skipped": "no CUDA"}
    index = dev.index if dev.index is not None else torch.cuda.current_device()     # it wants an index, not "cuda"
    torch.cuda.set_per_process_memory_fraction(0.02, index)      # ~2.8 GiB of an H200
    model = build_classifier("resnet50", 10, 3, CIFAR_MEAN, CIFAR_STD).to(dev).eval()
    fast, dtype = prepare(model, device=dev)

    def probe(b):
        x = torch.rand(b, 3, 32, 32, device=dev)
        targeted_pgd(fast, x, torch.zeros(b, dtype=torch.long, device=dev), steps=1, autocast_dtype=dtype)
        torch.cuda.synchronize(dev)

    t0 = time.perf_counter()
    b = auto_batch_size(probe, 4096, device=dev)
    return {"memory_fraction": 0.02, "batch_size": b, "seconds": round(time.perf_counter() - t0, 2)}


def step_pipeline(out: Path) -> dict:
    recipe = os.environ.get("GPU_CHECK_PIPELINE", "reproduce_fast")       # or reproduce_fast10k: one lease holds it
    run_dir = REPO / "runs" / ("gpu_fast" if recipe == "reproduce_fast" else f"gpu_{recipe.removeprefix('reproduce_')}")
    budget = int(os.environ.get("GPU_CHECK_PIPELINE_SECONDS", "150"))
    extra = shlex.split(os.environ.get("GPU_CHECK_PIPELINE_ARGS", ""))   # e.g. standard_model.airbench.whiten=false
    if extra:
        run_dir = run_dir.with_name(run_dir.name + "_" + hashlib.sha256(" ".join(extra).encode()).hexdigest()[:8])
    args = [sys.executable, "-m", "advgen.cli", "reproduce", str(REPO / "recipes" / f"{recipe}.yaml"),
            f"source.path={DATA}", f"dir={run_dir}", *extra]
    if SMOKE:
        args += ["source.limit=256", "source.test_limit=256", "standard_model.train.epochs=1",
                 "robust_model.train.epochs=1", "d_robust.attack.steps=2", "d_nonrobust.attack.steps=2",
                 "d_rand.attack.steps=2", "d_det.attack.steps=2", "verify.seeds=[0]", "verify.train.epochs=1",
                 "verify.eval.steps=1", "verify.train.batch_size=128"]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=budget,
                           env=dict(os.environ, TQDM_DISABLE="1"))
        rc, tail = p.returncode, (p.stdout + p.stderr)[-3000:]
    except subprocess.TimeoutExpired as e:
        rc, tail = "timeout", ((e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes)
                               else (e.stdout or ""))[-3000:]
    stages = {}
    for f in sorted((run_dir / "stages").glob("*.json")):
        rec = json.loads(f.read_text())
        stages[f.stem] = {k: rec.get(k) for k in ("status", "seconds", "cpu_seconds_rank0", "outputs")}
    return {"recipe": recipe, "overrides": extra, "run_dir": run_dir.relative_to(REPO).as_posix(), "returncode": rc,
            "seconds": round(time.perf_counter() - t0, 1), "budget_seconds": budget,
            "stages": stages, "tail": tail}


STEPS = {"env": step_env, "tests": step_tests, "verifier": step_verifier, "determinism": step_determinism,
         "bench": step_bench, "precision": step_precision, "oom": step_oom, "pipeline": step_pipeline}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in STEPS:
        print(f"usage: gpu_check.py {{{'|'.join(STEPS)}}} OUT_DIR", file=sys.stderr)
        return 2
    step, out = argv[0], Path(argv[1])
    t0 = time.perf_counter()
    try:
        result = STEPS[step](out)
        status = "ok"
    except Exception as e:  # noqa: BLE001 - the check reports every failure and goes on to the next step
        import traceback

        result, status = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}, "error"
    write(out, step, {"status": status, "seconds": round(time.perf_counter() - t0, 1), **result})
    return 0 if status == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
