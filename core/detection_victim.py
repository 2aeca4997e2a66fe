"""A detector as a victim (``core.victims``' protocol): differentiable detection objectives on raw, pre-NMS class
scores, and judging by the detections after NMS matched to the object's box.

Views are whole frames (``views.images`` ``N x 3 x H x W``) with the object's box in each (``views.boxes`` ``N x 4``,
xyxy, torchvision convention): the object may be small, at distance, among other objects. For each view the
candidates (``core.detection_raw``) whose box overlaps the object's by IoU >= ``overlap`` are the object's
candidates ``O`` (chosen without gradient; when none overlaps, the candidate of highest IoU stands in), with class
probabilities ``p_c``. Losses to *minimise* (``loss: ce``):

- ``disappearance`` (source s): ``max_{o in O} p_s(o)``, the highest source score among the object's candidates
  (Eykholt et al. 2018, "Physical Adversarial Examples for Object Detectors", section 4: the maximum over the
  detector's boxes of the object's class probability);
- ``untargeted`` (source s): ``mean_{o in O} -log(1 - p_s(o))``: the object read as anything but s, or nothing;
- ``targeted`` (target t, source s): ``mean_{o in O} [-log p_t(o) - log(1 - p_s(o))]``: every candidate of the object
  read as t and not as s (Chen et al. 2018, ShapeShifter, eq. 5: the loss over all region proposals; the second
  term makes "not as the source" explicit for detectors with independent per-class scores such as RetinaNet/FCOS);
- ``creation`` (target t; the box is where the phantom should be): ``-log max_{o in O} p_t(o)``, one candidate at
  the box read as t (Eykholt et al. 2018's creation attack).

``loss: margin`` uses log-odds ``z = log p - log(1 - p)`` instead, stopping at ``kappa``: disappearance
``max(max_O z_s, -kappa)``, untargeted ``mean_O max(z_s, -kappa)``, targeted ``mean_O max(z_s - z_t, -kappa)``,
creation ``max(-max_O z_t, -kappa)``.

``judge``: the detector's own output (post-NMS) per view; detections with score >= ``score_thresh`` whose box has
IoU >= ``match_iou`` with the object's box are matched. ``pred`` is the label of the best-scoring match (-1: not
detected), ``score`` its score, ``probs`` the best matched score per class (``N x C``); success: disappearance and
untargeted, no match labelled s; targeted, a match labelled t and none labelled s; creation, a match labelled t.
"""
from __future__ import annotations

import math

import torch
from torchvision.ops import box_iou

from physadv.core.detection import Detector
from physadv.core.detection_raw import Candidates
from physadv.core.errors import PhysadvError
from physadv.core.victims import Objective, Verdict, Victim, Views

EPS = 1e-6


