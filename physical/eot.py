"""Expectation over Transformation (Athalye, Engstrom, Ilyas and Kwok, ICML 2018), on any scene.

Find the face x' of an object that the victim reads as the target under a distribution T of transformations:

    max_x'  E_{t ~ T} [ log P(target | t(x')) - lambda * || LAB(t(x')) - LAB(t(x)) ||_2 ]
    subject to ||x' - x||_inf <= eps (optional) and x' in [0, 1]

(the paper's eq. 2 with its section 3 perceptual penalty: the L2 distance in CIELAB between the transformed
adversarial and the transformed original, the same t for both). The paper's 2D, 3D and physical cases differ only
in T, which here is the scene's: ``FlatScene`` (2D: scale, rotation, translation, lighten/darken, noise, Table 4),
``MeshScene`` (3D: a textured mesh under camera pose, light and background) or ``PlanarScene`` (a printed object
in the sign world). ``lab: texture`` is the variant that penalises the texture's own distance (mean delta E over
the face's texels) instead of the views'. Untargeted: maximise the loss of the true class. As in the paper, x' is
optimised directly (Adam) and projected after each step onto [0, 1] and, with ``eps``, the L-infinity ball.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import torch

from physadv.physical.attack import DesignConfig, PhysicalAttack, PhysicalResult
from physadv.printing.colour import rgb_to_lab
from physadv.rendering.scene import Draw


@dataclass
class EOTConfig(DesignConfig):
    lam: float = 0.002  # weight of the CIELAB L2 distance
    lab: Literal["views", "texture"] = "views"  # the paper's (transformed views) or the texture-space variant
    eps: Optional[float] = None  # L-infinity bound on x' - x (pixel scale); None: only the LAB penalty
    lr: float = 0.01
    steps: int = 300

    def validate(self) -> None:
        super().validate()
        if self.lam < 0:
            raise ValueError(f"lam must be >= 0, got {self.lam}")
        if self.eps is not None and self.eps <= 0:
            raise ValueError(f"eps must be positive, got {self.eps}")


class EOT(PhysicalAttack):
    name = "eot"
    Config = EOTConfig

    def __init__(self, victim, scene, cfg: EOTConfig | None = None, **overrides):
        super().__init__(victim, scene, cfg, **overrides)
        self.clean = scene.obj.texture.to(self.device)
        self.alpha = scene.obj.alpha.to(self.device)
        self.face = (self.alpha > 0.5).float()  # only the object's face is paintable
        self.lab0 = rgb_to_lab(self.clean, channel_dim=0)

    def start(self) -> torch.Tensor:
        return self.clean.clone()

    def design(self, w: torch.Tensor) -> torch.Tensor:
        return self.clean * (1 - self.face) + w * self.face

    def project(self, w: torch.Tensor) -> None:
        if self.cfg.eps is not None:
            w.copy_(self.clean + (w - self.clean).clamp(-self.cfg.eps, self.cfg.eps))
        w.clamp_(0, 1)

    def loss(self, w: torch.Tensor, draw: Draw) -> tuple[torch.Tensor, dict]:
        x = self.design(w)
        views = self.scene.render(x, draw)
        cls, first = self.adversarial_terms(views, x, draw)
        if self.cfg.lab == "views":
            with torch.no_grad():
                ref = rgb_to_lab(self.scene.render(self.clean, draw).images, channel_dim=1)
            dist = ((rgb_to_lab(views.images, channel_dim=1) - ref).pow(2).flatten(1).sum(1) + 1e-8).sqrt().mean()
        else:
            dist = self.delta_e(x)
        return cls + self.cfg.lam * dist, {"classification": first.pop("adversarial")} | first | {"lab": float(dist.detach())}

    def delta_e(self, x: torch.Tensor) -> torch.Tensor:
        """Mean CIELAB delta E (CIE76) between ``x`` and the clean face, over the face's texels."""
        de = ((rgb_to_lab(x, channel_dim=0) - self.lab0).pow(2).sum(0) + 1e-8).sqrt()
        return (de * self.face[0]).sum() / self.face.sum()

    def finish(self, w: torch.Tensor, best: torch.Tensor) -> PhysicalResult:
        with torch.no_grad():
            de = float(self.delta_e(best))
            linf = float((best - self.clean).abs().max())
        return PhysicalResult("eot", best.cpu(), self.clean.cpu(), self.alpha.cpu(), self.face[0].cpu(),
                              metrics={"coverage": 1.0, "mean_delta_e_texture": de, "linf": linf})


__all__ = ["EOTConfig", "EOT"]
