"""Generate one of the paper's datasets from a recipe, on any number of processes or machines.

    accelerate launch advgen/generate.py recipes/digits_det.yaml              # 1 process
    accelerate launch --multi_gpu --num_processes 2 advgen/generate.py recipes/digits_det.yaml
    advgen generate recipes/digits_det.yaml attack.eps=1.5 output.dir=runs/x  # same, console script

Each rank takes the shards i with i % world_size == rank; shard i is always the same source
positions, with its own seeded generator, split into the same batches, so the bytes written do not
depend on the number of processes. Finished shards (valid marker + checksums) are skipped, so a re-run
after a crash resumes. The main process writes README.md and manifest.json after every rank is done;
an output without manifest.json is incomplete.

Cost on 2 CPU cores: recipes/digits_det.yaml (1,257 images, 100 steps, small CNN) ~30 s end to end.
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):   # run as a script (accelerate launch advgen/generate.py): make `advgen` importable
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import concurrent.futures
import dataclasses
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from advgen.attacks.fast import auto_batch_size, prepare
from advgen.attacks.inversion import draw_x0, invert, relative_distance
from advgen.attacks.pgd import choose_targets, targeted_pgd
from advgen.models import load_checkpoint, resolve_checkpoint, sha256_file
from advgen.models.checkpoint import CheckpointError, read_meta
from advgen.recipe import GenerateRecipe, RecipeError, dump_recipe, load_recipe, to_dict
from advgen.sources import Source, load_source
from advgen.writers.manifest import (MANIFEST, RECIPE, advgen_version, aggregate, git_sha, write_hf_readme,
                                     write_manifest)
from advgen.writers.shards import Sample, clear_shard, read_marker, write_shard


def make_state():
    from accelerate import PartialState

    # Without CUDA, accelerate's CPU path needs cpu=True to start a gloo group across ranks.
    return PartialState(cpu=not torch.cuda.is_available())


def shard_seed(seed: int, shard: int) -> int:
    return int(np.random.SeedSequence([seed, shard]).generate_state(1)[0])


def check_output(out: Path, recipe: GenerateRecipe, overwrite: bool):
    """Refuse to mix a new recipe into an output made by another one (read-only, so every rank can run it)."""
    if overwrite or not out.exists():
        return
    saved = out / RECIPE
    if saved.is_file():
        old = yaml.safe_load(saved.read_text())
        new = yaml.safe_load(yaml.safe_dump(to_dict(recipe)))
        if old != new:
            diffs = _diff(old, new)
            raise RecipeError(f"output.dir {str(out)!r} holds a dataset from a different recipe "
                              f"({'; '.join(diffs[:3])}); choose another output.dir or pass --overwrite")
    elif any(out.iterdir()):
        raise RecipeError(f"output.dir {str(out)!r} exists, is not empty and is not an advgen output; "
                          "choose another output.dir or pass --overwrite")


def _diff(a, b, prefix=""):
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [f"{prefix.rstrip('.')}: {a!r} -> {b!r}"]


def prepare_output(out: Path, recipe: GenerateRecipe, overwrite: bool):
    """Main process only, after check_output on every rank."""
    if overwrite and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)   # an output being (re)generated is not complete
    dump_recipe(recipe, out / RECIPE)


class Job:
    """One batch: `run` attacks with the prepared (fast) model; `describe` measures with the plain fp32 model."""

    static_meta: dict = {}

    def __init__(self, recipe: GenerateRecipe, model, fast, source: Source, device, dtype):
        self.r, self.model, self.fast, self.source, self.device, self.dtype = recipe, model, fast, source, device, dtype


class TargetedJob(Job):
    """D̂rand / D̂det: targeted PGD towards t, stored with label t (Section 3.2)."""

    def plan(self, positions: torch.Tensor, g: torch.Generator) -> dict:
        labels = self.source.labels[positions]
        return {"target": choose_targets(labels, self.source.num_classes, self.r.attack.targets, g)}

    def run(self, x, y, plan):
        a = self.r.attack
        t = plan["target"].to(self.device)
        x_adv, loss = targeted_pgd(self.fast, x, t, norm=a.norm, eps=a.eps, step_size=a.step_size,
                                   steps=a.steps, random_start=a.random_start, keep_best=a.keep_best,
                                   generator=plan.get("gen"), autocast_dtype=self.dtype)
        return x_adv, t, {"loss": loss}

    @torch.no_grad()
    def describe(self, x_stored, x, y, new_label, extras) -> dict:
        """Per-sample provenance measured on the stored (uint8-rounded) image."""
        delta = (x_stored - x).flatten(1)
        pred = self.model(x_stored).argmax(1)
        return {"l2": delta.norm(dim=1), "linf": delta.abs().amax(dim=1), "loss": extras["loss"],
                "success": pred == new_label}


class InversionJob(Job):
    """D̂R / D̂NR: invert the source model's penultimate features of x from x0, stored with label y (Section 3.1)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.static_meta = {"x0_index": "noise"} if self.r.attack.x0 == "noise" else {}

    def plan(self, positions: torch.Tensor, g: torch.Generator) -> dict:
        if self.r.attack.x0 == "noise":
            c, h, w = self.source.shape
            return {"x0_noise": torch.rand((len(positions), c, h, w), generator=g)}
        return {"x0_pos": draw_x0(positions, len(self.source), g)}

    def run(self, x, y, plan):
        a = self.r.attack
        if "x0_pos" in plan:
            x0 = self.source.images(plan["x0_pos"]).to(self.device).float() / 255.0
        else:
            x0 = plan["x0_noise"].to(self.device)
        x_r, loss = invert(self.fast, x, x0, steps=a.steps, step_size=a.step_size, normalize_loss=a.normalize_loss,
                           keep_best=a.keep_best, autocast_dtype=self.dtype)
        extras = {"loss": loss, "rel_dist_init": relative_distance(self.model, x0, x)}
        if "x0_pos" in plan:
            extras["x0_index"] = self.source.indices[plan["x0_pos"]]
        return x_r, y, extras

    @torch.no_grad()
    def describe(self, x_stored, x, y, new_label, extras) -> dict:
        info = {"loss": extras["loss"], "rel_dist_init": extras["rel_dist_init"],
                "rel_dist_final": relative_distance(self.model, x_stored, x),
                "l2_to_source": (x_stored - x).flatten(1).norm(dim=1)}
        if "x0_index" in extras:
            info["x0_index"] = extras["x0_index"]
        return info


