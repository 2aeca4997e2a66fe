"""``physadv attack NAME``: run one attack on a trained victim and write its outputs.

    physadv attack deepfool --model lenet-mnist --data mnist --limit 1000 --out runs/df
    physadv attack pgd --set params.eps=0.3 --set params.norm=linf
    physadv attack uap --set params.xi=4 --set transfer_models='[fc500-150-10-mnist]'
    physadv attack spatial --set params.mode=random --limit 200
    physadv attack spatial --set canvas_pad=8   # black-canvas setting (LeNet trained on the 44 px canvas)

Each run writes ``config.yaml``, ``metrics.json``, ``adversarial.safetensors`` (``images``, ``adversarial``,
``labels``) and ``grid.png`` (clean / perturbation scaled to [0, 1] / adversarial, with predicted labels).
A UAP run also writes ``perturbation.png`` and the fooling rate of its perturbation on ``transfer_models``.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import torch

from physadv.core.data import DataConfig


@dataclass
class AttackJobConfig:
    """One attack run (``configs/attacks/NAME.yaml``); ``params`` are the attack's keyword arguments."""

    model: str = "lenet-mnist"
    weights: Optional[str] = None  # a classifier file from physadv instead of the cached registry model
    data: DataConfig = field(default_factory=DataConfig)
    split: Literal["train", "test"] = "test"
    limit: Optional[int] = 1000
    labels: Literal["predicted", "dataset"] = "predicted"  # predicted: the model's own decisions (the papers); dataset: true labels
    target: Optional[str] = None  # targeted attacks: "least-likely", "random" or a class index
    params: dict = field(default_factory=dict)
    train_limit: int = 1000  # UAP: training images (from the train split)
    transfer_models: list = field(default_factory=list)  # UAP: other models to fool with the same perturbation; transfer: the models
    ensemble_fusion: Literal["mean_probability", "geometric_mean"] = "mean_probability"  # transfer: Liu et al.'s average of probabilities, or the geometric mean
    canvas_pad: int = 0  # spatial: > 0 pads images onto a black canvas and attacks a canvas-trained model
    landscape: Optional[int] = None  # spatial: also write Engstrom et al.'s Figure 3 (landscape.png) for this attacked image
    show: int = 10  # images in grid.png
    seed: int = 0
    device: str = "auto"

    def validate(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be at least 1, got {self.limit}")
        if self.canvas_pad < 0:
            raise ValueError(f"canvas_pad must be >= 0, got {self.canvas_pad}")
        if self.show < 0:
            raise ValueError(f"show must be >= 0, got {self.show}")
        if self.landscape is not None and (self.landscape < 0 or (self.limit is not None and self.landscape >= self.limit)):
            raise ValueError(f"landscape {self.landscape} is not the index of an attacked image (0 to limit - 1)")


def register(sub: argparse._SubParsersAction) -> None:
    from physadv.core.cli import add_config_args

    p = sub.add_parser("attack", help="run a digital attack (fgsm, fgsm-min, bim, pgd, deepfool, uap, spatial) on a victim")
    p.add_argument("name", metavar="NAME", help="attack name: fgsm, fgsm-min, bim, pgd, deepfool, uap, spatial")
    add_config_args(p)
    p.add_argument("--model", default=None, help="victim registry name (e.g. lenet-mnist, fc500-150-10-mnist)")
    p.add_argument("--data", default=None, help="dataset name (e.g. mnist)")
    p.add_argument("--limit", type=int, default=None, help="attack only the first N images (a fixed balanced subset)")
    p.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=run_cli)


def default_config_path(name: str) -> str | None:
    path = Path(__file__).resolve().parents[1] / "configs" / "attacks" / f"{name}.yaml"
    return str(path) if path.is_file() else None


def run_cli(args: argparse.Namespace) -> int:
    from physadv.attacks.registry import attack_class
    from physadv.core.cli import finish_run, resolve_config, start_run

    if args.name != "transfer":
        attack_class(args.name)  # unknown name: a clear error before anything else
    args.config = args.config or default_config_path(args.name)
    for key, value in (("model", args.model), ("data.name", args.data), ("limit", args.limit)):
        if value is not None:
            args.overrides = [f"{key}={value}"] + list(args.overrides)
    cfg = resolve_config(AttackJobConfig, args)
    run = start_run(f"attack-{args.name}", cfg, args)
    metrics = run_transfer(cfg, run) if args.name == "transfer" else run_attack(args.name, cfg, run)
    finish_run(run, metrics)
    return 0


