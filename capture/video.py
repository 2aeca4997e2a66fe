"""Judging a video file or a live camera frame by frame (every k-th frame), with a summary.

    frames, summary = judge_video("walk.mp4", model, JudgeConfig(true_class="stop"), layout, camera, every=5)

Each judged frame is located and classified exactly like a photo (``capture.judge.judge_image``);
frames where the object is not found get that status. A camera is named by its index ("0").
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from physadv.capture.judge import JudgeConfig, _fill_prediction, _thumb, class_index, judge_image
from physadv.capture.photos import NOT_FOUND, OK
from physadv.core.errors import PhysadvError


@dataclass
class FrameResult:
    frame: int
    time_s: float
    status: str
    located_by: str = ""
    pnp_distance_m: float | None = None
    pnp_angle: float | None = None
    top1: str = ""
    top1_conf: float | None = None
    top2: str = ""
    top2_conf: float | None = None
    untargeted: bool | None = None
    targeted: bool | None = None
    thumb: np.ndarray | None = None

    def row(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("thumb", "probs")}


def open_source(source: str | int) -> cv2.VideoCapture:
    """A ``cv2.VideoCapture`` for a file path or a camera index; a PhysadvError when it cannot be opened."""
    src = int(source) if isinstance(source, int) or str(source).isdigit() else str(source)
    if isinstance(src, str) and not Path(src).is_file():
        raise PhysadvError(f"video not found: {src}")
    cap = cv2.VideoCapture(src)
    if not cap.isOpened():
        raise PhysadvError(f"cannot open video source {source!r} (unsupported codec, or no such camera)")
    return cap


def iter_frames(source: str | int, every: int = 1, max_frames: int = 0, desc: str = "video"):
    """Every ``every``-th frame of a video file or camera as ``(index, time_s, rgb uint8)``, up to ``max_frames``
    (0: all); Ctrl-C ends a live session early. Afterwards ``info`` holds ``frames_read`` and ``fps``."""
    from physadv.core.progress import progress

    if every < 1:
        raise PhysadvError(f"every must be >= 1, got {every}")
    cap = open_source(source)
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    info = {"frames_read": 0, "fps": fps}
    judged, index = 0, 0
    bar = progress(total=total // every if total > 0 else None, desc=desc)
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if index % every == 0:
                info["frames_read"] = index + 1
                yield index, index / fps if fps > 0 else 0.0, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), info
                bar.update(1)
                judged += 1
                if max_frames and judged >= max_frames:
                    break
            index += 1
            info["frames_read"] = index
    except KeyboardInterrupt:
        pass
    finally:
        cap.release()
        bar.close()
    if info["frames_read"] == 0:
        raise PhysadvError(f"video source {source!r} gave no frames")


def judge_video(source: str | int, model, cfg: JudgeConfig, layout=None, camera=None, every: int = 1,
                max_frames: int = 0) -> tuple[list[FrameResult], dict]:
    """Judge every ``every``-th frame (up to ``max_frames`` judged, 0 = all): (frame results, summary)."""
    results: list[FrameResult] = []
    info = {"frames_read": 0, "fps": 0.0}
    for index, t, rgb, info in iter_frames(source, every, max_frames):
        results.append(_judge_frame(rgb, index, t, model, cfg, layout, camera))
    return results, summarise_video(results, model, cfg, frames_read=info["frames_read"], fps=info["fps"])


def _judge_frame(rgb: np.ndarray, index: int, t: float, model, cfg: JudgeConfig, layout, camera) -> FrameResult:
    res = FrameResult(index, t, OK)
    try:
        loc, probs, crop = judge_image(rgb, model, cfg, layout, camera)
    except PhysadvError:
        probs, loc, crop = None, None, None
    if loc is not None:
        res.located_by, res.pnp_distance_m, res.pnp_angle = loc.method, loc.distance_m, loc.angle
    if probs is None:
        res.status = NOT_FOUND
        res.thumb = _thumb(rgb, cfg.thumb)
        return res
    _fill_prediction(res, probs, model, cfg)
    res.thumb = _thumb(crop if crop.shape[2] == 3 else np.repeat(crop, 3, axis=2), cfg.thumb)
    return res


def summarise_video(results: list[FrameResult], model, cfg: JudgeConfig, frames_read: int, fps: float) -> dict:
    judged = [r for r in results if r.status == OK]
    counts: dict[str, int] = {}
    for r in judged:
        counts[r.top1] = counts.get(r.top1, 0) + 1

    def rate(flags):
        flags = [f for f in flags if f is not None]
        return float(np.mean(flags)) if flags else None

    true, target = class_index(model, cfg.true_class), class_index(model, cfg.target_class)
    return {"frames_read": frames_read, "fps": fps, "frames_judged": len(results), "object_found": len(judged),
            "not_found": len(results) - len(judged), "top1_counts": dict(sorted(counts.items(), key=lambda kv: -kv[1])),
            "true_class": model.classes[true] if true is not None else None,
            "target_class": model.classes[target] if target is not None else None,
            "untargeted_success": rate(r.untargeted for r in judged), "targeted_success": rate(r.targeted for r in judged),
            "mean_top1_conf": rate(r.top1_conf for r in judged)}


def write_video_report(out_dir: str | Path, results: list[FrameResult], summary: dict) -> dict[str, Path]:
    """frames.csv, summary.json and summary.md in ``out_dir``."""
    from physadv.capture.report import write_csv
    from physadv.core.io import atomic_write_text, write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"csv": write_csv(out / "frames.csv", [r.row() for r in results]),
             "json": write_json(out / "summary.json", summary)}
    lines = ["# Video report", "", *(f"- {k.replace('_', ' ')}: {v}" for k, v in summary.items()), "",
             "| frame | time (s) | status | top class (conf.) | second class (conf.) |", "|---|---|---|---|---|"]
    for r in results:
        top = f"{r.top1} ({r.top1_conf:.2f})" if r.top1_conf is not None else ""
        sec = f"{r.top2} ({r.top2_conf:.2f})" if r.top2_conf is not None else ""
        lines.append(f"| {r.frame} | {r.time_s:.2f} | {r.status} | {top} | {sec} |")
    files["markdown"] = atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")
    return files


__all__ = ["FrameResult", "open_source", "iter_frames", "judge_video", "summarise_video", "write_video_report"]
