"""Command-line plumbing shared by every job, and the ``classifier`` job itself.

Each package that offers jobs has a ``cli.py`` with ``register(subparsers)``; ``physical.cli``
collects them into the ``physadv`` command. Helpers here give every job the same shape:
``--config``, ``--set key=value`` (repeatable), ``--out``, ``--device``; the resolved config is
printed and written beside the outputs.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TypeVar

from physadv.core.config import dump_config, load_config, save_config
from physadv.core.errors import PhysadvError
from physadv.core.io import make_run_dir, write_json
from physadv.core.resources import PACKAGED_PREFIX, packaged

T = TypeVar("T")


def add_config_args(p: argparse.ArgumentParser, shipped: str | None = None) -> None:
    """``--config`` (default: the shipped config ``shipped``, e.g. ``capture/eval.yaml``, read from the installed
    package, so a command runs from any directory), ``--set`` and ``--out``."""
    default = str(packaged(shipped)) if shipped else None
    p.add_argument("--config", default=default, help="YAML config file, looked up as given, then among the shipped "
                   "configs" + (f" (default: the shipped {shipped.removeprefix(PACKAGED_PREFIX)})" if shipped else ""))
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set epochs=3 --set data.name=digits (repeatable)")
    p.add_argument("--out", default=None, help="output folder (default runs/<job>/<timestamp>/)")


def resolve_config(cls: type[T], args: argparse.Namespace, quiet: bool = False) -> T:
    """Load the config named by ``--config`` with ``--set`` overrides, and print it."""
    overrides = list(args.overrides)
    if getattr(args, "device", None):
        overrides.append(f"device={args.device}")
    cfg = load_config(cls, args.config, overrides)
    if not quiet:
        print("# resolved config" + (f" ({args.config})" if args.config else " (built-in defaults)"))
        print(dump_config(cfg).rstrip())
    return cfg


def start_run(job: str, cfg: Any, args: argparse.Namespace) -> Path:
    """Create the run folder and write the resolved config into it."""
    run = make_run_dir(job, out=getattr(args, "out", None))
    save_config(cfg, run / "config.yaml")
    return run


def finish_run(run: Path, metrics: dict) -> None:
    write_json(run / "metrics.json", metrics)
    print(f"outputs: {run}")


# --------------------------------------------------------------------------- classifier job
def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classifier", help="train or evaluate a victim classifier")
    jobs = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = jobs.add_parser("train", help="train (or reuse the cached) classifier from a config")
    add_config_args(t, "core/lenet_mnist.yaml")
    t.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    t.add_argument("--retrain", action="store_true", help="ignore the cache and train again")
    t.set_defaults(func=_train)
    e = jobs.add_parser("eval", help="evaluate a classifier on a dataset split")
    add_config_args(e, "core/lenet_mnist.yaml")
    e.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    e.add_argument("--weights", default=None, help="a classifier file (.safetensors from physadv, or torchvision weights with --model)")
    e.add_argument("--model", default=None, help="architecture for --weights that carry no physadv metadata (e.g. resnet50)")
    e.add_argument("--split", default="test", choices=["train", "test"])
    e.set_defaults(func=_eval)


def _train(args: argparse.Namespace) -> int:
    from physadv.core.config import to_dict
    from physadv.core.train import TrainConfig, cached_classifier_path, cached_metrics, get_classifier

    cfg = resolve_config(TrainConfig, args)
    run = start_run("classifier-train", cfg, args)
    reused = cached_classifier_path(cfg).is_file() and not args.retrain
    model = get_classifier(cfg, retrain=args.retrain)
    metrics = dict(cached_metrics(cfg) or {})
    metrics.update(model=cfg.model, reused_cache=reused, weights=str(cached_classifier_path(cfg)), config=to_dict(cfg))
    from physadv.core.train import save_classifier

    save_classifier(run / "classifier.safetensors", model, {"config": to_dict(cfg), "metrics": {"accuracy": metrics.get("accuracy")}})
    print(f"{cfg.model}: test accuracy {metrics['accuracy']:.4f} on {cfg.data.name}"
          + (" (reused cached weights)" if reused else f" (trained in {metrics.get('train_seconds', 0):.1f} s)"))
    finish_run(run, metrics)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from physadv.core.models import load_pretrained
    from physadv.core.train import TrainConfig, evaluate, get_classifier, load_classifier, resolve_device

    cfg = resolve_config(TrainConfig, args)
    device = resolve_device(cfg.device)
    if args.weights and args.model:
        model = load_pretrained(args.model, args.weights).to(device)
    elif args.weights:
        model = load_classifier(args.weights, device)
    else:
        model = get_classifier(cfg)
    data = cfg.data.load(args.split)
    run = start_run("classifier-eval", cfg, args)
    metrics = evaluate(model, data)
    metrics.update(model=model.arch, dataset=data.name, split=args.split)
    print(f"{model.arch}: accuracy {metrics['accuracy']:.4f} on {data.name} ({len(data)} images)")
    finish_run(run, metrics)
    return 0


__all__ = ["add_config_args", "resolve_config", "start_run", "finish_run", "register", "PhysadvError"]
