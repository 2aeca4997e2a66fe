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

from dataclasses import dataclass, field
from typing import Callable

import kornia.augmentation as K
import torch
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
