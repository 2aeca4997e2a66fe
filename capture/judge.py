"""Judging photos of a print with a classifier, by distance and angle (RP2's evaluation).

Each photo is located (fiducials, else the manifest's corners), cropped as the classifier expects
(``crop = "box"``: GTSRB-style, the object's bounding box plus a margin, perspective kept, stretched to the
square; ``"square"``: the square around that box, the object's aspect kept; ``"rectified"``: the object warped
flat; ``"full"``: the whole frame) and classified. Every row of the manifest gets a status (ok, unreadable, missing
file, object not found); nothing is skipped silently.

Per cell (distance x angle x light, per set) the class probabilities are averaged over its photos;
the top and second class with their confidences follow RP2's Table 5. Success: untargeted = the top
class is not the true class; targeted = the top class is the target. With a clean set, RP2's attack
success rate is the share of cells whose clean photos are classified correctly where the
adversarial ones are not.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from physadv.capture.photos import MISSING, NOT_FOUND, OK, UNITS_M, UNREADABLE, ManifestRow, load_photo, read_manifest
from physadv.core.errors import PhysadvError


@dataclass
class JudgeConfig:
    crop: str = "box"  # "box" (GTSRB-style), "square" (aspect kept), "rectified" or "full"
    margin: float = 0.1  # per side, as a fraction of the object's size
    true_class: str = ""  # class name (or index); blank: the clean set's top class per cell
    target_class: str = ""  # for targeted success; blank: untargeted only
    min_markers: int = 1
    max_pixels: int = 24_000_000  # larger photos are decoded reduced
    report_unit: str = ""  # distance unit of the report; blank: the manifest's
    distance_bin: float = 0.0  # bin size (report unit) for distances measured by solvePnP; 0: round to 1
    angle_bin: float = 5.0  # degrees, for angles measured by solvePnP
    thumb: int = 96  # thumbnail side in the HTML report

    def validate(self) -> None:
        if self.crop not in ("box", "square", "rectified", "full"):
            raise ValueError(f"crop {self.crop!r} must be box, square, rectified or full")
        if not 0 <= self.margin < 1:
            raise ValueError(f"margin {self.margin} must be in [0, 1)")
        if self.report_unit and self.report_unit not in UNITS_M:
            raise ValueError(f"report_unit {self.report_unit!r} is not one of {', '.join(UNITS_M)}")


@dataclass
class PhotoResult:
    set: str  # "clean" or "adversarial"
    file: str
    status: str
    message: str = ""
    located_by: str = ""  # markers, manifest, none
    distance: float | None = None  # in ``unit``, from the manifest or solvePnP
    unit: str = "m"
    angle: float | None = None
    distance_source: str = ""  # manifest or pnp
    angle_source: str = ""
    light: str = ""
    pnp_distance_m: float | None = None
    pnp_angle: float | None = None
    probs: list[float] | None = None
    top1: str = ""
    top1_conf: float | None = None
    top2: str = ""
    top2_conf: float | None = None
    untargeted: bool | None = None
    targeted: bool | None = None
    judges: dict = field(default_factory=dict)  # more models' probabilities on the same located object, by name
    thumb: np.ndarray | None = field(default=None, repr=False)  # small uint8 RGB crop for the report
    preview: np.ndarray | None = field(default=None, repr=False)  # the photo, small, with the object outlined

    def row(self) -> dict:
        keys = ["set", "file", "status", "message", "located_by", "distance", "unit", "angle", "distance_source",
                "angle_source", "light", "pnp_distance_m", "pnp_angle", "top1", "top1_conf", "top2", "top2_conf", "untargeted",
                "targeted"]
        return {k: getattr(self, k) for k in keys}


def class_index(model, name: str) -> int | None:
    """A class given by name or index (blank -> None); unknown names raise a PhysadvError listing the classes."""
    if name == "" or name is None:
        return None
    if name in model.classes:
        return model.classes.index(name)
    if str(name).lstrip("-").isdigit() and 0 <= int(name) < len(model.classes):
        return int(name)
    raise PhysadvError(f"class {name!r} is not one of the classifier's classes ({', '.join(model.classes[:12])}"
                       f"{', ...' if len(model.classes) > 12 else ''})")


def classifier_input(image: np.ndarray, loc, layout, model, cfg: JudgeConfig) -> np.ndarray:
    """The crop the classifier sees: ``H x W x C`` uint8 at the classifier's input size."""
    import cv2

    from physadv.capture.locate import crop_box, crop_rectified

    c, h, w = model.input_size
    if cfg.crop == "full":
        crop = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    elif cfg.crop == "rectified" and loc.homography is not None and layout is not None:
        crop = crop_rectified(image, loc.homography, layout, (w, h), cfg.margin)
    else:
        crop = crop_box(image, loc.quad, (w, h), cfg.margin, square=cfg.crop == "square")
    if c == 1:
        crop = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)[:, :, None]
    return crop


