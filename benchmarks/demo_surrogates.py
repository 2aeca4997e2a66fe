"""What the demo designs on: its three victims, or their slightly robust copies?

    .venv/bin/python benchmarks/demo_surrogates.py --out runs/bench/demo_surrogates

Springer et al. (NeurIPS 2021, "A little robustness goes a long way") found that surrogates adversarially trained at
a small radius make adversarial examples that carry to other models. Here `physadv demo` runs once per design seed
with its plan's `robust_eps_255` at 0 (the stickers designed on the victims) and at each radius given (on their
copies `NAME+pgdEPS`); every run's print is photographed in simulation and judged by the victims (white-box), by the
copies, and by zoo models the design never saw (default: mobilenet-v2, gtsrb-cnn and convnext-64, each from seeds 0,
101 and 102). Prints JSON: per run, every model's targeted and untargeted success over the photos, and the mean
targeted success over the unseen models; `result.json` in `--out` holds the same. Models and designs are cached, so a
second run only photographs and judges again.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

UNSEEN = [f"{m}{s}" for m in ("mobilenet-v2", "gtsrb-cnn", "convnext-64") for s in ("", "@101", "@102")]


def run(out: Path, radii: list[float], seeds: list[int], unseen: list[str]) -> dict:
    from physadv.physical.cli import main

    runs = []
    for seed in seeds:
        for eps in radii:
            folder = out / f"eps{eps:g}_seed{seed}"
            code = main(["demo", "--out", str(folder), "--set", f"robust_eps_255={eps:g}", "--set", f"seed={seed}",
                         "--set", "held_out=[" + ",".join(unseen) + "]"])
            if code:
                raise SystemExit(f"physadv demo exited with {code} for robust_eps_255={eps:g}, seed={seed}")
            m = json.loads((folder / "metrics.json").read_text())
            models = {n: {"role": v["role"], "targeted": v["targeted_success"], "untargeted": v["untargeted_success"]}
                      for n, v in m["capture"]["models"].items()}
            runs.append({"robust_eps_255": eps, "seed": seed, "designed_on": m["rp2"]["victims"], "models": models,
                         "unseen_targeted_mean": sum(models[n]["targeted"] for n in unseen) / len(unseen),
                         "unseen_untargeted_min": min(models[n]["untargeted"] for n in unseen),
                         "white_box_targeted_min": min(v["targeted"] for v in models.values() if v["role"] == "white-box")})
    return {"unseen": unseen, "runs": runs}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench/demo_surrogates")
    p.add_argument("--radii", default="0,1", help="robust_eps_255 values, comma-separated (0: the victims themselves)")
    p.add_argument("--seeds", default="0,1", help="design seeds, comma-separated")
    p.add_argument("--unseen", default=",".join(UNSEEN), help="zoo models that judge and never see a design")
    a = p.parse_args(argv)
    try:
        radii = [float(x) for x in a.radii.split(",")]
        seeds = [int(x) for x in a.seeds.split(",")]
    except ValueError as err:
        print(f"demo_surrogates: --radii takes numbers and --seeds integers, comma-separated ({err})", file=sys.stderr)
        return 2
    out = Path(a.out)
    result = run(out, radii, seeds, [n for n in a.unseen.split(",") if n])
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
