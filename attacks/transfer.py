"""Transferability across networks (Liu, Chen, Liu and Song, ICLR 2017).

- ``OptimizationAttack``: Adam on the paper's objective in pixel space, the image kept in [0, 1]:
  untargeted ``lam * ||x* - x||_2 - log(1 - p_y(x*))``, targeted ``lam * ||x* - x||_2 - log p_t(x*)``.
- ``Ensemble``: the members fused into one model, attacked like one model. ``fusion="mean_probability"`` is the
  paper's (section 3.2: the weighted average of the members' softmax outputs, ``sum_i a_i J_i(x)``, its log
  given as the logits); ``"geometric_mean"`` is ``log_softmax(sum_i a_i log softmax f_i(x))`` (what physadv did
  before issue 15: every member's log-probability enters the loss linearly, so the attack pushes every member,
  including one whose probability the average already ignores).
- ``transfer_matrix``: rows are source models (or ensembles of all but one held-out model), columns target
  models; entries are the target's accuracy on the adversarial images (untargeted) and the rate at which it
  predicts the target label (targeted); RMSD per row (``sqrt(mean((x* - x)^2))``, pixels in [0, 1]).
- ``decision_regions``: the paper's Figure 3, each model's predicted label on the plane through an image
  spanned by one model's gradient direction and a random orthogonal direction.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from physadv.attacks.base import Attack, check_nonneg, check_positive_int, predict
from physadv.attacks.gradient import FGSM, loss_gradient
from physadv.core.errors import PhysadvError


FUSIONS = ("mean_probability", "geometric_mean")


class Ensemble(nn.Module):
    """Log-probabilities of the fused members (see the module docstring); weights default to equal and are
    normalised to sum to 1. ``mean_probability``: ``log sum_i w_i softmax(f_i(x))`` (Liu et al. 2017, section 3.2);
    ``geometric_mean``: ``log_softmax(sum_i w_i log_softmax(f_i(x)))``."""

    def __init__(self, models: Sequence[nn.Module], weights: Sequence[float] | None = None,
                 fusion: str = "mean_probability"):
        super().__init__()
        if not models:
            raise PhysadvError("an ensemble needs at least one model")
        if fusion not in FUSIONS:
            raise PhysadvError(f"ensemble fusion '{fusion}' is not one of {', '.join(FUSIONS)}")
        self.members = nn.ModuleList(models)
        w = torch.tensor([1.0] * len(models) if weights is None else [float(v) for v in weights])
        if len(w) != len(models) or bool((w < 0).any()) or float(w.sum()) <= 0:
            raise PhysadvError(f"ensemble weights must be {len(models)} non-negative numbers, not all 0; got {w.tolist()}")
        self.weights = (w / w.sum()).tolist()
        self.fusion = fusion
        self.num_classes = getattr(models[0], "num_classes", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logp = torch.stack([F.log_softmax(m(x), dim=1) for m in self.members])  # M x N x K
        w = torch.tensor(self.weights, device=logp.device, dtype=logp.dtype).view(-1, 1, 1)
        if self.fusion == "mean_probability":
            return torch.logsumexp(logp + w.clamp_min(1e-30).log(), dim=0)
        return F.log_softmax((w * logp).sum(0), dim=1)


class OptimizationAttack(Attack):
    """Liu et al.'s optimisation-based attack (Adam); targeted when ``run`` is given ``target``."""

    name = "opt"

    def __init__(self, model: nn.Module, lam: float = 0.05, lr: float = 0.01, steps: int = 100, batch_size: int = 256):
        check_nonneg(lam=lam, lr=lr)
        check_positive_int(steps=steps)
        super().__init__(model, batch_size)
        self.lam, self.lr, self.steps = lam, lr, steps

    def _attack(self, x, y, target):
        delta = torch.zeros_like(x, requires_grad=True)
        opt = torch.optim.Adam([delta], lr=self.lr)
        for _ in range(self.steps):
            logp = F.log_softmax(self.model(x + delta), dim=1)
            if target is not None:
                loss = -logp.gather(1, target[:, None]).squeeze(1)
            else:  # -log(1 - p_y), computed stably as -log(sum of the other probabilities)
                others = logp.scatter(1, y[:, None], -float("inf"))
                loss = -torch.logsumexp(others, dim=1)
            dist = (delta.flatten(1).pow(2).sum(1) + 1e-12).sqrt()
            opt.zero_grad()
            (self.lam * dist + loss).sum().backward()
            opt.step()
            with torch.no_grad():
                delta.copy_((x + delta).clamp(0, 1) - x)
        return (x + delta).detach().clamp(0, 1), self.steps


