"""Fast paths for the attack loop: the same maths as fp32 eager, arranged to run faster on the hardware.

    model, dtype = prepare(model, device=device)            # precision/channels_last/compile "auto"
    x_adv, ce = targeted_pgd(model, x, t, ..., autocast_dtype=dtype)

What `prepare` does (each step is exact or, for bf16, within the tolerance tested in tests/test_bench.py):

- freeze: eval mode (BatchNorm uses running stats) and `requires_grad_(False)` on every parameter, so a
  step computes d loss/d x only (no weight gradients).
- fuse_bn: fold each eval BatchNorm into the convolution that feeds it (`fuse_conv_bn`): one op fewer
  forward and backward per conv; exact up to float rounding (logits and input gradients match to 1e-4).
- precision: "auto" picks bf16 autocast only where bf16 is native (CUDA sm80+, CPUs with avx512_bf16 or
  AMX); on other CPUs (AVX2) oneDNN emulates bf16 and a step is many times slower, so it stays fp32.
  The iterate, step and projection stay fp32 whatever the model runs in (descend does that).
- channels_last: NHWC weights and inputs (oneDNN's and cuDNN's native layout, no reorders per conv).
  "auto": on (measured 1.2-1.4x with fuse_bn on an AVX2 CPU, ResNet-18 and small_cnn; standard on CUDA).
- compile: `torch.compile` (inductor) of the forward and of `features`. "auto": off. On the AVX2 CPU it
  measured no faster than fuse_bn + channels_last in eager (convs dominate; they stay oneDNN calls) and
  costs 5-60 s of compiling; on CUDA it is unmeasured here: try `advgen bench --device cuda --compile on`.

The returned model is a `FastModel`: a module with `forward`, `features` and `features_and_logits` like
`advgen.models.nets.Classifier`, so pgd.py and inversion.py use it unchanged.
"""

from __future__ import annotations

import copy
import warnings
from collections import Counter
from pathlib import Path
from typing import Callable, Optional, Union

import torch
import torch.nn as nn

Auto = Union[bool, str]


# ---------------------------------------------------------------------------------------------------
# Hardware
# ---------------------------------------------------------------------------------------------------

