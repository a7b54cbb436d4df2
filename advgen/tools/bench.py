"""`advgen bench`: time advgen's targeted PGD against the bare loop and torchattacks, in one run.

    advgen bench --model resnet18 --batch 32 --steps 10 --device cpu --repeats 5 --out bench.json
    advgen bench --checkpoint cache/cifar_cpu_standard.safetensors --data ../shared/data/cifar10 --out b.json

One model (random weights, or --checkpoint), one batch size, one device. Methods, each run `--steps`
targeted l2 steps (eps 0.5, step 0.1, no random start) on the same fixed batch:

- floor:        a bare fp32 forward + backward-to-input loop with the l2 step and projection, on the
                plain frozen model (no keep-best, no final forward): what any PGD step must cost.
- torchattacks: torchattacks.PGDL2, targeted by label, on the plain frozen model (skipped if absent).
- advgen:       advgen's targeted_pgd on `advgen.models.fast.prepare(model)` (the default mode).
- advgen_fp32:  advgen's targeted_pgd on the plain frozen model in fp32 (the exact reference mode).
- inversion:    advgen's representation inversion (||g(x_r) - g(x)||, normalised l2 steps) on the
                prepared model, started from the batch's other images.

Every method is warmed up once (that run also gives the peak memory and, with a checkpoint, the
targeted success and mean l2 of the uint8-rounded images, judged by the plain fp32 model), then timed
`--repeats` times round-robin, so load from other processes hits every method alike; the figure is the
median. All methods run with the same torch thread count (--threads).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from advgen.attacks.descent import descend, l2_project, l2_step
from advgen.attacks.pgd import targeted_pgd
from advgen.cli import BENCH_METHODS, command_parser, run
from advgen.errors import BenchError, CheckpointError, UsageError
from advgen.models.checkpoint import freeze, load_checkpoint, read_meta
from advgen.models.convert import load_model
from advgen.models.fast import prepare
from advgen.models.nets import CIFAR_MEAN, CIFAR_STD, build_classifier

METHODS = BENCH_METHODS          # named in advgen.cli, for --help without torch
ACCURACY_METHODS = ("floor", "torchattacks", "advgen", "advgen_fp32")


# ---------------------------------------------------------------------------------------------------
# Model and data
# ---------------------------------------------------------------------------------------------------

def build_model(args, device):
    """(plain frozen model, meta or None, input shape C,H,W)."""
    if args.checkpoint:
        if Path(args.checkpoint).suffix == ".safetensors":
            meta = read_meta(args.checkpoint)
            if args.model and args.model != meta["arch"]:
                raise CheckpointError(f"--model {args.model} but {args.checkpoint!r} holds a {meta['arch']}")
            model = load_checkpoint(args.checkpoint, device=device)
        else:   # a PyTorch file (robustness library...): load_model reads it; read the shape off it
            model = load_model(args.checkpoint, arch=args.model, device=device)
            conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
            c = conv.in_channels
            with torch.no_grad():
                k = model(torch.zeros(1, c, *((8, 8) if c == 1 else (32, 32)), device=device)).shape[1]
            meta = {"arch": args.model or type(model.model).__name__, "in_channels": c, "num_classes": k}
        c = meta["in_channels"]
        shape = (1, 8, 8) if c == 1 else (c, 32, 32)
        return model, meta, shape
    arch = args.model or "resnet18"
    torch.manual_seed(args.seed)
    if arch == "small_cnn":     # digits-shaped, like recipes/digits_*.yaml
        model = build_classifier(arch, 10, 1, [0.5], [0.5])
        shape = (1, 8, 8)
    else:
        model = build_classifier(arch, 10, 3, CIFAR_MEAN, CIFAR_STD)
        shape = (3, 32, 32)
    return freeze(model.to(device)), None, shape


def load_images(args, meta, shape, n: int):
    """(uint8-valued float images in [0,1] [n,C,H,W], labels or None, description)."""
    from advgen.recipe import SourceConfig
    from advgen.sources import load_source

    cfg = None
    if args.data:
        cfg = SourceConfig(kind="hf", path=args.data, split="test", limit=n)
    elif meta is not None and shape[0] == 1:
        cfg = SourceConfig(kind="digits", split="test")
    if cfg is not None:
        src = load_source(cfg, "test")
        if len(src) < n:
            raise BenchError(f"{len(src)} images in the source, need {n}")
        x = src.images(torch.arange(n)).float() / 255.0
        if tuple(x.shape[1:]) != tuple(shape):
            raise BenchError(f"source images are {tuple(x.shape[1:])}, model wants {shape}")
        return x, src.labels[:n], (args.data or "digits") + " (test split)"
    g = torch.Generator().manual_seed(args.seed)
    x = torch.randint(0, 256, (n, *shape), generator=g).float() / 255.0
    return x, None, "random uint8 images"


# ---------------------------------------------------------------------------------------------------
# Methods: each maps (x, t) -> x_adv
# ---------------------------------------------------------------------------------------------------

def floor_attack(model, x, t, steps, eps, step_size):
    """The bare loop: fp32 forward, backward to the input, l2 step, projection. Nothing else."""
    x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), t, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_adv)
        with torch.no_grad():
            x_adv = l2_project(l2_step(x_adv, grad, step_size), x, eps)
    return x_adv.detach()


def torchattacks_method(model, steps, eps, step_size):
    try:
        import torchattacks
    except ModuleNotFoundError:
        return None, "torchattacks not installed"
    except Exception as e:  # noqa: BLE001 - a broken install (e.g. a dependency clash) is as good as absent
        return None, f"torchattacks not importable ({type(e).__name__}: {e})"
    atk = torchattacks.PGDL2(model, eps=eps, alpha=step_size, steps=steps, random_start=False)
    atk.set_mode_targeted_by_label(quiet=True)
    return (lambda x, t: atk(x, t)), None


def inversion_method(model, dtype, steps, step_size):
    """Representation inversion from the batch's other images (x0 = x rolled by one)."""
    try:
        from advgen.attacks.inversion import invert
    except ImportError:
        invert = None

    def run(x, t):
        x0 = x.roll(1, dims=0)
        if invert is not None:
            return invert(model, x, x0, steps=steps, step_size=step_size, autocast_dtype=dtype)[0]
        with torch.no_grad():
            target = model.features(x).float()

        def loss_fn(z):
            return (model.features(z).float() - target).pow(2).sum(1).clamp_min(1e-20).sqrt()

        return descend(loss_fn, x0, x0, steps=steps, step_size=step_size, norm="l2", eps=None,
                       autocast_dtype=dtype)[0]

    return run


