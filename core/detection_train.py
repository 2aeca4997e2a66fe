"""Train, cache and evaluate the sign-world detector (``core.detection_signnet``) on a ``DetectionSet``.

Trained once and cached like ``core.train`` caches classifiers: ``$PHYSADV_CACHE/detectors/<key>.safetensors``
where the key hashes the training recipe and the data's own hash (the caller names its data, e.g. the scene
generator's config hash). Training is seeded, shows a progress bar, and writes an atomic checkpoint every
``checkpoint_every`` steps beside the cache entry (``<key>.partial.safetensors``), from which an interrupted run
resumes exactly.

    cfg = DetectorTrainConfig()
    det = get_sign_detector(cfg, train_set, data_key="scenes-abc123")     # trains once, then loads
    metrics = evaluate_detector(det, test_set)                            # AP50 per class and mean
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from physadv.core.config import config_hash, to_dict
from physadv.core.detection import Detector
from physadv.core.detection_data import DetectionSet
from physadv.core.errors import PhysadvError
from physadv.core.io import cache_dir, load_checkpoint, load_state_into, save_checkpoint
from physadv.core.progress import progress as progress_bar

SIGN_NET = "sign-detector"


@dataclass
class DetectorTrainConfig:
    """The sign-world detector's recipe (``configs/signs/detector.yaml``, section ``detector``)."""

    width: float = 1.0  # backbone channels x this
    head_width: int = 32  # the crop classifier's first conv width
    crop_px: int = 32
    crop_margin: float = 0.15
    epochs: int = 2
    batch_size: int = 2
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    clip_grad: float = 10.0
    checkpoint_every: int = 200
    seed: int = 0
    threads: int = 1  # CPU threads while training (0: torch's default); one ran fastest on a shared 2-core machine
    device: str = "cpu"

    def validate(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be at least 1, got {self.epochs} and {self.batch_size}")
        if self.lr <= 0 or self.width <= 0:
            raise ValueError(f"lr and width must be positive, got {self.lr} and {self.width}")
        if self.crop_px % 8:
            raise ValueError(f"crop_px must be a multiple of 8, got {self.crop_px}")

    def arch_args(self) -> dict:
        return {"width": self.width, "head_width": self.head_width, "crop_px": self.crop_px, "crop_margin": self.crop_margin}

    def cache_key(self, data_key: str) -> str:
        d = to_dict(self)
        for k in ("device", "threads", "checkpoint_every"):
            d.pop(k)
        return f"{SIGN_NET}-{config_hash({'recipe': d, 'data': data_key})}"


def cached_detector_path(cfg: DetectorTrainConfig, data_key: str) -> Path:
    return cache_dir("detectors") / f"{cfg.cache_key(data_key)}.safetensors"


def _optimiser(cfg: DetectorTrainConfig, model: torch.nn.Module, steps: int):
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)

    def factor(step: int) -> float:  # linear warm-up, then cosine to 0
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        return 0.5 * (1 + math.cos(math.pi * (step - cfg.warmup_steps) / max(1, steps - cfg.warmup_steps)))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _order(n: int, epochs: int, seed: int) -> torch.Tensor:
    """The image order of the whole run (one seeded permutation per epoch), so a resumed run continues it."""
    g = torch.Generator().manual_seed(seed)
    return torch.cat([torch.randperm(n, generator=g) for _ in range(epochs)])


def _save_partial(path: Path, model, opt, sched, step: int, losses: list[float]) -> None:
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state["rng"] = torch.get_rng_state()  # RPN and RoI sampling draw from it: a resumed run continues it
    meta = {"step": step, "losses": losses, "optimizer": _opt_meta(opt), "scheduler": sched.state_dict()}
    for i, st in enumerate(opt.state_dict()["state"].values()):
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                state[f"opt.{i}.{k}"] = v
    save_checkpoint(path, state, meta)


def _opt_meta(opt) -> dict:
    sd = opt.state_dict()
    return {"param_groups": sd["param_groups"], "keys": [sorted(st) for st in sd["state"].values()]}


def _load_partial(path: Path, model, opt, sched) -> tuple[int, list[float]]:
    tensors, meta = load_checkpoint(path)
    load_state_into(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, str(path))
    state = {i: {k: tensors[f"opt.{i}.{k}"] for k in keys} for i, keys in enumerate(meta["optimizer"]["keys"])}
    opt.load_state_dict({"state": state, "param_groups": meta["optimizer"]["param_groups"]})
    sched.load_state_dict(meta["scheduler"])
    if "rng" in tensors:
        torch.set_rng_state(tensors["rng"])
    return int(meta["step"]), list(meta["losses"])


