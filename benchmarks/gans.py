"""The GAN bars of issue 4: DCGAN (non-saturating) and WGAN-GP on MNIST-5k within 15 minutes on 2 CPU cores.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/gans.py dcgan        # configs/gans/dcgan_cpu.yaml
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/gans.py wgan_gp      # configs/gans/wgan_gp_cpu.yaml

The recipes are the CPU recipes (batch and widths cut from the papers' dcgan.yaml / wgan_gp.yaml, see
docs/fidelity.md); since issue 15 neither averages G's weights (Karras et al.'s EMA is on for progressive
growing only), so the generator scored is the trained one itself.

The recipes set their own CPU threads (``threads:`` in the config): on this shared 2-core machine one WGAN-GP
step (5 critic + 1 generator update, batch 32) took 129 ms with one thread and 606 ms with two, because two
threads wait on each other when other jobs hold the cores.
Measured after issue 15 (no weight averaging; docs/figures.py runs): dcgan_cpu at load ~10 on the 2 cores stopped
at its time budget after 2156 of 3000 steps, FID ratio 0.083, 10/10 classes, all bars met; wgan_gp_cpu at load ~10
reached 1100 steps, FID ratio 0.265 (bar 0.25 missed: the budget, not the recipe), at load 4-8 all 3000 steps in
554 s, FID ratio 0.067, 10/10 classes, all bars met.
Measured (issue 4, with an EMA of G's weights, z ~ N(0, I) for DCGAN): wgan_gp 3000 steps in 810 s at load average 3.2-6.6 on the 2 cores, in 293 s at 2.0-2.4, FID
ratio 0.078 and 10/10 classes both times (one thread is deterministic); dcgan 3000 steps in 173 s at load ~2,
FID ratio 0.076, 10/10 classes.

Each recipe trains from its config with a 15-minute wall-clock budget (``max_minutes`` = 14.5: training stops
and checkpoints early if the budget runs out, and the samples of that checkpoint are judged), then scores 1000 samples of the generator with LeNet-MNIST
features against the training split, beside the real-vs-real floor (test split) and an untrained generator of
the same architecture (the peer the bar names). Prints one JSON object; the run folder holds the sample
grid, the loss curves and the nearest-neighbour grid.

Bars: >= 9 of 10 digit classes covered (a class counts when it holds >= 2% of the samples), no class above
30%, FID (LeNet-MNIST features) <= 1/4 of the untrained generator's, all within 15 minutes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from physadv.core.config import load_config  # noqa: E402
from physadv.core.train import get_classifier  # noqa: E402
from physadv.gans.evaluate import evaluate_generator  # noqa: E402
from physadv.gans.trainer import GanConfig, load_generator, train_gan  # noqa: E402

RECIPES = {"dcgan": "configs/gans/dcgan_cpu.yaml", "wgan_gp": "configs/gans/wgan_gp_cpu.yaml"}
BUDGET_MINUTES = 15.0
TRAIN_MINUTES = 14.5  # the training budget; the rest of the 15 minutes covers start-up and the last checkpoint


def run(recipe: str, out: Path, overrides: list[str]) -> dict:
    cfg = load_config(GanConfig, RECIPES[recipe], [f"max_minutes={TRAIN_MINUTES}", "device=cpu", *overrides])
    clf = get_classifier("lenet-mnist")  # cached by core; trained once (~11 s) if missing
    t0 = time.time()
    m = train_gan(cfg, out)
    train_s = time.time() - t0
    G, gcfg, meta = load_generator(out / "checkpoint.safetensors")
    res = evaluate_generator(G, gcfg, clf, gcfg.data.load("train"), gcfg.data.load("test"), n=1000, out=out)
    key = "FID (LeNet-MNIST features)"
    cov = res["generated"]["coverage"]
    bars = {"within_15_min": train_s <= 60 * BUDGET_MINUTES,  # quality is judged on what 15 minutes produced
            "covers_9_classes": cov["covered"] >= 9, "no_class_above_30pct": cov["max_share"] <= 0.30,
            "fid_at_most_quarter_of_untrained": res["fid_ratio_to_untrained"] <= 0.25}
    return {"recipe": recipe, "config": RECIPES[recipe], "overrides": overrides, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "train_seconds": round(train_s, 1), "steps": m["steps"], "steps_planned": m["steps_planned"],
            "seconds_per_step": m["seconds_per_step"], key: res["generated"][key],
            "floor " + key: res["real_vs_real_floor"][key], "untrained " + key: res["untrained_generator"][key],
            "fid_ratio_to_untrained": res["fid_ratio_to_untrained"], "coverage": cov,
            "KID": res["generated"]["KID (LeNet-MNIST features)"], "floor KID": res["real_vs_real_floor"]["KID (LeNet-MNIST features)"],
            "IS": res["generated"]["Inception score (LeNet-MNIST)"], "floor IS": res["real_vs_real_floor"]["Inception score (LeNet-MNIST)"],
            "bars": bars, "all_bars_met": all(bars.values()), "run": str(out)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", nargs="?", choices=sorted(RECIPES), help="one recipe (default: each in turn)")
    p.add_argument("--out", default=None)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    a = p.parse_args()
    for recipe in [a.recipe] if a.recipe else sorted(RECIPES):
        out = Path(a.out or "runs/bench-gans") / f"{recipe}-{time.strftime('%Y%m%d-%H%M%S')}"
        print(json.dumps(run(recipe, out, a.overrides), indent=2))


if __name__ == "__main__":
    main()
