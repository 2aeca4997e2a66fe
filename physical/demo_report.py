"""The demo's one-page HTML report (self-contained: every picture is inlined as a data URI)."""
from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np

from physadv.core.io import atomic_write_text, to_uint8


def _uri_file(path: str | Path) -> str:
    p = Path(path)
    return "data:image/png;base64," + base64.b64encode(p.read_bytes()).decode() if p.is_file() else ""


def _uri_array(image) -> str:
    import cv2

    arr = to_uint8(image)
    if arr.ndim == 3 and arr.shape[2] == 4:
        rgb, a = arr[..., :3].astype(np.float32), arr[..., 3:].astype(np.float32) / 255
        arr = (rgb * a + 235 * (1 - a)).astype(np.uint8)  # on light grey, so the sign's shape shows
    ok, buf = cv2.imencode(".png", cv2.cvtColor(arr, cv2.COLOR_RGB2BGR))
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode()


def _img(uri: str, caption: str, width: int = 220) -> str:
    if not uri:
        return ""
    return (f"<figure><img src='{uri}' width='{width}' alt='{html.escape(caption)}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def table5(cells: list[dict]) -> str:
    """RP2 Table 5 from capture's cells: per distance x angle, top and second class with confidence, per set."""
    rows: dict = {}
    for c in cells:
        rows.setdefault((c.get("distance"), c.get("angle"), c.get("light") or ""), {})[c["set"]] = c
    head = ("<tr><th>distance (ft)</th><th>angle (°)</th><th>light</th><th>clean: top class</th><th>clean: second</th>"
            "<th>stickers: top class</th><th>stickers: second</th><th>targeted success</th></tr>")
    out = ["<table class='grid'>", head]
    for (d, a, light), sets in sorted(rows.items(), key=lambda kv: (float(kv[0][0] or 0), float(kv[0][1] or 0), kv[0][2])):
        tds = [f"<td>{d:g}</td>" if isinstance(d, (int, float)) else f"<td>{d}</td>",
               f"<td>{a:g}</td>" if isinstance(a, (int, float)) else f"<td>{a}</td>", f"<td>{html.escape(light)}</td>"]
        for s in ("clean", "adversarial"):
            c = sets.get(s)
            if c is None:
                tds += ["<td>–</td>", "<td>–</td>"]
                continue
            tds += [f"<td>{html.escape(str(c.get('top1', '')))} ({float(c.get('top1_conf') or 0):.2f})</td>",
                    f"<td>{html.escape(str(c.get('top2', '')))} ({float(c.get('top2_conf') or 0):.2f})</td>"]
        rate = sets.get("adversarial", {}).get("targeted_rate")
        cls = "good" if rate is not None and rate >= 0.5 else "bad"
        tds.append(f"<td class='{cls}'>{'' if rate is None else f'{rate:.0%}'}</td>")
        out.append("<tr>" + "".join(tds) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def write_demo_report(run_dir: Path, rp2: dict, prints: dict, verdict: dict, digital: dict, metrics: dict) -> Path:
    r = rp2["result"]
    s = verdict["summary"]
    import torch

    sample_photos = []
    adv = [x for x in verdict["results"] if x.set == "adversarial" and x.status == "ok"]
    picks = sorted(adv, key=lambda x: (x.distance or 0, x.angle or 0))
    for x in picks[:: max(1, len(picks) // 6)][:6]:
        if x.preview is not None:
            sample_photos.append(_img(_uri_array(x.preview.astype(np.float32) / 255), f"{x.distance:g} ft, {x.angle:g}°: "
                                      f"{x.top1} ({x.top1_conf:.2f})", 260))
    by_angle = ", ".join(f"{a}°: {v:.0%}" for a, v in s["targeted_by_angle"].items())
    capture_html = Path(verdict["files"]["html"]).relative_to(run_dir)
    df = digital["deepfool"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>physadv demo</title><style>",
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "figure{display:inline-block;margin:.4em;text-align:center;vertical-align:top}"
        "figcaption{font-size:.8em;color:#555}table.grid{border-collapse:collapse;font-size:.85em}"
        "table.grid td,table.grid th{border:1px solid #ccc;padding:.2em .5em}.good{background:#cfc}.bad{background:#fcc}"
        ".num{font-size:1.4em;font-weight:bold}",
        "</style></head><body>",
        "<h1>physadv demo: stickers that make a stop sign read “speed limit 80”</h1>",
        f"<p><span class='num' id='targeted'>{s['targeted_success']:.1%}</span> targeted success over "
        f"{s['adversarial_photos']} simulated photos of the printed sign with stickers; the clean printed sign is read "
        f"as “stop” in <span class='num' id='clean'>{s['clean_accuracy']:.1%}</span> of {s['clean_photos']} photos. "
        f"Per angle: {html.escape(by_angle)}.</p>",
        "<h2>What to print</h2>",
        _img(_uri_array(torch.cat([r.clean, r.alpha])), "the clean sign"),
        _img(_uri_array(torch.cat([r.texture, r.alpha])), "the sign with RP2 stickers"),
        _img(_uri_array(r.stickers), f"the stickers alone ({r.coverage:.0%} of the face)"),
        _img(_uri_file(rp2["dir"] / "loss.png"), "RP2 loss terms", 360),
        f"<p>Print files (true size): <code>{html.escape(str(prints['stickers']['pdf'].relative_to(run_dir)))}</code> "
        f"(sticker sheet with cut lines), <code>{html.escape(str(prints['adversarial']['pdf'].relative_to(run_dir)))}</code> "
        "(the whole sign as a poster, with ArUco fiducials for capture).</p>",
        "<h2>Simulated photos of the print, judged by capture</h2>",
        *sample_photos,
        f"<p>Every photo, crop and verdict: <a href='{html.escape(str(capture_html))}'>the capture report</a>.</p>",
        "<h2>Distance × angle (RP2 Table 5 layout)</h2>",
        table5(verdict["report"]["cells"]),
        "<h2>The digital side</h2>",
        _img(_uri_file(digital["deepfool_grid"]), f"DeepFool on LeNet/MNIST: clean / perturbation / adversarial "
             f"(success {df['success']:.0%}, rho {df['rho_adv_l2']:.3f})", 520),
        _img(_uri_file(digital["gan_grid"]), f"DCGAN samples after {metrics['plan']['gan_steps']} steps", 300),
        f"<p>Run time {metrics['seconds']:.0f} s. Numbers: <code>metrics.json</code>.</p>",
        "</body></html>",
    ]
    return atomic_write_text(run_dir / "report.html", "\n".join(p for p in parts if p))
