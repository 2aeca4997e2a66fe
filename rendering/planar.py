"""Planar objects (signs, posters, stickers, patches) seen by a pinhole camera: an exact homography warp.

A flat object of ``width x height`` metres lies in the world plane ``z = 0`` centred on the origin,
facing ``+z`` with ``+y`` up (see ``rendering.camera``). Its texture is ``C x h x w`` (RGB plus an
optional alpha channel) in [0, 1] sRGB; texel ``(i, j)`` covers the plane square whose centre is
``x = ((j + 0.5) / w - 0.5) * width``, ``y = (0.5 - (i + 0.5) / h) * height``.

Pixel coordinates follow OpenCV: pixel ``(u, v)`` has its centre at integer ``(u, v)``, so a
window or an image of ``W`` pixels spans ``[-0.5, W - 0.5]``. The homography

    texel -> plane metres -> camera pixels  (``plane_homography``)  -> output pixels (window, supersampling)

is exact for a plane under a pinhole camera. Colour and alpha are warped together with Kornia's
``warp_perspective`` (bilinear, zero outside the texture), premultiplied by alpha so that edges
blend correctly, then composited over the backgrounds. Everything is differentiable with respect to
the texture (and the backgrounds); the geometry is not.

    out = render_planar(texture, poses, intr, size_m=(0.75, 0.75), backgrounds=bg, supersample=2)
    out.image, out.alpha, out.corners, out.bbox
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from kornia.geometry.transform import warp_perspective

from physadv.core.errors import PhysadvError
from physadv.rendering.camera import Intrinsics, Pose, plane_homography

Window = tuple[float, float, float, float]  # x0, y0, x1, y1: pixel-edge coordinates in the camera image


@dataclass
class PlanarRender:
    """What ``render_planar`` returns (``N`` = number of poses).

    image: ``N x 3 x H x W`` composited over the backgrounds (or premultiplied colour over black if none);
    alpha: ``N x 1 x H x W`` coverage of the object; corners: ``N x 4 x 2`` projected corners of the
    object's rectangle (top-left, top-right, bottom-right, bottom-left) in output pixels; bbox: ``N x 4``
    ``(x0, y0, x1, y1)`` pixel-edge box of the projected outline (the alpha > 0.5 region of the texture)
    in output pixels; homography: ``N x 3 x 3`` texel -> output pixel.
    """

    image: torch.Tensor
    alpha: torch.Tensor
    corners: torch.Tensor
    bbox: torch.Tensor
    homography: torch.Tensor


# --------------------------------------------------------------------------- geometry (numpy, float64)
def texel_to_plane(size_m: tuple[float, float], tex_hw: tuple[int, int]) -> np.ndarray:
    """3x3 map from texel index coordinates ``(j, i, 1)`` to plane metres ``(x, y, 1)``."""
    width, height = size_m
    h, w = tex_hw
    return np.array([[width / w, 0.0, -width / 2 + 0.5 * width / w],
                     [0.0, -height / h, height / 2 - 0.5 * height / h],
                     [0.0, 0.0, 1.0]])


def window_transform(window: Window, out_hw: tuple[int, int]) -> np.ndarray:
    """3x3 map from camera pixels to the pixels of a ``window`` (pixel-edge box) resampled to ``out_hw``."""
    x0, y0, x1, y1 = window
    h, w = out_hw
    sx, sy = w / (x1 - x0), h / (y1 - y0)
    return np.array([[sx, 0.0, -sx * x0 - 0.5], [0.0, sy, -sy * y0 - 0.5], [0.0, 0.0, 1.0]])


def supersample_transform(factor: int) -> np.ndarray:
    """3x3 map from pixel coordinates to those of the same image ``factor`` times finer (centres stay centres)."""
    s = float(factor)
    return np.array([[s, 0.0, 0.5 * s - 0.5], [0.0, s, 0.5 * s - 0.5], [0.0, 0.0, 1.0]])


def object_homography(pose: Pose, intr: Intrinsics, size_m: tuple[float, float], tex_hw: tuple[int, int]) -> np.ndarray:
    """3x3 homography from texel coordinates to camera pixels for the object at ``pose``."""
    return plane_homography(pose, intr) @ texel_to_plane(size_m, tex_hw)


def apply_homography(H: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``points`` (``N x 2``) mapped by the 3x3 ``H``."""
    p = np.column_stack([points, np.ones(len(points))]) @ H.T
    if (p[:, 2] <= 0).any():
        raise PhysadvError("part of the planar object is behind the camera")
    return p[:, :2] / p[:, 2:3]


