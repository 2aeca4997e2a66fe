"""Camera intrinsics from checkerboard photos (``cv2.findChessboardCorners`` + ``cv2.calibrateCamera``).

A ``CameraModel`` is a pinhole ``rendering.camera.Intrinsics`` plus OpenCV distortion coefficients,
saved as JSON. Photos taken at another resolution (or rotated by EXIF) reuse it through ``for_image``.

    cam, report = calibrate_camera(["b1.jpg", "b2.jpg", ...], board=(9, 6), square_mm=25)
    cam.save("camera.json"); cam = CameraModel.load("camera.json")
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from physadv.core.errors import PhysadvError
from physadv.core.io import write_json
from physadv.rendering.camera import Intrinsics


@dataclass(frozen=True)
class CameraModel:
    """Pinhole intrinsics (pixels) and OpenCV distortion coefficients (k1, k2, p1, p2, k3, ...)."""

    intrinsics: Intrinsics
    dist: tuple[float, ...] = ()

    @property
    def K(self) -> np.ndarray:
        return self.intrinsics.K

    @property
    def dist_array(self) -> np.ndarray:
        return np.asarray(self.dist or (0.0,) * 5, dtype=np.float64)

    def for_image(self, width: int, height: int) -> "CameraModel":
        """The same camera for a ``width x height`` photo: rescaled, or transposed if rotated by 90 degrees.

        A rotated photo (portrait of a landscape calibration) swaps the axes; the principal point is
        then assumed central, which is exact enough for pose at the distances of a capture session.
        """
        i = self.intrinsics
        if (width >= height) != (i.width >= i.height) and width != height:
            i = Intrinsics(i.fy, i.fx, i.height / 2, i.width / 2, i.height, i.width)
        if (width, height) == (i.width, i.height):
            return CameraModel(i, self.dist)
        if abs(width / height - i.width / i.height) > 0.02:
            raise PhysadvError(f"camera calibrated at {i.width}x{i.height} does not fit a {width}x{height} photo "
                               "(different aspect ratio: cropped photo?); calibrate at this resolution")
        return CameraModel(i.scaled(width, height), self.dist)

    def to_dict(self) -> dict:
        i = self.intrinsics
        return {"fx": i.fx, "fy": i.fy, "cx": i.cx, "cy": i.cy, "width": i.width, "height": i.height,
                "dist": list(self.dist)}

    def save(self, path: str | Path, extra: dict | None = None) -> Path:
        return write_json(path, {**self.to_dict(), **(extra or {})})

    @staticmethod
    def load(path: str | Path) -> "CameraModel":
        p = Path(path)
        if not p.is_file():
            raise PhysadvError(f"camera file not found: {p} (make one with `physadv capture calibrate-camera`)")
        try:
            d = json.loads(p.read_text())
            intr = Intrinsics(float(d["fx"]), float(d["fy"]), float(d["cx"]), float(d["cy"]), int(d["width"]),
                              int(d["height"]))
            return CameraModel(intr, tuple(float(v) for v in d.get("dist", ())))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise PhysadvError(f"{p}: not a camera file (needs fx, fy, cx, cy, width, height, dist): {exc}") from None

    @staticmethod
    def from_fov(fov_deg: float, width: int, height: int) -> "CameraModel":
        return CameraModel(Intrinsics.from_fov(fov_deg, width, height))


@dataclass
class CalibrationReport:
    rms_px: float
    used: list[str]
    status: dict[str, str] = field(default_factory=dict)  # file -> "ok" | "board not found" | "unreadable: ..."


def board_points(board: tuple[int, int], square_mm: float) -> np.ndarray:
    """Inner-corner grid (``cols x rows``) in metres on the z = 0 plane, in ``findChessboardCorners`` order."""
    cols, rows = board
    grid = np.mgrid[0:cols, 0:rows].T.reshape(-1, 2).astype(np.float32)
    return np.concatenate([grid * square_mm / 1000.0, np.zeros((len(grid), 1), np.float32)], axis=1)


def find_board(gray: np.ndarray, board: tuple[int, int]) -> np.ndarray | None:
    """Sub-pixel inner corners of a checkerboard in a grey uint8 image, or None."""
    ok, corners = cv2.findChessboardCorners(gray, board, cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE)
    if not ok:
        return None
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-3)
    return cv2.cornerSubPix(gray, corners, (5, 5), (-1, -1), crit)


def calibrate_camera(images: list[str | Path], board: tuple[int, int], square_mm: float,
                     max_pixels: int = 24_000_000) -> tuple[CameraModel, CalibrationReport]:
    """Calibrate from photos of a checkerboard with ``board`` = (inner corners across, down).

    Each file gets a status; at least 3 views with the board found are needed.
    """
    from physadv.capture.photos import load_photo  # EXIF-aware, memory-bounded reading

    obj, img_pts, used, status, size = [], [], [], {}, None
    for path in images:
        try:
            photo = load_photo(path, max_pixels=max_pixels)
        except PhysadvError as exc:
            status[str(path)] = f"unreadable: {exc}"
            continue
        h, w = photo.image.shape[:2]
        if size is not None and size != (w, h):
            status[str(path)] = f"skipped: {w}x{h} differs from the first photo's {size[0]}x{size[1]}"
            continue
        corners = find_board(cv2.cvtColor(photo.image, cv2.COLOR_RGB2GRAY), board)
        if corners is None:
            status[str(path)] = "board not found"
            continue
        size = (w, h)
        obj.append(board_points(board, square_mm))
        img_pts.append(corners)
        used.append(str(path))
        status[str(path)] = "ok"
    if len(used) < 3:
        raise PhysadvError(f"checkerboard {board[0]}x{board[1]} (inner corners) found in {len(used)} of {len(images)} "
                           "photos; need at least 3 (check --board: it counts inner corners, e.g. 9x6)")
    rms, K, dist, _, _ = cv2.calibrateCamera(obj, img_pts, size, None, None)
    intr = Intrinsics(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), size[0], size[1])
    return CameraModel(intr, tuple(float(v) for v in np.ravel(dist))), CalibrationReport(float(rms), used, status)


def checkerboard_page(board: tuple[int, int], square_px: int, border_squares: int = 1) -> np.ndarray:
    """A printable checkerboard with ``board`` inner corners (so ``board + 1`` squares) and a white border, uint8 RGB."""
    cols, rows = board[0] + 1, board[1] + 1
    yy, xx = np.mgrid[0:rows, 0:cols]
    squares = np.where((xx + yy) % 2 == 0, 0, 255).astype(np.uint8)
    img = np.kron(squares, np.ones((square_px, square_px), np.uint8))
    img = np.pad(img, border_squares * square_px, constant_values=255)
    return np.repeat(img[:, :, None], 3, axis=2)


__all__ = ["CameraModel", "CalibrationReport", "calibrate_camera", "board_points", "find_board", "checkerboard_page"]
