"""``physadv design rp2|eot|eot3d|patch`` and ``physadv evaluate grid``: design physical perturbations and judge them
on RP2's distance x angle grid. Every run saves the texture (PNG and safetensors), the loss curve and
the grid report in its run folder.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import torch

from physadv.core.cli import add_config_args, finish_run, resolve_config, start_run
from physadv.core.errors import PhysadvError
from physadv.core.io import read_image, save_checkpoint, save_image_grid, write_image
from physadv.physical.eot import EOT2DConfig
from physadv.physical.eot3d import EOT3DConfig
from physadv.physical.patch import PatchConfig
from physadv.physical.rp2 import RP2Config
from physadv.physical.views import GridSpec


@dataclass
class RP2Job:
    attack: RP2Config = field(default_factory=RP2Config)
    grid: GridSpec = field(default_factory=GridSpec)
    classifier: str = ""  # a classifier file; empty: the built-in sign classifier (trained once, cached)
    device: str = "auto"


@dataclass
class GridJob:
    source: str = "stop"
    target: Optional[str] = "speed_limit_80"
    grid: GridSpec = field(default_factory=GridSpec)
    classifier: str = ""
    texture_px: int = 128
    device: str = "auto"


@dataclass
class EOTJob:
    mode: Literal["image"] = "image"
    model: str = "sign"  # "sign" (the built-in sign classifier) or a registry name trained by core (lenet-mnist)
    image: str = ""  # an image file; empty: a test image of the model's dataset (index below)
    index: int = 0
    label: Optional[str] = None  # true class of --image (default: the model's prediction)
    eot: EOT2DConfig = field(default_factory=EOT2DConfig)
    device: str = "auto"


@dataclass
class EOT3DJob:
    attack: EOT3DConfig = field(default_factory=EOT3DConfig)
    classifier: str = ""  # a classifier file; empty: the built-in sign classifier (trained once, cached)
    device: str = "auto"


@dataclass
class PatchJob:
    model: str = "sign"
    patch: PatchConfig = field(default_factory=PatchConfig)
    train_limit: int = 2000
    device: str = "auto"


def load_classifier_for(spec: str, device: torch.device):
    """``sign`` / empty: the built-in sign classifier; a registry name: core's cached model; a path: that file."""
    from physadv.core.models import ARCHITECTURES
    from physadv.core.train import get_classifier, load_classifier

    if spec in ("", "sign"):
        from physadv.rendering.signs.classifier import get_sign_classifier

        return get_sign_classifier().to(device).eval()
    if spec in ARCHITECTURES:
        return get_classifier(spec).to(device).eval()
    if Path(spec).is_file():
        return load_classifier(spec, device)
    raise PhysadvError(f"classifier '{spec}' is neither 'sign', a model name ({', '.join(ARCHITECTURES)}) nor a file")


# --------------------------------------------------------------------------- commands
def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("design", help="design a physical perturbation: rp2 stickers/posters, eot, patch")
    jobs = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    for name, default, fn, text in (
        ("rp2", "configs/physical/rp2_stop_to_80.yaml", _rp2, "RP2 masked stickers or poster on a sign"),
        ("eot", "configs/physical/eot_image.yaml", _eot, "Expectation over Transformation for an image (2D)"),
        ("eot3d", "configs/physical/eot3d_stop.yaml", _eot3d, "Expectation over Transformation for a 3D object's texture"),
        ("patch", "configs/physical/patch.yaml", _patch, "a universal adversarial patch"),
    ):
        j = jobs.add_parser(name, help=text)
        add_config_args(j, default)
        j.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
        j.set_defaults(func=fn)
    e = sub.add_parser("evaluate", help="judge a texture on the simulated distance x angle grid")
    ejobs = e.add_subparsers(dest="kind", metavar="KIND", required=True)
    g = ejobs.add_parser("grid", help="RP2's grid of distances x angles, clean vs adversarial")
    add_config_args(g, "configs/physical/grid.yaml")
    g.add_argument("--texture", required=True, help="the adversarial texture (PNG or .safetensors from a design run)")
    g.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    g.set_defaults(func=_grid)


def save_texture(run: Path, name: str, texture: torch.Tensor, alpha: torch.Tensor, extra: dict | None = None) -> None:
    write_image(run / f"{name}.png", torch.cat([texture.clamp(0, 1), alpha], 0))
    save_checkpoint(run / f"{name}.safetensors", {"texture": texture, "alpha": alpha, **(extra or {})},
                    {"colour_space": "sRGB", "layout": "3 x S x S texture over the sign's bounding square"})


