"""The sign-gradient family: FGSM (Goodfellow et al. 2015), BIM (Kurakin et al. 2017), PGD (Madry et al. 2018),
and the FGSM baseline of DeepFool's table: the paper's one eps that misclassifies 90% of the set
(``fgsm_baseline``), and as an extra the smallest eps that misclassifies each image (``MinimalFGSM``).

Untargeted attacks ascend the cross-entropy of the true label; with ``target`` they descend the
cross-entropy of the target label (targeted FGSM: ``x - eps * sign(grad_x J(x, t))``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from physadv.attacks.base import Attack, check_nonneg, check_positive_int, predict
from physadv.core.errors import PhysadvError


def loss_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """grad_x of the attack objective: CE(f(x), y) to ascend, or -CE(f(x), target) when targeted."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    loss = -F.cross_entropy(logits, target, reduction="sum") if target is not None else F.cross_entropy(logits, y, reduction="sum")
    (g,) = torch.autograd.grad(loss, x)
    return g


def _flat_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (t.ndim - 1))


def project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Project a perturbation onto the L-inf or L2 ball of radius eps."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    return delta * (eps / _flat_norm(delta)).clamp(max=1.0)


class FGSM(Attack):
    """Fast gradient sign method: one step ``x + eps * sign(grad_x J(x, y))``."""

    name = "fgsm"

    def __init__(self, model: nn.Module, eps: float = 0.1, batch_size: int = 256):
        check_nonneg(eps=eps)
        super().__init__(model, batch_size)
        self.eps = eps

    def _attack(self, x, y, target):
        g = loss_gradient(self.model, x, y, target)
        return (x + self.eps * g.sign()).clamp(0, 1), 1


class PGD(Attack):
    """Projected gradient descent (Madry et al.) in the L-inf or L2 ball, with a random start.

    L-inf steps are ``alpha * sign(g)``, L2 steps ``alpha * g / ||g||_2``; after each step the perturbation
    is projected onto the eps-ball and the image clamped to [0, 1].
    """

    name = "pgd"

    def __init__(self, model: nn.Module, eps: float = 0.3, alpha: float = 0.01, steps: int = 40, norm: str = "linf",
                 random_start: bool = True, seed: int = 0, batch_size: int = 256):
        check_nonneg(eps=eps, alpha=alpha)
        check_positive_int(steps=steps)
        if norm not in ("linf", "l2"):
            raise PhysadvError(f"norm must be 'linf' or 'l2', got '{norm}'")
        super().__init__(model, batch_size)
        self.eps, self.alpha, self.steps, self.norm = eps, alpha, steps, norm
        self.random_start, self.seed = random_start, seed

    def _start(self, x: torch.Tensor) -> torch.Tensor:
        if not self.random_start:
            return torch.zeros_like(x)
        g = torch.Generator(device="cpu").manual_seed(self.seed)
        if self.norm == "linf":
            d = (torch.rand(x.shape, generator=g) * 2 - 1) * self.eps
        else:  # uniform in the L2 ball: a random direction, radius eps * u^(1/d)
            d = torch.randn(x.shape, generator=g)
            u = torch.rand(len(x), generator=g).view(-1, *[1] * (x.ndim - 1))
            d = d / _flat_norm(d) * self.eps * u ** (1.0 / x[0].numel())
        return d.to(x.device, x.dtype)

    def _attack(self, x, y, target):
        adv = (x + self._start(x)).clamp(0, 1)
        for _ in range(self.steps):
            g = loss_gradient(self.model, adv, y, target)
            step = g.sign() if self.norm == "linf" else g / _flat_norm(g)
            adv = (x + project(adv + self.alpha * step - x, self.eps, self.norm)).clamp(0, 1)
        return adv, self.steps


class BIM(PGD):
    """Basic iterative method (Kurakin et al. 2017): L-inf PGD from the clean image.

    Defaults follow the paper: ``alpha = 1/255`` and ``min(255 eps + 4, 1.25 * 255 eps)`` steps.
    """

    name = "bim"

    def __init__(self, model: nn.Module, eps: float = 0.1, alpha: float = 1 / 255, steps: int | None = None,
                 batch_size: int = 256):
        check_nonneg(eps=eps)
        steps = steps or max(1, int(math.ceil(min(255 * eps + 4, 1.25 * 255 * eps))))
        super().__init__(model, eps, alpha, steps, "linf", random_start=False, batch_size=batch_size)