# ---------------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------------

def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak memory during a block: CUDA max_memory_allocated, or the process RSS sampled every 5 ms."""

    def __init__(self, device):
        self.device = device
        self.peak_mb = None
        self.delta_mb = None
        self.kind = "cuda_max_memory_allocated" if device.type == "cuda" else "process_rss"

    def _rss(self) -> int:
        try:
            import psutil

            return psutil.Process().memory_info().rss
        except ImportError:
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _sample(self):
        while not self._stop.wait(0.005):
            self._peak = max(self._peak, self._rss())

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        else:
            self._peak = self._start = self._rss()
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, self._rss())
            self.peak_mb = self._peak / 2**20
        self.delta_mb = self.peak_mb - self._start / 2**20


def count_flops(model, shape, device) -> tuple[float, float]:
    """(forward FLOPs, forward + backward-to-input FLOPs) per image, counted by FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(1, *shape, device=device, requires_grad=True)
    with FlopCounterMode(display=False) as fc:
        model(x)
    fwd = fc.get_total_flops()
    with FlopCounterMode(display=False) as fc:
        # .backward(), not autograd.grad: the counter's module hooks reject autograd.grad on a leaf.
        F.cross_entropy(model(x), torch.zeros(1, dtype=torch.long, device=device)).backward()
    return float(fwd), float(fc.get_total_flops())