def load_victim(cfg: AttackJobConfig, name: str | None = None):
    from physadv.core.train import get_classifier, load_classifier, resolve_device

    if cfg.canvas_pad and name is None:
        from physadv.attacks.spatial import canvas_classifier

        return canvas_classifier(cfg.model, cfg.canvas_pad).to(resolve_device(cfg.device))
    if cfg.weights and name is None:
        return load_classifier(cfg.weights, resolve_device(cfg.device))
    from physadv.core.train import default_train_config

    tc = default_train_config(name or cfg.model)
    tc.device = cfg.device
    return get_classifier(tc)


def choose_target(spec: str | None, logits: torch.Tensor, labels: torch.Tensor, seed: int) -> torch.Tensor | None:
    """Target labels for a targeted run: the least likely class, a random other class, or one fixed class."""
    from physadv.core.errors import PhysadvError

    if spec is None:
        return None
    k = logits.shape[1]
    if spec == "least-likely":
        return logits.argmin(1)
    if spec == "random":
        g = torch.Generator().manual_seed(seed)
        return (labels + torch.randint(1, k, labels.shape, generator=g)) % k
    try:
        t = int(spec)
    except ValueError:
        raise PhysadvError(f"target must be 'least-likely', 'random' or a class index, got '{spec}'") from None
    if not 0 <= t < k:
        raise PhysadvError(f"target class {t} is out of range [0, {k - 1}]")
    return torch.full_like(labels, t)


def run_attack(name: str, cfg: AttackJobConfig, run: Path) -> dict:
    """Build the victim, data and attack from ``cfg``, run it, write the outputs in ``run``; returns metrics."""
    from physadv.attacks.base import predict
    from physadv.attacks.registry import get_attack
    from physadv.core.io import save_checkpoint
    from physadv.core.train import seed_everything

    seed_everything(cfg.seed)
    model = load_victim(cfg)
    data = cfg.data.load(cfg.split)
    if cfg.limit:
        data = data.subset(cfg.limit, seed=cfg.seed)
    images = data.images
    if cfg.canvas_pad:
        from physadv.attacks.spatial import black_canvas

        images = black_canvas(images, cfg.canvas_pad)
    labels = data.labels if cfg.labels == "dataset" else predict(model, images)
    with torch.no_grad():
        logits = torch.cat([model(images[i:i + 512].to(next(model.parameters()).device)).cpu()
                            for i in range(0, len(images), 512)])
    target = choose_target(cfg.target, logits, labels, cfg.seed)
    attack = get_attack(name, model, **cfg.params)
    extra: dict = {}
    if name == "spatial":
        if cfg.canvas_pad and attack.max_trans is None:  # the original image's range (+-3 px), not 10% of the canvas
            attack.max_trans = attack.translation_range(data.images.shape[-1])
        extra["translation_px"] = attack.translation_range(images.shape[-1])
        if cfg.landscape is not None:
            extra["landscape"] = write_landscape(run / "landscape.png", model, images, labels, cfg.landscape, attack)
    if name == "uap":
        extra = fit_universal(attack, cfg, model, images, run)
    result = attack.run(images, labels, target)
    if name == "fgsm-min":
        extra = fgsm_set_level(model, images, labels, attack.eps_max)
    metrics = {"attack": name, "model": getattr(model, "arch", cfg.model), "dataset": data.name, "split": cfg.split,
               "labels": cfg.labels, "params": dict(cfg.params), **result.metrics(), **extra}
    tensors = {"images": result.images, "adversarial": result.adversarial, "labels": result.labels,
               "clean_pred": result.clean_pred, "pred": result.pred, "iterations": result.iterations}
    if target is not None:
        tensors["target"] = target
    tensors.update({f"extra_{k}": v for k, v in result.extras.items()})
    save_checkpoint(run / "adversarial.safetensors", tensors, {"attack": name, "model": metrics["model"]})
    if cfg.show:
        save_result_grid(run / "grid.png", result, getattr(model, "classes", None), cfg.show)
    print(summary_line(metrics))
    return metrics


