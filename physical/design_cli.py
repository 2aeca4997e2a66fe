"""``physadv design rp2|eot|eot3d|patch`` and ``physadv evaluate grid``: design a physical perturbation of an object
against a victim, and judge a design on the scene's simulated distance x angle grid. One shape for all:

    physadv design rp2 [--object sign.png --width 0.6m | --mesh m.obj] [--victim NAME[,NAME...]] [--set key=value]
    physadv evaluate grid --texture runs/design-rp2/X/design.safetensors [--victim ...] [--judge NAME ...]

Every run writes its resolved config, the design (``design.safetensors``: the whole ``PhysicalResult``;
``texture.png``/``.safetensors``; ``stickers.png``, ``mask.png``), the loss curve, the grid report (``grid/``) judged
by the victim (and each ensemble member, and every ``judges`` model), ``report.html`` and ``metrics.json``.
"""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import torch

from physadv.core.cli import add_config_args, finish_run, resolve_config, start_run
from physadv.core.detection_spec import DetectionConfig
from physadv.core.errors import PhysadvError
from physadv.physical.eot import EOTConfig
from physadv.physical.patch import PatchConfig
from physadv.physical.rp2 import RP2Config
from physadv.core.victims import VictimConfig
from physadv.rendering.scene import GridSpec, SceneConfig


@dataclass
class RunSections:
    """What a design or grid run has beside its attack's own keys (which sit at the top level of its config)."""

    scene: SceneConfig = field(default_factory=SceneConfig)
    victim: VictimConfig = field(default_factory=VictimConfig)
    judges: list[str] = field(default_factory=list)  # more models that judge the design on the grid (transfer)
    grid: GridSpec = field(default_factory=GridSpec)
    detection: DetectionConfig = field(default_factory=DetectionConfig)  # detector victims and judges (physical.detect)
    device: str = "auto"


@dataclass
class RP2Job(RP2Config, RunSections):
    pass


@dataclass
class EOTJob(EOTConfig, RunSections):
    pass


@dataclass
class PatchJob(PatchConfig, RunSections):
    pass


@dataclass
class GridJob(RunSections):
    source: str = "stop"
    target: Optional[str] = "speed_limit_80"
    objective: Literal["auto", "targeted", "untargeted", "disappearance", "creation"] = "auto"  # auto: targeted with a
    # target, else untargeted (for a detector: not detected as the source); the detection table shows every rate anyway


KINDS = {  # name: (job, attack class path, default config, help)
    "rp2": (RP2Job, "rp2:RP2", "physical/rp2_stop_to_80.yaml", "RP2 masked stickers or a poster on an object"),
    "eot": (EOTJob, "eot:EOT", "physical/eot_image.yaml", "Expectation over Transformation (2D, or any scene)"),
    "eot3d": (EOTJob, "eot:EOT", "physical/eot3d_stop.yaml", "Expectation over Transformation for a mesh's texture"),
    "patch": (PatchJob, "patch:Patch", "physical/patch.yaml", "a universal adversarial patch"),
}


# --------------------------------------------------------------------------- commands
def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("design", help="design a physical perturbation: rp2 stickers/posters, eot, eot3d, patch")
    jobs = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    for name, (_, _, default, text) in KINDS.items():
        j = jobs.add_parser(name, help=text)
        _common_args(j, default)
        j.set_defaults(func=_design)
    e = sub.add_parser("evaluate", help="judge a design on the simulated distance x angle grid")
    ejobs = e.add_subparsers(dest="kind", metavar="KIND", required=True)
    g = ejobs.add_parser("grid", help="RP2's grid of distances x angles, clean vs the design, by one or more victims")
    _common_args(g, "physical/grid.yaml")
    g.add_argument("--texture", required=True, action="append",
                   help="a design: design.safetensors, texture.safetensors or a PNG (repeatable: one row each)")
    g.add_argument("--judge", action="append", default=[], help="another model that judges the grid (repeatable)")
    g.set_defaults(func=_grid)


def _common_args(p: argparse.ArgumentParser, default: str) -> None:
    add_config_args(p, default)
    p.add_argument("--object", default=None, help="a planar object: an image file (its alpha, or --mask, is the shape)")
    p.add_argument("--mask", default=None, help="with --object: a mask file (white = the object)")
    p.add_argument("--width", default=None, help="with --object: its real width, e.g. 0.6m, 60cm, 24in")
    p.add_argument("--mesh", default=None, help="a mesh file with UVs (OBJ/GLB/PLY)")
    p.add_argument("--victim", action="append", default=None,
                   help="the model(s) to attack: sign, a zoo member, a registry name, a classifier file, or ARCH=WEIGHTS; "
                        "several (comma-separated or repeated) make an ensemble; or one detector: sign-detector, "
                        "a torchvision detector as ARCH=WEIGHTS, a physadv detector file")
    p.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])


