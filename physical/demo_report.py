"""The demo's one-page HTML report (``core.html.Page``: every picture inlined), with capture's distance x angle cells
in the project's one Table 5 layout (``core.gridreport``)."""
from __future__ import annotations

import html
from pathlib import Path

import torch

from physadv.core.gridreport import html_table
from physadv.core.html import Page

ROLES = ("white-box", "surrogate", "held-out")  # the order of the models table


def write_demo_report(run_dir: Path, rp2: dict, prints: dict, verdict: dict, digital: dict, metrics: dict) -> Path:
    r = rp2["result"]
    s = verdict["summary"]
    page = Page("physadv demo: stickers that make a stop sign read “speed limit 80”")
    by_angle = ", ".join(f"{a}°: {v:.0%}" for a, v in s["targeted_by_angle"].items())
    members = ", ".join(n for n, m in s["models"].items() if m["role"] == "white-box")
    held = ", ".join(n for n, m in s["models"].items() if m["role"] == "held-out")
    surrogates = ", ".join(n for n, m in s["models"].items() if m["role"] == "surrogate")
    made_on = f"their slightly robust copies ({html.escape(surrogates)})" if surrogates else "them as one ensemble"
    page.raw(f"<p>Stickers for the victims {html.escape(members)}, designed on {made_on}: every victim reads “speed limit 80” in at least "
             f"<span class='num' id='targeted'>{s['targeted_success']:.1%}</span> of {s['adversarial_photos']} simulated "
             f"photos of the printed sign with stickers; every model reads the clean printed sign as “stop” in at least "
             f"<span class='num' id='clean'>{s['clean_accuracy']:.1%}</span> of {s['clean_photos']} photos. "
             f"All victims at once, per angle: {html.escape(by_angle)}.</p>")
    if held:
        page.raw(f"<p>Models the design never saw ({html.escape(held)}): at worst "
                 f"<span class='num' id='held_out_untargeted'>{s['held_out_untargeted']:.1%}</span> of the photos not read "
                 f"as “stop”, <span class='num' id='held_out_targeted'>{s['held_out_targeted']:.1%}</span> read as “speed "
                 "limit 80”.</p>")
    page.heading("White-box, surrogate and held-out models, side by side" if surrogates else
                 "White-box and held-out models, side by side")
    page.table([{"model": n, "role": m["role"], "targeted": f"{m['targeted_success']:.1%}",
                 "untargeted": f"{m['untargeted_success']:.1%}", "clean accuracy": f"{m['clean_accuracy']:.1%}"}
                for n, m in sorted(s["models"].items(), key=lambda kv: ROLES.index(kv[1]["role"]))], table_id="models")
    page.heading("What to print")
    page.image(torch.cat([r.clean, r.alpha]), "the clean sign")
    page.image(torch.cat([r.texture, r.alpha]), "the sign with RP2 stickers")
    page.image(r.stickers, f"the stickers alone ({r.coverage:.0%} of the face)")
    page.image(rp2["dir"] / "loss.png", "RP2 loss terms", 360)
    page.raw(f"<p>Print files (true size): <code>{html.escape(str(prints['stickers']['pdf'].relative_to(run_dir)))}</code> "
             f"(sticker sheet with cut lines), <code>{html.escape(str(prints['adversarial']['pdf'].relative_to(run_dir)))}</code> "
             "(the whole sign as a poster, with ArUco fiducials for capture).</p>")
    page.heading("Simulated photos of the print, judged by capture")
    adv = sorted((x for x in verdict["results"] if x.set == "adversarial" and x.status == "ok"),
                 key=lambda x: (x.distance or 0, x.angle or 0))
    for x in adv[:: max(1, len(adv) // 6)][:6]:
        if x.preview is not None:
            page.image(x.preview, f"{x.distance:g} ft, {x.angle:g}°: {x.top1} ({x.top1_conf:.2f})", 260)
    capture_html = Path(verdict["files"]["html"]).relative_to(run_dir)
    page.raw(f"<p>Every photo, crop and verdict: <a href='{html.escape(str(capture_html))}'>the capture report</a>.</p>")
    page.heading("Distance × angle (RP2 Table 5 layout)")
    page.raw(html_table(verdict["report"]["cells"]))
    page.heading("The digital side")
    df = digital["deepfool"]
    page.image(digital["deepfool_grid"], f"DeepFool on LeNet/MNIST: clean / perturbation / adversarial "
               f"(success {df['success']:.0%}, rho {df['rho_adv_l2']:.3f})", 520)
    page.image(digital["gan_grid"], f"DCGAN samples after {metrics['plan']['gan_steps']} steps", 300)
    page.text(f"Run time {metrics['seconds']:.0f} s. Numbers: metrics.json.")
    return page.write(run_dir / "report.html")


__all__ = ["write_demo_report"]
