"""Detectors in the physical pipeline: the glue between the attacks (RP2, EOT, the patch, which only see a
``core.victims.Victim``), the scenes' whole-frame views, and detection judging by distance and angle.

The attacks need nothing detector-specific: a ``DetectorVictim`` reads raw, pre-NMS scores of every candidate
overlapping the object (disappearance: Eykholt et al. 2018, "Physical Adversarial Examples for Object Detectors";
targeted: Chen et al. 2018, ShapeShifter; creation: the detector paper's creation attack), on views that are whole
frames in which the object is small at distance. What this module adds:

- ``check_detector_scene``: a detector must see whole frames with the object's box (a planar scene with
  ``view: frame``, or a mesh scene), not classifier crops;
- ``judge_grid_detection``: the simulated grid judged by every judge: classifiers as ``physical.evaluate.judge_grid``
  does, detectors by their matched detections (``core.detection_report.DetectionRecord``: detected as source, as
  target, not detected, scores), with ``core.gridreport.Judgement`` rows too (top class = the best matched
  detection's class, or "(none)"), so the one Table 5 report still holds every judge;
- ``add_detection_report``: the detection cells, heatmaps and table beside a grid report, and its page section.
"""
from __future__ import annotations

from pathlib import Path

import torch

from physadv.core.detection_report import NONE, DetectionRecord, records_from_verdict, write_detection_report
from physadv.core.detection_spec import is_detector_victim
from physadv.core.errors import PhysadvError
from physadv.core.gridreport import Judgement
from physadv.core.progress import progress
from physadv.core.victims import Objective

FT = 0.3048


def check_detector_scene(victim, scene_cfg) -> None:
    """A detector victim needs whole frames with the object's box: a one-line error naming the key otherwise."""
    if not is_detector_victim(victim):
        return
    if scene_cfg.kind == "flat":
        raise PhysadvError(f"victim {victim.name} is a detector: it needs whole frames with the object's box, which a "
                           "flat scene has not; use scene.kind=planar with scene.view=frame (or a mesh scene)")
    if scene_cfg.kind == "planar" and scene_cfg.view != "frame":
        raise PhysadvError(f"victim {victim.name} is a detector: set scene.view=frame (whole frames; now "
                           f"'{scene_cfg.view}', the classifiers' crops)")


def min_view_px(victim) -> int:
    """The crop size a scene must render for ``victim`` (detectors see whole frames: no constraint)."""
    return 0 if is_detector_victim(victim) else max(victim.input_size[1:])


def _where(cells) -> dict:
    cells = cells or []
    return {"distance": [None if c[0] is None else round(c[0] / FT, 3) for c in cells],
            "angle": [c[1] for c in cells], "light": ["" if c[2] is None else f"light{c[2]}" for c in cells]}


@torch.no_grad()
def detector_grid_records(scene, renders: dict, detectors: dict, objective: Objective, spec, batch: int = 32,
                          progress_bar: bool = True) -> list[DetectionRecord]:
    """One ``DetectionRecord`` per grid view, design and detector victim (distances in feet, as RP2's table)."""
    grid = scene.grid(spec)
    out: list[DetectionRecord] = []
    chunks = grid.split(batch)
    for chunk in progress(chunks, desc="grid (detectors)", disable=not progress_bar or len(chunks) < 2):
        where = _where(chunk.cells or [(None, None, None)] * len(chunk))
        for name, render in renders.items():
            views = render(chunk)
            for vname, victim in detectors.items():
                verdict = victim.judge(views, objective)
                out += records_from_verdict(verdict, victim.classes, objective.source, objective.target, set=name,
                                            victim=vname, unit="ft", **where)
    return out


def records_as_judgements(records: list[DetectionRecord]) -> list[Judgement]:
    """The records as Table 5 rows: the top class is the best matched detection's class, or "(none)"."""
    return [Judgement(r.set, r.distance, r.angle, r.light, r.unit, r.victim, r.label, r.score, "", None, r.source,
                      r.target) for r in records]


def judge_grid_detection(scene, renders: dict, judges: dict, objective: Objective, spec,
                         progress_bar: bool = True) -> tuple[list[Judgement], list[DetectionRecord]]:
    """Every judge on the grid: (Table 5 judgements of all judges, detection records of the detector judges)."""
    from physadv.physical.evaluate import judge_grid

    detectors = {n: v for n, v in judges.items() if is_detector_victim(v)}
    classifiers = {n: v for n, v in judges.items() if n not in detectors}
    judgements = judge_grid(scene, renders, classifiers, objective, spec, progress_bar=progress_bar) if classifiers else []
    records = detector_grid_records(scene, renders, detectors, objective, spec, progress_bar=progress_bar) if detectors else []
    return judgements + records_as_judgements(records), records