def rectangle_corners(size_m: tuple[float, float]) -> np.ndarray:
    """The object's rectangle in plane metres: top-left, top-right, bottom-right, bottom-left."""
    w, h = size_m[0] / 2, size_m[1] / 2
    return np.array([[-w, h], [w, h], [w, -h], [-w, -h]], dtype=np.float64)


def outline_from_alpha(alpha: torch.Tensor | np.ndarray, size_m: tuple[float, float]) -> np.ndarray:
    """Convex outline (plane metres, ``K x 2``) of the ``alpha > 0.5`` region of a texture's alpha ``h x w``."""
    import cv2

    a = alpha.detach().cpu().numpy() if isinstance(alpha, torch.Tensor) else np.asarray(alpha)
    a = a.reshape(a.shape[-2:])
    mask = (a > 0.5).astype(np.uint8)
    if not mask.any():
        raise PhysadvError("the texture's alpha mask is empty: nothing to render")
    pts = cv2.findNonZero(mask).reshape(-1, 2).astype(np.float64)
    # the hull of the texel squares (each texel centre's four corners), not of the texel centres
    hull = cv2.convexHull(np.concatenate([pts + d for d in ((-.5, -.5), (.5, -.5), (.5, .5), (-.5, .5))]).astype(np.float32))
    hull = hull.reshape(-1, 2).astype(np.float64)
    return apply_homography(texel_to_plane(size_m, a.shape), hull)


def bbox_of(points: np.ndarray) -> np.ndarray:
    """``(x0, y0, x1, y1)`` of ``K x 2`` points."""
    return np.array([points[:, 0].min(), points[:, 1].min(), points[:, 0].max(), points[:, 1].max()])


# --------------------------------------------------------------------------- rendering
def _split_texture(texture: torch.Tensor, alpha: torch.Tensor | None) -> torch.Tensor:
    """Validate and return an RGBA texture ``1|N x 4 x h x w``."""
    if not isinstance(texture, torch.Tensor):
        raise PhysadvError(f"texture must be a tensor, got {type(texture).__name__}")
    t = texture.unsqueeze(0) if texture.ndim == 3 else texture
    if t.ndim != 4 or t.shape[1] not in (3, 4):
        raise PhysadvError(f"texture must be 3 x h x w, 4 x h x w (RGBA) or N x 3|4 x h x w, got {tuple(texture.shape)}")
    if min(t.shape[-2:]) < 2:
        raise PhysadvError(f"texture is too small: {tuple(texture.shape)}")
    if alpha is not None:
        if t.shape[1] == 4:
            raise PhysadvError("texture already has an alpha channel (4 channels); do not pass alpha too")
        a = alpha.reshape(-1, 1, *alpha.shape[-2:]) if alpha.ndim in (2, 3, 4) else None
        if a is None or a.shape[-2:] != t.shape[-2:] or a.shape[0] not in (1, t.shape[0]):
            raise PhysadvError(f"alpha must be h x w or 1 x h x w matching the texture {tuple(t.shape[-2:])}, "
                               f"got {tuple(alpha.shape)}")
        t = torch.cat([t, a.to(t).expand(t.shape[0], -1, -1, -1)], 1)
    elif t.shape[1] == 3:
        t = torch.cat([t, torch.ones_like(t[:, :1])], 1)
    return t


def _check_size(size_m: float | Sequence[float]) -> tuple[float, float]:
    s = (float(size_m), float(size_m)) if isinstance(size_m, (int, float)) else tuple(float(v) for v in size_m)
    if len(s) != 2 or not all(v > 0 for v in s):
        raise PhysadvError(f"size_m must be a positive width (and height) in metres, got {size_m}")
    return s  # type: ignore[return-value]


