"""Small image classifiers of several families, sized for 32 x 32 (or 64 x 64) colour inputs on a CPU.

They make the sign-world model zoo (``core.zoo``) diverse: a different inductive bias per family, so an
attack that transfers across them is not exploiting one architecture's quirks.

- ``LISACNN``: the LISA-CNN that RP2 attacked (Eykholt et al. 2018, sec. 5.1; the cleverhans tutorial CNN):
  conv 8x8x64 stride 2 (same), conv 6x6x128 stride 2 (valid), conv 5x5x128 (valid), one FC layer.
- ``ResNetCIFAR``: the CIFAR ResNet of He et al. 2016 (sec. 4.2): a 3x3 stem, three stages of ``n`` basic
  blocks at 16/32/64 channels (times ``width``), depth ``6n + 2``, identity shortcuts with zero-padded
  channels when the shape changes (option A), global average pooling.
- ``MobileNetV2``: inverted residual blocks with linear bottlenecks (Sandler et al. 2018, table 1 and 2),
  with a width multiplier and the first strides removed for small inputs (as for CIFAR).
- ``VGGBN``: VGG-style 3x3 conv stacks (Simonyan & Zisserman 2015) with batch norm after every conv
  (Ioffe & Szegedy 2015), max pooling between stages, a small FC head.
- ``convnext``: timm's ConvNeXt (Liu et al. 2022) with fewer, narrower stages, built with random weights.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from physadv.core.errors import PhysadvError


class LISACNN(nn.Module):
    """RP2's LISA-CNN: three convolutions and one fully connected layer (cleverhans ``make_basic_cnn``)."""

    def __init__(self, num_classes: int = 18, image_size: int = 32, width: float = 1.0):
        super().__init__()
        c1, c2 = max(4, int(64 * width)), max(4, int(128 * width))
        side = (image_size + 6 - 8) // 2 + 1  # 8x8 stride 2, TensorFlow "same" padding (3 on each side)
        side = (side - 6) // 2 + 1  # 6x6 stride 2, valid
        side = side - 4  # 5x5, valid
        if side < 1:
            raise PhysadvError(f"lisa-cnn needs an input of at least 26 pixels, got {image_size}")
        self.features = nn.Sequential(
            nn.Conv2d(3, c1, 8, stride=2, padding=3), nn.ReLU(),
            nn.Conv2d(c1, c2, 6, stride=2), nn.ReLU(),
            nn.Conv2d(c2, c2, 5), nn.ReLU(),
        )
        self.fc = nn.Linear(c2 * side * side, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).flatten(1))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers and a shortcut; option A (He et al. 2016, sec. 4.2): subsample and zero-pad."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride, self.extra = stride, cout - cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        short = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
        if self.extra:
            short = F.pad(short, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
        return F.relu(out + short)


class ResNetCIFAR(nn.Module):
    """He et al. 2016's CIFAR ResNet: depth ``6n + 2`` (20, 32, 44, ... ; 8 and 14 for speed)."""

    def __init__(self, num_classes: int = 10, depth: int = 20, width: int = 16):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise PhysadvError(f"resnet-cifar depth must be 6n + 2 with n >= 1 (8, 14, 20, ...), got {depth}")
        n = (depth - 2) // 6
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        blocks, cin = [], width
        for stage, cout in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                blocks.append(BasicBlock(cin, cout, 2 if stage > 0 and i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(self.stem(x)).mean(dim=(2, 3)))


class InvertedResidual(nn.Module):
    """Sandler et al. 2018, table 1: 1x1 expansion (ReLU6), 3x3 depthwise (ReLU6), linear 1x1 projection."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU6()]
        layers += [nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid), nn.ReLU6(),
                   nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.residual else out


# Sandler et al. 2018, table 2 (t expansion, c channels, n repeats, s stride), the 224 px net's first two
# strides set to 1 for 32 px inputs; ``stages`` keeps a prefix of the rows (fewer, shallower stages: faster).
MOBILENET_V2_TABLE = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class MobileNetV2(nn.Module):
    """MobileNetV2 with a width multiplier ``width``, the first ``stages`` rows of table 2 and a 1x1 head of ``last`` channels."""

    def __init__(self, num_classes: int = 10, width: float = 1.0, stages: int = 7, last: int = 1280, stem_stride: int = 1):
        super().__init__()
        if not 1 <= stages <= len(MOBILENET_V2_TABLE):
            raise PhysadvError(f"mobilenet-v2 stages must be 1 to {len(MOBILENET_V2_TABLE)}, got {stages}")
        ch = lambda c: max(8, int(round(c * width / 8)) * 8)  # noqa: E731  (channels rounded to multiples of 8)
        cin = ch(32)
        layers: list[nn.Module] = [nn.Conv2d(3, cin, 3, stem_stride, 1, bias=False), nn.BatchNorm2d(cin), nn.ReLU6()]
        for t, c, n, s in MOBILENET_V2_TABLE[:stages]:
            for i in range(n):
                layers.append(InvertedResidual(cin, ch(c), s if i == 0 else 1, t))
                cin = ch(c)
        layers += [nn.Conv2d(cin, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


class VGGBN(nn.Module):
    """VGG-style: stages of 3x3 conv-BN-ReLU (``layers`` convs per stage, channels ``width * 2**stage``), 2x2 max pool
    after each; then FC ``hidden``, dropout, FC."""

    def __init__(self, num_classes: int = 10, image_size: int = 32, width: int = 32, stages: int = 3,
                 layers: int = 2, hidden: int = 256):
        super().__init__()
        if image_size % 2**stages:
            raise PhysadvError(f"vgg-bn with {stages} stages needs an input size divisible by {2 ** stages}, got {image_size}")
        convs: list[nn.Module] = []
        cin = 3
        for s in range(stages):
            cout = width * 2**s
            for _ in range(layers):
                convs += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
                cin = cout
            convs.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*convs)
        side = image_size // 2**stages
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(cin * side * side, hidden), nn.ReLU(), nn.Dropout(0.3),
                                        nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def convnext(num_classes: int = 10, depths: Sequence[int] = (2, 2, 2), dims: Sequence[int] = (32, 64, 128),
             patch_size: int = 4, drop_path: float = 0.0) -> nn.Module:
    """timm's ConvNeXt (Liu et al. 2022): a ``patch_size`` patchify stem, stages of 7x7 depthwise conv, LayerNorm,
    inverted MLP and layer scale, downsampling by 2 between stages. Random weights: nothing is downloaded."""
    from timm.models.convnext import ConvNeXt

    if len(depths) != len(dims):
        raise PhysadvError(f"convnext: {len(depths)} depths but {len(dims)} dims")
    return ConvNeXt(in_chans=3, num_classes=num_classes, depths=tuple(depths), dims=tuple(dims), patch_size=patch_size,
                    drop_path_rate=drop_path)
