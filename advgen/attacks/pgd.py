"""Projected gradient descent, targeted (D̂rand / D̂det) and untargeted (adversarial training, evaluation).

Paper: Ilyas et al. 2019, Section 3.2, eq. (6): x_adv = argmin_{||x'-x|| <= eps} CE(C(x'), t).
Threat model: l2 or linf ball of radius `eps` around x in [0,1] pixel space (normalisation lives in
the model), iterates clamped to [0,1].

    x_adv, loss = targeted_pgd(model, x, t, norm="l2", eps=0.5, step_size=0.1, steps=100)

Shapes: x [B, C, H, W] float in [0,1]; t [B] int64; returns x_adv like x and the per-sample CE to t.
The paper's CIFAR-10 settings (PAPER_NOTES) are l2, eps 0.5, step 0.1, 100 steps, no random start.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from advgen.attacks.descent import descend


def random_start_point(x: torch.Tensor, norm: str, eps: float, generator: Optional[torch.Generator]):
    """A uniform-direction point inside the ball (l2) or a uniform point in the box (linf), clamped."""
    noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1
    if norm == "l2":
        radius = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), generator=generator, device=x.device)
        noise = noise / noise.flatten(1).norm(dim=1).clamp_min(1e-12).view_as(radius) * radius * eps
    else:
        noise = noise * eps
    return (x + noise).clamp(0.0, 1.0)


def pgd(model, x: torch.Tensor, labels: torch.Tensor, *, targeted: bool, norm: str = "l2", eps: float = 0.5,
        step_size: float = 0.1, steps: int = 100, random_start: bool = False, keep_best: bool = True,
        generator: Optional[torch.Generator] = None, autocast_dtype: Optional[torch.dtype] = None):
    """Targeted: minimise CE(model(x'), labels). Untargeted: maximise CE(model(x'), labels).

    Returns (x_adv, ce) where ce is the cross-entropy to `labels` at x_adv, per sample.
    """
    sign = 1.0 if targeted else -1.0

    def loss_fn(z):
        return sign * F.cross_entropy(model(z).float(), labels, reduction="none")

    start = random_start_point(x, norm, eps, generator) if random_start else x
    x_adv, loss = descend(loss_fn, start, x, steps=steps, step_size=step_size, norm=norm, eps=eps,
                          keep_best=keep_best, autocast_dtype=autocast_dtype)
    return x_adv, sign * loss


def targeted_pgd(model, x, targets, **kw):
    return pgd(model, x, targets, targeted=True, **kw)


def untargeted_pgd(model, x, labels, **kw):
    return pgd(model, x, labels, targeted=False, **kw)


def choose_targets(labels: torch.Tensor, num_classes: int, rule: str,
                   generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """rand: uniform over all classes (may equal y, as the paper's D̂rand); det: (y + 1) mod C."""
    if rule == "det":
        return (labels + 1) % num_classes
    if rule == "rand":
        return torch.randint(num_classes, labels.shape, generator=generator, device=labels.device)
    raise ValueError(f"unknown target rule {rule!r}; choose 'rand' or 'det'")
