"""Generate one of the paper's datasets from a recipe, on any number of processes or machines.

    accelerate launch advgen/generate.py recipes/digits_det.yaml              # 1 process
    accelerate launch --multi_gpu --num_processes 2 advgen/generate.py recipes/digits_det.yaml
    advgen generate recipes/digits_det.yaml attack.eps=1.5 output.dir=runs/x  # same, console script

Every rank lists the shards still to do (no valid marker) before anyone writes, and takes every
world_size-th of that list; shard i is always the same source positions, with its own seeded generator,
split into the same batches, so the bytes written do not depend on the number of processes or on how
often the run was resumed. Finished shards (valid marker + checksums) are skipped, so a re-run after a
crash resumes; each marker records what the shard was made from (checkpoint sha256, source fingerprint,
advgen version), and a resume whose inputs differ is refused (or, with --redo-mismatched, redoes those
shards). The main process writes README.md and manifest.json after every rank is done; an output without
manifest.json is incomplete.

The recipe's `dataset` decides the job: D̂det / D̂rand are targeted PGD (TargetedJob), D̂R / D̂NR representation
inversion (InversionJob); each runs the attack its config builds (`recipe.attack.build(model)`) on a prepared copy
of the source model (advgen.models.fast) and measures on the plain fp32 model.

Everything that can fail (recipe, output dir, checkpoint, source, their fit) is checked before anything is
written; each failure is one line on stderr and exit 2 (advgen.cli). --overwrite deletes only a recognisable advgen
output, never the working directory, a directory above it, the home directory or a root. Each rank runs
OMP_NUM_THREADS torch threads when that is set, else the machine's cores / local ranks.

Cost on 2 CPU cores: recipes/digits_det.yaml (1,257 images, 100 steps, small CNN) ~30 s end to end.
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):   # run as a script (accelerate launch advgen/generate.py): make `advgen` importable
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# cuBLAS reads this when its first handle is made: it is what lets `deterministic: true` hold for matmuls on CUDA.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import concurrent.futures
import dataclasses
import datetime
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from advgen.attacks.inversion import draw_x0, relative_distance
from advgen.attacks.pgd import choose_targets
from advgen.cli import bars_off, command_parser, run, say
from advgen.errors import CheckpointError, RecipeError
from advgen.models.checkpoint import load_checkpoint, read_meta
from advgen.models.files import readable_sha256
from advgen.models.fast import auto_batch_size, prepare
from advgen.recipe import (GenerateRecipe, SourceModelRef, TrainRecipe, dump_recipe, load_recipe, saved_differences,
                           to_dict)
from advgen.sources import Source, load_source
from advgen.writers.layout import MANIFEST, MARKER_DIR, PREVIEW, RECIPE, read_marker, sha256_file
from advgen.writers.manifest import (advgen_version, aggregate, git_sha, library_versions, write_hf_readme,
                                     write_manifest)
from advgen.writers.shards import Sample, clear_shard, write_shard

# Rank 0 may train a missing source model (hours for a ResNet-50) while the other ranks wait in a barrier;
# the process group's default timeout (10 min for NCCL) would kill them.
PROCESS_GROUP_TIMEOUT = datetime.timedelta(hours=24)


def local_world_size() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def make_state():
    """This process's accelerate state (the one place it is made).

    Without CUDA, accelerate's CPU path needs cpu=True to start a gloo group across ranks; with more local ranks
    than visible GPUs (2 processes on 1 GPU) NCCL refuses to put two ranks on one device, so those use gloo too.
    """
    from accelerate import PartialState

    cuda = torch.cuda.is_available()
    kwargs = {"timeout": PROCESS_GROUP_TIMEOUT}
    if cuda and "LOCAL_RANK" in os.environ and local_world_size() > torch.cuda.device_count():
        kwargs["backend"] = "gloo"
    return PartialState(cpu=not cuda, **kwargs)


def threads_per_rank() -> int:
    """OMP_NUM_THREADS when set, else the cores this process may run on divided among the local ranks (torch's
    default, all cores in every rank, oversubscribes the machine as soon as there are two ranks)."""
    if os.environ.get("OMP_NUM_THREADS", "").strip().isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // local_world_size())


def shard_seed(seed: int, shard: int) -> int:
    return int(np.random.SeedSequence([seed, shard]).generate_state(1)[0])


CONVERTED_DIR = Path("cache/converted")


def resolve_checkpoint(ref: SourceModelRef, train_if_missing: bool = True) -> str:
    """Path of the source model's checkpoint for a generation recipe's `model:` block.

    `checkpoint:` is used as is when it is one of ours (.safetensors + .json); a PyTorch file (a plain state dict
    or the robustness library's layout, read with weights_only=True) is converted once into
    cache/converted/<name>-<sha256[:12]>.safetensors and that is used. `train_recipe:` is trained once and cached
    at that recipe's `checkpoint` path; it is retrained only when the cached JSON records a different recipe.
    """
    if ref.checkpoint is not None:
        src = Path(ref.checkpoint)
        if src.suffix == ".safetensors":
            return ref.checkpoint
        dst = CONVERTED_DIR / f"{src.stem}-{readable_sha256(src)[:12]}.safetensors"
        if not (dst.is_file() and dst.with_suffix(".json").is_file()):
            if not train_if_missing:
                raise CheckpointError(f"{ref.checkpoint!r} is not converted yet (expected {str(dst)!r})")
            from advgen.models.convert import convert_checkpoint

            dst.parent.mkdir(parents=True, exist_ok=True)
            convert_checkpoint(src, dst, overwrite=True)
            say(f"converted {ref.checkpoint} -> {dst} (advgen convert-checkpoint does this explicitly)")
        return str(dst)
    recipe = load_recipe(ref.train_recipe, TrainRecipe)
    path = Path(recipe.checkpoint)
    meta_file = path.with_suffix(".json")
    if path.is_file() and meta_file.is_file():
        try:
            cached = json.loads(meta_file.read_text()).get("recipe")
        except (ValueError, OSError, AttributeError):     # a broken JSON is no cache: train again
            cached = None
        if isinstance(cached, dict) and not saved_differences(cached, recipe):
            return str(path)
    if not train_if_missing:
        raise CheckpointError(f"checkpoint for {ref.train_recipe!r} is not built yet")
    from advgen.models.train import train_model

    train_model(recipe)
    return str(path)


def check_output(out: Path, recipe: GenerateRecipe, overwrite: bool):
    """Refuse to mix a new recipe into an output made by another one (read-only, so every rank can run it)."""
    if overwrite or not out.exists():
        return
    saved = out / RECIPE
    if saved.is_file():
        try:
            old = yaml.safe_load(saved.read_text())
        except (OSError, ValueError, yaml.YAMLError) as e:
            raise RecipeError(f"output.dir {str(out)!r} holds a {RECIPE} that cannot be read ({type(e).__name__}); "
                              "choose another output.dir or pass --overwrite") from None
        diffs = saved_differences(old, recipe)
        if diffs:
            raise RecipeError(f"output.dir {str(out)!r} holds a dataset from a different recipe "
                              f"({'; '.join(diffs[:3])}); choose another output.dir or pass --overwrite")
    elif any(out.iterdir()):
        raise RecipeError(f"output.dir {str(out)!r} exists, is not empty and is not an advgen output; "
                          "choose another output.dir or pass --overwrite")


def check_output_dir(out: Path, overwrite: bool):
    """Refuse an output dir that cannot be written or must not be deleted; read-only, so every rank runs it, before
    anything is written."""
    where = f"output.dir {str(out)!r}"
    fix = "give the output a directory of its own, e.g. output.dir=runs/x"
    path, cwd, home = out.resolve(), Path.cwd().resolve(), Path.home().resolve()
    if path == Path(path.anchor):
        raise RecipeError(f"{where} is a filesystem root; {fix}")
    if path == cwd or path in cwd.parents:
        raise RecipeError(f"{where} is the working directory or a directory above it; {fix}")
    if path == home or path in home.parents:
        raise RecipeError(f"{where} is the home directory or a directory above it; {fix}")
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise RecipeError(f"{where}: {str(existing)!r} is a file, not a directory; choose another output.dir")
    if not os.access(existing, os.W_OK | os.X_OK | (os.R_OK if existing == path else 0)):
        raise RecipeError(f"{where} is not writable ({str(existing)!r} does not let this user create files); "
                          "choose another output.dir or fix its permissions")
    if overwrite and path.is_dir() and any(path.iterdir()) and not is_advgen_output(path):
        raise RecipeError(f"{where} is not an advgen output (no {RECIPE}, {MANIFEST} or {MARKER_DIR}/ of one), so "
                          "--overwrite will not delete it; choose another output.dir or empty it yourself")


def is_advgen_output(out: Path) -> bool:
    """out holds a generation recipe, an advgen manifest or shard markers: what --overwrite may delete."""
    if any((out / MARKER_DIR).glob("shard-*.json")):
        return True
    try:
        recipe = yaml.safe_load((out / RECIPE).read_text()) if (out / RECIPE).is_file() else None
        manifest = json.loads((out / MANIFEST).read_text()) if (out / MANIFEST).is_file() else None
    except (OSError, ValueError, yaml.YAMLError):
        return False
    return ((isinstance(recipe, dict) and {"name", "source", "model", "attack", "output"} <= set(recipe))
            or (isinstance(manifest, dict) and "advgen_version" in manifest))


def shards_to_do(out: Path, num_shards: int, provenance: dict, overwrite: bool, redo_mismatched: bool) -> list[int]:
    """The shards this run makes: those without a valid marker, plus (with redo_mismatched) those made from other
    inputs. Read-only and the same on every rank, so it runs on every rank before anyone writes."""
    if overwrite or not out.is_dir():
        return list(range(num_shards))
    todo, mismatched = [], []
    for i in range(num_shards):
        marker = read_marker(out, i)
        if marker is None:
            todo.append(i)
            continue
        made_from = marker.get("provenance")
        diff = [k for k in provenance if (made_from or {}).get(k) != provenance[k]]
        if diff:
            todo.append(i)
            mismatched.append((i, diff[0], made_from))
    if mismatched and not redo_mismatched:
        i, key, made_from = mismatched[0]
        was = "records no provenance (an older advgen made it)" if made_from is None else \
            f"was made with {key} {_short(made_from.get(key))}, this run has {_short(provenance[key])}"
        raise RecipeError(f"output.dir {str(out)!r}: {len(mismatched)} finished shard(s) come from other inputs "
                          f"(shard {i} {was}); pass --redo-mismatched to redo them, or choose another output.dir")
    return todo


def _short(v) -> str:
    return repr(v[:12] + "…") if isinstance(v, str) and len(v) > 16 else repr(v)


def prepare_output(out: Path, recipe: GenerateRecipe, overwrite: bool):
    """Main process only, after check_output_dir, check_output and every check of the inputs, on every rank."""
    if overwrite and out.exists():
        shutil.rmtree(out)     # check_output_dir made sure it is an advgen output, not the cwd, home or a root
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)   # an output being (re)generated is not complete
    dump_recipe(recipe, out / RECIPE)


@dataclass
class Job:
    """One generation's attack, ready to run shard by shard: `run` attacks a batch with the prepared (fast) model,
    `describe` measures the stored result with the plain fp32 model."""

    recipe: GenerateRecipe
    model: torch.nn.Module           # the plain fp32 model: every measurement
    fast: torch.nn.Module            # its prepared copy (advgen.models.fast): the attack
    dtype: Optional[torch.dtype]     # autocast dtype of the attack's forward/backward (None: fp32)
    source: Source
    device: torch.device
    batch_size: int = 1

    def __post_init__(self):
        self.attack = self.recipe.attack.build(self.fast, self.dtype)

    def constant_meta(self) -> dict:
        """Provenance that is the same for every sample (added to each, so every sample has the same keys)."""
        return {}


class TargetedJob(Job):
    """D̂rand / D̂det: targeted PGD towards t, stored with label t (Section 3.2)."""

    def plan(self, positions: torch.Tensor, g: torch.Generator, shard: int) -> dict:
        labels = self.source.labels[positions]
        plan = {"target": choose_targets(labels, self.source.num_classes, self.recipe.targets, g)}
        if self.recipe.attack.random_start:
            plan["gen"] = torch.Generator(device=self.device).manual_seed(shard_seed(self.recipe.seed + 1, shard))
        return plan

    def run(self, x, y, plan):
        t = plan["target"].to(self.device)
        x_adv, loss = self.attack(x, t, generator=plan.get("gen"))
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

    def constant_meta(self) -> dict:
        return {"x0_index": "noise"} if self.recipe.attack.x0 == "noise" else {}

    def plan(self, positions: torch.Tensor, g: torch.Generator, shard: int) -> dict:
        if self.recipe.attack.x0 == "noise":
            c, h, w = self.source.shape
            return {"x0_noise": torch.rand((len(positions), c, h, w), generator=g)}
        return {"x0_pos": draw_x0(positions, len(self.source), g)}

    def run(self, x, y, plan):
        if "x0_pos" in plan:
            x0 = self.source.images(plan["x0_pos"]).to(self.device).float() / 255.0
        else:
            x0 = plan["x0_noise"].to(self.device)
        x_r, loss = self.attack(x, x0)
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


JOBS = {"d_det": TargetedJob, "d_rand": TargetedJob, "d_robust": InversionJob, "d_nonrobust": InversionJob}


def shard_range(job: Job, shard: int) -> tuple[int, int]:
    """Source positions [start, stop) of a shard: a fixed partition, whatever the number of processes."""
    size = job.recipe.output.shard_size
    return shard * size, min(len(job.source), (shard + 1) * size)


def run_shard(job: Job, shard: int, bar=None):
    """Attack one shard batch by batch; returns (samples, stats, attack_seconds)."""
    recipe, source, device = job.recipe, job.source, job.device
    start, stop = shard_range(job, shard)
    g = torch.Generator().manual_seed(shard_seed(recipe.seed, shard))
    positions = torch.arange(start, stop)
    plan = job.plan(positions, g, shard)
    samples, meta_cols = [], {}
    seconds = 0.0
    for b0 in range(0, stop - start, job.batch_size):
        sl = slice(b0, min(b0 + job.batch_size, stop - start))
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
            meta.update(job.constant_meta())
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


def generate(recipe: GenerateRecipe, overwrite: bool = False, redo_mismatched: bool = False) -> Path:
    """Make (or resume) the recipe's output; returns its dir. Raises RecipeError / CheckpointError, with nothing
    written, for any bad input."""
    if recipe.device == "cuda" and not torch.cuda.is_available():
        raise RecipeError("device: 'cuda' but torch sees no CUDA device here; use device: auto or cpu")
    out = Path(recipe.output.dir)
    check_output_dir(out, overwrite)
    check_output(out, recipe, overwrite)
    state = make_state()
    t_start = time.time()
    if state.is_main_process:
        resolve_checkpoint(recipe.model)     # trains and caches a train_recipe's model once (into its cache, not out)
    state.wait_for_everyone()
    ckpt = resolve_checkpoint(recipe.model, train_if_missing=False)
    device = state.device if torch.cuda.is_available() and recipe.device != "cpu" else torch.device("cpu")
    if device.type == "cuda":
        set_deterministic(recipe.deterministic)
    precision, compile_, notes = follow_launcher(recipe)
    job, speed = build_job(recipe, ckpt, device, precision, compile_)
    source = job.source
    provenance = {"checkpoint_sha256": sha256_file(ckpt), "source_fingerprint": source.fingerprint(),
                  "advgen_version": advgen_version()}
    n, size = len(source), recipe.output.shard_size
    num_shards = (n + size - 1) // size
    # Every rank lists the same shards to do before anyone writes; the remaining ones are dealt round-robin, so a
    # resume keeps every rank busy (each shard's content is fixed, so who makes it does not change its bytes).
    todo = shards_to_do(out, num_shards, provenance, overwrite, redo_mismatched)
    state.wait_for_everyone()
    if state.is_main_process:
        prepare_output(out, recipe, overwrite)
        from advgen.report import speed_text

        for note in notes:
            say(f"{recipe.name}: {note}")
        say(f"{recipe.name}: runs on {speed_text(speed, state.num_processes)}")
    state.wait_for_everyone()
    mine = todo[state.process_index::state.num_processes]
    pending = sum(min(size, n - i * size) for i in mine)
    bar = tqdm(total=pending, desc=f"{recipe.name} [{state.num_processes} proc]", unit="img",
               disable=bars_off(not state.is_main_process))
    # Shards are written by a background thread while the next shard is attacked; `waited` is the time the attack
    # spent blocked on the writer (0 when writing hides behind the attack).
    t_setup, waited = time.time() - t_start, 0.0
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        futures = []
        for i in mine:
            clear_shard(out, i)
            samples, stats, secs = run_shard(job, i, bar)
            stats["attack_seconds"] = secs
            futures.append(pool.submit(write_shard, out, i, samples, source.class_names, stats,
                                       recipe.output.hf_export, state.process_index, provenance))
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
        speed.update(threads=torch.get_num_threads(), setup_seconds=round(t_setup, 2),
                     writer_wait_seconds=round(waited, 2))
        finalize(out, recipe, source, ckpt, num_shards, state.num_processes, time.time() - t_start, speed, provenance)
    state.wait_for_everyone()
    return out


def set_deterministic(on: bool) -> None:
    """CUDA kernels that give the same bits for the same inputs (cuDNN deterministic algorithms, no benchmark
    autotuning, torch's deterministic mode, warning where an op has none). CPU kernels here are deterministic.

    The guarantee on a GPU: with a fixed batch_size, the same recipe gives the same bytes for any number of
    processes and across resumes, on the same GPU model with the same driver, CUDA, cuDNN and torch. It does not
    hold across GPU models or library versions (other kernels), nor with batch_size "auto", whose probed size
    depends on the memory free on each rank."""
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = not on
    torch.use_deterministic_algorithms(on, warn_only=True)


def follow_launcher(recipe: GenerateRecipe, env=None) -> tuple[str, object, list[str]]:
    """(precision, compile, notes): the recipe's settings reconciled with accelerate's --mixed_precision and
    --dynamo_backend (ACCELERATE_MIXED_PRECISION / ACCELERATE_DYNAMO_BACKEND, set by `accelerate launch`).

    `precision: auto` follows the launcher's bf16; an explicit recipe value wins over the launcher, and the notes
    say so. accelerate exports mixed_precision "no" also when it was not asked for (its default), so "no" leaves
    `auto` to advgen's own choice (bf16 where native); `precision: fp32` in the recipe forces fp32."""
    env = os.environ if env is None else env
    mp = env.get("ACCELERATE_MIXED_PRECISION", "").strip().lower()
    dynamo = env.get("ACCELERATE_DYNAMO_BACKEND", "").strip().upper()
    precision, compile_, notes = recipe.precision, recipe.compile, []
    if mp == "fp16":
        raise RecipeError("accelerate's mixed_precision is fp16, which advgen's attacks do not run in (fp16 gradients "
                          "underflow over 100-1000 steps); launch with --mixed_precision bf16 or no")
    if mp in ("bf16", "fp8"):
        if precision == "auto":
            precision = "bf16"
            notes.append(f"precision auto follows accelerate's --mixed_precision {mp}: bf16 autocast")
        elif precision == "fp32":
            notes.append(f"precision fp32 (the recipe) wins over accelerate's --mixed_precision {mp}")
    elif mp == "no" and precision == "bf16":
        notes.append("precision bf16 (the recipe) wins over accelerate's mixed_precision 'no'")
    if dynamo and dynamo != "NO":
        if compile_ == "auto":
            compile_ = True
            notes.append(f"compile auto follows accelerate's --dynamo_backend {dynamo.lower()}: torch.compile on")
        elif compile_ is False:
            notes.append(f"compile false (the recipe) wins over accelerate's --dynamo_backend {dynamo.lower()}")
    return precision, compile_, notes


def build_job(recipe: GenerateRecipe, ckpt: str, device, precision: Optional[str] = None,
              compile_=None) -> tuple[Job, dict]:
    """The recipe's attack on `device`, with its source and batch size; and the speed settings that will run
    (precision / compile: the recipe's unless given, e.g. reconciled with the launcher by `follow_launcher`)."""
    model = load_checkpoint(ckpt, device=device).eval().requires_grad_(False)
    source = load_source(recipe.source, recipe.source.split)
    check_fit(model, read_meta(ckpt), ckpt, source, device)
    source.fingerprint()                      # on the host copy, before staging (cached, kept by staged())
    if device.type == "cuda":
        source = source.staged(device)        # the whole split on the GPU: no host->device copy per batch
    fast, dtype = prepare(model, precision=precision or recipe.precision, channels_last=recipe.channels_last,
                          compile=recipe.compile if compile_ is None else compile_, fuse_bn=recipe.fuse_bn,
                          device=device)
    job = JOBS[recipe.dataset](recipe, model, fast, dtype, source, device)
    job = dataclasses.replace(job, batch_size=resolve_batch_size(job))
    speed = {"device": device.type, "autocast": str(dtype).replace("torch.", "") if dtype else "fp32",
             "channels_last": fast.channels_last, "compile": fast.compiled, "fuse_bn": recipe.fuse_bn,
             "batch_size": job.batch_size, **({"deterministic": recipe.deterministic} if device.type == "cuda" else {})}
    return job, speed


def check_fit(model, meta: dict, ckpt: str, source: Source, device):
    """The source model classifies the source's images: same classes, same channels, and one image goes through (a
    3-channel model would otherwise run on 1-channel digits, its normalisation broadcasting 1 channel to 3)."""
    shape = "x".join(map(str, source.shape))
    if source.num_classes != meta["num_classes"]:
        raise RecipeError(f"model.checkpoint {ckpt!r} has {meta['num_classes']} classes but the source "
                          f"has {source.num_classes}; train a model on this source")
    if meta["in_channels"] != source.shape[0]:
        raise RecipeError(f"model.checkpoint {ckpt!r} takes {meta['in_channels']}-channel images but the source's "
                          f"are {shape} ({source.shape[0]} channel(s)); train a model on this source")
    if len(source):
        try:
            with torch.no_grad():
                logits = model(source.images(torch.arange(1)).to(device).float() / 255.0)
        except RuntimeError as e:
            raise RecipeError(f"model.checkpoint {ckpt!r} cannot classify the source's {shape} images "
                              f"({str(e).splitlines()[0][:200]}); train a model on this source") from None
        if tuple(logits.shape) != (1, source.num_classes):
            raise RecipeError(f"model.checkpoint {ckpt!r} gives outputs of shape {tuple(logits.shape)} for one "
                              f"{shape} image, not (1, {source.num_classes}); train a model on this source")


def resolve_batch_size(job: Job) -> int:
    """The recipe's batch size; "auto": 250 on CPU, on a GPU the largest from 1024 down (x0.9 per OOM) for which
    one attack step of this job runs."""
    recipe, source, device = job.recipe, job.source, job.device
    if recipe.batch_size != "auto":
        return recipe.batch_size
    if device.type != "cuda":
        return 250
    n = min(len(source), 1024)
    one_step = dataclasses.replace(job, recipe=dataclasses.replace(
        recipe, attack=dataclasses.replace(recipe.attack, steps=1)))

    def probe(b):
        pos = torch.arange(min(b, n)).repeat((b + n - 1) // n)[:b]
        x = source.images(pos).to(device).float() / 255.0
        one_step.run(x, source.labels[pos].to(device), one_step.plan(pos, torch.Generator().manual_seed(0), 0))
        torch.cuda.synchronize(device)

    return auto_batch_size(probe, 1024, device=device)


PREVIEW_SAMPLES = 8


def write_preview(out: Path, tar: str, source: Source, dataset: str) -> bool:
    """OUT/preview.png: the first samples of shard 0 under the source images they were made from (read back from
    the shard, so it shows the stored PNGs); False when matplotlib cannot draw it (the dataset does not need it)."""
    from advgen.report import sample_grid
    from advgen.writers.reader import TrainSet, read_shard
    from advgen.writers.shards import decode_png

    samples = list(read_shard(out / tar).values())[:PREVIEW_SAMPLES]
    ts = TrainSet(images=torch.from_numpy(np.stack([decode_png(s["png"]) for s in samples])),
                  labels=torch.tensor([int(s["cls"]) for s in samples]), class_names=source.class_names,
                  source_index=torch.tensor([json.loads(s["json"])["source_index"] for s in samples]),
                  origin=f"{out} preview")
    title = {"d_det": "D̂det", "d_rand": "D̂rand", "d_robust": "D̂R", "d_nonrobust": "D̂NR"}.get(dataset, dataset)
    try:
        return sample_grid(ts, source, PREVIEW_SAMPLES, out / PREVIEW, title)
    except (ImportError, RuntimeError, ValueError) as e:       # a figure is a nicety: say so, do not fail the run
        print(f"advgen generate: no {PREVIEW} ({type(e).__name__}: {e})", file=sys.stderr)
        return False


def finalize(out: Path, recipe: GenerateRecipe, source: Source, ckpt: str, num_shards: int, world_size: int,
             seconds: float, speed: dict, provenance: dict):
    markers = []
    for i in range(num_shards):
        m = read_marker(out, i)
        if m is None:
            raise RuntimeError(f"shard {i} of {out} is missing or corrupt after generation; re-run to redo it")
        if m.get("provenance") != provenance:    # another run wrote into this output meanwhile
            raise RuntimeError(f"shard {i} of {out} was made from other inputs than this run's; re-run to redo it")
        markers.append(m)
    agg = aggregate(markers)
    attack_seconds = agg.pop("mean_attack_seconds") * agg["count"] if markers else 0.0
    meta = read_meta(ckpt)
    if recipe.output.hf_export:
        write_hf_readme(out, recipe.name)
    preview = write_preview(out, markers[0]["tar"], source, recipe.dataset) if markers else False
    manifest = {
        "name": recipe.name, "dataset": recipe.dataset, "advgen_version": advgen_version(), "git_sha": git_sha(),
        "versions": library_versions(),
        "recipe": to_dict(recipe),
        "checkpoint": {"path": str(ckpt), "sha256": provenance["checkpoint_sha256"], "arch": meta["arch"],
                       "metrics": meta.get("metrics", {}), "adversarial": meta.get("adversarial", False)},
        "source": {"kind": recipe.source.kind, "path": recipe.source.path, "split": recipe.source.split,
                   "num_samples": len(source), "class_names": source.class_names, "shape": list(source.shape),
                   "fingerprint": provenance["source_fingerprint"]},
        "world_size": world_size, "speed": speed, "num_shards": num_shards, "count": agg.pop("count"),
        "stats": agg,
        "seconds": {"total_last_run": round(seconds, 2), "attack": round(attack_seconds, 2)},
        "shards": [{k: m[k] for k in ("tar", "tar_sha256", "parquet", "parquet_sha256", "count") if k in m}
                   for m in markers],
    }
    if preview:
        manifest["preview"] = {"path": PREVIEW, "sha256": sha256_file(out / PREVIEW)}
    write_manifest(out, manifest)
    s = manifest["stats"]
    say(f"{recipe.name}: {manifest['count']} samples in {num_shards} shards -> {out}"
        + (f"; targeted success {s['mean_success']:.3f}, mean l2 {s['mean_l2']:.4f}" if "mean_success" in s else ""))


def main(argv=None) -> int:
    p = command_parser("generate")
    args = p.parse_intermixed_args(argv)      # flags may come between the overrides
    recipe = load_recipe(args.recipe, GenerateRecipe, args.overrides)
    make_state()
    torch.set_num_threads(threads_per_rank())     # after the state: accelerate's CPU path sets its own
    generate(recipe, overwrite=args.overwrite, redo_mismatched=args.redo_mismatched)
    return 0


if __name__ == "__main__":
    sys.exit(run("generate", main))
