"""Adversarial patch (Brown, Mané, Roy, Abadi and Gilmer, 2017): one universal, printable patch that makes the
victim read ``target`` wherever it is stuck, at any scale and rotation in a range:

    max_p  E_{x ~ carriers, l ~ locations, t ~ scale/rotation, v ~ views} [ log P(target | v(A(p, x, l, t))) ]

A pastes the turned, scaled patch onto the carrier at l (``rendering.augment.paste``). The carriers are the images
of a dataset (``FlatScene`` with carriers: the paper's setting) or the face of the scene's object (a sticker that
works anywhere on the sign), then photographed by the scene. The patch is kept in [0, 1] through tanh.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from physadv.core.errors import PhysadvError
from physadv.physical.attack import DesignConfig, PhysicalAttack, PhysicalResult, colours
from physadv.rendering.augment import PlacementConfig, paste
from physadv.rendering.scene import Draw


@dataclass
class PatchConfig(DesignConfig):
    shape: Literal["circle", "square"] = "circle"
    patch_px: int = 32  # resolution of the patch itself
    placement: PlacementConfig = field(default_factory=PlacementConfig)
    lr: float = 0.05

    def validate(self) -> None:
        super().validate()
        self.placement.validate()
        if self.patch_px < 4:
            raise ValueError(f"patch_px must be at least 4, got {self.patch_px}")


def patch_mask(shape: str, size: int) -> torch.Tensor:
    """``1 x size x size``: a disc (the paper's round sticker) or the whole square."""
    if shape == "square":
        return torch.ones(1, size, size)
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    return (((yy - size / 2) ** 2 + (xx - size / 2) ** 2) <= (size / 2) ** 2).float()[None]


class Patch(PhysicalAttack):
    name = "patch"
    Config = PatchConfig

    def __init__(self, victim, scene, cfg: PatchConfig | None = None, **overrides):
        super().__init__(victim, scene, cfg, **overrides)
        if self.objective.kind not in ("targeted", "creation"):  # creation: a phantom object for a detector victim
            raise PhysadvError("the adversarial patch is targeted (Brown et al.) or, against a detector, creates a "
                               "phantom object (objective: creation): give a target class")
        self.shape = patch_mask(self.cfg.shape, self.cfg.patch_px).to(self.device)
        self.where = None if getattr(scene, "images", None) is not None else scene.obj.alpha  # on an object: its face

    def start(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.cfg.seed)
        return torch.rand(3, self.cfg.patch_px, self.cfg.patch_px, generator=g) * 2 - 1

    def design(self, w: torch.Tensor) -> torch.Tensor:
        return colours(w)

    def views(self, design: torch.Tensor, draw: Draw):
        g = torch.Generator().manual_seed(draw.seed + 1)  # placements replay with the draw
        carriers = self.scene.carriers(draw).to(self.device)
        return self.scene.render(paste(carriers, design, self.shape, self.cfg.placement, g, self.where), draw)

    def loss(self, w: torch.Tensor, draw: Draw) -> tuple[torch.Tensor, dict]:
        design = self.design(w)
        return self.adversarial_terms(self.views(design, draw), design, draw)

    def finish(self, w: torch.Tensor, best: torch.Tensor) -> PhysicalResult:
        return PhysicalResult("patch", best.cpu(), self.scene.obj.texture.cpu(), self.shape.cpu(), self.shape[0].cpu().clone(),
                              metrics={"coverage": float(sum(self.cfg.placement.area) / 2), "shape": self.cfg.shape,
                                       "placement": {"area": list(self.cfg.placement.area),
                                                     "rotation_deg": list(self.cfg.placement.rotation_deg)}})


__all__ = ["PatchConfig", "Patch", "patch_mask"]
