"""WGAN-GP's Figure 3 (Gulrajani et al. 2017) on MNIST-5k: sample quality over generator iterations and over
wall-clock time for WGAN with weight clipping, WGAN-GP with RMSProp, WGAN-GP with Adam, and DCGAN.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/wgan_gp_figure3.py --steps 1000 --every 100 --out runs/figure3

The paper (section 5, Figure 3) plots CIFAR-10 Inception scores; here the score is the FID of 500 samples on
the features of LeNet-MNIST (the domain classifier, trained by core), against the training split, with the
real-vs-real floor (the test split) drawn as a line. As in the paper, WGAN-GP runs once with the optimiser and
learning rate of weight clipping (RMSProp 5e-5) and once with Adam at a higher rate (1e-4, betas 0 and 0.9);
all four share the generator, the batch size (64) and the seed; the critics are the recipes' (batch norm for
clipping and DCGAN, layer norm for the gradient penalty). Each run trains in segments of ``--every`` steps
(resuming from its checkpoint is bitwise exact), the generator is scored after each segment, and the
wall-clock axis counts training time only (``metrics.json["seconds"]`` of each segment), not scoring.
Timings are taken on a shared 2-core CPU, one thread per run.

Writes ``figure3.png`` (FID over generator iterations | over wall-clock seconds) and ``figure3.json`` in
``--out`` and prints the JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from physadv.core.config import load_config  # noqa: E402
from physadv.core.data import load_dataset  # noqa: E402
from physadv.core.io import write_json  # noqa: E402
from physadv.core.train import get_classifier  # noqa: E402
from physadv.gans.metrics import classifier_outputs, frechet_distance  # noqa: E402
from physadv.gans.trainer import GanConfig, generate, load_generator, train_gan  # noqa: E402

RUNS = {  # label: (config, overrides); the paper's four models
    "WGAN (clipping, RMSProp 5e-5)": ("configs/gans/wgan.yaml", []),
    "WGAN-GP (RMSProp 5e-5)": ("configs/gans/wgan_gp.yaml", ["optim.name=rmsprop", "optim.lr_g=0.00005", "optim.lr_d=0.00005"]),
    "WGAN-GP (Adam 1e-4)": ("configs/gans/wgan_gp.yaml", []),
    "DCGAN": ("configs/gans/dcgan.yaml", []),
}
COMMON = ["batch_size=64", "model.width=32", "model.d_width=32", "model.z_dim=100", "threads=1", "device=cpu", "ema=0.0"]
KEY = "FID (LeNet-MNIST features)"


def fid(clf, reference: torch.Tensor, images: torch.Tensor) -> float:
    return round(frechet_distance(reference, classifier_outputs(clf, images)[0]), 4)


def curve(config: str, overrides: list[str], steps: int, every: int, out: Path, clf, reference, n: int) -> dict:
    """Train ``config`` to ``steps`` in segments of ``every``; FID and training seconds after each segment."""
    points, seconds = [], 0.0
    for end in range(every, steps + every, every):
        cfg = load_config(GanConfig, config, [*COMMON, *overrides, f"steps={end}", f"sample_every={steps}",
                                              f"checkpoint_every={every}"])
        resume = out / "checkpoint.safetensors" if end > every else None
        m = train_gan(cfg, out, resume=resume, show_progress=False)
        seconds += m["seconds"]
        G, gcfg, _ = load_generator(out / "checkpoint.safetensors")
        fake, _ = generate(G, n, gcfg.model, torch.Generator().manual_seed(0))
        points.append({"generator_iterations": end, "train_seconds": round(seconds, 1), KEY: fid(clf, reference, fake)})
        print(json.dumps({"run": str(out), **points[-1]}), file=sys.stderr, flush=True)
    return {"config": config, "overrides": [*COMMON, *overrides], "points": points}


def plot(path: Path, results: dict, floor: float, n: int) -> None:
    from physadv.core.plots import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for label, r in results.items():
        fids = [p[KEY] for p in r["points"]]
        axes[0].plot([p["generator_iterations"] for p in r["points"]], fids, marker="o", ms=3, label=label)
        axes[1].plot([p["train_seconds"] for p in r["points"]], fids, marker="o", ms=3, label=label)
    for ax, xlabel in zip(axes, ("generator iterations", "wall-clock training time (s, shared 2-core CPU)")):
        ax.axhline(floor, color="grey", ls="--", lw=0.8, label="real-vs-real floor (test split)")
        ax.set_xlabel(xlabel)
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("FID, LeNet-MNIST features (lower is better)")
    axes[1].legend(fontsize=7)
    fig.suptitle(f"WGAN-GP Figure 3 on MNIST-5k: FID of {n} samples over generator iterations and over time", fontsize=10)
    save_figure(fig, path)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=1000, help="generator iterations per model")
    p.add_argument("--every", type=int, default=100, help="score the generator every this many iterations")
    p.add_argument("--n", type=int, default=500, help="samples per score")
    p.add_argument("--only", default=None, help="comma-separated subset of the labels (for a quick look)")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    out = Path(a.out or f"runs/figure3/{time.strftime('%Y%m%d-%H%M%S')}")
    clf = get_classifier("lenet-mnist", progress=False)
    reference = classifier_outputs(clf, load_dataset("mnist", "train").images)[0]
    test = load_dataset("mnist", "test").images
    floor = fid(clf, reference, test[torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:a.n]])
    chosen = [k for k in RUNS if a.only is None or k in a.only.split(",")]
    results = {label: curve(*RUNS[label], a.steps, a.every, out / f"run{i}", clf, reference, a.n)
               for i, label in enumerate(chosen)}
    report = {"figure": "Gulrajani et al. 2017, Figure 3", "score": KEY, "samples_per_score": a.n,
              "real_vs_real_floor": floor, "steps": a.steps, "every": a.every, "runs": results}
    plot(out / "figure3.png", results, floor, a.n)
    write_json(out / "figure3.json", report)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