@torch.no_grad()
def classify(model, crops: list[np.ndarray]) -> np.ndarray:
    """Softmax probabilities (``N x classes``) for uint8 ``H x W x C`` crops."""
    if not crops:
        return np.zeros((0, len(model.classes)), np.float32)
    x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div(255.0)
    dev = next(model.parameters()).device
    model.eval()
    probs = [F.softmax(model(x[i:i + 64].to(dev)), dim=1).cpu() for i in range(0, len(x), 64)]
    return torch.cat(probs).numpy()


def judge_image(image: np.ndarray, model, cfg: JudgeConfig, layout=None, camera=None,
                corners: np.ndarray | None = None) -> tuple[object, np.ndarray | None, np.ndarray | None]:
    """Locate and classify one RGB uint8 image: (Location, probabilities or None, crop or None)."""
    from physadv.capture.locate import Location, locate

    cam = camera.for_image(image.shape[1], image.shape[0]) if camera is not None else None
    loc = locate(image, layout, cam, corners, cfg.min_markers) if layout is not None or corners is not None \
        else Location("none")
    if not loc.found and cfg.crop != "full":
        return loc, None, None
    crop = classifier_input(image, loc, layout, model, cfg)
    return loc, classify(model, [crop])[0], crop


def judge_set(rows: list[ManifestRow], folder: str | Path, model, cfg: JudgeConfig, layout=None, camera=None,
              set_name: str = "adversarial", judges: dict | None = None) -> list[PhotoResult]:
    """Judge every manifest row; each gets a status, and a bad photo never stops the rest. ``judges``: more models
    (by name) that classify the same located object, each through its own input size (a transfer matrix)."""
    from physadv.core.progress import progress

    folder = Path(folder)
    out = []
    for r in progress(rows, desc=f"judge {set_name}"):
        res, photo = open_row(r, folder, cfg, set_name)
        out.append(res)
        if photo is None:
            continue
        corners = r.corners * photo.scale if r.corners is not None else None
        try:
            loc, probs, crop = judge_image(photo.image, model, cfg, layout, camera, corners)
        except PhysadvError as exc:  # e.g. degenerate fiducial geometry
            res.status, res.message = NOT_FOUND, str(exc)
            continue
        record_location(res, loc, r)
        if probs is None:
            res.status = NOT_FOUND
            res.message = (f"no fiducials of the layout found and no corners in the manifest (line {r.line})"
                           if layout is not None else f"no layout and no corners in the manifest (line {r.line})")
            res.preview = preview(photo.image, None, 2 * cfg.thumb)
            continue
        _fill_prediction(res, probs, model, cfg)
        for name, judge in (judges or {}).items():
            res.judges[name] = classify(judge, [classifier_input(photo.image, loc, layout, judge, cfg)])[0].tolist()
        res.thumb = _thumb(crop if crop.shape[2] == 3 else np.repeat(crop, 3, axis=2), cfg.thumb)
        res.preview = preview(photo.image, loc.quad, 2 * cfg.thumb, (40, 220, 40) if loc.method == "markers" else (255, 150, 0))
    return out


def open_row(r: ManifestRow, folder: Path, cfg: JudgeConfig, set_name: str):
    """A manifest row's result (status ok, the manifest's distance and angle) and its photo; the photo is None and
    the status says why (missing file, unreadable) when it cannot be read."""
    res = PhotoResult(set_name, r.file, OK, light=r.light, unit=r.distance_unit, distance=r.distance,
                      angle=r.angle, distance_source="manifest" if r.distance is not None else "",
                      angle_source="manifest" if r.angle is not None else "")
    path = Path(folder) / r.file
    if not path.is_file():
        res.status, res.message = MISSING, f"{path} does not exist (manifest line {r.line})"
        return res, None
    try:
        return res, load_photo(path, cfg.max_pixels)
    except PhysadvError as exc:
        res.status, res.message = UNREADABLE, str(exc)
        return res, None


