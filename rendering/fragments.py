"""Rasterize a pool of poses once and keep what shading needs: the cached half of the EOT renderer.

PyTorch3D's CPU rasterizer is slow (the naive one), but EOT optimises a texture, not geometry, so
visibility needs no gradient. ``rasterize_pool`` rasterizes each pose once (at ``supersample`` times
the output resolution, for anti-aliasing) and keeps, for every covered sub-pixel sample: the output
pixel it falls in, its texture coordinates (barycentric interpolation of the face UVs), whether its
face is textured, its unit normal and the unit direction towards the camera (both world frame). Plus
the coverage ``alpha`` of every output pixel. ``rendering.renderer.render`` turns these into images.

Pixel ``(u, v)`` of a rendered image is centred on OpenCV's pixel ``(u, v)`` (``cv2.projectPoints`` of
``rendering.camera``), as in ``rendering.planar``, so the two renderers agree on geometry.

Samples are stored flat (``M`` of them, pose ``p`` owning ``offsets[p]:offsets[p+1]``), so texture
sampling and shading cost work in proportion to the pixels the object covers, not to the image size.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from physadv.core.errors import PhysadvError
from physadv.rendering.camera import Intrinsics, Pose, to_pytorch3d
from physadv.rendering.mesh import TexturedMesh


LAYOUT = "C x M"  # how per-sample attributes are stored (saved pools record it)


@dataclass
class FragmentPool:
    poses: list[Pose]
    camera: Intrinsics  # at the output resolution
    supersample: int
    offsets: torch.Tensor  # P + 1 long
    # per sample, one row per component (2 x M, 3 x M): shading runs on contiguous rows
    pixel: torch.Tensor  # M long: output pixel (row * W + col) of each sample
    uv: torch.Tensor  # 2 x M texture coordinates, (0, 0) bottom-left
    textured: torch.Tensor  # M bool
    normal: torch.Tensor  # 3 x M unit normals
    to_camera: torch.Tensor  # 3 x M unit vectors from the surface point to the camera
    alpha: torch.Tensor  # P x 1 x H x W coverage in [0, 1]
    base_color: tuple[float, float, float]
    _binned: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def binned_pixel(self, factor: int = 1) -> torch.Tensor:
        """Each sample's pixel at ``1 / factor`` of the resolution, computed once per factor."""
        H, W = self.size
        if factor < 1 or H % factor or W % factor:
            raise PhysadvError(f"downsample must be a whole divisor of the pool's {H} x {W} views, got {factor}")
        if factor == 1:
            return self.pixel
        if factor not in self._binned:
            row, col = self.pixel.div(W, rounding_mode="floor"), self.pixel % W
            self._binned[factor] = row.div(factor, rounding_mode="floor") * (W // factor) + col.div(factor, rounding_mode="floor")
        return self._binned[factor]

    def __len__(self) -> int:
        return len(self.poses)

    @property
    def size(self) -> tuple[int, int]:
        return self.camera.height, self.camera.width

    def to(self, device: str | torch.device) -> "FragmentPool":
        moved = {k: getattr(self, k).to(device) for k in ("offsets", "pixel", "uv", "textured", "normal", "to_camera", "alpha")}
        return FragmentPool(self.poses, self.camera, self.supersample, base_color=self.base_color, **moved)

    def save(self, path: str | Path) -> Path:
        """Write the pool as safetensors (poses and camera in the JSON metadata)."""
        from dataclasses import asdict

        from physadv.core.io import save_checkpoint

        tensors = {k: getattr(self, k).contiguous().cpu() for k in ("offsets", "pixel", "uv", "textured", "normal", "to_camera", "alpha")}
        meta = {"poses": [asdict(p) for p in self.poses], "camera": asdict(self.camera), "supersample": self.supersample,
                "base_color": list(self.base_color), "layout": LAYOUT}
        return save_checkpoint(path, tensors, meta)

    @staticmethod
    def load(path: str | Path, device: str | torch.device = "cpu") -> "FragmentPool":
        from physadv.core.io import load_checkpoint

        tensors, meta = load_checkpoint(path, device)
        if meta.get("layout") != LAYOUT:
            raise PhysadvError(f"{path}: a fragment pool from an older physadv (sample layout "
                               f"{meta.get('layout', 'M x C')}, expected {LAYOUT}); rasterize it again")
        try:
            poses = [Pose(**{**p, "look_at": tuple(p["look_at"])}) for p in meta["poses"]]
            return FragmentPool(poses, Intrinsics(**meta["camera"]), int(meta["supersample"]),
                                base_color=tuple(meta["base_color"]), **tensors)
        except (KeyError, TypeError) as exc:
            raise PhysadvError(f"{path}: not a fragment pool ({exc})") from None


def pytorch3d_cameras(poses: list[Pose], camera: Intrinsics, supersample: int = 1, device: str | torch.device = "cpu"):
    """PyTorch3D cameras whose pixel ``(u, v)`` (at ``supersample`` times the resolution, box-filtered back)
    is centred on OpenCV's pixel ``(u, v)`` of ``camera``, as ``cv2.projectPoints`` and the planar renderer
    have it. ``to_pytorch3d`` alone puts PyTorch3D's pixel centres half a pixel off (at ``u + 0.5``)."""
    s = supersample
    hi = Intrinsics(camera.fx * s, camera.fy * s, (camera.cx + 0.5) * s, (camera.cy + 0.5) * s,
                    camera.width * s, camera.height * s)
    return to_pytorch3d(poses, hi, device)


def rasterize_pool(mesh: TexturedMesh, poses: list[Pose], camera: Intrinsics, supersample: int = 2,
                   chunk: int = 4, device: str | torch.device = "cpu", progress: bool = True) -> FragmentPool:
    """Rasterize ``mesh`` from every pose once (PyTorch3D ``MeshRasterizer``, one face per pixel)."""
    from pytorch3d.ops import interpolate_face_attributes
    from pytorch3d.renderer import MeshRasterizer, RasterizationSettings

    from physadv.core.progress import progress as bar

    if not poses:
        raise PhysadvError("rasterize_pool: no poses given")
    if supersample < 1:
        raise PhysadvError(f"supersample must be >= 1, got {supersample}")
    s = int(supersample)
    H, W = camera.height, camera.width
    mesh = mesh.to(device)
    meshes = mesh.to_pytorch3d()
    faces = mesh.faces
    F = faces.shape[0]
    face_uvs = mesh.verts_uvs[mesh.faces_uvs].float()  # F x 3 x 2
    face_normals = mesh.vertex_normals()[faces]  # F x 3 x 3
    face_verts = mesh.verts[faces].float()
    settings = RasterizationSettings(image_size=(H * s, W * s), blur_radius=0.0, faces_per_pixel=1, bin_size=0)
    rows = torch.arange(H * s, device=device).div(s, rounding_mode="floor")[:, None] * W
    cols = torch.arange(W * s, device=device).div(s, rounding_mode="floor")[None, :]
    out_pixel = (rows + cols).reshape(-1)
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("pixel", "uv", "textured", "normal", "to_camera")}
    counts, alphas = [], []
    chunks = range(0, len(poses), chunk)
    for start in bar(chunks, desc="rasterize", total=len(chunks), disable=not progress):
        batch = poses[start : start + chunk]
        cams = pytorch3d_cameras(batch, camera, s, device)
        frags = MeshRasterizer(cameras=cams, raster_settings=settings)(meshes.extend(len(batch)))
        p2f = frags.pix_to_face[..., :1]  # n x sH x sW x 1, packed face index
        covered = p2f[..., 0] >= 0
        local = torch.where(p2f >= 0, p2f % F, p2f)  # same face for every copy of the mesh
        bary = frags.bary_coords[..., :1, :]
        uv = interpolate_face_attributes(local, bary, face_uvs)[..., 0, :]
        normal = torch.nn.functional.normalize(interpolate_face_attributes(local, bary, face_normals)[..., 0, :], dim=-1, eps=1e-6)
        point = interpolate_face_attributes(local, bary, face_verts)[..., 0, :]
        centres = cams.get_camera_center()  # n x 3
        to_cam = torch.nn.functional.normalize(centres[:, None, None, :] - point, dim=-1, eps=1e-6)
        textured = mesh.textured[local[..., 0].clamp(min=0)]
        for i in range(len(batch)):
            m = covered[i].reshape(-1)
            counts.append(int(m.sum()))
            parts["pixel"].append(out_pixel[m])
            parts["uv"].append(uv[i].reshape(-1, 2)[m].T)
            parts["textured"].append(textured[i].reshape(-1)[m])
            parts["normal"].append(normal[i].reshape(-1, 3)[m].T)
            parts["to_camera"].append(to_cam[i].reshape(-1, 3)[m].T)
        cov = covered.float()[:, None]
        alphas.append(torch.nn.functional.avg_pool2d(cov, s) if s > 1 else cov)
    offsets = torch.zeros(len(poses) + 1, dtype=torch.long, device=device)
    offsets[1:] = torch.tensor(counts, device=device).cumsum(0)
    return FragmentPool(list(poses), camera, s, offsets, base_color=tuple(mesh.base_color), alpha=torch.cat(alphas),
                        **{k: torch.cat(v, -1) for k, v in parts.items()})
