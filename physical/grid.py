"""The simulated capture grid: a sign (clean and adversarial) photographed at RP2's distances x angles,
several lights per cell, classified, and reported in RP2's Table 5 layout.

Clean and adversarial objects are rendered with the same random stream, so each pair of views shares
pose, light, background and camera effects: the only difference is the texture.
"""
from __future__ import annotations

from pathlib import Path

import torch

from physadv.core.io import write_json, atomic_write_text
from physadv.core.models import Classifier
from physadv.physical import report
from physadv.physical.views import GridSpec, SignViews, class_index
from physadv.rendering.signs.world import WorldConfig


@torch.no_grad()
def evaluate_grid(model: Classifier, textures: dict[str, torch.Tensor], source: str, target: str | None,
                  world: WorldConfig, grid: GridSpec, device: torch.device | str = "cpu", batch: int = 64) -> list[report.ViewRecord]:
    """Classify every variant (``{"clean": tex, "adversarial": tex}``, each ``3 x S x S``) at every grid view."""
    if target is not None:
        class_index(target)
    poses, cells = grid.poses()
    model = model.eval().to(device)
    records: list[report.ViewRecord] = []
    for variant, texture in textures.items():
        views = SignViews(source, world, seed=grid.seed, texture_px=texture.shape[-1])
        probs = []
        for i in range(0, len(poses), batch):
            crops = views.render(texture, poses[i : i + batch]).to(device)
            probs.append(torch.softmax(model(crops), 1).cpu())
        p = torch.cat(probs)
        top = p.topk(2, dim=1)
        for k, (d, a, light) in enumerate(cells):
            records.append(report.ViewRecord(
                variant=variant, distance_ft=d, angle_deg=a, light=f"light{light}",
                top1=model.classes[int(top.indices[k, 0])], conf1=round(float(top.values[k, 0]), 4),
                top2=model.classes[int(top.indices[k, 1])], conf2=round(float(top.values[k, 1]), 4),
                true_class=source, target_class=target, probs=tuple(round(float(v), 5) for v in p[k])))
    return records


def write_grid_reports(out: str | Path, records: list[report.ViewRecord], title: str = "",
                       classes: list[str] | None = None) -> dict:
    """grid.csv (per view), grid.md (Table 5 layout), heatmaps and the summary (returned and in grid.json)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report.write_csv(out / "grid.csv", records)
    summary = report.summarise(records)
    md = [f"# {title or 'Simulated capture grid'}", ""]
    for variant, s in summary.items():
        rate = s["targeted_success"]
        md.append(f"- **{variant}**: {s['views']} views, accuracy {s['accuracy']:.1%}"
                  + (f", targeted success {rate:.1%}" if rate is not None else "")
                  + f", untargeted success {s['untargeted_success']:.1%}")
    md += ["", report.markdown_table(records, classes)]
    atomic_write_text(out / "grid.md", "\n".join(md))
    variants = {r.variant for r in records}
    if "adversarial" in variants and records[0].target_class:
        report.heatmap(out / "grid_targeted.png", records, "adversarial", "targeted",
                       f"targeted success: {records[0].true_class} -> {records[0].target_class}")
    if "clean" in variants:
        report.heatmap(out / "grid_clean_accuracy.png", records, "clean", "correct", f"clean {records[0].true_class}: accuracy")
    write_json(out / "grid.json", summary)
    return summary