def parse_width(text: str) -> float:
    """'0.6m', '60cm', '600mm', '24in', '2ft' or a bare number of metres -> metres."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(m|cm|mm|in|ft)?\s*", str(text))
    if not m:
        raise PhysadvError(f"--width {text!r}: give a length such as 0.6m, 60cm or 24in")
    return float(m.group(1)) * {"m": 1.0, "cm": 0.01, "mm": 0.001, "in": 0.0254, "ft": 0.3048}[m.group(2) or "m"]


def object_overrides(args: argparse.Namespace) -> list[str]:
    """``--object/--width/--mask/--mesh/--victim`` as config overrides (``--set`` still wins)."""
    out = []
    if getattr(args, "object", None):
        if not args.width:
            raise PhysadvError("--object needs --width (the object's real width, e.g. 0.6m)")
        out += ["scene.kind=planar", "scene.object.kind=image", f"scene.object.image={args.object}",
                f"scene.object.width_m={parse_width(args.width)}"]
        if args.mask:
            out.append(f"scene.object.mask={args.mask}")
    if getattr(args, "mesh", None):
        out += ["scene.kind=mesh", "scene.object.kind=mesh", f"scene.object.mesh={args.mesh}"]
    if getattr(args, "victim", None):
        out.append("victim.models=[" + ",".join(s for v in args.victim for s in v.split(",") if s) + "]")
    return out


def _start(cls, job_name: str, args: argparse.Namespace):
    """Resolve the job's config, open its run folder, pick the device, load the victim and build the scene."""
    from physadv.core.detection_spec import load_any_victim
    from physadv.core.train import resolve_device
    from physadv.physical.detect import check_detector_scene, min_view_px
    from physadv.rendering.scene import build_scene

    args.overrides = object_overrides(args) + list(args.overrides)
    job = resolve_config(cls, args)
    run = start_run(job_name, job, args)
    device = resolve_device(job.device)
    victim = load_any_victim(job.victim, job.detection, device)  # a classifier, an ensemble, or a detector
    check_detector_scene(victim, job.scene)
    target = getattr(job, "target", None)
    scene = build_scene(job.scene, device, min_view_px=min_view_px(victim), exclude_class=target)
    return job, run, device, victim, scene


def scenes_at(job, device, victim, scene):
    """``scene_at(px)`` for ``judge_grid_each_size``: the run's own scene at the victim's size, the job's scene at
    any other size built once."""
    from physadv.physical.detect import min_view_px
    from physadv.rendering.scene import build_scene

    built = {min_view_px(victim): scene}

    def scene_at(px: int):
        if px not in built:
            built[px] = build_scene(job.scene, device, min_view_px=px, exclude_class=getattr(job, "target", None))
        return built[px]

    return scene_at


def judges_of(victim, extra: list[str], device, detection: DetectionConfig | None = None) -> dict:
    """The victims that judge a grid: the attacked one, each ensemble member, and every extra model (a classifier
    or a detector, by the same names as ``--victim``)."""
    from physadv.core.detection_spec import is_detector_spec, load_detector_victim
    from physadv.core.victims import ClassifierVictim, EnsembleVictim
    from physadv.core.victims import load_model

    out = {victim.name: victim}
    if isinstance(victim, EnsembleVictim):
        out.update({m.name: m for m in victim.members})
    for spec in extra:
        if spec not in out:
            out[spec] = (load_detector_victim(spec, device=device, cfg=detection) if is_detector_spec(spec)
                         else ClassifierVictim(load_model(spec, device), name=spec))
    return out


def _design(args: argparse.Namespace) -> int:
    import importlib

    cls, path, _, _ = KINDS[args.kind]
    module, name = path.split(":")
    job, run, device, victim, scene = _start(cls, f"design-{args.kind}", args)
    attack = getattr(importlib.import_module(f"physadv.physical.{module}"), name)(victim, scene, job)
    result = attack.run(checkpoint=run / "checkpoint.safetensors")
    summary = save_design(run, result, scenes_at(job, device, victim, scene), attack.objective,
                          judges_of(victim, job.judges, device, job.detection), job.grid,
                          f"{args.kind} on {scene.obj.name} against {victim.name}", scene)
    _print_summary(summary, result, victim.name)
    _print_detection(summary.get("detection"))
    return 0


