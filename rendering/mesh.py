"""Textured meshes in metres: procedural sign plates and primitives, files via trimesh, PyTorch3D conversion.

A ``TexturedMesh`` holds geometry, UVs and a default texture. UV convention (as PyTorch3D and OBJ):
``(0, 0)`` is the bottom-left corner of the texture image, ``(1, 1)`` the top-right, and the texture
covers its UV square edge to edge (``align_corners=False``). Faces flagged ``textured=False`` (the back
and edge of a sign plate, its post) show the flat ``base_color`` instead of the texture; when one
texture map is needed (PyTorch3D, OBJ/GLB export) ``atlas`` appends a strip of that colour to it.

World frame as in ``rendering.camera``: a sign's face lies in ``z = 0`` facing ``+z`` with ``+y`` up,
centred on the origin; its thickness and post lie behind it (``z < 0``). A sign-face texture is an
``H x W x 3`` image whose square covers the plate's bounding square (bounding box for a rectangle);
what lies outside the shape is never seen.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from physadv.core.errors import PhysadvError

SIGN_SHAPES = ("octagon", "circle", "triangle", "triangle_down", "diamond", "rectangle")
MESH_SUFFIXES = (".obj", ".glb", ".gltf", ".ply", ".off", ".stl")


@dataclass
class TexturedMesh:
    verts: torch.Tensor  # V x 3 float, metres
    faces: torch.Tensor  # F x 3 long, counter-clockwise seen from outside
    verts_uvs: torch.Tensor  # T x 2 float in [0, 1]
    faces_uvs: torch.Tensor  # F x 3 long into verts_uvs
    texture: torch.Tensor  # H x W x 3 float in [0, 1] (sRGB), the default texture
    textured: torch.Tensor  # F bool: False faces show base_color
    base_color: tuple[float, float, float] = (0.55, 0.55, 0.57)
    name: str = "mesh"

    def __post_init__(self) -> None:
        self.texture = check_texture(self.texture, f"texture of {self.name}")

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])

    def to(self, device: str | torch.device) -> "TexturedMesh":
        return replace(self, verts=self.verts.to(device), faces=self.faces.to(device), verts_uvs=self.verts_uvs.to(device),
                       faces_uvs=self.faces_uvs.to(device), texture=self.texture.to(device), textured=self.textured.to(device))

    def with_texture(self, texture: torch.Tensor) -> "TexturedMesh":
        return replace(self, texture=texture)

    def atlas(self, texture: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One texture map for all faces: ``(map H x W' x 3, verts_uvs, faces_uvs)``.

        Textured faces keep their UVs (squeezed into the left ``W / W'`` of the map); untextured faces point
        at the middle of a strip of ``base_color`` appended on the right, after a copy of the last column so
        bilinear sampling at ``u = 1`` sees the texture's border as the renderer does. Differentiable with respect to ``texture``.
        """
        tex = check_texture(self.texture if texture is None else texture, "texture")
        if bool(self.textured.all()):
            return tex, self.verts_uvs, self.faces_uvs
        H, W, _ = tex.shape
        P = max(4, W // 16)
        strip = torch.tensor(self.base_color, dtype=tex.dtype, device=tex.device).expand(H, P, 3)
        atlas = torch.cat([tex, tex[:, -1:], strip], dim=1)  # the repeated column keeps the strip from bleeding
        uvs = self.verts_uvs.clone()
        uvs[:, 0] = uvs[:, 0] * W / (W + 1 + P)
        strip_uv = torch.tensor([[(W + 1 + P / 2) / (W + 1 + P), 0.5]], dtype=uvs.dtype, device=uvs.device)
        verts_uvs = torch.cat([uvs, strip_uv])
        faces_uvs = torch.where(self.textured[:, None], self.faces_uvs, torch.full_like(self.faces_uvs, len(uvs)))
        return atlas, verts_uvs, faces_uvs

    def to_pytorch3d(self, texture: torch.Tensor | None = None):
        """A PyTorch3D ``Meshes`` (batch of one) with ``TexturesUV`` (align_corners=False, border padding)."""
        from pytorch3d.renderer import TexturesUV
        from pytorch3d.structures import Meshes

        tex, verts_uvs, faces_uvs = self.atlas(texture)
        textures = TexturesUV(maps=tex[None].float(), faces_uvs=[faces_uvs], verts_uvs=[verts_uvs.float()],
                              align_corners=False, padding_mode="border")
        return Meshes(verts=[self.verts.float()], faces=[self.faces], textures=textures)

    def vertex_normals(self) -> torch.Tensor:
        """Area-weighted vertex normals, computed as PyTorch3D computes them."""
        from pytorch3d.structures import Meshes

        return Meshes(verts=[self.verts.float()], faces=[self.faces]).verts_normals_packed()


def check_texture(texture: torch.Tensor, what: str = "texture") -> torch.Tensor:
    """An ``H x W x 3`` float texture in [0, 1], or a PhysadvError naming the shape it got."""
    if not isinstance(texture, torch.Tensor):
        texture = torch.as_tensor(np.asarray(texture))
    if texture.ndim != 3 or texture.shape[2] != 3 or texture.shape[0] < 2 or texture.shape[1] < 2:
        hint = " (a C x H x W image? use image.permute(1, 2, 0))" if texture.ndim == 3 and texture.shape[0] == 3 else ""
        raise PhysadvError(f"{what}: expected an H x W x 3 RGB texture, got shape {tuple(texture.shape)}{hint}")
    if not texture.is_floating_point():
        texture = texture.float() / 255.0
    return texture


# --------------------------------------------------------------------------- procedural meshes
def shape_outline(shape: str, size: float, aspect: float = 1.0, segments: int = 64) -> tuple[np.ndarray, float, float]:
    """Counter-clockwise outline ``K x 2`` (metres) of a sign shape ``size`` across, and its bounding box (w, h).

    Octagon: ``size`` across the flats, flat top. Circle: diameter. Triangle: side, point up
    (``triangle_down``: point down, a yield sign). Diamond: a square on its corner, ``size`` corner to corner.
    Rectangle: ``size`` wide, ``size * aspect`` high. The shape is centred in its bounding box.
    """
    if shape not in SIGN_SHAPES:
        raise PhysadvError(f"unknown sign shape '{shape}'; known: {', '.join(SIGN_SHAPES)}")
    if not size > 0:
        raise PhysadvError(f"sign size must be positive (metres), got {size}")
    if shape == "octagon":
        r = size / 2 / math.cos(math.pi / 8)
        a = np.radians(22.5 + 45 * np.arange(8))
        return np.stack([r * np.cos(a), r * np.sin(a)], 1), size, size
    if shape == "circle":
        a = 2 * np.pi * np.arange(segments) / segments
        return np.stack([size / 2 * np.cos(a), size / 2 * np.sin(a)], 1), size, size
    if shape in ("triangle", "triangle_down"):
        h = size * math.sqrt(3) / 2
        pts = np.array([[-size / 2, -h / 2], [size / 2, -h / 2], [0, h / 2]])
        if shape == "triangle_down":
            pts = pts[::-1] * np.array([1, -1])  # mirror in y, keep counter-clockwise
        return pts, size, size  # the bounding square is size x size; the triangle sits in its middle
    if shape == "diamond":
        s = size / 2
        return np.array([[s, 0], [0, s], [-s, 0], [0, -s]]), size, size
    if not aspect > 0:
        raise PhysadvError(f"rectangle aspect (height / width) must be positive, got {aspect}")
    w, h = size / 2, size * aspect / 2
    return np.array([[-w, -h], [w, -h], [w, h], [-w, h]]), size, size * aspect


class _Builder:
    """Collects separate vertex groups (so normals stay sharp at creases) with UVs and a textured flag."""

    def __init__(self) -> None:
        self.verts: list[np.ndarray] = []
        self.uvs: list[np.ndarray] = []
        self.faces: list[np.ndarray] = []
        self.flags: list[np.ndarray] = []
        self.n = 0

    def add(self, verts: np.ndarray, faces: np.ndarray, uvs: np.ndarray | None = None, textured: bool = False) -> None:
        uvs = np.zeros((len(verts), 2)) if uvs is None else uvs
        self.verts.append(verts)
        self.uvs.append(uvs)
        self.faces.append(np.asarray(faces) + self.n)
        self.flags.append(np.full(len(faces), textured))
        self.n += len(verts)

    def build(self, texture: torch.Tensor | None, name: str, base_color=None) -> TexturedMesh:
        faces = torch.from_numpy(np.concatenate(self.faces)).long()
        tex = default_texture() if texture is None else texture
        kw = {} if base_color is None else {"base_color": tuple(base_color)}
        return TexturedMesh(torch.from_numpy(np.concatenate(self.verts)).float(), faces,
                            torch.from_numpy(np.concatenate(self.uvs)).float(), faces.clone(), tex,
                            torch.from_numpy(np.concatenate(self.flags)), name=name, **kw)


def _prism(b: _Builder, outline: np.ndarray, z0: float, z1: float, uv_box: tuple[float, float] | None,
           textured_front: bool) -> None:
    """A prism over a convex CCW ``outline``: front cap at ``z1`` (facing +z), back cap at ``z0``, side quads."""
    K = len(outline)
    centre = outline.mean(0)
    cap = np.concatenate([centre[None], outline])
    fan = np.array([[0, 1 + i, 1 + (i + 1) % K] for i in range(K)])
    uvs = None
    if uv_box is not None:
        w, h = uv_box
        uvs = np.stack([cap[:, 0] / w + 0.5, cap[:, 1] / h + 0.5], 1).clip(0, 1)
    b.add(np.column_stack([cap, np.full(K + 1, z1)]), fan, uvs, textured_front)
    b.add(np.column_stack([cap, np.full(K + 1, z0)]), fan[:, ::-1])
    for i in range(K):
        p, q = outline[i], outline[(i + 1) % K]
        quad = np.array([[*p, z0], [*q, z0], [*q, z1], [*p, z1]])
        b.add(quad, [[0, 1, 2], [0, 2, 3]])


def sign_plate(shape: str = "octagon", size: float = 0.75, thickness: float = 0.004, aspect: float = 1.0,
               post_length: float = 0.0, post_radius: float = 0.03, texture: torch.Tensor | None = None,
               segments: int = 64) -> TexturedMesh:
    """A sign plate: the front face (``z = 0``) shows the texture over the bounding square; back, edge and
    an optional round post (``post_length`` metres below the plate, behind it) show ``base_color``."""
    if thickness < 0 or post_length < 0 or post_radius <= 0:
        raise PhysadvError(f"sign plate: thickness {thickness}, post_length {post_length} must be >= 0 and "
                           f"post_radius {post_radius} > 0 (metres)")
    outline, w, h = shape_outline(shape, size, aspect, segments)
    b = _Builder()
    if thickness > 0:
        _prism(b, outline, -thickness, 0.0, (w, h), True)
    else:
        K = len(outline)
        cap = np.concatenate([outline.mean(0)[None], outline])
        b.add(np.column_stack([cap, np.zeros(K + 1)]), np.array([[0, 1 + i, 1 + (i + 1) % K] for i in range(K)]),
              np.stack([cap[:, 0] / w + 0.5, cap[:, 1] / h + 0.5], 1).clip(0, 1), True)
    if post_length > 0:
        top = h / 2 * 0.8
        bottom = outline[:, 1].min() - post_length
        a = 2 * np.pi * np.arange(16) / 16
        ring = np.stack([post_radius * np.sin(a), post_radius * np.cos(a)], 1)
        _cylinder_side(b, ring, bottom, top, z_offset=-thickness - post_radius * 1.01, textured=False)
    return b.build(texture, f"{shape} sign plate")


def _cylinder_side(b: _Builder, ring: np.ndarray, y0: float, y1: float, z_offset: float = 0.0,
                   textured: bool = False) -> None:
    """Side of a vertical cylinder (axis +y) through ``(0, z_offset)``; UV: u around (from +z), v up."""
    K = len(ring)
    ring = np.concatenate([ring, ring[:1]])  # duplicate the seam for UVs
    u = np.arange(K + 1) / K
    lower = np.column_stack([ring[:, 0], np.full(K + 1, y0), ring[:, 1] + z_offset])
    upper = np.column_stack([ring[:, 0], np.full(K + 1, y1), ring[:, 1] + z_offset])
    uvs = np.concatenate([np.column_stack([u, np.zeros(K + 1)]), np.column_stack([u, np.ones(K + 1)])])
    i = np.arange(K)
    faces = np.concatenate([np.stack([i, i + 1, i + K + 2], 1), np.stack([i, i + K + 2, i + K + 1], 1)])
    b.add(np.concatenate([lower, upper]), faces, uvs, textured)


def sphere(radius: float = 0.5, rings: int = 32, segments: int = 64, texture: torch.Tensor | None = None) -> TexturedMesh:
    """A UV sphere; equirectangular UVs (u = longitude from +z towards +x, v = latitude, 1 at the top)."""
    if not radius > 0:
        raise PhysadvError(f"sphere radius must be positive (metres), got {radius}")
    lat = np.linspace(-np.pi / 2, np.pi / 2, rings + 1)
    lon = np.linspace(-np.pi, np.pi, segments + 1)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    verts = radius * np.stack([np.cos(la) * np.sin(lo), np.sin(la), np.cos(la) * np.cos(lo)], -1).reshape(-1, 3)
    uvs = np.stack([(lo / (2 * np.pi) + 0.5), (la / np.pi + 0.5)], -1).reshape(-1, 2)
    r, s = np.meshgrid(np.arange(rings), np.arange(segments), indexing="ij")
    v00 = (r * (segments + 1) + s).ravel()
    v01, v10 = v00 + 1, v00 + segments + 1
    faces = np.concatenate([np.stack([v00, v01, v10 + 1], 1), np.stack([v00, v10 + 1, v10], 1)])
    faces = faces[np.linalg.norm(np.cross(verts[faces[:, 1]] - verts[faces[:, 0]], verts[faces[:, 2]] - verts[faces[:, 0]]), axis=1) > 1e-12 * radius**2]
    b = _Builder()
    b.add(verts, faces, uvs, True)
    return b.build(texture, "sphere")


def box(size: tuple[float, float, float] = (0.5, 0.5, 0.5), texture: torch.Tensor | None = None) -> TexturedMesh:
    """An axis-aligned box centred on the origin; every face shows the whole texture, upright."""
    if min(size) <= 0:
        raise PhysadvError(f"box size must be positive (metres), got {size}")
    hx, hy, hz = (s / 2 for s in size)
    b = _Builder()
    square_uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=float)
    # each face: 4 corners counter-clockwise seen from outside, starting bottom-left of the image
    for corners in (
        [[-hx, -hy, hz], [hx, -hy, hz], [hx, hy, hz], [-hx, hy, hz]],  # +z
        [[hx, -hy, -hz], [-hx, -hy, -hz], [-hx, hy, -hz], [hx, hy, -hz]],  # -z
        [[hx, -hy, hz], [hx, -hy, -hz], [hx, hy, -hz], [hx, hy, hz]],  # +x
        [[-hx, -hy, -hz], [-hx, -hy, hz], [-hx, hy, hz], [-hx, hy, -hz]],  # -x
        [[-hx, hy, hz], [hx, hy, hz], [hx, hy, -hz], [-hx, hy, -hz]],  # +y
        [[-hx, -hy, -hz], [hx, -hy, -hz], [hx, -hy, hz], [-hx, -hy, hz]],  # -y
    ):
        b.add(np.array(corners, dtype=float), [[0, 1, 2], [0, 2, 3]], square_uv, True)
    return b.build(texture, "box")


