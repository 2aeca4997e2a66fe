"""Export a texture or sticker sheet at its physical size: PNG (DPI recorded), TIFF and a lossless PDF.

The page is composed in pixels at ``dpi`` with every position snapped to the pixel grid, so the
``layout.json`` written beside the files is exact for the raster and the PDF alike:

    ┌──────────────────────────────┐
    │ [M0]                    [M1] │   ArUco markers diagonally outside the object's corners,
    │      ┌──────────────────┐    │   a white quiet zone between them and the object
    │      │     texture      │    │
    │      └──────────────────┘    │
    │ [M3]                    [M2] │
    │ |''''|''''|  10 cm  run-id   │   scale bar with ticks, label
    └──────────────────────────────┘

    layout = export_print(texture, "out/", ExportConfig(width="75cm", tile="A4"))

Large sheets tile across paper pages (``tile="A4"``) with overlap and alignment ticks in the margins.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from physadv.core.errors import PhysadvError
from physadv.core.io import atomic_path
from physadv.printing.fiducials import marker_image
from physadv.printing.layout import MM_PER_INCH, PrintLayout, Rect, Tile, corner_markers
from physadv.printing.pdf import write_pdf

PAPER_MM = {"A4": (210.0, 297.0), "A3": (297.0, 420.0), "Letter": (215.9, 279.4), "Legal": (215.9, 355.6)}
_UNITS = {"mm": 1.0, "cm": 10.0, "m": 1000.0, "in": MM_PER_INCH, '"': MM_PER_INCH, "inch": MM_PER_INCH, "ft": 304.8}


def parse_length(value: str | float, field_name: str = "length") -> float:
    """``"75cm"``, ``"300 mm"``, ``"8.5in"``, ``"2ft"`` -> millimetres (a bare number is mm)."""
    if isinstance(value, (int, float)):
        mm = float(value)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(mm|cm|m|in|inch|ft|\")?\s*", str(value))
        if not m:
            raise PhysadvError(f"{field_name}: cannot read '{value}' as a length (use e.g. 75cm, 300mm, 8.5in)")
        mm = float(m.group(1)) * _UNITS[m.group(2) or "mm"]
    if not mm > 0:
        raise PhysadvError(f"{field_name}: length must be positive, got '{value}'")
    return mm


@dataclass
class ExportConfig:
    width: str = "20cm"  # physical width of the object (mm, cm, m, in, ft)
    height: str = ""  # empty: from the texture's aspect ratio
    dpi: float = 300.0
    fiducials: bool = True
    dictionary: str = "DICT_4X4_50"
    marker_ids: list[int] = field(default_factory=lambda: [0, 1, 2, 3])  # TL, TR, BR, BL
    marker_mm: float = 0.0  # 0: 15% of the object's shorter side, within [10, 80] mm
    margin_mm: float = 10.0  # white border around everything
    scale_bar: bool = True
    cut_lines: bool = False  # dashed outlines of the sticker regions (needs a mask or alpha)
    label: str = ""  # e.g. the run id; printed with the physical size and DPI
    resample: str = "bilinear"  # how the texture is scaled to the print: bilinear, nearest or lanczos
    tile: str = ""  # "", A4, A3, Letter or Legal: split the sheet across paper pages
    tile_margin_mm: float = 8.0  # unprintable border of each paper page
    overlap_mm: float = 15.0  # shared strip between neighbouring tiles
    formats: list[str] = field(default_factory=lambda: ["png", "tiff", "pdf"])
    basename: str = "print"

    def validate(self) -> None:
        parse_length(self.width, "width")
        if self.height:
            parse_length(self.height, "height")
        if not 10 <= self.dpi <= 2400:
            raise ValueError(f"dpi must be within [10, 2400], got {self.dpi}")
        if self.resample not in _RESAMPLE:
            raise ValueError(f"resample must be one of {sorted(_RESAMPLE)}, got '{self.resample}'")
        if self.tile and self.tile not in PAPER_MM:
            raise ValueError(f"tile must be one of {sorted(PAPER_MM)} or empty, got '{self.tile}'")
        bad = [f for f in self.formats if f not in ("png", "tiff", "pdf")]
        if bad:
            raise ValueError(f"formats: unknown {bad} (use png, tiff, pdf)")
        if len(self.marker_ids) != 4:
            raise ValueError(f"marker_ids: need 4 ids (TL, TR, BR, BL), got {self.marker_ids}")


_RESAMPLE = {"bilinear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST, "lanczos": cv2.INTER_LANCZOS4}


# --------------------------------------------------------------------------- texture input
def as_rgb_alpha(texture: torch.Tensor | np.ndarray, name: str = "texture") -> tuple[np.ndarray, np.ndarray | None]:
    """``3|4 x H x W`` or ``H x W x 3|4`` (tensor or array, [0, 1]) -> (``H x W x 3`` float32, alpha ``H x W`` or None)."""
    arr = texture.detach().cpu().float().numpy() if isinstance(texture, torch.Tensor) else np.asarray(texture, np.float32)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3:
        raise PhysadvError(f"{name}: expected 3 x H x W or H x W x 3 (optionally 4 channels), got shape {tuple(arr.shape)}")
    if arr.shape[0] in (3, 4) and arr.shape[2] not in (3, 4):
        arr = np.moveaxis(arr, 0, -1)
    if arr.shape[2] not in (3, 4):
        raise PhysadvError(f"{name}: expected 3 (RGB) or 4 (RGBA) channels, got shape {tuple(arr.shape)}")
    if not np.isfinite(arr).all():
        raise PhysadvError(f"{name}: contains NaN or inf")
    if arr.min() < -1e-3 or arr.max() > 1 + 1e-3:
        raise PhysadvError(f"{name}: values must lie in [0, 1], got [{arr.min():.3g}, {arr.max():.3g}]")
    arr = np.clip(arr, 0, 1).astype(np.float32)
    return np.ascontiguousarray(arr[:, :, :3]), (np.ascontiguousarray(arr[:, :, 3]) if arr.shape[2] == 4 else None)


# --------------------------------------------------------------------------- drawing helpers
def draw_dashed_contours(page: np.ndarray, contours: list[np.ndarray], dash_px: float, gap_px: float,
                         thickness: int, color=(0, 0, 0)) -> None:
    """Draw closed polylines as dashes of ``dash_px`` on, ``gap_px`` off (measured along the line)."""
    for c in contours:
        pts = c.reshape(-1, 2).astype(np.float64)
        pts = np.vstack([pts, pts[:1]])
        seg = np.diff(pts, axis=0)
        length = np.hypot(seg[:, 0], seg[:, 1])
        s = np.concatenate([[0.0], np.cumsum(length)])
        if s[-1] <= 0:
            continue
        period = dash_px + gap_px
        for start in np.arange(0.0, s[-1], period):
            ts = np.linspace(start, min(start + dash_px, s[-1]), max(2, int(dash_px) // 2 + 2))
            xy = np.stack([np.interp(ts, s, pts[:, 0]), np.interp(ts, s, pts[:, 1])], 1)
            cv2.polylines(page, [np.round(xy).astype(np.int32)], False, color, thickness, cv2.LINE_AA)


def draw_text(page: np.ndarray, text: str, x: int, y: int, height_px: int) -> None:
    """Black text with its top-left at pixel (x, y), about ``height_px`` tall."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=max(6, height_px))
    l, t, r, b = font.getbbox(text)
    w, h = min(r + 2, page.shape[1] - x), min(b + 2, page.shape[0] - y)
    if w <= 0 or h <= 0:
        return
    patch = Image.fromarray(page[y:y + h, x:x + w])
    ImageDraw.Draw(patch).text((0, 0), text, fill=(0, 0, 0), font=font)
    page[y:y + h, x:x + w] = np.asarray(patch)


