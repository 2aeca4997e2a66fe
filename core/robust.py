"""Projected gradient descent in the L-inf ball: the inner maximisation of adversarial training, and robust accuracy.

Madry et al. 2018 ("Towards deep learning models resistant to adversarial attacks") train on the saddle point
problem of their eq. 2.1, ``min_theta E_(x,y) [ max_{delta in S} L(theta, x + delta, y) ]`` with
``S = {delta : ||delta||_inf <= eps}``, and solve the inner maximisation with PGD (their sec. 2.1):

    x^{t+1} = Proj_{x + S}( x^t + alpha * sign(grad_x L(theta, x^t, y)) ),

started from a uniformly random point of the ball. Here the projection also keeps pixels in [0, 1], the
image range every model in this project takes. ``core`` cannot import ``attacks``, so this one loop serves
adversarial training (``core.train``) and the robust accuracy the zoo reports; ``attacks.PGD`` is the
general attack with its options (L2, targeted, restarts).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from physadv.core.errors import PhysadvError


@dataclass
class PGDConfig:
    """L-inf PGD, in units of 1/255 of the pixel range (Madry et al.'s CIFAR-10 setting: eps 8, step 2, 7 steps
    for training, 20 steps for evaluation)."""

    eps_255: float = 8.0
    step_255: float = 2.0
    steps: int = 20
    random_start: bool = True

    def validate(self) -> None:
        if self.eps_255 < 0 or self.step_255 < 0:
            raise ValueError(f"eps_255 and step_255 must be >= 0, got {self.eps_255} and {self.step_255}")
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")

    @property
    def eps(self) -> float:
        return self.eps_255 / 255

    @property
    def step(self) -> float:
        return self.step_255 / 255


def pgd_linf(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, step: float, steps: int,
             random_start: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    """The PGD adversary of Madry et al. 2018 (sec. 2.1): ``steps`` signed-gradient ascent steps of size ``step`` on
    the cross-entropy, each projected onto ``{x' : ||x' - x||_inf <= eps, 0 <= x' <= 1}``. Returns detached images.

    The model's mode is left as it is (call ``model.eval()`` first to attack without dropout); its parameter
    gradients are not touched.
    """
    if eps < 0 or step < 0 or steps < 0:
        raise PhysadvError(f"pgd: eps, step and steps must be >= 0, got {eps}, {step}, {steps}")
    x0 = images.detach()
    x = x0.clone()
    if random_start and eps > 0:
        noise = torch.rand(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        x = (x0 + (2 * noise - 1) * eps).clamp(0, 1)
    for _ in range(steps):
        x.requires_grad_(True)
        loss = F.cross_entropy(model(x), labels)
        (grad,) = torch.autograd.grad(loss, x)
        x = x.detach() + step * grad.sign()
        x = torch.min(torch.max(x, x0 - eps), x0 + eps).clamp(0, 1)
    return x.detach()


def robust_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, cfg: PGDConfig, seed: int = 0,
                    batch_size: int = 200, progress: bool = True) -> dict:
    """Clean accuracy and accuracy under ``cfg``'s PGD (an image counts as robust when its adversary is classified
    correctly; PGD starts from every image, also the misclassified ones, which stay wrong at any eps)."""
    from physadv.core.progress import progress as bar

    cfg.validate()
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    clean = adv = 0
    for i in bar(range(0, len(images), batch_size), desc=f"PGD-{cfg.steps} eps {cfg.eps_255:g}/255", disable=not progress):
        x, y = images[i : i + batch_size].to(device), labels[i : i + batch_size].to(device)
        with torch.no_grad():
            clean += int((model(x).argmax(1) == y).sum())
        x_adv = pgd_linf(model, x, y, cfg.eps, cfg.step, cfg.steps, cfg.random_start, gen)
        with torch.no_grad():
            adv += int((model(x_adv).argmax(1) == y).sum())
    n = max(1, len(images))
    return {"clean_accuracy": clean / n, "robust_accuracy": adv / n, "n": len(images), "eps_255": cfg.eps_255,
            "step_255": cfg.step_255, "steps": cfg.steps, "random_start": cfg.random_start}