def cylinder(radius: float = 0.25, height: float = 0.8, segments: int = 64, texture: torch.Tensor | None = None) -> TexturedMesh:
    """A vertical cylinder centred on the origin: the texture wraps the side once; the caps are untextured."""
    if radius <= 0 or height <= 0:
        raise PhysadvError(f"cylinder radius {radius} and height {height} must be positive (metres)")
    a = 2 * np.pi * np.arange(segments) / segments
    ring = np.stack([radius * np.sin(a), radius * np.cos(a)], 1)  # (x, z), starting at +z going towards +x
    b = _Builder()
    _cylinder_side(b, ring, -height / 2, height / 2, textured=True)
    cap = np.concatenate([[[0, 0]], ring])
    fan = np.array([[0, 1 + i, 1 + (i + 1) % segments] for i in range(segments)])
    b.add(np.column_stack([cap[:, 0], np.full(segments + 1, height / 2), cap[:, 1]]), fan)
    b.add(np.column_stack([cap[:, 0], np.full(segments + 1, -height / 2), cap[:, 1]]), fan[:, ::-1])
    return b.build(texture, "cylinder")


def default_texture(size: int = 256) -> torch.Tensor:
    """A test pattern (``H x W x 3``): a colour checkerboard with a red top band and a blue left band, so
    orientation and UV errors show at a glance."""
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    check = ((x // (size // 8) + y // (size // 8)) % 2).float()
    tex = torch.stack([0.25 + 0.6 * check, 0.35 + 0.3 * (x / size), 0.3 + 0.4 * (y / size)], -1)
    tex[: size // 8, :] = torch.tensor([0.85, 0.1, 0.1])
    tex[:, : size // 16] = torch.tensor([0.1, 0.2, 0.85])
    return tex


# --------------------------------------------------------------------------- files
def load_mesh(path: str | Path, texture: str | Path | torch.Tensor | None = None, auto_uv: bool = False,
              scale: float = 1.0) -> TexturedMesh:
    """Load an OBJ/GLB/PLY (any format trimesh reads) with its UVs and texture image.

    ``texture`` (a file or an ``H x W x 3`` tensor) replaces the file's own image. A mesh without UVs is
    an error unless ``auto_uv=True`` (a spherical projection about the centroid: seams, but usable).
    ``scale`` converts the file's units to metres.
    """
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise PhysadvError(f"mesh file not found: {path}")
    try:
        loaded = trimesh.load(str(path), force="mesh", process=False)
    except Exception as exc:  # trimesh raises many types for garbage input
        raise PhysadvError(f"{path}: not a mesh trimesh can read ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise PhysadvError(f"{path}: no triangles found (is it a mesh file? supported: {', '.join(MESH_SUFFIXES)})")
    verts = np.asarray(loaded.vertices, dtype=np.float64) * scale
    faces = np.asarray(loaded.faces, dtype=np.int64)
    uv = getattr(loaded.visual, "uv", None)
    if uv is None or len(uv) != len(verts):
        if not auto_uv:
            raise PhysadvError(f"{path}: the mesh has no UV coordinates; unwrap it in a 3D tool, or pass "
                               "auto_uv=True (mesh.auto_uv: true) for a spherical projection")
        d = verts - verts.mean(0)
        d /= np.linalg.norm(d, axis=1, keepdims=True).clip(1e-12)
        uv = np.stack([np.arctan2(d[:, 0], d[:, 2]) / (2 * np.pi) + 0.5, np.arcsin(d[:, 1].clip(-1, 1)) / np.pi + 0.5], 1)
    image = None
    if isinstance(texture, torch.Tensor):
        image = texture
    elif texture is not None:
        from physadv.core.io import read_image

        image = read_image(texture).permute(1, 2, 0)
    else:
        mat = getattr(loaded.visual, "material", None)
        img = getattr(mat, "image", None) or getattr(mat, "baseColorTexture", None)
        if img is not None:
            image = torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0)
    f = torch.from_numpy(faces)
    return TexturedMesh(torch.from_numpy(verts).float(), f, torch.from_numpy(np.asarray(uv, dtype=np.float32)),
                        f.clone(), default_texture() if image is None else image,
                        torch.ones(len(faces), dtype=torch.bool), name=path.name)


def export_mesh(mesh: TexturedMesh, path: str | Path, texture: torch.Tensor | None = None) -> Path:
    """Write ``mesh`` with its texture (the atlas, if some faces are untextured) as OBJ (+ MTL + PNG) or GLB."""
    import trimesh
    from PIL import Image

    from physadv.core.io import to_uint8

    path = Path(path)
    if path.suffix.lower() not in (".obj", ".glb"):
        raise PhysadvError(f"{path}: export writes .obj or .glb")
    tex, verts_uvs, faces_uvs = mesh.atlas(texture)
    # trimesh wants one UV per vertex: split vertices at UV seams
    pairs = torch.stack([mesh.faces.reshape(-1), faces_uvs.reshape(-1)], 1)
    unique, inverse = torch.unique(pairs, dim=0, return_inverse=True)
    verts = mesh.verts[unique[:, 0]].detach().cpu().numpy()
    uvs = verts_uvs[unique[:, 1]].detach().cpu().numpy()
    faces = inverse.reshape(-1, 3).cpu().numpy()
    image = Image.fromarray(to_uint8(tex.detach().permute(2, 0, 1)))
    material = trimesh.visual.material.SimpleMaterial(image=image)
    tm = trimesh.Trimesh(verts, faces, visual=trimesh.visual.TextureVisuals(uv=uvs, image=image, material=material),
                         process=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tm.export(str(path))
    return path


# --------------------------------------------------------------------------- from a config
@dataclass
class MeshConfig:
    """Which mesh to render: a procedural one, or a file (OBJ/GLB/PLY with UVs)."""

    kind: str = "sign"  # sign, sphere, box, cylinder, file
    sign: str | None = None  # a class of the synthetic sign world (e.g. stop): sets shape, size and face texture
    shape: str = "octagon"  # sign shape: octagon, circle, triangle, triangle_down, diamond, rectangle
    size: float = 0.75  # metres: sign width (octagon across the flats), sphere/cylinder diameter, box edge
    thickness: float = 0.004  # metres, sign plate
    aspect: float = 1.0  # rectangle height / width; cylinder height / diameter
    post_length: float = 0.0  # metres of post below the sign (0: no post)
    path: str | None = None  # mesh file, for kind: file
    scale: float = 1.0  # file units to metres
    auto_uv: bool = False  # spherical UV projection for a file without UVs
    texture: str | None = None  # image file for the texture (default: the file's own, or a test pattern)

    def validate(self) -> None:
        if self.kind not in ("sign", "sphere", "box", "cylinder", "file"):
            raise ValueError(f"kind: unknown mesh kind '{self.kind}' (use sign, sphere, box, cylinder, file)")
        if self.kind == "file" and not self.path:
            raise ValueError("path: kind 'file' needs a mesh file path")
        if self.kind == "sign" and self.shape not in SIGN_SHAPES:
            raise ValueError(f"shape: unknown sign shape '{self.shape}'; known: {', '.join(SIGN_SHAPES)}")
        if not self.size > 0 or not self.scale > 0:
            raise ValueError(f"size {self.size} and scale {self.scale} must be positive")


def build_mesh(cfg: MeshConfig) -> TexturedMesh:
    texture = None
    if cfg.texture:
        from physadv.core.io import read_image

        texture = read_image(cfg.texture).permute(1, 2, 0)
    if cfg.kind == "file":
        return load_mesh(cfg.path, texture, auto_uv=cfg.auto_uv, scale=cfg.scale)
    if cfg.kind == "sign" and cfg.sign:
        from physadv.rendering.signs.textures import sign_spec, sign_texture

        spec = sign_spec(cfg.sign)
        face = sign_texture(cfg.sign, 512)[0].permute(1, 2, 0) if texture is None else texture
        shape = spec.shape + ("_down" if spec.pointing_down else "")
        return sign_plate(shape, spec.size_m, cfg.thickness, 1.0, cfg.post_length, texture=face)
    if cfg.kind == "sign":
        return sign_plate(cfg.shape, cfg.size, cfg.thickness, cfg.aspect, cfg.post_length, texture=texture)
    if cfg.kind == "sphere":
        return sphere(cfg.size / 2, texture=texture)
    if cfg.kind == "box":
        return box((cfg.size,) * 3, texture=texture)
    return cylinder(cfg.size / 2, cfg.size * cfg.aspect, texture=texture)
