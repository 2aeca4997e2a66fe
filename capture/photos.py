"""Photo sets: a folder of photos and a manifest CSV saying how each was taken.

Manifest columns: ``file, distance, distance_unit, angle, light, notes`` (``distance_unit`` is m, ft,
cm or in; ``angle`` in degrees off the print's normal; distance or angle may be blank, then they
are measured from the fiducials). Optional ``x0,y0,x1,y1,x2,y2,x3,y3``: the object's corners in
the photo (pixels, as displayed, order top-left, top-right, bottom-right, bottom-left), a fallback
when the fiducials are not seen.

Photos are read EXIF-aware as uint8 (never a full-size float copy); a photo above ``max_pixels``
is decoded reduced (JPEG DCT scaling through ``PIL.Image.draft``, otherwise a resize right after
decoding) and its ``scale`` says by how much.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from physadv.core.errors import PhysadvError

UNITS_M = {"m": 1.0, "ft": 0.3048, "cm": 0.01, "in": 0.0254}
COLUMNS = ["file", "distance", "distance_unit", "angle", "light", "notes"]
CORNER_COLUMNS = [f"{a}{i}" for i in range(4) for a in ("x", "y")]

# every photo gets one of these
OK, UNREADABLE, MISSING, NOT_FOUND = "ok", "unreadable", "missing file", "object not found"


@dataclass
class ManifestRow:
    line: int  # line number in the CSV (1 = header)
    file: str
    distance: float | None  # in ``distance_unit``
    distance_unit: str
    angle: float | None  # degrees
    light: str = ""
    notes: str = ""
    corners: np.ndarray | None = None  # 4 x 2 photo pixels (original size)

    @property
    def distance_m(self) -> float | None:
        return None if self.distance is None else self.distance * UNITS_M[self.distance_unit]


@dataclass
class Photo:
    image: np.ndarray  # H x W x 3 uint8 RGB, EXIF orientation applied
    scale: float  # loaded pixels per original pixel (1.0 unless reduced)
    original_size: tuple[int, int]  # (width, height) as displayed


def _number(text: str, what: str, where: str) -> float | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise PhysadvError(f"{where}: {what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise PhysadvError(f"{where}: {what} {text!r} is not finite")
    return value


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """Parse a manifest CSV. A malformed value is a PhysadvError naming the file, line and column."""
    path = Path(path)
    if not path.is_file():
        raise PhysadvError(f"manifest not found: {path}")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        if "file" not in header:
            raise PhysadvError(f"{path}: the manifest needs a 'file' column (columns: {', '.join(COLUMNS)}; "
                               f"optional {', '.join(CORNER_COLUMNS)}); found {header or 'no header'}")
        has_corners = all(c in header for c in CORNER_COLUMNS)
        rows = []
        for n, raw in enumerate(reader, start=2):
            raw = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            where = f"{path}:{n}"
            if not raw.get("file"):
                if not any(raw.values()):
                    continue  # blank line
                raise PhysadvError(f"{where}: empty 'file'")
            distance = _number(raw.get("distance", ""), "distance", where)
            unit = (raw.get("distance_unit") or "m").lower()
            if unit not in UNITS_M:
                raise PhysadvError(f"{where}: distance_unit {unit!r} is not one of {', '.join(UNITS_M)}")
            if distance is not None and distance <= 0:
                raise PhysadvError(f"{where}: distance {distance} must be positive")
            angle = _number(raw.get("angle", ""), "angle", where)
            corners = None
            if has_corners:
                vals = [_number(raw.get(c, ""), c, where) for c in CORNER_COLUMNS]
                if all(v is not None for v in vals):
                    corners = np.array(vals, dtype=np.float64).reshape(4, 2)
                elif any(v is not None for v in vals):
                    raise PhysadvError(f"{where}: give all 8 corner values x0,y0..x3,y3 or none")
            rows.append(ManifestRow(n, raw["file"], distance, unit, angle, raw.get("light", ""), raw.get("notes", ""),
                                    corners))
    return rows


def write_manifest(path: str | Path, rows: list[ManifestRow]) -> Path:
    """Write rows in the manifest format (corner columns only if some row has corners)."""
    import io

    from physadv.core.io import atomic_write_text

    with_corners = any(r.corners is not None for r in rows)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS + (CORNER_COLUMNS if with_corners else []))
    for r in rows:
        fmt = lambda v: "" if v is None else f"{v:g}"  # noqa: E731
        line = [r.file, fmt(r.distance), r.distance_unit, fmt(r.angle), r.light, r.notes]
        if with_corners:
            line += [f"{v:.2f}" for v in r.corners.ravel()] if r.corners is not None else [""] * 8
        w.writerow(line)
    return atomic_write_text(path, buf.getvalue())


def load_photo(path: str | Path, max_pixels: int = 24_000_000) -> Photo:
    """Read a photo as uint8 RGB with EXIF orientation applied, reduced if above ``max_pixels``.

    Unreadable or truncated files raise a PhysadvError naming the file.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise PhysadvError(f"photo not found: {path}")
    bomb_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # we reduce big photos ourselves
    try:
        with Image.open(path) as im:
            w0, h0 = im.size
            reduce = math.sqrt(w0 * h0 / max_pixels) if w0 * h0 > max_pixels else 1.0
            if reduce > 1 and im.format == "JPEG":  # decode at 1/2, 1/4 or 1/8 (DCT scaling): no full-size buffer
                k = 2 ** min(3, math.ceil(math.log2(reduce)))
                im.draft("RGB", (math.ceil(w0 / k), math.ceil(h0 / k)))
            im.load()  # full decoding here: truncation is caught now
            if im.width * im.height > max_pixels:
                f = math.sqrt(max_pixels / (im.width * im.height))
                im = im.resize((max(1, int(im.width * f)), max(1, int(im.height * f))), Image.Resampling.BOX)
            scale = im.width / w0
            im = ImageOps.exif_transpose(im)
            orient_swapped = im.size != (round(w0 * scale), round(h0 * scale)) and im.size == (
                round(h0 * scale), round(w0 * scale))
            arr = np.asarray(im if im.mode == "RGB" else im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise PhysadvError(f"{path}: unreadable or corrupt image ({exc})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = bomb_limit
    original = (h0, w0) if orient_swapped else (w0, h0)
    return Photo(np.ascontiguousarray(arr), scale, original)


__all__ = ["ManifestRow", "Photo", "read_manifest", "write_manifest", "load_photo", "UNITS_M", "COLUMNS",
           "CORNER_COLUMNS", "OK", "UNREADABLE", "MISSING", "NOT_FOUND"]
