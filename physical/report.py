"""Distance x angle reports in the layout of RP2's Table 5: per cell the top class and its confidence,
the second class and its confidence, for the clean and the adversarial object, plus success rates.

Input is a list of per-view records (one per rendered or photographed view); output is CSV, Markdown
and a heatmap PNG of targeted success by distance and angle.
"""
from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from physadv.core import plots
from physadv.core.io import atomic_path, atomic_write_text
from physadv.core.plots import grid_means


@dataclass
class ViewRecord:
    """One classified view of an object."""

    variant: str  # "clean" or "adversarial"
    distance_ft: float
    angle_deg: float
    light: str
    top1: str
    conf1: float
    top2: str
    conf2: float
    true_class: str
    target_class: str | None = None
    probs: tuple[float, ...] = ()  # all class probabilities (not written to CSV), for per-cell means

    @property
    def correct(self) -> bool:
        return self.top1 == self.true_class

    @property
    def targeted(self) -> bool:
        return self.target_class is not None and self.top1 == self.target_class


def summarise(records: list[ViewRecord]) -> dict:
    """Overall and per-angle / per-distance rates for each variant."""
    out: dict = {}
    for variant in sorted({r.variant for r in records}):
        rs = [r for r in records if r.variant == variant]
        entry = {"views": len(rs), "accuracy": _mean(r.correct for r in rs),
                 "untargeted_success": _mean(not r.correct for r in rs),
                 "targeted_success": _mean(r.targeted for r in rs) if rs and rs[0].target_class else None}
        for key, attr in (("by_angle", "angle_deg"), ("by_distance_ft", "distance_ft")):
            groups = defaultdict(list)
            for r in rs:
                groups[getattr(r, attr)].append(r)
            entry[key] = {f"{k:g}": {"accuracy": _mean(x.correct for x in g),
                                     "targeted_success": _mean(x.targeted for x in g) if g[0].target_class else None}
                          for k, g in sorted(groups.items())}
        out[variant] = entry
    return out


def _mean(values) -> float:
    v = list(values)
    return float(np.mean(v)) if v else float("nan")


def cells(records: list[ViewRecord], classes: list[str] | None = None) -> list[dict]:
    """One row per (distance, angle) and variant: top and second class of the cell.

    With ``classes`` and per-view probabilities, the cell's class probabilities are averaged over its
    views (lights) and the two largest are reported; otherwise the most common top-1 and top-2 labels.
    """
    groups: dict = defaultdict(list)
    for r in records:
        groups[(r.distance_ft, r.angle_deg, r.variant)].append(r)
    rows: dict = {}
    for (d, a, variant), rs in sorted(groups.items()):
        row = rows.setdefault((d, a), {"distance_ft": d, "angle_deg": a})
        if classes and all(len(r.probs) == len(classes) for r in rs):
            mean = np.mean([r.probs for r in rs], axis=0)
            i1, i2 = np.argsort(-mean, kind="stable")[:2]
            row.update({f"{variant}_top1": classes[i1], f"{variant}_conf1": round(float(mean[i1]), 3),
                        f"{variant}_top2": classes[i2], f"{variant}_conf2": round(float(mean[i2]), 3)})
        else:
            top1 = max(sorted({r.top1 for r in rs}), key=lambda c: sum(r.top1 == c for r in rs))  # ties: first by name
            top2 = max(sorted({r.top2 for r in rs}), key=lambda c: sum(r.top2 == c for r in rs))
            row[f"{variant}_top1"] = top1
            row[f"{variant}_conf1"] = round(float(np.mean([r.conf1 for r in rs if r.top1 == top1])), 3)
            row[f"{variant}_top2"] = top2
            row[f"{variant}_conf2"] = round(float(np.mean([r.conf2 for r in rs if r.top2 == top2])), 3)
        row[f"{variant}_accuracy"] = round(_mean(r.correct for r in rs), 3)
        if rs[0].target_class:
            row[f"{variant}_targeted"] = round(_mean(r.targeted for r in rs), 3)
    return list(rows.values())


def write_csv(path: str | Path, records: list[ViewRecord]) -> Path:
    buf = io.StringIO()
    fields = [k for k in asdict(records[0]) if k != "probs"] + ["correct", "targeted"] if records else []
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    for r in records:
        w.writerow({**asdict(r), "correct": r.correct, "targeted": r.targeted})
    return atomic_write_text(path, buf.getvalue())


def markdown_table(records: list[ViewRecord], classes: list[str] | None = None) -> str:
    """RP2 Table 5: distance/angle, then top class (confidence) and second class (confidence) per variant."""
    rows = cells(records, classes)
    variants = [v for v in ("clean", "adversarial") if any(f"{v}_top1" in r for r in rows)]
    head = "| distance (ft) | angle (deg) | " + " | ".join(f"{v}: top class (conf.) | {v}: second class (conf.)" for v in variants)
    if any("adversarial_targeted" in r for r in rows):
        head += " | targeted success"
    lines = [head + " |", "|" + "---|" * (head.count("|") - 1 + 1)]
    for r in rows:
        parts = [f"{r['distance_ft']:g}", f"{r['angle_deg']:g}"]
        for v in variants:
            if f"{v}_top1" not in r:
                parts += ["–", "–"]
                continue
            parts += [f"{r[f'{v}_top1']} ({r[f'{v}_conf1']:.2f})", f"{r[f'{v}_top2']} ({r[f'{v}_conf2']:.2f})"]
        if "adversarial_targeted" in r:
            parts.append(f"{r['adversarial_targeted']:.0%}")
        lines.append("| " + " | ".join(parts) + " |")
    return "\n".join(lines) + "\n"


def heatmap(path: str | Path, records: list[ViewRecord], variant: str = "adversarial", metric: str = "targeted",
            title: str | None = None) -> Path:
    """Success (or accuracy) by distance (rows) and angle (columns) as a PNG."""
    rs = [r for r in records if r.variant == variant]
    ds, angs, grid = grid_means(rs, lambda r: r.distance_ft, lambda r: r.angle_deg, lambda r: getattr(r, metric))
    png = plots.heatmap_png(grid, ds, angs, "ft", title or f"{variant}: {'targeted success' if metric == 'targeted' else metric}")
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(png)
    return Path(path)


def loss_curve(path: str | Path, history: dict[str, list[float]], title: str = "optimisation") -> Path:
    """Loss terms against step as a PNG."""
    from physadv.core.plots import pyplot, save_figure

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, values in history.items():
        if values:
            ax.plot(values, label=name)
    ax.set_xlabel("step")
    ax.set_yscale("symlog", linthresh=1e-2)
    ax.legend(fontsize=8)
    ax.set_title(title)
    return save_figure(fig, path)
