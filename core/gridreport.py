"""The one distance x angle report, in the layout of RP2's Table 5 (Eykholt et al. 2018), for every place that judges
an object by distance and angle: the simulated grid of a design, photos of a print (capture), the demo, and the
sign classifiers' accuracy grid.

Input: ``Judgement`` records, one per view (or photo) and victim. Output:

- ``cells``: one row per (victim, set, distance, angle[, light]): ``n``; ``top1``/``top1_conf``/``top2``/``top2_conf``
  from the cell's mean class probabilities (or, without probabilities, the most common labels); ``accuracy``,
  ``untargeted_rate``, ``targeted_rate`` (the share of the cell's views);
- ``summary``: per victim and set: views, accuracy, untargeted and targeted success with their 95% Wilson intervals
  (``wilson_interval``; a 70-view grid's 90% is 81-95%), by angle and by distance;
- ``markdown_table`` / ``html_table``: Table 5 (distance x angle rows; per set the top and second class with their
  confidence; the success rate), ``heatmap_png``: a distance x angle heatmap of a rate;
- ``write_report``: all of it in a folder (CSV, Markdown, heatmaps, JSON) and a self-contained HTML page.
"""
from __future__ import annotations

import csv
import html
import io
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass
class Judgement:
    """One view of an object judged by one victim."""

    set: str  # "clean", "adversarial", or a design's name
    distance: float | None  # in ``unit``
    angle: float | None  # degrees off the object's normal
    light: str = ""
    unit: str = "ft"
    victim: str = ""
    top1: str = ""
    top1_conf: float | None = None
    top2: str = ""
    top2_conf: float | None = None
    true_class: str | None = None
    target_class: str | None = None
    probs: tuple[float, ...] = ()  # over the victim's classes (for cell means)

    @property
    def correct(self) -> bool | None:
        return None if self.true_class is None else self.top1 == self.true_class

    @property
    def untargeted(self) -> bool | None:
        return None if self.true_class is None else self.top1 != self.true_class

    @property
    def targeted(self) -> bool | None:
        return None if self.target_class is None else self.top1 == self.target_class


def judge_probs(probs, classes: list[str], **fields) -> list[Judgement]:
    """Judgements from an ``N x K`` probability array (top-1 and top-2 read off it); ``fields`` are shared or lists."""
    p = np.asarray(probs, dtype=np.float64)
    order = np.argsort(-p, axis=1, kind="stable")
    out = []
    for i in range(len(p)):
        f = {k: (v[i] if isinstance(v, (list, tuple)) else v) for k, v in fields.items()}
        i1, i2 = order[i, 0], order[i, 1] if p.shape[1] > 1 else order[i, 0]
        out.append(Judgement(top1=classes[i1], top1_conf=round(float(p[i, i1]), 4), top2=classes[i2] if p.shape[1] > 1 else "",
                             top2_conf=round(float(p[i, i2]), 4) if p.shape[1] > 1 else None,
                             probs=tuple(round(float(v), 5) for v in p[i]), **f))
    return out