JOBS = {"pgd": TargetedJob, "inversion": InversionJob}


def run_shard(job, recipe: GenerateRecipe, source: Source, shard: int, start: int, stop: int, device, bar,
              batch_size: int):
    """Attack one shard batch by batch; returns (samples, stats, attack_seconds)."""
    g = torch.Generator().manual_seed(shard_seed(recipe.seed, shard))
    positions = torch.arange(start, stop)
    plan = job.plan(positions, g)
    if recipe.attack.random_start:
        plan["gen"] = torch.Generator(device=device).manual_seed(shard_seed(recipe.seed + 1, shard))
    samples, meta_cols = [], {}
    seconds = 0.0
    for b0 in range(0, stop - start, batch_size):
        sl = slice(b0, min(b0 + batch_size, stop - start))
        pos = positions[sl]
        x = source.images(pos).to(device).float() / 255.0
        y = source.labels[pos].to(device)
        t0 = time.perf_counter()
        x_out, new_label, extras = job.run(x, y, {k: (v[sl] if torch.is_tensor(v) else v) for k, v in plan.items()})
        x_q = (x_out * 255.0).round().clamp(0, 255)
        info = job.describe(x_q / 255.0, x, y, new_label, extras)
        x_q_u8 = x_q.to(torch.uint8).cpu().numpy()     # the one device->host copy of the batch
        seconds += time.perf_counter() - t0
        info = {k: v.cpu() for k, v in info.items()}
        x_float = x_out.float().cpu().numpy() if recipe.output.npy else None
        new_label = new_label.cpu()
        for j in range(len(pos)):
            p = int(pos[j])
            meta = {"source_index": int(source.indices[p]), "source_label": int(source.labels[p]),
                    "label": int(new_label[j])}
            for k, v in info.items():
                meta[k] = bool(v[j]) if v.dtype == torch.bool else (float(v[j]) if v.is_floating_point() else int(v[j]))
            meta.update(job.static_meta)
            samples.append(Sample(source_index=meta["source_index"], label=meta["label"], image=x_q_u8[j],
                                  meta=meta, float_image=None if x_float is None else x_float[j]))
        for k, v in info.items():        # measurements (not ids) are summed into the shard's stats
            if v.is_floating_point() or v.dtype == torch.bool:
                meta_cols.setdefault(k, []).append(v.double())
        if bar is not None:
            bar.update(len(pos))
    # Sums in sample order: the same numbers whatever process wrote the shard.
    stats = {k: float(torch.cat(v).sum()) for k, v in meta_cols.items()}
    return samples, stats, seconds


