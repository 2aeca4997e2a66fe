"""Where a physical perturbation may go: masks over an object's texture (``h x w`` in {0, 1}).

RP2 (Eykholt et al. 2018) attacks a sign through a mask M: the whole face ("subtle poster"),
rectangular stickers ("camouflage abstract art"), or sticker letters ("graffiti"), or a mask found by
its mask search (an L1-regularised pass, then a threshold on |delta|). Rectangles and text positions
are in fractions of the texture (x to the right, y down), so a config stays valid at any resolution.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from physadv.core.errors import PhysadvError
from physadv.core.io import read_image

# RP2's camouflage art: two bars, one above and one below the word STOP (fractions of the face)
RP2_BARS = ((0.22, 0.23, 0.78, 0.33), (0.22, 0.67, 0.78, 0.77))


def full_mask(alpha: torch.Tensor) -> torch.Tensor:
    """The whole object face ("subtle poster")."""
    return (alpha.reshape(alpha.shape[-2:]) > 0.5).float()


def rectangles_mask(size: tuple[int, int], rects: Sequence[Sequence[float]]) -> torch.Tensor:
    """Rectangular stickers: each ``(x0, y0, x1, y1)`` in fractions of the texture width and height."""
    h, w = size
    m = torch.zeros(h, w)
    for r in rects:
        if len(r) != 4:
            raise PhysadvError(f"a sticker rectangle needs 4 numbers (x0, y0, x1, y1), got {list(r)}")
        x0, y0, x1, y1 = r
        if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
            raise PhysadvError(f"sticker rectangle {list(r)} must satisfy 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1")
        m[round(y0 * h) : round(y1 * h), round(x0 * w) : round(x1 * w)] = 1
    return m


def text_mask(size: tuple[int, int], words: Sequence[str] = ("LOVE", "HATE"),
              centers_y: Sequence[float] = (0.22, 0.80), height: float = 0.14, thickness: float = 0.035) -> torch.Tensor:
    """Sticker letters ("graffiti"): each word centred at a height (fraction), about ``height`` tall."""
    h, w = size
    if len(words) != len(centers_y):
        raise PhysadvError(f"text mask: {len(words)} words but {len(centers_y)} vertical positions")
    img = np.zeros((h, w), np.uint8)
    font = cv2.FONT_HERSHEY_DUPLEX
    for word, cy in zip(words, centers_y):
        base_h = cv2.getTextSize(word, font, 1.0, 1)[0][1]
        scale = height * h / base_h
        thick = max(1, round(thickness * h))
        (tw, th), _ = cv2.getTextSize(word, font, scale, thick)
        if tw > w:  # keep long words on the face
            scale *= 0.95 * w / tw
            (tw, th), _ = cv2.getTextSize(word, font, scale, thick)
        org = (round((w - tw) / 2), round(cy * h + th / 2))
        cv2.putText(img, word, org, font, scale, 255, thick, cv2.LINE_AA)
    return torch.from_numpy((img > 127).astype(np.float32))


def mask_from_file(path: str | Path, size: tuple[int, int]) -> torch.Tensor:
    """A mask drawn by hand: white (or opaque) where stickers go; resized to the texture."""
    img = read_image(path, mode="L")
    m = torch.nn.functional.interpolate(img[None], size=size, mode="nearest")[0, 0]
    return (m > 0.5).float()


def search_mask(score: torch.Tensor, object_mask: torch.Tensor, coverage: float, blob: int = 3,
                face: torch.Tensor | None = None) -> torch.Tensor:
    """RP2's mask search: keep where a per-texel ``score`` (``h x w``, e.g. the magnitude of an L1-regularised
    perturbation) is largest.

    The score is smoothed (so stickers come out as printable blobs, not speckle) and the ``coverage`` fraction of the
    object (of ``face`` when given: a shrinking search keeps a share of the whole face from inside the current
    ``object_mask``) with the largest values inside ``object_mask`` is kept.
    """
    if not 0 < coverage <= 1:
        raise PhysadvError(f"mask coverage must be in (0, 1], got {coverage}")
    k = 2 * max(1, round(blob * score.shape[-1] / 64)) + 1
    smooth = torch.nn.functional.avg_pool2d(score.detach()[None, None].float(), k, stride=1, padding=k // 2)[0, 0]
    smooth = smooth * object_mask
    inside = object_mask.flatten() > 0.5
    n_keep = min(int(coverage * float((object_mask if face is None else face).sum())), int(inside.sum()))
    if n_keep < 1:
        raise PhysadvError("mask search: the object mask is empty")
    # exactly n_keep texels: a threshold would also keep every texel tied with the last one, past the budget
    ranked = smooth.flatten().masked_fill(~inside, float("-inf"))
    keep = torch.zeros_like(ranked)
    keep[torch.sort(ranked, descending=True, stable=True).indices[:n_keep]] = 1  # ties: first in texel order
    return keep.view(smooth.shape)


def check_mask(mask: torch.Tensor, alpha: torch.Tensor, max_coverage: float | None = None, name: str = "mask") -> float:
    """Validate a mask against the object; returns its coverage (fraction of the object face)."""
    a = alpha.reshape(alpha.shape[-2:])
    if tuple(mask.shape) != tuple(a.shape):
        raise PhysadvError(f"{name} is {tuple(mask.shape)} but the object texture is {tuple(a.shape)}")
    face = float((a > 0.5).sum())
    inside = float((mask * (a > 0.5)).sum())
    total = float(mask.sum())
    if total == 0:
        raise PhysadvError(f"{name} is empty: nothing to perturb")
    if inside < 0.9 * total:
        raise PhysadvError(f"{name} does not match the object: {100 * (1 - inside / total):.0f}% of it lies off the object's face")
    coverage = inside / face
    if max_coverage is not None and coverage > max_coverage + 1e-9:
        raise PhysadvError(f"{name} covers {coverage:.1%} of the object, more than the allowed {max_coverage:.0%}")
    return coverage
