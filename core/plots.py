"""Figures: matplotlib set up for files (``pyplot``, ``save_figure``, ``figure_png``), image grids with captions
(``save_image_grid``) and the success-by-distance-and-angle heatmap the packages share. Depends on ``core.io`` for
atomic writes; ``core.io`` does not depend on it."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch


def pyplot():
    """``matplotlib.pyplot`` on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Lay out ``fig``, write it as PNG atomically, and close it."""
    from physadv.core.io import atomic_path

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    pyplot().close(fig)
    return Path(path)


def figure_png(fig, dpi: int = 110) -> bytes:
    """Lay out ``fig`` and return it as PNG bytes, closed."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    pyplot().close(fig)
    return buf.getvalue()


def grid_means(items: Iterable, row: Callable, col: Callable, value: Callable) -> tuple[list, list, np.ndarray]:
    """(row keys, column keys, matrix of the mean ``value`` of the items in each cell; NaN where none)."""
    items = list(items)
    rows, cols = sorted({row(x) for x in items}), sorted({col(x) for x in items})
    sums, counts = np.zeros((len(rows), len(cols))), np.zeros((len(rows), len(cols)))
    r_index, c_index = {r: i for i, r in enumerate(rows)}, {c: j for j, c in enumerate(cols)}
    for x in items:
        i, j = r_index[row(x)], c_index[col(x)]
        sums[i, j] += float(value(x))
        counts[i, j] += 1
    with np.errstate(invalid="ignore"):
        return rows, cols, sums / counts


def heatmap_png(grid: np.ndarray, distances: list, angles: list, distance_unit: str, title: str,
                high_is_good: bool = True) -> bytes:
    """A distance (rows) x angle (columns) heatmap of rates in [0, 1], each cell labelled in percent, as PNG
    bytes. Green is good: high rates when ``high_is_good`` (accuracy), low ones otherwise (attack success
    seen from the defender's side)."""
    fig, ax = pyplot().subplots(figsize=(1.1 * len(angles) + 2, 0.5 * len(distances) + 1.5))
    im = ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn" if high_is_good else "RdYlGn_r", aspect="auto")
    ax.set_xticks(range(len(angles)), [f"{a:g}°" for a in angles])
    ax.set_yticks(range(len(distances)), [f"{d:g} {distance_unit}" for d in distances])
    ax.set_xlabel("viewing angle")
    ax.set_ylabel("distance")
    for i in range(len(distances)):
        for j in range(len(angles)):
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.0%}", ha="center", va="center", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return figure_png(fig)


def save_image_grid(path: str | Path, images: torch.Tensor, nrow: int = 8, padding: int = 2,
                    captions: list[str] | None = None, scale: int = 1) -> Path:
    """A grid of ``N x C x H x W`` images as PNG, optionally with a caption under each tile."""
    import torchvision.utils as vutils

    imgs = images.detach().to("cpu", torch.float32).clamp(0, 1)
    if scale > 1:
        imgs = torch.nn.functional.interpolate(imgs, scale_factor=scale, mode="nearest")
    if captions is None:
        grid = vutils.make_grid(imgs, nrow=nrow, padding=padding, pad_value=1.0)
        from physadv.core.io import write_image

        return write_image(path, grid)
    plt = pyplot()

    n = imgs.shape[0]
    ncol = min(nrow, n)
    nr = (n + ncol - 1) // ncol
    fig, axes = plt.subplots(nr, ncol, figsize=(1.4 * ncol, 1.6 * nr), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            im = imgs[i].permute(1, 2, 0).numpy()
            ax.imshow(im[:, :, 0] if im.shape[2] == 1 else im, cmap="gray" if im.shape[2] == 1 else None, vmin=0, vmax=1)
            ax.set_title(captions[i], fontsize=7)
    return save_figure(fig, path, dpi=100)
