"""The one call shape of every attack, its result, and input checks.

``attack = FGSM(model, eps=0.1)``; ``adversarial = attack(images, labels)``; ``attack.run(images, labels)``
returns an :class:`AttackResult` with the per-sample perturbation, its norms, iterations and success.
Images are ``N x C x H x W`` in [0, 1]; adversarial images are clamped to [0, 1].
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from physadv.core.errors import PhysadvError


@dataclass
class AttackResult:
    """What an attack did to each image (all tensors on the CPU, first dimension N)."""

    images: torch.Tensor        # clean images
    adversarial: torch.Tensor   # attacked images, in [0, 1] (unless the attack runs with box=False)
    labels: torch.Tensor        # reference labels (true labels, or the model's own predictions)
    clean_pred: torch.Tensor    # the model's prediction on the clean images
    pred: torch.Tensor          # the model's prediction on the adversarial images
    success: torch.Tensor       # bool: misclassified (untargeted) or classified as ``target`` (targeted)
    iterations: torch.Tensor    # gradient steps spent per image (0 for images already misclassified)
    seconds: float              # wall time of the whole run
    target: torch.Tensor | None = None
    extras: dict = field(default_factory=dict)  # attack-specific per-sample tensors (e.g. FGSM's minimal eps)

    @property
    def perturbation(self) -> torch.Tensor:
        return self.adversarial - self.images

    def norms(self, p: float = 2) -> torch.Tensor:
        return self.perturbation.flatten(1).norm(p=p, dim=1)

    def rho(self, p: float = 2) -> torch.Tensor:
        """Per-sample ||r||_p / ||x||_p (DeepFool's robustness measure)."""
        return self.norms(p) / self.images.flatten(1).norm(p=p, dim=1).clamp_min(1e-12)

    def metrics(self) -> dict:
        from physadv.attacks.metrics import attack_metrics

        return attack_metrics(self)


def check_images(images: torch.Tensor, what: str = "images") -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise PhysadvError(f"{what} must be an N x C x H x W tensor, got {shape}")
    if not torch.is_floating_point(images):
        raise PhysadvError(f"{what} must be float in [0, 1], got dtype {images.dtype}")
    if images.numel():
        lo, hi = float(images.min()), float(images.max())
        if not (lo >= 0.0 and hi <= 1.0):  # also rejects NaN
            raise PhysadvError(f"{what} must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")


def check_labels(labels: torch.Tensor, n: int, num_classes: int | None, what: str = "labels") -> torch.Tensor:
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or len(labels) != n:
        raise PhysadvError(f"{what} must be a vector of {n} class indices (one per image), got shape {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise PhysadvError(f"{what} must be integer class indices, got dtype {labels.dtype}")
    if n and num_classes is not None and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise PhysadvError(f"{what} must lie in [0, {num_classes - 1}], got [{int(labels.min())}, {int(labels.max())}]")
    return labels.long()


def check_nonneg(**values: float) -> None:
    for name, v in values.items():
        if v is None or not (float(v) >= 0):
            raise PhysadvError(f"{name} must be >= 0, got {v}")


def check_positive_int(**values: int) -> None:
    for name, v in values.items():
        if int(v) != v or v < 1:
            raise PhysadvError(f"{name} must be a positive integer, got {v}")


def model_device(model: nn.Module) -> torch.device:
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


@contextmanager
def native_cpu_conv(device: torch.device):
    """Run CPU convolutions with PyTorch's own kernels instead of oneDNN's (restored afterwards): at UAP's
    one-image steps oneDNN's per-call set-up dominates, and DeepFool's input-gradient backwards run about 2x
    faster on LeNet. Float rounding differs, and with it which of tied max-pool inputs gets the gradient; the
    algorithms do not."""
    old = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = old and torch.device(device).type != "cpu"
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = old


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    dev = model_device(model)
    out = [model(images[i:i + batch_size].to(dev)).argmax(1).cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


class Attack:
    """Base class: subclasses implement ``_attack(x, y, target) -> (adversarial, iterations)`` on one batch.

    ``labels=None`` attacks the model's own predictions (the papers' k(x)). Minimal-perturbation attacks
    (DeepFool, minimal-eps FGSM) return images the model already misclassifies unchanged, with 0 iterations.
    """

    name = "attack"
    box = True  # adversarial images are clamped to [0, 1] (DeepFool(box=False): the paper's unconstrained setting)

    def __init__(self, model: nn.Module, batch_size: int = 256):
        check_positive_int(batch_size=batch_size)
        self.model = model.eval()
        self.batch_size = batch_size

    @property
    def device(self) -> torch.device:
        return model_device(self.model)

    @property
    def num_classes(self) -> int | None:
        return getattr(self.model, "num_classes", None)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                 target: torch.Tensor | None = None) -> torch.Tensor:
        """The adversarial images only (no predictions or metrics on top of the attack itself)."""
        return self._generate(*self._check(images, labels, target))[0]

    def run(self, images: torch.Tensor, labels: torch.Tensor | None = None,
            target: torch.Tensor | None = None) -> AttackResult:
        """The attack plus what it did: predictions before and after, success, iterations, time."""
        images, labels, target = self._check(images, labels, target)
        clean_pred = predict(self.model, images)
        labels = clean_pred.clone() if labels is None else labels
        adversarial, iterations, extras, seconds = self._generate(images, labels, target)
        pred = predict(self.model, adversarial)
        success = pred == target if target is not None else pred != labels
        return AttackResult(images.detach().cpu(), adversarial, labels.cpu(), clean_pred, pred, success,
                            iterations, seconds, target, extras)

    def _check(self, images, labels, target):
        check_images(images)
        n = len(images)
        if labels is not None:
            labels = check_labels(labels, n, self.num_classes)
        if target is not None:
            target = check_labels(target, n, self.num_classes, "target")
        return images, labels, target

    def _generate(self, images, labels, target):
        """Run ``_attack`` batch by batch; ``labels=None`` means the model's own predictions."""
        from physadv.core.progress import progress

        start = time.perf_counter()
        n = len(images)
        advs, iters, extras = [], [], {}
        for i in progress(range(0, n, self.batch_size), desc=self.name, disable=n <= self.batch_size):
            sl = slice(i, i + self.batch_size)
            x = images[sl].to(self.device, torch.float32)
            if labels is None:
                with torch.no_grad():
                    y = self.model(x).argmax(1)
            else:
                y = labels[sl].to(self.device)
            t = target[sl].to(self.device) if target is not None else None
            adv, it, *more = self._attack(x, y, t)
            advs.append((adv.detach().clamp(0, 1) if self.box else adv.detach()).cpu())
            iters.append(torch.as_tensor(it).expand(len(x)).cpu().long())
            for k, v in (more[0] if more else {}).items():
                extras.setdefault(k, []).append(v.detach().cpu())
        adversarial = torch.cat(advs) if advs else images.detach().cpu().clone()
        iterations = torch.cat(iters) if iters else torch.zeros(0, dtype=torch.long)
        return adversarial, iterations, {k: torch.cat(v) for k, v in extras.items()}, time.perf_counter() - start

    def _attack(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None):
        """One batch on the model's device: ``(adversarial, iterations[, {name: per-sample tensor}])``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        params = {k: v for k, v in vars(self).items() if k != "model"}
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in params.items())})"
