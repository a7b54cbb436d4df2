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


class FeatureNet(nn.Module):
    """A net as advgen uses it: `features(x)` = g, the penultimate layer (what inversion matches); `head(g)` = the
    logits (a final Linear named `linear`, unless a subclass says otherwise); forward = head(features(x))."""

    def head(self, f):
        return self.linear(f)

    def forward(self, x):
        return self.head(self.features(x))


class SmallCNN(FeatureNet):
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


class ResNet(FeatureNet):
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


def build_net(arch: str, num_classes: int, in_channels: int, width: int = 32, feature_dim: int = 64) -> nn.Module:
    if arch == "small_cnn":
        return SmallCNN(in_channels, num_classes, width, feature_dim)
    if arch == "resnet18":
        return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels)
    if arch == "resnet50":
        return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels)
    if arch == "airbench":     # the fast CIFAR verifier (advgen/models/airbench.py)
        from advgen.models.airbench import AirbenchNet

        return AirbenchNet(num_classes=num_classes, in_channels=in_channels, width=width)
    if arch in TRANSFER_SMALL + TRANSFER_GPU:     # Section 3.3's architectures (below)
        return build_transfer_net(arch, num_classes, in_channels, width, feature_dim)
    raise ValueError(f"unknown arch {arch!r}; choose small_cnn, resnet18, resnet50 or airbench")


def build_classifier(arch: str, num_classes: int, in_channels: int, mean, std, width: int = 32,
                     feature_dim: int = 64) -> Classifier:
    net = build_net(arch, num_classes, in_channels, width, feature_dim)
    return Classifier(net, list(mean), list(std))


# ----------------------------------------------------------------------------------------------
# Transferability (Section 3.3, Figure 3): architectures of different kinds.
#
# Small ones, for digits (1x8x8) and the CIFAR CPU subset (3x32x32); each differs from the source
# `small_cnn` in kind, not only in size. Inputs over 16 pixels are reduced after the first layer (as
# SmallCNN does) so that a CPU trains them on CIFAR in seconds per epoch.
#   mlp           no convolutions: the image on an 8x8 grid, flattened -> 8*width -> feature_dim
#   gap_cnn       all-convolutional (BatchNorm, a strided conv, a 1x1 conv), global average pool, no FC
#   wide_cnn      wide and shallow: one 5x5 conv of 4*width channels, max pool to 4x4, one FC
#   tiny_vgg      VGG-style stacks of two 3x3 conv-BN-ReLU per stage, max pools, global pool, FC
#   tiny_densenet DenseNet-style: two pre-activation dense blocks of three layers (growth = width)
#                 joined by a transition
# GPU-scale ones, the CIFAR variants of the paper's Figure 3 (as in MadryLab robustness' cifar_models,
# written here: the weight names differ from that library's):
#   vgg16         13 conv-BN-ReLU in five max-pooled stages (64..512), linear head; 14.7M parameters
#   densenet121   bottleneck dense blocks [6, 12, 24, 16], growth = width (32: DenseNet-121, 7.0M
#                 parameters; 12: the library's densenet_cifar, 1.0M)
#   inception_v3  Inception-v3 with a stride-1 stem for 32x32 inputs (modules A x3, B, C x4, D, E x2;
#                 grids 30 -> 14 -> 6), global pool, dropout, linear head; 22M parameters
# ----------------------------------------------------------------------------------------------

def _pool_to(x, size: int, kind: str = "max"):
    """Adaptive pool down to at most `size` pixels per side (identity on smaller inputs)."""
    if x.shape[-1] <= size and x.shape[-2] <= size:
        return x
    pool = F.adaptive_max_pool2d if kind == "max" else F.adaptive_avg_pool2d
    return pool(x, (min(x.shape[-2], size), min(x.shape[-1], size)))


def _halve(x, kind: str = "max"):
    """2x2 pooling that leaves a 1-pixel map alone (8x8 digits run out of pixels before the pools do)."""
    if min(x.shape[-2:]) < 2:
        return x
    return F.max_pool2d(x, 2) if kind == "max" else F.avg_pool2d(x, 2)


