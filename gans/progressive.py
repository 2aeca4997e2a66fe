"""Progressive growing of GANs (Karras et al. 2018).

Both networks are built for the final resolution at once; ``set_stage(level, alpha)`` selects how
many 2x stages are in use (level 0 = 4x4) and the fade-in weight ``alpha`` of the newest stage. All
layers stay trainable. Pixelwise feature normalisation in G, minibatch standard deviation in D and the
equalised learning rate (weights ~ N(0, 1) scaled at run time by He's constant) as in the paper.
The generator's output is linear, as in the paper; callers clamp to [-1, 1] at the image boundary.

As in the authors' implementation, both networks speak the final resolution at every stage: G's
output is nearest-upsampled to it and D average-pools its input down to the current stage. So a
stage change leaves both networks the same functions of the same pixels, and the gradient penalty
is measured in one pixel space throughout (measured at the stage's own size, the same critic's
gradient norm would halve at every change and the penalty would jump).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from physadv.core.errors import PhysadvError


class EqualizedConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, padding: int = 0, gain: float = math.sqrt(2.0)):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale = gain / math.sqrt(cin * k * k)
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class EqualizedLinear(nn.Module):
    def __init__(self, cin: int, cout: int, gain: float = math.sqrt(2.0)):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale = gain / math.sqrt(cin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """b = a / sqrt(mean_j a_j^2 + eps) over the feature maps at each pixel (section 4.2)."""
    return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + eps)


def minibatch_stddev(x: torch.Tensor, group: int = 4) -> torch.Tensor:
    """Append one feature map: the std over a group of samples, averaged over features and pixels (section 3)."""
    n, c, h, w = x.shape
    g = min(group, n)
    if n % g:
        g = 1 if n == 1 else math.gcd(n, g)
    y = x.view(g, -1, c, h, w)
    y = (y - y.mean(0)).pow(2).mean(0).add(1e-8).sqrt().mean(dim=(1, 2, 3))  # (n/g,)
    y = y.repeat(g).view(n, 1, 1, 1).expand(n, 1, h, w)
    return torch.cat([x, y], 1)


def progressive_levels(resolution: int) -> int:
    n = math.log2(resolution / 4) if resolution >= 4 else -1
    if n < 0 or n != int(n):
        raise PhysadvError(f"model.resolution {resolution}: progressive growing makes 4 * 2^k (4, 8, 16, 32, 64...)")
    return int(n)


class _Staged(nn.Module):
    level: int
    alpha: float

    def set_stage(self, level: int, alpha: float) -> None:
        self.level, self.alpha = int(level), float(alpha)

    @property
    def current_resolution(self) -> int:
        return 4 * 2 ** self.level


class ProgressiveGenerator(_Staged):
    def __init__(self, z_dim: int = 128, resolution: int = 32, channels: int = 1, width: int = 64, num_classes: int = 0):
        super().__init__()
        if num_classes:
            raise PhysadvError("model.conditional: the progressive GAN here is unconditional")
        self.z_dim, self.resolution, self.channels = z_dim, resolution, channels
        self.levels = progressive_levels(resolution)
        self.width = width
        self.dense = EqualizedLinear(z_dim, width * 16, gain=math.sqrt(2.0) / 4)  # 4x4 map, as the paper's 4x4 conv
        self.conv0 = EqualizedConv2d(width, width, 3, 1)
        self.blocks = nn.ModuleList(
            nn.ModuleList([EqualizedConv2d(width, width, 3, 1), EqualizedConv2d(width, width, 3, 1)]) for _ in range(self.levels))
        self.to_rgb = nn.ModuleList(EqualizedConv2d(width, channels, 1, gain=1.0) for _ in range(self.levels + 1))  # linear
        self.set_stage(self.levels, 1.0)

    @staticmethod
    def _act(x: torch.Tensor) -> torch.Tensor:
        return pixel_norm(F.leaky_relu(x, 0.2))

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self._act(self.dense(pixel_norm(z)).view(len(z), self.width, 4, 4))
        h = self._act(self.conv0(h))
        prev = h
        for i in range(self.level):
            prev = h
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            for conv in self.blocks[i]:
                h = self._act(conv(h))
        out = self.to_rgb[self.level](h)
        if self.level > 0 and self.alpha < 1:
            skip = F.interpolate(self.to_rgb[self.level - 1](prev), scale_factor=2, mode="nearest")
            out = self.alpha * out + (1 - self.alpha) * skip
        return upsample_to(out, self.resolution)


class ProgressiveDiscriminator(_Staged):
    def __init__(self, resolution: int = 32, channels: int = 1, width: int = 64, norm: str = "none", num_classes: int = 0):
        super().__init__()
        if num_classes:
            raise PhysadvError("model.conditional: the progressive GAN here is unconditional")
        self.resolution, self.channels = resolution, channels
        self.levels = progressive_levels(resolution)
        self.from_rgb = nn.ModuleList(EqualizedConv2d(channels, width, 1) for _ in range(self.levels + 1))
        # blocks[i] takes the 2^(i+3) map down to 2^(i+2)
        self.blocks = nn.ModuleList(
            nn.ModuleList([EqualizedConv2d(width, width, 3, 1), EqualizedConv2d(width, width, 3, 1)]) for _ in range(self.levels))
        self.conv_last = EqualizedConv2d(width + 1, width, 3, 1)
        self.dense1 = EqualizedLinear(width * 16, width)
        self.dense2 = EqualizedLinear(width, 1, gain=1.0)
        self.set_stage(self.levels, 1.0)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of images at the stage's resolution or any integer multiple of it (average-pooled down)."""
        act = lambda t: F.leaky_relu(t, 0.2)  # noqa: E731
        x = downsample_to(x, self.current_resolution)
        h = act(self.from_rgb[self.level](x))
        for i in reversed(range(self.level)):
            for conv in self.blocks[i]:
                h = act(conv(h))
            h = F.avg_pool2d(h, 2)
            if i == self.level - 1 and self.alpha < 1:
                skip = act(self.from_rgb[self.level - 1](F.avg_pool2d(x, 2)))
                h = self.alpha * h + (1 - self.alpha) * skip
        h = act(self.conv_last(minibatch_stddev(h)))
        return self.dense2(act(self.dense1(h.flatten(1)))).squeeze(1)


