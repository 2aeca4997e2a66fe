"""Camera poses sampled from ranges in a config: distance in metres, azimuth/elevation/roll in degrees.

    cfg = PoseConfig(distance=(1.5, 12.0), azimuth=(-60, 60))
    poses = sample_poses(cfg, 32, torch.Generator().manual_seed(0))
    intr = cfg.camera()
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from physadv.core.errors import PhysadvError
from physadv.rendering.camera import Intrinsics, Pose


def check_range(name: str, rng: tuple[float, float], low: float | None = None, high: float | None = None) -> None:
    """A ``(min, max)`` range, ``min <= max`` and inside ``[low, high]``; otherwise a PhysadvError naming it."""
    if len(rng) != 2:
        raise PhysadvError(f"{name}: expected a [min, max] range, got {rng!r}")
    lo, hi = float(rng[0]), float(rng[1])
    if not lo <= hi:
        raise PhysadvError(f"{name}: range min {lo} is greater than max {hi}")
    if (low is not None and lo < low) or (high is not None and hi > high):
        raise PhysadvError(f"{name}: range [{lo}, {hi}] must lie within [{low}, {high}]")


def uniform(rng: tuple[float, float], n: int, g: torch.Generator) -> torch.Tensor:
    return rng[0] + (rng[1] - rng[0]) * torch.rand(n, generator=g, dtype=torch.float64)


@dataclass
class PoseConfig:
    distance: tuple[float, float] = (2.0, 6.0)  # metres from the look-at point
    azimuth: tuple[float, float] = (-50.0, 50.0)  # degrees, about the vertical axis
    elevation: tuple[float, float] = (-10.0, 30.0)  # degrees, camera above (+) or below the object
    roll: tuple[float, float] = (-5.0, 5.0)  # degrees, about the optical axis
    look_at: tuple[float, float, float] = (0.0, 0.0, 0.0)  # metres
    look_at_jitter: float = 0.0  # metres: the look-at point moves uniformly within +-jitter on each axis
    image_size: tuple[int, int] = (224, 224)  # height, width in pixels
    fov: float = 20.0  # degrees across the width; ignored when `intrinsics` is given
    intrinsics: tuple[float, float, float, float] | None = None  # OpenCV fx, fy, cx, cy in pixels

    def validate(self) -> None:
        try:
            check_range("distance", self.distance)
            check_range("azimuth", self.azimuth, -180, 180)
            check_range("elevation", self.elevation, -89.9, 89.9)
            check_range("roll", self.roll, -180, 180)
        except PhysadvError as exc:
            raise ValueError(str(exc)) from None
        if self.distance[0] <= 0:
            raise ValueError(f"distance: must be positive metres, got {list(self.distance)}")
        if self.look_at_jitter < 0:
            raise ValueError(f"look_at_jitter: must be >= 0 metres, got {self.look_at_jitter}")
        if min(self.image_size) < 1:
            raise ValueError(f"image_size: must be positive pixels, got {list(self.image_size)}")

    def camera(self) -> Intrinsics:
        """The pinhole camera at ``image_size``: from ``intrinsics`` (OpenCV) if given, else from ``fov``."""
        h, w = self.image_size
        if self.intrinsics is not None:
            fx, fy, cx, cy = self.intrinsics
            return Intrinsics(fx, fy, cx, cy, w, h)
        return Intrinsics.from_fov(self.fov, w, h)


def sample_poses(cfg: PoseConfig, n: int, generator: torch.Generator | None = None) -> list[Pose]:
    """``n`` poses drawn uniformly from the config's ranges (the same generator state gives the same poses)."""
    _validate(cfg)
    g = generator or torch.Generator().manual_seed(0)
    d, az, el, ro = (uniform(r, n, g) for r in (cfg.distance, cfg.azimuth, cfg.elevation, cfg.roll))
    jitter = (torch.rand(n, 3, generator=g, dtype=torch.float64) * 2 - 1) * cfg.look_at_jitter
    centre = torch.tensor(cfg.look_at, dtype=torch.float64)
    return [Pose(float(d[i]), float(az[i]), float(el[i]), float(ro[i]), tuple((centre + jitter[i]).tolist()))
            for i in range(n)]


def _validate(cfg: PoseConfig) -> None:
    try:
        cfg.validate()
    except ValueError as exc:
        raise PhysadvError(f"pose config: {exc}") from None