def generate(recipe: GenerateRecipe, overwrite: bool = False) -> Path:
    if recipe.device == "cuda" and not torch.cuda.is_available():
        raise RecipeError("device: 'cuda' but torch sees no CUDA device here; use device: auto or cpu")
    state = make_state()
    t_start = time.time()
    out = Path(recipe.output.dir)
    check_output(out, recipe, overwrite)
    state.wait_for_everyone()
    if state.is_main_process:
        prepare_output(out, recipe, overwrite)
        resolve_checkpoint(recipe.model)     # trains and caches a train_recipe's model once
    state.wait_for_everyone()
    ckpt = resolve_checkpoint(recipe.model, train_if_missing=False)
    device = state.device if torch.cuda.is_available() and recipe.device != "cpu" else torch.device("cpu")
    job, source, batch_size, speed = build_job(recipe, ckpt, device)
    if state.is_main_process:
        print(f"{recipe.name}: {speed}", flush=True)

    n, size = len(source), recipe.output.shard_size
    num_shards = (n + size - 1) // size
    mine = [i for i in range(num_shards) if i % state.num_processes == state.process_index]
    todo = [i for i in mine if read_marker(out, i) is None]
    pending = sum(min(size, n - i * size) for i in todo)
    bar = tqdm(total=pending, desc=f"{recipe.name} [{state.num_processes} proc]", unit="img",
               disable=not state.is_main_process)
    # Shards are written by a background thread while the next shard is attacked; `waited` is the time the attack
    # spent blocked on the writer (0 when writing hides behind the attack).
    t_setup, waited = time.time() - t_start, 0.0
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        futures = []
        for i in todo:
            clear_shard(out, i)
            samples, stats, secs = run_shard(job, recipe, source, i, i * size, min(n, (i + 1) * size), device, bar,
                                             batch_size)
            stats["attack_seconds"] = secs
            futures.append(pool.submit(write_shard, out, i, samples, source.class_names, stats,
                                       recipe.output.hf_export, state.process_index))
            t0 = time.perf_counter()
            while len(futures) > 1:            # at most one shard waiting to be written
                futures.pop(0).result()
            waited += time.perf_counter() - t0
        t0 = time.perf_counter()
        for f in futures:
            f.result()
        waited += time.perf_counter() - t0
    bar.close()
    state.wait_for_everyone()
    if state.is_main_process:
        speed.update(setup_seconds=round(t_setup, 2), writer_wait_seconds=round(waited, 2))
        finalize(out, recipe, source, ckpt, num_shards, state.num_processes, time.time() - t_start, speed)
    state.wait_for_everyone()
    return out


def build_job(recipe: GenerateRecipe, ckpt: str, device):
    """The recipe's attack on `device`: (job, source, batch size, the speed settings that will run)."""
    model = load_checkpoint(ckpt, device=device).eval().requires_grad_(False)
    source = load_source(recipe.source, recipe.source.split)
    model_classes = read_meta(ckpt)["num_classes"]
    if source.num_classes != model_classes:
        raise RecipeError(f"model.checkpoint {ckpt!r} has {model_classes} classes but the source "
                          f"has {source.num_classes}; train a model on this source")
    if device.type == "cuda":
        source = source.staged(device)        # the whole split on the GPU: no host->device copy per batch
    fast, dtype = prepare(model, precision=recipe.precision, channels_last=recipe.channels_last,
                          compile=recipe.compile, fuse_bn=recipe.fuse_bn, device=device)
    job = JOBS[recipe.attack.kind](recipe, model, fast, source, device, dtype)
    batch_size = resolve_batch_size(recipe, job, source, device)
    speed = {"device": device.type, "autocast": str(dtype).replace("torch.", "") if dtype else "fp32",
             "channels_last": fast.channels_last, "compile": fast.compiled, "fuse_bn": recipe.fuse_bn,
             "batch_size": batch_size}
    return job, source, batch_size, speed