def _rate(flags) -> float | None:
    flags = [f for f in flags if f is not None]
    return float(np.mean(flags)) if flags else None


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval for a binomial proportion (Wilson 1927, JASA 22; Brown, Cai and DasGupta 2001 recommend
    it over the normal interval, which collapses at 0 and 1): ``(p + z^2/2n +- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)``."""
    from math import sqrt
    from statistics import NormalDist

    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"wilson_interval needs 0 <= successes <= n and n > 0, got {successes} of {n}")
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p, z2 = successes / n, z * z
    centre, half = p + z2 / (2 * n), z * sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, (centre - half) / (1 + z2 / n)), min(1.0, (centre + half) / (1 + z2 / n))


def _ci95(flags) -> list[float] | None:
    flags = [bool(f) for f in flags if f is not None]
    return [round(x, 4) for x in wilson_interval(sum(flags), len(flags))] if flags else None


def _most_common(labels: list[str]) -> str:
    return max(sorted(set(labels)), key=labels.count)  # ties: first by name


def cells(judgements: list[Judgement], classes: dict[str, list[str]] | list[str] | None = None,
          by_light: bool = False) -> list[dict]:
    """One row per (victim, set, distance, angle[, light]), sorted; see the module docstring. ``classes``: the class
    names the probabilities are over (one list, or one per victim)."""
    groups: dict[tuple, list[Judgement]] = defaultdict(list)
    for j in judgements:
        groups[(j.victim, j.set, j.distance, j.angle, j.light if by_light else "")].append(j)
    rows = []
    for (victim, set_name, d, a, light), js in groups.items():
        names = classes.get(victim) if isinstance(classes, dict) else classes
        row = {"victim": victim, "set": set_name, "distance": d, "unit": js[0].unit, "angle": a, "light": light, "n": len(js)}
        if names and all(len(j.probs) == len(names) for j in js):
            mean = np.mean([j.probs for j in js], axis=0)
            i1, i2 = np.argsort(-mean, kind="stable")[:2] if len(names) > 1 else (0, 0)
            row.update(top1=names[i1], top1_conf=float(mean[i1]), top2=names[i2] if len(names) > 1 else "",
                       top2_conf=float(mean[i2]) if len(names) > 1 else None)
        else:
            top1, top2 = _most_common([j.top1 for j in js]), _most_common([j.top2 for j in js])
            c1 = [j.top1_conf for j in js if j.top1 == top1 and j.top1_conf is not None]
            c2 = [j.top2_conf for j in js if j.top2 == top2 and j.top2_conf is not None]
            row.update(top1=top1, top1_conf=float(np.mean(c1)) if c1 else None, top2=top2,
                       top2_conf=float(np.mean(c2)) if c2 else None)
        row.update(accuracy=_rate(j.correct for j in js), untargeted_rate=_rate(j.untargeted for j in js),
                   targeted_rate=_rate(j.targeted for j in js))
        rows.append(row)
    key = lambda r: (r["victim"], r["set"] != "clean", r["set"], _num(r["distance"]), _num(r["angle"]), r["light"])  # noqa: E731
    return sorted(rows, key=key)


def _num(v) -> float:
    return float("inf") if v is None else float(v)


def summary(judgements: list[Judgement]) -> dict:
    """``{victim: {set: {views, accuracy, untargeted_success, targeted_success, by_angle, by_distance}}}``, and each
    rate's 95% Wilson interval (``accuracy_ci95``, ``targeted_success_ci95``, ...: the views as independent trials)."""
    out: dict = {}
    groups: dict[tuple, list[Judgement]] = defaultdict(list)
    for j in judgements:
        groups[(j.victim, j.set)].append(j)
    for (victim, set_name), js in sorted(groups.items()):
        entry = {"views": len(js), "accuracy": _rate(j.correct for j in js),
                 "untargeted_success": _rate(j.untargeted for j in js), "targeted_success": _rate(j.targeted for j in js)}
        for key, attr in (("accuracy", "correct"), ("untargeted_success", "untargeted"), ("targeted_success", "targeted")):
            entry[f"{key}_ci95"] = _ci95(getattr(j, attr) for j in js)
        for name, attr in (("by_angle", "angle"), ("by_distance", "distance")):
            parts: dict = defaultdict(list)
            for j in js:
                parts[getattr(j, attr)].append(j)
            entry[name] = {f"{k:g}": {"accuracy": _rate(x.correct for x in g), "targeted_success": _rate(x.targeted for x in g)}
                           for k, g in sorted(parts.items(), key=lambda kv: _num(kv[0])) if k is not None}
        out.setdefault(victim, {})[set_name] = entry
    return out