class MLP(FeatureNet):
    """Two hidden layers on the flattened image, no convolution. It sees the image on an 8x8 grid (the
    digits' own; 32x32 inputs are averaged in 4x4 blocks), so one net fits both sizes."""

    GRID = 8

    def __init__(self, in_channels=1, num_classes=10, width=32, feature_dim=64):
        super().__init__()
        self.fc1 = nn.Linear(in_channels * self.GRID * self.GRID, 8 * width)
        self.fc2 = nn.Linear(8 * width, feature_dim)
        self.linear = nn.Linear(feature_dim, num_classes)

    def features(self, x):
        x = F.adaptive_avg_pool2d(x, self.GRID) if x.shape[-2:] != (self.GRID, self.GRID) else x
        return F.relu(self.fc2(F.relu(self.fc1(x.flatten(1)))))


class GapCNN(FeatureNet):
    """All-convolutional with BatchNorm: 3x3, 3x3, strided 3x3, 1x1 to feature_dim, global average pool."""

    def __init__(self, in_channels=1, num_classes=10, width=32, feature_dim=64):
        super().__init__()
        w = width
        self.conv1 = nn.Conv2d(in_channels, w, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.conv2 = nn.Conv2d(w, 2 * w, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * w)
        self.conv3 = nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(2 * w)
        self.conv4 = nn.Conv2d(2 * w, feature_dim, 1)
        self.linear = nn.Linear(feature_dim, num_classes)

    def features(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = _pool_to(x, 8, "avg")          # identity on 8x8 digits; 32x32 -> 8x8
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.bn3(self.conv3(x)))
        return F.relu(self.conv4(x)).mean(dim=(2, 3))


class WideCNN(FeatureNet):
    """Wide and shallow: one 5x5 conv with 4*width channels (stride 2 on inputs over 16 pixels), max pool
    to 4x4, one fully connected layer to feature_dim."""

    def __init__(self, in_channels=1, num_classes=10, width=32, feature_dim=64):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 4 * width, 5, padding=2)
        self.fc = nn.Linear(4 * width * 16, feature_dim)
        self.linear = nn.Linear(feature_dim, num_classes)

    def features(self, x):
        stride = 2 if x.shape[-1] > 16 else 1     # 32x32 -> 16x16: a quarter of the cost, the same receptive field
        x = F.relu(F.conv2d(x, self.conv.weight, self.conv.bias, stride=stride, padding=2))
        x = F.adaptive_max_pool2d(x, 4)
        return F.relu(self.fc(x.flatten(1)))


def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TinyVGG(FeatureNet):
    """VGG-style: stages of two 3x3 conv-BN-ReLU (width, 2*width, 4*width) each followed by a 2x2 max pool,
    global average pool, FC to feature_dim. The first stage's output is pooled to at most 16x16."""

    def __init__(self, in_channels=1, num_classes=10, width=32, feature_dim=64):
        super().__init__()
        w = width
        self.stage1 = nn.Sequential(_conv_bn(in_channels, w), _conv_bn(w, w))
        self.stage2 = nn.Sequential(_conv_bn(w, 2 * w), _conv_bn(2 * w, 2 * w))
        self.stage3 = nn.Sequential(_conv_bn(2 * w, 4 * w), _conv_bn(4 * w, 4 * w))
        self.fc = nn.Linear(4 * w, feature_dim)
        self.linear = nn.Linear(feature_dim, num_classes)

    def features(self, x):
        x = _pool_to(_halve(self.stage1(x)), 8)      # 8x8 -> 4x4; 32x32 -> 16x16 -> 8x8
        x = _halve(self.stage2(x))
        x = _halve(self.stage3(x))
        return F.relu(self.fc(x.mean(dim=(2, 3))))


class DenseLayer(nn.Module):
    """Pre-activation dense layer: BN-ReLU-conv1x1 (4*growth) - BN-ReLU-conv3x3 (growth), concatenated to x."""

    def __init__(self, in_planes: int, growth: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, 4 * growth, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x):
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([out, x], 1)


