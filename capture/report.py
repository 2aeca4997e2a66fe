"""Reports of a judged photo set: CSV, JSON, Markdown, a success heatmap, and one self-contained HTML page.

The HTML page inlines every picture as a base64 ``data:`` URI (photo thumbnails and the heatmap),
so it can be mailed or archived as a single file.
"""
from __future__ import annotations

import base64
import csv
import html
import io
from pathlib import Path

import numpy as np

from physadv.core import plots
from physadv.core.io import atomic_path, atomic_write_text, write_json
from physadv.core.plots import grid_means


def _fmt(v, digits: int = 2) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def write_csv(path: str | Path, rows: list[dict]) -> Path:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return atomic_write_text(path, buf.getvalue())


def success_grid(cells: list[dict], set_name: str = "adversarial", key: str = "untargeted_rate"):
    """(distances, angles, matrix) of ``key`` over distance x angle (lights averaged); NaN where no photo."""
    cs = [c for c in cells if c["set"] == set_name and c.get(key) is not None
          and c["distance"] is not None and c["angle"] is not None]
    return grid_means(cs, lambda c: c["distance"], lambda c: c["angle"], lambda c: c[key])


def heatmap_png(cells: list[dict], title: str, key: str, unit: str, set_name: str = "adversarial") -> bytes | None:
    """A distance x angle heatmap of ``key`` as PNG bytes (None when no cell has a value)."""
    ds, angs, grid = success_grid(cells, set_name, key)
    if grid.size == 0:
        return None
    return plots.heatmap_png(grid, ds, angs, unit, title, high_is_good=set_name != "adversarial")


def _png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def markdown(summary: dict, cells: list[dict], results: list[dict], title: str) -> str:
    s = summary
    lines = [f"# {title}", "", f"Photos: {s['photos']} ({', '.join(f'{k}: {v}' for k, v in s['by_status'].items())}).",
             f"True class: {s['true_class'] or '(clean top class per cell)'}; target: {s['target_class'] or '(none)'}.", ""]
    for k in ("untargeted_success", "targeted_success", "clean_accuracy", "rp2_success"):
        if s.get(k) is not None:
            lines.append(f"- {k.replace('_', ' ')}: {s[k]:.1%}")
    lines += ["", "## By distance and angle (RP2 Table 5 layout)", "",
              "| set | distance | angle | light | n | top class (confidence) | second class (confidence) | misclassified (untargeted) | on target |",
              "|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        lines.append(f"| {c['set']} | {_fmt(c['distance'], 3).rstrip('0').rstrip('.')} {c['unit']} | {_fmt(c['angle'], 1)}° "
                     f"| {c['light']} | {c['n']} | {c['top1']} ({c['top1_conf']:.2f}) | {c['top2']} ({_fmt(c['top2_conf'])}) "
                     f"| {_fmt(c['untargeted_rate'])} | {_fmt(c['targeted_rate'])} |")
    bad = [r for r in results if r["status"] != "ok"]
    if bad:
        lines += ["", "## Photos not judged", "", "| set | file | status | why |", "|---|---|---|---|"]
        lines += [f"| {r['set']} | {r['file']} | {r['status']} | {r['message']} |" for r in bad]
    return "\n".join(lines) + "\n"


_CSS = """body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px;text-align:left}th{background:#f0f0f0}
.ok{color:#176117}.bad{color:#a11;font-weight:bold}.gallery{display:flex;flex-wrap:wrap;gap:8px}
figure{margin:0;width:300px;font-size:11px}figure img{max-height:144px;margin-right:4px;vertical-align:top}
img.thumb:nth-of-type(2){width:96px;image-rendering:pixelated}
.yes{background:#fdd}.no{background:#dfd}"""


