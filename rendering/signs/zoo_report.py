"""The zoo table: every member of ``core.zoo`` trained (or reused) and graded the same way.

Per member: family, architecture, input size, parameters, seed, training seconds, held-out accuracy on the sign
test set, the clean distance x angle grid (mean and worst cell, RP2's 5-40 ft x 0-60 degrees) and the accuracy
under one digital attack for all (L-inf PGD of Madry et al. 2018 at the model's input, default eps 8/255, 20 steps
of 2/255, random start). Written as ``zoo.json``, ``zoo.md`` and ``zoo.png`` into the run folder.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from physadv.core.config import config_hash, to_dict
from physadv.core.errors import PhysadvError
from physadv.core.io import atomic_write_text, cache_dir
from physadv.core.robust import PGDConfig, robust_accuracy
from physadv.core.train import cached_classifier_path, cached_metrics, evaluate
from physadv.core.zoo import ZOO_FILE, get_zoo_classifier, zoo_member, zoo_names
from physadv.rendering.signs.classifier import GridConfig, SignsConfig, evaluate_grid
from physadv.rendering.signs.world import world_from


@dataclass
class ZooReportConfig:
    """``physadv signs zoo``: which members, and how they are graded."""

    zoo: str = ZOO_FILE  # the recipes
    only: list[str] = field(default_factory=list)  # member names (empty: all)
    hardened: bool = True  # include the hardened members
    grid: GridConfig = field(default_factory=GridConfig)
    pgd: PGDConfig = field(default_factory=PGDConfig)
    pgd_limit: int = 0  # PGD on the first N held-out images of a fixed class-balanced subset (0: all of them)
    seed: int = 0  # of PGD's random starts
    threads: int = 1  # torch threads for training and grading (small nets: one is fastest on a shared CPU)

    def validate(self) -> None:
        if self.pgd_limit < 0:
            raise ValueError(f"pgd_limit must be >= 0, got {self.pgd_limit}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")

    def members(self) -> list[str]:
        """The members to grade, in file order, then the copies ``only`` names (``NAME@SEED``, ``NAME+pgdEPS``,
        ``NAME+lgvK``)."""
        known = zoo_names(path=self.zoo)
        for n in self.only:
            try:
                zoo_member(n, self.zoo)  # an unknown member or a malformed copy
            except PhysadvError as e:
                raise PhysadvError(f"only: {e}") from None
        names = [n for n in known if not self.only or n in self.only]
        return ([n for n in names if self.hardened or not zoo_member(n, self.zoo).hardened or n in self.only]
                + [n for n in self.only if n not in known])


ROW_VERSION = 2  # bump when a row gains or changes fields, so cached rows are measured again


def grade_path(tc, cfg: ZooReportConfig) -> Path:
    """Where a member's row is cached: by its recipe (the weights' cache key) and the grading settings."""
    grading = config_hash({"grid": to_dict(cfg.grid), "pgd": to_dict(cfg.pgd), "pgd_limit": cfg.pgd_limit, "seed": cfg.seed,
                           "row": ROW_VERSION})
    return cache_dir("zoo") / f"{cached_classifier_path(tc).stem}-{grading}.json"


def grade_member(name: str, cfg: ZooReportConfig, progress: bool = True) -> dict:
    """Train (or reuse) member ``name`` and measure it: one row of the table (cached: grading the same weights the
    same way gives the same row, so a second run, or a run after several ``--only`` runs in parallel, is quick)."""
    member = zoo_member(name, cfg.zoo)
    tc = member.train
    reused = cached_classifier_path(tc).is_file()
    cached = grade_path(tc, cfg)
    if reused and cached.is_file():
        row = json.loads(cached.read_text())
        return {**row, "name": name, "family": member.family, "note": member.note, "reused_cache": True}
    row = _measure(name, member, cfg, progress)
    atomic_write_text(cached, json.dumps(row, indent=2))
    return {**row, "reused_cache": reused}


def _measure(name: str, member, cfg: ZooReportConfig, progress: bool) -> dict:
    from physadv.core.zoo import torch_threads

    tc = member.train
    start = time.time()
    model = get_zoo_classifier(name, progress=progress, path=cfg.zoo, threads=cfg.threads)
    wall = time.time() - start
    with torch_threads(cfg.threads):
        test = tc.data.load("test")
        held_out = evaluate(model, test, progress=False)["accuracy"]
        grid = evaluate_grid(model, SignsConfig(world=world_from(tc.data.root), grid=cfg.grid), progress=progress)
        attacked = test.subset(cfg.pgd_limit or None, seed=cfg.seed)
        pgd = robust_accuracy(model, attacked.images, attacked.labels, cfg.pgd, seed=cfg.seed, progress=progress)
    trained = cached_metrics(tc) or {}
    return {"name": name, "family": member.family, "arch": tc.model, "hardened": member.hardened, "note": member.note,
            "input_px": int(model.input_size[-1]), "params": sum(p.numel() for p in model.parameters()),
            "seed": tc.seed, "epochs": tc.epochs, "train_seconds": trained.get("train_seconds"),
            "train_cpu_seconds": trained.get("train_cpu_seconds"),
            "load_or_train_seconds": round(wall, 2), "held_out_accuracy": round(held_out, 4),
            "held_out_n": len(test), "grid_mean": round(float(grid.accuracy.mean()), 4), "grid_worst": round(grid.worst, 4),
            "grid_worst_cell": _worst_cell(grid), "grid": grid.rows(),
            "pgd_robust_accuracy": round(pgd["robust_accuracy"], 4), "pgd_n": pgd["n"],
            "weights": str(cached_classifier_path(tc))}


def _worst_cell(grid) -> str:
    i, j = np.unravel_index(int(np.argmin(grid.accuracy)), grid.accuracy.shape)
    return f"{grid.distances_ft[i]:g} ft, {grid.angles_deg[j]:g} deg"


def _seconds(s: float | None) -> str:
    return "?" if s is None else f"{s:.0f}"


def markdown_table(rows: list[dict], pgd: PGDConfig) -> str:
    head = (f"| member | family | input | params | seed | train s (wall / CPU) | held-out | grid mean | grid worst (where) | "
            f"PGD-{pgd.steps} eps {pgd.eps_255:g}/255 |\n" + "|---" * 10 + "|\n")
    body = "".join(
        f"| {r['name']}{' (hardened)' if r['hardened'] else ''} | {r['family']} | {r['input_px']} px | "
        f"{r['params'] / 1e3:.0f}k | {r['seed']} | {_seconds(r['train_seconds'])} / {_seconds(r['train_cpu_seconds'])} | "
        f"{100 * r['held_out_accuracy']:.2f}% | {100 * r['grid_mean']:.2f}% | {100 * r['grid_worst']:.1f}% ({r['grid_worst_cell']}) | "
        f"{100 * r['pgd_robust_accuracy']:.1f}% |\n" for r in rows)
    return head + body


def bar_chart(rows: list[dict], path: Path) -> Path:
    """Grouped bars per member: held-out, grid mean, grid worst cell, PGD robust accuracy."""
    from physadv.core.plots import pyplot, save_figure

    plt = pyplot()
    keys = [("held_out_accuracy", "held-out"), ("grid_mean", "grid mean"), ("grid_worst", "grid worst cell"),
            ("pgd_robust_accuracy", "PGD robust")]
    x = np.arange(len(rows))
    w = 0.8 / len(keys)
    fig, ax = plt.subplots(figsize=(1.3 * len(rows) + 3, 4.5))
    for k, (key, label) in enumerate(keys):
        ax.bar(x + (k - 1.5) * w, [100 * r[key] for r in rows], w, label=label)
    ax.axhline(97, color="k", lw=0.8, ls="--")
    ax.axhline(95, color="k", lw=0.8, ls=":")
    ax.set_xticks(x, [r["name"] for r in rows], rotation=20, ha="right")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 101)
    ax.set_title("sign-world zoo: clean accuracy (dashed 97%, dotted 95%) and digital PGD robustness")
    ax.legend(loc="lower left", fontsize=8)
    save_figure(fig, path)
    return path


def write_zoo_table(rows: list[dict], cfg: ZooReportConfig, folder: Path) -> dict[str, Path]:
    folder = Path(folder)
    md = markdown_table(rows, cfg.pgd)
    return {"json": atomic_write_text(folder / "zoo.json", json.dumps(rows, indent=2)),
            "md": atomic_write_text(folder / "zoo.md", md), "png": bar_chart(rows, folder / "zoo.png")}