@dataclass
class TransferTable:
    """A transfer matrix: ``accuracy[i, j]`` of target ``cols[j]`` on examples made against ``rows[i]``."""

    rows: list[str]
    cols: list[str]
    accuracy: torch.Tensor
    match: torch.Tensor | None  # target-label match rate (targeted attacks)
    rmsd: list[float]
    attack: str
    targeted: bool

    def to_dict(self) -> dict:
        d = {"rows": self.rows, "cols": self.cols, "accuracy": self.accuracy.tolist(), "rmsd": self.rmsd,
             "attack": self.attack, "targeted": self.targeted}
        if self.match is not None:
            d["match"] = self.match.tolist()
        return d

    def to_csv(self, path: str | Path) -> Path:
        from physadv.core.io import atomic_path

        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            value = "match" if self.match is not None else "accuracy"
            w.writerow(["source"] + [f"{value}:{c}" for c in self.cols] + ["rmsd"])
            table = self.match if self.match is not None else self.accuracy
            for r, row, d in zip(self.rows, table.tolist(), self.rmsd):
                w.writerow([r] + [f"{v:.4f}" for v in row] + [f"{d:.5f}"])
        return Path(path)

    def heatmap(self, path: str | Path) -> Path:
        from physadv.core.plots import pyplot, save_figure

        plt = pyplot()
        table = (self.match if self.match is not None else self.accuracy).numpy()
        fig, ax = plt.subplots(figsize=(1.2 * len(self.cols) + 3, 0.6 * len(self.rows) + 1.5))
        ax.imshow(table, vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(len(self.cols)), self.cols, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(self.rows)), [f"{r} (RMSD {d * 255:.1f})" for r, d in zip(self.rows, self.rmsd)], fontsize=8)
        for i in range(table.shape[0]):
            for j in range(table.shape[1]):
                ax.text(j, i, f"{table[i, j]:.2f}", ha="center", va="center", color="w" if table[i, j] < 0.5 else "k", fontsize=8)
        what = "target-label match rate" if self.match is not None else "accuracy of the target model"
        ax.set_title(f"{self.attack}{' targeted' if self.targeted else ''}: {what}", fontsize=9)
        return save_figure(fig, path)


def transfer_matrix(models: dict[str, nn.Module], images: torch.Tensor, labels: torch.Tensor, attack: str = "opt",
                    target: torch.Tensor | None = None, ensemble: bool = False, params: dict | None = None,
                    fusion: str = "mean_probability") -> TransferTable:
    """Attack each source (each model, or with ``ensemble`` each all-but-one ensemble fused by ``fusion``) and test
    every model."""
    params = dict(params or {})
    names = list(models)
    if ensemble:
        sources = {f"ensemble-minus-{n}": Ensemble([models[m] for m in names if m != n], fusion=fusion) for n in names}
    else:
        sources = dict(models)
    acc, match, rmsd = [], [], []
    for src, net in sources.items():
        att = OptimizationAttack(net, **params) if attack == "opt" else FGSM(net, **params)
        adv = att.run(images, labels, target).adversarial
        rmsd.append(round(float((adv - images).flatten(1).pow(2).mean(1).sqrt().mean()), 6))
        preds = {n: predict(models[n], adv) for n in names}
        acc.append([float((preds[n] == labels).float().mean()) for n in names])
        if target is not None:
            match.append([float((preds[n] == target).float().mean()) for n in names])
    return TransferTable(list(sources), names, torch.tensor(acc), torch.tensor(match) if target is not None else None,
                         rmsd, attack, target is not None)


def decision_regions(models: dict[str, nn.Module], image: torch.Tensor, label: int, direction_model: str,
                     span: float = 15.0, steps: int = 101, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted labels ``M x steps x steps`` on ``x + a u + b v`` (a along ``direction_model``'s loss gradient,
    b along a random direction orthogonal to it; both unit L2, ``a, b`` in [-span, span]); also returns the axis."""
    x = image.unsqueeze(0)
    g = loss_gradient(models[direction_model], x, torch.tensor([label])).flatten()
    u = g / g.norm().clamp_min(1e-12)
    r = torch.randn(u.shape, generator=torch.Generator().manual_seed(seed))
    v = r - (r @ u) * u
    v = v / v.norm()
    axis = torch.linspace(-span, span, steps)
    b, a = torch.meshgrid(axis, axis, indexing="ij")  # rows: b (vertical), columns: a (horizontal)
    pts = (x.flatten() + a.reshape(-1, 1) * u + b.reshape(-1, 1) * v).clamp(0, 1).view(-1, *image.shape)
    labels = torch.stack([predict(m, pts).view(steps, steps) for m in models.values()])
    return labels, axis


def save_decision_regions(path: str | Path, labels: torch.Tensor, names: Sequence[str], axis: torch.Tensor,
                          true_label: int, direction_model: str) -> Path:
    from physadv.core.plots import pyplot, save_figure

    plt = pyplot()
    n = len(names)
    fig, axes = plt.subplots(1, n, figsize=(2.4 * n, 2.8), squeeze=False)
    ext = [float(axis[0]), float(axis[-1]), float(axis[0]), float(axis[-1])]
    for ax, lab, name in zip(axes[0], labels, names):
        ax.imshow(lab.numpy(), cmap="tab10", vmin=0, vmax=9, origin="lower", extent=ext, interpolation="nearest")
        ax.plot([0], [0], "w+", ms=8)
        ax.set_title(name, fontsize=8)
        ax.set_xlabel(f"grad of {direction_model}", fontsize=7)
        ax.tick_params(labelsize=6)
    axes[0][0].set_ylabel("random orthogonal", fontsize=7)
    fig.suptitle(f"predicted labels around one image (true label {true_label}; colour = class)", fontsize=8)
    return save_figure(fig, path)