def render_planar(texture: torch.Tensor, poses: Sequence[Pose], intr: Intrinsics, size_m: float | Sequence[float],
                  backgrounds: torch.Tensor | None = None, alpha: torch.Tensor | None = None, supersample: int = 1,
                  windows: Sequence[Window] | None = None, out_hw: tuple[int, int] | None = None,
                  outline_m: np.ndarray | None = None) -> PlanarRender:
    """Render a flat RGBA object at each of ``poses`` (one image per pose).

    texture: ``3|4 x h x w`` or ``N x 3|4 x h x w`` (one per pose) in [0, 1]; ``alpha`` (``h x w``) if
    the texture has no alpha channel (none: the whole rectangle is opaque). ``size_m``: width (and
    height) in metres. Output: the whole camera image (``intr.height x intr.width``), or, with
    ``windows`` (one ``(x0, y0, x1, y1)`` camera-pixel box per pose), each window resampled to
    ``out_hw``. ``supersample`` renders that many times finer and averages (anti-aliasing).
    ``backgrounds``: ``N x 3 x H x W`` (or ``3 x H x W``) of the output size. ``outline_m``: the
    object's outline in plane metres for ``bbox`` (default: the convex hull of the texture's alpha).
    Sampling is bilinear: when a texture is much finer than the output pixels, supersample (or pass
    a smaller texture) to avoid aliasing.
    """
    tex = _split_texture(texture, alpha)
    size = _check_size(size_m)
    n = len(poses)
    if n == 0:
        raise PhysadvError("render_planar needs at least one pose")
    if tex.shape[0] not in (1, n):
        raise PhysadvError(f"{tex.shape[0]} textures for {n} poses: give one texture or one per pose")
    if supersample < 1 or int(supersample) != supersample:
        raise PhysadvError(f"supersample must be a positive integer, got {supersample}")
    if windows is not None:
        if len(windows) != n or out_hw is None:
            raise PhysadvError(f"windows needs one box per pose ({n}) and out_hw")
        for w in windows:
            if not (w[2] > w[0] and w[3] > w[1]):
                raise PhysadvError(f"window {tuple(w)} is empty (need x1 > x0 and y1 > y0)")
    H_out, W_out = out_hw if windows is not None else (intr.height, intr.width)
    bg = None
    if backgrounds is not None:
        bg = backgrounds.unsqueeze(0) if backgrounds.ndim == 3 else backgrounds
        if bg.ndim != 4 or bg.shape[1] != 3 or tuple(bg.shape[-2:]) != (H_out, W_out) or bg.shape[0] not in (1, n):
            raise PhysadvError(f"backgrounds must be N x 3 x {H_out} x {W_out} (N = 1 or {n}), got {tuple(backgrounds.shape)}")
    h, w = tex.shape[-2:]
    outline = outline_from_alpha(tex[0, 3], size) if outline_m is None else np.asarray(outline_m, dtype=np.float64)
    rect = rectangle_corners(size)

    Ms, corners, boxes = [], [], []
    for k, pose in enumerate(poses):
        cam = plane_homography(pose, intr)
        view = window_transform(windows[k], (H_out, W_out)) if windows is not None else np.eye(3)
        corners.append(apply_homography(view @ cam, rect))
        boxes.append(bbox_of(apply_homography(view @ cam, outline)))
        Ms.append(view @ cam @ texel_to_plane(size, (h, w)))
    M = torch.tensor(np.stack([supersample_transform(supersample) @ m for m in Ms]), dtype=tex.dtype, device=tex.device)

    premult = torch.cat([tex[:, :3] * tex[:, 3:], tex[:, 3:]], 1).expand(n, -1, -1, -1)
    warped = warp_perspective(premult, M, (H_out * supersample, W_out * supersample), align_corners=True)
    # pixels on the plane's vanishing line (a grazing view whose horizon crosses the frame) map to infinity: nothing
    # of the object is there (NaN otherwise, which blur would spread); torch.where passes them no gradient
    warped = torch.where(torch.isfinite(warped), warped, torch.zeros_like(warped))
    if supersample > 1:
        warped = F.avg_pool2d(warped, supersample)
    colour, cover = warped[:, :3], warped[:, 3:].clamp(0, 1)
    image = colour if bg is None else colour + (1 - cover) * bg.to(colour)
    return PlanarRender(image.clamp(0, 1), cover, torch.tensor(np.stack(corners), dtype=tex.dtype),
                        torch.tensor(np.stack(boxes), dtype=tex.dtype), torch.tensor(np.stack(Ms), dtype=tex.dtype))
