"""Simulated photos of an exported print, for when no camera is at hand.

The page is a plane of known size in millimetres (from its ``layout.json``). For each distance x
angle x light of a grid, a pinhole camera (``rendering.camera``) looks at the object's centre from
``azimuth = angle``; the page is warped into the photo with the exact plane homography
(``plane_homography`` + ``cv2.warpPerspective``, the page pre-filtered to the photo's scale against
aliasing), composited on a photo background, and passed through camera effects: exposure, white
balance, defocus blur, sensor noise, JPEG. Output: JPEG photos plus a manifest in the capture format
with the true distance and angle, so ``capture eval`` runs end to end.

World frame (as in ``rendering.camera``): metres, origin at the object's centre, x right, y up, the
page in ``z = 0`` facing ``+z``. Page mm ``(u, v)`` (y down) -> ``((u - cu) / 1000, -(v - cv) / 1000)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from physadv.core.errors import PhysadvError
from physadv.core.io import write_json
from physadv.rendering.camera import Intrinsics, Pose, plane_homography

LIGHT_STOPS = {"normal": 0.0, "bright": 1.0, "dim": -2.0, "dark": -4.0}  # exposure of the print per light name, in stops
LIGHTS = {name: 2.0 ** stops for name, stops in LIGHT_STOPS.items()}  # the gain on linear light


@dataclass
class EffectsConfig:
    exposure_stops: float = 0.15  # std of a random exposure change, in stops
    white_balance: float = 0.05  # std of per-channel gains
    blur_px: tuple[float, float] = (0.4, 1.2)  # Gaussian sigma range (pixels) for defocus/shake
    noise: float = 0.01  # std of additive read noise (plus shot noise of the same order at full white)
    jpeg_quality: int = 90
    shading: float = 0.15  # max linear light gradient across the print (uneven daylight, a lamp to one side)

    def validate(self) -> None:
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality {self.jpeg_quality} must be in 1..100")
        if self.blur_px[0] < 0 or self.blur_px[1] < self.blur_px[0]:
            raise ValueError(f"blur_px {self.blur_px} must be (low, high) with 0 <= low <= high")


@dataclass
class SimulateConfig:
    print_file: str = ""  # an exported PNG or PDF (layout.json beside it), or its folder
    distances: list[float] = field(default_factory=lambda: [5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0])
    distance_unit: str = "ft"
    angles: list[float] = field(default_factory=lambda: [0.0, 15.0, 30.0, 45.0, 60.0])  # degrees off the normal
    lights: list[str] = field(default_factory=lambda: ["normal"])
    repeats: int = 1  # photos per grid cell (each with fresh jitter, background and effects)
    width: int = 4032  # photo size in pixels (a 12 MP phone)
    height: int = 3024
    fov_deg: float = 30.0  # horizontal field of view (a phone's 2-3x tele lens)
    roll_deg: float = 5.0  # max random roll (hand-held camera)
    pan_deg: float = 2.0  # max random pan/tilt about the camera centre (object off the image centre)
    elevation_deg: float = 0.0  # camera height angle; the manifest angle is the true off-axis angle
    backgrounds: list[str] = field(default_factory=lambda: ["photo"])
    effects: EffectsConfig = field(default_factory=EffectsConfig)
    seed: int = 0

    def validate(self) -> None:
        from physadv.capture.photos import UNITS_M

        if self.distance_unit not in UNITS_M:
            raise ValueError(f"distance_unit {self.distance_unit!r} is not one of {', '.join(UNITS_M)}")
        if not self.distances or min(self.distances) <= 0:
            raise ValueError(f"distances {self.distances} must be positive")
        if not self.angles or max(abs(a) for a in self.angles) >= 85:
            raise ValueError(f"angles {self.angles} must be within +-85 degrees")
        for light in self.lights:
            if light not in LIGHTS:
                raise ValueError(f"light {light!r} is not one of {', '.join(LIGHTS)}")
        if self.width < 16 or self.height < 16 or self.repeats < 1:
            raise ValueError("width/height must be >= 16 and repeats >= 1")


# --------------------------------------------------------------------------- the print
def load_print(path: str | Path) -> tuple[np.ndarray, "PrintLayout"]:  # noqa: F821
    """The page raster (``H x W x 3`` uint8) and its layout, from an exported PNG/TIFF, PDF or folder.

    A PDF is rasterised with pypdfium2 at the layout's DPI. For a tiled export the page is the
    assembled sheet: its ``*_sheet.png``, or the tile pages of the PDF put back together.
    """
    from physadv.printing.layout import PrintLayout

    path = Path(path)
    if path.is_dir():
        layout = PrintLayout.from_json(path / "layout.json")
        name = layout.files.get("png") or layout.files.get("pdf")
        if not name:
            raise PhysadvError(f"{path}/layout.json names no png or pdf file")
        path = path / name
    else:
        layout = PrintLayout.from_json(path.parent / "layout.json")
    if not path.is_file():
        raise PhysadvError(f"print file not found: {path}")
    if layout.tiles and path.name in {t.file for t in layout.tiles}:
        raise PhysadvError(f"{path}: one tile of a tiled print; pass the sheet PNG ({layout.files.get('png')}) or the PDF")
    if path.suffix.lower() == ".pdf":
        pages = _rasterise_pdf(path, layout.dpi)
        if layout.tiles:
            from physadv.printing.export import assemble_tiles

            raster = assemble_tiles(pages, layout)
        else:
            raster = pages[0]
    else:
        from physadv.capture.photos import load_photo

        raster = load_photo(path, max_pixels=400_000_000).image
    return np.ascontiguousarray(raster), layout


def _rasterise_pdf(path: Path, dpi: float) -> list[np.ndarray]:
    try:
        import pypdfium2 as pdfium
    except ImportError:
        raise PhysadvError(f"{path}: rasterising a PDF needs pypdfium2 (pip install pypdfium2); "
                           "or pass the exported PNG") from None
    try:
        pdf = pdfium.PdfDocument(str(path))
        return [np.asarray(page.render(scale=dpi / 72.0).to_pil().convert("RGB"), dtype=np.uint8) for page in pdf]
    except Exception as exc:  # pypdfium2 raises its own PdfiumError
        raise PhysadvError(f"{path}: cannot rasterise the PDF ({exc})") from None


def page_to_plane(layout, raster_size: tuple[int, int]) -> np.ndarray:
    """3x3 map from page raster pixels (OpenCV centres) to plane metres (object-centred, y up)."""
    w, h = raster_size
    sx, sy = layout.page_width_mm / w, layout.page_height_mm / h  # mm per raster pixel
    r = layout.object_rect
    cu, cv_ = r.x + r.width / 2, r.y + r.height / 2
    return np.array([[sx / 1000, 0, (0.5 * sx - cu) / 1000],
                     [0, -sy / 1000, -(0.5 * sy - cv_) / 1000],
                     [0, 0, 1]], dtype=np.float64)


def mm_to_plane(layout) -> np.ndarray:
    """3x3 map from page mm to plane metres (object-centred, y up)."""
    r = layout.object_rect
    cu, cv_ = r.x + r.width / 2, r.y + r.height / 2
    return np.array([[1e-3, 0, -cu * 1e-3], [0, -1e-3, cv_ * 1e-3], [0, 0, 1]], dtype=np.float64)


# --------------------------------------------------------------------------- one photo
def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """A small camera rotation (radians) about its own y, x and z axes."""
    cy, sy, cp, sp, cr, sr = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch), math.cos(roll), math.sin(roll)
    Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    Rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    Rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return Rz @ Rx @ Ry


def camera_homography(pose: Pose, intr: Intrinsics, turn: np.ndarray | None = None) -> np.ndarray:
    """Plane metres -> pixels for ``pose``, optionally with the camera turned by ``turn`` about its centre."""
    if turn is None:
        return plane_homography(pose, intr)
    R, t = pose.extrinsics()
    return intr.K @ turn @ np.column_stack([R[:, 0], R[:, 1], t])


def warp_page(page: np.ndarray, H_page_px: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Warp the page raster into a ``size = (W, H)`` photo; returns (uint8 image, float coverage mask).

    The page is first reduced (area filter) so that one page pixel covers about one photo pixel
    along its least-compressed direction: no aliasing from a 300 DPI raster seen from 40 ft.
    """
    h, w = page.shape[:2]
    c = np.array([w / 2, h / 2, 1.0])
    p = H_page_px @ c
    J = (H_page_px[:2, :2] * p[2] - np.outer(p[:2], H_page_px[2, :2])) / p[2] ** 2  # d(photo)/d(page) at the centre
    s_max = float(np.linalg.svd(J, compute_uv=False)[0])
    if s_max < 0.7:
        f = max(s_max, 1.0 / min(w, h))
        nw, nh = max(2, round(w * f)), max(2, round(h * f))
        page = cv2.resize(page, (nw, nh), interpolation=cv2.INTER_AREA)
        sx, sy = w / nw, h / nh  # new pixel centre -> old pixel coordinates
        H_page_px = H_page_px @ np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])
    warped = cv2.warpPerspective(page, H_page_px, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    ones = np.full(page.shape[:2], 255, np.uint8)
    mask = cv2.warpPerspective(ones, H_page_px, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return warped, mask.astype(np.float32) / 255.0


def camera_effects(img: np.ndarray, rng: np.random.Generator, fx: EffectsConfig) -> np.ndarray:
    """Exposure and white balance (in linear light, clamped where the sensor saturates), then blur and noise on the
    sRGB values, of a float ``H x W x 3`` sRGB image in [0, 1]."""
    from physadv.core.colour import linear_to_srgb_array, srgb_to_linear_array

    gains = 2.0 ** rng.normal(0, fx.exposure_stops) * np.clip(1 + rng.normal(0, fx.white_balance, 3), 0.7, 1.3)
    img = linear_to_srgb_array(cv2.multiply(srgb_to_linear_array(img), tuple(float(g) for g in gains) + (0.0,)))
    sigma = rng.uniform(*fx.blur_px)
    if sigma > 0.05:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    if fx.noise > 0:
        noise = rng.standard_normal(img.shape, dtype=np.float32)
        noise *= np.float32(fx.noise)
        img = cv2.add(img, cv2.add(noise, cv2.multiply(noise, img)))  # read noise + shot-like noise growing with signal
    return np.clip(img, 0, 1, out=img)


def render_photo(page: np.ndarray, layout, pose: Pose, intr: Intrinsics, background: np.ndarray,
                 light: float = 1.0, turn: np.ndarray | None = None, shading: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """The page seen by a camera at ``pose`` over ``background`` (``H x W x 3`` float [0,1]); float photo, no effects.

    ``light`` scales the light on the page; ``shading = (gx, gy)`` adds a linear light gradient across it
    (relative change from the page's centre to its right / bottom edge in the photo). Both act in linear light
    (the page converted from sRGB, lit, clamped where the sensor saturates, converted back), then the page is
    composited over the background.
    """
    from physadv.core.colour import linear_to_srgb_array, srgb_to_linear_array

    H = camera_homography(pose, intr, turn) @ page_to_plane(layout, (page.shape[1], page.shape[0]))
    out = np.array(background, dtype=np.float32, order="C")  # a contiguous copy (OpenCV is slow on strided views)
    h, w = page.shape[:2]
    corners = cv2.perspectiveTransform(np.array([[[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]]]), H)[0]
    x0, y0 = np.maximum(np.floor(corners.min(axis=0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(corners.max(axis=0)).astype(int) + 2, [intr.width, intr.height])
    if x1 <= x0 or y1 <= y0:
        return out  # the page is outside the photo
    shift = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], dtype=np.float64)
    warped, mask = warp_page(page, shift @ H, (int(x1 - x0), int(y1 - y0)))  # only the page's bounding box
    roi = out[y0:y1, x0:x1]
    roi *= (1 - mask)[:, :, None]
    gain = np.full(mask.shape, np.float32(light), np.float32)
    if any(shading):
        yy, xx = np.mgrid[0:gain.shape[0], 0:gain.shape[1]].astype(np.float32)
        gain *= 1 + shading[0] * (2 * xx / gain.shape[1] - 1) + shading[1] * (2 * yy / gain.shape[0] - 1)
    lit = linear_to_srgb_array(srgb_to_linear_array(warped) * gain[:, :, None])
    roi += lit * mask[:, :, None]
    return out


def simulate(cfg: SimulateConfig, out_dir: str | Path, workers: int | None = None) -> list:
    """Render the grid into ``out_dir/photos/*.jpg`` with ``out_dir/manifest.csv`` (files relative to it),
    ``truth.json`` (exact poses) and ``camera.json`` (the simulated camera); returns the manifest rows.

    Each photo has its own random stream (``seed``, index), so an interrupted run resumes: photos
    already written by a run of the same config in ``out_dir`` are kept, not rendered again; and ``workers``
    threads (default: one per CPU core; OpenCV and NumPy release the GIL) render the same photos as one.
    """
    import os
    from concurrent.futures import ThreadPoolExecutor

    from physadv.capture.calibrate import CameraModel
    from physadv.capture.photos import UNITS_M, ManifestRow, write_manifest
    from physadv.core.config import config_hash
    from physadv.core.io import atomic_write_text, write_image
    from physadv.core.progress import progress
    from physadv.rendering.backgrounds import photos, sample_backgrounds

    if not cfg.print_file:
        raise PhysadvError("simulate needs a print file (--print out/print.png or print_file=...)")
    page, layout = load_print(cfg.print_file)
    out_dir = Path(out_dir)
    (out_dir / "photos").mkdir(parents=True, exist_ok=True)
    stamp, key = out_dir / "photos" / ".config-hash", config_hash(cfg)
    resume = stamp.is_file() and stamp.read_text().strip() == key
    atomic_write_text(stamp, key + "\n")
    intr = Intrinsics.from_fov(cfg.fov_deg, cfg.width, cfg.height)
    grid = [(d, a, light, k) for d in cfg.distances for a in cfg.angles for light in cfg.lights for k in range(cfg.repeats)]
    if "photo" in cfg.backgrounds:
        photos()  # the cached background photos, loaded once before the threads share them

    def photo(i: int, d: float, a: float, light: str, k: int):
        """Photo ``i``: rendered and written unless a resumed run has it; its manifest row and exact pose."""
        rng = np.random.default_rng((cfg.seed, i))
        roll = rng.uniform(-cfg.roll_deg, cfg.roll_deg)
        pose = Pose(d * UNITS_M[cfg.distance_unit], azimuth=_azimuth(a, cfg.elevation_deg), elevation=cfg.elevation_deg,
                    roll=roll)
        turn = _rotation(*np.radians(rng.uniform(-cfg.pan_deg, cfg.pan_deg, 2)), 0.0)
        name = f"d{d:g}{cfg.distance_unit}_a{a:g}_{light}" + (f"_{k}" if cfg.repeats > 1 else "") + ".jpg"
        rendered = not (resume and (out_dir / "photos" / name).is_file())
        if rendered:
            g = torch.Generator().manual_seed(cfg.seed * 100_003 + i)
            bg = sample_backgrounds(1, cfg.height, cfg.width, tuple(cfg.backgrounds), g)[0].permute(1, 2, 0).numpy()
            shading = tuple(rng.uniform(-cfg.effects.shading, cfg.effects.shading, 2))
            img = render_photo(page, layout, pose, intr, bg, LIGHTS[light] * rng.uniform(0.9, 1.05), turn, shading)
            write_image(out_dir / "photos" / name, camera_effects(img, rng, cfg.effects), quality=cfg.effects.jpeg_quality)
        row = ManifestRow(i + 2, f"photos/{name}", d, cfg.distance_unit, float(abs(pose.off_axis)), light,
                          f"simulated az={pose.azimuth:.2f} el={pose.elevation:.2f} roll={roll:.2f}")
        truth = {"file": f"photos/{name}", "distance_m": pose.distance, "angle": pose.off_axis, "azimuth": pose.azimuth,
                 "elevation": pose.elevation, "roll": roll, "turn": turn.tolist(), "light": light}
        return row, truth, rendered

    with ThreadPoolExecutor(max(1, workers or os.cpu_count() or 1)) as pool:
        done = list(progress(pool.map(lambda ik: photo(ik[0], *ik[1]), enumerate(grid)), desc="simulate", total=len(grid)))
    rows, truth = [r for r, _, _ in done], [t for _, t, _ in done]
    write_manifest(out_dir / "manifest.csv", rows)
    write_json(out_dir / "truth.json", {"intrinsics": intr.__dict__, "photos": truth, "rendered": sum(r for *_, r in done)})
    CameraModel(intr).save(out_dir / "camera.json", {"note": "the simulated camera (exact intrinsics, no distortion)"})
    return rows


def _azimuth(angle: float, elevation: float) -> float:
    """Azimuth giving off-axis ``angle`` at ``elevation``: cos(angle) = cos(az) cos(el)."""
    c = math.cos(math.radians(angle)) / math.cos(math.radians(elevation))
    if c > 1:
        raise PhysadvError(f"angle {angle} is smaller than the elevation {elevation}: lower elevation_deg")
    return math.copysign(math.degrees(math.acos(c)), angle if angle else 1.0)


__all__ = ["SimulateConfig", "EffectsConfig", "LIGHTS", "load_print", "page_to_plane", "mm_to_plane",
           "camera_homography", "warp_page", "camera_effects", "render_photo", "simulate"]
