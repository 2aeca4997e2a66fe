"""Camera effects for expectation over transformation: a Kornia ``AugmentationSequential`` from a config.

    aug = EOTAugment(AugmentConfig(), colour_transform=printer_to_camera)   # the hook is optional
    seen = aug(clean)                                 # draws new parameters
    seen_adv = aug(adversarial, params=aug.params)   # replays exactly the same transformation

Order: the ``colour_transform`` hook (a printer/camera colour model from ``printing/``, a function on
``N x 3 x H x W`` images in [0, 1], sRGB in and out), then a small perspective change, colour jitter
(brightness, contrast, saturation, hue), gamma, defocus blur (Gaussian), motion blur, sensor noise
and JPEG compression. Every step is differentiable with respect to the image. An effect with ``p: 0``
is left out of the stack.

Where to apply it is the caller's choice: on the camera image (faithful: blur, noise and JPEG happen
at the sensor's resolution) or on the classifier's input crop (as RP2 does; at 32 x 32 it costs a
fraction of the classifier, while differentiable JPEG and colour jitter on 224 x 224 views cost more
than a small classifier's forward and backward; see ``benchmarks/render_eot.py``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from torch import nn

from physadv.core.errors import PhysadvError
from physadv.rendering.poses import check_range


@dataclass
class ColourJitter:
    p: float = 0.5
    brightness: float = 0.15  # factor drawn from [1 - b, 1 + b]
    contrast: float = 0.15
    saturation: float = 0.0  # saturation and hue go through HSV: several times slower than the rest
    hue: float = 0.0  # in [-0.5, 0.5] turns of the hue circle


@dataclass
class Gamma:
    p: float = 0.3
    gamma: tuple[float, float] = (0.8, 1.25)


@dataclass
class Defocus:
    p: float = 0.3
    sigma: tuple[float, float] = (0.2, 1.2)  # pixels of the Gaussian approximating the out-of-focus disk
    kernel: int = 7


@dataclass
class Motion:
    p: float = 0.2
    kernel: int = 5  # length of the motion streak in pixels (odd)
    angle: float = 90.0  # degrees: the streak's direction is drawn from [-angle, angle]


@dataclass
class Noise:
    p: float = 0.5
    std: float = 0.015  # of the Gaussian sensor noise, in [0, 1] units


@dataclass
class Jpeg:
    p: float = 0.3
    quality: tuple[float, float] = (40.0, 95.0)
    # "straight-through": libjpeg's real codec, its gradient passed through as the identity (BPDA, Athalye et
    # al. 2018), a fraction of a millisecond per image; "differentiable": Kornia's differentiable codec
    # (Reich et al. 2024), a true-gradient approximation, ten times the cost of the rest of the stack
    gradient: str = "straight-through"


@dataclass
class Perspective:
    p: float = 0.3
    scale: float = 0.08  # corner displacement as a fraction of the image size


@dataclass
class AugmentConfig:
    colour: ColourJitter = field(default_factory=ColourJitter)
    gamma: Gamma = field(default_factory=Gamma)
    defocus: Defocus = field(default_factory=Defocus)
    motion: Motion = field(default_factory=Motion)
    noise: Noise = field(default_factory=Noise)
    jpeg: Jpeg = field(default_factory=Jpeg)
    perspective: Perspective = field(default_factory=Perspective)

    def validate(self) -> None:
        for name in ("colour", "gamma", "defocus", "motion", "noise", "jpeg", "perspective"):
            p = getattr(self, name).p
            if not 0 <= p <= 1:
                raise ValueError(f"{name}.p: a probability must be within [0, 1], got {p}")
        try:
            check_range("gamma.gamma", self.gamma.gamma, 0.01, None)
            check_range("defocus.sigma", self.defocus.sigma, 0.01, None)
            check_range("jpeg.quality", self.jpeg.quality, 1, 100)
        except PhysadvError as exc:
            raise ValueError(str(exc)) from None
        for name, k in (("defocus.kernel", self.defocus.kernel), ("motion.kernel", self.motion.kernel)):
            if k < 3 or k % 2 == 0:
                raise ValueError(f"{name}: must be an odd number of pixels >= 3, got {k}")
        if not 0 <= self.perspective.scale < 0.5:
            raise ValueError(f"perspective.scale: must be within [0, 0.5), got {self.perspective.scale}")
        if self.jpeg.gradient not in ("straight-through", "differentiable"):
            raise ValueError(f"jpeg.gradient: 'straight-through' or 'differentiable', got {self.jpeg.gradient!r}")
        if self.noise.std < 0:
            raise ValueError(f"noise.std: must be >= 0, got {self.noise.std}")

    @staticmethod
    def none() -> "AugmentConfig":
        """No camera effects at all."""
        return AugmentConfig(ColourJitter(0), Gamma(0), Defocus(0), Motion(0), Noise(0), Jpeg(0), Perspective(0))


def jpeg(images: torch.Tensor, quality: torch.Tensor | list[float]) -> torch.Tensor:
    """libjpeg (OpenCV) encode and decode of ``N x 3 x H x W`` sRGB images in [0, 1], per-image ``quality``
    (1-100). Differentiable as the identity: the forward is the real codec, the gradient passes straight through."""
    import cv2

    quality = torch.as_tensor(quality).reshape(-1).tolist()
    if len(quality) != len(images):
        raise PhysadvError(f"jpeg: one quality per image expected, got {len(quality)} for {len(images)} images")
    bgr = (images.detach().flip(1).permute(0, 2, 3, 1) * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
    for i, q in enumerate(quality):
        ok, enc = cv2.imencode(".jpg", bgr[i], [cv2.IMWRITE_JPEG_QUALITY, int(q)])
        bgr[i] = cv2.imdecode(enc, cv2.IMREAD_COLOR)
    decoded = torch.from_numpy(bgr).to(images.device).permute(0, 3, 1, 2).flip(1).to(images.dtype) / 255
    return images + (decoded - images).detach()


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image isotropic Gaussian blur of ``N x C x H x W`` images, ``sigma`` (``N``) in pixels (0: unchanged);
    separable, reflect-padded, one kernel radius (3 sigma of the largest) for the batch."""
    radius = int(math.ceil(3 * float(sigma.max()))) if len(sigma) else 0
    if radius == 0:
        return images
    x = torch.arange(-radius, radius + 1, dtype=images.dtype)
    s = sigma.to(images.dtype).clamp(min=1e-3).view(-1, 1)
    k = torch.exp(-0.5 * (x / s) ** 2)
    k = k / k.sum(1, keepdim=True)  # n x K
    n, c, h, w = images.shape
    pad = F.pad(images, (radius,) * 4, mode="reflect").reshape(1, n * c, h + 2 * radius, w + 2 * radius)
    kk = k.repeat_interleave(c, 0).to(images.device)
    out = F.conv2d(pad, kk.view(n * c, 1, 1, -1), groups=n * c)
    out = F.conv2d(out, kk.view(n * c, 1, -1, 1), groups=n * c)
    return out.view(n, c, h, w)


