"""``physadv gan train|sample|eval|sparse-coding``.

    physadv gan train --config configs/gans/dcgan.yaml --set steps=500
    physadv gan train --config configs/gans/dcgan.yaml --resume runs/gan-train/X/checkpoint.safetensors --out runs/gan-train/X
    physadv gan sample --checkpoint runs/gan-train/X/checkpoint.safetensors --n 64
    physadv gan eval --checkpoint runs/gan-train/X/checkpoint.safetensors --set n=1000
    physadv gan sparse-coding --config configs/gans/sparse_coding.yaml
    torchrun --nproc_per_node 2 -m physadv.gans train --config configs/gans/dcgan.yaml --set device=cpu
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Optional

from physadv.core.cli import add_config_args, finish_run, resolve_config, start_run
from physadv.core.errors import PhysadvError


@dataclass
class EvalConfig:
    """``physadv gan eval``: which samples and which feature network."""

    n: int = 1000  # generated samples (the floor uses min(n, test size) test images)
    classifier: str = "lenet-mnist"  # domain classifier trained by core: features, probabilities, coverage
    inception_weights: Optional[str] = None  # a local Inception-v3 weights file for FID on its pool features
    ema: bool = True  # score the EMA generator when the checkpoint has one
    seed: int = 0
    device: str = "auto"

    def validate(self) -> None:
        if self.n < 2:
            raise ValueError(f"n must be at least 2, got {self.n}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gan", help="train, sample and evaluate GANs; the sparse-coding view of CNNs")
    jobs = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    t = jobs.add_parser("train", help="train a GAN from a config (one per game in configs/gans/)")
    add_config_args(t, "gans/dcgan.yaml")
    t.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    t.add_argument("--resume", default=None, metavar="CHECKPOINT", help="continue from a checkpoint.safetensors")
    t.set_defaults(func=_train)

    s = jobs.add_parser("sample", help="draw samples from a trained generator")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--n", type=int, default=64)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--raw", action="store_true", help="use the raw generator weights, not their EMA")
    s.add_argument("--out", default=None)
    s.set_defaults(func=_sample)

    e = jobs.add_parser("eval", help="FID / KID / IS / coverage / nearest neighbours, beside the real-vs-real floor")
    add_config_args(e, None)
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    e.set_defaults(func=_eval)

    c = jobs.add_parser("sparse-coding", help="the deconvolutional data model: layered thresholding vs layered basis pursuit")
    add_config_args(c, "gans/sparse_coding.yaml")
    c.set_defaults(func=_sparse)


def _train(args: argparse.Namespace) -> int:
    import os

    from physadv.core.io import make_run_dir
    from physadv.gans.trainer import GanConfig, train_gan

    rank = int(os.environ.get("RANK", "0"))
    cfg = resolve_config(GanConfig, args, quiet=rank != 0)
    if args.out is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise PhysadvError("under torchrun pass --out DIR so that every process writes to the same run folder")
    run = make_run_dir("gan-train", out=args.out) if rank == 0 else None
    from pathlib import Path

    out = run if run is not None else Path(args.out)
    m = train_gan(cfg, out, resume=args.resume)
    if rank == 0:
        print(f"{cfg.game.name} / {cfg.model.arch}: {m['steps']} steps in {m['seconds']} s; "
              f"final D loss {m['final_d_loss']:.4f}, G loss {m['final_g_loss']:.4f}")
        print(f"outputs: {out}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return 0


def _sample(args: argparse.Namespace) -> int:
    import torch

    from physadv.core.io import make_run_dir, save_checkpoint

    from physadv.core.plots import save_image_grid
    from physadv.gans.trainer import generate, load_generator

    if args.n < 1:
        raise PhysadvError(f"--n must be at least 1, got {args.n}")
    G, cfg, meta = load_generator(args.checkpoint, ema=not args.raw)
    images, labels = generate(G, args.n, cfg.model, torch.Generator().manual_seed(args.seed), num_classes=meta["num_classes"])
    run = make_run_dir("gan-sample", out=args.out)
    save_image_grid(run / "samples.png", images, nrow=max(1, int(args.n ** 0.5)), scale=2)
    save_checkpoint(run / "samples.safetensors", {"images": images, **({"labels": labels} if labels is not None else {})},
                    {"checkpoint": str(args.checkpoint), "seed": args.seed, "step": meta["step"]})
    print(f"{args.n} samples of {args.checkpoint} (step {meta['step']}) -> {run / 'samples.png'}")
    print(f"outputs: {run}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from physadv.core.train import get_classifier, resolve_device
    from physadv.gans.evaluate import evaluate_generator
    from physadv.gans.trainer import load_generator

    cfg = resolve_config(EvalConfig, args)
    device = resolve_device(cfg.device)
    G, gcfg, meta = load_generator(args.checkpoint, ema=cfg.ema, device=device)
    train, test = gcfg.data.load("train"), gcfg.data.load("test")
    clf = get_classifier(cfg.classifier).to(device)
    label = {"lenet-mnist": "LeNet-MNIST"}.get(cfg.classifier, cfg.classifier)
    run = start_run("gan-eval", cfg, args)
    res = evaluate_generator(G, gcfg, clf, train, test, cfg.n, cfg.seed, label, run, cfg.inception_weights)
    res.update(checkpoint=str(args.checkpoint), step=meta["step"], game=gcfg.game.name, arch=gcfg.model.arch)
    key = f"FID ({label} features)"
    g, f = res["generated"], res["real_vs_real_floor"]
    print(f"{key}: {g[key]:.3f}  (real-vs-real floor {f[key]:.3f}; untrained generator {res['untrained_generator'][key]:.3f})")
    print(f"KID ({label} features): {g[f'KID ({label} features)']:.5f}  (floor {f[f'KID ({label} features)']:.5f})")
    print(f"Inception score ({label}): {g[f'Inception score ({label})']:.3f}  (real test images {f[f'Inception score ({label})']:.3f})")
    print(f"class coverage: {g['coverage']['covered']}/{len(train.classes)} classes, largest share {g['coverage']['max_share']:.3f}"
          f"  histogram {json.dumps(g['coverage']['histogram'])}")
    finish_run(run, res)
    return 0


def _sparse(args: argparse.Namespace) -> int:
    from physadv.gans.sparse_coding import SparseCodingConfig, support_recovery_experiment

    cfg = resolve_config(SparseCodingConfig, args)
    run = start_run("gan-sparse-coding", cfg, args)
    res = support_recovery_experiment(cfg, out=run)
    for row in res["rows"]:
        print(f"noise {row['noise']:.3f}: support recovery layer1/layer2  thresholding "
              f"{row['thresholding']['layer1']:.3f}/{row['thresholding']['layer2']:.3f}  basis pursuit "
              f"{row['basis_pursuit']['layer1']:.3f}/{row['basis_pursuit']['layer2']:.3f}")
    finish_run(run, res)
    return 0