def bf16_is_native(device) -> bool:
    """bf16 pays off on CUDA sm80+ and on CPUs with avx512_bf16 or AMX; elsewhere it is emulated (slow)."""
    device = torch.device(device)
    if device.type == "cuda":
        # is_bf16_supported() alone is True on pre-Ampere GPUs too (emulated); ask for native support.
        return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type != "cpu":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_autocast_dtype(precision: str, device) -> Optional[torch.dtype]:
    """"fp32" -> None, "bf16" -> torch.bfloat16, "auto" -> bf16 where native, else None (fp32)."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto":
        return torch.bfloat16 if bf16_is_native(device) else None
    raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {precision!r}")


def _resolve_flag(value: Auto, name: str, auto: bool) -> bool:
    if value == "auto":
        return auto
    if isinstance(value, bool):
        return value
    raise ValueError(f"{name} must be True, False or 'auto', got {value!r}")


# ---------------------------------------------------------------------------------------------------
# Conv + BatchNorm folding
# ---------------------------------------------------------------------------------------------------

def _set_submodule(root: nn.Module, name: str, module: nn.Module):
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(conv, bn) module names where an eval BatchNorm reads only the output of one Conv2d.

    Found by tracing the forward with torch.fx, so only pairs that really are conv -> bn in the
    dataflow are folded (each module called once, the conv output used by nothing else).
    """
    import torch.fx

    class Tracer(torch.fx.Tracer):
        # Conv / BatchNorm subclasses (airbench's) are leaves like their torch.nn bases: tracing into a BatchNorm's
        # forward fails on its `num_batches_tracked` branch, and folding needs both as modules.
        def is_leaf_module(self, m, qualname):
            return isinstance(m, (nn.Conv2d, nn.BatchNorm2d)) or super().is_leaf_module(m, qualname)

    graph = Tracer().trace(model)
    modules = dict(model.named_modules())
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
    pairs = []
    for node in graph.nodes:
        bn = modules.get(node.target) if node.op == "call_module" else None
        if not isinstance(bn, nn.BatchNorm2d) or bn.running_mean is None or len(node.args) != 1:
            continue
        src = node.args[0]
        if not (isinstance(src, torch.fx.Node) and src.op == "call_module"
                and isinstance(modules.get(src.target), nn.Conv2d)):
            continue
        if len(src.users) == 1 and calls[src.target] == 1 and calls[node.target] == 1:
            pairs.append((src.target, node.target))
    return pairs


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` with every conv -> BatchNorm pair folded into one biased conv.

    Same logits and input gradients (to float rounding) as `model.eval()`; methods such as `features`
    keep working because the module tree is kept (the BN becomes nn.Identity). Training the copy would
    be wrong (the BN statistics are gone), so it is frozen. A model that torch.fx cannot trace is
    returned as an unfused frozen copy.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = copy.deepcopy(model).eval()
    try:
        pairs = conv_bn_pairs(model)
    except Exception as e:  # noqa: BLE001 - fx raises many types on untraceable code; fusing is optional
        warnings.warn(f"fuse_conv_bn: cannot trace {type(model).__name__} ({e}); BatchNorm left unfused")
        pairs = []
    for conv_name, bn_name in pairs:
        fused = fuse_conv_bn_eval(model.get_submodule(conv_name), model.get_submodule(bn_name))
        _set_submodule(model, conv_name, fused)
        _set_submodule(model, bn_name, nn.Identity())
    return model.requires_grad_(False)


# ---------------------------------------------------------------------------------------------------
# The prepared model
# ---------------------------------------------------------------------------------------------------

class FastModel(nn.Module):
    """A frozen classifier with the layout/compile choices applied; same interface as Classifier."""

    def __init__(self, model: nn.Module, channels_last: bool = False, compile: bool = False):
        super().__init__()
        self.model = model
        self.channels_last = channels_last
        self.compiled = compile
        # Compiled callables are kept out of the module tree (they wrap self.model, not new weights).
        object.__setattr__(self, "_forward", torch.compile(model) if compile else model)
        feats = getattr(model, "features", None)
        object.__setattr__(self, "_features",
                           torch.compile(feats) if (compile and feats is not None) else feats)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(self, x):
        return self._forward(self._layout(x))

    def features(self, x):
        if self._features is None:
            raise AttributeError(f"{type(self.model).__name__} has no features()")
        return self._features(self._layout(x))

    def features_and_logits(self, x):
        return self.model.features_and_logits(self._layout(x))

    def train(self, mode: bool = True):
        if mode:
            raise RuntimeError("a FastModel is frozen for attacks (BatchNorm may be folded); train the original")
        return super().train(False)


def prepare(model: nn.Module, *, precision: str = "auto", channels_last: Auto = "auto",
            compile: Auto = "auto", fuse_bn: bool = True, device=None):
    """Freeze `model` and arrange it for fast attacks on `device`; returns (model, autocast_dtype).

    Args:
        model: a classifier mapping [0,1] images to logits (advgen.models.nets.Classifier); not modified.
        precision: "auto" | "fp32" | "bf16" (the autocast dtype of the model's forward/backward).
        channels_last: True | False | "auto" (NHWC; auto = on).
        compile: True | False | "auto" (torch.compile; auto = off, see the module docstring).
        fuse_bn: fold eval BatchNorm into the preceding conv (exact).
        device: where the attack runs; default: the device of the model's first parameter.

    Returns:
        (FastModel, dtype): pass dtype as `autocast_dtype=` to targeted_pgd / invert / descend.
    """
    if device is None:
        p = next(iter(model.parameters()), None)
        device = p.device if p is not None else torch.device("cpu")
    device = torch.device(device)
    dtype = resolve_autocast_dtype(precision, device)
    cl = _resolve_flag(channels_last, "channels_last", auto=True)
    comp = _resolve_flag(compile, "compile", auto=False)
    model = fuse_conv_bn(model) if fuse_bn else copy.deepcopy(model).eval().requires_grad_(False)
    model = model.to(device)
    if cl:
        model = model.to(memory_format=torch.channels_last)
    return FastModel(model, channels_last=cl, compile=comp).eval(), dtype


# ---------------------------------------------------------------------------------------------------
# Batch size
# ---------------------------------------------------------------------------------------------------

def auto_batch_size(fn: Callable[[int], object], starting_batch_size: int, device=None) -> int:
    """A batch size <= starting_batch_size for which `fn(batch_size)` runs without running out of GPU
    memory (accelerate's find_executable_batch_size: x0.9 after each OOM). On CPU it is
    starting_batch_size and `fn` is not called.

    `fn(batch_size)` should be a probe: one attack step (forward + backward) on that many images.
    """
    device = torch.device(device) if device is not None else (
        torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
    if device.type != "cuda":
        return int(starting_batch_size)
    from accelerate.utils import find_executable_batch_size

    @find_executable_batch_size(starting_batch_size=int(starting_batch_size))
    def probe(batch_size):
        fn(batch_size)
        return batch_size

    return probe()