def record_location(res: PhotoResult, loc, r: ManifestRow) -> None:
    """How the object was found, and solvePnP's distance and angle where the manifest has none."""
    res.located_by = loc.method
    res.pnp_distance_m, res.pnp_angle = loc.distance_m, loc.angle
    if r.distance is None and loc.distance_m is not None:
        res.distance, res.distance_source = loc.distance_m / UNITS_M[r.distance_unit], "pnp"
    if r.angle is None and loc.angle is not None:
        res.angle, res.angle_source = loc.angle, "pnp"


def _fill_prediction(res: PhotoResult, probs: np.ndarray, model, cfg: JudgeConfig) -> None:
    order = np.argsort(-probs)
    res.probs = probs.tolist()
    res.top1, res.top1_conf = model.classes[order[0]], float(probs[order[0]])
    if len(order) > 1:
        res.top2, res.top2_conf = model.classes[order[1]], float(probs[order[1]])
    true, target = class_index(model, cfg.true_class), class_index(model, cfg.target_class)
    if true is not None:
        res.untargeted = bool(order[0] != true)
    if target is not None:
        res.targeted = bool(order[0] == target)


def _thumb(image: np.ndarray, side: int) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    f = side / max(h, w)
    interp = cv2.INTER_AREA if f < 1 else cv2.INTER_NEAREST
    return cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))), interpolation=interp)


def preview(image: np.ndarray, quad: np.ndarray | None, side: int, colour=(40, 220, 40)) -> np.ndarray:
    """The photo reduced to ``side`` pixels with the located object outlined (green: fiducials, orange: manifest)."""
    import cv2

    small = _thumb(image, side).copy()
    if quad is not None:
        f = small.shape[1] / image.shape[1]
        pts = np.round((np.asarray(quad) + 0.5) * f - 0.5).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(small, [pts], True, colour, 1, cv2.LINE_AA)
    return small


# --------------------------------------------------------------------------- cells and summary
def _bin(value: float | None, step: float) -> float | None:
    if value is None:
        return None
    step = step or 1.0
    return round(round(value / step) * step, 6)


def cell_key(r: PhotoResult, cfg: JudgeConfig, unit: str) -> tuple:
    """(distance in ``unit``, angle, light): manifest values as given, solvePnP values binned."""
    d = None if r.distance is None else r.distance * UNITS_M[r.unit] / UNITS_M[unit]
    d = _bin(d, cfg.distance_bin) if r.distance_source == "pnp" else (None if d is None else round(d, 3))
    a = _bin(r.angle, cfg.angle_bin) if r.angle_source == "pnp" else (None if r.angle is None else round(r.angle, 3))
    return d, a, r.light


def judgements(results: list[PhotoResult], model, cfg: JudgeConfig, unit: str) -> list:
    """The judged photos as ``core.gridreport.Judgement`` records (manifest values as given, solvePnP values binned)."""
    from physadv.core.gridreport import Judgement

    true, target = class_index(model, cfg.true_class), class_index(model, cfg.target_class)
    out = []
    for r in results:
        if r.status != OK:
            continue
        d, a, light = cell_key(r, cfg, unit)
        out.append(Judgement(r.set, d, a, light, unit, "", r.top1, r.top1_conf, r.top2, r.top2_conf,
                             model.classes[true] if true is not None else None,
                             model.classes[target] if target is not None else None, tuple(r.probs or ())))
    return out