def _log_odds(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(EPS, 1 - EPS)
    return p.log() - (-p).log1p()


def object_candidates(cand: Candidates, box: torch.Tensor, overlap: float) -> torch.Tensor:
    """``probs`` of the candidates whose box has IoU >= ``overlap`` with ``box`` (else of the best-IoU one); ``K = 0``
    rows when the detector proposed nothing at all for the view."""
    if len(cand.boxes) == 0:
        return cand.probs
    iou = box_iou(cand.boxes.detach(), box.detach().view(1, 4).to(cand.boxes))[:, 0]
    keep = iou >= overlap
    if not bool(keep.any()):
        keep = iou == iou.max()
    return cand.probs[keep]


def objective_loss(probs: torch.Tensor, objective: Objective, s: int | None, t: int | None) -> torch.Tensor:
    """The loss of one view from its object's candidate probabilities ``K x C`` (see the module docstring). With no
    candidate at all (K = 0) nothing can be pushed: the view's loss is a constant without gradient (disappearance and untargeted: their floor,
    0 or -kappa; targeted and creation: -log(EPS) with ce, kappa with margin)."""
    kind, margin, kappa = objective.kind, objective.loss == "margin", objective.kappa
    if len(probs) == 0:
        floor = 0.0 if kind in ("disappearance", "untargeted") else (kappa if margin else -math.log(EPS))
        return probs.sum() * 0 + (-kappa if margin and kind in ("disappearance", "untargeted") else floor)
    if margin:
        z = _log_odds(probs)
        if kind == "disappearance":
            return z[:, s].max().clamp(min=-kappa)
        if kind == "untargeted":
            return z[:, s].clamp(min=-kappa).mean()
        if kind == "targeted":
            zs = z[:, s] if s is not None else torch.zeros_like(z[:, t])
            return (zs - z[:, t]).clamp(min=-kappa).mean()
        return (-z[:, t].max()).clamp(min=-kappa)
    p = probs.clamp(EPS, 1 - EPS)
    if kind == "disappearance":
        return probs[:, s].max()
    if kind == "untargeted":
        return -(-p[:, s]).log1p().mean()
    if kind == "targeted":
        away = -(-p[:, s]).log1p() if s is not None else torch.zeros_like(p[:, t])
        return (-p[:, t].log() + away).mean()
    return -p[:, t].max().log()


def judged_success(labels: torch.Tensor, objective: Objective, s: int | None, t: int | None) -> bool:
    """Success of one view from the labels of its matched detections."""
    has = lambda c: c is not None and bool((labels == c).any())  # noqa: E731
    if objective.kind in ("disappearance", "untargeted"):
        return not has(s)
    if objective.kind == "targeted":
        return has(t) and not has(s)
    return has(t)


def match_detections(det: dict, box: torch.Tensor | None, score_thresh: float, match_iou: float):
    """``(labels, scores)`` of the detections (torchvision's output dict of one image) with score >= ``score_thresh``
    whose box has IoU >= ``match_iou`` with ``box`` (xyxy); every detection above the threshold when ``box`` is None."""
    keep = det["scores"] >= score_thresh
    if box is not None and len(det["boxes"]):
        keep &= box_iou(det["boxes"], box.view(1, 4).to(det["boxes"]))[:, 0] >= match_iou
    return det["labels"][keep].cpu(), det["scores"][keep].cpu()


class DetectorVictim(Victim):
    """A ``core.detection.Detector`` behind the victim protocol (see the module docstring).

    ``overlap``: IoU for a candidate to count as the object's in the losses; ``match_iou`` and ``score_thresh``:
    what counts as a detection of the object when judging. ``input_size`` is ``(3, H, W)`` of the frames a
    detector was built for (the sign-world detector's), ``(3, 0, 0)`` when it takes any size (torchvision's
    transform resizes; boxes come back in the view's pixels either way)."""

    def __init__(self, detector: Detector, name: str | None = None, overlap: float = 0.3, match_iou: float = 0.5,
                 score_thresh: float = 0.5):
        super().__init__()
        if not isinstance(detector, Detector):
            raise PhysadvError(f"DetectorVictim wants a physadv.core.detection.Detector, got {type(detector).__name__}")
        self.detector = detector.eval().requires_grad_(False)
        self.name = name or detector.arch
        self.classes = list(detector.classes)
        frame = detector.arch_args.get("frame_hw")
        self.input_size = (3, int(frame[0]), int(frame[1])) if frame else (3, 0, 0)
        self.overlap, self.match_iou, self.score_thresh = overlap, match_iou, score_thresh

    def _boxes(self, views: Views) -> torch.Tensor:
        if views.boxes is None:
            raise PhysadvError(f"{self.name}: a detector victim needs each view's object box (views.boxes, xyxy pixels)")
        return views.boxes

    def _indices(self, objective: Objective) -> tuple[int | None, int | None]:
        s, t = self.index(objective.source), self.index(objective.target)
        if objective.kind in ("disappearance", "untargeted") and s is None:
            raise PhysadvError(f"a {objective.kind} objective needs a source class")
        if objective.kind in ("targeted", "creation") and t is None:
            raise PhysadvError(f"a {objective.kind} objective needs a target class")
        return s, t

    def loss(self, views: Views, objective: Objective) -> torch.Tensor:
        if objective.loss == "logit":
            raise PhysadvError(f"detector {self.name} gives probabilities, not logits: use loss ce or margin (log-odds)")
        boxes = self._boxes(views)
        s, t = self._indices(objective)
        cands = self.detector.candidates(views.images.to(self.device))
        return torch.stack([objective_loss(object_candidates(c, b, self.overlap), objective, s, t) for c, b in zip(cands, boxes)])

    @torch.no_grad()
    def judge(self, views: Views, objective: Objective) -> Verdict:
        boxes = self._boxes(views)
        s, t = self._indices(objective)
        dets = self.detector(views.images.to(self.device))
        n, k = len(views), len(self.classes)
        pred, score = torch.full((n,), -1, dtype=torch.long), torch.zeros(n)
        success, probs = torch.zeros(n, dtype=torch.bool), torch.zeros(n, k)
        for i, (d, b) in enumerate(zip(dets, boxes)):
            labels, scores = match_detections(d, b, self.score_thresh, self.match_iou)
            if len(scores):
                best = int(scores.argmax())
                pred[i], score[i] = labels[best], scores[best]
                probs[i].scatter_reduce_(0, labels, scores, reduce="amax")
            success[i] = judged_success(labels, objective, s, t)
        return Verdict(pred, score, success, probs)


__all__ = ["DetectorVictim", "judged_success", "match_detections", "object_candidates", "objective_loss"]
