"""Robust Physical Perturbations (RP2; Eykholt et al., CVPR 2018) on an object's face.

The perturbed face is ``x' = x + M * delta`` (in [0, 1]); RP2 optimises (the paper's eq. 3, with its
non-printability term)

    min_delta  lambda * ||M * delta||_p  +  NPS(M * x')  +  E_{T ~ views} J(f(T(x')), y*)

over views T of the object at many distances, angles and lights (the scene's), with the printer/camera colour
model applied before the views are taken. ``x + delta`` is parameterised as ``(tanh(w) + 1) / 2`` so the
printed colours stay in gamut. The mask M is the whole face ("subtle poster"), drawn rectangles ("camouflage
abstract art"), sticker letters ("graffiti"), a file, or RP2's mask search: a first pass over the whole face
with an L1 penalty of weight ``mask.search_lam`` (sparse perturbations concentrate where they matter), then the
``mask.coverage`` share of the face where that perturbation is strongest.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from physadv.core.errors import PhysadvError
from physadv.core.io import load_checkpoint
from physadv.physical import masks as M
from physadv.physical.attack import DesignConfig, PhysicalAttack, PhysicalResult, atanh_of, colours
from physadv.printing.printability import PrintModelConfig, build_print_model, load_palette, non_printability_score, total_variation
from physadv.rendering.scene import Draw


@dataclass
class MaskConfig:
    """Where the perturbation may go (fractions of the texture; see ``physical.masks``)."""

    kind: Literal["bars", "rectangles", "text", "poster", "file", "search"] = "bars"
    rects: list[list[float]] = field(default_factory=lambda: [list(r) for r in M.RP2_BARS])
    words: list[str] = field(default_factory=lambda: ["LOVE", "HATE"])
    word_y: list[float] = field(default_factory=lambda: [0.22, 0.80])
    path: str = ""
    coverage: float = 0.12  # mask search: the share of the face kept
    max_coverage: float = 1.0  # refuse masks larger than this share of the face
    search_lam: float = 0.5  # mask search: weight of the L1 penalty of the first pass (ten times RP2's lam 0.05)

    def validate(self) -> None:
        if self.kind == "file" and not self.path:
            raise ValueError("mask.kind 'file' needs mask.path")
        if not 0 < self.max_coverage <= 1:
            raise ValueError(f"mask.max_coverage must be in (0, 1], got {self.max_coverage}")
        if self.search_lam < 0:
            raise ValueError(f"mask.search_lam must be >= 0, got {self.search_lam}")


@dataclass
class RP2Config(DesignConfig):
    mask: MaskConfig = field(default_factory=MaskConfig)
    norm: Literal["l1", "l2"] = "l2"
    lam: float = 0.05  # weight of ||M * delta||_p (the mean-normalised p-norm over the mask's texels)
    nps_weight: float = 0.05
    tv_weight: float = 0.0
    palette: str = "configs/printing/palette.yaml"  # printable colours for NPS ("" for none)
    print_model: PrintModelConfig = field(default_factory=PrintModelConfig)
    search_steps: int = 100
    init_noise: float = 0.5  # std of the random start of w around the clean face

    def validate(self) -> None:
        super().validate()
        if self.lam < 0 or self.nps_weight < 0 or self.tv_weight < 0:
            raise ValueError("lam, nps_weight and tv_weight must be >= 0")
        if self.mask.kind == "search" and self.search_steps < 1:
            raise ValueError("the mask search needs search_steps >= 1")


def build_mask(cfg: MaskConfig, alpha: torch.Tensor) -> torch.Tensor:
    size = tuple(alpha.shape[-2:])
    if cfg.kind in ("bars", "rectangles"):
        m = M.rectangles_mask(size, cfg.rects)
    elif cfg.kind == "text":
        m = M.text_mask(size, cfg.words, cfg.word_y)
    elif cfg.kind in ("poster", "search"):
        m = M.full_mask(alpha)
    else:
        m = M.mask_from_file(cfg.path, size)
    # whole-face masks follow the object's shape; drawn masks are checked against it (check_mask), not clipped
    return m * (alpha.reshape(size) > 0.5) if cfg.kind in ("poster", "search") else m


class RP2(PhysicalAttack):
    name = "rp2"
    Config = RP2Config

    def __init__(self, victim, scene, cfg: RP2Config | None = None, **overrides):
        super().__init__(victim, scene, cfg, **overrides)
        cfg = self.cfg
        self.printer = build_print_model(cfg.print_model).to(self.device)
        self.palette = load_palette(cfg.palette).to(self.device) if cfg.palette else None
        if self.palette is not None and len(self.palette) == 0:
            raise PhysadvError(f"{cfg.palette}: the palette is empty")
        self.clean = scene.obj.texture.to(self.device)
        self.alpha = scene.obj.alpha.to(self.device)
        self.mask = build_mask(cfg.mask, self.alpha.cpu()).to(self.device)
        self.lam, self.norm = cfg.lam, cfg.norm

    def start(self) -> torch.Tensor:
        w = atanh_of(self.clean)
        return w + self.cfg.init_noise * torch.randn_like(w)

    def design(self, w: torch.Tensor) -> torch.Tensor:
        return (self.clean * (1 - self.mask) + colours(w) * self.mask).clamp(0, 1)

    def views(self, design: torch.Tensor, draw: Draw):
        return self.scene.render(self.printer(design[None])[0], draw)

    def loss(self, w: torch.Tensor, draw: Draw) -> tuple[torch.Tensor, dict]:
        x = self.clean * (1 - self.mask) + colours(w) * self.mask
        adv = self.adversarial_loss(self.scene.render(self.printer(x[None])[0], draw))
        delta = (x - self.clean) * self.mask
        n = self.mask.sum().clamp_min(1)
        reg = delta.abs().sum() / n if self.norm == "l1" else delta.pow(2).sum().div(n).sqrt()
        terms = {"adversarial": adv, "norm": reg}
        total = adv + self.lam * reg
        if self.palette is not None and self.cfg.nps_weight > 0:
            terms["nps"] = non_printability_score(x[None], self.palette, reduction="mean", mask=self.mask)[0]
            total = total + self.cfg.nps_weight * terms["nps"]
        if self.cfg.tv_weight > 0:
            terms["tv"] = total_variation((x * self.mask)[None], reduction="mean")[0]
            total = total + self.cfg.tv_weight * terms["tv"]
        return total, {k: float(v.detach()) for k, v in terms.items()}

    def prepare(self, val: Draw, checkpoint, progress_bar: bool) -> dict:
        """RP2's mask search (skipped when the checkpoint already holds its outcome)."""
        if self.cfg.mask.kind != "search":
            self.coverage = M.check_mask(self.mask.cpu(), self.alpha.cpu(), self.cfg.mask.max_coverage,
                                         name=f"mask ({self.cfg.mask.kind})")
            return {}
        found = self._searched_mask(checkpoint)
        history = {}
        if found is None:
            self.lam, self.norm = self.cfg.mask.search_lam, "l1"
            w, _, stats = self.optimise(self.start(), self.cfg.search_steps, val, checkpoint, "mask-search", progress_bar)
            self.lam, self.norm = self.cfg.lam, self.cfg.norm
            found = M.search_mask(self.design(w) - self.clean, M.full_mask(self.alpha), self.cfg.mask.coverage)
            history = stats["history"]
        self.mask = found.to(self.device)
        self.coverage = M.check_mask(self.mask.cpu(), self.alpha.cpu(), self.cfg.mask.max_coverage, name="mask (search)")
        return history

    def _searched_mask(self, checkpoint) -> torch.Tensor | None:
        if not checkpoint or not Path(checkpoint).is_file():
            return None
        state, meta = load_checkpoint(checkpoint)
        return state.get("mask") if meta.get("attack") == self.name and meta.get("phase") == self.name else None

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        return {"mask": self.mask}

    def accepts(self, state: dict) -> bool:
        m = state.get("mask")
        return m is not None and tuple(m.shape) == tuple(self.mask.shape) and torch.equal(m.to(self.mask), self.mask)

    def finish(self, w: torch.Tensor, best: torch.Tensor) -> PhysicalResult:
        return PhysicalResult("rp2", best.cpu(), self.clean.cpu(), self.alpha.cpu(), self.mask.cpu(),
                              metrics={"coverage": self.coverage, "mask": self.cfg.mask.kind})


__all__ = ["MaskConfig", "RP2Config", "RP2", "build_mask"]
