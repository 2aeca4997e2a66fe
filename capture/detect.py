"""Judging photos and video of a print with a *detector* on the whole frame (no crop): does it still find the
object, and as what?

A deployed detector sees the camera's whole frame. Each photo is resized (OpenCV's area filter, the aspect kept)
to the detector's working size, the size its own transform would bring it to (the sign-world detector: 512 x 384,
the frames it was trained on; torchvision families: ``min_size``/``max_size``, 800/1333 unless set); the
detector runs on it; its detections (after NMS, score >= ``detection.score_thresh``) are matched to the object's
box, the bounding box of the object's corners located by the print's fiducials or given in the manifest (IoU >=
``detection.match_iou``). ``detection.match: frame`` (or ``auto`` when the object was not located) counts every
detection in the frame instead, as the detector paper counted video frames in which the sign was detected
(Eykholt et al. 2018, "Physical Adversarial Examples for Object Detectors": 85.6% of lab frames and 72.5%
outdoors without a "stop" detection). Per photo: ``core.detection_report.DetectionRecord`` (detected as the
source class, as the target, not detected, scores) beside the photo's status; per distance x angle cell: the
shares and mean scores of ``core.detection_report``.

    victim = load_detector_victim("sign-detector")
    results, report = evaluate_photos_detector(victim, JudgeConfig(true_class="stop"), DetectionConfig(), None,
                                               "adv/manifest.csv", layout, clean_manifest="clean/manifest.csv")
    files = write_detection_reports("runs/eval", results, report, "stop sign vs the sign-world detector")
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from physadv.capture.judge import JudgeConfig, PhotoResult, open_row, preview, record_location
from physadv.capture.photos import NOT_FOUND, OK, UNITS_M, read_manifest
from physadv.core.detection_report import DetectionRecord, detection_cells, detection_summary, record_from_matches
from physadv.core.detection_spec import DetectionConfig
from physadv.core.detection_victim import match_detections
from physadv.core.errors import PhysadvError


# --------------------------------------------------------------------------- one frame
def working_size(detector, height: int, width: int) -> tuple[int, int]:
    """``(h, w)`` the detector's transform brings a ``height x width`` image to (GeneralizedRCNNTransform's rule:
    the short side to ``min_size`` unless the long side would pass ``max_size``), the aspect kept."""
    t = detector.model.transform
    lo, hi = float(t.min_size[-1]), float(t.max_size)
    scale = min(lo / min(height, width), hi / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def detector_frame(image: np.ndarray, detector) -> tuple[torch.Tensor, float, float]:
    """The photo (``H x W x 3`` uint8 RGB) at the detector's working size as a ``3 x h x w`` tensor in [0, 1], and
    the scale factors (x, y) from photo pixels to it."""
    H, W = image.shape[:2]
    h, w = working_size(detector, H, W)
    small = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA) if (h, w) != (H, W) else image
    return torch.from_numpy(np.ascontiguousarray(small)).permute(2, 0, 1).float().div(255), w / W, h / H


def quad_box(quad: np.ndarray, sx: float, sy: float) -> torch.Tensor:
    """The bounding box (xyxy, torchvision's pixel-edge convention) of a quad in OpenCV pixel centres, scaled."""
    q = np.asarray(quad, dtype=np.float64)
    x0, y0 = q.min(axis=0) + 0.5
    x1, y1 = q.max(axis=0) + 0.5
    return torch.tensor([x0 * sx, y0 * sy, x1 * sx, y1 * sy], dtype=torch.float32)


def detect_in_frame(frame: torch.Tensor, judge_by, box: torch.Tensor | None, source: str | None, target: str | None,
                    **fields) -> tuple[DetectionRecord, dict]:
    """One frame judged by a ``DetectorVictim`` (``judge_by``: its detector and thresholds): the detections matched
    to ``box`` (xyxy in the frame's pixels), or every detection in the frame when ``box`` is None. Returns the record
    and the raw detections (for drawing)."""
    with torch.no_grad():
        dets = judge_by.detector([frame.to(judge_by.device)])[0]
    labels, scores = match_detections(dets, box, judge_by.score_thresh, judge_by.match_iou)
    return record_from_matches(labels.numpy(), scores.numpy(), judge_by.classes, source, target, **fields), dets


def check_classes(victim, judge: JudgeConfig) -> None:
    """The judged classes exist in the detector (a one-line error naming them otherwise) and one is given."""
    if not (judge.true_class or judge.target_class):
        raise PhysadvError("detection judging needs judge.true_class (the object's class, e.g. stop) or judge.target_class")
    for name in (judge.true_class, judge.target_class):
        if name:
            victim.index(name)


def draw_detections(image: np.ndarray, dets: dict, sx: float, sy: float, classes: list[str], thresh: float,
                    quad: np.ndarray | None, side: int) -> np.ndarray:
    """A small preview: the located object (green) and the detections above ``thresh`` (yellow, labelled)."""
    small = preview(image, quad, side)
    f = small.shape[1] / image.shape[1]
    for b, k, s in zip(dets["boxes"].cpu().numpy(), dets["labels"].cpu().numpy(), dets["scores"].cpu().numpy()):
        if s < thresh:
            continue
        x0, y0, x1, y1 = (b / np.array([sx, sy, sx, sy]) * f).round().astype(int)
        cv2.rectangle(small, (x0, y0), (x1, y1), (255, 220, 0), 1)
        cv2.putText(small, f"{classes[int(k)]} {s:.2f}", (x0, max(8, y0 - 2)), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (255, 220, 0), 1)
    return small


# --------------------------------------------------------------------------- photo sets
@dataclass
class DetectedPhoto:
    """A photo's status and location (``capture.judge.PhotoResult``) and what the detector made of it."""

    photo: PhotoResult
    record: DetectionRecord | None = None
    matched_by: str = ""  # box (the located object's) or frame (anywhere)
    preview: np.ndarray | None = field(default=None, repr=False)

    def row(self) -> dict:
        base = {k: v for k, v in self.photo.row().items() if not k.startswith(("top", "untargeted", "targeted"))}
        det = self.record.row() if self.record else {}
        return base | {"matched_by": self.matched_by} | {k: det.get(k) for k in (
            "label", "score", "labels", "source_score", "as_source", "as_target", "not_detected")}


def _match_mode(cfg: DetectionConfig, located: bool) -> str | None:
    """box, frame, or None (the object must be matched by its box but was not located)."""
    if cfg.match == "frame":
        return "frame"
    if located:
        return "box"
    return "frame" if cfg.match == "auto" else None


def judge_photo_detector(row, folder, victim, judge: JudgeConfig, cfg: DetectionConfig, layout, camera,
                         set_name: str, unit: str) -> DetectedPhoto:
    """One manifest row: read, locate (fiducials, else the manifest's corners), detect on the whole photo, match."""
    from physadv.capture.locate import locate

    res, photo = open_row(row, folder, judge, set_name)
    out = DetectedPhoto(res)
    if photo is None:
        return out
    corners = row.corners * photo.scale if row.corners is not None else None
    cam = camera.for_image(photo.image.shape[1], photo.image.shape[0]) if camera is not None else None
    try:
        loc = locate(photo.image, layout, cam, corners, judge.min_markers) if layout is not None or corners is not None else None
    except PhysadvError as exc:  # e.g. degenerate fiducial geometry
        loc, res.message = None, str(exc)
    if loc is not None:
        record_location(res, loc, row)
    mode = _match_mode(cfg, loc is not None and loc.found)
    if mode is None:
        res.status = NOT_FOUND
        res.message = res.message or f"the object was not located (no fiducials, no corners; manifest line {row.line}); " \
                                     "detection.match=frame counts detections anywhere in the photo"
        out.preview = preview(photo.image, None, 2 * judge.thumb)
        return out
    frame, sx, sy = detector_frame(photo.image, victim.detector)
    box = quad_box(loc.quad, sx, sy) if mode == "box" else None
    d = None if res.distance is None else round(res.distance * UNITS_M[res.unit] / UNITS_M[unit], 3)
    out.record, dets = detect_in_frame(frame, victim, box, judge.true_class or None, judge.target_class or None,
                                       set=set_name, distance=d, angle=None if res.angle is None else round(res.angle, 3),
                                       light=res.light, unit=unit, victim=victim.name, file=row.file)
    out.matched_by = mode
    res.top1, res.top1_conf = out.record.label, out.record.score
    out.preview = draw_detections(photo.image, dets, sx, sy, victim.classes, victim.score_thresh,
                                  loc.quad if loc is not None and loc.found else None, 3 * judge.thumb)
    return out


def judge_set_detector(rows, folder, victim, judge: JudgeConfig, cfg: DetectionConfig, layout=None, camera=None,
                       set_name: str = "adversarial", unit: str = "ft") -> list[DetectedPhoto]:
    """Every manifest row judged by the detector; each keeps a status, and a bad photo never stops the rest."""
    from physadv.core.progress import progress

    return [judge_photo_detector(r, Path(folder), victim, judge, cfg, layout, camera, set_name, unit)
            for r in progress(rows, desc=f"detect {set_name}")]


def summarise_detector(results: list[DetectedPhoto], unit: str) -> dict:
    """Statuses and the detection summary and cells (``core.detection_report``) of judged photos."""
    records = [r.record for r in results if r.record is not None]
    statuses: dict = {}
    for r in results:
        statuses[r.photo.status] = statuses.get(r.photo.status, 0) + 1
    return {"summary": {"photos": len(results), "by_status": statuses, "unit": unit,
                        "matched_by": {m: sum(r.matched_by == m for r in results) for m in ("box", "frame")},
                        "detection": detection_summary(records)},
            "cells": detection_cells(records), "records": records}


def evaluate_photos_detector(victim, judge: JudgeConfig, cfg: DetectionConfig, photos, manifest, layout=None,
                             camera=None, clean_photos=None, clean_manifest=None) -> tuple[list[DetectedPhoto], dict]:
    """Judge an adversarial photo set and/or its clean counterpart with a detector (photo folders default to the
    manifest's folder): (per-photo results, summary with cells)."""
    if not manifest and not clean_manifest:
        raise PhysadvError("give a manifest of adversarial photos, of clean photos, or both")
    check_classes(victim, judge)
    sets = [("clean", clean_photos, clean_manifest), ("adversarial", photos, manifest)]
    manifests = {name: read_manifest(m) for name, _, m in sets if m}
    unit = judge.report_unit or _unit(manifests)
    results = []
    for name, folder, m in sets:
        if m:
            results += judge_set_detector(manifests[name], folder or Path(m).parent, victim, judge, cfg, layout, camera,
                                          name, unit)
    return results, summarise_detector(results, unit)


def _unit(manifests: dict) -> str:
    units = [r.distance_unit for rows in manifests.values() for r in rows]
    return max(set(units), key=units.count) if units else "m"


__all__ = ["DetectedPhoto", "check_classes", "detect_in_frame", "detector_frame", "draw_detections", "evaluate_photos_detector",
           "judge_photo_detector", "judge_set_detector", "quad_box", "summarise_detector", "working_size"]


# --------------------------------------------------------------------------- reports
def _gallery(results: list[DetectedPhoto]) -> str:
    import html

    from physadv.core.html import png_uri

    e = html.escape
    out = ["<div class='gallery' style='display:flex;flex-wrap:wrap;gap:8px'>"]
    for r in results:
        p, rec = r.photo, r.record
        img = f"<img alt='{e(p.file)}' src='{png_uri(r.preview)}' style='max-width:300px'>" if r.preview is not None else ""
        where = f"{p.distance:g} {e(p.unit)}, {p.angle:g}°, {e(p.light)}" if p.distance is not None and p.angle is not None else ""
        verdict = (f"{e(rec.label)} {rec.score:.2f} ({e(r.matched_by)})" if rec is not None
                   else f"<span class='bad' title='{e(p.message)}'>{e(p.status)}</span>")
        out.append(f"<figure style='margin:0;width:300px;font-size:11px'>{img}<figcaption>{e(p.set)}: {e(p.file)}<br>"
                   f"{where}<br>{verdict}</figcaption></figure>")
    return "\n".join(out + ["</div>"])


def write_detection_reports(out_dir, results: list[DetectedPhoto], report: dict, title: str):
    """results.csv, the detection cells (``core.detection_report``: CSV, Markdown, JSON, heatmaps), report.json and a
    self-contained report.html (summary, heatmaps, per-cell table, every photo with its detections) in ``out_dir``.
    Returns (files, the ``core.detection_report.DetectionReport`` for another page's ``detection_section``)."""
    import html

    from physadv.core.detection_report import detection_section, write_detection_report
    from physadv.core.gridreport import write_csv
    from physadv.core.html import Page
    from physadv.core.io import atomic_write_text, write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [r.row() for r in results]
    det = write_detection_report(out, report["records"], title)
    files = dict(det.files, results_csv=write_csv(out / "results.csv", rows),
                 report_json=write_json(out / "report.json", {"summary": report["summary"], "cells": report["cells"], "photos": rows}))
    s = report["summary"]
    page = Page(title)
    page.raw(f"<p id='summary'>Photos: {s['photos']} — " + ", ".join(f"{html.escape(k)}: {v}" for k, v in s["by_status"].items())
             + f"; matched by the object's box: {s['matched_by']['box']}, anywhere in the frame: {s['matched_by']['frame']}.</p>")
    detection_section(page, det)
    page.heading("Photos (the located object in green, detections in yellow)")
    page.raw(_gallery(results))
    bad = [r for r in rows if r["status"] != OK]
    if bad:
        page.heading("Not judged")
        page.table(bad, ["set", "file", "status", "message"], table_id="problems")
    files["html"] = atomic_write_text(out / "report.html", page.html())
    return files, det


__all__ += ["write_detection_reports"]
