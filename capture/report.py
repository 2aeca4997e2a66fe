"""Reports of a judged photo set: CSV, JSON, Markdown, heatmaps and one self-contained HTML page.

The distance x angle table and heatmaps are the project's one report (``core.gridreport``, RP2's Table 5 layout);
the page (``core.html.Page``) inlines every picture (photo previews, crops, heatmaps) as a ``data:`` URI, so it
can be mailed or archived as a single file.
"""
from __future__ import annotations

import html
from pathlib import Path

from physadv.core import gridreport
from physadv.core.html import Page
from physadv.core.io import atomic_path, atomic_write_text, write_json

write_csv = gridreport.write_csv


def _fmt(v, digits: int = 2) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _headline(s: dict) -> list[str]:
    return [f"{k.replace('_', ' ')}: {s[k]:.1%}" for k in ("untargeted_success", "targeted_success", "clean_accuracy",
                                                          "rp2_success") if s.get(k) is not None]


def markdown(summary: dict, cells: list[dict], results: list[dict], title: str) -> str:
    s = summary
    lines = [f"# {title}", "", f"Photos: {s['photos']} ({', '.join(f'{k}: {v}' for k, v in s['by_status'].items())}).",
             f"True class: {s['true_class'] or '(clean top class per cell)'}; target: {s['target_class'] or '(none)'}.", ""]
    lines += [f"- {x}" for x in _headline(s)]
    lines += ["", "## By distance and angle (RP2 Table 5 layout)", "", gridreport.markdown_table(cells)]
    bad = [r for r in results if r["status"] != "ok"]
    if bad:
        lines += ["", "## Photos not judged", "", "| set | file | status | why |", "|---|---|---|---|"]
        lines += [f"| {r['set']} | {r['file']} | {r['status']} | {r['message']} |" for r in bad]
    return "\n".join(lines) + "\n"


_CSS = (".gallery{display:flex;flex-wrap:wrap;gap:8px}.gallery figure{margin:0;width:300px;font-size:11px}"
        ".gallery img{max-height:144px;margin-right:4px;vertical-align:top}"
        "img.thumb:nth-of-type(2){width:96px;image-rendering:pixelated}.yes{background:#fdd}.no{background:#dfd}")


def html_page(summary: dict, cells: list[dict], results: list, title: str, heatmaps: dict[str, bytes],
              transfer: list[dict] | None = None, transfer_pngs: dict | None = None) -> str:
    """One self-contained page: summary, heatmaps, the Table 5 grid, per-photo previews, crops and statuses."""
    from physadv.core.html import png_uri

    e = html.escape
    s = summary
    page = Page(title)
    page.raw(f"<style>{_CSS}</style>")
    page.raw(f"<p id='summary'>Photos: {s['photos']} — " + ", ".join(f"{e(k)}: {v}" for k, v in s["by_status"].items())
             + f". True class: <b>{e(str(s['true_class'] or 'clean top class per cell'))}</b>; target: "
               f"<b>{e(str(s['target_class'] or 'none'))}</b>.</p><ul>" + "".join(f"<li>{e(x)}</li>" for x in _headline(s))
             + "</ul>")
    for name, png in heatmaps.items():
        page.image(png, name, 340)
    page.heading("By distance and angle (RP2 Table 5 layout)")
    page.raw(gridreport.html_table(cells, "cells"))
    if transfer:
        page.heading("Transfer: the photos as every judging model sees them")
        for key, png in (transfer_pngs or {}).items():
            page.image(png, f"{key} success", 420)
        page.table(transfer, table_id="transfer")
    page.heading("Photos")
    gallery = ["<div class='gallery'>"]
    for r in results:
        img = "".join(f"<img class='thumb' alt='{e(r.file)}' src='{png_uri(im)}'>" for im in (r.preview, r.thumb) if im is not None)
        verdict = (f"{e(r.top1)} {r.top1_conf:.2f}<br>{e(r.top2)} {_fmt(r.top2_conf)}" if r.status == "ok" else
                   f"<span class='bad' title='{e(r.message)}'>{e(r.status)}</span>")
        cls = "" if r.untargeted is None else (" class='yes'" if r.untargeted else " class='no'")
        where = f"{_fmt(r.distance, 1)} {e(r.unit)}, {_fmt(r.angle, 0)}°" if r.distance is not None else ""
        gallery.append(f"<figure{cls}>{img}<figcaption>{e(r.set)}: {e(r.file)}<br>{where}<br>{verdict}</figcaption></figure>")
    page.raw("\n".join(gallery + ["</div>"]))
    bad = [r.row() for r in results if r.status != "ok"]
    if bad:
        page.heading("Not judged")
        page.table(bad, ["set", "file", "status", "message"], table_id="problems")
    return page.html()


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
    heatmaps = {name: png for name, png in (
        ("adversarial success", gridreport.heatmap_png(cells, "adversarial", key, f"adversarial: {key.replace('_rate', '')} success")),
        ("clean accuracy", gridreport.heatmap_png(cells, "clean", "accuracy", "clean: accuracy"))) if png}
    if heatmaps:  # the adversarial success, or for a clean set alone its accuracy
        with atomic_path(out / "heatmap.png") as tmp:
            tmp.write_bytes(next(iter(heatmaps.values())))
        files["heatmap"] = out / "heatmap.png"
    transfer = report.get("transfer") or []
    pngs = gridreport.write_transfer(out, transfer) if transfer else {}
    files["html"] = atomic_write_text(out / "report.html", html_page(summary, cells, results, title, heatmaps, transfer, pngs))
    return files


__all__ = ["write_reports", "write_csv", "markdown", "html_page"]