def resolve_batch_size(recipe: GenerateRecipe, job, source: Source, device) -> int:
    """The recipe's batch size; "auto": 250 on CPU, on a GPU the largest from 1024 down (x0.9 per OOM) for which
    one attack step of this job runs."""
    if recipe.batch_size != "auto":
        return recipe.batch_size
    n = min(len(source), 1024)

    one_step = type(job)(dataclasses.replace(recipe, attack=dataclasses.replace(recipe.attack, steps=1)),
                         job.model, job.fast, source, device, job.dtype)

    def probe(b):
        pos = torch.arange(min(b, n)).repeat((b + n - 1) // n)[:b]
        x = source.images(pos).to(device).float() / 255.0
        one_step.run(x, source.labels[pos].to(device), one_step.plan(pos, torch.Generator().manual_seed(0)))
        torch.cuda.synchronize(device)

    return auto_batch_size(probe, 1024, device=device) if device.type == "cuda" else 250


def finalize(out: Path, recipe: GenerateRecipe, source: Source, ckpt: str, num_shards: int, world_size: int,
             seconds: float, speed: dict):
    markers = []
    for i in range(num_shards):
        m = read_marker(out, i)
        if m is None:
            raise RuntimeError(f"shard {i} of {out} is missing or corrupt after generation; re-run to redo it")
        markers.append(m)
    agg = aggregate(markers)
    attack_seconds = agg.pop("mean_attack_seconds") * agg["count"] if markers else 0.0
    meta = read_meta(ckpt)
    if recipe.output.hf_export:
        import json

        first = json.loads(_first_json(out))
        write_hf_readme(out, recipe.name, source.class_names, first)
    manifest = {
        "name": recipe.name, "dataset": recipe.dataset, "advgen_version": advgen_version(), "git_sha": git_sha(),
        "recipe": to_dict(recipe),
        "checkpoint": {"path": str(ckpt), "sha256": sha256_file(ckpt), "arch": meta["arch"],
                       "metrics": meta.get("metrics", {}), "adversarial": meta.get("adversarial", False)},
        "source": {"kind": recipe.source.kind, "path": recipe.source.path, "split": recipe.source.split,
                   "num_samples": len(source), "class_names": source.class_names, "shape": list(source.shape)},
        "world_size": world_size, "speed": speed, "num_shards": num_shards, "count": agg.pop("count"),
        "stats": agg,
        "seconds": {"total_last_run": round(seconds, 2), "attack": round(attack_seconds, 2)},
        "shards": [{k: m[k] for k in ("tar", "tar_sha256", "parquet", "parquet_sha256", "count") if k in m}
                   for m in markers],
    }
    write_manifest(out, manifest)
    s = manifest["stats"]
    print(f"{recipe.name}: {manifest['count']} samples in {num_shards} shards -> {out}"
          + (f"; targeted success {s['mean_success']:.3f}, mean l2 {s['mean_l2']:.4f}" if "mean_success" in s else ""))


def _first_json(out: Path) -> str:
    import tarfile

    from advgen.writers.shards import tar_path

    with tarfile.open(tar_path(out, 0)) as tf:
        for m in tf.getmembers():
            if m.name.endswith(".json"):
                return tf.extractfile(m).read().decode()
    raise RuntimeError(f"{out}: first shard holds no samples")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="advgen generate", description="Generate a dataset from a recipe.")
    p.add_argument("recipe", help="path to a generation recipe YAML (recipes/*.yaml)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. attack.eps=0.25 output.dir=runs/x")
    p.add_argument("--overwrite", action="store_true", help="delete an existing output dir first")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        recipe = load_recipe(args.recipe, GenerateRecipe, args.overrides)
        generate(recipe, overwrite=args.overwrite)
    except (RecipeError, CheckpointError) as e:
        print(f"advgen generate: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
