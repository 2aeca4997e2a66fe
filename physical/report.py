"""A design run's pictures and its one HTML page: the design, the stickers, the loss curve, sample views, and the
distance x angle grid (``core.gridreport``) for every victim that judged it."""
from __future__ import annotations

from pathlib import Path

import torch

from physadv.core.html import Page


def loss_curve(path: str | Path, history: dict[str, list[float]], title: str = "optimisation") -> Path:
    """Loss terms (and validation success) against step, as a PNG."""
    from physadv.core.plots import pyplot, save_figure

    fig, ax = pyplot().subplots(figsize=(6, 3.5))
    for name, values in history.items():
        if values:
            ax.plot(values, label=name)
    ax.set_xlabel("step (validation: every val_every steps)")
    ax.set_yscale("symlog", linthresh=1e-2)
    ax.legend(fontsize=7)
    ax.set_title(title)
    return save_figure(fig, path)


def write_design_report(run: Path, result, grid: dict, sample_views: torch.Tensor | None, title: str,
                        headline: str, sections=()) -> Path:
    """``report.html``: the headline numbers, what to print, the loss curve, sample views, the Table 5 grid and heatmaps;
    ``sections``: more ``callable(page)`` sections after the grid (e.g. detection by distance and angle)."""
    from physadv.core.gridreport import html_table

    page = Page(title)
    page.raw(f"<p class='num' id='headline'>{headline}</p>")
    page.heading("What to print")
    page.image(torch.cat([result.clean, torch.ones(1, *result.clean.shape[-2:])]) if result.attack == "patch"
               else torch.cat([result.clean, result.alpha]), "the clean object")
    page.image(torch.cat([result.texture, result.alpha]), "the design" if result.attack != "patch" else "the patch")
    if result.attack == "rp2":
        page.image(result.stickers, f"the stickers alone ({result.coverage:.0%} of the face)")
    page.image(run / "loss.png", "loss terms and validation success", 420)
    if sample_views is not None:
        page.image(run / "views.png", "sample views: clean (top) and with the design (bottom)", 640)
    page.heading("Distance x angle (RP2 Table 5 layout)")
    for name, png in grid["heatmaps"].items():
        page.image(png, name, 300)
    page.raw(html_table(grid["cells"]))
    transfer_section(page, grid)
    for section in sections:
        section(page)
    page.text(f"Object: {result.object.get('name')} ({result.object.get('width_m', 0):.2f} m wide); objective: "
              f"{result.objective}; {result.timings.get('seconds', 0):.0f} s "
              f"({result.timings.get('seconds_per_step', 0):.3f} s per step). Numbers: metrics.json; per view: grid/views.csv.")
    return page.write(run / "report.html")


def transfer_section(page: Page, grid: dict) -> None:
    """The transfer matrix (designs x judging victims) as heatmaps and a table, when several victims judged."""
    if not grid.get("transfer"):
        return
    page.heading("Transfer: each design as every model sees it")
    for key, png in grid["transfer_pngs"].items():
        page.image(png, f"{key} success", 420)
    page.table(grid["transfer"], table_id="transfer")


__all__ = ["loss_curve", "write_design_report", "transfer_section"]