def summarise(results: list[PhotoResult], model, cfg: JudgeConfig) -> dict:
    """Cells (RP2 Table 5 rows, ``core.gridreport.cells`` per light) and totals from per-photo results."""
    from physadv.core.gridreport import cells as grid_cells

    unit = cfg.report_unit or _common_unit(results)
    true, target = class_index(model, cfg.true_class), class_index(model, cfg.target_class)
    rows = grid_cells(judgements(results, model, cfg, unit), model.classes, by_light=True)
    by_key = {(c["set"], c["distance"], c["angle"], c["light"]): c for c in rows}
    for c in rows:  # blank true class: the clean set's top class in the same cell is the reference
        clean = by_key.get(("clean", c["distance"], c["angle"], c["light"]))
        c["clean_top1"] = clean["top1"] if clean else None
        if true is None and c["set"] == "adversarial" and clean:
            c["untargeted_rate"] = float(c["top1"] != clean["top1"])
    adv = [r for r in results if r.set == "adversarial" and r.status == OK]
    summary = {"photos": len(results), "by_status": _count(r.status for r in results),
               "judged": {s: sum(r.status == OK for r in results if r.set == s) for s in ("clean", "adversarial")},
               "unit": unit, "true_class": model.classes[true] if true is not None else None,
               "target_class": model.classes[target] if target is not None else None,
               "untargeted_success": _rate([r.untargeted for r in adv]), "targeted_success": _rate([r.targeted for r in adv]),
               "clean_accuracy": _rate([None if r.untargeted is None else not r.untargeted
                                        for r in results if r.set == "clean" and r.status == OK])}
    paired = [c for c in rows if c["set"] == "adversarial" and c["clean_top1"] is not None]
    if paired:  # RP2: among cells whose clean photo is right, how many adversarial ones are wrong (or on target)
        good = [c for c in paired if true is None or c["clean_top1"] == model.classes[true]]
        summary["rp2_cells"] = len(good)
        summary["rp2_success"] = (float(np.mean([c["top1"] != c["clean_top1"] if target is None
                                                 else c["top1"] == model.classes[target] for c in good])) if good else None)
    return {"summary": summary, "cells": rows}


def _rate(flags) -> float | None:
    flags = [f for f in flags if f is not None]
    return float(np.mean(flags)) if flags else None


def _count(items) -> dict:
    out: dict = {}
    for i in items:
        out[i] = out.get(i, 0) + 1
    return out


def _common_unit(results: list[PhotoResult]) -> str:
    units = _count(r.unit for r in results)
    return max(units, key=units.get) if units else "m"


def evaluate_photos(model, cfg: JudgeConfig, photos: str | Path | None, manifest: str | Path | None, layout=None,
                    camera=None, clean_photos: str | Path | None = None, clean_manifest: str | Path | None = None,
                    judges: dict | None = None) -> tuple[list[PhotoResult], dict]:
    """Judge an adversarial photo set and/or its clean counterpart: (results, summary with cells).

    Photo folders default to the manifest's folder (manifest file names are relative to it).
    """
    if not manifest and not clean_manifest:
        raise PhysadvError("give a manifest of adversarial photos, of clean photos, or both")
    results = []
    if clean_manifest:
        results += judge_set(read_manifest(clean_manifest), clean_photos or Path(clean_manifest).parent, model, cfg,
                             layout, camera, "clean", judges)
    if manifest:
        results += judge_set(read_manifest(manifest), photos or Path(manifest).parent, model, cfg, layout, camera,
                             "adversarial", judges)
    report = summarise(results, model, cfg)
    if judges:
        report["transfer"] = transfer(results, model, judges, cfg)
    return results, report


def transfer(results: list[PhotoResult], model, judges: dict, cfg: JudgeConfig) -> list[dict]:
    """The photos' transfer row(s): the print's success as the judging model and every other judge sees it."""
    from physadv.core.gridreport import judge_probs, transfer_table

    unit = cfg.report_unit or _common_unit(results)
    true, target = class_index(model, cfg.true_class), class_index(model, cfg.target_class)
    named = {getattr(model, "arch", "") or "model": (model, lambda r: r.probs)}
    named.update({name: (judge, lambda r, n=name: r.judges.get(n)) for name, judge in judges.items()})
    js = []
    for name, (clf, probs_of) in named.items():
        ok = [r for r in results if r.status == OK and probs_of(r) is not None]
        if ok:
            js += judge_probs([probs_of(r) for r in ok], clf.classes, set=[r.set for r in ok], victim=name, unit=unit,
                              distance=[r.distance for r in ok], angle=[r.angle for r in ok], light=[r.light for r in ok],
                              true_class=model.classes[true] if true is not None else None,
                              target_class=model.classes[target] if target is not None else None)
    return transfer_table(js)


__all__ = ["JudgeConfig", "PhotoResult", "class_index", "classifier_input", "classify", "judge_image", "judge_set",
           "open_row", "record_location", "summarise", "evaluate_photos"]