class StraightThroughJPEG(K.RandomJPEG):
    """Kornia's ``RandomJPEG`` (same parameters, same replay) with libjpeg's codec and a straight-through gradient."""

    def apply_transform(self, input, params, flags, transform=None):
        out = input.clamp(0, 1)
        chosen = (params["batch_prob"] > 0.5).expand(len(out)).nonzero().flatten()  # Kornia blends the rest away
        if len(chosen) == 0:
            return out
        coded = jpeg(out[chosen], params["jpeg_quality"].expand(len(out))[chosen])
        return out.index_put((chosen,), coded)


def build_stack(cfg: AugmentConfig) -> list[nn.Module]:
    """The Kornia augmentations the config asks for, in camera order."""
    try:
        cfg.validate()
    except ValueError as exc:
        raise PhysadvError(f"augment config: {exc}") from None
    steps: list[nn.Module] = []
    if cfg.perspective.p > 0:
        steps.append(K.RandomPerspective(cfg.perspective.scale, p=cfg.perspective.p))
    c = cfg.colour
    if c.p > 0:
        steps.append(K.ColorJiggle(c.brightness, c.contrast, c.saturation, c.hue, p=c.p))
    if cfg.gamma.p > 0:
        steps.append(K.RandomGamma(tuple(cfg.gamma.gamma), p=cfg.gamma.p))
    if cfg.defocus.p > 0:
        k = cfg.defocus.kernel
        steps.append(K.RandomGaussianBlur((k, k), tuple(cfg.defocus.sigma), p=cfg.defocus.p))
    if cfg.motion.p > 0:
        steps.append(K.RandomMotionBlur(cfg.motion.kernel, cfg.motion.angle, 0.0, border_type="replicate", p=cfg.motion.p))
    if cfg.noise.p > 0 and cfg.noise.std > 0:
        steps.append(K.RandomGaussianNoise(std=cfg.noise.std, p=cfg.noise.p))
    if cfg.jpeg.p > 0:
        jpeg = K.RandomJPEG if cfg.jpeg.gradient == "differentiable" else StraightThroughJPEG
        steps.append(jpeg(tuple(cfg.jpeg.quality), p=cfg.jpeg.p))
    return steps


