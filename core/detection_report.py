"""Detection by distance and angle: what a detector made of each view or photo of an object, and the per-cell
table every detector judging writes (the simulated grid of a design, ``capture eval --detector``, the demo).

Per view (``DetectionRecord``): the labels of the detections matched to the object (score >= the threshold, IoU
>= ``match_iou`` with the object's box; or anywhere in the frame when matching by frame), the best one's label and
score, and the best source-class score. Per cell (victim, set, distance, angle): the share of views

- ``as_source``: detected as the object's own class (the detector still sees the stop sign);
- ``as_target``: detected as the target class (Chen et al. 2018, ShapeShifter's success, when also not as source);
- ``not_detected``: no matched detection at all (Eykholt et al. 2018, "Physical Adversarial Examples for Object
  Detectors": the disappearance attack's goal; the detector paper counts frames where the sign is not detected);
- ``other``: detected only as other classes;

and ``mean_score`` (the best matched detection's score, 0 when none) and ``mean_source_score``. The disappearance
rate of the bars is ``1 - as_source``: the object not detected as its class.
"""
from __future__ import annotations

import html
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

NONE = "(none)"


@dataclass
class DetectionRecord:
    """One view (or photo, or video frame) of an object judged by one detector."""

    set: str
    distance: float | None
    angle: float | None
    light: str = ""
    unit: str = "ft"
    victim: str = ""
    label: str = NONE  # the best matched detection's class, or "(none)"
    score: float = 0.0  # its score (0 when none)
    labels: tuple[str, ...] = ()  # every matched detection's class
    source: str | None = None
    target: str | None = None
    source_score: float = 0.0  # the best matched detection of the source class (0 when none)
    file: str = ""  # the photo or frame it came from (capture)

    @property
    def as_source(self) -> bool:
        return self.source is not None and self.source in self.labels

    @property
    def as_target(self) -> bool:
        return self.target is not None and self.target in self.labels

    @property
    def detected(self) -> bool:
        return bool(self.labels)

    def row(self) -> dict:
        d = asdict(self)
        d["labels"] = " ".join(self.labels)
        return d | {"as_source": self.as_source, "as_target": self.as_target, "not_detected": not self.detected}


def records_from_verdict(verdict, classes: list[str], source: str | None, target: str | None, **fields) -> list[DetectionRecord]:
    """Records from a ``DetectorVictim`` verdict (``probs``: the best matched score per class, 0 where none)."""
    probs = verdict.probs.cpu().numpy()
    s = classes.index(source) if source in classes else None
    out = []
    for i in range(len(probs)):
        f = {k: (v[i] if isinstance(v, (list, tuple)) else v) for k, v in fields.items()}
        matched = tuple(classes[k] for k in np.nonzero(probs[i] > 0)[0])
        pred = int(verdict.pred[i])
        out.append(DetectionRecord(label=classes[pred] if pred >= 0 else NONE, score=round(float(verdict.score[i]), 4),
                                   labels=matched, source=source, target=target,
                                   source_score=round(float(probs[i, s]), 4) if s is not None else 0.0, **f))
    return out


def record_from_matches(labels, scores, classes: list[str], source: str | None, target: str | None,
                        **fields) -> DetectionRecord:
    """A record from one view's matched detections (``core.detection_victim.match_detections``)."""
    names = [classes[int(k)] for k in labels]
    best = int(np.argmax(scores)) if len(scores) else -1
    src = [float(s) for n, s in zip(names, scores) if n == source]
    return DetectionRecord(label=names[best] if best >= 0 else NONE, score=round(float(scores[best]), 4) if best >= 0 else 0.0,
                           labels=tuple(dict.fromkeys(names)), source=source, target=target,
                           source_score=round(max(src), 4) if src else 0.0, **fields)


def _share(flags) -> float | None:
    flags = list(flags)
    return float(np.mean(flags)) if flags else None


