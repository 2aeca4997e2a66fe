"""The physical objects an attack repaints: a sign of the sign world, a planar object from an image file (a photo
or drawing of your sign, poster or sticker with its alpha or a mask, and its real width), or a mesh with UVs.

    obj = load_object(ObjectConfig(kind="image", image="my_sign.png", width_m=0.6))
    obj.texture, obj.alpha, obj.size_m, obj.outline_m        # 3 x h x w sRGB, 1 x h x w, (w, h) metres, K x 2 metres

Textures are sRGB in [0, 1]; their longer side is ``texture_px`` texels (the optimisation's resolution; export
resamples to the printer's DPI). A planar object lies in the plane ``z = 0`` facing ``+z`` (``rendering.planar``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from physadv.core.errors import PhysadvError


@dataclass
class ObjectConfig:
    """Which object: ``sign`` (a class of the sign world), ``image`` (a planar object from a file) or ``mesh``."""

    kind: Literal["sign", "image", "mesh", "dataset"] = "sign"
    sign: str = "stop"  # kind sign: the sign class
    image: str = ""  # kind image: PNG/JPEG/...; its alpha channel (or `mask`) is the object's shape
    mask: str = ""  # kind image: a mask file (white = object) for images without alpha
    width_m: float = 0.0  # kind image: the real width in metres (the height follows the image's aspect ratio)
    mesh: str = ""  # kind mesh: OBJ/GLB/PLY with UV coordinates
    mesh_texture: str = ""  # kind mesh: a texture image replacing the file's own
    mesh_scale: float = 1.0  # kind mesh: the file's units to metres
    dataset: str = ""  # kind dataset: an image of a registered dataset's test split (2D EOT on MNIST, ...)
    index: int = 0  # kind dataset: which image
    texture_px: int = 128  # texels along the texture's longer side (dataset images keep their size)
    post_length: float = 1.2  # a sign seen as a mesh: metres of post below the plate

    def validate(self) -> None:
        if self.kind == "image" and not self.image:
            raise ValueError("object.kind 'image' needs object.image (a file) and object.width_m")
        if self.kind == "image" and not self.width_m > 0:
            raise ValueError(f"object.width_m must be the object's real width in metres (> 0), got {self.width_m}")
        if self.kind == "dataset" and not self.dataset:
            raise ValueError("object.kind 'dataset' needs object.dataset (e.g. mnist) and object.index")
        if self.kind == "mesh" and not self.mesh:
            raise ValueError("object.kind 'mesh' needs object.mesh (a mesh file with UVs)")
        if not 16 <= self.texture_px <= 1024:
            raise ValueError(f"object.texture_px must be within 16 and 1024, got {self.texture_px}")


@dataclass
class PhysicalObject:
    """A repaintable object: its face texture and shape, its physical size, and (meshes) its geometry."""

    name: str
    texture: torch.Tensor  # 3 x h x w, sRGB
    alpha: torch.Tensor  # 1 x h x w: where the object is (and may be painted)
    size_m: tuple[float, float]  # width, height of the texture's rectangle in metres
    outline_m: np.ndarray | None  # K x 2 plane metres (planar objects): the face's outline, for crop boxes
    kind: str = "sign"
    source: str = ""  # the file or sign it came from
    mesh: object | None = field(default=None, repr=False)  # rendering.mesh.TexturedMesh for 3D objects
    label: str = ""  # the object's own class where it is known (a sign's, a dataset image's)

    @property
    def planar(self) -> bool:
        return self.mesh is None

    def describe(self) -> dict:
        """What to record beside a design (and what printing needs: the real size)."""
        return {"name": self.name, "kind": self.kind, "source": self.source, "width_m": self.size_m[0],
                "height_m": self.size_m[1], "texture_hw": list(self.texture.shape[-2:])}


def load_object(cfg: ObjectConfig, with_mesh: bool = False) -> PhysicalObject:
    """The object ``cfg`` names. ``with_mesh``: a sign also gets its 3D plate on a post (for mesh scenes)."""
    try:
        cfg.validate()
    except ValueError as exc:
        raise PhysadvError(str(exc)) from None
    if cfg.kind == "sign":
        return sign_object(cfg.sign, cfg.texture_px, cfg.post_length if with_mesh else None)
    if cfg.kind == "image":
        return image_object(cfg.image, cfg.width_m, cfg.texture_px, cfg.mask)
    if cfg.kind == "dataset":
        return dataset_object(cfg.dataset, cfg.index)
    return mesh_object(cfg.mesh, cfg.texture_px, cfg.mesh_texture, cfg.mesh_scale)


def sign_object(sign: str, texture_px: int = 128, post_length: float | None = None) -> PhysicalObject:
    """A sign of the sign world (``post_length``: also its plate on a post, as a mesh)."""
    from physadv.rendering.signs.textures import sign_spec, sign_texture

    spec = sign_spec(sign)
    rgb, alpha = sign_texture(spec.name, texture_px)
    mesh = None
    if post_length is not None:
        from physadv.rendering.mesh import sign_plate

        shape = spec.shape + ("_down" if spec.pointing_down else "")
        mesh = sign_plate(shape, spec.size_m, post_length=post_length, texture=rgb.permute(1, 2, 0).contiguous())
    return PhysicalObject(spec.name, rgb, alpha, (spec.size_m, spec.size_m), spec.outline(), "sign", f"sign:{spec.name}", mesh,
                          spec.name)


def image_object(path: str | Path, width_m: float, texture_px: int = 128, mask: str | Path = "") -> PhysicalObject:
    """A planar object drawn or photographed in ``path``: RGB, with its alpha channel, a ``mask`` file, or neither
    (then the whole rectangle is the object), ``width_m`` metres wide."""
    from physadv.core.io import read_image
    from physadv.rendering.planar import outline_from_alpha

    path = Path(path)
    rgba = read_image(path, mode="RGBA")
    rgb, alpha = rgba[:3], rgba[3:]
    if mask:
        m = read_image(mask, mode="L")
        if tuple(m.shape[-2:]) != tuple(rgb.shape[-2:]):
            raise PhysadvError(f"{mask}: the mask is {tuple(m.shape[-2:])} pixels, the image {path} is {tuple(rgb.shape[-2:])}")
        alpha = m
    h, w = rgb.shape[-2:]
    scale = texture_px / max(h, w)
    th, tw = max(2, round(h * scale)), max(2, round(w * scale))
    rgba = F.interpolate(torch.cat([rgb * alpha, alpha])[None], size=(th, tw), mode="bilinear", antialias=True,
                         align_corners=False)[0]
    alpha = rgba[3:].clamp(0, 1)
    rgb = (rgba[:3] / alpha.clamp_min(1e-6)).clamp(0, 1) * (alpha > 1e-6) + rgba[:3] * (alpha <= 1e-6)  # un-premultiply
    if float((alpha > 0.5).float().mean()) < 0.01:
        raise PhysadvError(f"{path}: the object's alpha (or mask) is empty: nothing to attack")
    size = (float(width_m), float(width_m) * th / tw)
    return PhysicalObject(path.stem, rgb.contiguous(), alpha.contiguous(), size, outline_from_alpha(alpha[0], size), "image",
                          str(path))


def dataset_object(name: str, index: int) -> PhysicalObject:
    """Image ``index`` of dataset ``name``'s test split as a flat object (grey images become three equal channels);
    its class is the object's ``source``."""
    from physadv.core.data import load_dataset

    data = load_dataset(name, "test")
    if not 0 <= index < len(data):
        raise PhysadvError(f"object.index {index} is outside {name}'s test split (0..{len(data) - 1})")
    img = data.images[index]
    rgb = img.expand(3, -1, -1).contiguous() if img.shape[0] == 1 else img[:3].contiguous()
    return PhysicalObject(f"{name}[{index}]", rgb, torch.ones(1, *rgb.shape[-2:]), (1.0, 1.0 * rgb.shape[1] / rgb.shape[2]),
                          None, "dataset", f"{name}:test:{index}", label=data.classes[int(data.labels[index])])


def mesh_object(path: str | Path, texture_px: int = 256, texture: str | Path = "", scale: float = 1.0) -> PhysicalObject:
    """A mesh with UV coordinates (``rendering.mesh.load_mesh``); the whole texture is paintable."""
    from physadv.rendering.mesh import load_mesh

    mesh = load_mesh(path, texture or None, scale=scale)
    tex = mesh.texture.permute(2, 0, 1)[None].float()
    h, w = tex.shape[-2:]
    f = texture_px / max(h, w)
    tex = F.interpolate(tex, size=(max(2, round(h * f)), max(2, round(w * f))), mode="bilinear", antialias=True,
                        align_corners=False)[0].clamp(0, 1)
    extent = (mesh.verts.max(0).values - mesh.verts.min(0).values).tolist()
    return PhysicalObject(Path(path).stem, tex.contiguous(), torch.ones(1, *tex.shape[-2:]), (extent[0], extent[1]), None,
                          "mesh", str(path), mesh.with_texture(tex.permute(1, 2, 0).contiguous()))


__all__ = ["ObjectConfig", "PhysicalObject", "load_object", "sign_object", "image_object", "mesh_object"]
