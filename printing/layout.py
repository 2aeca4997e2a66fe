"""The print layout: where things sit on a printed page, in millimetres. The contract with ``capture``.

Every export writes a ``layout.json`` beside its files. Coordinates are millimetres from the page's
top-left corner, x to the right, y down. The object's texture fills ``object_rect`` exactly. ArUco
markers (``dictionary``, default ``DICT_4X4_50``) sit around the object with a white quiet zone; each
marker lists its 4 outer corners (the corners of its black square, as ``cv2.aruco`` detects them) in
OpenCV's order: top-left, top-right, bottom-right, bottom-left.

A reader of a photo finds the markers, fits the homography page-mm -> photo pixels from
``marker_corners_mm()`` and the detected corners, and rectifies the object from ``object_corners_mm()``.
For a tiled export, the page is the assembled sheet (all tiles put together); ``tiles`` says which part
of that sheet each printed page shows.

    layout = PrintLayout.from_json("out/layout.json")
    H, _ = cv2.findHomography(mm_points, px_points)
    quad_px = cv2.perspectiveTransform(layout.object_corners_mm()[None], H)[0]
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from physadv.core.errors import PhysadvError

MM_PER_INCH = 25.4
LAYOUT_VERSION = 1


@dataclass
class Rect:
    """An axis-aligned rectangle in mm: top-left corner (x, y), width, height."""

    x: float
    y: float
    width: float
    height: float

    def corners(self) -> np.ndarray:
        """4 x 2 corners (x, y) in OpenCV order: top-left, top-right, bottom-right, bottom-left."""
        x0, y0, x1, y1 = self.x, self.y, self.x + self.width, self.y + self.height
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


@dataclass
class Marker:
    """One ArUco marker: its id and its 4 outer corners in mm (TL, TR, BR, BL)."""

    id: int
    corners_mm: list[list[float]]

    @property
    def size_mm(self) -> float:
        c = np.asarray(self.corners_mm)
        return float(np.linalg.norm(c[1] - c[0]))


@dataclass
class Tile:
    """One printed page of a tiled export: it shows ``region`` of the assembled sheet (mm) at ``offset`` on its page."""

    index: int
    row: int
    col: int
    file: str  # the PNG of this page (the PDF holds every page, page ``index``)
    region: Rect  # part of the assembled sheet shown on this page
    offset_mm: list[float]  # where region's top-left corner sits on the printed page
    page_width_mm: float
    page_height_mm: float


@dataclass
class Patch:
    """A colour patch of a calibration chart: its rectangle and intended sRGB colour in [0, 1]."""

    rect: Rect
    rgb: list[float]


@dataclass
class PrintLayout:
    page_width_mm: float
    page_height_mm: float
    dpi: float
    object_rect: Rect
    dictionary: str = "DICT_4X4_50"
    markers: list[Marker] = field(default_factory=list)
    kind: str = "texture"  # "texture", "stickers" or "chart"
    run_id: str = ""
    files: dict[str, str] = field(default_factory=dict)  # "png", "tiff", "pdf" -> file name beside layout.json
    tiles: list[Tile] = field(default_factory=list)  # empty unless tiled
    patches: list[Patch] = field(default_factory=list)  # colour chart only
    version: int = LAYOUT_VERSION

    # ---------------------------------------------------------------- geometry helpers
    def object_corners_mm(self) -> np.ndarray:
        """4 x 2 corners of the object in page mm: TL, TR, BR, BL."""
        return self.object_rect.corners()

    def marker_corners_mm(self) -> dict[int, np.ndarray]:
        """Marker id -> 4 x 2 corners in page mm (TL, TR, BR, BL), as ``cv2.aruco`` reports them."""
        return {m.id: np.asarray(m.corners_mm, dtype=np.float64) for m in self.markers}

    @property
    def px_per_mm(self) -> float:
        return self.dpi / MM_PER_INCH

    def page_size_px(self) -> tuple[int, int]:
        """(width, height) of the page raster at ``dpi``."""
        return round(self.page_width_mm * self.px_per_mm), round(self.page_height_mm * self.px_per_mm)

    # ---------------------------------------------------------------- JSON
    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, path: str | Path | None = None) -> str:
        """The layout as JSON text; written atomically to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        if path is not None:
            from physadv.core.io import atomic_write_text

            atomic_write_text(path, text)
        return text

    @classmethod
    def from_dict(cls, d: dict, source: str = "layout") -> PrintLayout:
        try:
            d = dict(d)
            version = int(d.get("version", LAYOUT_VERSION))
            if version > LAYOUT_VERSION:
                raise PhysadvError(f"{source}: layout version {version} is newer than this physadv reads ({LAYOUT_VERSION})")
            d["object_rect"] = Rect(**d["object_rect"])
            d["markers"] = [Marker(id=int(m["id"]), corners_mm=[[float(v) for v in c] for c in m["corners_mm"]])
                            for m in d.get("markers", [])]
            for m in d["markers"]:
                if len(m.corners_mm) != 4 or any(len(c) != 2 for c in m.corners_mm):
                    raise PhysadvError(f"{source}: marker {m.id} needs 4 corners of (x, y) mm")
            d["tiles"] = [Tile(**{**t, "region": Rect(**t["region"])}) for t in d.get("tiles", [])]
            d["patches"] = [Patch(rect=Rect(**p["rect"]), rgb=list(p["rgb"])) for p in d.get("patches", [])]
            return cls(**d)
        except PhysadvError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise PhysadvError(f"{source}: not a physadv print layout ({exc.__class__.__name__}: {exc})") from None

    @classmethod
    def from_json(cls, path_or_text: str | Path) -> PrintLayout:
        """Read a layout from a ``layout.json`` path (or from JSON text)."""
        text, source = str(path_or_text), "layout text"
        if not text.lstrip().startswith("{"):
            p = Path(path_or_text)
            if p.is_dir():
                p = p / "layout.json"
            if not p.is_file():
                raise PhysadvError(f"layout file not found: {p}")
            text, source = p.read_text(encoding="utf-8"), str(p)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PhysadvError(f"{source}: invalid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise PhysadvError(f"{source}: expected a JSON object")
        return cls.from_dict(data, source)


def corner_markers(object_rect: Rect, size_mm: float, gap_mm: float, ids: tuple[int, ...] = (0, 1, 2, 3)) -> list[Marker]:
    """4 square markers diagonally outside the object's corners (TL, TR, BR, BL), ``gap_mm`` of white between."""
    r, s, g = object_rect, size_mm, gap_mm
    x0, y0, x1, y1 = r.x - g - s, r.y - g - s, r.x + r.width + g, r.y + r.height + g
    origins = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    return [Marker(id=int(i), corners_mm=Rect(x, y, s, s).corners().tolist()) for i, (x, y) in zip(ids, origins)]


__all__ = ["corner_markers", "PrintLayout", "Rect", "Marker", "Tile", "Patch", "MM_PER_INCH"]
