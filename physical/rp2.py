"""Robust Physical Perturbations (RP2; Eykholt et al., CVPR 2018) on an object's face.

The perturbed face is ``x' = x + M * delta`` (in [0, 1]); RP2 optimises (the paper's eq. 3, with its
non-printability term)

    min_delta  lambda * ||M * delta||_p  +  NPS(M * x')  +  E_{T ~ views} J(f(T(x')), y*)

over views T of the object at many distances, angles and lights (the scene's), with the printer/camera colour
model applied before the views are taken. ``x + delta`` is parameterised as ``(tanh(w) + 1) / 2`` so the
printed colours stay in gamut. The mask M is the whole face ("subtle poster"), drawn rectangles ("camouflage
abstract art"), sticker letters ("graffiti"), a file, or RP2's mask search: a first pass over the whole face
with an L1 penalty of weight ``mask.search_lam`` (sparse perturbations concentrate where they matter), then the
``mask.coverage`` share of the face where that perturbation is strongest. Both start from the clean face, as RP2
does, or (``init: reference``, ours) from the target's own appearance inside the mask.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from physadv.core.config import added_later
from physadv.core.errors import PhysadvError
from physadv.core.io import load_checkpoint
from physadv.core.resources import packaged
from physadv.physical import masks as M
from physadv.physical.attack import DesignConfig, PhysicalAttack, PhysicalResult, atanh_of, colours, reference_texture
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
    search_rounds: int = 1  # 1: RP2's one pass over the face; more: the mask shrinks in rounds (geometrically from the
    # whole face to `coverage`), each round optimising inside the current mask and keeping its strongest part
    warm_start: bool = False  # start the sticker optimisation from the search's colours (RP2: a fresh start)
    score: Literal["magnitude", "gradient"] = added_later("magnitude")  # what a cut keeps: where the perturbation is
    # largest (RP2), or where it lowers the adversarial loss most, by integrated gradients over `score_views` views
    score_views: int = added_later(128)
    score_steps: int = added_later(1)  # gradient: points on the path from the clean face (1: Taylor at the design)

    def validate(self) -> None:
        if self.kind == "file" and not self.path:
            raise ValueError("mask.kind 'file' needs mask.path")
        if not 0 < self.max_coverage <= 1:
            raise ValueError(f"mask.max_coverage must be in (0, 1], got {self.max_coverage}")
        if self.search_lam < 0 or self.search_rounds < 1:
            raise ValueError(f"mask.search_lam must be >= 0 and mask.search_rounds >= 1, got {self.search_lam}, "
                             f"{self.search_rounds}")
        if min(self.score_views, self.score_steps) < 1:
            raise ValueError(f"mask.score_views and mask.score_steps must be at least 1, got {self.score_views}, "
                             f"{self.score_steps}")


@dataclass
class RP2Config(DesignConfig):
    mask: MaskConfig = field(default_factory=MaskConfig)
    norm: Literal["l1", "l2"] = "l2"
    lam: float = 0.05  # weight of ||M * delta||_p (the mean-normalised p-norm over the mask's texels)
    nps_weight: float = 0.05
    tv_weight: float = 0.0
    palette: str = field(default_factory=lambda: str(packaged("printing/palette.yaml")))  # printable colours for NPS:
    # the shipped palette by default (never a working directory's file of that name); "" for none
    print_model: PrintModelConfig = field(default_factory=PrintModelConfig)
    search_steps: int = 100
    init_noise: float = 0.5  # std of the random start of w around the start (`init`)
    # where the search and the stickers start inside the mask: the clean face (RP2), or the target's appearance
    # (`reference`, default the target's sign), a prior every classifier of the task shares
    init: Literal["clean", "reference"] = added_later("clean")

    def validate(self) -> None:
        super().validate()
        if self.lam < 0 or self.nps_weight < 0 or self.tv_weight < 0:
            raise ValueError("lam, nps_weight and tv_weight must be >= 0")
        if self.mask.kind == "search" and self.search_steps < 1:
            raise ValueError("the mask search needs search_steps >= 1")
        if self.init == "reference" and not (self.reference or self.target):
            raise ValueError("init: reference starts from the target's appearance: it needs a target or a reference")


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
        self.warm: torch.Tensor | None = None
        self.first = self.clean  # where w starts (inside the mask only: outside it the clean face is printed)
        if cfg.init == "reference":
            self.first = reference_texture(cfg.reference or cfg.target, self.clean.shape[-2:]).to(self.clean)

    def start(self) -> torch.Tensor:
        if self.warm is not None:  # the mask search's colours
            return self.warm
        w = atanh_of(self.first)
        return w + self.cfg.init_noise * torch.randn_like(w)

    def design(self, w: torch.Tensor) -> torch.Tensor:
        return (self.clean * (1 - self.mask) + colours(w) * self.mask).clamp(0, 1)

    def views(self, design: torch.Tensor, draw: Draw):
        return self.scene.render(self.printer(design[None])[0], draw)

    def loss(self, w: torch.Tensor, draw: Draw) -> tuple[torch.Tensor, dict]:
        x = self.clean * (1 - self.mask) + colours(w) * self.mask
        adv, first = self.adversarial_terms(self.views(x, draw), x, draw)
        delta = (x - self.clean) * self.mask
        n = self.mask.sum().clamp_min(1)
        reg = delta.abs().sum() / n if self.norm == "l1" else delta.pow(2).sum().div(n).sqrt()
        terms = {"norm": reg}
        total = adv + self.lam * reg
        if self.palette is not None and self.cfg.nps_weight > 0:
            terms["nps"] = non_printability_score(x[None], self.palette, reduction="mean", mask=self.mask)[0]
            total = total + self.cfg.nps_weight * terms["nps"]
        if self.cfg.tv_weight > 0:
            terms["tv"] = total_variation((x * self.mask)[None], reduction="mean")[0]
            total = total + self.cfg.tv_weight * terms["tv"]
        return total, first | {k: float(v.detach()) for k, v in terms.items()}

    def prepare(self, val: Draw, checkpoint, progress_bar: bool) -> dict:
        """RP2's mask search (rounds already in the checkpoint are not run again)."""
        m = self.cfg.mask
        if m.kind != "search":
            self.coverage = M.check_mask(self.mask.cpu(), self.alpha.cpu(), m.max_coverage, name=f"mask ({m.kind})")
            return {}
        phase, saved = self._saved(checkpoint)
        history, first = {}, 1
        if phase == self.name:  # the search is over: the sticker optimisation resumes itself
            self.mask = saved.to(self.device)
        else:
            if phase.startswith("mask-search-"):
                first, self.mask = int(phase.rsplit("-", 1)[1]), saved.to(self.device)
            history = self._search(val, checkpoint, progress_bar, first)
        self.coverage = M.check_mask(self.mask.cpu(), self.alpha.cpu(), m.max_coverage, name="mask (search)")
        return history

    def _search(self, val: Draw, checkpoint, progress_bar: bool, first: int) -> dict:
        """Rounds ``first``..``search_rounds``: optimise with the L1 penalty inside the current mask, then keep the
        strongest part of it, ``coverage ** (round / rounds)`` of the face (one round: RP2's search)."""
        m, history = self.cfg.mask, {}
        face = M.full_mask(self.alpha)
        steps = max(1, self.cfg.search_steps // m.search_rounds)
        self.lam, self.norm = m.search_lam, "l1"
        w = self.start()
        for r in range(first, m.search_rounds + 1):
            w, _, stats = self.optimise(w, steps, val, checkpoint, f"mask-search-{r}", progress_bar)
            self.mask = M.search_mask(self.texel_score(w), self.mask, m.coverage ** (r / m.search_rounds),
                                      face=face).to(self.device)
            history.update(stats["history"])
        self.lam, self.norm = self.cfg.lam, self.cfg.norm
        if m.warm_start:
            self.warm = w
        return history

    def texel_score(self, w: torch.Tensor) -> torch.Tensor:
        """What each texel of the current design is worth to the attack (``h x w``), by ``mask.score``:
        ``magnitude``, the L1-regularised perturbation's size ``|delta|`` (RP2, sec. 4); ``gradient``, its share of
        the adversarial loss's fall from the clean face (``attribution``), where positive. A strong texel the victim
        ignores scores 0."""
        x = self.design(w.detach())
        if self.cfg.mask.score == "magnitude":
            return (x - self.clean).abs().sum(0)
        return self.attribution(x).clamp_min(0)

    def attribution(self, x: torch.Tensor) -> torch.Tensor:
        """Integrated gradients (Sundararajan et al., ICML 2017, eq. 3) of the mean adversarial loss J over
        ``mask.score_views`` fresh views, from the clean face to the design ``x``, per texel: ``-delta . (1/n)
        sum_k grad J(clean + k/n delta)``, a right Riemann sum over ``n = mask.score_steps`` points of the path (one
        point: the first-order Taylor estimate at the design, Molchanov et al., ICLR 2017). The texels sum to about
        ``J(clean) - J(x)`` on those views (the completeness axiom; with ``view_balance`` J weighs the views as the
        steps do, by weights that move along the path, so the sum is only near the fall)."""
        m, delta = self.cfg.mask, x - self.clean
        grad, left = torch.zeros_like(x), m.score_views
        while left > 0:
            n, left = min(left, self.cfg.batch), left - self.cfg.batch
            draw = self.scene.sample(n)  # one draw for every point of the path: the sum telescopes
            for k in range(1, m.score_steps + 1):
                point = (self.clean + k / m.score_steps * delta).requires_grad_(True)
                loss = self.adversarial_loss(self.views(point, draw)) * n
                grad += torch.autograd.grad(loss, point)[0]
        return -(grad * delta).sum(0) / (m.score_views * m.score_steps)

    def _saved(self, checkpoint) -> tuple[str, torch.Tensor | None]:
        """The phase a checkpoint of this run holds and the mask it used ("" when there is none, or when the checkpoint
        is another config's: a mask searched at another coverage is not this run's)."""
        if not checkpoint or not Path(checkpoint).is_file():
            return "", None
        state, meta = load_checkpoint(checkpoint)
        return (meta.get("phase", ""), state.get("mask")) if self.holds(meta) else ("", None)

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        return {"mask": self.mask}

    def accepts(self, state: dict) -> bool:
        m = state.get("mask")
        return m is not None and tuple(m.shape) == tuple(self.mask.shape) and torch.equal(m.to(self.mask), self.mask)

    def finish(self, w: torch.Tensor, best: torch.Tensor) -> PhysicalResult:
        return PhysicalResult("rp2", best.cpu(), self.clean.cpu(), self.alpha.cpu(), self.mask.cpu(),
                              metrics={"coverage": self.coverage, "mask": self.cfg.mask.kind})


__all__ = ["MaskConfig", "RP2Config", "RP2", "build_mask"]
