"""`advgen bench-e2e`: end-to-end `generate` time against the attack compute alone, and 1 vs N processes.

    advgen bench-e2e recipes/cifar_cpu_det.yaml --processes 1,2 --repeats 3 --out runs/bench_e2e.json
    advgen bench-e2e recipes/digits_det.yaml attack.steps=20 --processes 1

For the recipe (overrides as in `advgen generate`):

- attack_only: in this process, every shard of the recipe run through generate's own `run_shard` (the prepared
  model, the same batches, the per-sample measurements and the uint8 copy) with nothing encoded or written;
  torch uses all the cores given (--threads, default: all).
- generate_<N>p: the real `accelerate launch` of advgen/generate.py with N processes (N > 1: --multi_gpu, one
  torch thread per rank, so the same cores in total) into a fresh temporary output, timed from launch to exit:
  interpreter and torch start-up, source loading, the attack, PNG/tar/parquet writing, manifest.

Reports seconds (median of --repeats, round-robin), images/s, the ratio of each generate to attack_only, and what
each generate's manifest says about itself (its attack seconds, setup seconds, time blocked on the writer).
The source model must exist (a recipe's train_recipe is trained and cached first, outside the timing).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from advgen.cli import command_parser
from advgen.cli import run as cli_run
from advgen.errors import BenchError, UsageError

REPO = Path(__file__).resolve().parents[2]     # the checkout: advgen/tools/bench_e2e.py


def attack_only(recipe) -> dict:
    """generate's attack path on every shard, without writing; returns {seconds, images}."""
    import torch

    from advgen.generate import build_job, resolve_checkpoint, run_shard

    device = torch.device("cuda" if torch.cuda.is_available() and recipe.device != "cpu" else "cpu")
    ckpt = resolve_checkpoint(recipe.model, train_if_missing=False)
    t0 = time.perf_counter()
    job, _ = build_job(recipe, ckpt, device)
    setup = time.perf_counter() - t0
    n, size = len(job.source), recipe.output.shard_size
    t0 = time.perf_counter()
    for i in range((n + size - 1) // size):
        run_shard(job, i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return {"seconds": time.perf_counter() - t0, "setup_seconds": setup, "images": n}


def generate_run(recipe_path: str, overrides: list[str], processes: int, cores: int) -> dict:
    """One real `accelerate launch` of generate.py into a fresh temporary output; wall seconds and its manifest."""
    out = Path(tempfile.mkdtemp(prefix="advgen_e2e_"))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "--num_processes", str(processes)]
    if processes > 1:
        cmd.append("--multi_gpu")
    cmd += [str(REPO / "advgen" / "generate.py"), recipe_path, *overrides, f"output.dir={out / 'o'}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, cores // processes)), "TQDM_DISABLE": "1"}
    try:
        t0 = time.perf_counter()
        p = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            raise BenchError(f"generate with {processes} processes failed (exit {p.returncode}): "
                             f"{(p.stderr.strip().splitlines() or ['?'])[-1]}")
        m = json.loads((out / "o" / "manifest.json").read_text())
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {"seconds": wall, "manifest_attack_seconds": m["seconds"]["attack"],
            "setup_seconds": m["speed"].get("setup_seconds"), "writer_wait_seconds": m["speed"].get("writer_wait_seconds"),
            "images": m["count"], "speed": m["speed"]}


def run(args) -> dict:
    import torch

    from advgen.generate import resolve_checkpoint
    from advgen.recipe import GenerateRecipe, load_recipe

    recipe = load_recipe(args.recipe, GenerateRecipe, args.overrides)
    resolve_checkpoint(recipe.model)                 # train + cache the source model once, outside the timing
    cores = args.threads or os.cpu_count() or 1
    torch.set_num_threads(cores)
    runs: dict[str, list[dict]] = {"attack_only": []}
    for n in args.processes:
        runs[f"generate_{n}p"] = []
    for rep in range(args.repeats):               # round-robin: load from elsewhere hits every method alike
        runs["attack_only"].append(attack_only(recipe))
        for n in args.processes:
            runs[f"generate_{n}p"].append(generate_run(args.recipe, args.overrides, n, cores))
        print(f"repeat {rep + 1}/{args.repeats}: " + ", ".join(f"{k} {v[-1]['seconds']:.1f} s"
                                                                 for k, v in runs.items()), flush=True)
    methods = {}
    base = statistics.median(r["seconds"] for r in runs["attack_only"])
    for name, rs in runs.items():
        sec = statistics.median(r["seconds"] for r in rs)
        e = {"seconds": round(sec, 6), "images_per_s": round(rs[0]["images"] / sec, 2),
             "ratio_vs_attack_only": round(sec / base, 3), "all_seconds": [round(r["seconds"], 3) for r in rs]}
        for k in ("manifest_attack_seconds", "setup_seconds", "writer_wait_seconds"):
            if k in rs[0]:
                e[k] = statistics.median(r[k] for r in rs)
        if "speed" in rs[0]:
            e["speed"] = rs[0]["speed"]
        methods[name] = e
    return {"recipe": args.recipe, "overrides": args.overrides, "images": runs["attack_only"][0]["images"],
            "cores": cores, "repeats": args.repeats, "torch": torch.__version__,
            "device": "cuda" if torch.cuda.is_available() and recipe.device != "cpu" else "cpu",
            "loadavg_after": [round(v, 2) for v in os.getloadavg()], "methods": methods}


def table(result: dict) -> str:
    lines = [f"advgen bench-e2e: {result['recipe']} {' '.join(result['overrides'])} ({result['images']} images, "
             f"{result['cores']} cores, {result['device']}, median of {result['repeats']})",
             f"{'method':<14}{'seconds':>9}{'images/s':>10}{'vs attack':>11}{'its attack s':>14}{'setup s':>9}"
             f"{'writer wait s':>15}"]
    for name, e in result["methods"].items():
        extra = "".join(f"{e[k]:>{w}.1f}" if k in e and e[k] is not None else f"{'-':>{w}}"
                        for k, w in (("manifest_attack_seconds", 14), ("setup_seconds", 9),
                                     ("writer_wait_seconds", 15)))
        lines.append(f"{name:<14}{e['seconds']:>9.1f}{e['images_per_s']:>10.1f}"
                     f"{e['ratio_vs_attack_only']:>10.2f}x{extra}")
    return "\n".join(lines)


def main(argv=None) -> int:
    from advgen.tools.bench import emit

    p = command_parser("bench-e2e")
    args = p.parse_intermixed_args(argv)      # flags may come between the overrides
    try:
        args.processes = [int(x) for x in args.processes.split(",") if x.strip()]
        assert args.processes and min(args.processes) >= 1 and args.repeats >= 1
    except (ValueError, AssertionError):
        raise UsageError("--processes takes counts >= 1 like 1,2 and --repeats >= 1") from None
    result = run(args)
    emit(table(result), result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(cli_run("bench-e2e", main))
