"""Time per optimisation step of the physical attacks on this CPU, and the victim's share of it.

    python benchmarks/physical.py [--steps 20] [--threads 2]

Prints JSON: RP2 (the planar sign world, 32 views per step) and EOT on the mesh scene (cached-fragment renderer,
the sign on a post, 16 views per step), each with seconds per step and the victim's share of it, next to a plain
classifier forward+backward on the same batch (the floor any view pipeline adds to).
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
    import physadv.rendering.signs  # noqa: F401  (registers the sign classifier and data)
    from physadv.core.victims import ClassifierVictim
    from physadv.physical.eot import EOT, EOTConfig
    from physadv.physical.rp2 import RP2, RP2Config
    from physadv.rendering.scene import SceneConfig, build_scene
    from physadv.rendering.signs.classifier import get_sign_classifier

    model = get_sign_classifier(progress=False)
    victim = ClassifierVictim(model, "sign")
    out: dict = {"threads": torch.get_num_threads()}
    for name, attack, batch in (
            ("rp2", RP2(victim, build_scene(SceneConfig()), RP2Config(steps=args.steps, val_every=10_000, val_views=8)), 32),
            ("eot_mesh", EOT(victim, build_scene(SceneConfig(kind="mesh")),
                             EOTConfig(steps=args.steps, batch=16, val_every=10_000, val_views=8)), 16)):
        r = attack.run(progress_bar=False)
        out[name] = {"seconds_per_step": r.timings["seconds_per_step"], "victim_share": r.timings["victim_share"],
                     "outside_victim_share": round(1 - r.timings["victim_share"], 3), "views_per_step": batch}
    x = torch.rand(32, 3, 32, 32, requires_grad=True)
    model.requires_grad_(False)
    t = time.perf_counter()
    for _ in range(args.steps):
        model(x).logsumexp(1).sum().backward()
    out["classifier_only_32_views"] = {"seconds_per_step": round((time.perf_counter() - t) / args.steps, 4)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
