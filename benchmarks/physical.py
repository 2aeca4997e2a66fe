"""Time per optimisation step of the physical attacks on this CPU, and the share spent outside the classifier.

    python benchmarks/physical.py [--steps 20]

Prints JSON: RP2 (planar sign world, 32 views per step) and 3D EOT (cached-fragment renderer, sign on a
post) with seconds per step and the classifier's share of it, next to a plain classifier forward+backward
on the same batch (the floor any view pipeline adds to).
"""
from __future__ import annotations

import argparse
import json
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from physadv.core.config import from_dict
    from physadv.physical.eot3d import EOT3DConfig, eot_3d
    from physadv.physical.rp2 import RP2Config, rp2_attack
    from physadv.rendering.signs.classifier import get_sign_classifier

    model = get_sign_classifier(progress=False)
    out: dict = {"threads": torch.get_num_threads()}

    rp2 = rp2_attack(model, from_dict(RP2Config, {"steps": args.steps, "val_every": 10_000, "val_views": 8}), progress_bar=False)
    out["rp2"] = {"seconds_per_step": round(rp2.seconds_per_step, 4), "classifier_share": round(rp2.classifier_share, 3),
                  "outside_classifier_share": round(1 - rp2.classifier_share, 3), "views_per_step": 32}

    e3 = eot_3d(model, from_dict(EOT3DConfig, {"steps": args.steps, "pool_size": 16, "eval_poses": 16}), progress_bar=False)
    out["eot3d"] = {"seconds_per_step": round(e3.seconds_per_step, 4), "views_per_step": 16}

    x = torch.rand(32, 3, 32, 32, requires_grad=True)
    model.requires_grad_(False)
    t = time.perf_counter()
    for _ in range(args.steps):
        model(x).logsumexp(1).sum().backward()
    out["classifier_only_32_views"] = {"seconds_per_step": round((time.perf_counter() - t) / args.steps, 4)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
