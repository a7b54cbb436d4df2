"""Training loops: standard and adversarial (PGD inside the loop), plus clean/robust evaluation.

    advgen train recipes/digits_standard.yaml      # ~10 s on 2 CPU cores, ~98% test accuracy

Data stay uint8 on the device and are converted per batch (uint8 is 4x smaller to hold and move than
fp32); augmentation is batched tensor ops on the device, seeded, with no per-sample Python loop.
"""

from __future__ import annotations

import json
import math
import time
from typing import Optional

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from advgen.attacks.pgd import untargeted_pgd
from advgen.cli import bars_off, say
from advgen.models.checkpoint import freeze, save_checkpoint
from advgen.models.fast import FastModel, prepare
from advgen.models.nets import Classifier, build_classifier
from advgen.recipe import AttackConfig, AugmentConfig, RecipeError, TrainRecipe, to_dict
from advgen.sources import load_source


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RecipeError("device: 'cuda' was asked for but no CUDA device is visible; use device=auto or cpu")
    return torch.device(name)


def channel_stats(images_u8: torch.Tensor) -> tuple[list[float], list[float]]:
    x = images_u8.float() / 255.0
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return [round(v, 4) for v in mean.tolist()], [round(v, 4) for v in std.tolist()]


def augment(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Batched, seeded augmentation of x in [0,1]: crop with padding, flip, colour jitter, rotation."""
    b, c, h, w = x.shape
    dev = x.device
    if cfg.crop_padding:
        p = cfg.crop_padding
        xp = F.pad(x, (p, p, p, p))
        oy = torch.randint(0, 2 * p + 1, (b,), generator=g, device=dev)
        ox = torch.randint(0, 2 * p + 1, (b,), generator=g, device=dev)
        rows = (oy[:, None] + torch.arange(h, device=dev))[:, :, None]      # b, h, 1
        cols = (ox[:, None] + torch.arange(w, device=dev))[:, None, :]      # b, 1, w
        x = xp[torch.arange(b, device=dev)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
    if cfg.flip:
        flip = torch.rand(b, generator=g, device=dev) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    if cfg.jitter:
        j = cfg.jitter

        def factor():
            return (1 + (torch.rand(b, generator=g, device=dev) * 2 - 1) * j).view(-1, 1, 1, 1)

        x = (x * factor()).clamp(0, 1)                                           # brightness
        m = x.mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - m) * factor() + m).clamp(0, 1)                                 # contrast
        if c == 3:
            grey = (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
            x = ((x - grey) * factor() + grey).clamp(0, 1)                       # saturation
    if cfg.rotate_deg:
        ang = (torch.rand(b, generator=g, device=dev) * 2 - 1) * math.radians(cfg.rotate_deg)
        cos, sin = ang.cos(), ang.sin()
        theta = torch.stack([torch.stack([cos, -sin, torch.zeros_like(cos)], 1),
                             torch.stack([sin, cos, torch.zeros_like(cos)], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
    return x


@torch.no_grad()
def accuracy(model, images_u8: torch.Tensor, labels: torch.Tensor, batch_size: int = 500) -> float:
    dev = next(model.parameters()).device
    correct = torch.zeros((), device=dev)
    for i in range(0, len(labels), batch_size):
        x = images_u8[i:i + batch_size].to(dev).float() / 255.0
        correct += (model(x).argmax(1) == labels[i:i + batch_size].to(dev)).sum()
    return float(correct) / max(1, len(labels))


def robust_accuracy(model, images_u8, labels, *, eps: float, norm: str = "l2", steps: int = 20,
                    step_size: Optional[float] = None, batch_size: int = 500, desc: Optional[str] = None) -> float:
    """Accuracy under untargeted PGD (no random start) at radius eps; step size 2.5*eps/steps by default.
    `desc`: show a progress bar over the test images (the attack is most of a verification model's time).

    The attack runs on a prepared copy of `model` (advgen.models.fast.prepare: BatchNorm folded into the convs,
    NHWC) in fp32: the same logits and input gradients to float rounding, about 2x faster on CPU (airbench w16,
    1,000 images, 20 steps: 16 s -> 8 s; a `cpu`-scale verification model's evaluation: 35 s -> 25 s). `model` itself
    is not modified; callers that evaluate several radii pass a prepared model once (it is used as given)."""
    dev = next(model.parameters()).device
    if not isinstance(model, FastModel):
        model, _ = prepare(model, precision="fp32", device=dev)
    step_size = step_size or 2.5 * eps / steps
    correct = torch.zeros((), device=dev)
    bar = tqdm(total=len(labels), desc=desc, unit="img", leave=False, disable=bars_off(desc is None))
    for i in range(0, len(labels), batch_size):
        bar.update(min(batch_size, len(labels) - i))
        x = images_u8[i:i + batch_size].to(dev).float() / 255.0
        y = labels[i:i + batch_size].to(dev)
        x_adv, _ = untargeted_pgd(model, x, y, norm=norm, eps=eps, step_size=step_size, steps=steps,
                                  keep_best=False)
        with torch.no_grad():
            correct += (model(x_adv).argmax(1) == y).sum()
    bar.close()
    return float(correct) / max(1, len(labels))


def fit(model: Classifier, images_u8: torch.Tensor, labels: torch.Tensor, cfg, *, seed: int,
        device: torch.device, desc: str = "train") -> list[float]:
    """Train `model` in place on uint8 images with labels; returns the mean loss of each epoch."""
    g = torch.Generator(device=device).manual_seed(seed)
    cpu_g = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters()]
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(cfg.milestones), gamma=0.1)
    images_u8, labels = images_u8.to(device), labels.to(device)
    n = len(labels)
    adv: Optional[AttackConfig] = cfg.adversarial
    losses = []
    bar = tqdm(range(cfg.epochs), desc=desc, unit="epoch", leave=False)
    for _ in bar:
        perm = torch.randperm(n, generator=cpu_g).to(device)
        total = torch.zeros((), device=device)
        for i in range(0, n, cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            x = augment(images_u8[idx].float() / 255.0, cfg.augment, g)
            y = labels[idx]
            if adv is not None:
                model.eval()
                model.requires_grad_(False)
                x, _ = untargeted_pgd(model, x, y, norm=adv.norm, eps=adv.eps, step_size=adv.step_size,
                                      steps=adv.steps, random_start=adv.random_start, keep_best=False,
                                      generator=g)
                model.requires_grad_(True)
            model.train()
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(idx)
        sched.step()
        losses.append(float(total) / n)     # one sync per epoch, for the progress bar
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    return losses


def train_model(recipe: TrainRecipe) -> dict:
    """Train the recipe's model, measure it on the test split, write checkpoint + JSON; return the meta."""
    t0 = time.time()
    torch.manual_seed(recipe.seed)
    device = pick_device(recipe.device)
    train = load_source(recipe.source, recipe.source.split)
    test = load_source(recipe.source, recipe.source.test_split)
    images = train.all_images()
    mean, std = recipe.model.mean, recipe.model.std
    if mean is None or std is None:
        m, s = channel_stats(images)
        mean, std = mean or m, std or s
    c = images.shape[1]
    mean = mean * c if len(mean) == 1 and c > 1 else mean
    std = std * c if len(std) == 1 and c > 1 else std
    model = build_classifier(recipe.model.arch, train.num_classes, c, mean, std, recipe.model.width,
                             recipe.model.feature_dim).to(device)
    if recipe.trainer == "airbench":
        from advgen.models.airbench import train_airbench

        losses = train_airbench(model, images, train.labels, recipe.train, recipe.airbench, seed=recipe.seed,
                                device=device, desc=recipe.name)
    else:
        losses = fit(model, images, train.labels, recipe.train, seed=recipe.seed, device=device, desc=recipe.name)
    train_seconds = time.time() - t0
    freeze(model)
    test_images = test.all_images()
    metrics = {"test_acc": accuracy(model, test_images, test.labels), "train_loss": losses[-1]}
    adv = recipe.train.adversarial
    eval_eps = recipe.train.eval_eps or (adv.eps if adv else None)
    attacked = prepare(model, precision="fp32")[0]      # prepared once for every radius (see robust_accuracy)
    if eval_eps:
        norm = adv.norm if adv else "l2"
        metrics["robust_acc"] = robust_accuracy(attacked, test_images, test.labels, eps=eval_eps, norm=norm,
                                                steps=recipe.train.eval_steps)
        metrics["robust_eps"], metrics["robust_norm"] = eval_eps, norm
        metrics["robust_steps"] = recipe.train.eval_steps
    if recipe.train.eval_extra_eps:
        norm = adv.norm if adv else "l2"
        metrics["robust_acc_at"] = {f"{e:g}": robust_accuracy(attacked, test_images, test.labels, eps=e, norm=norm,
                                                              steps=recipe.train.eval_steps)
                                    for e in recipe.train.eval_extra_eps}
    metrics["num_test"] = len(test)
    metrics["train_seconds"] = round(train_seconds, 2)
    metrics["seconds"] = round(time.time() - t0, 2)
    meta = {"arch": recipe.model.arch, "num_classes": train.num_classes, "in_channels": c,
            "width": recipe.model.width, "feature_dim": recipe.model.feature_dim, "mean": list(mean),
            "std": list(std), "class_names": train.class_names, "adversarial": adv is not None,
            # fit / train_airbench attack with the last PGD iterate whatever adversarial.keep_best says
            "adversarial_iterate": "last" if adv is not None else None,
            "recipe": to_dict(recipe), "metrics": metrics}
    save_checkpoint(model, recipe.checkpoint, meta)
    say(f"{recipe.name}: test acc {metrics['test_acc']:.4f}"
        + (f", robust acc {metrics['robust_acc']:.4f} at {metrics['robust_norm']} eps {eval_eps}"
           if "robust_acc" in metrics else "")
        + f" ({metrics['seconds']:.1f} s) -> {recipe.checkpoint}")
    return json.loads(json.dumps(meta))


def main(argv=None) -> int:
    """`advgen train RECIPE [KEY=VALUE ...]`."""
    from advgen.cli import command_parser
    from advgen.recipe import load_recipe

    p = command_parser("train")
    args = p.parse_intermixed_args(argv)      # flags may come between the overrides
    train_model(load_recipe(args.recipe, TrainRecipe, args.overrides))
    return 0