def rates(records: list[DetectionRecord]) -> dict:
    """The four shares and the two mean scores of a group of records."""
    return {"n": len(records), "as_source": _share(r.as_source for r in records) if any(r.source for r in records) else None,
            "as_target": _share(r.as_target for r in records) if any(r.target for r in records) else None,
            "not_detected": _share(not r.detected for r in records),
            "other": _share(r.detected and not r.as_source and not r.as_target for r in records),
            "mean_score": _share(r.score for r in records), "mean_source_score": _share(r.source_score for r in records)}


def _num(v) -> float:
    return float("inf") if v is None else float(v)


def detection_cells(records: list[DetectionRecord], by_light: bool = False) -> list[dict]:
    """One row per (victim, set, distance, angle[, light]) with ``rates``, sorted (clean first)."""
    groups: dict[tuple, list[DetectionRecord]] = defaultdict(list)
    for r in records:
        groups[(r.victim, r.set, r.distance, r.angle, r.light if by_light else "")].append(r)
    rows = [{"victim": v, "set": s, "distance": d, "unit": rs[0].unit, "angle": a, "light": light, **rates(rs)}
            for (v, s, d, a, light), rs in groups.items()]
    return sorted(rows, key=lambda r: (r["victim"], r["set"] != "clean", r["set"], _num(r["distance"]), _num(r["angle"]), r["light"]))


def detection_summary(records: list[DetectionRecord]) -> dict:
    """``{victim: {set: rates + by_distance + by_angle}}``."""
    groups: dict[tuple, list[DetectionRecord]] = defaultdict(list)
    for r in records:
        groups[(r.victim, r.set)].append(r)
    out: dict = {}
    for (victim, set_name), rs in sorted(groups.items()):
        entry = rates(rs)
        for name, attr in (("by_distance", "distance"), ("by_angle", "angle")):
            parts: dict = defaultdict(list)
            for r in rs:
                parts[getattr(r, attr)].append(r)
            entry[name] = {f"{k:g}": rates(g) for k, g in sorted(parts.items(), key=lambda kv: _num(kv[0])) if k is not None}
        out.setdefault(victim, {})[set_name] = entry
    return out


COLUMNS = ("n", "as_source", "as_target", "not_detected", "other", "mean_score", "mean_source_score")


def _table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    unit = rows[0]["unit"] if rows else "ft"
    lights = any(r["light"] for r in rows)
    head = ["detector", "set", f"distance ({unit})", "angle (°)"] + (["light"] if lights else [])
    head += ["views", "detected as source", "detected as target", "not detected", "other class", "mean score",
             "mean source score"]
    pct = lambda v: "" if v is None else f"{v:.0%}"  # noqa: E731
    body = []
    for r in rows:
        cells = [r["victim"], r["set"], "" if r["distance"] is None else f"{r['distance']:g}",
                 "" if r["angle"] is None else f"{r['angle']:g}"] + ([r["light"]] if lights else [])
        cells += [str(r["n"]), pct(r["as_source"]), pct(r["as_target"]), pct(r["not_detected"]), pct(r["other"]),
                  "" if r["mean_score"] is None else f"{r['mean_score']:.2f}",
                  "" if r["mean_source_score"] is None else f"{r['mean_source_score']:.2f}"]
        body.append(cells)
    return head, body


def markdown_detection_table(rows: list[dict]) -> str:
    head, body = _table(rows)
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(b) + " |" for b in body]) + "\n"


