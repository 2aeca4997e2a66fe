"""Expectation over Transformation, 2D case (Athalye, Engstrom, Ilyas and Kwok, ICML 2018).

Find x' that the classifier labels ``target`` under a distribution T of transformations:

    max_x'  E_{t ~ T} [ log P(target | t(x')) - lambda * || LAB(t(x')) - LAB(t(x)) ||_2 ]
    subject to ||x' - x||_inf <= eps (optional) and x' in [0, 1]

The perceptual penalty is the paper's: an L2 distance in CIELAB between the transformed adversarial
and the transformed original (same t for both). Untargeted: maximise the loss of the true label.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal, Optional

import torch
import torch.nn.functional as F

from physadv.core.errors import PhysadvError
from physadv.core.models import Classifier
from physadv.core.progress import progress
from physadv.core.train import descend
from physadv.physical import transforms as T
from physadv.printing.colour import rgb_to_lab


@dataclass
class EOT2DConfig:
    target: Optional[str] = None  # a class name; None: untargeted
    ranges: T.TransformRanges = field(default_factory=T.TransformRanges)
    lam: float = 0.002  # weight of the LAB L2 distance (per image, summed over pixels)
    eps: Optional[float] = None  # L-infinity bound on x' - x (pixel scale); None: only the LAB penalty
    steps: int = 300
    batch: int = 32  # transformations per step
    lr: float = 0.01
    optimizer: Literal["adam", "sgd"] = "adam"
    schedule: Literal["constant", "cosine"] = "cosine"
    eval_samples: int = 500
    seed: int = 0

    def validate(self) -> None:
        if self.eps is not None and self.eps < 0:
            raise ValueError(f"eps must be >= 0, got {self.eps}")
        if self.steps < 1 or self.batch < 1:
            raise ValueError("steps and batch must be at least 1")


@dataclass
class EOT2DResult:
    adversarial: torch.Tensor  # C x H x W
    original: torch.Tensor
    true_label: int
    target: Optional[int]
    mean_target_probability: float  # over fresh transformations
    success_rate: float  # targeted: target is top-1; untargeted: true label is not top-1
    clean_success_rate: float  # the same rate for the original image (the baseline)
    lab_distance: float  # mean per-pixel CIELAB delta E between x' and x
    linf: float
    history: dict
    seconds: float


def _lab(x: torch.Tensor) -> torch.Tensor:
    rgb = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
    return rgb_to_lab(rgb, channel_dim=1)


def eot_2d(model: Classifier, image: torch.Tensor, label: int, cfg: EOT2DConfig, progress_bar: bool = True) -> EOT2DResult:
    """Run 2D EOT on one image (``C x H x W`` in [0, 1])."""
    start = time.perf_counter()
    if image.ndim != 3 or tuple(image.shape) != tuple(model.input_size):
        raise PhysadvError(f"EOT image must be {model.input_size} for {model.arch}, got {tuple(image.shape)}")
    if float(image.min()) < 0 or float(image.max()) > 1:
        raise PhysadvError("EOT image values must lie in [0, 1]")
    target = None
    if cfg.target is not None:
        if cfg.target not in model.classes:
            raise PhysadvError(f"target class '{cfg.target}' does not exist; classes: {', '.join(model.classes)}")
        target = model.classes.index(cfg.target)
    dev = next(model.parameters()).device
    model = model.eval().requires_grad_(False)
    g = torch.Generator().manual_seed(cfg.seed)
    x0 = image.to(dev)[None]
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=cfg.lr) if cfg.optimizer == "adam" else torch.optim.SGD([x], lr=cfg.lr, momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps) if cfg.schedule == "cosine" else None
    history: dict[str, list[float]] = {"classification": [], "lab": []}
    lab0 = None
    for step in progress(range(cfg.steps), desc="EOT", disable=not progress_bar):
        p = T.sample_params(cfg.ranges, (cfg.batch, *x0.shape[1:]), g)
        tx = T.apply(x.expand(cfg.batch, -1, -1, -1), p, cfg.ranges.fill)
        with torch.no_grad():
            lab0 = _lab(T.apply(x0.expand(cfg.batch, -1, -1, -1), p, cfg.ranges.fill))
        logp = F.log_softmax(model(tx), 1)
        cls = -logp[:, target].mean() if target is not None else logp[:, label].mean()
        dist = (_lab(tx) - lab0).pow(2).sum((1, 2, 3)).add(1e-8).sqrt().mean()
        loss = cls + cfg.lam * dist
        descend(opt, loss, f"EOT diverged at step {step}", f"lower lr (now {cfg.lr})")
        if sched:
            sched.step()
        with torch.no_grad():  # project: the image box and the optional L-infinity ball
            if cfg.eps is not None:
                x.copy_(x0 + (x - x0).clamp(-cfg.eps, cfg.eps))
            x.clamp_(0, 1)
        history["classification"].append(float(cls.detach()))
        history["lab"].append(float(dist.detach()))
    adv = x.detach()
    stats = evaluate_eot(model, adv[0], label, target, cfg.ranges, cfg.eval_samples, seed=cfg.seed + 1)
    base = evaluate_eot(model, x0[0], label, target, cfg.ranges, cfg.eval_samples, seed=cfg.seed + 1)
    lab_d = float((_lab(adv) - _lab(x0)).pow(2).sum(1).sqrt().mean())
    return EOT2DResult(adv[0].cpu(), x0[0].cpu(), label, target, stats["mean_target_probability"], stats["success_rate"],
                       base["success_rate"], lab_d, float((adv - x0).abs().max()), history, time.perf_counter() - start)


@torch.no_grad()
def evaluate_eot(model: Classifier, image: torch.Tensor, label: int, target: Optional[int], ranges: T.TransformRanges,
                 samples: int, seed: int, batch: int = 250) -> dict:
    """Success and mean target probability over ``samples`` fresh transformations (not seen in optimisation)."""
    g = torch.Generator().manual_seed(10_000 + seed)
    dev = next(model.parameters()).device
    probs, hits = [], []
    for start in range(0, samples, batch):
        n = min(batch, samples - start)
        p = T.sample_params(ranges, (n, *image.shape), g)
        pr = torch.softmax(model(T.apply(image.to(dev)[None].expand(n, -1, -1, -1), p, ranges.fill)), 1)
        if target is not None:
            probs.append(pr[:, target])
            hits.append(pr.argmax(1) == target)
        else:
            probs.append(1 - pr[:, label])
            hits.append(pr.argmax(1) != label)
    return {"mean_target_probability": float(torch.cat(probs).mean()), "success_rate": float(torch.cat(hits).float().mean())}
