"""Random similarity transforms, lighting and noise for 2D expectation over transformation, with Kornia.

Each call samples one transformation per image (rotation, scale, translation, brightness, contrast,
Gaussian noise); the sampled parameters are returned so the same transformation can be applied to a
clean and an adversarial image (needed for EOT's perceptual distance, which compares T(x') with T(x)).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from kornia.geometry.transform import get_rotation_matrix2d, warp_affine

from physadv.core.errors import PhysadvError


@dataclass
class TransformRanges:
    """Athalye et al.'s 2D distribution (their Table 4 for ImageNet: scale 0.9-1.4, rotation +-22.5 deg,
    lighten/darken +-0.05, Gaussian noise std 0-0.1, translation anywhere the image stays in frame)."""

    rotation_deg: tuple[float, float] = (-22.5, 22.5)
    scale: tuple[float, float] = (0.9, 1.4)
    translate: float = 0.1  # fraction of the image size, each way
    brightness: tuple[float, float] = (-0.05, 0.05)
    contrast: tuple[float, float] = (0.9, 1.1)
    noise_std: tuple[float, float] = (0.0, 0.1)
    fill: float = 0.0  # value outside the transformed image

    def validate(self) -> None:
        for name in ("rotation_deg", "scale", "brightness", "contrast", "noise_std"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name}: min {lo} is greater than max {hi}")
        if self.scale[0] <= 0:
            raise ValueError(f"scale must be positive, got {list(self.scale)}")
        if not 0 <= self.translate < 1:
            raise ValueError(f"translate must be in [0, 1), got {self.translate}")


@dataclass
class Params:
    angle: torch.Tensor
    scale: torch.Tensor
    shift: torch.Tensor  # N x 2, pixels
    brightness: torch.Tensor
    contrast: torch.Tensor
    noise: torch.Tensor  # N x C x H x W


def _u(lo_hi: tuple[float, float], n: int, g: torch.Generator) -> torch.Tensor:
    lo, hi = lo_hi
    return lo + (hi - lo) * torch.rand(n, generator=g)


def sample_params(ranges: TransformRanges, shape: tuple[int, ...], g: torch.Generator) -> Params:
    n, c, h, w = shape
    shift = (torch.rand(n, 2, generator=g) * 2 - 1) * ranges.translate * torch.tensor([w, h])
    std = _u(ranges.noise_std, n, g).view(n, 1, 1, 1)
    return Params(_u(ranges.rotation_deg, n, g), _u(ranges.scale, n, g), shift, _u(ranges.brightness, n, g),
                  _u(ranges.contrast, n, g), std * torch.randn(n, c, h, w, generator=g))


def apply(images: torch.Tensor, p: Params, fill: float = 0.0) -> torch.Tensor:
    """Apply sampled ``p`` to ``images`` (differentiable with respect to the images)."""
    n, c, h, w = images.shape
    if len(p.angle) != n:
        raise PhysadvError(f"{len(p.angle)} sampled transformations for {n} images")
    dev = images.device
    centre = torch.tensor([[(w - 1) / 2, (h - 1) / 2]], device=dev).expand(n, 2)
    scale = p.scale.to(dev).view(n, 1).expand(n, 2)
    A = get_rotation_matrix2d(centre, p.angle.to(dev), scale)
    A = A.clone()
    A[:, :, 2] += p.shift.to(dev)
    # warp image and a coverage mask, then fill outside with `fill`
    ones = torch.ones(n, 1, h, w, device=dev)
    warped = warp_affine(torch.cat([images, ones], 1), A, (h, w), align_corners=True)
    img, cover = warped[:, :c], warped[:, c:]
    img = img + (1 - cover) * fill
    img = (img - 0.5) * p.contrast.to(dev).view(n, 1, 1, 1) + 0.5 + p.brightness.to(dev).view(n, 1, 1, 1)
    return (img + p.noise.to(dev)).clamp(0, 1)
