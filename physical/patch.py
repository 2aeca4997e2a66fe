"""Adversarial patch (Brown, Mané, Roy, Abadi and Gilmer, 2017): one universal, printable patch that
turns any image into ``target`` when placed anywhere in it, at any scale and rotation in a range.

    max_p  E_{x ~ images, l ~ locations, t ~ scale/rotation} [ log P(target | A(p, x, l, t)) ]

where A pastes the (rotated, scaled) patch into the image at l. The patch is kept in [0, 1].
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from kornia.geometry.transform import warp_affine

from physadv.core.data import ImageSet
from physadv.core.errors import PhysadvError
from physadv.core.models import Classifier
from physadv.core.progress import progress
from physadv.core.train import descend


@dataclass
class PatchConfig:
    target: str = "speed_limit_80"
    shape: Literal["circle", "square"] = "circle"
    patch_px: int = 32  # resolution of the patch itself
    area: tuple[float, float] = (0.08, 0.20)  # fraction of the image the patch covers
    rotation_deg: tuple[float, float] = (-45.0, 45.0)
    steps: int = 300
    batch: int = 32
    lr: float = 0.05
    eval_images: int = 400
    seed: int = 0

    def validate(self) -> None:
        lo, hi = self.area
        if not 0 < lo <= hi < 1:
            raise ValueError(f"area must satisfy 0 < min <= max < 1, got {list(self.area)}")
        if self.rotation_deg[0] > self.rotation_deg[1]:
            raise ValueError(f"rotation_deg: min greater than max {list(self.rotation_deg)}")


@dataclass
class PatchResult:
    patch: torch.Tensor  # 3 x P x P
    mask: torch.Tensor  # 1 x P x P
    success_rate: float  # held-out images (not of the target class) classified as target with the patch
    clean_target_rate: float  # the same images without the patch
    history: dict
    seconds: float


def patch_mask(shape: str, size: int) -> torch.Tensor:
    if shape == "square":
        return torch.ones(1, size, size)
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    return (((yy - size / 2) ** 2 + (xx - size / 2) ** 2) <= (size / 2) ** 2).float()[None]


def place(images: torch.Tensor, patch: torch.Tensor, mask: torch.Tensor, cfg: PatchConfig, g: torch.Generator) -> torch.Tensor:
    """Paste ``patch`` into each image at a random location, scale and rotation (differentiable in ``patch``)."""
    n, c, h, w = images.shape
    P = patch.shape[-1]
    area = cfg.area[0] + (cfg.area[1] - cfg.area[0]) * torch.rand(n, generator=g)
    side = torch.sqrt(area * h * w)  # patch side in image pixels
    s = side / P
    ang = torch.deg2rad(cfg.rotation_deg[0] + (cfg.rotation_deg[1] - cfg.rotation_deg[0]) * torch.rand(n, generator=g))
    half = side * (abs(torch.cos(ang)) + abs(torch.sin(ang))) / 2  # half extent of the rotated patch
    cx = half + (w - 2 * half).clamp(min=0) * torch.rand(n, generator=g)
    cy = half + (h - 2 * half).clamp(min=0) * torch.rand(n, generator=g)
    # patch pixel (u, v) -> image: R * s * ((u, v) - centre_patch) + (cx, cy)
    cos, sin = torch.cos(ang) * s, torch.sin(ang) * s
    pc = (P - 1) / 2
    A = torch.stack([torch.stack([cos, -sin, cx - 0.5 - (cos * pc - sin * pc)], 1),
                     torch.stack([sin, cos, cy - 0.5 - (sin * pc + cos * pc)], 1)], 1).to(images)
    rgba = torch.cat([patch * mask, mask], 0)[None].expand(n, -1, -1, -1)
    if c == 1:
        rgba = torch.cat([rgba[:, :3].mean(1, keepdim=True), rgba[:, 3:]], 1)
    warped = warp_affine(rgba, A, (h, w), align_corners=True)
    return warped[:, :c] + (1 - warped[:, c:]) * images


def adversarial_patch(model: Classifier, data: ImageSet, held_out: ImageSet, cfg: PatchConfig,
                      progress_bar: bool = True) -> PatchResult:
    start = time.perf_counter()
    if cfg.target not in model.classes:
        raise PhysadvError(f"target class '{cfg.target}' does not exist; classes: {', '.join(model.classes)}")
    if tuple(data.shape) != tuple(model.input_size):
        raise PhysadvError(f"images are {tuple(data.shape)}, the classifier wants {model.input_size}")
    target = model.classes.index(cfg.target)
    dev = next(model.parameters()).device
    model = model.eval().requires_grad_(False)
    g = torch.Generator().manual_seed(cfg.seed)
    mask = patch_mask(cfg.shape, cfg.patch_px).to(dev)
    w = (torch.rand(3, cfg.patch_px, cfg.patch_px, generator=g) * 2 - 1).to(dev).requires_grad_(True)
    opt = torch.optim.Adam([w], lr=cfg.lr)
    pool = data.images[data.labels != target]
    if len(pool) == 0:
        raise PhysadvError("no training images outside the target class")
    history: dict[str, list[float]] = {"loss": [], "batch_success": []}
    for step in progress(range(cfg.steps), desc="patch", disable=not progress_bar):
        idx = torch.randint(len(pool), (cfg.batch,), generator=g)
        patch = (torch.tanh(w) + 1) / 2
        logits = model(place(pool[idx].to(dev), patch, mask, cfg, g))
        loss = F.cross_entropy(logits, torch.full((cfg.batch,), target, device=dev))
        descend(opt, loss, f"patch optimisation diverged at step {step}", f"lower lr (now {cfg.lr})")
        history["loss"].append(float(loss.detach()))
        history["batch_success"].append(float((logits.argmax(1) == target).float().mean()))
    patch = ((torch.tanh(w) + 1) / 2).detach()
    keep = held_out.images[held_out.labels != target][: cfg.eval_images]
    ge = torch.Generator().manual_seed(cfg.seed + 7777)
    with torch.no_grad():
        hit = model(place(keep.to(dev), patch, mask, cfg, ge)).argmax(1) == target
        base = model(keep.to(dev)).argmax(1) == target
    return PatchResult(patch.cpu(), mask.cpu(), float(hit.float().mean()), float(base.float().mean()), history,
                       time.perf_counter() - start)