def scale_bar_length_mm(available_mm: float) -> float:
    for length in (100.0, 50.0, 20.0, 10.0):
        if length <= available_mm:
            return length
    return 0.0


def draw_scale_bar(page: np.ndarray, x: int, y: int, length_mm: float, ppm: float) -> int:
    """A bar ``length_mm`` long with a tick every 10 mm (every mm for a 1-2 cm bar); returns its right end in px."""
    thick = max(1, round(0.3 * ppm))
    x1 = x + round(length_mm * ppm)
    bar_h = round(1.2 * ppm)
    cv2.rectangle(page, (x, y + round(3 * ppm)), (x1 - 1, y + round(3 * ppm) + bar_h - 1), (0, 0, 0), -1)
    step = 10.0 if length_mm >= 50 else 1.0
    for k in range(int(round(length_mm / step)) + 1):
        tx = min(x + round(k * step * ppm), x1 - 1)
        major = k * step % (50 if step == 10 else 10) == 0
        ty = y + (0 if major else round(1.5 * ppm))
        cv2.rectangle(page, (tx - thick // 2, ty), (tx - thick // 2 + thick - 1, y + round(3 * ppm)), (0, 0, 0), -1)
    return x1


def _resized_strips(src: np.ndarray, ow: int, oh: int, interp: int, rows: tuple[int, int] | None = None,
                    strip: int = 512):
    """``src`` resized to ``ow x oh`` as cv2.resize maps pixel centres, yielded as (y0, y1, rows y0:y1)."""
    sx, sy = src.shape[1] / ow, src.shape[0] / oh
    map_x = ((np.arange(ow, dtype=np.float32) + 0.5) * sx - 0.5).astype(np.float32)
    y_start, y_stop = rows if rows else (0, oh)
    for y0 in range(y_start, y_stop, strip):
        y1 = min(y0 + strip, y_stop)
        map_y = ((np.arange(y0, y1, dtype=np.float32) + 0.5) * sy - 0.5).astype(np.float32)
        mx, my = np.broadcast_to(map_x, (y1 - y0, ow)), np.broadcast_to(map_y[:, None], (y1 - y0, ow))
        out = cv2.remap(src, np.ascontiguousarray(mx), np.ascontiguousarray(my), interp, borderMode=cv2.BORDER_REPLICATE)
        yield y0, y1, out


# --------------------------------------------------------------------------- page composition
def compose_page(texture: torch.Tensor | np.ndarray, cfg: ExportConfig, mask: np.ndarray | None = None,
                 kind: str | None = None) -> tuple[np.ndarray, PrintLayout]:
    """The whole sheet as a uint8 ``H x W x 3`` raster at ``cfg.dpi``, and its layout (file names not yet set)."""
    cfg.validate()
    rgb, alpha = as_rgb_alpha(texture)
    ppm = cfg.dpi / MM_PER_INCH
    px = lambda mm: int(round(mm * ppm))  # noqa: E731

    width_mm = parse_length(cfg.width, "width")
    height_mm = parse_length(cfg.height, "height") if cfg.height else width_mm * rgb.shape[0] / rgb.shape[1]
    ow, oh = max(1, px(width_mm)), max(1, px(height_mm))
    s = px(cfg.marker_mm if cfg.marker_mm > 0 else float(np.clip(0.15 * min(width_mm, height_mm), 10, 80))) if cfg.fiducials else 0
    g = max(px(3), round(s / 4)) if cfg.fiducials else 0  # quiet zone: 1.5 marker modules
    m = px(cfg.margin_mm)
    band = s + g
    footer = px(14) if (cfg.scale_bar or cfg.label) else 0
    ox, oy = m + band, m + band
    page_w = ow + 2 * (m + band)
    page_h = oh + 2 * band + 2 * m + footer
    page = np.full((page_h, page_w, 3), 255, np.uint8)

    # the object: texture resized to its pixel rectangle (strip by strip: a 75 cm sign at 300 DPI is
    # 8858 x 8858 px); transparent = white paper
    if mask is None and alpha is not None:
        mask = alpha
    if mask is not None:
        mask = np.asarray(mask, np.float32)
        if mask.ndim == 3:
            mask = mask[..., 0] if mask.shape[-1] == 1 else mask[0]
    a_src = alpha if alpha is not None else mask
    cut = np.zeros((oh, ow), np.uint8) if cfg.cut_lines else None
    for y0, y1, strip in _resized_strips(rgb, ow, oh, _RESAMPLE[cfg.resample]):
        if a_src is not None:
            a = next(_resized_strips(a_src, ow, oh, cv2.INTER_LINEAR, rows=(y0, y1)))[2][..., None]
            strip = strip * a + (1 - a)
        page[oy + y0:oy + y1, ox:ox + ow] = (np.clip(strip, 0, 1) * 255 + 0.5).astype(np.uint8)
        if cut is not None and mask is not None:
            cut[y0:y1] = next(_resized_strips(mask, ow, oh, cv2.INTER_LINEAR, rows=(y0, y1)))[2] > 0.5

    if cfg.cut_lines:
        if mask is None:
            raise PhysadvError("cut_lines: needs a sticker mask (or a texture with an alpha channel)")
        contours, _ = cv2.findContours(cut, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        contours = [c + np.array([ox, oy]) for c in contours if len(c) >= 3]
        draw_dashed_contours(page, contours, dash_px=3 * ppm, gap_px=2 * ppm, thickness=max(1, px(0.25)),
                             color=(90, 90, 90))

    markers = []
    if cfg.fiducials:
        obj_px = Rect(ox, oy, ow, oh)
        for mk in corner_markers(obj_px, s, g, tuple(cfg.marker_ids)):
            (x0, y0) = (int(v) for v in mk.corners_mm[0])
            page[y0:y0 + s, x0:x0 + s] = marker_image(cfg.dictionary, mk.id, s)[:, :, None]
            mk.corners_mm = (np.asarray(mk.corners_mm) / ppm).tolist()
            markers.append(mk)

    if footer:
        fy = oy + oh + band + px(3)
        x = ox - band
        avail = (page_w - 2 * m) / ppm
        bar_mm = scale_bar_length_mm(avail) if cfg.scale_bar else 0.0
        if bar_mm:
            x = draw_scale_bar(page, x, fy, bar_mm, ppm) + px(3)
            draw_text(page, f"{bar_mm / 10:g} cm", x, fy + px(1), px(3))
            x += px(14)
        text = " ".join(t for t in [cfg.label, f"{width_mm / 10:.4g} x {height_mm / 10:.4g} cm at {cfg.dpi:g} dpi"] if t)
        draw_text(page, text, x, fy + px(1), px(3))

    layout = PrintLayout(page_width_mm=page_w / ppm, page_height_mm=page_h / ppm, dpi=float(cfg.dpi),
                         object_rect=Rect(ox / ppm, oy / ppm, ow / ppm, oh / ppm), dictionary=cfg.dictionary,
                         markers=markers, kind=kind or ("stickers" if mask is not None else "texture"), run_id=cfg.label)
    return page, layout


# --------------------------------------------------------------------------- tiling
def plan_tiles(sheet_w: int, sheet_h: int, paper: str, dpi: float, margin_mm: float, overlap_mm: float) -> list[dict]:
    """Split a ``sheet_w x sheet_h`` px sheet across paper pages (the orientation needing fewer pages)."""
    ppm = dpi / MM_PER_INCH
    best = None
    for pw_mm, ph_mm in (PAPER_MM[paper], PAPER_MM[paper][::-1]):
        pw, ph, tm, ov = round(pw_mm * ppm), round(ph_mm * ppm), round(margin_mm * ppm), round(overlap_mm * ppm)
        aw, ah = pw - 2 * tm, ph - 2 * tm
        if aw <= 2 * ov or ah <= 2 * ov:
            raise PhysadvError(f"tile: overlap_mm={overlap_mm} and tile_margin_mm={margin_mm} leave no room on {paper}")
        cols = 1 if sheet_w <= aw else math.ceil((sheet_w - ov) / (aw - ov))
        rows = 1 if sheet_h <= ah else math.ceil((sheet_h - ov) / (ah - ov))
        if best is None or rows * cols < best[0]:
            best = (rows * cols, rows, cols, pw, ph, tm, ov, aw, ah)
    _, rows, cols, pw, ph, tm, ov, aw, ah = best
    tiles = []
    for r in range(rows):
        for c in range(cols):
            x, y = c * (aw - ov), r * (ah - ov)
            tiles.append(dict(row=r, col=c, rows=rows, cols=cols, x=x, y=y, w=min(aw, sheet_w - x), h=min(ah, sheet_h - y),
                              page_w=pw, page_h=ph, margin=tm, overlap=ov))
    return tiles


def render_tile(sheet: np.ndarray, t: dict, ppm: float) -> np.ndarray:
    """One paper page: its region of the sheet plus alignment ticks (overlap centre lines) and a label in the margin."""
    page = np.full((t["page_h"], t["page_w"], 3), 255, np.uint8)
    tm, x, y, w, h, ov = t["margin"], t["x"], t["y"], t["w"], t["h"], t["overlap"]
    page[tm:tm + h, tm:tm + w] = sheet[y:y + h, x:x + w]
    thick, tick = max(1, round(0.25 * ppm)), max(2, tm - round(2 * ppm))
    grey = (0, 0, 0)
    # overlap centre lines: on this tile at local ov/2 (shared with the previous tile) and w - ov/2 (with the next)
    xs = ([ov // 2] if t["col"] > 0 else []) + ([w - ov // 2] if t["col"] < t["cols"] - 1 else [])
    ys = ([ov // 2] if t["row"] > 0 else []) + ([h - ov // 2] if t["row"] < t["rows"] - 1 else [])
    for lx in xs:
        X = tm + lx
        cv2.line(page, (X, tm - 1 - tick), (X, tm - 1), grey, thick)
        cv2.line(page, (X, tm + h), (X, tm + h + tick), grey, thick)
    for ly in ys:
        Y = tm + ly
        cv2.line(page, (tm - 1 - tick, Y), (tm - 1, Y), grey, thick)
        cv2.line(page, (tm + w, Y), (tm + w + tick, Y), grey, thick)
    # corner crosses at the region's corners, in the margin
    for cx, cy, sx, sy in ((tm, tm, -1, -1), (tm + w, tm, 1, -1), (tm + w, tm + h, 1, 1), (tm, tm + h, -1, 1)):
        cv2.line(page, (cx, cy + sy * 2), (cx, cy + sy * tick), grey, thick)
        cv2.line(page, (cx + sx * 2, cy), (cx + sx * tick, cy), grey, thick)
    draw_text(page, f"tile row {t['row'] + 1}/{t['rows']} col {t['col'] + 1}/{t['cols']}: overlap {ov / ppm:.0f} mm, "
                    f"align the ticks, cut along them", tm + ov + round(4 * ppm), max(0, tm - round(6 * ppm)), round(3 * ppm))
    return page


def assemble_tiles(pages: list[np.ndarray], layout: PrintLayout, dpi: float | None = None) -> np.ndarray:
    """Put printed tile pages (rasters at ``dpi``, default the layout's) back together into the sheet, as a person would."""
    if not layout.tiles:
        raise PhysadvError("assemble_tiles: the layout has no tiles (export with tile=A4 or Letter)")
    if len(pages) != len(layout.tiles):
        raise PhysadvError(f"assemble_tiles: {len(pages)} pages for {len(layout.tiles)} tiles")
    ppm = (dpi or layout.dpi) / MM_PER_INCH
    sheet = np.full((round(layout.page_height_mm * ppm), round(layout.page_width_mm * ppm), 3), 255, np.uint8)
    for page, t in zip(pages, layout.tiles):
        x, y = round(t.region.x * ppm), round(t.region.y * ppm)
        w, h = min(round(t.region.width * ppm), sheet.shape[1] - x), min(round(t.region.height * ppm), sheet.shape[0] - y)
        ox, oy = round(t.offset_mm[0] * ppm), round(t.offset_mm[1] * ppm)
        sheet[y:y + h, x:x + w] = page[oy:oy + h, ox:ox + w, :3]
    return sheet


# --------------------------------------------------------------------------- files
def _write_raster(path: Path, page: np.ndarray, dpi: float) -> None:
    from PIL import Image

    im = Image.fromarray(page)
    with atomic_path(path) as tmp:
        if path.suffix == ".png":
            im.save(tmp, format="PNG", dpi=(dpi, dpi))
        else:
            im.save(tmp, format="TIFF", dpi=(dpi, dpi), compression="tiff_lzw")


def export_print(texture: torch.Tensor | np.ndarray, out_dir: str | Path, cfg: ExportConfig | None = None,
                 mask: np.ndarray | None = None, kind: str | None = None) -> PrintLayout:
    """Compose the sheet and write ``<basename>.png/.tiff/.pdf`` (or one file per tile) and ``layout.json``."""
    cfg = cfg or ExportConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sheet, layout = compose_page(texture, cfg, mask, kind)
    ppm = cfg.dpi / MM_PER_INCH
    name = cfg.basename
    if not cfg.tile:
        if "png" in cfg.formats:
            _write_raster(out / f"{name}.png", sheet, cfg.dpi)
        if "tiff" in cfg.formats:
            _write_raster(out / f"{name}.tiff", sheet, cfg.dpi)
        if "pdf" in cfg.formats:
            write_pdf(out / f"{name}.pdf", [sheet], 1, cfg.dpi, title=cfg.label or name)
        layout.files = {f: f"{name}.{f}" for f in cfg.formats}
    else:
        plan = plan_tiles(sheet.shape[1], sheet.shape[0], cfg.tile, cfg.dpi, cfg.tile_margin_mm, cfg.overlap_mm)
        # the sheet itself, for reference and for simulated captures of the assembled print
        if "png" in cfg.formats:
            _write_raster(out / f"{name}_sheet.png", sheet, cfg.dpi)
        if "tiff" in cfg.formats:
            _write_raster(out / f"{name}_sheet.tiff", sheet, cfg.dpi)
        for i, t in enumerate(plan):
            t_file = f"{name}_tile{i + 1:02d}_r{t['row'] + 1}c{t['col'] + 1}.png"
            layout.tiles.append(Tile(index=i, row=t["row"], col=t["col"], file=t_file if "png" in cfg.formats else "",
                                     region=Rect(t["x"] / ppm, t["y"] / ppm, t["w"] / ppm, t["h"] / ppm),
                                     offset_mm=[t["margin"] / ppm, t["margin"] / ppm],
                                     page_width_mm=t["page_w"] / ppm, page_height_mm=t["page_h"] / ppm))
            if "png" in cfg.formats:
                _write_raster(out / t_file, render_tile(sheet, t, ppm), cfg.dpi)
        if "pdf" in cfg.formats:
            write_pdf(out / f"{name}_tiles.pdf", (render_tile(sheet, t, ppm) for t in plan), len(plan), cfg.dpi,
                      title=cfg.label or name)
        layout.files = {k: v for k, v in (("png", f"{name}_sheet.png"), ("tiff", f"{name}_sheet.tiff"),
                                                           ("pdf", f"{name}_tiles.pdf")) if k in cfg.formats}
    layout.to_json(out / "layout.json")
    return layout


__all__ = ["ExportConfig", "export_print", "compose_page", "parse_length", "plan_tiles", "render_tile", "assemble_tiles", "as_rgb_alpha",
           "PAPER_MM"]
