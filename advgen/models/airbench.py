"""A fast CIFAR-10 verifier: the airbench94 network and training recipe (Keller Jordan, 2024).

    net = AirbenchNet(in_channels=3, num_classes=10, width=64)          # widths 64 / 256 / 256
    model = Classifier(net, CIFAR_MEAN, CIFAR_STD)
    train_airbench(model, images_u8, labels, train_cfg, AirbenchConfig(), seed=0, device=cuda)

Written from the published airbench94 recipe (no code copied): a 2x2 "whitening" conv whose weights
are the eigenvectors of the 2x2-patch covariance of the training images (frozen; its bias trains for
the first 3 epochs), three conv groups (conv - maxpool - BN - GELU - conv - BN - GELU), global max
pool, a bias-free linear head scaled by 1/9; label smoothing 0.2, summed loss, Nesterov SGD with
lr / weight decay given per 1,024 examples, BatchNorm biases at 64x the lr, linear warm-up/warm-down,
and a lookahead-EMA of the weights every 5 steps. airbench94 reaches 94% (with flip+translate
test-time augmentation) in 9.9 epochs, a few seconds on an A100; advgen evaluates without TTA (the
robust-accuracy attack has to see the plain forward), so the verifier recipe trains a little longer.
Not timed here (no GPU): tests/test_airbench.py has the CPU smoke test and the @gpu 93% check.

Cost on 2 CPU cores: ~1 s per 1,000 CIFAR images per epoch with width 64 (CPU is for tests only).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from advgen.recipe import AirbenchConfig, RecipeError     # the schema of the airbench-only recipe keys


class _BatchNorm(nn.BatchNorm2d):
    """airbench's BN: momentum 0.6 in its convention (0.4 in PyTorch's), eps 1e-12, weight fixed at 1."""

    def __init__(self, num_features: int):
        super().__init__(num_features, eps=1e-12, momentum=0.4)
        self.weight.requires_grad_(False)


class _Conv(nn.Conv2d):
    """3x3 'same' conv without bias; the first in_channels filters start as identities (dirac)."""

    def __init__(self, cin: int, cout: int):
        super().__init__(cin, cout, kernel_size=3, padding="same", bias=False)

    def reset_parameters(self):
        super().reset_parameters()
        w = self.weight.data
        nn.init.dirac_(w[:w.size(1)])


class ConvGroup(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = _Conv(cin, cout)
        self.norm1 = _BatchNorm(cout)
        self.conv2 = _Conv(cout, cout)
        self.norm2 = _BatchNorm(cout)

    def forward(self, x):
        x = F.gelu(self.norm1(F.max_pool2d(self.conv1(x), 2)))
        return F.gelu(self.norm2(self.conv2(x)))


class AirbenchNet(nn.Module):
    """airbench94's net on 32x32 inputs; `width` is the first group's channels (the others are 4x).

    features(x): the 4*width-d globally max-pooled representation; head(f): linear / 9 to logits.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 64):
        super().__init__()
        whiten_width = 2 * in_channels * 2 * 2          # +/- each eigenvector of the 2x2 patches
        self.whiten = nn.Conv2d(in_channels, whiten_width, kernel_size=2, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)        # set by init_whitening, never trained
        self.block1 = ConvGroup(whiten_width, width)
        self.block2 = ConvGroup(width, 4 * width)
        self.block3 = ConvGroup(4 * width, 4 * width)
        self.linear = nn.Linear(4 * width, num_classes, bias=False)
        self.scale = 1 / 9                              # airbench's logit scaling

    def features(self, x):
        x = F.gelu(self.whiten(x))
        x = self.block3(self.block2(self.block1(x)))
        return F.adaptive_max_pool2d(x, 1).flatten(1)   # 3x3 -> 1x1 on 32x32 inputs (airbench: MaxPool2d(3))

    def head(self, f):
        return self.linear(f) * self.scale

    def forward(self, x):
        return self.head(self.features(x))


@torch.no_grad()
def init_whitening(net: AirbenchNet, x_norm: torch.Tensor, eps: float = 5e-4, drop: int = 0):
    """Set the 2x2 conv to +/- the patch-covariance eigenvectors scaled by 1/sqrt(eigenvalue + eps).

    x_norm: normalised training images [N, C, H, W] (what the net sees).
    drop: blind the net to the `drop` lowest-variance directions: their filters become copies of the strongest kept
        ones (zero filters would give constant channels, which the BatchNorm's eps 1e-12 turns into exploding
        gradients: the first training step's loss is NaN).
    """
    c, (h, w) = x_norm.shape[1], net.whiten.weight.shape[2:]
    if not 0 <= drop < c * h * w:
        raise RecipeError(f"airbench.whiten_drop: must be in [0, {c * h * w}) for {c}-channel 2x2 patches, got {drop}; "
                          f"drop fewer directions")
    patches = x_norm.float().unfold(2, h, 1).unfold(3, w, 1).transpose(1, 3).reshape(-1, c * h * w)
    cov = patches.T @ patches / len(patches)
    evals, evecs = torch.linalg.eigh(cov)                 # ascending; airbench orders largest first
    evals, evecs = evals.flip(0), evecs.T.flip(0).reshape(c * h * w, c, h, w)
    scaled = evecs / torch.sqrt(evals + eps).view(-1, 1, 1, 1)
    keep = len(scaled) - drop                            # largest-variance first: the last `drop` are the weakest
    scaled[keep:] = scaled[torch.arange(drop) % keep]
    net.whiten.weight.copy_(torch.cat([scaled, -scaled]).to(net.whiten.weight))