# --------------------------------------------------------------------------- Table 5
def _table_rows(rows: list[dict]) -> tuple[list[str], list[str], list[list[str]], list[str]]:
    """Pivot cells to Table 5: (the sets, the header, the body, each body row's class for its success cell)."""
    sets = list(dict.fromkeys(r["set"] for r in rows))
    victims = list(dict.fromkeys(r["victim"] for r in rows))
    lights = any(r["light"] for r in rows)
    wide: dict = {}
    for r in rows:
        wide.setdefault((r["victim"], _num(r["distance"]), _num(r["angle"]), r["light"]), {})[r["set"]] = r
    has_target = any(r["targeted_rate"] is not None for r in rows)
    head = (["victim"] if len(victims) > 1 else []) + [f"distance ({rows[0]['unit']})" if rows else "distance", "angle (°)"]
    head += ["light"] if lights else []
    for s in sets:
        head += [f"{s}: top class (conf.)", f"{s}: second class (conf.)"]
    last = [s for s in sets if s != "clean"][-1:] or sets[-1:]
    head.append(f"{last[0]}: {'targeted' if has_target else 'untargeted'} success" if last else "success")
    body, classes = [], []
    for (victim, d, a, light), by_set in sorted(wide.items()):
        cells_ = ([victim] if len(victims) > 1 else []) + [f"{d:g}" if d != float("inf") else "", f"{a:g}" if a != float("inf") else ""]
        cells_ += [light] if lights else []
        for s in sets:
            c = by_set.get(s)
            cells_ += ["–", "–"] if c is None else [f"{c['top1']} ({_f(c['top1_conf'])})", f"{c['top2']} ({_f(c['top2_conf'])})"]
        c = by_set.get(last[0]) if last else None
        rate = None if c is None else (c["targeted_rate"] if has_target else c["untargeted_rate"])
        cells_.append("" if rate is None else f"{rate:.0%}")
        body.append(cells_)
        classes.append("" if rate is None else ("good" if rate >= 0.5 else "bad"))
    return sets, head, body, classes


def _f(v) -> str:
    return "" if v is None else f"{v:.2f}"


def markdown_table(rows: list[dict]) -> str:
    _, head, body, _ = _table_rows(rows)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines) + "\n"


def html_table(rows: list[dict], table_id: str = "grid") -> str:
    """Table 5 as an HTML table (success cells classed good/bad for colour)."""
    _, head, body, classes = _table_rows(rows)
    e = html.escape
    out = [f"<table class='grid' id='{e(table_id)}'><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>"]
    for r, cls in zip(body, classes):
        out.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r[:-1]) + f"<td class='{cls}'>{e(r[-1])}</td></tr>")
    return "\n".join(out + ["</table>"])


def rate_markdown(rows: list[dict], key: str, set_name: str = "clean", victim: str | None = None) -> str:
    """One rate (e.g. ``accuracy`` of a classifier over every class) as a distance (rows) x angle (columns) table,
    lights averaged: the layout of the sign classifiers' accuracy grid."""
    from physadv.core.plots import grid_means

    rs = [r for r in rows if r["set"] == set_name and r.get(key) is not None and (victim is None or r["victim"] == victim)]
    if not rs:
        return ""
    ds, angs, grid = grid_means(rs, lambda r: r["distance"], lambda r: r["angle"], lambda r: r[key])
    lines = [f"| distance ({rs[0]['unit']}) | " + " | ".join(f"{a:g}°" for a in angs) + " |", "|---" * (len(angs) + 1) + "|"]
    lines += [f"| {d:g} | " + " | ".join("" if np.isnan(v) else f"{100 * v:.1f}%" for v in grid[i]) + " |"
              for i, d in enumerate(ds)]
    return "\n".join(lines) + "\n"