def read_texture(path: str | Path, size: int | None = None) -> torch.Tensor:
    """A designed texture from its PNG (RGB or RGBA) or safetensors file, as ``3 x S x S``."""
    from physadv.core.io import load_checkpoint

    path = Path(path)
    if path.suffix == ".safetensors":
        t = load_checkpoint(path)[0].get("texture")
        if t is None:
            raise PhysadvError(f"{path}: no 'texture' tensor in this file")
    else:
        t = read_image(path, mode="RGB")
    if t.ndim != 3 or t.shape[0] != 3 or t.shape[1] != t.shape[2]:
        raise PhysadvError(f"{path}: a sign texture must be square RGB, got {tuple(t.shape)}")
    if size and t.shape[-1] != size:
        t = torch.nn.functional.interpolate(t[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    return t


def _start_sign_job(cls, name: str, args: argparse.Namespace):
    """Resolve the job's config, open its run folder, pick the device, load its sign classifier."""
    from physadv.core.train import resolve_device

    job = resolve_config(cls, args)
    run = start_run(name, job, args)
    device = resolve_device(job.device)
    return job, run, device, load_classifier_for(job.classifier, device)


def _rp2(args: argparse.Namespace) -> int:
    from physadv.physical.grid import evaluate_grid, write_grid_reports
    from physadv.physical.report import loss_curve
    from physadv.physical.rp2 import rp2_attack

    job, run, device, model = _start_sign_job(RP2Job, "design-rp2", args)
    a = job.attack
    result = rp2_attack(model, a, checkpoint=run / "checkpoint.safetensors", device=device)
    save_texture(run, "texture", result.texture, result.alpha, {"mask": result.mask, "clean": result.clean})
    write_image(run / "stickers.png", result.stickers)
    write_image(run / "mask.png", result.mask[None])
    loss_curve(run / "loss.png", {k: v for k, v in result.history.items() if not k.endswith("targeted")}, "RP2 loss terms")
    records = evaluate_grid(model, {"clean": result.clean, "adversarial": result.texture}, a.source, a.target, a.world,
                            job.grid, device)
    summary = write_grid_reports(run, records, f"RP2 {a.source} -> {a.target} ({a.mask.kind})", model.classes)
    metrics = {"attack": "rp2", "source": a.source, "target": a.target, "mask": a.mask.kind,
               "mask_coverage": result.coverage, "val_targeted": result.val_targeted, "best_step": result.best_step,
               "seconds": result.seconds, "seconds_per_step": result.seconds_per_step,
               "classifier_share_of_step": result.classifier_share, "grid": summary}
    adv, clean = summary["adversarial"], summary["clean"]
    print(f"RP2 {a.source} -> {a.target}: mask covers {result.coverage:.1%} of the sign; on the grid "
          f"targeted success {adv['targeted_success']:.1%}, clean accuracy {clean['accuracy']:.1%}")
    finish_run(run, metrics)
    return 0


def _grid(args: argparse.Namespace) -> int:
    from physadv.physical.grid import evaluate_grid, write_grid_reports
    from physadv.physical.views import SignViews
    from physadv.rendering.signs.world import WorldConfig

    job, run, device, model = _start_sign_job(GridJob, "evaluate-grid", args)
    texture = read_texture(args.texture, job.texture_px)
    world = WorldConfig(texture_px=job.texture_px)
    clean, _ = SignViews(job.source, world, texture_px=job.texture_px).clean_texture
    records = evaluate_grid(model, {"clean": clean, "adversarial": texture}, job.source, job.target, world, job.grid, device)
    summary = write_grid_reports(run, records, f"{Path(args.texture).name}: {job.source} -> {job.target}", model.classes)
    adv = summary["adversarial"]
    print(f"{args.texture}: targeted success {adv['targeted_success'] or 0:.1%}, untargeted {adv['untargeted_success']:.1%}, "
          f"clean accuracy {summary['clean']['accuracy']:.1%}")
    finish_run(run, {"texture": str(args.texture), "grid": summary})
    return 0


def _model_and_data(spec: str, device: torch.device):
    from physadv.core.data import load_dataset
    from physadv.core.models import get_arch

    model = load_classifier_for(spec, device)
    name = get_arch(model.arch).dataset  # the data the architecture is trained on (gtsrb-cnn: the signs)
    if name is None:
        raise PhysadvError(f"model '{spec}' has no built-in dataset to draw images from")
    return model, load_dataset(name, "train"), load_dataset(name, "test")


def _eot(args: argparse.Namespace) -> int:
    from physadv.core.train import resolve_device
    from physadv.physical.eot import eot_2d
    from physadv.physical.report import loss_curve
    from physadv.physical import transforms as T

    job = resolve_config(EOTJob, args)
    run = start_run("design-eot", job, args)
    device = resolve_device(job.device)
    model, _, test = _model_and_data(job.model, device)
    if job.image:
        img = read_image(job.image, mode="L" if model.input_size[0] == 1 else "RGB")
        img = torch.nn.functional.interpolate(img[None], size=model.input_size[1:], mode="bilinear", antialias=True,
                                              align_corners=False)[0].clamp(0, 1)
        label = model.classes.index(job.label) if job.label else int(model.predict(img[None])[0])
    else:
        if not 0 <= job.index < len(test):
            raise PhysadvError(f"index {job.index} is outside the test set (0..{len(test) - 1})")
        img, label = test.images[job.index], int(test.labels[job.index])
    r = eot_2d(model, img, label, job.eot)
    save_texture(run, "adversarial", r.adversarial.expand(3, -1, -1), torch.ones(1, *r.adversarial.shape[-2:]))
    loss_curve(run / "loss.png", r.history, "EOT (2D)")
    g = torch.Generator().manual_seed(99)
    p = T.sample_params(job.eot.ranges, (8, *img.shape), g)
    views = torch.cat([T.apply(r.original[None].expand(8, -1, -1, -1), p), T.apply(r.adversarial[None].expand(8, -1, -1, -1), p)])
    preds = model.predict(views.to(device))
    save_image_grid(run / "views.png", views, nrow=8, captions=[model.classes[int(c)] for c in preds],
                    scale=max(1, 96 // img.shape[-1]))
    metrics = {"attack": "eot-2d", "true_class": model.classes[label], "target": job.eot.target,
               "mean_target_probability": r.mean_target_probability, "success_rate": r.success_rate,
               "clean_success_rate": r.clean_success_rate, "mean_delta_e_lab": r.lab_distance, "linf": r.linf,
               "seconds": r.seconds}
    print(f"EOT: success {r.success_rate:.1%} over {job.eot.eval_samples} fresh transformations "
          f"(clean image {r.clean_success_rate:.1%}), mean target probability {r.mean_target_probability:.3f}, "
          f"mean delta E {r.lab_distance:.2f}")
    finish_run(run, metrics)
    return 0


def _eot3d(args: argparse.Namespace) -> int:
    from physadv.physical.eot3d import contact_sheet, eot_3d, target_mesh
    from physadv.physical.report import loss_curve
    from physadv.rendering.mesh import export_mesh
    from physadv.rendering.signs.textures import sign_texture

    job, run, device, model = _start_sign_job(EOT3DJob, "design-eot3d", args)
    a = job.attack
    r = eot_3d(model, a, device=device)
    _, alpha = sign_texture(a.source, a.texture_px)
    save_texture(run, "texture", r.texture, alpha, {"clean": r.clean})
    tex_hwc = r.texture.permute(1, 2, 0).contiguous()
    export_mesh(target_mesh(a, tex_hwc), run / "textured.glb")
    loss_curve(run / "loss.png", {k: v for k, v in r.history.items() if k != "batch_target_probability"}, "EOT (3D) loss terms")
    clean_views, clean_labels = contact_sheet(model, a, r.clean)
    adv_views, adv_labels = contact_sheet(model, a, r.texture)  # the same poses, lights and backgrounds
    save_image_grid(run / "views.png", torch.cat([clean_views, adv_views]), nrow=len(clean_views),
                    captions=clean_labels + adv_labels)
    metrics = {"attack": "eot-3d", "source": a.source, "target": a.target, "fresh_poses": a.eval_poses,
               "mean_target_probability": r.mean_target_probability, "targeted_success": r.targeted_success,
               "clean_accuracy": r.clean_accuracy, "clean_target_probability": r.clean_target_probability,
               "mean_delta_e_lab": r.mean_delta_e, "seconds": r.seconds, "seconds_per_step": r.seconds_per_step}
    print(f"EOT 3D {a.source} -> {a.target}: targeted success {r.targeted_success:.1%} over {a.eval_poses} fresh poses "
          f"(mean target probability {r.mean_target_probability:.3f}; clean accuracy {r.clean_accuracy:.1%}), "
          f"mean delta E {r.mean_delta_e:.1f}")
    finish_run(run, metrics)
    return 0


def _patch(args: argparse.Namespace) -> int:
    from physadv.core.train import resolve_device
    from physadv.physical.patch import adversarial_patch, place
    from physadv.physical.report import loss_curve

    job = resolve_config(PatchJob, args)
    run = start_run("design-patch", job, args)
    device = resolve_device(job.device)
    model, train, test = _model_and_data(job.model, device)
    r = adversarial_patch(model, train.subset(job.train_limit), test, job.patch)
    write_image(run / "patch.png", torch.cat([r.patch, r.mask], 0))
    save_checkpoint(run / "patch.safetensors", {"patch": r.patch, "mask": r.mask}, {"target": job.patch.target})
    loss_curve(run / "loss.png", r.history, "adversarial patch")
    g = torch.Generator().manual_seed(5)
    shown = place(test.images[:16].to(device), r.patch.to(device), r.mask.to(device), job.patch, g)
    save_image_grid(run / "examples.png", shown, nrow=8, captions=[model.classes[int(c)] for c in model.predict(shown)],
                    scale=max(1, 96 // shown.shape[-1]))
    metrics = {"attack": "patch", "target": job.patch.target, "success_rate": r.success_rate,
               "clean_target_rate": r.clean_target_rate, "seconds": r.seconds}
    print(f"patch -> {job.patch.target}: success {r.success_rate:.1%} on held-out images (without it {r.clean_target_rate:.1%})")
    finish_run(run, metrics)
    return 0