def judge_grid_each_size(scene_at, designs: dict, judges: dict, objective: Objective, spec,
                         progress_bar: bool = True) -> tuple[list[Judgement], list[DetectionRecord]]:
    """``judge_grid_detection`` with every classifier judge seeing the grid rendered at its own input size, as a
    design is optimised for it, so its verdicts do not depend on which other models judge beside it (views rendered
    for a 64 px judge and shrunk would average a 32 px judge's camera noise away). ``scene_at(px)``: the scene
    rendering crops of at least ``px`` (``rendering.scene.build_scene``'s ``min_view_px``); ``designs``: name ->
    ``PhysicalResult``, judged beside the clean face. Detectors see whole frames and join the smallest size."""
    from physadv.physical.evaluate import face, result_views

    size = {n: min_view_px(v) for n, v in judges.items()}
    sizes = sorted({px for px in size.values() if px}) or [0]
    judgements, records = [], []
    for px in sizes:
        group = {n: v for n, v in judges.items() if size[n] == px or (not size[n] and px == sizes[0])}
        scene = scene_at(px)
        renders = {"clean": face(scene, scene.obj.texture)} | {n: result_views(scene, r) for n, r in designs.items()}
        j, r = judge_grid_detection(scene, renders, group, objective, spec, progress_bar)
        judgements, records = judgements + j, records + r
    return judgements, records


def add_detection_report(folder: str | Path, records: list[DetectionRecord], title: str):
    """The detection report beside a grid report (``None`` when no detector judged); see ``core.detection_report``."""
    if not records:
        return None
    return write_detection_report(folder, records, title)


def detection_metrics(report) -> dict:
    """The detection summary for ``metrics.json`` (empty without detectors)."""
    return {} if report is None else {"detection": report.summary}


def grid_objective(kind: str, source: str, target: str | None) -> Objective:
    """The objective a grid is judged for: ``auto`` is targeted with a target, else untargeted (for a detector:
    not detected as the source, the disappearance attack's success)."""
    if kind == "auto":
        kind = "targeted" if target else "untargeted"
    return Objective(kind, source or None, target or None)


def detector_photo_section(page, out_dir, sets: dict, layout, detector: str = "sign-detector", source: str = "stop",
                           target: str | None = "speed_limit_80", cfg=None, title: str = "The detector's view") -> dict:
    """Judge photo sets (``{"clean": folder, "adversarial": folder}``, each with its ``manifest.csv``, as ``capture
    simulate`` writes them) with a detector on the whole photos (``capture.detect``), write its reports in
    ``out_dir`` (report.html, results.csv, detection cells), and add a section to ``page`` (a ``core.html.Page``):
    the rates per set, the distance x angle heatmaps and the per-cell table. Returns ``{"summary", "files"}``."""
    import html

    from physadv.capture.detect import evaluate_photos_detector, write_detection_reports
    from physadv.capture.judge import JudgeConfig
    from physadv.core.detection_report import detection_section
    from physadv.core.detection_spec import DetectionConfig, load_detector_victim

    cfg = cfg or DetectionConfig()
    victim = load_detector_victim(detector, cfg=cfg)
    judge = JudgeConfig(true_class=source, target_class=target or "", report_unit="ft")
    adv, clean = sets.get("adversarial"), sets.get("clean")
    results, report = evaluate_photos_detector(victim, judge, cfg, adv, Path(adv) / "manifest.csv" if adv else None, layout,
                                               None, clean, Path(clean) / "manifest.csv" if clean else None)
    files, det = write_detection_reports(out_dir, results, report, f"{title}: {detector} on the whole photos")
    detection_section(page, det, f"{title}: {detector} on the whole photos (no crop)")
    page.raw(f"<p>Every photo with its detections: <code>{html.escape(str(files['html']))}</code>.</p>")
    return {"summary": report["summary"], "files": files}


__all__ = ["NONE", "detector_photo_section", "add_detection_report", "check_detector_scene", "detection_metrics", "detector_grid_records",
           "grid_objective", "judge_grid_detection", "judge_grid_each_size", "min_view_px", "records_as_judgements"]