def html_page(summary: dict, cells: list[dict], results: list, title: str, heatmaps: dict[str, bytes]) -> str:
    """One self-contained page: summary, heatmaps, the RP2 table, per-photo thumbnails and statuses."""
    e = html.escape
    s = summary
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{e(title)}</h1>",
             f"<p id='summary'>Photos: {s['photos']} — " + ", ".join(f"{e(k)}: {v}" for k, v in s['by_status'].items())
             + f". True class: <b>{e(str(s['true_class'] or 'clean top class per cell'))}</b>; target: "
               f"<b>{e(str(s['target_class'] or 'none'))}</b>.</p><ul>"]
    for k in ("untargeted_success", "targeted_success", "clean_accuracy", "rp2_success"):
        if s.get(k) is not None:
            parts.append(f"<li>{e(k.replace('_', ' '))}: <b>{s[k]:.1%}</b></li>")
    parts.append("</ul>")
    for name, png in heatmaps.items():
        parts.append(f"<figure style='width:auto'><img class='heatmap' alt='{e(name)}' src='{_data_uri(png)}' "
                     f"style='max-width:none;max-height:none'><figcaption>{e(name)}</figcaption></figure>")
    parts.append("<h2>By distance and angle</h2><table id='cells'><tr><th>set</th><th>distance</th><th>angle</th>"
                 "<th>light</th><th>n</th><th>top class (conf.)</th><th>second class (conf.)</th><th>misclassified (untargeted)</th>"
                 "<th>on target</th></tr>")
    for c in cells:
        parts.append(f"<tr><td>{e(c['set'])}</td><td>{c['distance'] if c['distance'] is not None else ''} {e(c['unit'])}</td>"
                     f"<td>{_fmt(c['angle'], 1)}°</td><td>{e(c['light'])}</td><td>{c['n']}</td>"
                     f"<td>{e(c['top1'])} ({c['top1_conf']:.2f})</td><td>{e(c['top2'])} ({_fmt(c['top2_conf'])})</td>"
                     f"<td>{_fmt(c['untargeted_rate'])}</td><td>{_fmt(c['targeted_rate'])}</td></tr>")
    parts.append("</table><h2>Photos</h2><div class='gallery'>")
    for r in results:
        ok = r.status == "ok"
        img = "".join(f"<img class='thumb' alt='{e(r.file)}' src='{_data_uri(_png_bytes(im))}'>"
                      for im in (r.preview, r.thumb) if im is not None)
        verdict = (f"{e(r.top1)} {r.top1_conf:.2f}<br>{e(r.top2)} {_fmt(r.top2_conf)}" if ok else
                   f"<span class='bad' title='{e(r.message)}'>{e(r.status)}</span>")
        cls = "" if r.untargeted is None else (" class='yes'" if r.untargeted else " class='no'")
        where = f"{_fmt(r.distance, 1)} {e(r.unit)}, {_fmt(r.angle, 0)}°" if r.distance is not None else ""
        parts.append(f"<figure{cls}>{img}<figcaption>{e(r.set)}: {e(r.file)}<br>{where}<br>{verdict}</figcaption></figure>")
    parts.append("</div>")
    bad = [r for r in results if r.status != "ok"]
    if bad:
        parts.append("<h2>Not judged</h2><table id='problems'><tr><th>set</th><th>file</th><th>status</th><th>why</th></tr>")
        parts += [f"<tr><td>{e(r.set)}</td><td>{e(r.file)}</td><td class='bad'>{e(r.status)}</td><td>{e(r.message)}</td></tr>"
                  for r in bad]
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_reports(out_dir: str | Path, results: list, report: dict, title: str = "Capture report") -> dict[str, Path]:
    """results.csv, cells.csv, report.json, report.md, heatmap.png and report.html in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [r.row() for r in results]
    summary, cells = report["summary"], report["cells"]
    files = {"results_csv": write_csv(out / "results.csv", rows), "cells_csv": write_csv(out / "cells.csv", cells),
             "json": write_json(out / "report.json", {"summary": summary, "cells": cells, "photos": rows}),
             "markdown": atomic_write_text(out / "report.md", markdown(summary, cells, rows, title))}
    key = "targeted_rate" if summary.get("target_class") else "untargeted_rate"
    heatmaps = {}
    png = heatmap_png(cells, f"adversarial: {key.replace('_rate', '')} success", key, summary["unit"])
    if png:
        heatmaps["adversarial success"] = png
        with atomic_path(out / "heatmap.png") as tmp:
            tmp.write_bytes(png)
        files["heatmap"] = out / "heatmap.png"
    if any(c["set"] == "clean" for c in cells) and summary.get("true_class"):
        clean = [dict(c, correct=None if c["untargeted_rate"] is None else 1 - c["untargeted_rate"]) for c in cells]
        png = heatmap_png(clean, "clean: accuracy", "correct", summary["unit"], "clean")
        if png:
            heatmaps["clean accuracy"] = png
            if "heatmap" not in files:  # a clean set alone: its accuracy is the heatmap
                with atomic_path(out / "heatmap.png") as tmp:
                    tmp.write_bytes(png)
                files["heatmap"] = out / "heatmap.png"
    files["html"] = atomic_write_text(out / "report.html", html_page(summary, cells, results, title, heatmaps))
    return files


__all__ = ["write_reports", "write_csv", "heatmap_png", "success_grid", "markdown", "html_page"]