@torch.no_grad()
def accuracy(ref_model, x_adv, x, t) -> tuple[float, float]:
    """(targeted success, mean l2) of the uint8-rounded images, judged by the plain fp32 model."""
    x_q = (x_adv.float() * 255.0).round().clamp(0, 255) / 255.0
    success = (ref_model(x_q).argmax(1) == t).float().mean().item()
    l2 = (x_q - x).flatten(1).norm(dim=1).mean().item()
    return success, l2


def run_bench(args) -> dict:
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    ref, meta, shape = build_model(args, device)
    arch = meta["arch"] if meta else (args.model or "resnet18")
    n_eval = args.batch * args.eval_batches
    x_all, y_all, data_desc = load_images(args, meta, shape, n_eval)
    x_all = x_all.to(device)
    with torch.no_grad():   # targets: (label + 1) mod C on real images, (prediction + 1) mod C on random ones
        base = y_all.to(device) if y_all is not None else torch.cat(
            [ref(x_all[i:i + args.batch]).argmax(1) for i in range(0, n_eval, args.batch)])
    num_classes = meta["num_classes"] if meta else 10
    t_all = (base + 1) % num_classes
    x, t = x_all[:args.batch], t_all[:args.batch]

    t0 = time.perf_counter()
    fast, dtype = prepare(ref, precision=args.precision, channels_last=_flag(args.channels_last),
                          compile=_flag(args.compile), fuse_bn=not args.no_fuse_bn, device=device)
    prepare_s = time.perf_counter() - t0
    settings = {"precision": "bf16" if dtype == torch.bfloat16 else "fp32", "channels_last": fast.channels_last,
                "compile": fast.compiled, "fuse_bn": not args.no_fuse_bn, "prepare_seconds": round(prepare_s, 3)}
    kw = dict(norm="l2", eps=args.eps, step_size=args.step_size, steps=args.steps, random_start=False)

    fns: dict[str, Optional[Callable]] = {}
    skipped: dict[str, str] = {}
    fns["floor"] = lambda x, t: floor_attack(ref, x, t, args.steps, args.eps, args.step_size)
    ta, why = torchattacks_method(ref, args.steps, args.eps, args.step_size)
    if ta is None:
        skipped["torchattacks"] = why
    else:
        fns["torchattacks"] = ta
    fns["advgen"] = lambda x, t: targeted_pgd(fast, x, t, autocast_dtype=dtype, **kw)[0]
    fns["advgen_fp32"] = lambda x, t: targeted_pgd(ref, x, t, autocast_dtype=None, **kw)[0]
    fns["inversion"] = inversion_method(fast, dtype, args.steps, args.step_size)
    wanted = [m for m in METHODS if m in args.methods]
    fns = {k: v for k, v in fns.items() if k in wanted}

    flops_fwd, flops_step = count_flops(ref, shape, device)
    entries = {m: ({"skipped": skipped[m]} if m in skipped else {}) for m in wanted}
    # Warm-up (compiles, allocator), peak memory and accuracy.
    for name, fn in fns.items():
        with PeakMemory(device) as mem:
            t0 = time.perf_counter()
            x_adv = fn(x, t)
            sync(device)
            warm = time.perf_counter() - t0
        e = entries[name]
        e.update(warmup_seconds=round(warm, 4), peak_memory_mb=round(mem.peak_mb, 1),
                 peak_memory_delta_mb=round(mem.delta_mb, 1), peak_memory_kind=mem.kind)
        if meta is not None and name in ACCURACY_METHODS:
            outs = [x_adv] + [fn(x_all[i:i + args.batch], t_all[i:i + args.batch])
                              for i in range(args.batch, n_eval, args.batch)]
            e["targeted_success"], e["mean_l2"] = accuracy(ref, torch.cat(outs), x_all, t_all)
            e["eval_images"] = n_eval
    # Timing: round-robin over the methods, so outside load hits each alike.
    times = {name: [] for name in fns}
    for _ in range(args.repeats):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn(x, t)
            sync(device)
            times[name].append(time.perf_counter() - t0)
    for name, secs in times.items():
        med = statistics.median(secs)
        ips = args.batch * args.steps / med
        entries[name].update(seconds=[round(s, 5) for s in secs], median_seconds=round(med, 5),
                             images_steps_per_s=round(ips, 3),
                             model_tflops=round(ips * flops_step / 1e12, 5))
    ta_ips = entries.get("torchattacks", {}).get("images_steps_per_s")
    for name in times:
        entries[name]["ratio_vs_torchattacks"] = (round(entries[name]["images_steps_per_s"] / ta_ips, 3)
                                                  if ta_ips else None)
    if "advgen" in entries:
        entries["advgen"]["settings"] = settings
    if "inversion" in entries:
        entries["inversion"]["note"] = "representation inversion, same steps and step size, no eps ball"
    return {
        "config": {"model": arch, "checkpoint": args.checkpoint, "batch": args.batch, "steps": args.steps,
                   "repeats": args.repeats, "eps": args.eps, "step_size": args.step_size, "norm": "l2",
                   "targeted": True, "random_start": False, "input_shape": list(shape), "data": data_desc,
                   "eval_images": n_eval if meta is not None else 0, "threads": torch.get_num_threads(),
                   "seed": args.seed, "advgen_settings": settings,
                   "flops_forward_per_image": flops_fwd, "flops_step_per_image": flops_step,
                   "loadavg_before": [round(v, 2) for v in load_before],
                   "loadavg_after": [round(v, 2) for v in os.getloadavg()]},
        "device": str(device) if device.type == "cpu" else f"{device} ({torch.cuda.get_device_name(device)})",
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "methods": entries,
    }


