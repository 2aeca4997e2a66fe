"""Colour calibration chart: make it, read a photo of it, fit the print-and-capture colour transform.

    layout = write_chart("out/chart", ChartConfig())                # chart.png/.tiff/.pdf + layout.json
    reading = read_chart(photo_rgb, layout)                         # intended vs captured colour per patch
    result = calibrate(reading)                                     # fitted transforms and their delta E

The chart is a grid of patches (the RGB cube at 4 levels, a grey ramp, and seeded random colours,
shuffled so that light fall-off does not line up with hue) on white, with the export's ArUco markers.
A patch is sampled as the per-channel median of its inner region in the rectified photo.
"""
from __future__ import annotations

import itertools
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from physadv.core.errors import PhysadvError
from physadv.printing.colour import ColourTransform, fit_colour_transform, transform_error
from physadv.printing.export import ExportConfig, export_print
from physadv.printing.fiducials import detect_markers, page_homography, rectify
from physadv.printing.layout import MM_PER_INCH, Patch, PrintLayout, Rect


@dataclass
class ChartConfig:
    rows: int = 8
    cols: int = 12
    patch_mm: float = 15.0
    gap_mm: float = 3.0  # white between patches
    dpi: float = 300.0
    seed: int = 0
    label: str = "physadv colour chart"
    marker_mm: float = 0.0  # 0: automatic (see ExportConfig)
    marker_ids: list[int] = field(default_factory=list)  # empty: 4 ids derived from the chart's design, so that
    # a photo read against the layout of a different chart fails clearly instead of sampling the wrong colours
    formats: list[str] = field(default_factory=lambda: ["png", "tiff", "pdf"])

    def chart_marker_ids(self) -> list[int]:
        if self.marker_ids:
            return list(self.marker_ids)
        design = f"{self.rows}x{self.cols}/{self.patch_mm}/{self.gap_mm}/{self.seed}"
        group = zlib.crc32(design.encode()) % 12  # DICT_4X4_50 holds 12 groups of 4
        return [4 * group + k for k in range(4)]

    def validate(self) -> None:
        if self.rows * self.cols < 24:
            raise ValueError(f"rows x cols must be at least 24 patches, got {self.rows} x {self.cols}")
        if self.patch_mm < 4 or self.gap_mm < 0:
            raise ValueError(f"patch_mm must be >= 4 and gap_mm >= 0, got {self.patch_mm}, {self.gap_mm}")


