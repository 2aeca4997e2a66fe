"""The synthetic sign world: signs placed in front of a camera at random pose and light, photographed,
and cropped GTSRB-style (sign plus a ~10% margin, resized to 32 x 32).

The camera is a real one (default: a 1920 x 1080 frame with a 50 degree horizontal field of view),
so distance fixes how many camera pixels the sign covers. Only the crop window around the sign is
rendered, on a working grid of ``work_px`` pixels: when the camera window is larger than that grid
the render is the camera image box-filtered down to it (supersampled), and the camera's blur and
noise, given per camera pixel, are scaled to the grid (a blur of sigma px becomes ``sigma * scale``;
noise averaged over ``1 / scale**2`` pixels falls by ``scale``); when the window is smaller, the
render is pixelated to the camera's resolution first. Either way resolution and blur fall with
distance as they would in a photo, without rendering 2 megapixel frames.

Order of effects (colour spaces noted): sign texture (sRGB) -> linear light x (exposure gain x
colour temperature x linear shading gradient) -> sRGB; warp onto a photo background (sRGB);
camera defocus blur, pixelation, sensor noise, contrast/brightness, JPEG; resize to the crop size.

    cfg = WorldConfig()
    data = generate_signs(cfg, per_class=100, seed=1)      # ImageSet of 32 x 32 crops
    load_dataset("signs", "train")                          # cached in cache_dir("signs") (after import physadv.rendering.signs)
    shots = photograph_sign(adv_texture, "stop", poses, cfg, g)  # differentiable: for physical attacks
    crop = gtsrb_crop(photo, bbox)                          # the same crop for real photos (capture/)
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from physadv.core.colour import linear_to_srgb, srgb_to_linear
from physadv.core.config import added_later, config_hash, load_config, to_dict
from physadv.core.data import ImageSet
from physadv.core.errors import PhysadvError
from physadv.core.io import cache_dir, cached_tensors
from physadv.rendering.augment import jpeg
from physadv.rendering.camera import Intrinsics, Pose, plane_homography
from physadv.rendering.planar import apply_homography, bbox_of, render_planar
from physadv.rendering.signs.textures import all_textures, sign_classes, sign_spec

Range = tuple[float, float]


def _check_range(name: str, r: Range, lo: float | None = None, hi: float | None = None) -> None:
    if r[0] > r[1]:
        raise ValueError(f"{name}: min {r[0]} is greater than max {r[1]}")
    if lo is not None and r[0] < lo:
        raise ValueError(f"{name}: {r[0]} is below {lo}")
    if hi is not None and r[1] > hi:
        raise ValueError(f"{name}: {r[1]} is above {hi}")


@dataclass
class CameraConfig:
    """The simulated camera: frame size in pixels and horizontal field of view in degrees."""

    width: int = 1920
    height: int = 1080
    fov_deg: float = 50.0

    def intrinsics(self) -> Intrinsics:
        return Intrinsics.from_fov(self.fov_deg, self.width, self.height)


@dataclass
class PoseRanges:
    """Where the camera stands. ``angle_deg``: how far the sign is turned from facing the camera
    (azimuth about the sign's vertical axis, either side, as in RP2's angle); distances in metres."""

    distance_m: Range = (1.2, 13.0)  # RP2's 5-40 ft (1.5-12.2 m) with a margin either side
    # how distances spread over their range: uniform in metres, or in log distance (the sign's apparent size spreads
    # evenly over its octaves: as many views from 1.5 to 3 m as from 6 to 12 m)
    distance_scale: Literal["linear", "log"] = added_later("linear")
    angle_deg: Range = (0.0, 65.0)  # RP2's 0-60 degrees with a margin
    elevation_deg: Range = (-8.0, 8.0)
    roll_deg: Range = (-5.0, 5.0)
    look_at_jitter_m: float = 0.2  # the camera aims up to this far from the sign's centre

    def validate(self) -> None:
        _check_range("distance_m", self.distance_m, lo=0.05)
        _check_range("angle_deg", self.angle_deg, lo=0.0, hi=85.0)
        _check_range("elevation_deg", self.elevation_deg, lo=-85.0, hi=85.0)
        _check_range("roll_deg", self.roll_deg)
        if self.look_at_jitter_m < 0:
            raise ValueError(f"look_at_jitter_m must be >= 0, got {self.look_at_jitter_m}")


@dataclass
class LightConfig:
    """Light on the sign (linear-light gain, colour temperature in kelvin, brightness gradient across it)."""

    gain: Range = (0.45, 1.5)
    temperature_k: Range = (4000.0, 9000.0)
    shading: float = 0.3  # the brightness changes by up to this fraction across the sign

    def validate(self) -> None:
        _check_range("gain", self.gain, lo=0.0)
        _check_range("temperature_k", self.temperature_k, lo=1000.0, hi=40000.0)


@dataclass
class CameraEffects:
    """Camera imperfections, per camera pixel: defocus blur sigma, sensor noise std, JPEG quality."""

    blur_px: Range = (0.0, 2.5)
    noise_std: Range = (0.0, 0.04)
    contrast: Range = (0.7, 1.2)
    brightness: Range = (-0.1, 0.1)
    jpeg_quality: Range = (40.0, 95.0)

    def validate(self) -> None:
        _check_range("blur_px", self.blur_px, lo=0.0)
        _check_range("noise_std", self.noise_std, lo=0.0)
        _check_range("contrast", self.contrast, lo=0.0)
        _check_range("brightness", self.brightness)
        _check_range("jpeg_quality", self.jpeg_quality, lo=1.0, hi=100.0)


@dataclass
class WorldConfig:
    """Everything that decides the synthetic sign set (its hash names the cached data)."""

    camera: CameraConfig = field(default_factory=CameraConfig)
    pose: PoseRanges = field(default_factory=PoseRanges)
    light: LightConfig = field(default_factory=LightConfig)
    effects: CameraEffects = field(default_factory=CameraEffects)
    backgrounds: tuple[str, ...] = ("photo", "solid", "noise", "paper")  # paper: a sign printed on a poster
    crop_px: int = 32  # classifier input size
    margin: float = 0.1  # GTSRB: the crop holds the sign plus 10% on each side
    box_jitter: float = 0.05  # the crop box is off by up to this fraction of its size (detector error)
    # the share of views cropped square around the box, its aspect kept (as a pipeline that pads a detector's box to a
    # square sees an oblique sign: narrow), the rest GTSRB-style (the box stretched to the square, the sign filling it)
    square_crops: float = added_later(0.0)
    work_px: int = 64  # rendering grid of the crop window (>= crop_px)
    supersample: int = 2
    texture_px: int = 128
    train_per_class: int = 500
    test_per_class: int = 80
    seed: int = 0

    def validate(self) -> None:
        if self.crop_px < 8 or self.work_px < self.crop_px:
            raise ValueError(f"need 8 <= crop_px <= work_px, got crop_px={self.crop_px}, work_px={self.work_px}")
        if not 0 <= self.margin < 1:
            raise ValueError(f"margin must be in [0, 1), got {self.margin}")
        if self.train_per_class < 1 or self.test_per_class < 1:
            raise ValueError("train_per_class and test_per_class must be at least 1")
        if self.supersample < 1:
            raise ValueError(f"supersample must be at least 1, got {self.supersample}")
        if not 0 <= self.square_crops <= 1:
            raise ValueError(f"square_crops is a share of the views, 0 to 1, got {self.square_crops}")


# --------------------------------------------------------------------------- the crop, public for capture/
def crop_window(bbox, margin: float = 0.1) -> tuple[float, float, float, float]:
    """The GTSRB crop box: ``bbox = (x0, y0, x1, y1)`` grown by ``margin`` of its width/height on each side."""
    x0, y0, x1, y1 = (float(v) for v in bbox)
    if not (x1 > x0 and y1 > y0):
        raise PhysadvError(f"bounding box {tuple(bbox)} is empty (need x1 > x0 and y1 > y0)")
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    return x0 - mx, y0 - my, x1 + mx, y1 + my


def gtsrb_crop(image: torch.Tensor, bbox, size: int = 32, margin: float = 0.1) -> torch.Tensor:
    """Crop ``image`` (``C x H x W`` or ``1 x C x H x W``) around ``bbox`` (pixel-edge ``x0, y0, x1, y1``)
    plus ``margin`` on each side and resize to ``size x size`` (anti-aliased; aspect not kept, as GTSRB).

    Parts of the box outside the image repeat the border pixels. Differentiable with respect to ``image``.
    """
    img = image[0] if image.ndim == 4 and image.shape[0] == 1 else image
    if img.ndim != 3:
        raise PhysadvError(f"gtsrb_crop wants one C x H x W image, got {tuple(image.shape)}")
    _, H, W = img.shape
    x0, y0, x1, y1 = crop_window(bbox, margin)
    # whole pixels whose centres fall inside the box (at least one)
    c0, c1 = int(math.floor(x0 + 0.5)), max(int(math.floor(x0 + 0.5)) + 1, int(math.ceil(x1 - 0.5)))
    r0, r1 = int(math.floor(y0 + 0.5)), max(int(math.floor(y0 + 0.5)) + 1, int(math.ceil(y1 - 0.5)))
    if c1 <= 0 or r1 <= 0 or c0 >= W or r0 >= H:
        raise PhysadvError(f"bounding box {tuple(float(v) for v in bbox)} lies outside the {W} x {H} image")
    pad = (max(0, -c0), max(0, c1 - W), max(0, -r0), max(0, r1 - H))
    if any(pad):
        img = F.pad(img[None], pad, mode="replicate")[0]
        c0, c1, r0, r1 = c0 + pad[0], c1 + pad[0], r0 + pad[2], r1 + pad[2]
    patch = img[:, r0:r1, c0:c1][None]
    return F.interpolate(patch, size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0].clamp(0, 1)


# --------------------------------------------------------------------------- colour
def temperature_rgb(kelvin: torch.Tensor) -> torch.Tensor:
    """Linear RGB gains of black-body light at ``kelvin`` (Planck's law at 610/550/465 nm), 6500 K = (1, 1, 1)."""
    lam = torch.tensor([610e-9, 550e-9, 465e-9], dtype=torch.float64)
    c2 = 1.4388e-2  # h c / k_B, metre kelvin

    def planck(t):
        return lam ** -5 / torch.expm1(c2 / (lam * t.reshape(-1, 1).double()))

    return (planck(kelvin) / planck(torch.tensor([6500.0]))).float()


@lru_cache(maxsize=4)
def linear_textures(size_px: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All sign textures with RGB converted to linear light, and their alpha."""
    rgb, alpha = all_textures(size_px)
    return srgb_to_linear(rgb), alpha


# --------------------------------------------------------------------------- sampling
def _uniform(r: Range, n: int, g: torch.Generator) -> torch.Tensor:
    return r[0] + (r[1] - r[0]) * torch.rand(n, generator=g, dtype=torch.float64)


def _latin(r: Range, n: int, g: torch.Generator) -> torch.Tensor:
    """One uniform draw in each of ``n`` equal strata of ``r``, in random order."""
    u = (torch.randperm(n, generator=g).double() + torch.rand(n, generator=g, dtype=torch.float64)) / n
    return r[0] + (r[1] - r[0]) * u


def sample_poses(n: int, ranges: PoseRanges, g: torch.Generator, stratified: bool = False) -> list[Pose]:
    """``n`` camera poses: distance and angle uniform in their ranges, the side (left/right) at random.

    ``stratified``: distance and angle by Latin hypercube sampling (each of ``n`` equal strata of either range holds
    exactly one view), so a small batch still spreads over every distance and angle (McKay et al. 1979). With
    ``distance_scale: log`` the distance is uniform (and stratified) in log distance instead."""
    ranges.validate()
    draw = _latin if stratified else _uniform
    if ranges.distance_scale == "log":
        d = draw(tuple(math.log(x) for x in ranges.distance_m), n, g).exp()
    else:
        d = draw(ranges.distance_m, n, g)
    a = draw(ranges.angle_deg, n, g) * torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    e = _uniform(ranges.elevation_deg, n, g)
    r = _uniform(ranges.roll_deg, n, g)
    j = (torch.rand(n, 2, generator=g, dtype=torch.float64) * 2 - 1) * ranges.look_at_jitter_m
    return [Pose(float(d[i]), float(a[i]), float(e[i]), float(r[i]), (float(j[i, 0]), float(j[i, 1]), 0.0))
            for i in range(n)]


class _BackgroundPool:
    """A fixed library of backgrounds (drawn once with ``rendering.backgrounds.sample_backgrounds``,
    seed 0, twice the crop size); each sample takes a random crop of one, maybe mirrored."""

    def __init__(self, kinds: tuple[str, ...], size: int, pool: int = 256):
        from physadv.rendering.backgrounds import sample_backgrounds

        self.size = size
        self.pool = sample_backgrounds(pool, 2 * size, 2 * size, tuple(kinds), generator=torch.Generator().manual_seed(0))

    def sample(self, n: int, g: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(self.pool), (n,), generator=g)
        off = torch.randint(self.size + 1, (n, 2), generator=g)
        flip = torch.rand(n, generator=g) < 0.5
        out = torch.stack([self.pool[i, :, y : y + self.size, x : x + self.size] for i, (y, x) in zip(idx.tolist(), off.tolist())])
        out[flip] = out[flip].flip(-1)
        return out


@lru_cache(maxsize=4)
def background_pool(kinds: tuple[str, ...], size: int) -> _BackgroundPool:
    return _BackgroundPool(tuple(kinds), size)


# --------------------------------------------------------------------------- rendering a batch of crops
@dataclass
class SignBatch:
    images: torch.Tensor  # N x 3 x crop x crop
    labels: torch.Tensor
    distance_m: torch.Tensor
    angle_deg: torch.Tensor  # off-axis angle of the pose
    footprint_px: torch.Tensor  # width of the sign's bounding box in camera pixels


def render_signs(labels: torch.Tensor, poses: list[Pose], cfg: WorldConfig, g: torch.Generator,
                 textures: tuple[torch.Tensor, torch.Tensor] | None = None, backgrounds: _BackgroundPool | None = None) -> SignBatch:
    """Photograph sign ``labels[i]`` from ``poses[i]`` and return the GTSRB-style crops.

    ``textures``: the sign textures in *linear* RGB plus alpha (``linear_textures``), to reuse across batches.
    """
    lin_all, alpha_all = textures or linear_textures(cfg.texture_px)
    classes = sign_classes()
    groups = [(torch.nonzero(labels == lab).flatten().tolist(), sign_spec(classes[lab])) for lab in labels.unique().tolist()]
    shot = photograph_planar(lin_all[labels], alpha_all[labels], [(idx, spec.size_m, spec.outline()) for idx, spec in groups],
                             poses, cfg, g, backgrounds)
    return SignBatch(shot.images, labels, torch.tensor([p.distance for p in poses]),
                     torch.tensor([p.off_axis for p in poses]), shot.footprint_px)


@dataclass
class Shot:
    """What ``photograph_planar`` returns: crops (or frames), the camera-pixel windows they show, and the object's
    width in camera pixels."""

    images: torch.Tensor
    windows: list[tuple[float, float, float, float]]
    footprint_px: torch.Tensor


def light_texture(lin: torch.Tensor, light: LightConfig, g: torch.Generator) -> torch.Tensor:
    """Light each view's texture (``N x 3 x h x w`` in *linear* light): exposure gain x colour temperature x a
    linear shading gradient in a random direction, clamped where the sensor saturates; returns sRGB."""
    n, _, h, w = lin.shape
    gain = _uniform(light.gain, n, g).float().view(n, 1, 1, 1)
    tint = temperature_rgb(_uniform(light.temperature_k, n, g)).view(n, 3, 1, 1)
    theta = torch.rand(n, generator=g) * 2 * math.pi
    ramp_x, ramp_y = torch.linspace(-0.5, 0.5, w), torch.linspace(-0.5, 0.5, h)
    grad = (torch.cos(theta).view(n, 1, 1) * ramp_x.view(1, 1, w) + torch.sin(theta).view(n, 1, 1) * ramp_y.view(1, h, 1))
    shade = (1 + light.shading * torch.rand(n, generator=g).view(n, 1, 1) * grad).unsqueeze(1)
    return linear_to_srgb((lin * (gain * tint * shade)).clamp(0, 1))


def photograph_planar(lin: torch.Tensor, alpha: torch.Tensor, groups: list, poses: list[Pose], cfg: WorldConfig,
                      g: torch.Generator, backgrounds: _BackgroundPool | None = None) -> Shot:
    """Photograph planar objects through the world's light and camera, cropped GTSRB-style.

    ``lin``/``alpha``: each view's texture in linear light (``N x 3 x h x w``) and its alpha (``N x 1 x h x w``);
    ``groups``: ``(view indices, size_m (width, height) or side, outline in plane metres)`` per physical object, so
    each group is warped in one batch. Differentiable with respect to ``lin`` (JPEG passes the gradient through).
    """
    n = len(poses)
    intr = cfg.camera.intrinsics()
    G = cfg.work_px
    bgs = (backgrounds or background_pool(tuple(cfg.backgrounds), G)).sample(n, g)
    texture = torch.cat([light_texture(lin, cfg.light, g), alpha], 1)
    outlines = [None] * n
    for idx, _, outline in groups:
        for i in idx:
            outlines[i] = outline
    windows, widths = crop_windows(poses, outlines, intr, cfg, g)
    image = torch.empty(n, 3, G, G)  # one batched warp per physical object (each has its own size and outline)
    for idx, size_m, outline in groups:
        out = render_planar(texture[idx], [poses[i] for i in idx], intr, size_m, backgrounds=bgs[idx],
                            supersample=cfg.supersample, windows=[windows[i] for i in idx], out_hw=(G, G), outline_m=outline)
        image[idx] = out.image
    win_px = torch.tensor([math.sqrt((w[2] - w[0]) * (w[3] - w[1])) for w in windows])
    return Shot(camera_effects(image, G / win_px, cfg.effects, cfg.crop_px, g), windows, torch.tensor(widths))


def photograph_frames(lin: torch.Tensor, alpha: torch.Tensor, groups: list, poses: list[Pose], cfg: WorldConfig,
                      g: torch.Generator, frame_px: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Whole frames (the world camera scaled to ``frame_px`` wide) of planar objects, as ``photograph_planar`` lights
    and photographs them, and each object's box (x0, y0, x1, y1 in torchvision's pixel convention)."""
    from physadv.rendering.backgrounds import sample_backgrounds

    n = len(poses)
    intr = cfg.camera.intrinsics().scaled(frame_px)
    bgs = sample_backgrounds(n, intr.height, intr.width, tuple(cfg.backgrounds), g)
    texture = torch.cat([light_texture(lin, cfg.light, g), alpha], 1)
    image, boxes = torch.empty(n, 3, intr.height, intr.width), torch.empty(n, 4)
    for idx, size_m, outline in groups:
        out = render_planar(texture[idx], [poses[i] for i in idx], intr, size_m, backgrounds=bgs[idx],
                            supersample=cfg.supersample, outline_m=outline)
        image[idx], boxes[idx] = out.image, out.bbox.float() + 0.5  # OpenCV pixel edges -> torchvision's
    scale = torch.full((n,), frame_px / cfg.camera.width)  # frame pixels per camera pixel
    return camera_effects(image, scale, cfg.effects, None, g), boxes


def _pixelate(image: torch.Tensor, scale: float) -> torch.Tensor:
    """Area-average to the camera's coarser resolution (``1 / scale`` of the grid), then back up bilinearly."""
    H, W = image.shape[-2:]
    small = F.interpolate(image, size=(max(1, int(round(H / scale))), max(1, int(round(W / scale)))), mode="area")
    return F.interpolate(small, size=(H, W), mode="bilinear", align_corners=False)


def crop_windows(poses: list[Pose], outlines: list[np.ndarray], intr: Intrinsics, cfg: WorldConfig, g: torch.Generator):
    """The crop window (camera pixels) around each object's projected outline, with detector-like jitter; and the
    outline's width in camera pixels."""
    n = len(poses)
    windows, widths = [], []
    jit = (torch.rand(n, 4, generator=g, dtype=torch.float64) * 2 - 1) * cfg.box_jitter
    square = torch.rand(n, generator=g) < cfg.square_crops if cfg.square_crops else torch.zeros(n, dtype=torch.bool)
    for i, pose in enumerate(poses):
        box = bbox_of(apply_homography(plane_homography(pose, intr), outlines[i]))
        w, h = box[2] - box[0], box[3] - box[1]
        box = box + jit[i].numpy() * np.array([w, h, w, h])
        window = crop_window(box, cfg.margin)
        windows.append(square_window(window) if square[i] else window)
        widths.append(w)
    return windows, widths


def square_window(window) -> tuple[float, float, float, float]:
    """The square with the window's centre and longer side: the object keeps its aspect in the crop."""
    x0, y0, x1, y1 = window
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) / 2
    return cx - half, cy - half, cx + half, cy + half


def camera_effects(image: torch.Tensor, scale: torch.Tensor, e: CameraEffects, out_px: int | None,
                   g: torch.Generator) -> torch.Tensor:
    """The camera, given per camera pixel, on images rendered ``scale`` working pixels per camera pixel: defocus
    blur (sigma scaled), pixelation where the camera is coarser than the grid, sensor noise (falling with the
    averaging of ``1 / scale**2`` pixels), contrast and brightness (on sRGB values), JPEG; then the resize to
    ``out_px`` (None: keep the size)."""
    from physadv.rendering.augment import gaussian_blur

    n, _, H, W = image.shape
    image = gaussian_blur(image, _uniform(e.blur_px, n, g).float() * scale)
    if bool((scale > 1).any()):  # camera coarser than the grid: pixelate (out of place, for autograd)
        image = torch.cat([_pixelate(image[i : i + 1], float(scale[i])) if scale[i] > 1 else image[i : i + 1] for i in range(n)])
    noise_std = _uniform(e.noise_std, n, g).float() * scale.clamp(max=1)
    image = image + noise_std.view(n, 1, 1, 1) * torch.randn(image.shape, generator=g)
    contrast = _uniform(e.contrast, n, g).float().view(n, 1, 1, 1)
    bright = _uniform(e.brightness, n, g).float().view(n, 1, 1, 1)
    image = ((image - 0.5) * contrast + 0.5 + bright).clamp(0, 1)
    image = jpeg(image, _uniform(e.jpeg_quality, n, g))  # the real codec, its gradient passed straight through
    if out_px is not None and (H, W) != (out_px, out_px):
        image = F.interpolate(image, size=(out_px, out_px), mode="bilinear", align_corners=False, antialias=True)
    return image.clamp(0, 1)


def photograph_sign(texture: torch.Tensor, sign: str, poses: list[Pose], cfg: WorldConfig, g: torch.Generator,
                    alpha: torch.Tensor | None = None) -> SignBatch:
    """Photograph a given face of sign ``sign`` (``3 x S x S`` sRGB in [0, 1], e.g. a stop sign with
    adversarial stickers) from each of ``poses``, through the world's light, camera and GTSRB crop.
    Differentiable with respect to ``texture`` (JPEG passes the gradient straight through).
    ``alpha`` (``1 x S x S``) defaults to the sign's own shape."""
    k = sign_classes().index(sign_spec(sign).name)
    if texture.ndim != 3 or texture.shape[0] != 3 or texture.shape[1] != texture.shape[2]:
        raise PhysadvError(f"sign texture must be 3 x S x S (square, sRGB), got {tuple(texture.shape)}")
    lin_all, alpha_all = linear_textures(int(texture.shape[-1]))
    lin = torch.cat([lin_all[:k], srgb_to_linear(texture.clamp(0, 1))[None].to(lin_all), lin_all[k + 1 :]])
    if alpha is not None:
        if tuple(alpha.shape) != (1, *texture.shape[1:]):
            raise PhysadvError(f"alpha must be 1 x {texture.shape[1]} x {texture.shape[2]}, got {tuple(alpha.shape)}")
        alpha_all = torch.cat([alpha_all[:k], alpha[None].to(alpha_all), alpha_all[k + 1 :]])
    labels = torch.full((len(poses),), k, dtype=torch.long)
    return render_signs(labels, poses, cfg, g, textures=(lin, alpha_all))


# --------------------------------------------------------------------------- data sets
def generate_signs(cfg: WorldConfig, per_class: int, seed: int, poses: list[Pose] | None = None,
                   labels: torch.Tensor | None = None, batch: int = 256, progress: bool = True) -> ImageSet:
    """A class-balanced set of ``per_class`` crops per sign (or the given ``labels``/``poses``), deterministic in ``seed``."""
    from physadv.core.progress import progress as bar

    with one_thread():
        return _generate(cfg, per_class, seed, poses, labels, batch, progress, bar)


@contextmanager
def one_thread():
    """Rendering crops and training the small sign CNN are many small tensor ops: on a shared 2-core CPU,
    one thread ran them 4 to 6 times faster than two (thread synchronisation under contention)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _generate(cfg, per_class, seed, poses, labels, batch, progress, bar) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    k = len(sign_classes())
    if labels is None:
        labels = torch.arange(per_class * k) % k
        labels = labels[torch.randperm(len(labels), generator=g)]
    if poses is None:
        poses = sample_poses(len(labels), cfg.pose, g)
    if len(poses) != len(labels):
        raise PhysadvError(f"{len(poses)} poses for {len(labels)} labels")
    textures = linear_textures(cfg.texture_px)
    pool = background_pool(tuple(cfg.backgrounds), cfg.work_px)
    parts = []
    for start in bar(range(0, len(labels), batch), desc="render signs", disable=not progress or len(labels) <= batch):
        parts.append(render_signs(labels[start : start + batch], poses[start : start + batch], cfg, g, textures, pool))
    cat = {f: torch.cat([getattr(p, f) for p in parts]) for f in ("images", "labels", "distance_m", "angle_deg", "footprint_px")}
    info = {k_: cat[k_] for k_ in ("distance_m", "angle_deg", "footprint_px")}
    return ImageSet(cat["images"], cat["labels"], sign_classes(), f"signs-seed{seed}", info)


GENERATOR_VERSION = 1  # bump when the generator's output changes, so caches are rebuilt


def world_hash(cfg: WorldConfig) -> str:
    return config_hash({"world": cfg, "generator": GENERATOR_VERSION})  # options added later count only when set


def load_signs(split: str, cfg: WorldConfig | None = None, progress: bool = True) -> ImageSet:
    """The train or test split of the world ``cfg``, generated once and cached as safetensors (uint8)."""
    cfg = cfg or WorldConfig()
    cfg.validate()
    per_class = cfg.train_per_class if split == "train" else cfg.test_per_class
    seed = 2 * cfg.seed + (0 if split == "train" else 1)  # the test split never shares a seed with training
    path = cache_dir("signs") / f"{split}-{world_hash(cfg)}.safetensors"

    def make():
        data = generate_signs(cfg, per_class, seed, progress=progress)
        q = (data.images * 255).round().to(torch.uint8)
        return ({"images": q, "labels": data.labels, **{k: v.float() for k, v in data.info.items()}},
                {"classes": sign_classes(), "world": to_dict(cfg), "split": split})

    t, _ = cached_tensors(path, make, sign_classes())
    info = {k: t[k] for k in ("distance_m", "angle_deg", "footprint_px")}
    return ImageSet(t["images"].float() / 255, t["labels"].long(), sign_classes(), f"signs-{split}", info)


def world_from(root: str | Path | None) -> WorldConfig:
    """The default world, or the ``WorldConfig`` in a YAML file (``data.root`` of the ``signs`` dataset)."""
    return WorldConfig() if root is None else load_config(WorldConfig, root)


def _dataset_loader(split: str, root: str | Path | None = None, size: int | None = None) -> ImageSet:
    """``load_dataset("signs", split, root=<world YAML or None>, size=<crop size>)``."""
    cfg = world_from(root)
    if size is not None and size != cfg.crop_px:
        from dataclasses import replace

        cfg = replace(cfg, crop_px=int(size), work_px=max(cfg.work_px, 2 * int(size)))
    return load_signs(split, cfg)