class EOTAugment(nn.Module):
    """The camera effects of ``cfg`` with replayable parameters and an optional colour transform first."""

    def __init__(self, cfg: AugmentConfig | None = None,
                 colour_transform: Callable[[torch.Tensor], torch.Tensor] | None = None):
        super().__init__()
        self.cfg = cfg or AugmentConfig()
        self.colour_transform = colour_transform
        steps = build_stack(self.cfg)
        self.stack = K.AugmentationSequential(*steps) if steps else None
        self._params = None

    @property
    def params(self):
        """The parameters of the last call (pass them back as ``params=`` to replay it)."""
        return self._params

    def forward(self, images: torch.Tensor, params=None) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise PhysadvError(f"augment: expected N x 3 x H x W images, got shape {tuple(images.shape)}")
        x = self.colour_transform(images) if self.colour_transform is not None else images
        if self.stack is None:
            return x
        out = self.stack(x, params=params)
        self._params = self.stack._params
        return out.clamp(0, 1)


# --------------------------------------------------------------------------- 2D transformations and placement
@dataclass
class FlatConfig:
    """2D transformations (Athalye et al. 2018, Table 4, the 2D case); ``contrast`` is opt-in (not in the table)."""

    rotation_deg: tuple[float, float] = (-22.5, 22.5)
    scale: tuple[float, float] = (0.9, 1.4)
    translate: float = 0.1  # fraction of the image size, each way
    brightness: tuple[float, float] = (-0.05, 0.05)  # lighten / darken (added)
    contrast: tuple[float, float] = (1.0, 1.0)
    noise_std: tuple[float, float] = (0.0, 0.1)
    fill: float = 0.0  # outside the transformed image

    def validate(self) -> None:
        for name in ("rotation_deg", "scale", "brightness", "contrast", "noise_std"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name}: min {lo} is greater than max {hi}")
        if self.scale[0] <= 0:
            raise ValueError(f"scale must be positive, got {list(self.scale)}")
        if not 0 <= self.translate < 1:
            raise ValueError(f"translate must be in [0, 1), got {self.translate}")


@dataclass
class FlatParams:
    """One sampled 2D transformation per image (replay it on another image with ``flat_transform``)."""

    angle: torch.Tensor  # degrees
    scale: torch.Tensor
    shift: torch.Tensor  # N x 2, pixels
    brightness: torch.Tensor
    contrast: torch.Tensor
    noise: torch.Tensor  # N x C x H x W


def _u(lo_hi: tuple[float, float], n: int, g: torch.Generator) -> torch.Tensor:
    return lo_hi[0] + (lo_hi[1] - lo_hi[0]) * torch.rand(n, generator=g)


def sample_flat(cfg: FlatConfig, shape: tuple[int, ...], g: torch.Generator) -> FlatParams:
    n, c, h, w = shape
    shift = (torch.rand(n, 2, generator=g) * 2 - 1) * cfg.translate * torch.tensor([w, h])
    std = _u(cfg.noise_std, n, g).view(n, 1, 1, 1)
    return FlatParams(_u(cfg.rotation_deg, n, g), _u(cfg.scale, n, g), shift, _u(cfg.brightness, n, g),
                      _u(cfg.contrast, n, g), std * torch.randn(n, c, h, w, generator=g))


