"""Generator / discriminator pairs: DCGAN (Radford et al. 2016) sized by resolution, and a small MLP pair.

Generators map ``z`` (and optionally labels ``y``) to images in [-1, 1] (tanh); discriminators map
images in [-1, 1] (and ``y``) to one unnormalised score per sample. Class-conditional variants
concatenate a label embedding to ``z`` (G) and a label-embedding image plane to ``x`` (D).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from physadv.core.errors import PhysadvError


def dcgan_base(resolution: int) -> tuple[int, int]:
    """(start size, number of 2x upsamplings) for a DCGAN at ``resolution``: 28 = 7*2^2, 32 = 4*2^3, 64 = 4*2^4."""
    for base in (4, 7):
        n = math.log2(resolution / base) if resolution >= base else -1
        if n >= 1 and n == int(n):
            return base, int(n)
    raise PhysadvError(f"model.resolution {resolution}: a DCGAN makes 4 or 7 times a power of two (e.g. 28, 32, 64)")


class _Labels(nn.Module):
    """Optional label embedding (None when unconditional)."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.embed = nn.Embedding(num_classes, dim) if num_classes > 0 else None

    def check(self, y: torch.Tensor | None) -> torch.Tensor | None:
        if self.embed is None:
            return None
        if y is None:
            raise PhysadvError("this GAN is class-conditional: pass labels y")
        return self.embed(y)


class DCGANGenerator(nn.Module):
    """z -> linear projection to a base x base map of many feature maps -> fractionally-strided convs (BN, ReLU) -> tanh."""

    def __init__(self, z_dim: int = 100, resolution: int = 28, channels: int = 1, width: int = 64, num_classes: int = 0):
        super().__init__()
        self.z_dim, self.resolution, self.channels = z_dim, resolution, channels
        base, n = dcgan_base(resolution)
        self.base = base
        c0 = width * 2 ** (n - 1)
        self.labels = _Labels(num_classes, z_dim)
        zin = z_dim * (2 if num_classes else 1)
        self.project = nn.Sequential(nn.Linear(zin, c0 * base * base, bias=False), nn.BatchNorm1d(c0 * base * base), nn.ReLU(True))
        layers: list[nn.Module] = []
        c = c0
        for i in range(n):
            last = i == n - 1
            cout = channels if last else c // 2
            layers.append(nn.ConvTranspose2d(c, cout, 4, 2, 1, bias=last))
            layers += [nn.Tanh()] if last else [nn.BatchNorm2d(cout), nn.ReLU(True)]
            c = cout
        self.convs = nn.Sequential(*layers)
        self.c0 = c0

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        e = self.labels.check(y)
        if e is not None:
            z = torch.cat([z, e], 1)
        h = self.project(z).view(len(z), self.c0, self.base, self.base)
        return self.convs(h)


