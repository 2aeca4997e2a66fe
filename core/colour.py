"""The sRGB transfer function (IEC 61966-2-1), differentiable: the one place both renderers and printing use."""
from __future__ import annotations

import torch


def srgb_to_linear(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB values to linear light (the clamp keeps the unused branch's gradient finite)."""
    return torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(lin: torch.Tensor) -> torch.Tensor:
    """Linear light to sRGB values (no clamp: clamp first where light saturates, as a camera does)."""
    return torch.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin.clamp(min=0.0031308) ** (1 / 2.4) - 0.055)
