"""Detectors by name: the one grammar with which every job names a detector victim (``--victim`` of the design and
grid commands, ``--detector`` of ``capture eval`` / ``capture video``), beside ``core.victims``' classifier names.

A detector spec is one of

- a registered name (``register_detector``; the sign world registers ``sign-detector``, its trained Faster R-CNN);
- ``ARCH=FILE`` or ``ARCH`` with ``weights=FILE``: a torchvision architecture (``core.detection.TORCHVISION_DETECTORS``,
  COCO's 91 categories) with a local state dict (``torch.load(weights_only=True)`` or safetensors); nothing downloads,
  so a bare ``ARCH`` without weights is a one-line error;
- a physadv detector file (``core.detection.save_detector``: safetensors with ``arch`` and ``classes`` metadata).

``load_any_victim(victim_cfg, detection_cfg)`` is what a job calls: a ``DetectorVictim`` when its one spec names a
detector, else ``core.victims.load_victim`` (classifiers and their ensembles), so a name means the same everywhere.

    det = load_detector_spec("fasterrcnn_resnet50_fpn=coco.pth")
    victim = load_detector_victim("sign-detector", cfg=DetectionConfig(score_thresh=0.5))
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import torch

from physadv.core.detection import BUILDERS, TORCHVISION_DETECTORS, Detector, load_detector, load_detector_weights
from physadv.core.errors import PhysadvError

_DETECTORS: dict[str, Callable[[], Detector]] = {}


def register_detector(name: str, loader: Callable[[], Detector]) -> None:
    """Offer a named detector (``loader() -> Detector``) to ``load_detector_spec``."""
    _DETECTORS[name] = loader


def registered_detectors() -> list[str]:
    return sorted(_DETECTORS)


@dataclass
class DetectionConfig:
    """How a detector victim reads its views and judges them (``core.detection_victim.DetectorVictim``), and the
    working size of torchvision architectures."""

    overlap: float = 0.3  # IoU with the object's box for a raw candidate to count in the loss
    match_iou: float = 0.5  # judging: IoU with the object's box for a detection to be the object's
    score_thresh: float = 0.5  # judging: detections below this score do not count
    min_size: int = 0  # torchvision architectures: their transform's min_size (0: the architecture's own, 800)
    max_size: int = 0  # torchvision architectures: their transform's max_size (0: the architecture's own, 1333)
    match: Literal["auto", "box", "frame"] = "auto"  # photos/video: match to the located object's box, or anywhere
    # in the frame (the detector paper's per-frame rate); auto: the box where the object was located, else the frame

    def validate(self) -> None:
        for name in ("overlap", "match_iou", "score_thresh"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"detection.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.min_size < 0 or self.max_size < 0 or (self.min_size and self.max_size and self.max_size < self.min_size):
            raise ValueError(f"detection.min_size/max_size must be >= 0 with max >= min, got {self.min_size}, {self.max_size}")
        if self.match not in ("auto", "box", "frame"):
            raise ValueError(f"detection.match must be auto, box or frame, got {self.match!r}")

    def size_kwargs(self) -> dict:
        return {k: v for k, v in (("min_size", self.min_size), ("max_size", self.max_size)) if v}


def _file_metadata(path: Path) -> dict | None:
    """A safetensors file's physadv metadata without reading its tensors (None: not safetensors / unreadable)."""
    from safetensors import safe_open

    from physadv.core.io import META_KEY

    try:
        with safe_open(str(path), framework="pt") as fh:
            return json.loads((fh.metadata() or {}).get(META_KEY, "{}"))
    except Exception:  # safetensors raises its own error types; not ours to judge here
        return None


def _split(spec: str, weights: str) -> tuple[str, str]:
    spec = str(spec).strip()
    if "=" in spec:
        arch, file = spec.split("=", 1)
        if weights and weights != file:
            raise PhysadvError(f"detector {spec!r}: weights given twice ({file} and {weights})")
        return arch.strip(), file.strip()
    return spec, str(weights or "").strip()


def is_detector_spec(spec: str, weights: str = "") -> bool:
    """Whether ``spec`` names a detector (a registered name, a detector architecture, or a physadv detector file)."""
    name = str(spec).split("=", 1)[0].strip()
    if name in _DETECTORS or name in BUILDERS:
        return True
    path = Path(name)
    if path.suffix == ".safetensors" and path.is_file():
        meta = _file_metadata(path) or {}
        return meta.get("arch") in BUILDERS and "classes" in meta
    return False


def load_detector_spec(spec: str, weights: str = "", device: str | torch.device = "cpu",
                       cfg: DetectionConfig | None = None) -> Detector:
    """The detector ``spec`` names (see the module docstring), on ``device`` in eval mode."""
    cfg = cfg or DetectionConfig()
    name, file = _split(spec, weights)
    if name in TORCHVISION_DETECTORS:
        if not file:
            raise PhysadvError(f"detector '{name}' needs its weights: --weights FILE or {name}=FILE (nothing downloads)")
        return load_detector_weights(name, file, **cfg.size_kwargs()).to(device).eval()
    if file:
        raise PhysadvError(f"detector {spec!r}: weights go with a torchvision architecture "
                           f"({', '.join(TORCHVISION_DETECTORS)}), not with '{name}'")
    if name in _DETECTORS:
        return _DETECTORS[name]().to(device).eval()
    path = Path(name)
    if path.is_file():
        return load_detector(path, device)
    known = registered_detectors() or ["sign-detector (after `import physadv.rendering.signs`)"]
    raise PhysadvError(f"detector {spec!r} is neither {', '.join(known)}, ARCH=WEIGHTS for one of "
                       f"{', '.join(TORCHVISION_DETECTORS)}, nor a physadv detector file")


def load_detector_victim(spec: str, weights: str = "", device: str | torch.device = "cpu",
                         cfg: DetectionConfig | None = None):
    """A ``DetectorVictim`` around the detector ``spec`` names, judging with ``cfg``'s thresholds."""
    from physadv.core.detection_victim import DetectorVictim

    cfg = cfg or DetectionConfig()
    try:
        cfg.validate()
    except ValueError as exc:
        raise PhysadvError(str(exc)) from None
    det = load_detector_spec(spec, weights, device, cfg)
    name, _ = _split(spec, weights)
    short = Path(name).stem if name.endswith(".safetensors") else name
    return DetectorVictim(det, short, cfg.overlap, cfg.match_iou, cfg.score_thresh)


def load_any_victim(victim_cfg, cfg: DetectionConfig | None = None, device: str | torch.device = "cpu"):
    """The victim ``victim_cfg`` (``core.victims.VictimConfig``) names: a detector victim when its spec names a
    detector (a detector stands alone: no ensembles with it), else classifiers through ``core.victims.load_victim``."""
    from physadv.core.victims import load_victim

    try:
        victim_cfg.validate()
    except ValueError as exc:
        raise PhysadvError(str(exc)) from None
    specs = victim_cfg.specs()
    detectors = [s for s in specs if is_detector_spec(s)]
    if not detectors:
        return load_victim(victim_cfg, device)
    if len(specs) > 1:
        raise PhysadvError(f"victim.models {specs}: a detector ({detectors[0]}) is a victim on its own, not an ensemble member")
    return load_detector_victim(detectors[0], device=device, cfg=cfg)


def is_detector_victim(victim) -> bool:
    from physadv.core.detection_victim import DetectorVictim

    return isinstance(victim, DetectorVictim)


__all__ = ["DetectionConfig", "is_detector_spec", "is_detector_victim", "load_any_victim", "load_detector_spec",
           "load_detector_victim", "register_detector", "registered_detectors"]
