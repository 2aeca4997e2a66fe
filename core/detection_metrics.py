"""Average precision at an IoU threshold (AP50), per class and mean, as PASCAL VOC 2010+ and COCO define it.

Per class, detections of all images are ranked by score; each is a true positive when its IoU with a not yet
matched ground-truth box of its class in its image is the highest and at least ``iou`` (greedy, in score order),
else a false positive. AP is the area under the precision-recall curve with precision made monotone
(``p(r) = max_{r' >= r} p(r')``), summed over every recall step ("all-point interpolation", Everingham et al.
2010, section 4.2). A class with no ground truth has no AP (left out of the mean).

    ap = average_precision(detections, ground_truth, iou=0.5)   # lists of dicts per image, torchvision style
    ap["mean"], ap["per_class"][label]
"""
from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import box_iou

from physadv.core.errors import PhysadvError


def _ranked_hits(detections: list[dict], ground_truth: list[dict], label: int, iou: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Scores and true-positive flags of class ``label``'s detections in score order, and its number of boxes."""
    scores, hits, n_gt = [], [], 0
    for det, gt in zip(detections, ground_truth):
        g = gt["boxes"][gt["labels"] == label].float()
        n_gt += len(g)
        keep = det["labels"] == label
        d, s = det["boxes"][keep].float(), det["scores"][keep].float()
        order = torch.argsort(s, descending=True, stable=True)
        d, s = d[order], s[order]
        taken = torch.zeros(len(g), dtype=torch.bool)
        overlap = box_iou(d, g) if len(d) and len(g) else torch.zeros(len(d), len(g))
        for i in range(len(d)):
            hit = False
            if len(g):
                best = int(torch.argmax(overlap[i]))
                if overlap[i, best] >= iou and not taken[best]:
                    taken[best] = hit = True
            hits.append(hit)
        scores.append(s)
    s = torch.cat(scores).numpy() if scores else np.zeros(0)
    h = np.array(hits, dtype=bool)
    order = np.argsort(-s, kind="stable")
    return s[order], h[order], n_gt


def ap_from_hits(hits: np.ndarray, n_gt: int) -> float:
    """All-point interpolated AP of ranked true-positive flags against ``n_gt`` ground-truth boxes."""
    if n_gt == 0:
        return float("nan")
    tp = np.cumsum(hits)
    fp = np.cumsum(~hits)
    recall = np.concatenate([[0.0], tp / n_gt, [tp[-1] / n_gt if len(tp) else 0.0]])
    precision = np.concatenate([[1.0], tp / np.maximum(tp + fp, 1e-12), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum((recall[1:] - recall[:-1]) * precision[1:]))


def _check(items: list[dict], what: str, fields: tuple[str, ...]) -> None:
    for i, it in enumerate(items):
        for f in fields:
            if f not in it:
                raise PhysadvError(f"{what}[{i}] has no '{f}' (need {', '.join(fields)})")


def average_precision(detections: list[dict], ground_truth: list[dict], iou: float = 0.5,
                      labels: list[int] | None = None) -> dict:
    """AP at ``iou`` per class label and their mean. ``detections``: per image ``boxes`` (xyxy), ``labels``,
    ``scores``; ``ground_truth``: per image ``boxes`` and ``labels``. ``labels``: the classes to score (default:
    every label in the ground truth)."""
    if len(detections) != len(ground_truth):
        raise PhysadvError(f"{len(detections)} detection lists for {len(ground_truth)} images")
    _check(detections, "detections", ("boxes", "labels", "scores"))
    _check(ground_truth, "ground_truth", ("boxes", "labels"))
    if labels is None:
        labels = sorted({int(v) for gt in ground_truth for v in gt["labels"].tolist()})
    per_class, counts = {}, {}
    for lab in labels:
        _, hits, n_gt = _ranked_hits(detections, ground_truth, lab, iou)
        counts[lab] = n_gt
        if n_gt:
            per_class[lab] = ap_from_hits(hits, n_gt)
    mean = float(np.mean(list(per_class.values()))) if per_class else float("nan")
    return {"mean": mean, "per_class": per_class, "ground_truth": counts, "iou": iou}


__all__ = ["average_precision", "ap_from_hits"]
