"""DeepFool (Moosavi-Dezfooli, Fawzi and Frossard, CVPR 2016), multi-class, L2 and L-infinity.

At each step the classifier is linearised around the current point; with candidate classes k (the top
``candidates`` classes of the clean image, the reference label first), ``w_k = grad f_k - grad f_label`` and
``f_k = f_k - f_label``, the closest linearised boundary is ``l = argmin_k |f_k| / ||w_k||_q`` (q the dual norm:
2 for L2, 1 for L-inf) and the step is

    L2:    r_i = (|f_l| / ||w_l||_2 + 1e-4) * w_l / ||w_l||_2
    L-inf: r_i = (|f_l| / ||w_l||_1 + 1e-4) * sign(w_l)

accumulated in ``r_tot``; the next point is ``x + (1 + overshoot) * r_tot`` (overshoot on the accumulated
perturbation, as the authors' reference code does), clamped to [0, 1]. Pixels already at 0 or 1 drop the
gradient components that point out of the box (``box_feasible``), so each linearised step stays feasible
(``box=False``: no clamping and no box, the paper's unconstrained setting). The whole batch runs together: the
gradients of all candidate differences for every image come from one vectorised backward
(``autograd.grad(..., is_grads_batched=True)``), and images whose label already changed are frozen (no
backward once all have crossed).
"""
from __future__ import annotations

import torch
from torch import nn

from physadv.attacks.base import Attack, check_nonneg, check_positive_int
from physadv.core.errors import PhysadvError


def candidate_classes(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """``N x k`` class indices: the label first, then the other classes by decreasing logit."""
    scores = logits.detach().clone()
    scores[torch.arange(len(labels), device=labels.device), labels] = float("inf")
    return scores.topk(min(k, logits.shape[1]), dim=1).indices


def boundary_gradients(x: torch.Tensor, logits: torch.Tensor, cand: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The differences ``f_k - f_label`` (``N x (k-1)``) of ``logits = model(x)`` (``x`` requires grad) and their
    gradients ``N x (k-1) x D``, from one vectorised backward over the batch sum."""
    fs = logits.gather(1, cand)
    diff = fs[:, 1:] - fs[:, :1]
    m = diff.shape[1]
    eye = torch.eye(m, device=x.device, dtype=diff.dtype).unsqueeze(1).expand(m, len(x), m)
    (grads,) = torch.autograd.grad(diff, x, grad_outputs=eye, is_grads_batched=True)
    return diff.detach(), grads.transpose(0, 1).flatten(2)


def deepfool_step(diff: torch.Tensor, w: torch.Tensor, norm: str) -> torch.Tensor:
    """One DeepFool step ``N x D`` towards the closest linearised boundary (see the module docstring)."""
    q = 2 if norm == "l2" else 1
    pert = diff.abs() / w.norm(p=q, dim=2).clamp_min(1e-12)
    l = pert.argmin(dim=1)
    rows = torch.arange(len(l), device=l.device)
    p_l, w_l = pert[rows, l], w[rows, l]
    if norm == "l2":
        return (p_l + 1e-4).unsqueeze(1) * w_l / w_l.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return (p_l + 1e-4).unsqueeze(1) * w_l.sign()


def box_feasible(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Zero the components of ``w`` (``N x K x D``) that would push a pixel of ``x`` (``N x D``) already at 0
    or 1 out of [0, 1]: the linearised problem under the box constraint. Clamping alone would undo those
    components and waste steps (on LeNet/MNIST, whose background is 0: about 7 iterations instead of 2)."""
    x = x.unsqueeze(1)
    return w * ~(((x <= 0) & (w < 0)) | ((x >= 1) & (w > 0)))


class DeepFool(Attack):
    """DeepFool, batched. ``result.iterations`` counts linearisation steps; ``success`` means the label changed."""

    name = "deepfool"

    def __init__(self, model: nn.Module, overshoot: float = 0.02, max_iter: int = 50, candidates: int = 10,
                 norm: str = "l2", box: bool = True, batch_size: int = 256):
        check_nonneg(overshoot=overshoot)
        check_positive_int(max_iter=max_iter, candidates=candidates)
        if candidates < 2:
            raise PhysadvError(f"candidates must be at least 2 (the label and one other class), got {candidates}")
        if norm not in ("l2", "linf"):
            raise PhysadvError(f"norm must be 'l2' or 'linf', got '{norm}'")
        super().__init__(model, batch_size)
        self.overshoot, self.max_iter, self.candidates, self.norm, self.box = overshoot, max_iter, candidates, norm, bool(box)

    def _clamp(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(0, 1) if self.box else x

    @torch.enable_grad()
    def _attack(self, x, y, target):
        if target is not None:
            raise PhysadvError("DeepFool is untargeted: call it without target")
        r_tot = torch.zeros_like(x)
        iters = torch.zeros(len(x), dtype=torch.long, device=x.device)
        active = torch.arange(len(x), device=x.device)
        cand = None
        for step in range(self.max_iter):
            xa = self._clamp(x[active] + (1 + self.overshoot) * r_tot[active]).requires_grad_(True)
            logits = self.model(xa)
            if cand is None:  # step 0: xa is x
                cand = candidate_classes(logits, y, self.candidates)
            still = logits.argmax(1) == y[active]  # label not changed yet: keep going, else freeze
            if not still.any():
                break  # every image crossed: no backward needed
            diff, w = boundary_gradients(xa, logits, cand[active])
            if self.box:
                w = box_feasible(w, xa.detach().flatten(1))
            active, diff, w = active[still], diff[still], w[still]
            r_tot[active] += deepfool_step(diff, w, self.norm).view(-1, *x.shape[1:])
            iters[active] += 1
        return self._clamp(x + (1 + self.overshoot) * r_tot), iters