def _norm(kind: str, c: int, size: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(c)
    if kind == "layer":  # per-sample normalisation: safe with the gradient penalty (WGAN-GP section 4)
        return nn.GroupNorm(1, c)
    return nn.Identity()


class DCGANDiscriminator(nn.Module):
    """Strided convolutions with LeakyReLU(0.2) (no norm on the first layer), then a linear score."""

    def __init__(self, resolution: int = 28, channels: int = 1, width: int = 64, norm: str = "batch", num_classes: int = 0):
        super().__init__()
        base, n = dcgan_base(resolution)
        self.resolution, self.channels = resolution, channels
        self.labels = _Labels(num_classes, resolution * resolution)
        cin = channels + (1 if num_classes else 0)
        layers: list[nn.Module] = []
        c, size = width, resolution
        for i in range(n):
            size //= 2
            layers.append(nn.Conv2d(cin, c, 4, 2, 1, bias=i == 0 or norm != "batch"))
            if i > 0:
                layers.append(_norm(norm, c, size))
            layers.append(nn.LeakyReLU(0.2, True))
            cin, c = c, c * 2
        self.convs = nn.Sequential(*layers)
        self.score = nn.Linear(cin * base * base, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        e = self.labels.check(y)
        if e is not None:
            x = torch.cat([x, e.view(len(x), 1, self.resolution, self.resolution)], 1)
        return self.score(self.convs(x).flatten(1)).squeeze(1)


class MLPGenerator(nn.Module):
    def __init__(self, z_dim: int = 100, resolution: int = 28, channels: int = 1, width: int = 256, num_classes: int = 0):
        super().__init__()
        self.z_dim, self.resolution, self.channels = z_dim, resolution, channels
        self.labels = _Labels(num_classes, z_dim)
        zin = z_dim * (2 if num_classes else 1)
        self.net = nn.Sequential(nn.Linear(zin, width), nn.ReLU(True), nn.Linear(width, width), nn.ReLU(True),
                                 nn.Linear(width, channels * resolution * resolution), nn.Tanh())

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        e = self.labels.check(y)
        if e is not None:
            z = torch.cat([z, e], 1)
        return self.net(z).view(len(z), self.channels, self.resolution, self.resolution)


class MLPDiscriminator(nn.Module):
    def __init__(self, resolution: int = 28, channels: int = 1, width: int = 256, num_classes: int = 0):
        super().__init__()
        self.resolution, self.channels = resolution, channels
        d = channels * resolution * resolution
        self.labels = _Labels(num_classes, d)
        self.net = nn.Sequential(nn.Linear(d * (2 if num_classes else 1), width), nn.LeakyReLU(0.2, True),
                                 nn.Linear(width, width), nn.LeakyReLU(0.2, True), nn.Linear(width, 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = x.flatten(1)
        e = self.labels.check(y)
        if e is not None:
            h = torch.cat([h, e], 1)
        return self.net(h).squeeze(1)


class Maxout(nn.Module):
    """Goodfellow et al. 2013: the max over ``pieces`` affine maps per unit."""

    def __init__(self, cin: int, units: int, pieces: int):
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = nn.Linear(cin, units * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(len(x), self.units, self.pieces).max(2).values


class MaxoutDiscriminator(nn.Module):
    """The MNIST discriminator of Goodfellow et al. 2014 (their code's mnist.yaml): two maxout layers of ``width``
    units with 5 pieces and a sigmoid score (here its logit), dropout keeping 80% of the inputs and 50% of the
    hidden units (``AdversaryCost2``'s include probabilities, inverted scaling). mnist.yaml sets no max-norm; with
    ``max_norm`` (the maxout paper's MNIST value is 1.9365, Goodfellow et al. 2013, mnist_pi.yaml) every unit's
    incoming weight vector is kept within that norm, applied by the trainer after each step through ``constrain()``."""

    def __init__(self, resolution: int = 28, channels: int = 1, width: int = 240, num_classes: int = 0, pieces: int = 5,
                 max_norm: float | None = None):
        super().__init__()
        self.resolution, self.channels, self.max_norm = resolution, channels, max_norm
        d = channels * resolution * resolution
        self.labels = _Labels(num_classes, d)
        self.net = nn.Sequential(nn.Dropout(0.2), Maxout(d * (2 if num_classes else 1), width, pieces), nn.Dropout(0.5),
                                 Maxout(width, width, pieces), nn.Dropout(0.5), nn.Linear(width, 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        # their pixels are in [0, 1]: a black background is 0, not -1, which keeps activations at the scale their
        # learning rate of 0.1 was chosen for
        h = (x.flatten(1) + 1) / 2
        e = self.labels.check(y)
        if e is not None:
            h = torch.cat([h, e], 1)
        return self.net(h).squeeze(1)

    @torch.no_grad()
    def constrain(self) -> None:
        if self.max_norm is None:
            return
        for m in self.modules():
            if isinstance(m, nn.Linear):
                m.weight.copy_(torch.renorm(m.weight, 2, 0, self.max_norm))


def uniform_init(module: nn.Module, bound: float) -> None:
    """Weights ~ U[-bound, bound], biases 0 (the ``irange`` of Goodfellow et al.'s code: 0.05 for G, 0.005 for D)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.uniform_(m.weight, -bound, bound)
            nn.init.zeros_(m.bias)


def dcgan_init(module: nn.Module) -> None:
    """DCGAN initialisation: conv/linear weights N(0, 0.02), batch-norm scale N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
