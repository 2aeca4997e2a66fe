"""Pinhole cameras and viewing poses, in metres and degrees, OpenCV convention at the edge.

World frame: the object sits at the origin; a flat object (sign face, poster) lies in the
``z = 0`` plane facing ``+z`` with ``+y`` up. A ``Pose`` puts the camera on a sphere around a
look-at point: ``azimuth`` turns it about the vertical axis, ``elevation`` raises it, ``roll``
turns the image about the optical axis. The off-axis viewing angle of a flat object seen from
``(azimuth, elevation)`` is ``acos(cos(az) * cos(el))``.

Extrinsics follow OpenCV (``x_cam = R @ x_world + t``; camera x right, y down, z forward) so
they can be checked with ``cv2.projectPoints``; ``to_pytorch3d`` converts them with
``pytorch3d.utils.cameras_from_opencv_projection``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from physadv.core.errors import PhysadvError


@dataclass(frozen=True)
class Intrinsics:
    """A pinhole camera: focal lengths and principal point in pixels, image size in pixels."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @staticmethod
    def from_fov(fov_deg: float, width: int, height: int | None = None) -> "Intrinsics":
        """Square pixels, principal point at the centre, ``fov_deg`` across the width."""
        if not 0 < fov_deg < 180:
            raise PhysadvError(f"field of view must be between 0 and 180 degrees, got {fov_deg}")
        height = height or width
        f = 0.5 * width / math.tan(math.radians(fov_deg) / 2)
        return Intrinsics(f, f, width / 2, height / 2, width, height)

    @staticmethod
    def from_focal_mm(focal_mm: float, sensor_width_mm: float, width: int, height: int | None = None) -> "Intrinsics":
        height = height or width
        f = focal_mm / sensor_width_mm * width
        return Intrinsics(f, f, width / 2, height / 2, width, height)

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], dtype=np.float64)

    def scaled(self, width: int, height: int | None = None) -> "Intrinsics":
        """The same camera at another resolution."""
        height = height or round(self.height * width / self.width)
        sx, sy = width / self.width, height / self.height
        return Intrinsics(self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, width, height)


@dataclass(frozen=True)
class Pose:
    """Where the camera is: ``distance`` in metres from the look-at point, angles in degrees."""

    distance: float
    azimuth: float = 0.0
    elevation: float = 0.0
    roll: float = 0.0
    look_at: tuple[float, float, float] = (0.0, 0.0, 0.0)  # metres, world frame

    def __post_init__(self) -> None:
        if not self.distance > 0:
            raise PhysadvError(f"camera distance must be positive (metres), got {self.distance}")

    @property
    def off_axis(self) -> float:
        """Angle in degrees between the object's normal (+z) and the direction to the camera."""
        c = math.cos(math.radians(self.azimuth)) * math.cos(math.radians(self.elevation))
        return math.degrees(math.acos(max(-1.0, min(1.0, c))))

    def camera_center(self) -> np.ndarray:
        az, el = math.radians(self.azimuth), math.radians(self.elevation)
        d = self.distance
        offset = np.array([d * math.sin(az) * math.cos(el), d * math.sin(el), d * math.cos(az) * math.cos(el)])
        return np.asarray(self.look_at, dtype=np.float64) + offset

    def extrinsics(self) -> tuple[np.ndarray, np.ndarray]:
        """OpenCV ``(R, t)`` with ``x_cam = R @ x_world + t``."""
        c = self.camera_center()
        forward = np.asarray(self.look_at, dtype=np.float64) - c
        forward /= np.linalg.norm(forward)
        up = np.array([0.0, 1.0, 0.0])
        if abs(forward @ up) > 0.999:  # looking straight down/up: pick another up vector
            up = np.array([0.0, 0.0, -1.0])
        right = np.cross(forward, up)  # camera x (right)
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)  # camera y (down)
        R = np.stack([right, down, forward])  # rows: camera axes in world coordinates
        r = math.radians(self.roll)
        Rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
        R = Rz @ R
        t = -R @ c
        return R, t


def project(points: np.ndarray, pose: Pose, intr: Intrinsics) -> np.ndarray:
    """Pixel coordinates (``N x 2``, OpenCV: pixel centres at integer + 0.5 edges) of world points ``N x 3``."""
    R, t = pose.extrinsics()
    cam = points @ R.T + t
    if (cam[:, 2] <= 0).any():
        raise PhysadvError("a point is behind the camera")
    uv = cam[:, :2] / cam[:, 2:3]
    return np.stack([intr.fx * uv[:, 0] + intr.cx, intr.fy * uv[:, 1] + intr.cy], axis=1)


def plane_homography(pose: Pose, intr: Intrinsics) -> np.ndarray:
    """The 3x3 homography from plane coordinates ``(x, y, 1)`` in metres (``z = 0``) to pixels."""
    R, t = pose.extrinsics()
    return intr.K @ np.column_stack([R[:, 0], R[:, 1], t])


def to_pytorch3d(poses: list[Pose], intr: Intrinsics, device: str | torch.device = "cpu"):
    """PyTorch3D ``PerspectiveCameras`` for ``poses`` seen by ``intr`` (via its OpenCV converter)."""
    from pytorch3d.utils import cameras_from_opencv_projection

    Rs, ts = zip(*(p.extrinsics() for p in poses))
    R = torch.tensor(np.stack(Rs), dtype=torch.float32, device=device)
    t = torch.tensor(np.stack(ts), dtype=torch.float32, device=device)
    K = torch.tensor(intr.K, dtype=torch.float32, device=device).expand(len(poses), 3, 3)
    size = torch.tensor([[intr.height, intr.width]], dtype=torch.float32, device=device).expand(len(poses), 2)
    return cameras_from_opencv_projection(R, t, K, size)


def feet(value: float) -> float:
    """Feet to metres (configs may say feet where a paper did; convert once, here)."""
    return value * 0.3048
