"""Traffic-sign faces drawn by the project with OpenCV: shapes, borders, symbols and Hershey-font text.

Each sign is drawn once on a large square canvas (anti-aliased polygons and lines) and downsampled
with area averaging to the size asked for, so every size is anti-aliased. The square texture spans
the sign's bounding square: ``size_m`` metres across, the shape touching all four sides.

    sign_classes()                       # stable order: the class names used everywhere
    rgb, alpha = sign_texture("stop", 256)   # 3 x S x S and 1 x S x S in [0, 1], sRGB
    sign_spec("stop").size_m, sign_spec("stop").shape, sign_spec("stop").outline()  # 0.75, 'octagon', K x 2 metres

Colours are sRGB values close to the RAL colours the Vienna convention prescribes (sign red
RAL 3020, blue RAL 5017, yellow RAL 1023). Designs follow GTSRB's German signs, with the US/European
red octagon for stop (RP2 attacks a stop sign).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import torch

from physadv.core.errors import PhysadvError

MASTER = 1024  # drawing canvas, pixels

RED = (0.80, 0.08, 0.10)
WHITE = (0.96, 0.96, 0.95)
BLACK = (0.05, 0.05, 0.05)
BLUE = (0.05, 0.30, 0.62)
YELLOW = (0.98, 0.76, 0.05)


@dataclass(frozen=True)
class SignSpec:
    """One sign class: its name, shape (octagon, circle, triangle, diamond, rectangle) and size across in metres."""

    name: str
    shape: str
    size_m: float
    title: str
    pointing_down: bool = False  # for triangles: yield points down

    def outline(self, n_circle: int = 64) -> np.ndarray:
        """The sign's outline in plane metres (``K x 2``, counter-clockwise, +y up, centred on the origin)."""
        r = self.size_m / 2
        if self.shape == "circle":
            a = np.linspace(0, 2 * np.pi, n_circle, endpoint=False)
            return r * np.column_stack([np.cos(a), np.sin(a)])
        return r * _unit_polygon(self.shape, self.pointing_down)


def _unit_polygon(shape: str, pointing_down: bool = False) -> np.ndarray:
    """Vertices (+y up, counter-clockwise) of a shape inscribed in the square [-1, 1]^2."""
    if shape == "octagon":  # flats touch the square's sides
        a = np.deg2rad(22.5 + 45 * np.arange(8))
        return np.column_stack([np.cos(a), np.sin(a)]) / math.cos(math.pi / 8)
    if shape == "diamond":
        return np.array([[1.0, 0], [0, 1], [-1, 0], [0, -1]])
    if shape == "rectangle":
        return np.array([[1.0, -1], [1, 1], [-1, 1], [-1, -1]])
    if shape == "triangle":  # equilateral, full width, base on the bottom (or top when pointing down)
        h = math.sqrt(3)  # height for side 2
        top, bottom = 1.0, 1.0 - h
        pts = np.array([[-1, bottom], [1, bottom], [0, top]]) - np.array([0, (top + bottom) / 2])
        return pts * np.array([1, -1]) if pointing_down else pts
    raise PhysadvError(f"unknown sign shape '{shape}'")


_SPECS: list[SignSpec] = [
    SignSpec("stop", "octagon", 0.75, "Stop"),
    *[SignSpec(f"speed_limit_{v}", "circle", 0.60, f"Speed limit {v}") for v in (30, 50, 60, 70, 80, 100)],
    SignSpec("yield", "triangle", 0.90, "Yield (give way)", pointing_down=True),
    SignSpec("no_entry", "circle", 0.60, "No entry"),
    SignSpec("keep_right", "circle", 0.60, "Keep right"),
    SignSpec("ahead_only", "circle", 0.60, "Ahead only"),
    SignSpec("priority_road", "diamond", 0.85, "Priority road"),
    SignSpec("pedestrian_crossing", "rectangle", 0.60, "Pedestrian crossing"),
    SignSpec("general_caution", "triangle", 0.90, "General caution"),
    SignSpec("no_overtaking", "circle", 0.60, "No overtaking"),
]
_BY_NAME = {s.name: s for s in _SPECS}


def sign_classes() -> list[str]:
    """The sign class names in their fixed order (the label index is the position here)."""
    return [s.name for s in _SPECS]


def sign_spec(name: str) -> SignSpec:
    if name not in _BY_NAME:
        raise PhysadvError(f"unknown sign class '{name}'; known: {', '.join(sign_classes())}")
    return _BY_NAME[name]