def flat_transform(images: torch.Tensor, p: FlatParams, fill: float = 0.0) -> torch.Tensor:
    """Rotate, scale and translate about the centre (Kornia ``warp_affine``), fill outside, then contrast,
    brightness and noise; differentiable with respect to the images."""
    from kornia.geometry.transform import get_rotation_matrix2d, warp_affine

    n, c, h, w = images.shape
    if len(p.angle) != n:
        raise PhysadvError(f"{len(p.angle)} sampled transformations for {n} images")
    dev = images.device
    centre = torch.tensor([[(w - 1) / 2, (h - 1) / 2]], device=dev).expand(n, 2)
    A = get_rotation_matrix2d(centre, p.angle.to(dev), p.scale.to(dev).view(n, 1).expand(n, 2)).clone()
    A[:, :, 2] += p.shift.to(dev)
    warped = warp_affine(torch.cat([images, torch.ones(n, 1, h, w, device=dev)], 1), A, (h, w), align_corners=True)
    img = warped[:, :c] + (1 - warped[:, c:]) * fill
    img = (img - 0.5) * p.contrast.to(dev).view(n, 1, 1, 1) + 0.5 + p.brightness.to(dev).view(n, 1, 1, 1)
    return (img + p.noise.to(dev)).clamp(0, 1)


@dataclass
class PlacementConfig:
    """Where a patch goes (Brown et al. 2017): a random place, at a random share of the carrier's area, turned."""

    area: tuple[float, float] = (0.08, 0.20)  # fraction of the carrier the patch covers
    rotation_deg: tuple[float, float] = (-45.0, 45.0)

    def validate(self) -> None:
        lo, hi = self.area
        if not 0 < lo <= hi < 1:
            raise ValueError(f"area must satisfy 0 < min <= max < 1, got {list(self.area)}")
        if self.rotation_deg[0] > self.rotation_deg[1]:
            raise ValueError(f"rotation_deg: min greater than max {list(self.rotation_deg)}")


def paste(carriers: torch.Tensor, patch: torch.Tensor, mask: torch.Tensor, cfg: PlacementConfig,
          g: torch.Generator, where: torch.Tensor | None = None) -> torch.Tensor:
    """Paste ``patch`` (``3 x P x P``, shape ``mask`` ``1 x P x P``) into each carrier (``N x C x H x W``) at a random
    place, scale and rotation, wholly inside the carrier (Kornia ``warp_affine``; differentiable in ``patch``).
    ``where`` (``1 x H x W``): only there may the patch show (e.g. the object's face)."""
    from kornia.geometry.transform import warp_affine

    n, c, h, w = carriers.shape
    P = patch.shape[-1]
    side = torch.sqrt(_u(cfg.area, n, g) * h * w)  # patch side in carrier pixels
    s = side / P
    ang = torch.deg2rad(_u(cfg.rotation_deg, n, g))
    half = side * (abs(torch.cos(ang)) + abs(torch.sin(ang))) / 2  # half extent of the turned patch
    cx = half + (w - 2 * half).clamp(min=0) * torch.rand(n, generator=g)
    cy = half + (h - 2 * half).clamp(min=0) * torch.rand(n, generator=g)
    # patch pixel (u, v) -> carrier: R * s * ((u, v) - centre of the patch) + (cx, cy)
    cos, sin = torch.cos(ang) * s, torch.sin(ang) * s
    pc = (P - 1) / 2
    A = torch.stack([torch.stack([cos, -sin, cx - 0.5 - (cos * pc - sin * pc)], 1),
                     torch.stack([sin, cos, cy - 0.5 - (sin * pc + cos * pc)], 1)], 1).to(carriers)
    rgba = torch.cat([patch * mask, mask], 0)[None].expand(n, -1, -1, -1)
    if c == 1:
        rgba = torch.cat([rgba[:, :3].mean(1, keepdim=True), rgba[:, 3:]], 1)
    warped = warp_affine(rgba, A, (h, w), align_corners=True)
    keep = 1 if where is None else where.to(carriers)
    return warped[:, :c] * keep + (1 - warped[:, c:] * keep) * carriers  # premultiplied colour over the carrier
