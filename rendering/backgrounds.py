"""Backgrounds for compositing: natural photos shipped inside scikit-image, solid colours, noise.

Only images that ship with scikit-image are used (never the ones it would fetch with pooch).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from physadv.core.errors import PhysadvError

# colour photos bundled in skimage/data (no download)
PHOTO_NAMES = ("astronaut", "coffee", "chelsea", "rocket", "coins", "brick", "grass", "gravel", "camera", "moon",
               "page", "horse", "text", "clock", "hubble_deep_field", "immunohistochemistry", "logo")


@lru_cache(maxsize=None)
def _photo(name: str) -> torch.Tensor | None:
    import skimage.data as sd

    try:
        img = getattr(sd, name)()
    except Exception:  # not bundled in this scikit-image (it would need a download): skip it
        return None
    img = np.asarray(img)
    if img.dtype == bool:
        img = img.astype(np.float32)
    elif img.dtype != np.float32 and img.dtype != np.float64:
        img = img.astype(np.float32) / np.iinfo(img.dtype).max
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    img = img[:, :, :3]
    if min(img.shape[:2]) < 64:
        return None
    return torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)).permute(2, 0, 1)


def photos() -> list[torch.Tensor]:
    """The bundled photos as ``3 x H x W`` tensors in [0, 1]."""
    out = [p for p in (_photo(n) for n in PHOTO_NAMES) if p is not None]
    if not out:
        raise PhysadvError("no background photos found in scikit-image; use solid or noise backgrounds")
    return out


KINDS = ("photo", "solid", "noise", "paper")


def sample_backgrounds(n: int, height: int, width: int, kinds: tuple[str, ...] = ("photo", "solid", "noise"),
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """``n x 3 x H x W`` backgrounds: random crops of photos (rescaled), solid colours, smooth noise, or
    "paper": near-white with a slight tint and shading, as around a sign printed on a poster."""
    g = generator or torch.Generator().manual_seed(0)
    for k in kinds:
        if k not in KINDS:
            raise PhysadvError(f"unknown background kind '{k}' (use {', '.join(KINDS)})")
    pool = photos() if "photo" in kinds else []
    out = torch.empty(n, 3, height, width)
    for i in range(n):
        kind = kinds[int(torch.randint(len(kinds), (1,), generator=g))]
        if kind == "photo":
            img = pool[int(torch.randint(len(pool), (1,), generator=g))]
            _, H, W = img.shape
            frac = 0.3 + 0.7 * float(torch.rand(1, generator=g))
            ch, cw = max(8, int(H * frac)), max(8, int(W * frac))
            ch = min(ch, int(cw * height / width)) if cw * height / width <= H else ch
            cw = min(W, max(8, int(ch * width / height)))
            y0 = int(torch.randint(0, H - ch + 1, (1,), generator=g))
            x0 = int(torch.randint(0, W - cw + 1, (1,), generator=g))
            crop = img[:, y0 : y0 + ch, x0 : x0 + cw].unsqueeze(0)
            out[i] = F.interpolate(crop, size=(height, width), mode="bilinear", align_corners=False, antialias=True)[0]
        elif kind == "solid":
            out[i] = torch.rand(3, 1, 1, generator=g).expand(3, height, width)
        elif kind == "paper":
            base = 0.8 + 0.2 * torch.rand(1, 1, 1, generator=g) + 0.03 * (torch.rand(3, 1, 1, generator=g) - 0.5)
            ramp = torch.linspace(-0.5, 0.5, width).view(1, 1, width) * 0.15 * (torch.rand(1, generator=g) - 0.5)
            out[i] = (base + ramp).expand(3, height, width)
        else:
            coarse = torch.rand(1, 3, 4 + int(torch.randint(0, 12, (1,), generator=g)), 4 + int(torch.randint(0, 12, (1,), generator=g)), generator=g)
            out[i] = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)[0]
    return out.clamp(0, 1)