def stage_at(step: int, levels: int, stable_steps: int, fade_steps: int) -> tuple[int, float]:
    """(level, alpha) at generator step ``step``: level 0 stable, then per level a fade-in and a stable phase."""
    if step < stable_steps:
        return 0, 1.0
    s = step - stable_steps
    per = fade_steps + stable_steps
    level = min(1 + s // per, levels)
    if level == levels and s >= levels * per:
        return levels, 1.0
    within = s - (level - 1) * per
    return level, min(1.0, within / max(1, fade_steps))


def upsample_to(x: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(x, scale_factor=size // x.shape[-1], mode="nearest") if x.shape[-1] < size else x


def downsample_to(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] % size or x.shape[-2] % size:
        raise PhysadvError(f"progressive discriminator: input of {x.shape[-2]}x{x.shape[-1]} pixels is not a multiple of the stage's {size}")
    return F.avg_pool2d(x, x.shape[-1] // size) if x.shape[-1] > size else x


def fade_reals(x: torch.Tensor, level: int, alpha: float) -> torch.Tensor:
    """Real images as the discriminator must see them at a stage (Karras et al. 2018, section 2 / figure 2):
    at the stage's size, faded during a fade-in as lerp(upsample(downsample(x)), x, alpha) like the
    generator's output, then nearest-upsampled back to ``x``'s size (the size both networks speak)."""
    cur = downsample_to(x, 4 * 2 ** level)
    if level > 0 and alpha < 1:
        low = F.interpolate(F.avg_pool2d(cur, 2), scale_factor=2, mode="nearest")
        cur = alpha * cur + (1 - alpha) * low
    return upsample_to(cur, x.shape[-1])


def phase(step: int, levels: int, stable_steps: int, fade_steps: int) -> tuple[int, bool]:
    """(level, fading) at ``step``; the authors reset both optimisers' state whenever this changes
    (``reset_opt_for_new_lod``: when new layers come in and when their fade-in ends)."""
    level, alpha = stage_at(step, levels, stable_steps, fade_steps)
    return level, alpha < 1
