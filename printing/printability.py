"""Printability: the non-printability score (Sharif et al. 2016), total variation, printable palettes, and
``PrintModel``: a differentiable print-and-capture simulation for optimisation loops.

Sharif, Bhagavatula, Bauer and Reiter, "Accessorize to a Crime" (CCS 2016), eq. for NPS:

    NPS(x) = sum over pixels p of x  of  prod over palette colours c of |p - c|     (Euclidean, RGB in [0, 1])

and their total variation TV(r) = sum_{i,j} sqrt((r_{i,j} - r_{i+1,j})^2 + (r_{i,j} - r_{i,j+1})^2).

    palette = load_palette(packaged("printing/palette.yaml"))        # or palette_from_colours(reading.captured)
    loss = non_printability_score(texture, palette, reduction="mean").sum() + 0.1 * total_variation(texture).sum()
    seen = PrintModel(colour=transform, gamut="hull", palette=palette, blur_sigma_px=0.7)(texture)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from physadv.core.errors import PhysadvError


# --------------------------------------------------------------------------- non-printability score
def _distances(p: torch.Tensor, palette: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    diff = p[:, None, :] - palette[None, :, :]  # m x K x 3
    return diff, torch.sqrt((diff * diff).sum(-1))  # m x K


class _NPSPerPixel(torch.autograd.Function):
    """prod_k |p - c_k| per pixel; backward recomputes chunk by chunk so only the input is kept."""

    @staticmethod
    def forward(ctx, pixels: torch.Tensor, palette: torch.Tensor, chunk: int) -> torch.Tensor:
        out = torch.cat([_distances(pixels[i:i + chunk], palette)[1].prod(1) for i in range(0, len(pixels), chunk)])
        ctx.save_for_backward(pixels, palette)
        ctx.chunk = chunk
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        pixels, palette = ctx.saved_tensors
        grads = []
        for i in range(0, len(pixels), ctx.chunk):
            diff, d = _distances(pixels[i:i + ctx.chunk], palette)
            ones = torch.ones_like(d[:, :1])
            before = torch.cumprod(torch.cat([ones, d[:, :-1]], 1), 1)  # prod of d[:k]
            after = torch.cumprod(torch.cat([ones, d.flip(1)[:, :-1]], 1), 1).flip(1)  # prod of d[k+1:]
            unit = torch.where(d[..., None] > 0, diff / d.clamp_min(1e-30)[..., None], torch.zeros_like(diff))
            g = ((before * after)[..., None] * unit).sum(1)  # d/dp prod_k d_k = sum_k prod_{j!=k} d_j * (p - c_k)/d_k
            grads.append(g * grad_out[i:i + ctx.chunk, None])
        return torch.cat(grads), None, None


def non_printability_score(image: torch.Tensor, palette: torch.Tensor, reduction: str = "sum",
                           mask: torch.Tensor | None = None, chunk: int = 16384) -> torch.Tensor:
    """Sharif et al.'s NPS of ``N x 3 x H x W`` (or ``3 x H x W``) images against a ``K x 3`` palette.

    ``reduction``: "sum" over pixels (the paper's definition, one value per image), "mean" over pixels,
    or "none" (``N x H x W``). ``mask`` (``N|1 x 1 x H x W`` or ``H x W``) restricts it to the perturbed
    pixels. Memory stays O(pixels) in forward and backward, whatever the palette size.
    """
    x = image[None] if image.ndim == 3 else image
    if x.ndim != 4 or x.shape[1] != 3:
        raise PhysadvError(f"non_printability_score: expected N x 3 x H x W images, got shape {tuple(image.shape)}")
    pal = torch.as_tensor(palette).to(x)
    if pal.ndim != 2 or pal.shape[1] != 3 or len(pal) == 0:
        raise PhysadvError(f"non_printability_score: palette must be K x 3, got shape {tuple(pal.shape)}")
    n, _, h, w = x.shape
    per_pixel = _NPSPerPixel.apply(x.permute(0, 2, 3, 1).reshape(-1, 3), pal, chunk).reshape(n, h, w)
    if mask is not None:
        m = torch.as_tensor(mask).to(x)
        m = m[:, 0] if m.ndim == 4 else (m[None] if m.ndim == 2 else m)
        if m.shape[-2:] != (h, w) or m.shape[0] not in (1, n):
            raise PhysadvError(f"non_printability_score: mask of shape {tuple(mask.shape)} does not match images {tuple(x.shape)}")
        m = m.expand(n, h, w)
        per_pixel = per_pixel * m
        count = m.sum((1, 2)).clamp_min(1)
    else:
        count = torch.full((n,), float(h * w), dtype=x.dtype, device=x.device)
    if reduction == "none":
        return per_pixel
    if reduction == "sum":
        return per_pixel.sum((1, 2))
    if reduction == "mean":
        return per_pixel.sum((1, 2)) / count
    raise PhysadvError(f"non_printability_score: reduction '{reduction}' is unknown (use sum, mean or none)")


def total_variation(image: torch.Tensor, reduction: str = "sum", eps: float = 1e-8) -> torch.Tensor:
    """Sharif et al.'s TV per image: sum over pixels of sqrt(dy^2 + dx^2), squares summed over channels."""
    x = image[None] if image.ndim == 3 else image
    dy = x[:, :, 1:, :-1] - x[:, :, :-1, :-1]
    dx = x[:, :, :-1, 1:] - x[:, :, :-1, :-1]
    tv = torch.sqrt((dy ** 2 + dx ** 2).sum(1) + eps)
    if reduction == "sum":
        return tv.sum((1, 2))
    if reduction == "mean":
        return tv.mean((1, 2))
    if reduction == "none":
        return tv
    raise PhysadvError(f"total_variation: reduction '{reduction}' is unknown (use sum, mean or none)")


# --------------------------------------------------------------------------- palettes
def load_palette(path: str | Path) -> torch.Tensor:
    """A palette file (YAML or JSON, ``colours: [[r, g, b], ...]`` in [0, 1], or 0-255 integers) -> ``K x 3``."""
    import yaml

    from physadv.core.resources import resolve_file

    p = resolve_file(path)
    if not p.is_file():
        raise PhysadvError(f"palette file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PhysadvError(f"{p}: not valid YAML/JSON ({exc})") from None
    colours = data.get("colours") if isinstance(data, dict) else None
    try:
        arr = np.asarray(colours, dtype=np.float64)
    except (TypeError, ValueError):
        arr = np.zeros((0,))
    if arr.ndim != 2 or arr.shape[1] != 3 or len(arr) == 0:
        raise PhysadvError(f"{p}: field 'colours' must be a non-empty list of [r, g, b] triples")
    if arr.max() > 1.0:
        arr = arr / 255.0
    if arr.min() < 0 or arr.max() > 1:
        raise PhysadvError(f"{p}: field 'colours' has values outside [0, 1] (or 0-255)")
    return torch.from_numpy(arr).float()


def save_palette(path: str | Path, palette: torch.Tensor, source: str = "") -> Path:
    from physadv.core.io import write_json

    return write_json(path, {"source": source, "colour_space": "sRGB [0, 1]",
                             "colours": [[round(float(v), 5) for v in c] for c in torch.as_tensor(palette).reshape(-1, 3)]})


def palette_from_colours(colours: torch.Tensor, k: int = 30, seed: int = 0) -> torch.Tensor:
    """Reduce measured printable colours (e.g. a chart's captured patches) to ``k`` by k-means (Sharif et al. used 30)."""
    c = torch.as_tensor(colours, dtype=torch.float64).reshape(-1, 3).numpy()
    if len(c) <= k:
        return torch.from_numpy(c).float()
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(c)
    return torch.from_numpy(km.cluster_centers_).float().clamp(0, 1)


# --------------------------------------------------------------------------- print-and-capture model
def clip_to_hull(x: torch.Tensor, equations: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """Move points (``... x 3``) outside a convex hull toward ``centre`` until they reach its surface.

    ``equations`` are the hull facets (``F x 4``, normal·p + offset <= 0 inside, as scipy's ConvexHull gives).
    Differentiable almost everywhere; points inside are unchanged.
    """
    A, b = equations[:, :3].to(x), equations[:, 3].to(x)
    c = centre.to(x)
    d = x - c
    room = -(A @ c + b)  # F, positive: distance budget of the centre to each facet
    rate = d @ A.T  # ... x F
    t = torch.where(rate > 0, room / rate.clamp_min(1e-12), torch.full_like(rate, float("inf"))).amin(-1, keepdim=True)
    return c + d * t.clamp(max=1.0)


class PrintModel(nn.Module):
    """Intended colours (``N x 3 x H x W`` sRGB) -> expected captured colours: colour transform, gamut, dot-gain blur.

    Identity by default. ``gamut``: "none", "clip" (to [0, 1]) or "hull" (toward the palette's convex hull,
    along the line to its centroid; needs ``palette``). ``blur_sigma_px`` is in pixels of the input tensor.
    """

    def __init__(self, colour: nn.Module | None = None, gamut: str = "none", palette: torch.Tensor | None = None,
                 blur_sigma_px: float = 0.0):
        super().__init__()
        if gamut not in ("none", "clip", "hull"):
            raise PhysadvError(f"PrintModel: gamut '{gamut}' is unknown (use none, clip or hull)")
        self.colour = colour if colour is not None else nn.Identity()
        self.gamut = gamut
        self.blur_sigma_px = float(blur_sigma_px)
        if gamut == "hull":
            if palette is None:
                raise PhysadvError("PrintModel: gamut 'hull' needs a palette (K x 3, K >= 4)")
            from scipy.spatial import ConvexHull, QhullError

            pts = torch.as_tensor(palette, dtype=torch.float64).reshape(-1, 3)
            try:
                hull = ConvexHull(pts.numpy())
            except (QhullError, ValueError) as exc:
                raise PhysadvError(f"PrintModel: the palette ({len(pts)} colours) spans no 3-D hull ({str(exc).splitlines()[0]})") from None
            self.register_buffer("hull_equations", torch.from_numpy(hull.equations).float())
            self.register_buffer("hull_centre", pts[hull.vertices].mean(0).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise PhysadvError(f"PrintModel: expected N x 3 x H x W, got shape {tuple(x.shape)}")
        y = self.colour(x)
        if self.gamut == "clip":
            y = y.clamp(0, 1)
        elif self.gamut == "hull":
            y = clip_to_hull(y.movedim(1, -1), self.hull_equations, self.hull_centre).movedim(-1, 1)
        if self.blur_sigma_px > 0:
            from kornia.filters import gaussian_blur2d

            k = 2 * int(np.ceil(3 * self.blur_sigma_px)) + 1
            y = gaussian_blur2d(y, (k, k), (self.blur_sigma_px, self.blur_sigma_px), border_type="reflect")
        return y

    def extra_repr(self) -> str:
        return f"gamut={self.gamut}, blur_sigma_px={self.blur_sigma_px}"


@dataclass
class PrintModelConfig:
    transform: str = ""  # a colour transform file from `physadv print calibrate` (empty: identity)
    palette: str = ""  # a palette file (YAML/JSON); needed for gamut "hull"
    gamut: str = "none"  # none, clip or hull
    blur_sigma_px: float = 0.0

    def validate(self) -> None:
        if self.gamut not in ("none", "clip", "hull"):
            raise ValueError(f"gamut must be none, clip or hull, got '{self.gamut}'")
        if self.blur_sigma_px < 0:
            raise ValueError(f"blur_sigma_px must be >= 0, got {self.blur_sigma_px}")


def build_print_model(cfg: PrintModelConfig) -> PrintModel:
    from physadv.printing.colour import load_colour_transform

    colour = load_colour_transform(cfg.transform)[0] if cfg.transform else None
    palette = load_palette(cfg.palette) if cfg.palette else None
    return PrintModel(colour, cfg.gamut, palette, cfg.blur_sigma_px)


__all__ = ["non_printability_score", "total_variation", "load_palette", "save_palette", "palette_from_colours",
           "clip_to_hull", "PrintModel", "PrintModelConfig", "build_print_model"]
