"""The one descent loop behind every attack: minimise a per-sample loss with normalised steps.

Targeted PGD and representation inversion are both `descend(loss_fn, ...)` with a different loss and
projection (as in MadryLab robustness' attack_steps.py: a step is a per-sample normalised gradient
step, a projection is a renorm to the eps ball plus a clamp to [0,1]).

The loop never synchronises host and device: no `.item()`, no Python branching on tensor values;
the "keep the lowest-loss iterate" bookkeeping is done with `torch.where`.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Optional

import torch


def l2_step(x: torch.Tensor, grad: torch.Tensor, step_size: float) -> torch.Tensor:
    """x - step_size * grad / ||grad||_2, per sample (descends the loss)."""
    norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))
    return x - step_size * grad / norm


def linf_step(x: torch.Tensor, grad: torch.Tensor, step_size: float) -> torch.Tensor:
    return x - step_size * grad.sign()


def l2_project(x: torch.Tensor, x0: torch.Tensor, eps: float) -> torch.Tensor:
    """Renorm x - x0 to the l2 ball of radius eps, then clamp to [0,1]."""
    delta = x - x0
    norm = delta.flatten(1).norm(dim=1).view(-1, *([1] * (x.dim() - 1)))
    delta = delta * (eps / norm.clamp_min(1e-12)).clamp(max=1.0)
    return (x0 + delta).clamp(0.0, 1.0)


def linf_project(x: torch.Tensor, x0: torch.Tensor, eps: float) -> torch.Tensor:
    return (x0 + (x - x0).clamp(-eps, eps)).clamp(0.0, 1.0)


def clamp_project(x: torch.Tensor, x0: torch.Tensor, eps: Optional[float]) -> torch.Tensor:
    """No ball (inversion): only stay in [0,1]."""
    return x.clamp(0.0, 1.0)


STEPS = {"l2": l2_step, "linf": linf_step}
PROJECTIONS = {"l2": l2_project, "linf": linf_project, None: clamp_project}


def autocast_context(device: torch.device, dtype: Optional[torch.dtype]):
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def descend(loss_fn: Callable[[torch.Tensor], torch.Tensor], x_start: torch.Tensor, anchor: torch.Tensor, *,
            steps: int, step_size: float, norm: str = "l2", eps: Optional[float] = None,
            keep_best: bool = True, autocast_dtype: Optional[torch.dtype] = None):
    """Minimise `loss_fn(x)` (shape [B], one loss per sample) from `x_start`.

    Args:
        loss_fn: maps a batch [B, C, H, W] in [0,1] to per-sample losses [B] (computed in fp32).
        x_start: first iterate, [B, C, H, W] in [0,1].
        anchor: centre of the eps ball (the clean image) when `eps` is set; ignored otherwise.
        steps, step_size: number and length of the normalised steps ("l2") or sign steps ("linf").
        eps: radius of the ball around `anchor`; None = no ball, only clamp to [0,1] (inversion).
        keep_best: return each sample's lowest-loss iterate (including the last) instead of the last.
        autocast_dtype: run `loss_fn` under autocast with this dtype (bf16); iterates stay fp32.

    Returns:
        (x, loss): the chosen iterate per sample (fp32, detached) and its loss [B].
    """
    step = STEPS[norm]
    project = PROJECTIONS[norm if eps is not None else None]
    device = x_start.device
    x = x_start.detach().float().clone()
    best_x = x.clone()
    best_loss = torch.full((x.shape[0],), float("inf"), device=device)
    shape = (-1,) + (1,) * (x.dim() - 1)
    for _ in range(steps):
        x.requires_grad_(True)
        with autocast_context(device, autocast_dtype):
            loss = loss_fn(x).float()
        (grad,) = torch.autograd.grad(loss.sum(), x)
        with torch.no_grad():
            loss = loss.detach()
            if keep_best:
                better = loss < best_loss
                best_loss = torch.where(better, loss, best_loss)
                best_x = torch.where(better.view(shape), x.detach(), best_x)
            x = project(step(x.detach(), grad.float(), step_size), anchor, eps)
    with torch.no_grad(), autocast_context(device, autocast_dtype):
        loss = loss_fn(x).float()
    if not keep_best:
        return x, loss
    better = loss < best_loss
    return torch.where(better.view(shape), x, best_x), torch.where(better, loss, best_loss)
