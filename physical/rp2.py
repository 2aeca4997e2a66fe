"""Robust Physical Perturbations (RP2; Eykholt et al., CVPR 2018) on a traffic sign.

The perturbed sign is ``x' = x + M * delta`` (clipped to [0, 1]); RP2 optimises

    min_delta  lambda * ||M * delta||_p  +  NPS(M * x')  +  E_{T ~ views} J(f(T(x')), y*)

over views T of the sign at many distances and angles, with the printer/camera colour model
applied before the views are taken. ``delta`` is parameterised through ``x + delta = (tanh(w) + 1) / 2``
so the printed colours stay in gamut, and the mask search (an L1-regularised pass over the whole face,
then a threshold on |delta|) is RP2's way of finding where stickers work best.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from physadv.core.errors import PhysadvError
from physadv.core.io import load_checkpoint, save_checkpoint
from physadv.core.models import Classifier
from physadv.core.progress import progress
from physadv.physical import masks as M
from physadv.physical.views import SignViews, class_index
from physadv.printing.printability import PrintModel, PrintModelConfig, build_print_model, load_palette, non_printability_score, total_variation
from physadv.rendering.signs.world import WorldConfig


@dataclass
class MaskConfig:
    """Where the perturbation may go (fractions of the texture; see ``physical.masks``)."""

    kind: Literal["bars", "rectangles", "text", "poster", "file", "search"] = "bars"
    rects: list[list[float]] = field(default_factory=lambda: [list(r) for r in M.RP2_BARS])
    words: list[str] = field(default_factory=lambda: ["LOVE", "HATE"])
    word_y: list[float] = field(default_factory=lambda: [0.22, 0.80])
    path: str = ""
    coverage: float = 0.12  # for the mask search: fraction of the face kept
    max_coverage: float = 1.0  # refuse masks larger than this fraction of the face

    def validate(self) -> None:
        if self.kind == "file" and not self.path:
            raise ValueError("mask.kind 'file' needs mask.path")
        if not 0 < self.max_coverage <= 1:
            raise ValueError(f"mask.max_coverage must be in (0, 1], got {self.max_coverage}")


@dataclass
class RP2Config:
    source: str = "stop"
    target: str = "speed_limit_80"
    texture_px: int = 128
    mask: MaskConfig = field(default_factory=MaskConfig)
    norm: Literal["l1", "l2"] = "l2"
    lam: float = 0.05  # weight of ||M * delta||_p (the mean-normalised p-norm over the mask's texels)
    nps_weight: float = 0.05
    tv_weight: float = 0.0
    palette: str = "configs/printing/palette.yaml"
    print_model: PrintModelConfig = field(default_factory=PrintModelConfig)
    steps: int = 300
    search_steps: int = 100
    batch: int = 32
    lr: float = 0.2
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    world: WorldConfig = field(default_factory=WorldConfig)
    val_views: int = 96
    val_every: int = 25
    checkpoint_every: int = 50
    seed: int = 0
    device: str = "auto"

    def validate(self) -> None:
        if self.steps < 1 or self.batch < 1:
            raise ValueError("steps and batch must be at least 1")
        if self.lam < 0 or self.nps_weight < 0 or self.tv_weight < 0:
            raise ValueError("lam, nps_weight and tv_weight must be >= 0")
        if self.source == self.target:
            raise ValueError(f"source and target are both '{self.source}'")


@dataclass
class RP2Result:
    texture: torch.Tensor  # 3 x S x S: the perturbed object (sRGB, what to print)
    clean: torch.Tensor  # 3 x S x S
    alpha: torch.Tensor  # 1 x S x S: the object's shape
    mask: torch.Tensor  # S x S
    coverage: float
    val_targeted: float  # targeted success on the validation views at the best step
    best_step: int
    history: dict
    seconds: float
    seconds_per_step: float
    classifier_share: float  # fraction of step time spent in the classifier (forward + backward)

    @property
    def stickers(self) -> torch.Tensor:
        """RGBA: the stickers alone (transparent elsewhere)."""
        return torch.cat([self.texture * self.mask, self.mask[None]], 0)

    _TENSORS = ("texture", "clean", "alpha", "mask")

    def save(self, path: str | Path) -> Path:
        """The whole result as safetensors (numbers and history in the JSON metadata)."""
        fields = asdict(self)
        return save_checkpoint(path, {k: fields.pop(k) for k in self._TENSORS}, fields)

    @staticmethod
    def load(path: str | Path) -> "RP2Result":
        tensors, meta = load_checkpoint(path)
        try:
            return RP2Result(**tensors, **meta)
        except TypeError as exc:
            raise PhysadvError(f"{path}: not an RP2 result of this version ({exc}); delete it") from None


def build_mask(cfg: MaskConfig, alpha: torch.Tensor) -> torch.Tensor:
    size = tuple(alpha.shape[-2:])
    if cfg.kind == "bars" or cfg.kind == "rectangles":
        m = M.rectangles_mask(size, cfg.rects)
    elif cfg.kind == "text":
        m = M.text_mask(size, cfg.words, cfg.word_y)
    elif cfg.kind in ("poster", "search"):
        m = M.full_mask(alpha)
    else:
        m = M.mask_from_file(cfg.path, size)
    # whole-face masks follow the object's shape; drawn masks are checked against it (check_mask), not clipped
    return m * (alpha.reshape(size) > 0.5) if cfg.kind in ("poster", "search") else m


class _Objective:
    """The RP2 loss for one parameter tensor ``w``; also renders validation views."""

    def __init__(self, cfg: RP2Config, model: Classifier, views: SignViews, printer: PrintModel,
                 palette: torch.Tensor | None, device: torch.device):
        self.cfg, self.model, self.views, self.printer, self.palette = cfg, model, views, printer, palette
        self.device = device
        self.clean, self.alpha = views.clean_texture
        self.target = class_index(cfg.target)
        self.source = class_index(cfg.source)
        self.classifier_time = 0.0

    def compose(self, w: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        colour = (torch.tanh(w) + 1) / 2
        return self.clean * (1 - mask) + colour * mask

    def loss(self, w: torch.Tensor, mask: torch.Tensor, lam: float, norm: str) -> tuple[torch.Tensor, dict]:
        x = self.compose(w, mask)
        seen = self.printer(x[None])[0]
        crops = self.views.render(seen, self.views.sample_poses(self.cfg.batch)).to(self.device)
        t0 = time.perf_counter()
        logits = self.model(crops)
        adv = F.cross_entropy(logits, torch.full((len(crops),), self.target, device=self.device))
        self.classifier_time += time.perf_counter() - t0
        delta = (x - self.clean) * mask
        n = mask.sum().clamp_min(1)
        reg = delta.abs().sum() / n if norm == "l1" else delta.pow(2).sum().div(n).sqrt()
        terms = {"adversarial": adv, "norm": reg}
        total = adv + lam * reg
        if self.palette is not None and self.cfg.nps_weight > 0:
            nps = non_printability_score(x[None], self.palette, reduction="mean", mask=mask)[0]
            terms["nps"] = nps
            total = total + self.cfg.nps_weight * nps
        if self.cfg.tv_weight > 0:
            tv = total_variation((x * mask)[None], reduction="mean")[0]
            terms["tv"] = tv
            total = total + self.cfg.tv_weight * tv
        acc = (logits.argmax(1) == self.target).float().mean()
        return total, {k: float(v.detach()) for k, v in terms.items()} | {"batch_targeted": float(acc)}

    @torch.no_grad()
    def targeted_rate(self, texture: torch.Tensor, poses) -> float:
        seen = self.printer(texture[None])[0]
        crops = self.views.render(seen, poses).to(self.device)
        return float((self.model(crops).argmax(1) == self.target).float().mean())


def rp2_attack(model: Classifier, cfg: RP2Config, checkpoint: str | Path | None = None, progress_bar: bool = True,
               device: torch.device | str = "cpu") -> RP2Result:
    """Run RP2 on the sign ``cfg.source`` toward ``cfg.target`` against ``model`` (the sign classifier)."""
    device = torch.device(device)
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    if cfg.target not in model.classes:
        raise PhysadvError(f"target class '{cfg.target}' is not one of the classifier's classes: {', '.join(model.classes)}")
    views = SignViews(cfg.source, cfg.world, seed=cfg.seed, texture_px=cfg.texture_px)
    printer = build_print_model(cfg.print_model)
    palette = load_palette(cfg.palette) if cfg.palette else None
    if palette is not None and len(palette) == 0:
        raise PhysadvError(f"{cfg.palette}: the palette is empty")
    obj = _Objective(cfg, model.eval().requires_grad_(False), views, printer, palette, device)
    clean, alpha = obj.clean, obj.alpha
    val_poses = views.sample_poses(cfg.val_views)
    history: dict[str, list[float]] = {}

    def optimise(mask, steps, lam, norm, w=None, resume=None, first_step=0, tag="rp2"):
        if w is None:
            w = torch.atanh((clean * 2 - 1).clamp(-0.999, 0.999)).clone()
            w = (w + 0.5 * torch.randn_like(w)).requires_grad_(True)
        opt = torch.optim.Adam([w], lr=cfg.lr)
        cosine = cfg.lr_schedule == "cosine"
        best = (-1.0, obj.compose(w.detach(), mask), first_step)
        if resume is not None:  # Adam moments, the view sampler's random state and the best so far
            opt.state[w] = {"step": resume["adam_step"][0].clone(), "exp_avg": resume["adam_m"].clone(),
                            "exp_avg_sq": resume["adam_v"].clone()}
            views.g.set_state(resume["rng"])
            best = (resume["best_rate"], resume["best"], resume["best_step"])
        bar = progress(range(first_step, steps), desc=tag, total=steps, initial=first_step, disable=not progress_bar)
        for step in bar:
            if cosine:  # a function of the step alone, so a resumed run follows the same schedule
                opt.param_groups[0]["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / steps))
            total, terms = obj.loss(w, mask, lam, norm)
            if not torch.isfinite(total):
                _save_best(checkpoint, best[1], mask, alpha)
                raise PhysadvError(f"RP2 diverged: the loss became {float(total)} at step {step} "
                                   f"(terms {terms}); the best texture so far is saved" +
                                   (f" in {checkpoint}" if checkpoint else "") + "; lower lr or the weights")
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            for k, v in terms.items():
                history.setdefault(f"{tag}/{k}", []).append(v)
            if (step + 1) % cfg.val_every == 0 or step + 1 == steps:
                rate = obj.targeted_rate(obj.compose(w.detach(), mask), val_poses)
                history.setdefault(f"{tag}/val_targeted", []).append(rate)
                if rate >= best[0]:
                    best = (rate, obj.compose(w.detach(), mask), step + 1)
                bar.set_postfix(loss=f"{float(total.detach()):.3f}", val=f"{rate:.0%}")
            if checkpoint and (step + 1) % cfg.checkpoint_every == 0 and tag == "rp2":
                st = opt.state[w]
                save_checkpoint(checkpoint, {"w": w.detach(), "mask": mask, "best": best[1],
                                             "adam_m": st["exp_avg"], "adam_v": st["exp_avg_sq"],
                                             "adam_step": torch.as_tensor(st["step"]).reshape(1).float(),
                                             "rng": views.g.get_state()},
                                {"step": step + 1, "best_rate": best[0], "best_step": best[2]})
        return w, best

    # the mask
    mask = build_mask(cfg.mask, alpha)
    if cfg.mask.kind == "search":
        w_search, _ = optimise(mask, cfg.search_steps, cfg.lam * 10, "l1", tag="mask-search")
        delta = obj.compose(w_search.detach(), mask) - clean
        mask = M.search_mask(delta, M.full_mask(alpha), cfg.mask.coverage)
    coverage = M.check_mask(mask, alpha, cfg.mask.max_coverage, name=f"mask ({cfg.mask.kind})")

    w0, first, resume = None, 0, None
    if checkpoint and Path(checkpoint).is_file():
        state, meta = load_checkpoint(checkpoint)
        if tuple(state["mask"].shape) == tuple(mask.shape) and torch.equal(state["mask"], mask):
            w0, first = state["w"].clone().requires_grad_(True), int(meta["step"])
            resume = dict(state, best_rate=meta["best_rate"], best_step=meta["best_step"])
    obj.classifier_time = 0.0
    t_opt = time.perf_counter()
    w, best = optimise(mask, cfg.steps, cfg.lam, cfg.norm, w=w0, resume=resume, first_step=first)
    opt_seconds = time.perf_counter() - t_opt
    steps_run = max(1, cfg.steps - first)
    return RP2Result(texture=best[1].clamp(0, 1), clean=clean, alpha=alpha, mask=mask, coverage=coverage,
                     val_targeted=best[0], best_step=best[2], history=history, seconds=time.perf_counter() - start,
                     seconds_per_step=opt_seconds / steps_run,
                     classifier_share=obj.classifier_time / max(opt_seconds, 1e-9))


def _save_best(path: str | Path | None, texture: torch.Tensor, mask: torch.Tensor, alpha: torch.Tensor) -> None:
    if path is None:
        return
    from physadv.core.io import write_image

    p = Path(path)
    write_image(p.with_name("best_texture.png"), torch.cat([texture.clamp(0, 1), alpha], 0))
    save_checkpoint(p.with_name("best_texture.safetensors"), {"texture": texture, "mask": mask, "alpha": alpha})