def heatmap_png(rows: list[dict], set_name: str, key: str, title: str, victim: str | None = None) -> bytes | None:
    """A distance x angle heatmap of ``key`` (a rate) for one set (lights averaged), as PNG bytes (None if empty)."""
    from physadv.core.plots import grid_means, heatmap_png as draw

    rs = [r for r in rows if r["set"] == set_name and r.get(key) is not None and (victim is None or r["victim"] == victim)
          and r["distance"] is not None and r["angle"] is not None]
    if not rs:
        return None
    ds, angs, grid = grid_means(rs, lambda r: r["distance"], lambda r: r["angle"], lambda r: r[key])
    return draw(grid, ds, angs, rs[0]["unit"], title, high_is_good=key == "accuracy")  # attack success: high is red


def write_csv(path: str | Path, rows: list[dict]) -> Path:
    from physadv.core.io import atomic_write_text

    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n", extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return atomic_write_text(path, buf.getvalue())


def write_report(folder: str | Path, judgements: list[Judgement], title: str,
                 classes: dict[str, list[str]] | list[str] | None = None, designs: dict[str, dict] | None = None) -> dict:
    """``views.csv``, ``cells.csv``, ``grid.md``, ``grid.json``, one heatmap per victim and set, and (several
    victims) the transfer matrix in ``folder``; returns ``{"summary", "cells", "files", "heatmaps", "transfer",
    "transfer_pngs"}`` (PNGs as bytes, for an HTML page). ``designs``: extras per design for the matrix's rows."""
    from physadv.core.io import atomic_path, write_json

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rows = cells(judgements, classes)
    files = {"views_csv": write_csv(out / "views.csv", [{k: v for k, v in asdict(j).items() if k != "probs"} | {
        "correct": j.correct, "targeted": j.targeted} for j in judgements]), "cells_csv": write_csv(out / "cells.csv", rows)}
    summ = summary(judgements)
    md = [f"# {title}", ""]
    for victim, sets in summ.items():
        for set_name, s in sets.items():
            md.append(f"- **{victim + ': ' if victim else ''}{set_name}**: {s['views']} views" + "".join(
                f", {k.replace('_', ' ')} {s[k]:.1%} [{s[k + '_ci95'][0]:.0%}, {s[k + '_ci95'][1]:.0%}]"
                for k in ("accuracy", "targeted_success", "untargeted_success") if s[k] is not None))
    md.append("\nIn brackets: 95% Wilson intervals, the views taken as independent trials.")
    from physadv.core.io import atomic_write_text

    files["markdown"] = atomic_write_text(out / "grid.md", "\n".join(md + ["", markdown_table(rows)]))
    files["json"] = write_json(out / "grid.json", {"summary": summ, "cells": rows})
    heatmaps = {}
    for victim in dict.fromkeys(r["victim"] for r in rows):
        for set_name in dict.fromkeys(r["set"] for r in rows):
            for key in ("targeted_rate", "untargeted_rate") if set_name != "clean" else ("accuracy",):
                name = f"{victim + ' ' if victim else ''}{set_name} {key.replace('_rate', ' success')}"
                png = heatmap_png(rows, set_name, key, name, victim)
                if png is None:
                    continue
                heatmaps[name] = png
                stem = "_".join(p for p in (victim, set_name, key.replace("_rate", "")) if p).replace("/", "-").replace(" ", "_")
                with atomic_path(out / f"heatmap_{stem}.png") as tmp:
                    tmp.write_bytes(png)
                break  # one heatmap per set: targeted when there is a target
    transfer = transfer_table(judgements, designs) if len({j.victim for j in judgements}) > 1 or designs else []
    pngs = write_transfer(out, transfer) if transfer else {}
    if transfer:
        write_json(out / "transfer.json", transfer)
    return {"summary": summ, "cells": rows, "files": files, "heatmaps": heatmaps, "transfer": transfer, "transfer_pngs": pngs}