def html_detection_table(rows: list[dict], table_id: str = "detection") -> str:
    head, body = _table(rows)
    e = html.escape
    out = [f"<table class='grid' id='{e(table_id)}'><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in b) + "</tr>" for b in body]
    return "\n".join(out + ["</table>"])


def detection_heatmap(rows: list[dict], victim: str, set_name: str, key: str, title: str) -> bytes | None:
    """A distance x angle heatmap of one rate (lights pooled) of one detector and set, as PNG bytes."""
    from physadv.core.plots import grid_means, heatmap_png

    rs = [r for r in rows if r["victim"] == victim and r["set"] == set_name and r.get(key) is not None
          and r["distance"] is not None and r["angle"] is not None]
    if not rs:
        return None
    ds, angs, grid = grid_means(rs, lambda r: r["distance"], lambda r: r["angle"], lambda r: r[key])
    return heatmap_png(grid, ds, angs, rs[0]["unit"], title, high_is_good=key == "as_source")  # the detector's view


@dataclass
class DetectionReport:
    """What ``write_detection_report`` wrote: summary, cells, files and heatmap PNGs (bytes, for a page)."""

    summary: dict
    cells: list[dict]
    files: dict = field(default_factory=dict)
    heatmaps: dict = field(default_factory=dict)


def _heatmaps(rows: list[dict]) -> dict[str, bytes]:
    """Per detector and set: clean, detected as source; a targeted design, as target; else not as source."""
    out = {}
    for victim in dict.fromkeys(r["victim"] for r in rows):
        for set_name in dict.fromkeys(r["set"] for r in rows if r["victim"] == victim):
            targeted = any(r["as_target"] is not None for r in rows if r["victim"] == victim and r["set"] == set_name)
            key = "as_source" if set_name == "clean" or not targeted else "as_target"
            title = f"{victim} {set_name}: detected as {'source' if key == 'as_source' else 'target'}"
            png = detection_heatmap(rows, victim, set_name, key, title)
            if png is not None:
                out[title] = png
    return out


def write_detection_report(folder: str | Path, records: list[DetectionRecord], title: str) -> DetectionReport:
    """``detection_views.csv``, ``detection_cells.csv``, ``detection.md``, ``detection.json`` and one heatmap per
    detector and set (``detection_*.png``) in ``folder``."""
    from physadv.core.gridreport import write_csv
    from physadv.core.io import atomic_path, atomic_write_text, write_json

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rows, summ = detection_cells(records), detection_summary(records)
    files = {"views_csv": write_csv(out / "detection_views.csv", [r.row() for r in records]),
             "cells_csv": write_csv(out / "detection_cells.csv", rows),
             "json": write_json(out / "detection.json", {"summary": summ, "cells": rows})}
    lines = [f"# {title}", ""] + [f"- **{v}: {s}**: {headline(e)}" for v, sets in summ.items() for s, e in sets.items()]
    files["markdown"] = atomic_write_text(out / "detection.md", "\n".join(lines + ["", markdown_detection_table(rows)]))
    heatmaps = _heatmaps(rows)
    for i, png in enumerate(heatmaps.values()):
        with atomic_path(out / f"detection_{i}.png") as tmp:
            tmp.write_bytes(png)
    return DetectionReport(summ, rows, files, heatmaps)


def headline(entry: dict) -> str:
    """One line of a set's rates."""
    parts = [f"{entry['n']} views"]
    if entry.get("as_source") is not None:
        parts.append(f"detected as source {entry['as_source']:.1%}")
    if entry.get("as_target") is not None:
        parts.append(f"as target {entry['as_target']:.1%}")
    parts += [f"not detected {entry['not_detected']:.1%}", f"mean score {entry['mean_score']:.2f}"]
    return ", ".join(parts)


def detection_section(page, report: DetectionReport, title: str = "Detection by distance and angle") -> None:
    """A ``core.html.Page`` section: the headline per detector and set, the heatmaps and the per-cell table."""
    page.heading(title)
    items = "".join(f"<li>{html.escape(v)}: {html.escape(s)}: {html.escape(headline(e))}</li>"
                    for v, sets in report.summary.items() for s, e in sets.items())
    page.raw(f"<ul id='detection-summary'>{items}</ul>")
    for name, png in report.heatmaps.items():
        page.image(png, name, 300)
    page.raw(html_detection_table(report.cells))


__all__ = ["NONE", "DetectionRecord", "DetectionReport", "detection_cells", "detection_heatmap", "detection_section",
           "detection_summary", "headline", "html_detection_table", "markdown_detection_table", "rates",
           "record_from_matches", "records_from_verdict", "write_detection_report"]
