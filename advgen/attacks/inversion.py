"""Representation inversion: D̂R (robust source model) and D̂NR (standard source model).

Paper: Ilyas et al. 2019, Section 3.1, eq. (5): x_r = argmin_{z in [0,1]^d} ||g(z) - g(x)||_2, where g is
the penultimate layer (the input of the linear classifier), started from an image x0 drawn
independently of x's label (or from noise, the paper's Appendix D.1), and stored with label y.
Optimiser: normalised gradient descent (fixed l2 step along -grad/||grad||, clamp to [0,1]), no eps
ball; CIFAR-10 settings 1000 steps of 0.1 (PAPER_NOTES). It is a loss run through the same
`descend` loop as PGD.

    x_r, dist = invert(model, x, x0, steps=1000, step_size=0.1)

Shapes: x, x0 [B, C, H, W] in [0,1]; returns x_r like x and the final ||g(x_r) - g(x)|| [B]
(divided by ||g(x)|| when normalize_loss=True).
"""

from __future__ import annotations

from typing import Optional

import torch

from advgen.attacks.descent import descend


def feature_distance(feats: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """||feats - target||_2 per sample; the tiny floor keeps the gradient finite at distance 0."""
    return (feats.float() - target).pow(2).sum(dim=1).clamp_min(1e-20).sqrt()


def invert(model, x: torch.Tensor, x0: torch.Tensor, *, steps: int = 1000, step_size: float = 0.1,
           normalize_loss: bool = False, keep_best: bool = True,
           autocast_dtype: Optional[torch.dtype] = None):
    """Descend ||g(x_r) - g(x)|| (optionally / ||g(x)||) from x0; returns (x_r, loss)."""
    with torch.no_grad():
        target = model.features(x).float()
    scale = target.norm(dim=1).clamp_min(1e-12) if normalize_loss else torch.ones(len(x), device=x.device)

    def loss_fn(z):
        return feature_distance(model.features(z), target) / scale

    return descend(loss_fn, x0, x0, steps=steps, step_size=step_size, norm="l2", eps=None,
                   keep_best=keep_best, autocast_dtype=autocast_dtype)


@torch.no_grad()
def relative_distance(model, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """||g(z) - g(x)|| / ||g(x)|| per sample, in fp32."""
    target = model.features(x).float()
    return feature_distance(model.features(z), target) / target.norm(dim=1).clamp_min(1e-12)


def draw_x0(positions: torch.Tensor, num_images: int, generator: torch.Generator) -> torch.Tensor:
    """For each position p, a uniform other position j != p of the same split, independent of labels."""
    if num_images < 2:
        raise ValueError("x0 'train' needs at least 2 images in the source split")
    r = torch.randint(num_images - 1, positions.shape, generator=generator)
    return r + (r >= positions).long()      # skip p itself: uniform over the other N-1 images