def chart_colours(n: int, seed: int = 0) -> np.ndarray:
    """``n x 3`` sRGB patch colours quantised to 8 bits: the RGB cube, a grey ramp, random fill; shuffled."""
    n_grey = max(4, n // 6)
    levels = max(2, int(np.floor((n - n_grey) ** (1 / 3) + 1e-9)))
    cube = np.array(list(itertools.product(np.linspace(0, 1, levels), repeat=3)))
    greys = np.repeat(np.linspace(0, 1, n_grey + 2)[1:-1, None], 3, 1)  # black and white are in the cube
    rng = np.random.default_rng(seed)
    fill = rng.random((max(0, n - len(cube) - len(greys)), 3))
    colours = np.concatenate([cube, greys, fill])[:n]
    colours = colours[rng.permutation(n)]
    return np.round(colours * 255) / 255


def write_chart(out_dir: str | Path, cfg: ChartConfig | None = None) -> PrintLayout:
    """Export the chart (PNG, TIFF, PDF) with its layout, whose ``patches`` give each rectangle and colour."""
    cfg = cfg or ChartConfig()
    cfg.validate()
    ppm = cfg.dpi / MM_PER_INCH
    patch, gap = round(cfg.patch_mm * ppm), round(cfg.gap_mm * ppm)
    w, h = cfg.cols * patch + (cfg.cols + 1) * gap, cfg.rows * patch + (cfg.rows + 1) * gap
    colours = chart_colours(cfg.rows * cfg.cols, cfg.seed)
    tex = np.ones((h, w, 3), np.float32)
    rects = []
    for k, (r, c) in enumerate(itertools.product(range(cfg.rows), range(cfg.cols))):
        x, y = gap + c * (patch + gap), gap + r * (patch + gap)
        tex[y:y + patch, x:x + patch] = colours[k]
        rects.append((x, y))
    ecfg = ExportConfig(width=f"{w / ppm}mm", height=f"{h / ppm}mm", dpi=cfg.dpi, label=cfg.label, resample="nearest",
                        marker_mm=cfg.marker_mm, marker_ids=cfg.chart_marker_ids(), formats=list(cfg.formats), basename="chart")
    layout = export_print(tex, out_dir, ecfg, kind="chart")
    ox, oy = layout.object_rect.x, layout.object_rect.y
    layout.patches = [Patch(Rect(ox + x / ppm, oy + y / ppm, patch / ppm, patch / ppm), [float(v) for v in col])
                      for (x, y), col in zip(rects, colours)]
    layout.to_json(Path(out_dir) / "layout.json")
    return layout


@dataclass
class ChartReading:
    intended: torch.Tensor  # P x 3 sRGB, as printed
    captured: torch.Tensor  # P x 3 sRGB, as seen in the photo
    spread: torch.Tensor  # P: median absolute deviation inside each patch (large = glare, shadow, misregistration)
    homography: np.ndarray  # page mm -> photo pixels
    markers_used: list[int]
    reprojection_px: float  # RMS of marker corners under the homography
    rectified: np.ndarray  # the chart, flat, H x W x 3 uint8


def _as_uint8_rgb(photo: np.ndarray | torch.Tensor) -> np.ndarray:
    arr = photo.detach().cpu().numpy() if isinstance(photo, torch.Tensor) else np.asarray(photo)
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[2] != 3:
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim != 3 or arr.shape[2] < 3:
        raise PhysadvError(f"chart photo: expected an RGB image, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(arr[:, :, :3])


def read_chart(photo: np.ndarray | torch.Tensor, layout: PrintLayout, inner: float = 0.5, source: str = "chart photo",
               min_patch_px: float = 4.0) -> ChartReading:
    """Find the fiducials, rectify by homography and sample each patch (median of its central ``inner`` fraction).

    Raises a PhysadvError naming ``source`` when the fiducials are missing, do not fit the layout (a chart
    printed or photographed at the wrong scale, or the layout of another chart), or the chart is too small
    in the photo to sample.
    """
    if not layout.patches:
        raise PhysadvError(f"{source}: the layout has no colour patches (is it a chart layout from `physadv print chart`?)")
    img = _as_uint8_rgb(photo)
    found = detect_markers(img, layout.dictionary)
    H, used = page_homography(found, layout, min_markers=3, source=source)
    expected = layout.marker_corners_mm()
    mm = np.concatenate([expected[i] for i in used])
    px = np.concatenate([found[i] for i in used])
    proj = cv2.perspectiveTransform(mm[None], H)[0]
    rms = float(np.sqrt(((proj - px) ** 2).sum(1).mean()))
    marker_px = float(np.mean([np.linalg.norm(found[i][1] - found[i][0]) for i in used]))
    if rms > max(2.0, 0.05 * marker_px):
        raise PhysadvError(f"{source}: the fiducials do not match the layout's geometry (corner RMS error {rms:.1f} px for "
                           f"{marker_px:.0f} px markers): wrong layout.json, or the chart printed at the wrong scale "
                           f"(print at 100%, no 'fit to page')")
    # photo pixels per mm over the object, from the homography
    quad = cv2.perspectiveTransform(layout.object_corners_mm()[None], H)[0]
    area_px = cv2.contourArea(quad.astype(np.float32))
    photo_ppm = float(np.sqrt(area_px / (layout.object_rect.width * layout.object_rect.height)))
    patch_mm = min(p.rect.width for p in layout.patches)
    if photo_ppm * patch_mm * inner < min_patch_px:
        raise PhysadvError(f"{source}: the chart is too small in the photo ({photo_ppm * patch_mm:.1f} px per patch); "
                           f"fill more of the frame (each patch needs >= {min_patch_px / inner:.0f} px)")
    ppm = float(np.clip(photo_ppm, 2.0, 8.0))
    flat = rectify(img, H, layout.object_rect, ppm)
    ox, oy = layout.object_rect.x, layout.object_rect.y
    captured, spread = [], []
    for p in layout.patches:
        m = (1 - inner) / 2
        x0, x1 = (p.rect.x - ox + m * p.rect.width) * ppm, (p.rect.x - ox + (1 - m) * p.rect.width) * ppm
        y0, y1 = (p.rect.y - oy + m * p.rect.height) * ppm, (p.rect.y - oy + (1 - m) * p.rect.height) * ppm
        region = flat[int(round(y0)):max(int(round(y1)), int(round(y0)) + 1),
                      int(round(x0)):max(int(round(x1)), int(round(x0)) + 1)].reshape(-1, 3).astype(np.float64) / 255
        med = np.median(region, 0)
        captured.append(med)
        spread.append(float(np.median(np.abs(region - med)).max()))
    return ChartReading(intended=torch.tensor([p.rgb for p in layout.patches], dtype=torch.float64),
                        captured=torch.from_numpy(np.array(captured)), spread=torch.tensor(spread), homography=H,
                        markers_used=used, reprojection_px=rms, rectified=flat)


@dataclass
class Calibration:
    kind: str
    forward: ColourTransform  # intended -> captured: the print-and-capture colour model (for PrintModel)
    inverse: ColourTransform  # captured -> intended: corrects photos
    forward_error: dict[str, float]  # delta E of forward(intended) vs captured
    inverse_error: dict[str, float]  # delta E of inverse(captured) vs intended


def calibrate(reading: ChartReading, kinds: tuple[str, ...] = ("affine", "poly2")) -> dict[str, Calibration]:
    """Fit each transform kind both ways by least squares and report delta E (CIE76, CIEDE2000)."""
    out = {}
    for kind in kinds:
        fwd = fit_colour_transform(reading.intended, reading.captured, kind)
        inv = fit_colour_transform(reading.captured, reading.intended, kind)
        out[kind] = Calibration(kind, fwd, inv, transform_error(fwd, reading.intended, reading.captured),
                                transform_error(inv, reading.captured, reading.intended))
    return out


def patch_comparison_image(reading: ChartReading, calib: Calibration, cell: int = 24) -> np.ndarray:
    """A picture: per patch, three squares side by side: intended | captured | corrected (inverse applied)."""
    corrected = calib.inverse(reading.captured.float()).clamp(0, 1).double()
    rows = [reading.intended, reading.captured, corrected]
    n = len(reading.intended)
    per_row = 12
    nr = int(np.ceil(n / per_row))
    img = np.ones((nr * (cell + 6), per_row * (3 * cell + 8), 3))
    for k in range(n):
        r, c = divmod(k, per_row)
        y, x = r * (cell + 6) + 3, c * (3 * cell + 8) + 4
        for j, colours in enumerate(rows):
            img[y:y + cell, x + j * cell:x + (j + 1) * cell] = colours[k].numpy()
    return (img * 255 + 0.5).astype(np.uint8)


__all__ = ["ChartConfig", "chart_colours", "write_chart", "read_chart", "ChartReading", "calibrate", "Calibration",
           "patch_comparison_image"]