class Transition(nn.Module):
    """BN-ReLU-conv1x1 to `out_planes`, 2x2 average pool (skipped on a 1-pixel map)."""

    def __init__(self, in_planes: int, out_planes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(in_planes)
        self.conv = nn.Conv2d(in_planes, out_planes, 1, bias=False)

    def forward(self, x):
        return _halve(self.conv(F.relu(self.bn(x))), "avg")


class DenseNet(FeatureNet):
    """CIFAR DenseNet-BC: 3x3 stem of 2*growth channels, dense blocks joined by transitions that halve the
    channels and the grid, BN-ReLU, global average pool (the representation), linear head."""

    def __init__(self, blocks, growth: int, num_classes=10, in_channels=3, reduction=0.5, stem_pool=None):
        super().__init__()
        planes = 2 * growth
        self.stem_pool = stem_pool          # small variant: pool the stem's output to at most this many pixels
        self.conv1 = nn.Conv2d(in_channels, planes, 3, padding=1, bias=False)
        stages = []
        for i, n in enumerate(blocks):
            layers = []
            for _ in range(n):
                layers.append(DenseLayer(planes, growth))
                planes += growth
            stages.append(nn.Sequential(*layers))
            if i < len(blocks) - 1:
                out = int(planes * reduction)
                stages.append(Transition(planes, out))
                planes = out
        self.blocks = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(planes)
        self.linear = nn.Linear(planes, num_classes)
        self.feature_dim = planes

    def features(self, x):
        x = self.conv1(x)
        if self.stem_pool:
            x = _pool_to(x, self.stem_pool)
        x = self.blocks(x)
        return F.relu(self.bn(x)).mean(dim=(2, 3))


class Halve(nn.Module):
    """`_halve` as a module: a 2x2 max pool that leaves a 1-pixel map alone."""

    def forward(self, x):
        return _halve(x)


class VGG16(FeatureNet):
    """CIFAR VGG-16 (with BatchNorm): 13 3x3 conv-BN-ReLU, max pool after each of the five stages, 512-d
    representation, linear head."""

    CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")

    def __init__(self, num_classes=10, in_channels=3):
        super().__init__()
        layers, c = [], in_channels
        for v in self.CFG:
            if v == "M":
                layers.append(Halve())
            else:
                layers.append(_conv_bn(c, v))
                c = v
        self.body = nn.Sequential(*layers)
        self.linear = nn.Linear(512, num_classes)

    def features(self, x):
        x = self.body(x)                              # 32x32 -> 1x1
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


class BasicConv(nn.Module):
    """conv (no bias) - BN - ReLU, the unit of every Inception branch."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class InceptionA(nn.Module):
    """Same grid: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-conv; 224 + pool_features channels out."""

    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.b1 = BasicConv(cin, 64, 1)
        self.b5 = nn.Sequential(BasicConv(cin, 48, 1), BasicConv(48, 64, 5, padding=2))
        self.b3 = nn.Sequential(BasicConv(cin, 64, 1), BasicConv(64, 96, 3, padding=1), BasicConv(96, 96, 3, padding=1))
        self.bp = BasicConv(cin, pool_features, 1)

    def forward(self, x):
        pooled = F.avg_pool2d(x, 3, stride=1, padding=1)
        return torch.cat([self.b1(x), self.b5(x), self.b3(x), self.bp(pooled)], 1)


class InceptionB(nn.Module):
    """Grid reduction (stride 2): 3x3 | 1x1-3x3-3x3 | max pool; 480 + cin channels out."""

    def __init__(self, cin: int):
        super().__init__()
        self.b3 = BasicConv(cin, 384, 3, stride=2)
        self.b3s = nn.Sequential(BasicConv(cin, 64, 1), BasicConv(64, 96, 3, padding=1), BasicConv(96, 96, 3, stride=2))

    def forward(self, x):
        return torch.cat([self.b3(x), self.b3s(x), F.max_pool2d(x, 3, stride=2)], 1)


class InceptionC(nn.Module):
    """Same grid, factorised 7x7 (1x7 and 7x1) branches; 768 channels out."""

    def __init__(self, cin: int, c7: int):
        super().__init__()
        self.b1 = BasicConv(cin, 192, 1)
        self.b7 = nn.Sequential(BasicConv(cin, c7, 1), BasicConv(c7, c7, (1, 7), padding=(0, 3)),
                                BasicConv(c7, 192, (7, 1), padding=(3, 0)))
        self.b7s = nn.Sequential(BasicConv(cin, c7, 1), BasicConv(c7, c7, (7, 1), padding=(3, 0)),
                                 BasicConv(c7, c7, (1, 7), padding=(0, 3)), BasicConv(c7, c7, (7, 1), padding=(3, 0)),
                                 BasicConv(c7, 192, (1, 7), padding=(0, 3)))
        self.bp = BasicConv(cin, 192, 1)

    def forward(self, x):
        pooled = F.avg_pool2d(x, 3, stride=1, padding=1)
        return torch.cat([self.b1(x), self.b7(x), self.b7s(x), self.bp(pooled)], 1)


class InceptionD(nn.Module):
    """Grid reduction (stride 2): 1x1-3x3 | 1x1-1x7-7x1-3x3 | max pool; 512 + cin channels out."""

    def __init__(self, cin: int):
        super().__init__()
        self.b3 = nn.Sequential(BasicConv(cin, 192, 1), BasicConv(192, 320, 3, stride=2))
        self.b7 = nn.Sequential(BasicConv(cin, 192, 1), BasicConv(192, 192, (1, 7), padding=(0, 3)),
                                BasicConv(192, 192, (7, 1), padding=(3, 0)), BasicConv(192, 192, 3, stride=2))

    def forward(self, x):
        return torch.cat([self.b3(x), self.b7(x), F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    """Coarsest grid, expanded filter banks (1x3 and 3x1 side by side); 2048 channels out."""

    def __init__(self, cin: int):
        super().__init__()
        self.b1 = BasicConv(cin, 320, 1)
        self.b3 = BasicConv(cin, 384, 1)
        self.b3a = BasicConv(384, 384, (1, 3), padding=(0, 1))
        self.b3b = BasicConv(384, 384, (3, 1), padding=(1, 0))
        self.b3s = nn.Sequential(BasicConv(cin, 448, 1), BasicConv(448, 384, 3, padding=1))
        self.b3sa = BasicConv(384, 384, (1, 3), padding=(0, 1))
        self.b3sb = BasicConv(384, 384, (3, 1), padding=(1, 0))
        self.bp = BasicConv(cin, 192, 1)

    def forward(self, x):
        b3 = self.b3(x)
        b3s = self.b3s(x)
        pooled = F.avg_pool2d(x, 3, stride=1, padding=1)
        return torch.cat([self.b1(x), self.b3a(b3), self.b3b(b3), self.b3sa(b3s), self.b3sb(b3s), self.bp(pooled)], 1)


class InceptionV3(FeatureNet):
    """Inception-v3 for 32x32 inputs: stride-1 stem (no max pools), A x3 at 30x30, B -> 14x14, C x4, D -> 6x6,
    E x2, global average pool (2048-d representation), dropout 0.5 and a linear head."""

    def __init__(self, num_classes=10, in_channels=3):
        super().__init__()
        self.stem = nn.Sequential(BasicConv(in_channels, 32, 3, padding=1), BasicConv(32, 32, 3, padding=1),
                                  BasicConv(32, 64, 3, padding=1), BasicConv(64, 80, 1),
                                  BasicConv(80, 192, 3))     # 32 -> 30
        self.mixed = nn.Sequential(InceptionA(192, 32), InceptionA(256, 64), InceptionA(288, 64), InceptionB(288),
                                   InceptionC(768, 128), InceptionC(768, 160), InceptionC(768, 160),
                                   InceptionC(768, 192), InceptionD(768), InceptionE(1280), InceptionE(2048))
        self.dropout = nn.Dropout(0.5)
        self.linear = nn.Linear(2048, num_classes)

    def features(self, x):
        return F.adaptive_avg_pool2d(self.mixed(self.stem(x)), 1).flatten(1)

    def head(self, f):
        return self.linear(self.dropout(f))


TRANSFER_SMALL = ("mlp", "gap_cnn", "wide_cnn", "tiny_vgg", "tiny_densenet")
TRANSFER_GPU = ("vgg16", "densenet121", "inception_v3")


def build_transfer_net(arch: str, num_classes: int, in_channels: int, width: int, feature_dim: int) -> nn.Module:
    """The architectures above (build_net's branch for them)."""
    if arch == "mlp":
        return MLP(in_channels, num_classes, width, feature_dim)
    if arch == "gap_cnn":
        return GapCNN(in_channels, num_classes, width, feature_dim)
    if arch == "wide_cnn":
        return WideCNN(in_channels, num_classes, width, feature_dim)
    if arch == "tiny_vgg":
        return TinyVGG(in_channels, num_classes, width, feature_dim)
    if arch == "tiny_densenet":      # two dense blocks of three layers, growth = width
        return DenseNet([3, 3], width, num_classes, in_channels, stem_pool=8)
    if arch == "vgg16":
        return VGG16(num_classes, in_channels)
    if arch == "densenet121":        # growth = width: 32 is DenseNet-121, 12 the robustness library's densenet_cifar
        return DenseNet([6, 12, 24, 16], width, num_classes, in_channels)
    if arch == "inception_v3":
        return InceptionV3(num_classes, in_channels)
    raise ValueError(f"unknown arch {arch!r}")