def _unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0,255] or float [0,1] -> float [0,1]."""
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


def _translate(x: torch.Tensor, pad: int, g: torch.Generator) -> torch.Tensor:
    """Random crop back to the input size after reflect-padding by `pad` (airbench's translate)."""
    b, _, h, w = x.shape
    xp = F.pad(x, (pad,) * 4, mode="reflect")
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=g, device=x.device)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=g, device=x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, :, None]
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, :]
    return xp[torch.arange(b, device=x.device)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)


def train_airbench(model, images: torch.Tensor, labels: torch.Tensor, cfg, ab: Optional[AirbenchConfig] = None, *,
                   seed: int, device: torch.device, desc: str = "airbench") -> list[float]:
    """Train `model` (a Classifier around an AirbenchNet) in place; returns the mean loss of each epoch.

    images: uint8 [N, C, H, W] or float [0,1]; cfg: a TrainConfig (epochs, batch_size, lr and
    weight_decay per 1,024 examples, momentum, augment.flip, augment.crop_padding = translate pixels,
    adversarial = PGD inside the loop, as in fit()).
    """
    from advgen.attacks.pgd import untargeted_pgd

    ab = ab or AirbenchConfig()
    net: AirbenchNet = model.model
    net.whiten.weight.requires_grad_(not ab.whiten)     # frozen eigenvectors, or an ordinary trained conv
    g = torch.Generator(device=device).manual_seed(seed)
    cpu_g = torch.Generator().manual_seed(seed)
    images, labels = images.to(device), labels.to(device)
    n, bs = len(labels), cfg.batch_size
    steps_per_epoch = math.ceil(n / bs)
    total = cfg.epochs * steps_per_epoch

    # airbench's hyper-parameters are per 1,024 examples of a summed loss with Nesterov momentum.
    kilostep = 1024 * (1 + 1 / (1 - cfg.momentum))
    lr = cfg.lr / kilostep
    wd = cfg.weight_decay * bs / kilostep
    lr_bias = lr * ab.bias_scaler
    norm_biases = [p for name, p in net.named_parameters() if "norm" in name and p.requires_grad]
    others = [p for name, p in net.named_parameters() if "norm" not in name and p.requires_grad]
    opt = torch.optim.SGD([dict(params=norm_biases, lr=lr_bias, weight_decay=wd / lr_bias),
                           dict(params=others, lr=lr, weight_decay=wd / lr)],
                          momentum=cfg.momentum, nesterov=True)
    warm = max(1, int(total * ab.warmup))

    def lr_factor(step):
        if step < warm:
            return 0.2 + 0.8 * step / warm
        return 1.0 + (ab.final_lr - 1.0) * (step - warm) / max(1, total - warm)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=ab.label_smoothing, reduction="sum")

    if ab.whiten:
        init_whitening(net, model.normalize(_unit(images[:ab.whiten_samples])), eps=ab.whiten_eps,
                       drop=ab.whiten_drop)
    bias_epochs = ab.whiten_bias_epochs if ab.whiten else cfg.epochs
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()} if ab.lookahead else None
    use_bf16 = ab.bf16 and device.type == "cuda"
    adv = cfg.adversarial
    flip_mask = torch.rand(n, generator=g, device=device) < 0.5   # alternating flip: complement every other epoch

    step, losses = 0, []
    bar = tqdm(range(cfg.epochs), desc=desc, unit="epoch", leave=False)
    for epoch in bar:
        net.whiten.bias.requires_grad_(epoch < bias_epochs)
        perm = torch.randperm(n, generator=cpu_g).to(device)
        epoch_loss = torch.zeros((), device=device)
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            x, y = _unit(images[idx]), labels[idx]
            if cfg.augment.flip:
                flip = flip_mask[idx] ^ bool(epoch % 2)
                x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
            if cfg.augment.crop_padding:
                x = _translate(x, cfg.augment.crop_padding, g)
            if adv is not None:
                model.eval()
                model.requires_grad_(False)
                x, _ = untargeted_pgd(model, x, y, norm=adv.norm, eps=adv.eps, step_size=adv.step_size,
                                      steps=adv.steps, random_start=adv.random_start, keep_best=False, generator=g)
                for p in norm_biases + others:
                    p.requires_grad_(True)
                net.whiten.bias.requires_grad_(epoch < bias_epochs)
            model.train()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                loss = loss_fn(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            epoch_loss += loss.detach()
            if ema is not None and (step % 5 == 0 or step == total):
                decay = 1.0 if step == total else 0.95 ** 5 * (step / total) ** 3
                with torch.no_grad():
                    for (k, e), v in zip(ema.items(), model.state_dict().values()):
                        if v.is_floating_point():
                            e.lerp_(v, 1 - decay)
                            v.copy_(e)
        losses.append(float(epoch_loss) / n)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    return losses


@torch.no_grad()
def tta_logits(model, x: torch.Tensor) -> torch.Tensor:
    """airbench's test-time augmentation (level 2): mirror, and +/-1 pixel translations, averaged."""

    def mirror(z):
        return 0.5 * model(z) + 0.5 * model(z.flip(-1))

    padded = F.pad(x, (1,) * 4, mode="reflect")
    h, w = x.shape[2:]
    shifted = 0.5 * mirror(padded[:, :, :h, :w]) + 0.5 * mirror(padded[:, :, 2:, 2:])
    return 0.5 * mirror(x) + 0.5 * shifted
