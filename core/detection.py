"""Detectors in torchvision's detection interface, built offline, with weights from local files.

A ``Detector`` wraps a torchvision-style detection model (a list of ``3 x H x W`` images in [0, 1] in; per image
a dict of ``boxes`` ``K x 4`` xyxy in pixels, ``labels`` ``K``, ``scores`` ``K`` out) with its class names
(index 0 is the background, as torchvision counts) and architecture name. Families:

- ``fasterrcnn_resnet50_fpn``, ``fasterrcnn_mobilenet_v3_large_fpn``: Faster R-CNN (Ren et al. 2015) with an
  FPN (Lin et al. 2017);
- ``retinanet_resnet50_fpn``: RetinaNet (Lin et al. 2017, "Focal Loss for Dense Object Detection");
- ``fcos_resnet50_fpn``: FCOS (Tian et al. 2019);
- ``ssdlite320_mobilenet_v3_large``: SSDlite (Liu et al. 2016; Sandler et al. 2018; Howard et al. 2019);
- ``sign-detector``: the sign-world detector trained by the project (``core.detection_signnet``,
  ``core.detection_train``).

torchvision families are built with ``weights=None, weights_backbone=None`` (nothing downloads) and COCO's
91-index category list (``COCO_CATEGORIES``, torchvision's ``weights.meta["categories"]``; "stop sign" is 13).
Weights come from a local ``.pth``/``.pt`` (``torch.load(weights_only=True)``) or ``.safetensors`` file; weights of
another architecture are a one-line error naming the file and the first mismatching tensor.

    det = load_detector_weights("fasterrcnn_resnet50_fpn", "frcnn.pth")
    det([image])[0]["boxes"]
    det = load_detector("runs/x/detector.safetensors")      # a physadv detector file (architecture in its metadata)
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from physadv.core.errors import PhysadvError
from physadv.core.io import load_checkpoint, load_state_into, load_torch_weights, save_checkpoint

COCO_CATEGORIES = [
    "__background__", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "N/A", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse",
    "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "N/A", "backpack", "umbrella", "N/A", "N/A", "handbag",
    "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
    "skateboard", "surfboard", "tennis racket", "bottle", "N/A", "wine glass", "cup", "fork", "knife", "spoon", "bowl",
    "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
    "couch", "potted plant", "bed", "N/A", "dining table", "N/A", "N/A", "toilet", "N/A", "tv", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "N/A", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
]


def _torchvision(fn_name: str) -> Callable[..., nn.Module]:
    def build(num_classes: int, **kwargs) -> nn.Module:
        import torchvision.models.detection as tvd

        return getattr(tvd, fn_name)(weights=None, weights_backbone=None, num_classes=num_classes, **kwargs)

    return build


def _sign_net(num_classes: int, **kwargs) -> nn.Module:
    from physadv.core.detection_signnet import build_sign_net

    return build_sign_net(num_classes, **kwargs)


TORCHVISION_DETECTORS = ("fasterrcnn_resnet50_fpn", "fasterrcnn_mobilenet_v3_large_fpn", "retinanet_resnet50_fpn",
                         "fcos_resnet50_fpn", "ssdlite320_mobilenet_v3_large")
BUILDERS: dict[str, Callable[..., nn.Module]] = {**{n: _torchvision(n) for n in TORCHVISION_DETECTORS}, "sign-detector": _sign_net}


class Detector(nn.Module):
    """A torchvision-style detection model with its ``classes`` (index = label; 0 the background), architecture
    name and builder arguments. Called on images (a list of ``3 x H x W`` or an ``N x 3 x H x W`` tensor in
    [0, 1]) it returns torchvision's per-image detections, in eval mode."""

    def __init__(self, model: nn.Module, classes: Sequence[str], arch: str = "detector", arch_args: dict | None = None):
        super().__init__()
        self.model = model.eval()
        self.classes = list(classes)
        self.arch = arch
        self.arch_args = dict(arch_args or {})

    @property
    def device(self) -> torch.device:
        for p in self.model.parameters():
            return p.device
        return torch.device("cpu")

    def forward(self, images: torch.Tensor | Sequence[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return self.model(as_image_list(images))

    def candidates(self, images: torch.Tensor | Sequence[torch.Tensor]):
        """Raw, pre-NMS candidates per image (``core.detection_raw.Candidates``): boxes and class probabilities."""
        from physadv.core.detection_raw import raw_candidates

        return raw_candidates(self.model, as_image_list(images))


def as_image_list(images: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """A list of ``3 x H x W`` images from a list or an ``N x 3 x H x W`` tensor (a one-line error otherwise)."""
    items = list(images.unbind(0)) if isinstance(images, torch.Tensor) and images.ndim == 4 else list(images)
    for i, im in enumerate(items):
        if not isinstance(im, torch.Tensor) or im.ndim != 3 or im.shape[0] != 3:
            shape = tuple(im.shape) if isinstance(im, torch.Tensor) else type(im).__name__
            raise PhysadvError(f"detector input {i}: expected a 3 x H x W image in [0, 1], got {shape}")
    return items


def detector_names() -> list[str]:
    return sorted(BUILDERS)


def build_detector(name: str, classes: Sequence[str] | None = None, **kwargs) -> Detector:
    """An untrained detector of architecture ``name`` (torchvision families default to COCO's 91 categories)."""
    if name not in BUILDERS:
        raise PhysadvError(f"unknown detector '{name}'; known: {', '.join(detector_names())}")
    if classes is None:
        if name == "sign-detector":
            raise PhysadvError("the sign-world detector needs its class names (they come with its weights file)")
        classes = COCO_CATEGORIES
    if len(classes) < 2:
        raise PhysadvError(f"a detector needs the background and at least one class, got {list(classes)}")
    return Detector(BUILDERS[name](len(classes), **kwargs), classes, name, kwargs)


def load_detector_weights(name: str, weights: str | Path, classes: Sequence[str] | None = None, **kwargs) -> Detector:
    """Architecture ``name`` with the state dict in ``weights`` (a torchvision ``.pth`` via ``torch.load(weights_only=True)``
    or ``.safetensors``); ``classes`` default to COCO's. A file of another architecture is a one-line error."""
    det = build_detector(name, classes, **kwargs)
    state = load_torch_weights(weights)
    state = {k[len("model."):]: v for k, v in state.items()} if all(k.startswith("model.") for k in state) else state
    load_state_into(det.model, state, str(weights))
    return det.eval()


def save_detector(path: str | Path, det: Detector, extra: dict | None = None) -> Path:
    """A physadv detector file: safetensors weights with the architecture, its arguments and classes as metadata."""
    meta = {"arch": det.arch, "classes": det.classes, "arch_args": det.arch_args, **(extra or {})}
    return save_checkpoint(path, det.model.state_dict(), meta)


def load_detector(path: str | Path, device: str | torch.device = "cpu") -> Detector:
    """A detector saved by ``save_detector`` (for bare torchvision weights use ``load_detector_weights``)."""
    state, meta = load_checkpoint(path)
    if "arch" not in meta or "classes" not in meta:
        raise PhysadvError(f"{path}: no physadv detector metadata (arch, classes); for torchvision weights pass "
                           f"--detector NAME --weights {path}")
    det = build_detector(meta["arch"], meta["classes"], **meta.get("arch_args", {}))
    load_state_into(det.model, state, str(path))
    return det.to(device).eval()


__all__ = ["COCO_CATEGORIES", "Detector", "TORCHVISION_DETECTORS", "as_image_list", "build_detector", "detector_names",
           "load_detector", "load_detector_weights", "save_detector"]
