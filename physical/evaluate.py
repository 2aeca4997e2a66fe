"""Judge designs on a scene's simulated grid (RP2's distances x angles x lights; fresh transformations for flat
scenes) with one or several victims at once: every design is rendered once per view and judged by every victim,
and designs share their views (the same pose, light, background and camera effects), so clean and adversarial
differ only by the design.

    renders = {"clean": face(scene, scene.obj.texture), "adversarial": design_views(attack_or_scene, result)}
    judgements = judge_grid(scene, renders, {"gtsrb": victim}, objective, GridSpec())
    report = core.gridreport.write_report(run, judgements, "RP2 stop -> speed_limit_80", classes)
"""
from __future__ import annotations

from typing import Callable

import torch

from physadv.core.gridreport import Judgement, judge_probs
from physadv.core.progress import progress
from physadv.core.victims import Objective, Victim, Views
from physadv.rendering.scene import Draw, GridSpec, Scene

Render = Callable[[Draw], Views]
FT = 0.3048


def face(scene: Scene, texture: torch.Tensor) -> Render:
    """Views of the object wearing ``texture`` (its whole face)."""
    return lambda draw: scene.render(texture, draw)


def result_views(scene: Scene, result) -> Render:
    """Views of a ``PhysicalResult``'s design: its face, or (a patch) pasted at replayable random places."""
    if result.attack != "patch":
        return face(scene, result.texture)
    from physadv.rendering.augment import PlacementConfig, paste

    placement = PlacementConfig(**{k: tuple(v) for k, v in result.metrics["placement"].items()})
    where = None if getattr(scene, "images", None) is not None else scene.obj.alpha

    def render(draw: Draw) -> Views:
        g = torch.Generator().manual_seed(draw.seed + 1)
        return scene.render(paste(scene.carriers(draw), result.texture, result.alpha, placement, g, where), draw)

    return render


@torch.no_grad()
def judge_grid(scene: Scene, renders: dict[str, Render], victims: dict[str, Victim], objective: Objective,
               spec: GridSpec, batch: int = 64, progress_bar: bool = True) -> list[Judgement]:
    """One ``Judgement`` per grid view, design and victim (distances in feet, as RP2's table)."""
    grid = scene.grid(spec)
    out: list[Judgement] = []
    chunks = grid.split(batch)
    for chunk in progress(chunks, desc="grid", disable=not progress_bar or len(chunks) < 2):
        cells = chunk.cells or [(None, None, None)] * len(chunk)
        where = {"distance": [None if c[0] is None else round(c[0] / FT, 3) for c in cells],
                 "angle": [c[1] for c in cells], "light": ["" if c[2] is None else f"light{c[2]}" for c in cells]}
        for name, render in renders.items():
            views = render(chunk)
            for vname, victim in victims.items():
                verdict = victim.judge(views, objective)
                common = dict(set=name, victim=vname, unit="ft", true_class=objective.source, target_class=objective.target)
                if verdict.probs is not None:
                    out += judge_probs(verdict.probs.cpu().numpy(), victim.classes, **common, **where)
                else:  # a detector: the object's matched detection, or nothing
                    labels = [victim.classes[int(p)] if int(p) >= 0 else "(none)" for p in verdict.pred]
                    out += [Judgement(top1=lab, top1_conf=round(float(s), 4), distance=where["distance"][k],
                                      angle=where["angle"][k], light=where["light"][k], **common)
                            for k, (lab, s) in enumerate(zip(labels, verdict.score))]
    return out


def design_extras(result) -> dict:
    """A design's row extras for the transfer matrix: the victim set it was made on, its mask coverage and (a face
    design) its mean CIELAB delta E (CIE76) to the clean face over the face's texels."""
    from physadv.printing.colour import delta_e76, rgb_to_lab

    extras = {"victim": result.victim.get("name", ""), "coverage": round(result.coverage, 4)}
    if result.attack != "patch" and result.texture.shape == result.clean.shape:
        face = result.alpha[0] > 0.5
        de = delta_e76(rgb_to_lab(result.texture, 0), rgb_to_lab(result.clean, 0), 0)
        extras["mean_delta_e"] = round(float(de[face].mean()), 3)
    return extras


__all__ = ["face", "result_views", "judge_grid", "design_extras"]
