"""Views of a (perturbed) sign for optimisation and evaluation: the sign world's camera, differentiably.

``SignViews`` photographs one sign class whose texture is being optimised, with the same camera,
light, backgrounds and camera effects the sign classifier was trained on (``rendering.signs.world``),
and returns GTSRB-style crops ready for the classifier. Gradients reach the texture (the JPEG step
is passed straight through).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from physadv.core.errors import PhysadvError
from physadv.rendering.camera import Pose, feet
from physadv.rendering.signs.textures import all_textures, sign_classes
from physadv.rendering.signs.world import WorldConfig, photograph_sign, sample_poses


def class_index(name: str) -> int:
    classes = sign_classes()
    if name not in classes:
        raise PhysadvError(f"unknown sign class '{name}'; known: {', '.join(classes)}")
    return classes.index(name)


class SignViews:
    """Photograph sign class ``source`` with a replaceable texture, in the sign world ``world``."""

    def __init__(self, source: str, world: WorldConfig, seed: int = 0, texture_px: int | None = None):
        self.source = source
        self.index = class_index(source)
        self.world = world
        self.g = torch.Generator().manual_seed(seed)
        self.rgb_all, self.alpha_all = all_textures(texture_px or world.texture_px)

    @property
    def clean_texture(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The unperturbed ``3 x S x S`` texture and its ``1 x S x S`` alpha."""
        return self.rgb_all[self.index].clone(), self.alpha_all[self.index].clone()

    def sample_poses(self, n: int) -> list[Pose]:
        return sample_poses(n, self.world.pose, self.g)

    def render(self, texture: torch.Tensor, poses: list[Pose]) -> torch.Tensor:
        """GTSRB-style crops (``N x 3 x crop x crop``) of the sign wearing ``texture`` (``3 x S x S``) at ``poses``."""
        if texture.shape != self.rgb_all[self.index].shape:
            raise PhysadvError(f"texture must be {tuple(self.rgb_all[self.index].shape)}, got {tuple(texture.shape)}")
        return photograph_sign(texture, self.source, poses, self.world, self.g).images


@dataclass
class GridSpec:
    """RP2's evaluation grid: distances in feet, angles in degrees, several lights (renders) per cell."""

    distances_ft: tuple[float, ...] = (5, 10, 15, 20, 25, 30, 40)
    angles_deg: tuple[float, ...] = (0, 15, 30, 45, 60)
    lights_per_cell: int = 4
    seed: int = 12345  # different from any optimisation seed: fresh views

    def validate(self) -> None:
        if not self.distances_ft or not self.angles_deg:
            raise ValueError("the grid needs at least one distance and one angle")
        if min(self.distances_ft) <= 0:
            raise ValueError(f"distances must be positive, got {list(self.distances_ft)}")
        if self.lights_per_cell < 1:
            raise ValueError(f"lights_per_cell must be at least 1, got {self.lights_per_cell}")

    def poses(self) -> tuple[list[Pose], list[tuple[float, float, int]]]:
        """One pose per (distance, angle, light) with small random elevation and roll; and the cell labels."""
        g = np.random.default_rng(self.seed)
        poses, cells = [], []
        for d in self.distances_ft:
            for a in self.angles_deg:
                for k in range(self.lights_per_cell):
                    side = 1 if k % 2 == 0 else -1
                    poses.append(Pose(feet(d), side * a, float(g.uniform(-5, 5)), float(g.uniform(-3, 3))))
                    cells.append((float(d), float(a), k))
        return poses, cells
