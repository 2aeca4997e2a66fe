"""A detector on a video file or a live camera, frame by frame (every k-th frame), with the per-frame rates the
detector paper reports (Eykholt et al. 2018, "Physical Adversarial Examples for Object Detectors": the share of
video frames in which YOLOv2 did not detect the stop sign, 85.6% in the lab and 72.5% outdoors).

Each judged frame is resized to the detector's working size and its detections matched to the object's box when
the print's fiducials are found in it (``detection.match`` box/auto), else counted anywhere in the frame
(``frame``, or ``auto`` with no fiducials in view), as ``capture.detect`` does for photos.

    frames, summary = judge_video_detector("walk.mp4", victim, JudgeConfig(true_class="stop"), DetectionConfig(),
                                           layout, every=5)
    summary["rates"]["as_source"]     # the share of judged frames with a "stop" detection
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from physadv.capture.detect import _match_mode, check_classes, detect_in_frame, detector_frame, draw_detections, quad_box
from physadv.capture.judge import JudgeConfig
from physadv.core.detection_report import DetectionRecord, rates
from physadv.core.detection_spec import DetectionConfig
from physadv.core.errors import PhysadvError


@dataclass
class DetectedFrame:
    frame: int
    time_s: float
    located_by: str = ""  # markers, or "" (not located)
    matched_by: str = ""  # box or frame
    pnp_distance_m: float | None = None
    pnp_angle: float | None = None
    record: DetectionRecord | None = None
    preview: np.ndarray | None = field(default=None, repr=False)

    def row(self) -> dict:
        det = self.record.row() if self.record else {}
        base = {k: v for k, v in self.__dict__.items() if k not in ("record", "preview")}
        return base | {k: det.get(k) for k in ("label", "score", "labels", "source_score", "as_source", "as_target",
                                               "not_detected")}


def _locate(rgb: np.ndarray, layout, camera, judge: JudgeConfig):
    from physadv.capture.locate import locate

    if layout is None:
        return None
    cam = camera.for_image(rgb.shape[1], rgb.shape[0]) if camera is not None else None
    try:
        loc = locate(rgb, layout, cam, None, judge.min_markers)
    except PhysadvError:  # degenerate fiducial geometry in this frame: not located
        return None
    return loc if loc.found else None


def judge_frame_detector(rgb: np.ndarray, index: int, t: float, victim, judge: JudgeConfig, cfg: DetectionConfig,
                         layout=None, camera=None) -> DetectedFrame:
    """One frame: locate (fiducials), detect on the whole frame, match (box, or anywhere in the frame)."""
    loc = _locate(rgb, layout, camera, judge)
    res = DetectedFrame(index, t)
    if loc is not None:
        res.located_by, res.pnp_distance_m, res.pnp_angle = loc.method, loc.distance_m, loc.angle
    mode = _match_mode(cfg, loc is not None)
    if mode is None:  # match: box, and the object is not in view: the frame is not judged (no record)
        return res
    frame, sx, sy = detector_frame(rgb, victim.detector)
    box = quad_box(loc.quad, sx, sy) if mode == "box" else None
    res.matched_by = mode
    res.record, dets = detect_in_frame(frame, victim, box, judge.true_class or None, judge.target_class or None,
                                       set="video", distance=None, angle=None, victim=victim.name, file=f"frame {index}")
    res.preview = draw_detections(rgb, dets, sx, sy, victim.classes, victim.score_thresh,
                                  loc.quad if loc is not None else None, 2 * judge.thumb)
    return res


def judge_video_detector(source, victim, judge: JudgeConfig, cfg: DetectionConfig, layout=None, camera=None,
                         every: int = 1, max_frames: int = 0) -> tuple[list[DetectedFrame], dict]:
    """Every ``every``-th frame judged by the detector (up to ``max_frames``, 0 = all): (frames, summary)."""
    from physadv.capture.video import iter_frames

    check_classes(victim, judge)
    frames: list[DetectedFrame] = []
    info = {"frames_read": 0, "fps": 0.0}
    for index, t, rgb, info in iter_frames(source, every, max_frames, desc="detect video"):
        frames.append(judge_frame_detector(rgb, index, t, victim, judge, cfg, layout, camera))
    return frames, summarise_video_detector(frames, info["frames_read"], info["fps"])


def summarise_video_detector(frames: list[DetectedFrame], frames_read: int, fps: float) -> dict:
    """Frames read and judged, how they were matched, and the per-frame rates (``core.detection_report.rates``)."""
    records = [f.record for f in frames if f.record is not None]
    r = rates(records)
    return {"frames_read": frames_read, "fps": fps, "frames_judged": len(records), "frames_seen": len(frames),
            "located": sum(bool(f.located_by) for f in frames),
            "matched_by": {m: sum(f.matched_by == m for f in frames) for m in ("box", "frame")},
            "source": records[0].source if records else None, "target": records[0].target if records else None,
            "rates": r, "not_detected_as_source": None if r["as_source"] is None else 1 - r["as_source"]}


def write_video_detector_report(out_dir, frames: list[DetectedFrame], summary: dict) -> dict:
    """frames.csv, summary.json and summary.md in ``out_dir``."""
    from physadv.core.gridreport import write_csv
    from physadv.core.io import atomic_write_text, write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"csv": write_csv(out / "frames.csv", [f.row() for f in frames]), "json": write_json(out / "summary.json", summary)}
    pct = lambda v: "-" if v is None else f"{v:.1%}"  # noqa: E731
    r = summary["rates"]
    lines = ["# Video judged by a detector", "", f"- frames read: {summary['frames_read']}, looked at: {summary['frames_seen']}, "
             f"judged: {summary['frames_judged']}, "
             f"object located by fiducials: {summary['located']}",
             f"- per frame: detected as {summary['source']}: {pct(r['as_source'])}; as {summary['target']}: "
             f"{pct(r['as_target'])}; nothing matched: {pct(r['not_detected'])}; not detected as the source: "
             f"{pct(summary['not_detected_as_source'])}", "",
             "| frame | time (s) | matched by | detection (score) | all matched |", "|---|---|---|---|---|"]
    for f in frames:
        rec = f.record
        lines.append(f"| {f.frame} | {f.time_s:.2f} | {f.matched_by or 'object not located'} | "
                     f"{rec.label if rec else ''} ({rec.score if rec else 0:.2f}) | {' '.join(rec.labels) if rec else ''} |")
    files["markdown"] = atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")
    return files


__all__ = ["DetectedFrame", "judge_frame_detector", "judge_video_detector", "summarise_video_detector",
           "write_video_detector_report"]
