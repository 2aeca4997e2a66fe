"""Raw, pre-NMS detection candidates: every box a detector scores, with its class probabilities, differentiable
with respect to the input images. Detection objectives (``core.detection_victim``) read these, never the
thresholded, NMS-pruned output, because the attack must push down (or up) every candidate, including the ones
NMS would hide (Eykholt et al. 2018, "Physical Adversarial Examples for Object Detectors": the disappearance loss
is the highest class score over all candidates; Chen et al. 2018, ShapeShifter: the loss over all proposals).

Per family (torchvision's own modules, run step by step as their ``forward`` does):

- FCOS (Tian et al. 2019): every location of every FPN level; box = the decoded regression; class probability
  ``sqrt(sigmoid(logit) * sigmoid(centerness))``, the score FCOS ranks by;
- RetinaNet (Lin et al. 2017): every anchor; box = the decoded regression; ``sigmoid(logit)`` per class;
- SSD / SSDlite (Liu et al. 2016): every default box; box = the decoded regression; ``softmax`` over classes
  (column 0 the background);
- Faster R-CNN (Ren et al. 2015), and the sign-world detector: every RPN proposal (post the RPN's own NMS, as the
  RoI head sees them); box = the proposal; ``softmax`` of the RoI head's class logits.

Boxes come back in the caller's image pixels (xyxy, torchvision convention), undoing the model's resize.

A user's own torchvision-style detector plugs in by having a method
``raw_candidates(images: list[Tensor]) -> list[Candidates]`` (boxes ``K x 4`` in input pixels, ``probs``
``K x C`` in [0, 1] over its label indices, column 0 the background if it has one), differentiable in the images.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import boxes as box_ops

from physadv.core.errors import PhysadvError


@dataclass
class Candidates:
    """One image's candidates: ``boxes`` ``K x 4`` (xyxy, input pixels), ``probs`` ``K x C`` (label index = column)."""

    boxes: torch.Tensor
    probs: torch.Tensor


def _prepare(model: nn.Module, images: list[torch.Tensor]):
    """torchvision's transform (normalise, resize, batch) and the backbone's features as a list."""
    sizes = [tuple(im.shape[-2:]) for im in images]
    batch, _ = model.transform(images)
    features = model.backbone(batch.tensors)
    if isinstance(features, torch.Tensor):
        features = OrderedDict([("0", features)])
    return batch, features, sizes


def _back(boxes: torch.Tensor, batch, i: int, sizes) -> torch.Tensor:
    """Boxes of image ``i`` clipped to the resized image and mapped back to its original pixels."""
    boxes = box_ops.clip_boxes_to_image(boxes, batch.image_sizes[i])
    return resize_boxes(boxes, batch.image_sizes[i], sizes[i])


def fcos_candidates(model: nn.Module, images: list[torch.Tensor]) -> list[Candidates]:
    batch, features, sizes = _prepare(model, images)
    feats = list(features.values())
    out = model.head(feats)
    anchors = model.anchor_generator(batch, feats)
    result = []
    for i in range(len(images)):
        boxes = model.box_coder.decode(out["bbox_regression"][i], anchors[i])
        probs = torch.sqrt(torch.sigmoid(out["cls_logits"][i]) * torch.sigmoid(out["bbox_ctrness"][i]))
        result.append(Candidates(_back(boxes, batch, i, sizes), probs))
    return result


def _anchor_candidates(model: nn.Module, images: list[torch.Tensor], activation) -> list[Candidates]:
    """RetinaNet and SSD: every anchor's decoded box and ``activation`` of its class logits."""
    batch, features, sizes = _prepare(model, images)
    feats = list(features.values())
    out = model.head(feats)
    anchors = model.anchor_generator(batch, feats)
    return [Candidates(_back(model.box_coder.decode_single(out["bbox_regression"][i], anchors[i]), batch, i, sizes),
                       activation(out["cls_logits"][i])) for i in range(len(images))]


def retinanet_candidates(model: nn.Module, images: list[torch.Tensor]) -> list[Candidates]:
    return _anchor_candidates(model, images, torch.sigmoid)


def ssd_candidates(model: nn.Module, images: list[torch.Tensor]) -> list[Candidates]:
    return _anchor_candidates(model, images, lambda z: F.softmax(z, dim=-1))


def rcnn_candidates(model: nn.Module, images: list[torch.Tensor]) -> list[Candidates]:
    batch, features, sizes = _prepare(model, images)
    proposals, _ = model.rpn(batch, features)
    heads = model.roi_heads
    pooled = heads.box_roi_pool(features, proposals, batch.image_sizes)
    logits, _ = heads.box_predictor(heads.box_head(pooled))
    probs = F.softmax(logits, dim=-1).split([len(p) for p in proposals])
    return [Candidates(_back(p, batch, i, sizes), pr) for i, (p, pr) in enumerate(zip(proposals, probs))]


def family(model: nn.Module) -> str:
    """Which raw-score reader fits ``model``: 'own' (it has ``raw_candidates``), 'fcos', 'retinanet', 'ssd', 'rcnn'."""
    from torchvision.models.detection.fcos import FCOS
    from torchvision.models.detection.retinanet import RetinaNet
    from torchvision.models.detection.ssd import SSD
    from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN

    if callable(getattr(model, "raw_candidates", None)):
        return "own"
    for cls, name in ((FCOS, "fcos"), (RetinaNet, "retinanet"), (SSD, "ssd"), (GeneralizedRCNN, "rcnn")):
        if isinstance(model, cls):
            return name
    raise PhysadvError(f"{type(model).__name__} has no raw candidate scores: give it a method raw_candidates(images) "
                       f"returning physadv.core.detection_raw.Candidates per image (see that module)")


READERS = {"fcos": fcos_candidates, "retinanet": retinanet_candidates, "ssd": ssd_candidates, "rcnn": rcnn_candidates}


def raw_candidates(model: nn.Module, images: list[torch.Tensor]) -> list[Candidates]:
    """Every pre-NMS candidate of ``model`` on ``images`` (model in eval mode), differentiable in the images."""
    kind = family(model)
    if model.training:
        raise PhysadvError("raw candidates need the detector in eval mode (call .eval())")
    if kind == "own":
        return model.raw_candidates(images)
    return READERS[kind](model, images)


__all__ = ["Candidates", "family", "raw_candidates"]
