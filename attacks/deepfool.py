"""DeepFool (Moosavi-Dezfooli, Fawzi and Frossard, CVPR 2016), multi-class, L2 and L-infinity.

At each step the classifier is linearised around the current point; with candidate classes k (the top
``candidates`` classes of the clean image, the reference label first), ``w_k = grad f_k - grad f_label`` and
``f_k = f_k - f_label``, the closest linearised boundary is ``l = argmin_k |f_k| / ||w_k||_q`` (q the dual norm:
2 for L2, 1 for L-inf) and the step is

    L2:    r_i = (|f_l| / ||w_l||_2 + 1e-4) * w_l / ||w_l||_2
    L-inf: r_i = (|f_l| / ||w_l||_1 + 1e-4) * sign(w_l)

accumulated in ``r_tot``; the next point is ``x + (1 + overshoot) * r_tot`` (overshoot on the accumulated
perturbation, as the authors' reference code does).

The box. The paper's DeepFool has none (``box=False``: the paper's Table 1 setting, images may leave [0, 1]).
With ``box=True`` (the default) every iterate is clipped to [0, 1] and linearised where it was clipped, as
foolbox's ``L2DeepFoolAttack`` does; ``r_tot`` keeps accumulating unclipped steps. Clipping only the last
iterate of the unconstrained run (the reference code's output, clipped) leaves about 1 image in 200 adversarial
on LeNet/MNIST, whose steps push the black background below 0. Clipping each iterate costs more steps (about
7 instead of 2 there), because every step loses what points out of the box, but the steps fall short of the
linearised boundary and so approach the true one from inside: its rho equals foolbox's. (Projecting the
gradients onto the box's feasible directions instead, as this module did before issue 15, took 2 steps and
gave a rho 4.7% above foolbox's.)

The whole batch runs together: one forward per step, then one backward per candidate difference through the
same graph, on PyTorch's own CPU convolutions (``native_cpu_conv``: about 2x faster here than oneDNN and than a
vmapped backward); images whose label already changed are frozen (no backward once all have crossed).
"""
from __future__ import annotations

import torch
from torch import nn

from physadv.attacks.base import Attack, check_nonneg, check_positive_int, native_cpu_conv
from physadv.core.errors import PhysadvError


def candidate_classes(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """``N x k`` class indices: the label first, then the other classes by decreasing logit."""
    scores = logits.detach().clone()
    scores[torch.arange(len(labels), device=labels.device), labels] = float("inf")
    return scores.topk(min(k, logits.shape[1]), dim=1).indices


def boundary_gradients(x: torch.Tensor, logits: torch.Tensor, cand: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The differences ``f_k - f_label`` (``N x (k-1)``) of ``logits = model(x)`` (``x`` requires grad) and their
    gradients ``N x (k-1) x D``, one backward per candidate through the same graph (each image's difference
    depends on that image only, so the gradient of the batch sum is every image's own)."""
    fs = logits.gather(1, cand)
    diff = fs[:, 1:] - fs[:, :1]
    m = diff.shape[1]
    grads = [torch.autograd.grad(diff[:, j].sum(), x, retain_graph=j < m - 1)[0].flatten(1) for j in range(m)]
    return diff.detach(), torch.stack(grads, 1)


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


class DeepFool(Attack):
    """DeepFool, batched. ``result.iterations`` counts linearisation steps; ``success`` means the label changed.
    ``box=False`` is the paper's setting (no [0, 1] box); ``box=True`` clips every iterate, as foolbox does."""

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

    def _attack(self, x, y, target):
        if target is not None:
            raise PhysadvError("DeepFool is untargeted: call it without target")
        with native_cpu_conv(x.device):
            return self._iterate(x, y)

    @torch.enable_grad()
    def _iterate(self, x, y):
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
            active, diff, w = active[still], diff[still], w[still]
            r_tot[active] += deepfool_step(diff, w, self.norm).view(-1, *x.shape[1:])
            iters[active] += 1
        return self._clamp(x + (1 + self.overshoot) * r_tot), iters
