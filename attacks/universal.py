"""Universal adversarial perturbations (Moosavi-Dezfooli, Fawzi, Fawzi and Frossard, CVPR 2017, Algorithm 1).

One perturbation ``v`` for all images: pass over the training images in random order; wherever ``x + v`` is
still classified as ``x`` is, DeepFool finds the minimal extra ``dv`` sending ``x + v`` across a boundary, and
``v <- P_{p, xi}(v + dv)`` (projection onto the L2 or L-inf ball of radius xi), the update kept only when
DeepFool converged within ``max_iter_df`` (as the reference code does). Stop when the fooling rate on the
training images reaches ``1 - delta`` or after ``max_passes`` passes.

Two departures from the reference code, both documented in docs/fidelity.md:

- The box: the reference code has none (``x + v`` may leave the image range). Here the classifier always sees
  ``clamp(x + v, 0, 1)``, while fitting and when attacking, and the inner DeepFool clips its iterates to [0, 1]
  (``DeepFool(box=True)``, as foolbox and ART do); ``v`` itself is not clamped, only projected onto the ball.
- xi's scale: ``xi`` is a norm in the images' own units (pixels in [0, 1] here, [0, 255] in the paper). What
  matters is its share of a typical image's norm: the paper's ImageNet setting, xi = 2000 (L2) against images of
  norm about 50,000, is about 4%; MNIST-5k digits have a median L2 norm of 9.2, so this class's default xi = 4
  is 43% of it, ten times the paper's share. ``configs/attacks/uap-paper-scale.yaml`` sets xi = 0.37 (4%).
  (The paper's L-inf setting, xi = 10 of 255, is 0.039 in [0, 1] pixels.)

The loop is exactly sequential (the same ``v`` as checking and attacking one image at a time); only the
bookkeeping is batched: one forward tells which of the next few images ``v`` already fools, looking ahead
about twice the expected run of fooled images (from the fooling rate seen so far in the pass), and the rest
of that look-ahead is re-checked only after ``v`` changes. DeepFool on one image spends no extra forward
for its candidate classes and no backward once the label has changed. On the CPU the fit runs PyTorch's own
convolution kernels rather than oneDNN's, whose per-call set-up dominates at one image (``native_cpu_conv``:
about 2x faster here; float rounding differs, the algorithm does not).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from physadv.attacks.base import Attack, check_images, check_nonneg, check_positive_int, native_cpu_conv, predict
from physadv.attacks.deepfool import DeepFool
from physadv.attacks.gradient import project
from physadv.core.errors import PhysadvError
from physadv.core.progress import progress


@dataclass
class UAPFit:
    """The universal perturbation and how it was found."""

    perturbation: torch.Tensor          # 1 x C x H x W
    fooling_rate_train: float
    passes: int
    deepfool_calls: int
    updates: int
    seconds: float
    history: list[float] = field(default_factory=list)  # training fooling rate after each pass
    pass_seconds: list[float] = field(default_factory=list)  # time since the start at the end of each pass


def random_noise_like(v: torch.Tensor, n: int, norm: str, generator: torch.Generator) -> torch.Tensor:
    """``n`` random perturbations with the same L2 (Gaussian direction) or L-inf (random signs) norm as ``v``."""
    shape = (n, *v.shape[1:])
    if norm == "linf":
        return torch.randint(0, 2, shape, generator=generator).float().mul(2).sub(1) * v.abs().max()
    d = torch.randn(shape, generator=generator)
    return d / d.flatten(1).norm(dim=1).view(-1, *[1] * (d.ndim - 1)) * v.norm()


class UniversalPerturbation(Attack):
    """``uap = UniversalPerturbation(model, xi=0.2, norm="linf")``; ``uap.fit(train_images)``; ``adv = uap(images)``."""

    name = "uap"

    def __init__(self, model: nn.Module, xi: float = 4.0, norm: str = "l2", delta: float = 0.2, max_passes: int = 5,
                 overshoot: float = 0.02, max_iter_df: int = 10, candidates: int = 10, seed: int = 0,
                 chunk: int = 64, batch_size: int = 256):
        check_nonneg(xi=xi, delta=delta, overshoot=overshoot)
        check_positive_int(max_passes=max_passes, max_iter_df=max_iter_df, chunk=chunk)
        if norm not in ("l2", "linf"):
            raise PhysadvError(f"norm must be 'l2' or 'linf', got '{norm}'")
        super().__init__(model, batch_size)
        self.xi, self.norm, self.delta, self.max_passes = xi, norm, delta, max_passes
        self.max_iter_df, self.seed, self.chunk = max_iter_df, seed, chunk
        self.deepfool = DeepFool(model, overshoot=overshoot, max_iter=max_iter_df, candidates=candidates)
        self.perturbation: torch.Tensor | None = None

    def fit(self, images: torch.Tensor, show_progress: bool = True) -> UAPFit:
        check_images(images, "training images")
        with native_cpu_conv(self.device):
            return self._fit(images, show_progress)

    def _fit(self, images: torch.Tensor, show_progress: bool) -> UAPFit:
        start = time.perf_counter()
        dev = self.device
        x_all = images.to(dev, torch.float32)
        clean = predict(self.model, x_all).to(dev)
        v = torch.zeros((1, *images.shape[1:]), device=dev)
        gen = torch.Generator().manual_seed(self.seed)
        history: list[float] = []
        pass_seconds: list[float] = []
        calls = updates = 0
        fooling = 0.0
        for p in range(self.max_passes):
            order = torch.randperm(len(images), generator=gen).to(dev)
            pos = seen = skipped = 0
            bar = progress(total=len(order), desc=f"uap pass {p + 1}", disable=not show_progress)
            while pos < len(order):
                # look ahead ~2x the expected run of fooled images, 1 / (1 - rate), rate seen so far in this pass
                look = min(self.chunk, max(1, math.ceil(2 * (seen + 1) / (seen + 1 - skipped))))
                idx = order[pos:pos + look]
                with torch.no_grad():
                    alive = self.model((x_all[idx] + v).clamp(0, 1)).argmax(1) == clean[idx]  # not fooled by v yet
                done = len(idx)
                for j in alive.nonzero().flatten().tolist():
                    k = idx[j:j + 1]
                    xv = (x_all[k] + v).clamp(0, 1)
                    adv, iters = self.deepfool._attack(xv, clean[k], None)
                    calls += 1
                    if int(iters[0]) < self.max_iter_df:  # DeepFool converged: keep its update
                        v = project(v + (adv - xv), self.xi, self.norm)
                        updates += 1
                        done = j + 1  # v changed: what follows must be checked again
                        break
                skipped += done - int(alive[:done].sum())
                seen += done
                pos += done
                bar.update(done)
            bar.close()
            fooling = float((predict(self.model, (x_all + v).clamp(0, 1)).to(dev) != clean).float().mean())
            history.append(round(fooling, 4))
            pass_seconds.append(round(time.perf_counter() - start, 3))
            if fooling >= 1 - self.delta:
                break
        self.perturbation = v.detach().cpu()
        return UAPFit(self.perturbation, fooling, len(history), calls, updates, time.perf_counter() - start, history,
                      pass_seconds)

    def _attack(self, x, y, target):
        if self.perturbation is None:
            raise PhysadvError("the universal perturbation is not fitted: call fit(train_images) first")
        if tuple(self.perturbation.shape[1:]) != tuple(x.shape[1:]):
            raise PhysadvError(f"the universal perturbation is {tuple(self.perturbation.shape[1:])}, images are {tuple(x.shape[1:])}")
        return (x + self.perturbation.to(x.device)).clamp(0, 1), 0
