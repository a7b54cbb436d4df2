"""Architectures. Every model maps [0,1] images to logits, normalising inside, and exposes `features`.

- `SmallCNN`: three 3x3 convs + a `feature_dim`-wide penultimate layer, for 8x8 digits (and CPU
  tests on CIFAR subsets: larger inputs are max-pooled to 8x8 after the first conv).
- `resnet18` / `resnet50`: the CIFAR ResNets of MadryLab's `robustness` library (cifar_models/resnet.py):
  3x3 stride-1 stem, no max-pool, BasicBlock [2,2,2,2] or Bottleneck [3,4,6,3], global average pool,
  `linear` head. Parameter names match that file (conv1, bn1, layer1..4, shortcut, linear), so its
  checkpoints drop in after stripping the `module.model.` prefix (advgen.models.checkpoint).

`Classifier` wraps a net with `Normalize` (like the library's InputNormalize), so attacks work in
[0,1] pixel space and eps means the same thing for every model.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)


class Normalize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """[0,1] images -> logits; `features(x)` is the penultimate representation g(x)."""

    def __init__(self, net: nn.Module, mean, std):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.model = net

    def features(self, x):
        return self.model.features(self.normalize(x))

    def forward(self, x):
        return self.model.head(self.features(x))

    def features_and_logits(self, x):
        f = self.features(x)
        return f, self.model.head(f)


class SmallCNN(nn.Module):
    def __init__(self, in_channels=1, num_classes=10, width=32, feature_dim=64):
        super().__init__()
        w = width
        self.conv1 = nn.Conv2d(in_channels, w, 3, padding=1)
        self.conv2 = nn.Conv2d(w, 2 * w, 3, padding=1)
        self.conv3 = nn.Conv2d(2 * w, 2 * w, 3, padding=1)
        self.fc = nn.Linear(2 * w * 4 * 4, feature_dim)
        self.linear = nn.Linear(feature_dim, num_classes)

    def features(self, x):
        x = F.relu(self.conv1(x))
        x = F.adaptive_max_pool2d(x, 8)     # identity on 8x8 digits; keeps 32x32 inputs cheap
        x = F.relu(self.conv2(x))
        x = F.adaptive_max_pool2d(x, 4)     # 8x8 digits -> 4x4; larger inputs are pooled down
        x = F.relu(self.conv3(x))
        return F.relu(self.fc(x.flatten(1)))

    def head(self, f):
        return self.linear(f)

    def forward(self, x):
        return self.head(self.features(x))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                                          nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, 4 * planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != 4 * planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, 4 * planes, 1, stride, bias=False),
                                          nn.BatchNorm2d(4 * planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, block, num_blocks, num_classes=10, in_channels=3):
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._make_layer(block, 64, num_blocks[0], 1)
        self.layer2 = self._make_layer(block, 128, num_blocks[1], 2)
        self.layer3 = self._make_layer(block, 256, num_blocks[2], 2)
        self.layer4 = self._make_layer(block, 512, num_blocks[3], 2)
        self.linear = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block, planes, n, stride):
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(block(self.in_planes, planes, s))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def features(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        # the library uses avg_pool2d(out, 4): the same global pool on 32x32 inputs
        return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def head(self, f):
        return self.linear(f)

    def forward(self, x):
        return self.head(self.features(x))


def build_net(arch: str, num_classes: int, in_channels: int, width: int = 32, feature_dim: int = 64) -> nn.Module:
    if arch == "small_cnn":
        return SmallCNN(in_channels, num_classes, width, feature_dim)
    if arch == "resnet18":
        return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels)
    if arch == "resnet50":
        return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels)
    if arch == "airbench":     # the fast CIFAR verifier (advgen/models/airbench.py)
        from advgen.models.airbench import AirbenchNet

        return AirbenchNet(num_classes=num_classes, in_channels=in_channels)
    raise ValueError(f"unknown arch {arch!r}; choose small_cnn, resnet18, resnet50 or airbench")


def build_classifier(arch: str, num_classes: int, in_channels: int, mean, std, width: int = 32,
                     feature_dim: int = 64) -> Classifier:
    net = build_net(arch, num_classes, in_channels, width, feature_dim)
    return Classifier(net, list(mean), list(std))