def _flag(v: str):
    return {"auto": "auto", "on": True, "off": False}[v]


def table(result: dict) -> str:
    c = result["config"]
    lines = [f"advgen bench: {c['model']}, batch {c['batch']}, {c['steps']} targeted l2 steps, "
             f"{result['device']}, {c['threads']} threads, torch {result['torch']} ({result['cpu_capability']}); "
             f"median of {c['repeats']}; advgen = {c['advgen_settings']}",
             f"{'method':<14}{'img*steps/s':>12}{'vs torchattacks':>17}{'TFLOP/s':>10}{'peak MB (+run)':>16}"
             f"{'success':>9}{'mean l2':>9}"]
    for name, e in result["methods"].items():
        if "skipped" in e:
            hint = " (pip install --no-deps torchattacks)" if name == "torchattacks" else ""
            lines.append(f"{name:<14}  skipped: {e['skipped']}{hint}")
            continue
        ratio = "-" if e.get("ratio_vs_torchattacks") is None else f"{e['ratio_vs_torchattacks']:.2f}x"
        succ = "-" if "targeted_success" not in e else f"{e['targeted_success']:.3f}"
        l2 = "-" if "mean_l2" not in e else f"{e['mean_l2']:.4f}"
        mem = f"{e['peak_memory_mb']:.0f} (+{max(e['peak_memory_delta_mb'], 0):.0f})"
        lines.append(f"{name:<14}{e['images_steps_per_s']:>12.1f}{ratio:>17}{e['model_tflops']:>10.4f}"
                     f"{mem:>16}{succ:>9}{l2:>9}")
    lines.append(f"load average before/after: {c['loadavg_before'][0]} / {c['loadavg_after'][0]}")
    return "\n".join(lines)


def emit(text: str, result: dict, out: Optional[str]) -> None:
    """Print the table; write the JSON to `out` if given."""
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=2))
        print(f"wrote {out}")


def main(argv=None) -> int:
    p = command_parser("bench")
    args = p.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in args.methods if m not in METHODS]
    if bad or not args.methods:
        raise UsageError(f"unknown methods {bad}; choose from {', '.join(METHODS)}")
    if args.batch < 1 or args.steps < 1 or args.repeats < 1 or args.eval_batches < 1:
        raise UsageError("--batch, --steps, --repeats and --eval-batches must be >= 1")
    result = run_bench(args)
    emit(table(result), result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(run("bench", main))
