"""Verify generated datasets: train a fresh model on each, evaluate it on the ORIGINAL test set.

    advgen verify recipes/verify_digits_det.yaml [KEY=VALUE ...]      # e.g. seeds=[0,1,2] report_dir=/tmp/r
    accelerate launch advgen/verify.py recipes/fast/verify.yaml  # N processes share the (dataset, seed) runs

For every entry of the recipe's `datasets` (advgen.recipe.VerifyRecipe: a generated set, or a baseline: standard /
adversarial training on the original training split D) and every seed: build a fresh model, train it with standard
training (advgen.models.train.fit, or the airbench trainer), measure standard accuracy and robust accuracy under
untargeted PGD at `eval.eps` on the source's test split. The mean ± std over seeds is compared with the entry's
`expected` ranges and the paper's numbers (Table 1, Figure 2b), and the recipe's claims ("A.robust_acc >
B.robust_acc + 0.1") are checked on the means. Each row records `manifest_sha256`, the output it measured.

Generated sets are read by advgen.writers.reader (an output's shards, a `load_dataset` dir, a Hub config); the report
(report.json, report.md, the figures, and a copy of the JSON in OUT/verify/ of each output verified, where `advgen
card` finds it) is written by advgen.report. Each finished model is kept in report_dir/runs/, so a killed run
resumes at the model it was training.

Exit status: 0 all results inside their expected ranges and all `orderings` hold; 1 otherwise (each
failure printed); 2 the recipe or a dataset cannot be used (one line on stderr).

Cost on 2 shared CPU cores (OMP_NUM_THREADS=1): one digits model (small CNN, 30 epochs, four PGD
evaluations) 15-60 s, an adversarially trained one 2-3 min; recipes/verify_digits_study.yaml (60
models) 30-50 min. A CIFAR ResNet-50 for 150 epochs is hours on one GPU (recipes/fast/verify.yaml: seconds).
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):   # run as a script (accelerate launch advgen/verify.py): make `advgen` importable
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from advgen.cli import command_parser, run, say
from advgen.errors import AdvgenError, DatasetError
from advgen.recipe import DatasetEntry, VerifyRecipe, load_recipe, non_default, parse_claim, to_dict
from advgen.report import markdown_table, write_verify_report
from advgen.writers.layout import MANIFEST, manifest_sha256, read_keyed_run, write_json
from advgen.writers.reader import TrainSet, identity, load_trainset, locate

_write_json = write_json       # advgen.transfer imports it under this name
__all__ = ["DatasetEntry", "DatasetError", "TrainSet", "load_trainset", "locate", "verify"]


# ----------------------------------------------------------------------------------------------
# Training and evaluation
# ----------------------------------------------------------------------------------------------

def model_name(recipe: VerifyRecipe) -> str:
    m = recipe.model
    if m.arch == "small_cnn":
        return f"small_cnn(w{m.width},f{m.feature_dim})"
    if m.arch == "airbench":
        return f"airbench(w{m.width})"
    return m.arch


def train_and_eval(recipe: VerifyRecipe, entry: DatasetEntry, name: str, train: TrainSet, test, mean, std,
                   seed: int, device: torch.device) -> dict:
    """One fresh model: train on `train`, measure clean and robust accuracy on the uint8 test images."""
    from advgen.models.checkpoint import freeze
    from advgen.models.fast import prepare
    from advgen.models.nets import build_classifier
    from advgen.models.train import accuracy, fit, robust_accuracy

    cfg = recipe.train_config(entry)
    torch.manual_seed(seed)
    c = train.images.shape[1]
    model = build_classifier(recipe.model.arch, len(train.class_names), c, mean, std, recipe.model.width,
                             recipe.model.feature_dim).to(device)
    images = train.images
    if images.dtype != torch.uint8:
        # fit() reads pixels as images.float() / 255; float copies in [0,1] go in scaled by 255 (exact to 1 ulp)
        images = images.float() * 255.0
    t0 = time.perf_counter()
    if recipe.trainer == "airbench":
        from advgen.models.airbench import train_airbench

        losses = train_airbench(model, train.images, train.labels, cfg, recipe.airbench, seed=seed, device=device,
                                desc=f"{name} seed {seed}")
    else:
        losses = fit(model, images, train.labels, cfg, seed=seed, device=device, desc=f"{name} seed {seed}")
    freeze(model)
    t1 = time.perf_counter()
    ev = recipe.eval
    test_images = test.all_images()
    std_acc = accuracy(model, test_images, test.labels, batch_size=ev.batch_size)
    attacked = prepare(model, precision="fp32")[0]      # prepared once for every radius (see robust_accuracy)
    rob_acc = robust_accuracy(attacked, test_images, test.labels, eps=ev.eps, norm=ev.norm, steps=ev.steps,
                              step_size=ev.step_size, batch_size=ev.batch_size,
                              desc=f"{name} seed {seed}: robust accuracy at ε {ev.eps:g}")
    extra = {f"{e:g}": robust_accuracy(attacked, test_images, test.labels, eps=e, norm=ev.norm, steps=ev.steps,
                                       batch_size=ev.batch_size,
                                       desc=f"{name} seed {seed}: robust accuracy at ε {e:g}")
             for e in ev.extra_eps}
    t2 = time.perf_counter()
    shifted = {}
    if ev.shifted_labels:
        shifted["shifted_acc"] = accuracy(model, test_images, (test.labels + 1) % len(train.class_names),
                                          batch_size=ev.batch_size)
    return {"seed": seed, "std_acc": std_acc, "robust_acc": rob_acc, "robust_acc_at": extra, **shifted,
            "train_loss": losses[-1],
            "train_seconds": round(t1 - t0, 2), "eval_seconds": round(t2 - t1, 2), "seconds": round(t2 - t0, 2)}


def _mean_std(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def summarise(recipe: VerifyRecipe, name: str, entry: DatasetEntry, runs: list[dict], origin: str,
              num_train: int, num_test: int, output: Optional[str]) -> dict:
    """One report row: the entry's mean ± std over seeds, the checks, and `manifest_sha256` = `output`, the identity
    of the advgen output it measured (advgen.writers.reader.identity; None for baselines and foreign datasets)."""
    runs = sorted(runs, key=lambda r: recipe.seeds_of(entry).index(r["seed"]))
    std_m, std_s = _mean_std([r["std_acc"] for r in runs])
    rob_m, rob_s = _mean_std([r["robust_acc"] for r in runs])
    failures = []
    for key, value in (("std_acc", std_m), ("robust_acc", rob_m)):
        rng = getattr(entry.expected, key)
        if rng is not None and not rng[0] <= value <= rng[1]:
            failures.append(f"{key} {value:.4f} outside [{rng[0]}, {rng[1]}]")
    cfg = recipe.train_config(entry)
    ev = recipe.eval
    return {
        "dataset": name, "kind": entry.kind, "title": entry.title or name, "data": origin, "manifest_sha256": output,
        "use_npy": entry.use_npy, "model": model_name(recipe), "trainer": recipe.trainer,
        "train": {"epochs": cfg.epochs, "lr": cfg.lr, "optimizer": cfg.optimizer,
                  "augment": dataclasses.asdict(cfg.augment),
                  # adversarial training attacks with the last PGD iterate (keep_best is not used there)
                  "adversarial": dict(dataclasses.asdict(cfg.adversarial), keep_best=False, iterate="last")
                  if cfg.adversarial else None},
        "num_train": num_train, "num_test": num_test,
        "std_acc": std_m, "std_acc_std": std_s, "robust_acc": rob_m, "robust_acc_std": rob_s,
        "eps": ev.eps, "norm": ev.norm, "eval_steps": ev.steps,
        "eval_step_size": ev.step_size or 2.5 * ev.eps / ev.steps,
        "paper_std_acc": entry.paper.std_acc, "paper_robust_acc": entry.paper.robust_acc,
        "paper_ref": entry.paper.ref or None,
        "expected": {"std_acc": entry.expected.std_acc, "robust_acc": entry.expected.robust_acc},
        "passed": not failures, "failures": failures,
        "robust_acc_at": {e: dict(zip(("mean", "std"), _mean_std([r["robust_acc_at"][e] for r in runs])))
                          for e in runs[0]["robust_acc_at"]},
        "seeds": [r["seed"] for r in runs],
        **({"shifted_acc": _mean_std([r["shifted_acc"] for r in runs])[0],
            "shifted_acc_std": _mean_std([r["shifted_acc"] for r in runs])[1]} if "shifted_acc" in runs[0] else {}),
        "seconds": round(float(np.mean([r["seconds"] for r in runs])), 2),   # per model: train + eval
        "seconds_total": round(float(np.sum([r["seconds"] for r in runs])), 2),
        "per_seed": runs,
    }


def pick_device(name: str, state) -> torch.device:
    from advgen.models.train import pick_device as pick

    if name != "cpu" and torch.cuda.is_available():
        return state.device                       # this rank's GPU under accelerate launch
    return pick(name)


def verify(recipe: VerifyRecipe) -> dict:
    """Run every (dataset, seed) model, write the report dir (main process), return the report."""
    from accelerate.utils import gather_object

    from advgen.generate import make_state, threads_per_rank
    from advgen.models.train import channel_stats
    from advgen.sources import load_source
    from advgen.writers.manifest import advgen_version, git_sha

    state = make_state()            # long process-group timeout; gloo when ranks outnumber GPUs
    torch.set_num_threads(threads_per_rank())
    device = pick_device(recipe.device, state)
    t_start = time.time()
    for name, entry in recipe.datasets.items():       # fail fast, before any training
        if entry.kind == "generated":
            try:
                locate(entry)
            except DatasetError as e:
                raise DatasetError(f"datasets.{name}: {e}") from None
    original = load_source(recipe.source, recipe.source.split)
    test = load_source(recipe.source, recipe.source.test_split)
    mean, std = recipe.model.mean, recipe.model.std
    if mean is None or std is None:        # the same normalisation for every training set: D's statistics
        m, s = channel_stats(original.all_images())
        mean, std = mean or m, std or s
    c = original.shape[0]
    mean = list(mean) * c if len(mean) == 1 and c > 1 else list(mean)
    std = list(std) * c if len(std) == 1 and c > 1 else list(std)

    jobs = [(name, seed) for name, entry in recipe.datasets.items() for seed in recipe.seeds_of(entry)]
    run_keys = {job: run_key(recipe, *job, device) for job in jobs}
    done = {job: r for job in jobs if (r := cached_run(recipe, job, run_keys[job])) is not None}
    pending = [job for job in jobs if job not in done]
    state.wait_for_everyone()           # every rank has read the same cache before anyone writes to it
    mine = deal(pending, [job_cost(recipe, name) for name, _ in pending], state.num_processes)[state.process_index]
    if state.is_main_process and done:
        say(f"{recipe.name}: {len(done)} of {len(jobs)} models already trained ({recipe.out_dir / RUNS_DIR}); "
            f"{len(pending)} to go")
    sets: dict[str, TrainSet] = {}
    runs, error = list(done.values()) if state.is_main_process else [], None
    try:
        for k, (name, seed) in enumerate(mine):
            entry = recipe.datasets[name]
            if name not in sets:
                sets[name] = trainset_of(recipe, name, entry, original)
            say(f"{recipe.name}: model {k + 1} of {len(mine)}"
                + (f" on rank {state.process_index}" if state.num_processes > 1 else "")
                + f": {name} seed {seed}", main_process_only=False)
            r = train_and_eval(recipe, entry, name, sets[name], test, mean, std, seed, device)
            r.update(dataset=name, origin=sets[name].origin, num_train=len(sets[name].labels))
            say(f"{recipe.name}: {name} seed {seed}: std acc {r['std_acc']:.4f}, robust acc {r['robust_acc']:.4f} "
                f"({recipe.eval.norm} eps {recipe.eval.eps}) in {r['seconds']:.1f} s", main_process_only=False)
            save_run(recipe, (name, seed), run_keys[(name, seed)], r)
            runs.append(r)
    except AdvgenError as e:          # tell the other ranks instead of leaving them in the gather
        error = f"{type(e).__name__}: {e}"
    if state.num_processes > 1:
        gathered = gather_object([(runs, error)])
        runs = [r for rs, _ in gathered for r in rs]
        error = next((err for _, err in gathered if err), None)
    if error:
        raise DatasetError(error.split(": ", 1)[1])
    report = None
    if state.is_main_process:
        results = []
        for name, entry in recipe.datasets.items():
            rs = [r for r in runs if r["dataset"] == name]
            keys = ("seed", "std_acc", "robust_acc", "robust_acc_at", "shifted_acc", "train_loss", "train_seconds",
                    "eval_seconds", "seconds")
            per_seed = [{k: r[k] for k in keys if k in r} for r in rs]
            output = identity(entry) if entry.kind == "generated" else None
            results.append(summarise(recipe, name, entry, per_seed, rs[0]["origin"], rs[0]["num_train"], len(test),
                                     output))
        orderings = check_orderings(recipe, results)
        report = {
            "name": recipe.name, "advgen_version": advgen_version(), "git_sha": git_sha(),
            "device": str(device), "world_size": state.num_processes,
            "source": {"kind": recipe.source.kind, "path": recipe.source.path, "split": recipe.source.split,
                       "test_split": recipe.source.test_split, "num_test": len(test)},
            "model": {"name": model_name(recipe), "mean": mean, "std": std},
            "eval": {"eps": recipe.eval.eps, "norm": recipe.eval.norm, "steps": recipe.eval.steps,
                     "step_size": recipe.eval.step_size or 2.5 * recipe.eval.eps / recipe.eval.steps,
                     "random_start": False},
            "seeds": list(recipe.seeds),
            "passed": all(r["passed"] for r in results) and all(o["holds"] for o in orderings),
            "seconds": round(time.time() - t_start, 2),
            "recipe": json.loads(json.dumps(to_dict(recipe))),
            "results": results,
            "orderings": orderings,
        }
        for name in [n for n, e in recipe.datasets.items() if e.kind == "generated" and n not in sets]:
            sets[name] = load_trainset(recipe.datasets[name])    # another rank trained on it: the figures need it
        outputs = sorted({Path(e.path) for e in recipe.datasets.values()
                          if e.kind == "generated" and locate(e) == "advgen"})
        write_verify_report(recipe, report, original, sets, outputs)
    state.wait_for_everyone()
    return report


RUNS_DIR = "runs"


def run_key(recipe: VerifyRecipe, name: str, seed: int, device: torch.device) -> str:
    """What one model's numbers depend on: its training set (an advgen output by its manifest's bytes), the
    training and evaluation settings, the source, the seed and the device type."""
    entry = recipe.datasets[name]
    data = {"kind": entry.kind, "path": entry.path, "config": entry.config, "use_npy": entry.use_npy}
    if entry.kind == "generated" and (Path(entry.path) / MANIFEST).is_file():   # the bytes, wherever they are
        data = {"kind": entry.kind, "use_npy": entry.use_npy, "manifest_sha256": manifest_sha256(entry.path)}
    # non-default fields only: a schema field added later (with a default) keeps earlier runs reusable
    key = {"data": data, "train": non_default(recipe.train_config(entry)), "model": non_default(recipe.model),
           "trainer": recipe.trainer, "airbench": non_default(recipe.airbench) if recipe.trainer == "airbench" else None,
           "eval": non_default(recipe.eval), "source": non_default(recipe.source), "seed": seed, "device": device.type}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _run_file(recipe: VerifyRecipe, job: tuple[str, int]) -> Path:
    return recipe.out_dir / RUNS_DIR / f"{job[0]}-seed{job[1]}.json"


def cached_run(recipe: VerifyRecipe, job: tuple[str, int], key: str) -> Optional[dict]:
    """The finished run of (dataset, seed) when `resume` is on and its inputs are unchanged, else None."""
    return read_keyed_run(_run_file(recipe, job), key) if recipe.resume else None


def save_run(recipe: VerifyRecipe, job: tuple[str, int], key: str, run: dict) -> None:
    write_json(_run_file(recipe, job), {"key": key, "run": run})


def job_cost(recipe: VerifyRecipe, name: str) -> float:
    """Relative cost of one model: epochs x (1 + PGD steps per batch when adversarially trained)."""
    cfg = recipe.train_config(recipe.datasets[name])
    return cfg.epochs * (1 + (cfg.adversarial.steps if cfg.adversarial else 0))


def deal(jobs: list, costs: list[float], n: int) -> list[list]:
    """Longest job first to the least loaded rank (ties: lowest rank): the same answer on every rank."""
    load, out = [0.0] * n, [[] for _ in range(n)]
    for i in sorted(range(len(jobs)), key=lambda i: -costs[i]):
        r = min(range(n), key=lambda r: (load[r], r))
        out[r].append(jobs[i])
        load[r] += costs[i]
    return out


def trainset_of(recipe: VerifyRecipe, name: str, entry: DatasetEntry, original) -> TrainSet:
    """The training set of one entry: a generated set read from disk/Hub, or the source split D for baselines."""
    if entry.kind != "generated":
        return TrainSet(images=original.all_images(), labels=original.labels, class_names=original.class_names,
                        source_index=original.indices,
                        origin=f"{recipe.source.kind}:{recipe.source.path or ''} split {recipe.source.split} "
                               f"({len(original)} samples)")
    try:
        ts = load_trainset(entry)
    except DatasetError as e:
        raise DatasetError(f"datasets.{name}: {e}") from None
    check_compatible(name, ts, original)
    return ts


def check_orderings(recipe: VerifyRecipe, results: list[dict]) -> list[dict]:
    """Each claim "A.m > B.m" on the means, with the gap and the two seed spreads (is the gap above noise?)."""
    by_name = {r["dataset"]: r for r in results}
    holds = {">": lambda a, b: a > b, "<": lambda a, b: a < b, ">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b}
    out = []
    for text in recipe.orderings:
        left, op, right = parse_claim(text)
        va, vb = left.value(by_name), right.value(by_name)
        out.append({"claim": text.strip(), "left": va, "right": vb, "gap": va - vb, "holds": holds[op](va, vb),
                    "left_std": left.spread(by_name), "right_std": right.spread(by_name)})
    return out


def check_compatible(name: str, train: TrainSet, original) -> None:
    if tuple(train.images.shape[1:]) != tuple(original.shape):
        raise DatasetError(f"datasets.{name}: images are {list(train.images.shape[1:])}, the source's test images "
                           f"{list(original.shape)}; verify against the source the set was generated from")
    if len(train.class_names) != original.num_classes:
        raise DatasetError(f"datasets.{name}: {len(train.class_names)} classes, the source has {original.num_classes}")


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    p = command_parser("verify")
    args = p.parse_intermixed_args(argv)
    recipe = load_recipe(args.recipe, VerifyRecipe, args.overrides)
    if args.only:
        recipe = recipe.only(args.only.split(","))
    report = verify(recipe)
    if report is None:          # not the main process
        return 0
    say(f"{recipe.name}: report -> {recipe.out_dir / 'report.md'}")
    print(markdown_table(report["results"]))
    failed = [r for r in report["results"] if not r["passed"]]
    for r in failed:
        print(f"advgen verify: {r['dataset']}: {'; '.join(r['failures'])}", file=sys.stderr)
    broken = [o for o in report["orderings"] if not o["holds"]]
    for o in broken:
        print(f"advgen verify: ordering does not hold: {o['claim']} ({100 * o['left']:.1f}% vs "
              f"{100 * o['right']:.1f}%)", file=sys.stderr)
    return 1 if failed or broken else 0


if __name__ == "__main__":
    sys.exit(run("verify", main))