class MinimalFGSM(Attack):
    """FGSM with the smallest eps that misclassifies each image: a per-image variant of the baseline of DeepFool's
    Table 1 (the paper's own definition, one eps for 90% of the set, is :func:`fgsm_baseline`).

    The FGSM direction ``sign(grad_x J(x, y))`` is fixed; eps is searched on a grid up to ``eps_max`` and
    then refined by bisection between the last grid value that fails and the first that fools. Images that no
    eps up to ``eps_max`` fools are returned at ``eps_max`` and count as failures. ``result.extras["eps"]``
    holds the per-sample eps.
    """

    name = "fgsm-min"

    def __init__(self, model: nn.Module, eps_max: float = 1.0, grid: int = 50, refine: int = 12, batch_size: int = 256):
        check_nonneg(eps_max=eps_max)
        check_positive_int(grid=grid)
        super().__init__(model, batch_size)
        self.eps_max, self.grid, self.refine = eps_max, grid, refine

    @torch.no_grad()
    def _fooled(self, x, s, eps, y, target):
        pred = self.model((x + eps.view(-1, 1, 1, 1) * s).clamp(0, 1)).argmax(1)
        return pred == target if target is not None else pred != y

    def _attack(self, x, y, target):
        s = loss_gradient(self.model, x, y, target).sign()
        n = len(x)
        hi = torch.full((n,), self.eps_max, device=x.device)
        lo = torch.zeros(n, device=x.device)
        found = self._fooled(x, s, lo, y, target)  # already misclassified: eps 0
        hi[found] = 0.0
        for e in torch.linspace(0, self.eps_max, self.grid + 1, device=x.device)[1:]:
            new = ~found & self._fooled(x, s, e.expand(n), y, target)
            hi[new] = e
            lo[~found & ~new] = e
            found |= new
        lo[~found] = self.eps_max
        for _ in range(self.refine if found.any() else 0):
            mid = (lo + hi) / 2
            ok = self._fooled(x, s, mid, y, target) & found
            hi = torch.where(ok, mid, hi)
            lo = torch.where(ok | ~found, lo, mid)
        adv = (x + hi.view(-1, 1, 1, 1) * s).clamp(0, 1)
        return adv, 1, {"eps": hi}


def fgsm_baseline(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, rate: float = 0.9, box: bool = True,
                  eps_max: float = 1.0, grid: int = 100, refine: int = 12, batch_size: int = 512) -> dict:
    """The fast gradient sign column of DeepFool's Tables 1 and 2, as the paper defines it (section 4.1).

    The estimated minimal perturbation is ``r(x) = eps * sign(grad_x J(theta, x, y))`` with one eps for the whole
    set: the smallest eps such that ``rate`` (90%) of the images are misclassified after perturbation (grid up to
    ``eps_max``, refined by bisection). rho_adv is eq. (15) over the whole set, ``mean ||r(x)||_2 / ||x||_2`` of
    that ``r`` (Table 2: ``mean ||r(x)||_inf / ||x||_inf``). The paper has no [0, 1] box (neither its DeepFool
    nor this baseline clips); ``box=True`` judges misclassification on ``clamp(x + r, 0, 1)`` instead, and
    ``rho_adv_l2_applied`` is the norm of the perturbation actually applied (after clamping), over the
    misclassified images.
    """
    dev = next(model.parameters()).device
    signs = torch.cat([loss_gradient(model, images[i:i + batch_size].to(dev), labels[i:i + batch_size].to(dev)).sign().cpu()
                       for i in range(0, len(images), batch_size)])

    def perturbed(eps: float) -> torch.Tensor:
        adv = images + eps * signs
        return adv.clamp(0, 1) if box else adv

    def fooled(eps: float) -> torch.Tensor:
        return predict(model, perturbed(eps), batch_size) != labels

    need = math.ceil(rate * len(images) - 1e-9)  # images to misclassify, counted exactly

    lo, hi = 0.0, None
    for e in torch.linspace(0, eps_max, grid + 1)[1:].tolist():
        if int(fooled(e).sum()) >= need:
            hi = e
            break
        lo = e
    if hi is None:
        raise PhysadvError(f"no FGSM eps up to eps_max={eps_max} misclassifies {rate:.0%} of the images")
    for _ in range(refine):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if int(fooled(mid).sum()) >= need else (mid, hi)
    ok = fooled(hi)
    x = images.flatten(1)
    r = hi * signs.flatten(1)
    applied = perturbed(hi).flatten(1) - x
    rho = r.norm(dim=1) / x.norm(dim=1).clamp_min(1e-12)
    rho_inf = r.abs().amax(1) / x.abs().amax(1).clamp_min(1e-12)
    return {"definition": "DeepFool (CVPR 2016) sec. 4.1, eq. 15: r(x) = eps * sign(grad_x J), one eps for the set, the "
                          f"smallest misclassifying {rate:.0%} of it; rho_adv = mean over all images of ||r||_2 / ||x||_2",
            "box": box, "rate": rate, "eps": hi, "misclassified": round(float(ok.float().mean()), 4),
            "rho_adv_l2": round(float(rho.mean()), 6), "rho_adv_linf": round(float(rho_inf.mean()), 6),
            "rho_adv_l2_applied": round(float((applied.norm(dim=1) / x.norm(dim=1).clamp_min(1e-12))[ok].mean()), 6)}