def train_sign_detector(cfg: DetectorTrainConfig, data: DetectionSet, partial: Path | None = None,
                        progress: bool = True) -> tuple[Detector, dict]:
    """Train the sign-world detector from scratch on ``data`` (resuming from ``partial`` when it exists)."""
    threads = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg, data, partial, progress)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: DetectorTrainConfig, data: DetectionSet, partial: Path | None, progress: bool) -> tuple[Detector, dict]:
    from physadv.core.detection_signnet import build_sign_net
    from physadv.core.train import resolve_device, seed_everything

    cfg.validate()
    if len(data) < cfg.batch_size:
        raise PhysadvError(f"detection set '{data.name}' has {len(data)} images, fewer than batch_size {cfg.batch_size}")
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    h, w = data.image(0).shape[-2:]
    arch_args = {**cfg.arch_args(), "frame_hw": [int(h), int(w)]}
    model = build_sign_net(len(data.classes), **arch_args).to(device)
    per_epoch = len(data) // cfg.batch_size
    steps = cfg.epochs * per_epoch
    opt, sched = _optimiser(cfg, model, steps)
    order = _order(len(data), cfg.epochs, cfg.seed)
    step, losses = (0, [])
    if partial is not None and partial.is_file():
        step, losses = _load_partial(partial, model, opt, sched)
    start = time.time()
    model.train()
    bar = progress_bar(total=steps, initial=step, desc="train sign detector", disable=not progress)
    while step < steps:
        epoch, i = divmod(step, per_epoch)
        idx = order[epoch * len(data) + i * cfg.batch_size: epoch * len(data) + (i + 1) * cfg.batch_size].tolist()
        images = [data.image(j).to(device) for j in idx]
        targets = [{k: v.to(device) for k, v in data.target(j).items()} for j in idx]
        parts = model(images, targets)
        loss = sum(parts.values())
        opt.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            raise PhysadvError(f"training the sign detector, step {step}: the loss became {float(loss)}; lower lr (now {cfg.lr})")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
        opt.step()
        sched.step()
        step += 1
        losses.append(round(float(loss.detach()), 4))
        bar.update(1)
        bar.set_postfix(epoch=epoch + 1, loss=f"{sum(losses[-50:]) / len(losses[-50:]):.3f}")
        if partial is not None and (step % cfg.checkpoint_every == 0 or step == steps):
            _save_partial(partial, model, opt, sched, step, losses)
    bar.close()
    model.eval()
    det = Detector(model, list(data.classes), SIGN_NET, arch_args)
    return det, {"train_seconds": round(time.time() - start, 1), "steps": steps, "train_images": len(data),
                 "loss_first_50": _mean(losses[:50]), "loss_last_50": _mean(losses[-50:])}


def _mean(v: list[float]) -> float | None:
    return round(sum(v) / len(v), 4) if v else None


def get_sign_detector(cfg: DetectorTrainConfig, train_set: DetectionSet | None, data_key: str, retrain: bool = False,
                      progress: bool = True) -> Detector:
    """The sign-world detector of ``cfg`` trained on the data named ``data_key``: from the cache, or trained on
    ``train_set`` (needed only then) and cached."""
    from physadv.core.detection import load_detector, save_detector

    path = cached_detector_path(cfg, data_key)
    if path.is_file() and not retrain:
        return load_detector(path)
    if train_set is None:
        raise PhysadvError(f"no cached sign detector at {path}; give the training scenes to train one")
    partial = path.with_name(path.stem + ".partial.safetensors")
    if retrain and partial.is_file():
        partial.unlink()
    det, metrics = train_sign_detector(cfg, train_set, partial, progress)
    save_detector(path, det, {"config": to_dict(cfg), "data": data_key, "metrics": metrics})
    partial.unlink(missing_ok=True)
    return det


def cached_detector_metrics(cfg: DetectorTrainConfig, data_key: str) -> dict | None:
    path = cached_detector_path(cfg, data_key)
    return load_checkpoint(path)[1].get("metrics") if path.is_file() else None


@torch.no_grad()
def detect_all(det: Detector, data: DetectionSet, batch_size: int = 4, progress: bool = True) -> list[dict]:
    """The detector's post-NMS detections on every image of ``data`` (on the CPU)."""
    out = []
    for s in progress_bar(range(0, len(data), batch_size), desc="detect", disable=not progress):
        images = [data.image(j).to(det.device) for j in range(s, min(len(data), s + batch_size))]
        out += [{k: v.cpu() for k, v in d.items()} for d in det(images)]
    return out


def evaluate_detector(det: Detector, data: DetectionSet, iou: float = 0.5, progress: bool = True) -> dict:
    """AP at ``iou`` per class (by name) and mean on ``data``; ``detections`` kept for pictures."""
    from physadv.core.detection_metrics import average_precision

    if det.classes != data.classes:
        raise PhysadvError(f"detector classes ({len(det.classes)}) differ from the data set's ({len(data.classes)})")
    dets = detect_all(det, data, progress=progress)
    gts = [data.target(i) for i in range(len(data))]
    ap = average_precision(dets, gts, iou=iou, labels=list(range(1, len(data.classes))))
    return {"ap50" if iou == 0.5 else f"ap{int(iou * 100)}": ap["mean"],
            "per_class": {data.classes[k]: round(v, 4) for k, v in ap["per_class"].items()},
            "ground_truth": {data.classes[k]: n for k, n in ap["ground_truth"].items()}, "images": len(data),
            "detections": dets}


__all__ = ["DetectorTrainConfig", "cached_detector_metrics", "cached_detector_path", "detect_all", "evaluate_detector",
           "get_sign_detector", "train_sign_detector"]