def save_design(run: Path, result, scene_at, objective, judges: dict, grid: GridSpec, title: str, scene) -> dict:
    """Write the design's files, judge it on the grid (every judge at its own input size: ``scene_at``), write the
    report; returns the metrics. ``scene``: the design's own scene (its sample views and mesh)."""
    from physadv.core.gridreport import write_report
    from physadv.core.io import write_image
    from physadv.core.detection_report import detection_section
    from physadv.physical.detect import add_detection_report, detection_metrics, judge_grid_each_size
    from physadv.physical.evaluate import design_extras, face, result_views
    from physadv.physical.report import loss_curve, write_design_report

    result.save(run / "design.safetensors")
    save_texture(run, "texture", result.texture, result.alpha, {"mask": result.mask, "clean": result.clean}, result.object)
    write_image(run / "stickers.png", result.stickers)
    write_image(run / "mask.png", result.mask[None])
    loss_curve(run / "loss.png", result.history, f"{result.attack}: loss terms and validation success")
    if scene.obj.mesh is not None:
        from physadv.rendering.mesh import export_mesh

        export_mesh(scene.obj.mesh.with_texture(result.texture.permute(1, 2, 0).contiguous()), run / "textured.glb")
    judgements, records = judge_grid_each_size(scene_at, {"adversarial": result}, judges, objective, grid)
    renders = {"clean": face(scene, scene.obj.texture), "adversarial": result_views(scene, result)}
    report = write_report(run / "grid", judgements, title, {n: v.classes for n, v in judges.items()},
                          {"adversarial": design_extras(result)})
    detection = add_detection_report(run / "grid", records, title)
    views = _sample_views(run, scene, renders)
    write_design_report(run, result, report, views, title, _headline(report["summary"], objective),
                        sections=[lambda page: detection_section(page, detection)] if detection else ())
    metrics = {"attack": result.attack, "object": result.object, "objective": result.objective, "metrics": result.metrics,
               "timings": result.timings, "grid": report["summary"], "transfer": report["transfer"],
               **detection_metrics(detection)}
    finish_run(run, metrics)
    return metrics