# --------------------------------------------------------------------------- drawing helpers (master canvas)
class _Canvas:
    """An RGB + alpha float canvas of MASTER x MASTER pixels; coordinates in [-1, 1] (+y up)."""

    def __init__(self) -> None:
        self.rgb = np.zeros((MASTER, MASTER, 3), np.float32)
        self.alpha = np.zeros((MASTER, MASTER), np.float32)

    @staticmethod
    def px(points: np.ndarray) -> np.ndarray:
        """[-1, 1] plane coordinates (+y up) -> fixed-point pixel coordinates for cv2 (shift=4)."""
        p = np.asarray(points, np.float64).reshape(-1, 2)
        xy = np.column_stack([(p[:, 0] + 1) / 2 * MASTER, (1 - p[:, 1]) / 2 * MASTER])
        return np.round(xy * 16).astype(np.int32)

    def _paint(self, mask: np.ndarray, colour) -> None:
        x, y, w, h = cv2.boundingRect(mask)  # only where the mask is non-zero
        m = mask[y : y + h, x : x + w].astype(np.float32)[..., None] / 255.0
        region = self.rgb[y : y + h, x : x + w]
        region[:] = region * (1 - m) + m * np.asarray(colour, np.float32)

    def polygon(self, points: np.ndarray, colour, shape_alpha: bool = False) -> None:
        mask = np.zeros((MASTER, MASTER), np.uint8)
        cv2.fillPoly(mask, [self.px(points)], 255, cv2.LINE_AA, shift=4)
        if shape_alpha:  # the sign's outer shape: its colour also fills the (transparent) outside
            self.rgb[:] = np.asarray(colour, np.float32)
        self._paint(mask, colour)
        if shape_alpha:
            self.alpha = np.maximum(self.alpha, mask.astype(np.float32) / 255.0)

    def circle(self, centre, radius: float, colour, shape_alpha: bool = False) -> None:
        a = np.linspace(0, 2 * np.pi, 360, endpoint=False)
        self.polygon(np.column_stack([centre[0] + radius * np.cos(a), centre[1] + radius * np.sin(a)]), colour, shape_alpha)

    def line(self, p0, p1, width: float, colour) -> None:
        """A thick line with round caps; ``width`` in [-1, 1] units."""
        mask = np.zeros((MASTER, MASTER), np.uint8)
        a, b = self.px(np.array([p0, p1]))
        cv2.line(mask, tuple(map(int, a)), tuple(map(int, b)), 255, max(1, int(round(width / 2 * MASTER))), cv2.LINE_AA, shift=4)
        self._paint(mask, colour)

    def text(self, text: str, box: tuple[float, float, float, float], colour, thickness: float = 0.09,
             font: int = cv2.FONT_HERSHEY_DUPLEX) -> None:
        """``text`` stretched to fill ``box = (x0, y0, x1, y1)`` in [-1, 1] coordinates (+y up)."""
        scale, th = 4.0, max(1, int(thickness * 100))
        (tw, tht), base = cv2.getTextSize(text, font, scale, th)
        pad = th
        img = np.zeros((tht + base + 2 * pad, tw + 2 * pad), np.uint8)
        cv2.putText(img, text, (pad, pad + tht), font, scale, 255, th, cv2.LINE_AA)
        ys, xs = np.nonzero(img > 0)
        img = img[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        (x0, y0), (x1, y1) = self.px(np.array([[box[0], box[3]], [box[2], box[1]]])) // 16
        glyphs = cv2.resize(img, (int(x1 - x0), int(y1 - y0)), interpolation=cv2.INTER_AREA)
        mask = np.zeros((MASTER, MASTER), np.uint8)
        mask[y0:y1, x0:x1] = glyphs
        self._paint(mask, colour)


def _arrow(c: _Canvas, angle_deg: float, colour, length: float = 1.0, width: float = 0.17) -> None:
    """A white arrow through the centre pointing at ``angle_deg`` (0 = up, clockwise)."""
    t = math.radians(angle_deg)
    d = np.array([math.sin(t), math.cos(t)])
    n = np.array([d[1], -d[0]])
    tail, tip = -0.45 * length * d, 0.5 * length * d
    head = 0.3 * length
    base = tip - head * d
    c.polygon(np.array([tail + n * width / 2, base + n * width / 2, base + n * width * 1.4, tip,
                        base - n * width * 1.4, base - n * width / 2, tail - n * width / 2]), colour)


def _car(c: _Canvas, cx: float, cy: float, colour, s: float = 0.22) -> None:
    """A car seen from behind: body, roof, two wheels."""
    c.polygon(np.array([[cx - s, cy - 0.35 * s], [cx + s, cy - 0.35 * s], [cx + s, cy + 0.25 * s], [cx - s, cy + 0.25 * s]]), colour)
    c.polygon(np.array([[cx - 0.7 * s, cy + 0.2 * s], [cx + 0.7 * s, cy + 0.2 * s], [cx + 0.5 * s, cy + 0.8 * s],
                        [cx - 0.5 * s, cy + 0.8 * s]]), colour)
    for x in (cx - 0.65 * s, cx + 0.65 * s):
        c.polygon(np.array([[x - 0.2 * s, cy - 0.6 * s], [x + 0.2 * s, cy - 0.6 * s], [x + 0.2 * s, cy - 0.3 * s],
                            [x - 0.2 * s, cy - 0.3 * s]]), colour)


def _draw(name: str) -> _Canvas:
    spec = sign_spec(name)
    c = _Canvas()
    if spec.shape == "octagon":  # stop: red octagon, thin white border, STOP
        oct_ = _unit_polygon("octagon")
        c.polygon(oct_, WHITE, shape_alpha=True)
        c.polygon(oct_ * 0.92, RED)
        c.text("STOP", (-0.74, -0.27, 0.74, 0.27), WHITE, thickness=0.1)
    elif name.startswith("speed_limit_") or name == "no_overtaking":  # white disc, red ring
        c.circle((0, 0), 1.0, RED, shape_alpha=True)
        c.circle((0, 0), 0.78, WHITE)
        if name == "no_overtaking":
            _car(c, -0.3, -0.05, RED)
            _car(c, 0.3, -0.05, BLACK)
        else:
            digits = name.rsplit("_", 1)[1]
            half = 0.5 if len(digits) == 2 else 0.62
            c.text(digits, (-half, -0.42, half, 0.42), BLACK, thickness=0.11, font=cv2.FONT_HERSHEY_SIMPLEX)
    elif name == "no_entry":  # red disc, white bar
        c.circle((0, 0), 1.0, WHITE, shape_alpha=True)
        c.circle((0, 0), 0.96, RED)
        c.polygon(np.array([[-0.72, -0.17], [0.72, -0.17], [0.72, 0.17], [-0.72, 0.17]]), WHITE)
    elif name in ("keep_right", "ahead_only"):  # blue disc, white arrow
        c.circle((0, 0), 1.0, WHITE, shape_alpha=True)
        c.circle((0, 0), 0.96, BLUE)
        _arrow(c, 135.0 if name == "keep_right" else 0.0, WHITE, length=1.25, width=0.2)
    elif spec.shape == "triangle":  # red-bordered white triangle
        tri = _unit_polygon("triangle", spec.pointing_down)
        centroid = tri.mean(0)
        c.polygon(tri, RED, shape_alpha=True)
        c.polygon(centroid + (tri - centroid) * 0.66, WHITE)
        if name == "general_caution":
            c.polygon(np.array([[-0.07, 0.35], [0.07, 0.35], [0.035, -0.25], [-0.035, -0.25]]) + [0, -0.12], BLACK)
            c.circle((0, -0.5), 0.075, BLACK)
    elif spec.shape == "diamond":  # priority road: white diamond, yellow centre, thin black edge
        d = _unit_polygon("diamond")
        c.polygon(d, BLACK, shape_alpha=True)
        c.polygon(d * 0.96, WHITE)
        c.polygon(d * 0.62, YELLOW)
    elif name == "pedestrian_crossing":  # blue square, white triangle, black walker on stripes
        sq = _unit_polygon("rectangle")
        c.polygon(sq, WHITE, shape_alpha=True)
        c.polygon(sq * 0.95, BLUE)
        c.polygon(np.array([[-0.75, -0.62], [0.75, -0.62], [0, 0.78]]), WHITE)
        for x in (-0.45, -0.2, 0.05, 0.3):
            c.polygon(np.array([[x, -0.55], [x + 0.14, -0.55], [x + 0.1, -0.4], [x - 0.04, -0.4]]), BLACK)
        c.circle((0.02, 0.32), 0.075, BLACK)
        c.line((0.0, 0.2), (-0.06, -0.1), 0.09, BLACK)  # body
        c.line((-0.06, -0.1), (-0.22, -0.33), 0.07, BLACK)  # legs
        c.line((-0.06, -0.1), (0.12, -0.33), 0.07, BLACK)
        c.line((0.0, 0.15), (-0.18, -0.02), 0.06, BLACK)  # arms
        c.line((0.0, 0.15), (0.17, 0.0), 0.06, BLACK)
    else:  # pragma: no cover - every spec has a drawing
        raise PhysadvError(f"no drawing for sign '{name}'")
    return c


@lru_cache(maxsize=None)
def _master(name: str) -> tuple[np.ndarray, np.ndarray]:
    c = _draw(name)
    return c.rgb, c.alpha


def sign_texture(name: str, size_px: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rgb 3 x S x S, alpha 1 x S x S)`` of sign ``name`` in [0, 1] sRGB (area-downsampled, anti-aliased)."""
    if not isinstance(size_px, int) or not 8 <= size_px <= MASTER:
        raise PhysadvError(f"sign texture size_px must be an integer from 8 to {MASTER}, got {size_px!r}")
    rgb, alpha = _master(name)
    if size_px != MASTER:
        rgb = cv2.resize(rgb, (size_px, size_px), interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(alpha, (size_px, size_px), interpolation=cv2.INTER_AREA)
    # colour outside the sign is irrelevant (renderers premultiply by alpha): keep the drawn colour
    return (torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).clamp(0, 1),
            torch.from_numpy(np.ascontiguousarray(alpha))[None].clamp(0, 1))


def all_textures(size_px: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Every class's texture stacked in ``sign_classes()`` order: ``(K x 3 x S x S, K x 1 x S x S)``."""
    pairs = [sign_texture(n, size_px) for n in sign_classes()]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
