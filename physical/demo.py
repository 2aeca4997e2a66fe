"""``physadv demo``: the main job on built-in defaults.

Until the physical pipeline lands, the demo trains (or reuses) LeNet on MNIST-5k, reports its test
accuracy and writes a run folder.
"""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the main job on built-in defaults (what `make demo` runs)")
    p.add_argument("--out", default=None, help="output folder (default runs/demo/<timestamp>/)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from core.cli import finish_run
    from core.config import save_config
    from core.data import load_dataset
    from core.io import make_run_dir
    from core.train import cached_classifier_path, default_train_config, evaluate, get_classifier

    cfg = default_train_config("lenet-mnist")
    cfg.device = args.device
    run_dir = make_run_dir("demo", out=args.out)
    save_config(cfg, run_dir / "config.yaml")
    reused = cached_classifier_path(cfg).is_file()
    model = get_classifier(cfg)
    metrics = evaluate(model, load_dataset("mnist", "test"))
    print(f"LeNet on MNIST-5k: test accuracy {metrics['accuracy']:.2%} "
          f"({'reused cached weights' if reused else 'trained now'}; cache {cached_classifier_path(cfg)})")
    metrics.update(model="lenet-mnist", reused_cache=reused)
    finish_run(run_dir, metrics)
    return 0
