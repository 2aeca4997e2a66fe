"""Directional lights for Phong shading (PyTorch3D's model), sampled from ranges in a config.

A batch of lights holds, per rendered view, the ambient, diffuse and specular colours, the unit
direction from the surface towards the light (world frame) and the material's shininess. Colours
are given as an intensity times the colour of a black body at a temperature in kelvin (6500 K is
white). Shading runs on the texture's sRGB values, as PyTorch3D's shaders do.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from physadv.core.errors import PhysadvError
from physadv.rendering.poses import check_range, uniform


def kelvin_to_rgb(kelvin: torch.Tensor | float) -> torch.Tensor:
    """Colour of a black body at ``kelvin`` (1000 to 40000 K), scaled so 6500 K is (1, 1, 1) and the
    brightest channel is 1. Tanner Helland's fit to the Planckian locus in sRGB."""
    t = torch.as_tensor(kelvin, dtype=torch.float64)
    if bool(((t < 1000) | (t > 40000)).any()):
        raise PhysadvError(f"colour temperature must be within 1000 and 40000 K, got {kelvin}")

    def raw(t: torch.Tensor) -> torch.Tensor:
        t = t / 100
        r = torch.where(t <= 66, torch.full_like(t, 255.0), 329.698727446 * (t - 60).clamp(min=1e-6) ** -0.1332047592)
        g = torch.where(t <= 66, 99.4708025861 * torch.log(t) - 161.1195681661,
                        288.1221695283 * (t - 60).clamp(min=1e-6) ** -0.0755148492)
        b = torch.where(t >= 66, torch.full_like(t, 255.0),
                        torch.where(t <= 19, torch.zeros_like(t), 138.5177312231 * torch.log((t - 10).clamp(min=1e-6)) - 305.0447927307))
        return torch.stack([r, g, b], -1).clamp(0, 255)

    rgb = raw(t) / raw(torch.tensor(6500.0))
    return (rgb / rgb.amax(-1, keepdim=True)).float()


@dataclass
class Lights:
    """``N`` directional lights (one per view): colours ``N x 3``, unit ``direction`` ``N x 3``, ``shininess`` ``N``."""

    ambient: torch.Tensor
    diffuse: torch.Tensor
    specular: torch.Tensor
    direction: torch.Tensor
    shininess: torch.Tensor

    def __len__(self) -> int:
        return int(self.ambient.shape[0])

    @staticmethod
    def fixed(n: int = 1, ambient: float = 0.5, diffuse: float = 0.4, specular: float = 0.1,
              direction: tuple[float, float, float] = (0.3, 0.5, 1.0), shininess: float = 64.0,
              kelvin: float = 6500.0) -> "Lights":
        colour = kelvin_to_rgb(kelvin)
        d = torch.tensor(direction, dtype=torch.float32)
        return Lights((ambient * colour).expand(n, 3).clone(), (diffuse * colour).expand(n, 3).clone(),
                      (specular * colour).expand(n, 3).clone(), (d / d.norm()).expand(n, 3).clone(),
                      torch.full((n,), float(shininess)))

    def index(self, idx: torch.Tensor | slice) -> "Lights":
        return Lights(self.ambient[idx], self.diffuse[idx], self.specular[idx], self.direction[idx], self.shininess[idx])

    def to(self, device: str | torch.device) -> "Lights":
        return Lights(*(getattr(self, k).to(device) for k in ("ambient", "diffuse", "specular", "direction", "shininess")))

    def to_pytorch3d(self, device: str | torch.device = "cpu"):
        """PyTorch3D ``DirectionalLights`` and ``Materials`` (white material, this shininess) with the same effect.

        PyTorch3D takes one shininess per batch; this uses the first one."""
        from pytorch3d.renderer import DirectionalLights, Materials

        lights = DirectionalLights(ambient_color=self.ambient, diffuse_color=self.diffuse, specular_color=self.specular,
                                   direction=self.direction, device=device)
        return lights, Materials(shininess=float(self.shininess[0]), device=device)


@dataclass
class LightConfig:
    """Ranges (min, max) from which each view's light is drawn uniformly."""

    ambient: tuple[float, float] = (0.45, 0.8)  # intensity of the ambient term
    diffuse: tuple[float, float] = (0.1, 0.5)  # intensity of the Lambertian term
    specular: tuple[float, float] = (0.0, 0.15)  # intensity of the Phong highlight
    shininess: tuple[float, float] = (16.0, 64.0)  # Phong exponent of the material
    azimuth: tuple[float, float] = (-90.0, 90.0)  # degrees: where the light comes from, about the vertical axis
    elevation: tuple[float, float] = (10.0, 80.0)  # degrees above the horizon
    temperature: tuple[float, float] = (4500.0, 7500.0)  # kelvin; 6500 K is white

    def validate(self) -> None:
        try:
            for name in ("ambient", "diffuse", "specular", "shininess"):
                check_range(name, getattr(self, name), 0, None)
            check_range("azimuth", self.azimuth, -360, 360)
            check_range("elevation", self.elevation, -90, 90)
            check_range("temperature", self.temperature, 1000, 40000)
        except PhysadvError as exc:
            raise ValueError(str(exc)) from None


def sample_lights(cfg: LightConfig, n: int, generator: torch.Generator | None = None,
                  device: str | torch.device = "cpu") -> Lights:
    """``n`` lights drawn uniformly from the config's ranges."""
    try:
        cfg.validate()
    except ValueError as exc:
        raise PhysadvError(f"light config: {exc}") from None
    g = generator or torch.Generator().manual_seed(0)
    amb, dif, spe, shi, az, el, kel = (uniform(getattr(cfg, k), n, g) for k in
                                       ("ambient", "diffuse", "specular", "shininess", "azimuth", "elevation", "temperature"))
    colour = kelvin_to_rgb(kel)
    az, el = torch.deg2rad(az), torch.deg2rad(el)
    direction = torch.stack([torch.sin(az) * torch.cos(el), torch.sin(el), torch.cos(az) * torch.cos(el)], -1).float()
    lights = Lights(amb[:, None].float() * colour, dif[:, None].float() * colour, spe[:, None].float() * colour,
                    direction, shi.float())
    return lights.to(device)


__all__ = ["Lights", "LightConfig", "sample_lights", "kelvin_to_rgb"]
