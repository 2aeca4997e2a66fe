"""Train and evaluate victim classifiers: seeded, with progress bars, cached by name and config hash.

    clf = get_classifier("lenet-mnist")          # trains once, then loads from the cache
    clf = get_classifier(load_config(TrainConfig, packaged("core/lenet_mnist.yaml")))  # the shipped config
    acc = evaluate(clf, load_dataset("mnist", "test"))["accuracy"]

The cache lives in ``$PHYSADV_CACHE/classifiers`` (default ``~/.cache/physadv``); each entry is a
safetensors file whose JSON metadata holds the architecture, class names, config and test accuracy.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Optional

import numpy as np
import torch
from torch import nn

from physadv.core.config import added_later, config_hash, from_dict, to_dict
from physadv.core.data import DataConfig, ImageSet
from physadv.core.errors import PhysadvError
from physadv.core.io import cache_dir, load_checkpoint, load_state_into, save_checkpoint
from physadv.core.models import Classifier, build_classifier, get_arch
from physadv.core.progress import progress as progress_bar
from physadv.core.robust import PGDConfig, pgd_linf

# --------------------------------------------------------------------------- training augmentations
# name -> factory(augment_args) -> a function on a training batch (N x C x H x W in [0, 1]) returning the augmented
# batch. Packages above core register theirs on import (``physadv.rendering.signs`` registers ``eot``).
_AUGMENTATIONS: dict[str, Callable[[dict], Callable[[torch.Tensor], torch.Tensor]]] = {}


def register_augmentation(name: str, factory: Callable[[dict], Callable[[torch.Tensor], torch.Tensor]]) -> None:
    """Make ``TrainConfig.augment: name`` available: ``factory(augment_args)`` builds the batch transformation."""
    _AUGMENTATIONS[name] = factory


def build_augmentation(name: str, args: dict) -> Callable[[torch.Tensor], torch.Tensor] | None:
    if name == "none":
        return None
    if name not in _AUGMENTATIONS:
        hint = " (it registers on `import physadv.rendering.signs`)" if name == "eot" else ""
        raise PhysadvError(f"augment: unknown training augmentation '{name}'{hint}; known: none, {', '.join(sorted(_AUGMENTATIONS))}")
    return _AUGMENTATIONS[name](dict(args))


@dataclass
class TrainConfig:
    """How to train one classifier (``configs/core/*.yaml``)."""

    model: str = "lenet-mnist"
    data: DataConfig = field(default_factory=DataConfig)
    model_args: dict = field(default_factory=dict)  # e.g. {width: 0.5} for nin-cifar
    epochs: int = 12
    batch_size: int = 64
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    augment_shift: int = 2  # random translation (pixels) during training; 0 turns it off
    label_smoothing: float = 0.0
    seed: int = 0
    device: str = "auto"
    # Training on the PGD adversary of every batch (Madry et al. 2018, eq. 2.1), e.g. {eps_255: 8, step_255: 2,
    # steps: 7}; the adversary is made with the model in eval mode (no dropout), after the other augmentations.
    adversarial: Optional[PGDConfig] = added_later(None)
    # A registered batch augmentation applied after the random shift ('none', or e.g. 'eot': the camera-effects
    # stack of rendering.augment, registered by physadv.rendering.signs); augment_args configure it.
    augment: str = added_later("none")
    augment_args: dict = added_later(factory=dict)
    # Fine-tuning: the recipe whose trained weights training starts from (trained and cached first when missing),
    # e.g. the adversarial fine-tuning of Jeddi et al. 2020; same model and model_args.
    init: Optional[TrainConfig] = added_later(None)

    def validate(self) -> None:
        get_arch(self.model)
        if self.init is not None and (self.init.model, self.init.model_args) != (self.model, self.model_args):
            start, this = ((c.model + (f" {c.model_args}" if c.model_args else "")) for c in (self.init, self))
            raise ValueError(f"init: starts from a {start} but trains a {this}; fine-tuning keeps the model and model_args")
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")

    def cache_key(self) -> str:
        d = to_dict(self, for_hash=True)
        d.pop("device")
        if self.init is not None:
            d["init"] = self.init.cache_key()
        return f"{self.model}-{config_hash(d)}"


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise PhysadvError(f"device must be auto, cpu or cuda, got '{device}'")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise PhysadvError(f"device '{device}' asked for, but no CUDA device is available")
    return torch.device(device)


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def random_shift(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels (zero fill), a cheap augmentation."""
    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    pad = torch.nn.functional.pad(x, (max_shift,) * 4)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    rows = (dy.view(n, 1) + torch.arange(h).view(1, h)).to(x.device)
    cols = (dx.view(n, 1) + torch.arange(w).view(1, w)).to(x.device)
    idx = torch.arange(n, device=x.device).view(n, 1, 1)
    return pad.permute(0, 2, 3, 1)[idx, rows.view(n, h, 1), cols.view(n, 1, w)].permute(0, 3, 1, 2)


def descend(opt: torch.optim.Optimizer, loss: torch.Tensor, where: str, hint: str = "") -> None:
    """One optimiser step on ``loss``. A NaN or infinite loss steps nothing and is a ``PhysadvError``
    naming ``where`` (and the ``hint``, e.g. which learning rate to lower)."""
    if not torch.isfinite(loss):
        raise PhysadvError(f"{where}: the loss became {float(loss.detach())}" + (f"; {hint}" if hint else ""))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def train_classifier(cfg: TrainConfig, train_set: ImageSet | None = None, test_set: ImageSet | None = None,
                     progress: bool = True) -> tuple[Classifier, dict]:
    """Train from scratch, or from ``cfg.init``'s weights; returns the model (eval mode) and metrics."""
    device = resolve_device(cfg.device)
    # before seeding: training the init here, or loading it from the cache, leaves the same random state behind
    start = get_classifier(cfg.init, progress=progress) if cfg.init is not None else None
    gen = seed_everything(cfg.seed)
    train_set = train_set or cfg.data.load("train")
    test_set = test_set or cfg.data.load("test")
    if len(train_set) < cfg.batch_size:
        raise PhysadvError(f"dataset '{train_set.name}' has {len(train_set)} images, fewer than batch_size {cfg.batch_size}")
    spec = get_arch(cfg.model)
    if spec.pretrained_only:
        raise PhysadvError(f"'{cfg.model}' is used with weights from a local file (--weights PATH), not trained here")
    input_size = tuple(train_set.shape)
    if input_size[0] != spec.input_size[0]:
        raise PhysadvError(f"model '{cfg.model}' wants {spec.input_size[0]}-channel images, dataset '{train_set.name}' has {input_size[0]}")
    model = build_classifier(cfg.model, train_set.classes, input_size=input_size, **cfg.model_args).to(device)
    if start is not None:
        load_state_into(model, start.state_dict(), f"init ({cfg.init.cache_key()})")
    params = model.net.parameters()
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True)
    loader = train_set.loader(cfg.batch_size, shuffle=True, seed=cfg.seed, drop_last=True)
    steps = cfg.epochs * len(loader)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps) if cfg.lr_schedule == "cosine"
             else torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    augment = build_augmentation(cfg.augment, cfg.augment_args)
    start, cpu_start = time.time(), time.process_time()
    history = []
    bar = progress_bar(total=steps, desc=f"train {cfg.model}", disable=not progress)
    for epoch in range(cfg.epochs):
        model.train()
        total, n = 0.0, 0
        for x, y in loader:
            x = random_shift(x, cfg.augment_shift, gen)
            x = (augment(x) if augment else x).to(device)
            y = y.to(device)
            if cfg.adversarial is not None:
                x = adversarial_batch(model, x, y, cfg.adversarial, gen)
            loss = loss_fn(model(x), y)
            descend(opt, loss, f"training {cfg.model}, epoch {epoch + 1}", f"lower lr (now {cfg.lr})")
            sched.step()
            total += loss.item() * len(y)
            n += len(y)
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{total / n:.3f}")
        history.append(total / n)
    bar.close()
    model.eval()
    metrics = evaluate(model, test_set, progress=False)
    # wall seconds depend on what else runs; CPU seconds (all threads) do not, and on one thread they are the wall
    # time on a quiet core
    metrics.update(train_seconds=round(time.time() - start, 2), train_cpu_seconds=round(time.process_time() - cpu_start, 2),
                   train_loss=history, train_size=len(train_set),
                   test_size=len(test_set), dataset=train_set.name)
    return model, metrics


def adversarial_batch(model: Classifier, x: torch.Tensor, y: torch.Tensor, adv: PGDConfig, gen: torch.Generator) -> torch.Tensor:
    """The inner maximisation of Madry et al. 2018 (eq. 2.1) for one batch: PGD with the model in eval mode."""
    model.eval()
    try:
        return pgd_linf(model, x, y, adv.eps, adv.step, adv.steps, adv.random_start, gen)
    finally:
        model.train()


@torch.no_grad()
def evaluate(model: Classifier, data: ImageSet, batch_size: int = 256, progress: bool = True) -> dict:
    """Accuracy, per-class accuracy and the confusion matrix of ``model`` on ``data``."""
    if tuple(data.shape) != tuple(model.input_size):
        raise PhysadvError(f"dataset '{data.name}' has images of {tuple(data.shape)}, the model wants {model.input_size}")
    if len(data.classes) > model.num_classes or (int(data.labels.max()) if len(data) else 0) >= model.num_classes:
        raise PhysadvError(f"dataset '{data.name}' has labels beyond the model's {model.num_classes} classes")
    model.eval()
    device = next(model.parameters()).device
    preds = []
    for i in progress_bar(range(0, len(data), batch_size), desc="evaluate", disable=not progress):
        preds.append(model(data.images[i : i + batch_size].to(device)).argmax(1).cpu())
    pred = torch.cat(preds)
    k = model.num_classes
    conf = torch.zeros(k, k, dtype=torch.long)
    conf.index_put_((data.labels, pred), torch.ones_like(pred), accumulate=True)
    per_class = {model.classes[c]: round(float(conf[c, c] / conf[c].sum()), 4) for c in range(k) if conf[c].sum() > 0}
    return {"accuracy": float((pred == data.labels).float().mean()), "per_class_accuracy": per_class,
            "confusion": conf.tolist(), "n": len(data)}


# --------------------------------------------------------------------------- cache and files
def save_classifier(path: str | Path, model: Classifier, extra: dict | None = None) -> Path:
    meta = {"arch": model.arch, "classes": model.classes, "input_size": list(model.input_size), "model_args": model.arch_args}
    meta.update(extra or {})
    return save_checkpoint(path, model.state_dict(), meta)


def load_classifier(path: str | Path, device: str | torch.device = "cpu") -> Classifier:
    """A classifier saved by physadv (safetensors + metadata naming its architecture)."""
    state, meta = load_checkpoint(path)
    if "arch" not in meta or "classes" not in meta:
        raise PhysadvError(f"{path}: no physadv classifier metadata (arch, classes); for torchvision weights use "
                           f"--model NAME --weights {path}")
    args = meta.get("model_args") or meta.get("config", {}).get("model_args", {})  # (older files: in the config)
    model = build_classifier(meta["arch"], meta["classes"], input_size=tuple(meta.get("input_size") or ()) or None, **args)
    load_state_into(model, state, str(path))
    return model.to(device).eval()


def cached_classifier_path(cfg: TrainConfig) -> Path:
    return cache_dir("classifiers") / f"{cfg.cache_key()}.safetensors"


def get_classifier(spec: str | TrainConfig, retrain: bool = False, progress: bool = True,
                   train_set: ImageSet | None = None, test_set: ImageSet | None = None) -> Classifier:
    """The trained classifier for a registry name or config: from the cache, or trained and cached."""
    cfg = spec if isinstance(spec, TrainConfig) else default_train_config(spec)
    path = cached_classifier_path(cfg)
    device = resolve_device(cfg.device)
    if path.is_file() and not retrain:
        model = load_classifier(path, device)
        return model
    model, metrics = train_classifier(cfg, train_set, test_set, progress=progress)
    keep = ("accuracy", "train_seconds", "train_cpu_seconds", "n")
    save_classifier(path, model, {"config": to_dict(cfg), "metrics": {k: metrics[k] for k in keep}})
    return model


def cached_metrics(cfg: TrainConfig) -> dict | None:
    path = cached_classifier_path(cfg)
    if not path.is_file():
        return None
    return load_checkpoint(path)[1].get("metrics")


DEFAULTS: dict[str, dict] = {
    "lenet-mnist": {"model": "lenet-mnist", "epochs": 12, "lr": 1e-3},
    "madry-mnist": {"model": "madry-mnist", "epochs": 12, "lr": 1e-3},
    "fc500-150-10-mnist": {"model": "fc500-150-10-mnist", "epochs": 20, "lr": 1e-3, "augment_shift": 1,
                           "weight_decay": 0.0},
    "nin-mnist": {"model": "nin-mnist", "epochs": 10, "lr": 2e-3},
}


def default_train_config(name: str) -> TrainConfig:
    """The built-in training recipe for a registry name (what ``get_classifier(name)`` trains)."""
    spec = get_arch(name)
    if name in DEFAULTS:
        return from_dict(TrainConfig, DEFAULTS[name], f"built-in recipe for {name}")
    if spec.dataset is None:
        raise PhysadvError(f"'{name}' has no built-in dataset; give a config with data.name and data.root")
    return from_dict(TrainConfig, {"model": name, "data": {"name": spec.dataset}}, f"built-in recipe for {name}")