def _sample_views(run: Path, scene, renders) -> torch.Tensor:
    """Eight views, clean above and with the design below (the same poses, light and backgrounds), in views.png."""
    from physadv.core.plots import save_image_grid

    draw = scene.sample(8)
    with torch.no_grad():
        views = torch.cat([renders["clean"](draw).images, renders["adversarial"](draw).images]).cpu()
    save_image_grid(run / "views.png", views, nrow=8, scale=max(1, 96 // views.shape[-1]))
    return views


def _headline(summary: dict, objective) -> str:
    """Per judging victim: each design's success on the grid and the clean object's accuracy."""
    key = "targeted_success" if objective.target else "untargeted_success"
    parts = []
    for victim, sets in summary.items():
        rates = ", ".join(f"{name} {_pct(s.get(key), s.get(key + '_ci95'))}" for name, s in sets.items() if name != "clean")
        parts.append(f"{victim}: {key.replace('_', ' ')}: {rates}; clean accuracy {_pct(sets.get('clean', {}).get('accuracy'))}")
    return " | ".join(parts)


def _print_summary(metrics: dict, result, victim: str) -> None:
    print(f"{result.attack}: best validation success {result.metrics.get('val_success', 0):.1%} at step "
          f"{result.metrics.get('best_step')}; coverage {result.coverage:.1%}; {result.timings['seconds']:.0f} s")
    for name, sets in metrics["grid"].items():
        adv, clean = sets.get("adversarial", {}), sets.get("clean", {})
        rates = [_pct(s.get(k), s.get(k + "_ci95")) for s, k in ((adv, "targeted_success"), (adv, "untargeted_success"),
                                                                  (clean, "accuracy"))]
        print(f"  grid, {name}: targeted {rates[0]}, untargeted {rates[1]}, clean accuracy {rates[2]} (95% intervals)")


def _print_detection(summary: dict | None) -> None:
    """Per detector and set: detected as source / target, not detected, mean score."""
    from physadv.core.detection_report import headline

    for victim, sets in (summary or {}).items():
        for name, entry in sets.items():
            print(f"  detection, {victim}, {name}: {headline(entry)}")


def _pct(v, ci=None) -> str:
    """A rate, with its interval in brackets when there is one."""
    return "-" if v is None else f"{v:.1%}" + (f" [{ci[0]:.0%}, {ci[1]:.0%}]" if ci else "")


def save_texture(run: Path, name: str, texture: torch.Tensor, alpha: torch.Tensor, extra: dict | None = None,
                 obj: dict | None = None) -> None:
    from physadv.core.io import save_checkpoint, write_image

    write_image(run / f"{name}.png", torch.cat([texture.clamp(0, 1), alpha], 0))
    save_checkpoint(run / f"{name}.safetensors", {"texture": texture, "alpha": alpha, **(extra or {})},
                    {"colour_space": "sRGB", "layout": "3 x h x w texture over the object's bounding rectangle",
                     "object": obj or {}})


def read_texture(path: str | Path, shape: tuple[int, int] | None = None) -> torch.Tensor:
    """A design's texture from design.safetensors, texture.safetensors or a PNG (RGB or RGBA), resized to ``shape``."""
    from physadv.core.io import load_checkpoint, read_image

    path = Path(path)
    if path.suffix == ".safetensors":
        t = load_checkpoint(path)[0].get("texture")
        if t is None:
            raise PhysadvError(f"{path}: no 'texture' tensor in this file")
    else:
        t = read_image(path, mode="RGB")
    if t.ndim != 3 or t.shape[0] != 3:
        raise PhysadvError(f"{path}: a texture must be RGB, got {tuple(t.shape)}")
    if shape and tuple(t.shape[-2:]) != tuple(shape):
        if abs(t.shape[1] / t.shape[2] - shape[0] / shape[1]) > 0.02:
            raise PhysadvError(f"{path}: the texture is {t.shape[2]} x {t.shape[1]} but the object's is {shape[1]} x {shape[0]} "
                               "(another aspect ratio: is it the design of another object?)")
        t = torch.nn.functional.interpolate(t[None], size=shape, mode="bilinear", antialias=True, align_corners=False)[0]
    return t.clamp(0, 1)


def load_design(path: Path, scene) -> "PhysicalResult":  # noqa: F821
    """A design as a ``PhysicalResult``: a design run's ``design.safetensors``, or a texture (PNG/safetensors) of the
    scene's object (its mask: where it differs from the clean face)."""
    from physadv.physical.attack import PhysicalResult

    shape = tuple(scene.obj.texture.shape[-2:])
    if path.suffix == ".safetensors" and "format" in _meta(path):
        result = PhysicalResult.load(path)
        if result.attack != "patch" and tuple(result.texture.shape[-2:]) != shape:
            result.texture = read_texture_tensor(result.texture, shape, path)
            result.clean, result.alpha = scene.obj.texture, scene.obj.alpha
        return result
    texture = read_texture(path, shape)
    mask = ((texture - scene.obj.texture).abs().sum(0) > 1e-3).float()
    face = scene.obj.alpha[0] > 0.5
    return PhysicalResult("texture", texture, scene.obj.texture, scene.obj.alpha, mask,
                          metrics={"coverage": float((mask * face).sum() / face.sum())}, victim={"name": path.stem})


def _grid(args: argparse.Namespace) -> int:
    from physadv.core.detection_report import detection_section
    from physadv.core.gridreport import html_table, transfer_line, write_report
    from physadv.core.html import Page
    from physadv.physical.detect import add_detection_report, detection_metrics, grid_objective, judge_grid_each_size
    from physadv.physical.evaluate import design_extras
    from physadv.physical.report import transfer_section

    job, run, device, victim, scene = _start(GridJob, "evaluate-grid", args)
    designs, extras = {}, {}
    for i, text in enumerate(args.texture):
        result = load_design(Path(text), scene)
        name = result.victim.get("name") or Path(text).stem
        name = name if name not in designs and name != "clean" else f"{name} ({i + 1})"
        designs[name], extras[name] = result, design_extras(result)
    objective = grid_objective(job.objective, job.source, job.target)
    judges = judges_of(victim, job.judges + list(args.judge), device, job.detection)
    title = f"{len(extras)} design(s): {job.source} -> {job.target}"
    judgements, records = judge_grid_each_size(scenes_at(job, device, victim, scene), designs, judges, objective, job.grid)
    report = write_report(run / "grid", judgements, title, {n: v.classes for n, v in judges.items()}, extras)
    detection = add_detection_report(run / "grid", records, title)
    page = Page(title)
    page.raw(f"<p class='num' id='headline'>{_headline(report['summary'], objective)}</p>")
    transfer_section(page, report)
    for name, png in report["heatmaps"].items():
        page.image(png, name, 300)
    page.raw(html_table(report["cells"]))
    if detection:
        detection_section(page, detection)
    page.write(run / "report.html")
    for row in report["transfer"]:
        print(transfer_line(row))
    _print_detection(detection.summary if detection else None)
    finish_run(run, {"textures": list(args.texture), "designs": extras, "grid": report["summary"],
                     "transfer": report["transfer"], **detection_metrics(detection)})
    return 0


def read_texture_tensor(t: torch.Tensor, shape, path) -> torch.Tensor:
    if abs(t.shape[1] / t.shape[2] - shape[0] / shape[1]) > 0.02:
        raise PhysadvError(f"{path}: the design is {t.shape[2]} x {t.shape[1]}, the object {shape[1]} x {shape[0]}: another object")
    return torch.nn.functional.interpolate(t[None], size=shape, mode="bilinear", antialias=True, align_corners=False)[0]


def _meta(path: Path) -> dict:
    from physadv.core.io import load_checkpoint

    return load_checkpoint(path)[1]


__all__ = ["register", "RP2Job", "EOTJob", "PatchJob", "GridJob", "parse_width", "object_overrides", "save_design",
           "save_texture", "read_texture", "judges_of"]