def run_transfer(cfg: AttackJobConfig, run: Path) -> dict:
    """Liu et al.'s transfer study on ``transfer_models`` (at least two): optimisation attack from each model and
    from each all-but-one ensemble, untargeted and targeted (``target``, default random), FGSM as the baseline;
    CSV + heatmap per matrix, and the decision-region picture. ``params`` go to the optimisation attack."""
    from physadv.attacks.base import predict
    from physadv.attacks.transfer import decision_regions, save_decision_regions, transfer_matrix
    from physadv.core.errors import PhysadvError
    from physadv.core.train import seed_everything

    names = list(cfg.transfer_models) or [cfg.model]
    if len(names) < 2:
        raise PhysadvError("transfer needs at least two models in transfer_models")
    seed_everything(cfg.seed)
    models = {n: load_victim(cfg, n) for n in names}
    data = cfg.data.load(cfg.split)
    data = data.subset(cfg.limit, seed=cfg.seed) if cfg.limit else data
    first = models[names[0]]
    keep = torch.stack([predict(m, data.images) == data.labels for m in models.values()]).all(0)
    images, labels = data.images[keep], data.labels[keep]  # the paper keeps images every model gets right
    with torch.no_grad():
        logits = first(images.to(next(first.parameters()).device)).cpu()
    target = choose_target(cfg.target or "random", logits, labels, cfg.seed)
    opt_params = {k: v for k, v in cfg.params.items() if k != "fgsm_eps"}
    fgsm_eps = float(cfg.params.get("fgsm_eps", 0.2))
    runs = {"untargeted": dict(attack="opt", target=None, ensemble=False),
            "untargeted_ensemble": dict(attack="opt", target=None, ensemble=True),
            "targeted": dict(attack="opt", target=target, ensemble=False),
            "targeted_ensemble": dict(attack="opt", target=target, ensemble=True),
            "fgsm": dict(attack="fgsm", target=None, ensemble=False)}
    out: dict = {"attack": "transfer", "models": names, "n": int(len(images)), "dataset": data.name,
                 "ensemble_fusion": cfg.ensemble_fusion}
    for key, spec in runs.items():
        params = {"eps": fgsm_eps} if spec["attack"] == "fgsm" else opt_params
        table = transfer_matrix(models, images, labels, params=params, fusion=cfg.ensemble_fusion, **spec)
        table.to_csv(run / f"transfer_{key}.csv")
        table.heatmap(run / f"transfer_{key}.png")
        out[key] = table.to_dict()
        out[key]["transfer_mean"] = round(transfer_mean(table), 4)
        print(f"transfer {key}: {'match' if spec['target'] is not None else 'accuracy'} on other/held-out models "
              f"{transfer_mean(table):.3f}, RMSD {sum(table.rmsd) / len(table.rmsd) * 255:.1f}/255")
    grid, axis = decision_regions(models, images[0], int(labels[0]), names[0], seed=cfg.seed)
    save_decision_regions(run / "decision_regions.png", grid, names, axis, int(labels[0]), names[0])
    return out


def transfer_mean(table) -> float:
    """Mean over the transfers that count: source != target, or for ensembles the held-out model."""
    t = table.match if table.match is not None else table.accuracy
    eye = torch.eye(len(table.rows), dtype=torch.bool)
    return float(t[eye if table.rows != table.cols else ~eye].mean())


def fgsm_set_level(model, images: torch.Tensor, labels: torch.Tensor, eps_max: float, rate: float = 0.9) -> dict:
    """DeepFool's FGSM baseline as the paper defines it (``fgsm_baseline``), beside DeepFool on the same images,
    in the paper's setting (no [0, 1] box) and in the boxed one; rho ratios FGSM / DeepFool (the paper: 1.0 / 0.20)."""
    from physadv.attacks.deepfool import DeepFool
    from physadv.attacks.gradient import fgsm_baseline

    out = {}
    for key, box in (("paper_no_box", False), ("box", True)):
        base = fgsm_baseline(model, images, labels, rate=rate, box=box, eps_max=eps_max)
        df = DeepFool(model, box=box).run(images, labels).metrics()
        base["deepfool_rho_adv_l2"] = df["rho_adv_l2"]
        base["deepfool_success_rate"] = df["success_rate"]
        base["rho_ratio_fgsm_over_deepfool"] = round(base["rho_adv_l2"] / df["rho_adv_l2"], 4)
        base["rho_ratio_applied_over_deepfool"] = round(base["rho_adv_l2_applied"] / df["rho_adv_l2"], 4)
        out[key] = base
    return {"fgsm_baseline": out}


