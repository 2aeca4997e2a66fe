"""Colour science in torch (differentiable): sRGB -> linear -> XYZ (D65) -> CIELAB, delta E (CIE76, CIEDE2000),
and colour transforms fitted by least squares (affine 3x4, second-order polynomial with 10 terms per channel).

Colour spaces: every RGB here is sRGB-encoded in [0, 1] (what image files hold). A ``ColourTransform``
maps sRGB to sRGB; ``fit_colour_transform(intended, captured)`` gives the print-and-capture model,
``fit_colour_transform(captured, intended)`` its correction.

    model = fit_colour_transform(intended, captured, "poly2")
    err = delta_e2000(rgb_to_lab(model(intended)), rgb_to_lab(captured)).mean()
    save_colour_transform("print.safetensors", model, {"fit_delta_e2000": float(err)})
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from physadv.core.colour import linear_to_srgb, srgb_to_linear
from physadv.core.errors import PhysadvError
from physadv.core.io import load_checkpoint, save_checkpoint

# IEC 61966-2-1 sRGB primaries, D65 white (CIE 1931 2-degree observer)
_RGB_TO_XYZ = torch.tensor([[0.4124564, 0.3575761, 0.1804375],
                            [0.2126729, 0.7151522, 0.0721750],
                            [0.0193339, 0.1191920, 0.9503041]], dtype=torch.float64)
D65_WHITE = (0.95047, 1.0, 1.08883)


def _channels_last(x: torch.Tensor, channel_dim: int) -> tuple[torch.Tensor, int]:
    if x.shape[channel_dim] != 3:
        raise PhysadvError(f"colour: expected 3 channels in dimension {channel_dim}, got shape {tuple(x.shape)}")
    return x.movedim(channel_dim, -1), channel_dim


def rgb_to_xyz(rgb: torch.Tensor, channel_dim: int = -1) -> torch.Tensor:
    """sRGB in [0, 1] -> CIE XYZ (D65, Y of white = 1)."""
    x, cd = _channels_last(rgb, channel_dim)
    xyz = srgb_to_linear(x) @ _RGB_TO_XYZ.to(x).T
    return xyz.movedim(-1, cd)


def xyz_to_lab(xyz: torch.Tensor, channel_dim: int = -1, white: tuple[float, float, float] = D65_WHITE) -> torch.Tensor:
    x, cd = _channels_last(xyz, channel_dim)
    t = x / torch.tensor(white).to(x)
    eps = (6 / 29) ** 3
    f = torch.where(t > eps, t.clamp(min=eps) ** (1 / 3), t / (3 * (6 / 29) ** 2) + 4 / 29)
    L = 116 * f[..., 1] - 16
    a = 500 * (f[..., 0] - f[..., 1])
    b = 200 * (f[..., 1] - f[..., 2])
    return torch.stack([L, a, b], -1).movedim(-1, cd)


def rgb_to_lab(rgb: torch.Tensor, channel_dim: int = -1) -> torch.Tensor:
    """sRGB in [0, 1] -> CIELAB (D65). ``channel_dim`` is 1 for ``N x 3 x H x W`` images."""
    return xyz_to_lab(rgb_to_xyz(rgb, channel_dim), channel_dim)


def _safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(x.clamp(min=1e-12))


def delta_e76(lab1: torch.Tensor, lab2: torch.Tensor, channel_dim: int = -1) -> torch.Tensor:
    """CIE76: Euclidean distance in CIELAB."""
    return _safe_sqrt(((lab1 - lab2) ** 2).sum(channel_dim))


def delta_e2000(lab1: torch.Tensor, lab2: torch.Tensor, channel_dim: int = -1,
                kL: float = 1.0, kC: float = 1.0, kH: float = 1.0) -> torch.Tensor:
    """CIEDE2000 colour difference (Sharma, Wu and Dalal 2005), elementwise over the other dimensions."""
    L1, a1, b1 = lab1.movedim(channel_dim, -1).unbind(-1)
    L2, a2, b2 = lab2.movedim(channel_dim, -1).unbind(-1)
    C1, C2 = _safe_sqrt(a1 ** 2 + b1 ** 2), _safe_sqrt(a2 ** 2 + b2 ** 2)
    Cbar7 = ((C1 + C2) / 2) ** 7
    G = 0.5 * (1 - _safe_sqrt(Cbar7 / (Cbar7 + 25.0 ** 7)))
    a1p, a2p = (1 + G) * a1, (1 + G) * a2
    C1p, C2p = _safe_sqrt(a1p ** 2 + b1 ** 2), _safe_sqrt(a2p ** 2 + b2 ** 2)
    two_pi = 2 * math.pi
    h1p = torch.remainder(torch.atan2(b1, a1p), two_pi)
    h2p = torch.remainder(torch.atan2(b2, a2p), two_pi)
    zero = (C1p * C2p) < 1e-10
    dh = h2p - h1p
    dh = torch.where(dh > math.pi, dh - two_pi, torch.where(dh < -math.pi, dh + two_pi, dh))
    dh = torch.where(zero, torch.zeros_like(dh), dh)
    dL, dC = L2 - L1, C2p - C1p
    dH = 2 * _safe_sqrt(C1p * C2p) * torch.sin(dh / 2)
    Lbar, Cbar = (L1 + L2) / 2, (C1p + C2p) / 2
    hsum = h1p + h2p
    hbar = torch.where((h1p - h2p).abs() <= math.pi, hsum / 2,
                       torch.where(hsum < two_pi, (hsum + two_pi) / 2, (hsum - two_pi) / 2))
    hbar = torch.where(zero, hsum, hbar)
    deg = math.pi / 180
    T = (1 - 0.17 * torch.cos(hbar - 30 * deg) + 0.24 * torch.cos(2 * hbar) + 0.32 * torch.cos(3 * hbar + 6 * deg)
         - 0.20 * torch.cos(4 * hbar - 63 * deg))
    dtheta = 30 * deg * torch.exp(-(((hbar / deg) - 275) / 25) ** 2)
    Cbar7p = Cbar ** 7
    RC = 2 * _safe_sqrt(Cbar7p / (Cbar7p + 25.0 ** 7))
    SL = 1 + 0.015 * (Lbar - 50) ** 2 / torch.sqrt(20 + (Lbar - 50) ** 2)
    SC = 1 + 0.045 * Cbar
    SH = 1 + 0.015 * Cbar * T
    RT = -torch.sin(2 * dtheta) * RC
    tL, tC, tH = dL / (kL * SL), dC / (kC * SC), dH / (kH * SH)
    return _safe_sqrt(tL ** 2 + tC ** 2 + tH ** 2 + RT * tC * tH)


# --------------------------------------------------------------------------- colour transforms
KINDS = {"affine": 4, "poly2": 10}


def colour_features(rgb: torch.Tensor, kind: str) -> torch.Tensor:
    """``... x 3`` -> ``... x T`` regression terms: affine [r, g, b, 1]; poly2 adds r², g², b², rg, rb, gb."""
    r, g, b = rgb.unbind(-1)
    one = torch.ones_like(r)
    if kind == "affine":
        terms = [r, g, b, one]
    elif kind == "poly2":
        terms = [r, g, b, one, r * r, g * g, b * b, r * g, r * b, g * b]
    else:
        raise PhysadvError(f"colour transform kind '{kind}' is unknown (use one of {sorted(KINDS)})")
    return torch.stack(terms, -1)


class ColourTransform(nn.Module):
    """out = features(rgb) @ weight; ``weight`` is ``T x 3``. Identity by default. Images ``N x 3 x H x W`` or ``... x 3``."""

    def __init__(self, kind: str = "affine", weight: torch.Tensor | None = None):
        super().__init__()
        if kind not in KINDS:
            raise PhysadvError(f"colour transform kind '{kind}' is unknown (use one of {sorted(KINDS)})")
        self.kind = kind
        if weight is None:
            weight = torch.zeros(KINDS[kind], 3)
            weight[:3] = torch.eye(3)
        if tuple(weight.shape) != (KINDS[kind], 3):
            raise PhysadvError(f"colour transform '{kind}': weight must be {KINDS[kind]} x 3, got {tuple(weight.shape)}")
        self.weight = nn.Parameter(weight.float(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4 and x.shape[1] == 3:
            return self.forward(x.movedim(1, -1)).movedim(-1, 1)
        if x.shape[-1] != 3:
            raise PhysadvError(f"colour transform: expected N x 3 x H x W or ... x 3, got shape {tuple(x.shape)}")
        return colour_features(x, self.kind) @ self.weight.to(x)

    def extra_repr(self) -> str:
        return f"kind={self.kind}"


def fit_colour_transform(source: torch.Tensor, target: torch.Tensor, kind: str = "poly2",
                         ridge: float = 1e-6) -> ColourTransform:
    """Least squares ``target ~ features(source) @ W`` over ``P x 3`` colour pairs (float64 normal equations)."""
    src, tgt = torch.as_tensor(source, dtype=torch.float64).reshape(-1, 3), torch.as_tensor(target, dtype=torch.float64).reshape(-1, 3)
    if src.shape != tgt.shape:
        raise PhysadvError(f"fit_colour_transform: {src.shape[0]} source colours but {tgt.shape[0]} targets")
    n_terms = KINDS.get(kind)
    if n_terms is None:
        raise PhysadvError(f"colour transform kind '{kind}' is unknown (use one of {sorted(KINDS)})")
    if src.shape[0] < n_terms:
        raise PhysadvError(f"fit_colour_transform: '{kind}' needs at least {n_terms} colour pairs, got {src.shape[0]}")
    X = colour_features(src, kind)
    A = X.T @ X + ridge * torch.eye(n_terms, dtype=torch.float64)
    W = torch.linalg.solve(A, X.T @ tgt)
    return ColourTransform(kind, W.float())


def transform_error(model: nn.Module, source: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Mean and max delta E (CIE76 and CIEDE2000) between ``model(source)`` and ``target`` (``P x 3`` sRGB)."""
    with torch.no_grad():
        pred = model(torch.as_tensor(source, dtype=torch.float32)).clamp(0, 1).double()
        lab_p, lab_t = rgb_to_lab(pred), rgb_to_lab(torch.as_tensor(target, dtype=torch.float64))
        e76, e00 = delta_e76(lab_p, lab_t), delta_e2000(lab_p, lab_t)
    return {"mean_delta_e76": float(e76.mean()), "max_delta_e76": float(e76.max()),
            "mean_delta_e2000": float(e00.mean()), "max_delta_e2000": float(e00.max())}


def save_colour_transform(path: str | Path, model: ColourTransform, metadata: dict | None = None) -> Path:
    meta = {"format": "physadv.colour_transform", "kind": model.kind, "colour_space": "sRGB -> sRGB, [0, 1]",
            **(metadata or {})}
    return save_checkpoint(path, {"weight": model.weight.detach()}, meta)


def load_colour_transform(path: str | Path) -> tuple[ColourTransform, dict]:
    tensors, meta = load_checkpoint(path)
    if meta.get("format") != "physadv.colour_transform" or "weight" not in tensors:
        raise PhysadvError(f"{path}: not a physadv colour transform (made by `physadv print calibrate`)")
    return ColourTransform(meta["kind"], tensors["weight"]), meta


__all__ = ["srgb_to_linear", "linear_to_srgb", "rgb_to_xyz", "xyz_to_lab", "rgb_to_lab", "delta_e76", "delta_e2000",
           "ColourTransform", "colour_features", "fit_colour_transform", "transform_error", "save_colour_transform",
           "load_colour_transform", "KINDS"]
