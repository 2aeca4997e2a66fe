"""The sRGB transfer function (IEC 61966-2-1), differentiable: the one place the renderers, capture and printing use.

The project's convention (DESIGN.md section 3): images and textures are sRGB; light, exposure, white balance and
shading multiply *linear* light (convert, multiply, clamp where the sensor saturates, convert back).
"""
from __future__ import annotations

import numpy as np
import torch


def srgb_to_linear(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB values to linear light (the clamp keeps the unused branch's gradient finite)."""
    return torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(lin: torch.Tensor) -> torch.Tensor:
    """Linear light to sRGB values (no clamp: clamp first where light saturates, as a camera does)."""
    return torch.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin.clamp(min=0.0031308) ** (1 / 2.4) - 0.055)


_LUT_SIZE = 65536  # float images through a look-up table: one index per 1/65535 (below a thousandth of a uint8 level)


def _lut(fn) -> np.ndarray:
    grid = torch.linspace(0, 1, _LUT_SIZE, dtype=torch.float64)
    return fn(grid).clamp(0, 1).numpy().astype(np.float32)


def srgb_to_linear_array(a: np.ndarray) -> np.ndarray:
    """``srgb_to_linear`` for large numpy images (uint8, or float in [0, 1], clipped), through a look-up table."""
    if a.dtype == np.uint8:
        return _LUTS["to_linear_u8"][a]
    idx = np.clip(a, 0, 1) * (_LUT_SIZE - 1) + 0.5
    return _LUTS["to_linear"][idx.astype(np.int32)]


def linear_to_srgb_array(a: np.ndarray) -> np.ndarray:
    """``linear_to_srgb`` for large numpy images (float, clipped to [0, 1] first: the sensor saturates)."""
    idx = np.clip(a, 0, 1) * (_LUT_SIZE - 1) + 0.5
    return _LUTS["to_srgb"][idx.astype(np.int32)]


class _Luts(dict):
    """The look-up tables, built on first use."""

    def __missing__(self, key):
        if key == "to_linear_u8":
            value = srgb_to_linear(torch.arange(256, dtype=torch.float64) / 255).numpy().astype(np.float32)
        else:
            value = _lut(srgb_to_linear if key == "to_linear" else linear_to_srgb)
        self[key] = value
        return value


_LUTS = _Luts()