def write_landscape(path: Path, model, images: torch.Tensor, labels: torch.Tensor, index: int, attack) -> dict:
    """Engstrom et al.'s Figure 3 for one attacked image, and how far from concave its loss surface is."""
    from physadv.attacks.spatial import local_maxima, loss_landscape, save_landscape
    from physadv.core.errors import PhysadvError

    if index >= len(images):
        raise PhysadvError(f"landscape {index}: only {len(images)} images are attacked")
    trans = attack.translation_range(images.shape[-1])
    angles, shifts, loss = loss_landscape(model, images[index], int(labels[index]), attack.max_rot, trans)
    peaks = local_maxima(loss)
    save_landscape(path, angles, shifts, loss, f"image {index} (label {int(labels[index])}): cross-entropy over "
                   f"+-{trans:g} px x +-{attack.max_rot:g} degrees; {peaks} local maxima")
    return {"image": index, "label": int(labels[index]), "grid": [len(angles), len(shifts)], "local_maxima": peaks,
            "loss_min": round(float(loss.min()), 4), "loss_max": round(float(loss.max()), 4), "figure": str(path)}


def fit_universal(attack, cfg: AttackJobConfig, model, test_images: torch.Tensor, run: Path) -> dict:
    """Fit the UAP on training images; noise baseline and cross-model fooling rates on the held-out images."""
    from physadv.attacks.base import predict
    from physadv.attacks.universal import random_noise_like
    from physadv.core.io import save_checkpoint, write_image

    train = cfg.data.load("train").subset(cfg.train_limit, seed=cfg.seed).images
    fit = attack.fit(train)
    v = fit.perturbation
    gen = torch.Generator().manual_seed(cfg.seed)
    noise = random_noise_like(v, len(test_images), attack.norm, gen)
    clean = predict(model, test_images)
    noise_rate = float((predict(model, (test_images + noise).clamp(0, 1)) != clean).float().mean())
    cross = {}
    for other in cfg.transfer_models:
        m = load_victim(cfg, other)
        c = predict(m, test_images)
        cross[other] = round(float((predict(m, (test_images + v).clamp(0, 1)) != c).float().mean()), 4)
    write_image(run / "perturbation.png", ((v[0] - v.min()) / (v.max() - v.min()).clamp_min(1e-12)))
    save_checkpoint(run / "perturbation.safetensors", {"perturbation": v}, {"xi": attack.xi, "norm": attack.norm})
    return {"uap_fit": {"fooling_rate_train": round(fit.fooling_rate_train, 4), "passes": fit.passes,
                        "history": fit.history, "deepfool_calls": fit.deepfool_calls, "updates": fit.updates,
                        "fit_seconds": round(fit.seconds, 2), "train_images": len(train),
                        "perturbation_l2": round(float(v.norm()), 4), "perturbation_linf": round(float(v.abs().max()), 4)},
            "noise_fooling_rate": round(noise_rate, 4), "cross_model_fooling_rate": cross}


def save_result_grid(path: Path, result, classes, n: int) -> Path:
    """Rows of clean / perturbation (scaled to fill [0, 1], 0.5 = no change) / adversarial, with predictions."""
    from physadv.core.plots import save_image_grid

    n = min(n, len(result.images))
    name = (lambda k: classes[k]) if classes else str
    r = result.perturbation[:n]
    scale = r.flatten(1).abs().amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)
    tiles = torch.cat([result.images[:n], 0.5 + 0.5 * r / scale, result.adversarial[:n]])
    caps = ([f"clean: {name(int(p))}" for p in result.clean_pred[:n]]
            + [f"|r|2={float(v):.2f}" for v in result.norms(2)[:n]]
            + [f"adv: {name(int(p))}" for p in result.pred[:n]])
    return save_image_grid(path, tiles, nrow=n, captions=caps, scale=2)


def summary_line(m: dict) -> str:
    parts = [f"{m['attack']} on {m['model']}: success {m['success_rate']:.3f}", f"accuracy {m['accuracy_adversarial']:.3f}"]
    if m.get("rho_adv_l2") is not None:
        parts.append(f"rho_adv {m['rho_adv_l2']:.3f} (L-inf {m['rho_adv_linf']:.3f})")
    if m.get("mean_iterations") is not None:
        parts.append(f"iterations {m['mean_iterations']:.2f}")
    parts.append(f"{m['seconds_per_sample'] * 1000:.2f} ms/sample")
    if "noise_fooling_rate" in m:
        parts.append(f"fooling {m['fooling_rate']:.3f} vs noise {m['noise_fooling_rate']:.3f}")
    return ", ".join(parts)