# --------------------------------------------------------------------------- transfer matrix
def transfer_table(judgements: list[Judgement], designs: dict[str, dict] | None = None) -> list[dict]:
    """A transfer matrix (Liu et al. 2017's layout for physical designs): one row per design (every set but
    ``clean``), per judging victim its targeted and untargeted success over the views, plus each design's extras
    (``designs[set]``: e.g. the victim set it was made on, its mask coverage, its mean CIELAB distance), and what
    the victim reads instead (``read:victim``: its most frequent top-1 class and that class's share of the views)."""
    rows = []
    for set_name in dict.fromkeys(j.set for j in judgements if j.set != "clean"):
        row = {"design": set_name, **(designs or {}).get(set_name, {})}
        for victim in dict.fromkeys(j.victim for j in judgements):
            js = [j for j in judgements if j.set == set_name and j.victim == victim]
            row[f"targeted:{victim}"] = _rate(j.targeted for j in js)
            row[f"untargeted:{victim}"] = _rate(j.untargeted for j in js)
            read = Counter(j.top1 for j in js).most_common(1)
            row[f"read:{victim}"] = f"{read[0][0]} ({read[0][1] / len(js):.0%})" if read else None
        rows.append(row)
    return rows


def transfer_line(row: dict) -> str:
    """A transfer-matrix row as one line for a terminal: the design, then each judge's rates and what it reads."""
    cells = (f"{k} {v if isinstance(v, str) else f'{v:.1%}'}" for k, v in row.items() if ":" in k and v is not None)
    return f"{row['design']}: " + ", ".join(cells)


def transfer_png(rows: list[dict], key: str = "targeted") -> bytes | None:
    """The transfer matrix of ``key`` (targeted or untargeted success) as a heatmap: designs x judging victims, or,
    when the judges outnumber the designs and a dozen (an ensemble's many members), judges down the page."""
    from physadv.core.plots import figure_png, pyplot

    judges = [k.split(":", 1)[1] for k in (rows[0] if rows else {}) if k.startswith(f"{key}:")]
    if not rows or not judges:
        return None
    grid = np.array([[np.nan if r[f"{key}:{c}"] is None else r[f"{key}:{c}"] for c in judges] for r in rows], dtype=float)
    designs = [r["design"] for r in rows]
    down = len(judges) > max(12, len(rows))
    ylabels, xlabels, grid = (judges, designs, grid.T) if down else (designs, judges, grid)
    fig, ax = pyplot().subplots(figsize=(max(1.1 * len(xlabels) + 3, 6.0), max(0.55 * len(ylabels) + 1.6, 3.0)))
    ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(xlabels)), xlabels, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(ylabels)), ylabels, fontsize=8)
    for i, j in zip(*np.nonzero(np.isfinite(grid))):
        ax.text(j, i, f"{grid[i, j]:.0%}", ha="center", va="center", fontsize=8, color="w" if grid[i, j] < 0.5 else "k")
    (ax.set_ylabel if down else ax.set_xlabel)("judged by")
    where = ("column", "row") if down else ("row", "column")
    ax.set_title(f"{key} success: each design ({where[0]}) as each model sees it ({where[1]})", fontsize=9, wrap=True)
    return figure_png(fig)


def write_transfer(folder: str | Path, rows: list[dict]) -> dict:
    """``transfer.csv`` and ``transfer_targeted.png`` / ``transfer_untargeted.png`` in ``folder``; returns the PNGs."""
    from physadv.core.io import atomic_path

    out = Path(folder)
    write_csv(out / "transfer.csv", rows)
    pngs = {}
    for key in ("targeted", "untargeted"):
        png = transfer_png(rows, key)
        if png is not None and any(v is not None for r in rows for k, v in r.items() if k.startswith(f"{key}:")):
            pngs[key] = png
            with atomic_path(out / f"transfer_{key}.png") as tmp:
                tmp.write_bytes(png)
    return pngs


__all__ = ["rate_markdown", "transfer_table", "transfer_line", "transfer_png", "write_transfer", "Judgement", "judge_probs", "cells", "summary", "markdown_table", "html_table", "heatmap_png", "write_csv",
           "write_report"]
