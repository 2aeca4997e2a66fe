"""Scenes: an object, where the camera stands, the light, the background and the camera's effects, as one object
shared by design (views to optimise over), the simulated distance x angle grid, and judging.

Three kinds, one interface:

- ``PlanarScene``: a planar object (a sign of the sign world, or any image with its real width) in the sign
  world (``rendering.signs.world``): light in linear light, the photo background, the camera's blur, noise and
  JPEG, GTSRB-style crops around the object (``view: crop``) or whole frames with the object's box (``frame``);
- ``MeshScene``: a mesh with UVs (by default the sign's plate on its post) from a pool of poses rasterized once
  (``rendering.fragments``), Phong light in linear light, backgrounds, the same camera effects;
- ``FlatScene``: a 2D image under 2D transformations (Athalye et al. 2018, Table 4: scale, rotation, translation,
  lighten/darken, noise; contrast opt-in), optionally over the images of a dataset ("carriers": the adversarial
  patch of Brown et al. 2017 is pasted onto them).

    scene = build_scene(SceneConfig(object=ObjectConfig(kind="image", image="sign.png", width_m=0.6)))
    draw = scene.sample(32)                     # random poses, light, backgrounds, effects: replayable
    views = scene.render(texture, draw)         # Views(images, boxes); differentiable in ``texture``
    clean = scene.render(scene.obj.texture, draw)  # the same 32 views of the unperturbed object
    grid = scene.grid(GridSpec())               # RP2's distances x angles x lights, with the cells

A ``Draw`` is replayable: rendering two textures with one draw gives views that differ only by the texture.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch

from physadv.core.errors import PhysadvError
from physadv.core.victims import Views
from physadv.rendering.augment import FlatConfig
from physadv.rendering.camera import Pose, feet
from physadv.rendering.lights import LightConfig as PhongLights
from physadv.rendering.objects import ObjectConfig, PhysicalObject, load_object
from physadv.rendering.signs.world import WorldConfig, square_window


@dataclass
class Draw:
    """Random view parameters: ``items`` are poses (planar), pool indices (mesh) or carrier indices (flat); ``seed``
    replays the light, background and camera effects; ``cells`` label grid views ``(distance_m, angle_deg, light)``."""

    items: list
    seed: int
    cells: list[tuple[float, float, int]] | None = None

    def __len__(self) -> int:
        return len(self.items)

    def split(self, size: int) -> list["Draw"]:
        """Consecutive chunks of at most ``size`` views (each with its own replayable seed)."""
        out = []
        for k, i in enumerate(range(0, len(self), size)):
            cells = self.cells[i : i + size] if self.cells is not None else None
            out.append(Draw(self.items[i : i + size], (self.seed * 1_000_003 + k) % 2**62, cells))
        return out


@dataclass
class GridSpec:
    """RP2's evaluation grid: distances in feet (as the paper gives them), angles in degrees, several lights
    (renders with fresh light, background and camera effects) per cell. Left and right alternate per light."""

    distances_ft: tuple[float, ...] = (5, 10, 15, 20, 25, 30, 40)
    angles_deg: tuple[float, ...] = (0, 15, 30, 45, 60)
    lights_per_cell: int = 4
    seed: int = 12345  # different from any optimisation seed: fresh views
    flat_views: int = 200  # flat (2D) scenes have no distance or angle: this many fresh transformations

    def validate(self) -> None:
        if not self.distances_ft or not self.angles_deg:
            raise ValueError("the grid needs at least one distance and one angle")
        if min(self.distances_ft) <= 0:
            raise ValueError(f"distances must be positive, got {list(self.distances_ft)}")
        if self.lights_per_cell < 1 or self.flat_views < 1:
            raise ValueError("lights_per_cell and flat_views must be at least 1")

    def poses(self) -> tuple[list[Pose], list[tuple[float, float, int]]]:
        """One pose per (distance, angle, light) with small random elevation and roll; and the cells (metres)."""
        g = np.random.default_rng(self.seed)
        poses, cells = [], []
        for d in self.distances_ft:
            for a in self.angles_deg:
                for k in range(self.lights_per_cell):
                    side = 1 if k % 2 == 0 else -1
                    poses.append(Pose(feet(d), side * a, float(g.uniform(-5, 5)), float(g.uniform(-3, 3))))
                    cells.append((feet(float(d)), float(a), k))
        return poses, cells


@dataclass
class MeshViewConfig:
    """The camera and pool of a mesh scene (poses come from ``world.pose``, effects from ``world.effects``)."""

    image_size: tuple[int, int] = (96, 96)
    fov: float = 15.0  # degrees across the width
    pool_size: int = 48  # poses rasterized once for optimisation
    supersample: int = 2
    lights: PhongLights = field(default_factory=PhongLights)  # Phong light, applied in linear light

    def validate(self) -> None:
        if self.pool_size < 1 or self.supersample < 1 or min(self.image_size) < 8:
            raise ValueError("mesh.pool_size and mesh.supersample must be >= 1, mesh.image_size >= 8")


@dataclass
class SceneConfig:
    """One scene: the object, the world it is photographed in, and how views are taken."""

    kind: Literal["planar", "mesh", "flat"] = "planar"
    object: ObjectConfig = field(default_factory=ObjectConfig)
    world: WorldConfig = field(default_factory=WorldConfig)
    view: Literal["crop", "frame"] = "crop"  # planar: GTSRB crops around the object, or whole frames
    frame_px: int = 640  # planar frames: width in pixels (the world camera scaled)
    mesh: MeshViewConfig = field(default_factory=MeshViewConfig)
    flat: FlatConfig = field(default_factory=FlatConfig)
    view_px: int = 0  # crop size the victims see (0: the world's crop_px, raised to the largest victim input)
    stratified: bool = True  # views per step by Latin hypercube over distance and angle (planar and mesh scenes)
    carriers: str = ""  # flat scenes: paste onto the test images of this dataset (the patch's setting) instead
    carriers_limit: int = 2000  # at most this many carrier images
    seed: int = 0

    def validate(self) -> None:
        if self.kind == "mesh" and self.object.kind == "image":
            raise ValueError("a mesh scene needs a mesh or a sign object, not an image")
        if self.kind != "flat" and self.object.kind == "dataset":
            raise ValueError("a dataset image is a flat object: use scene.kind: flat")
        if self.kind in ("planar", "flat") and self.object.kind == "mesh":
            raise ValueError(f"a {self.kind} scene needs a planar object; use scene.kind: mesh for a mesh")
        if self.frame_px < 32:
            raise ValueError(f"frame_px must be at least 32, got {self.frame_px}")


class Scene:
    """The interface (see the module docstring); ``self.g`` draws views and is saved in checkpoints."""

    kind = "scene"

    def __init__(self, obj: PhysicalObject, seed: int = 0):
        self.obj = obj
        self.g = torch.Generator().manual_seed(seed)

    def _seed(self) -> int:
        return int(torch.randint(2**62, (1,), generator=self.g))

    def sample(self, n: int) -> Draw:
        raise NotImplementedError

    def grid(self, spec: GridSpec) -> Draw:
        raise NotImplementedError

    def carriers(self, draw: Draw) -> torch.Tensor:
        """What each view's texture starts from before a patch is pasted: the object's own texture."""
        return self.obj.texture.expand(len(draw), -1, -1, -1)

    def render(self, texture: torch.Tensor, draw: Draw) -> Views:
        raise NotImplementedError

    def state(self) -> torch.Tensor:
        return self.g.get_state()

    def restore(self, state: torch.Tensor) -> None:
        self.g.set_state(state)

    def _textures(self, texture: torch.Tensor, n: int) -> torch.Tensor:
        """``3 x h x w`` or ``N x 3 x h x w`` matching the object's texture; returns ``N x 3 x h x w``."""
        t = texture[None] if texture.ndim == 3 else texture
        if t.ndim != 4 or tuple(t.shape[1:]) != tuple(self.obj.texture.shape) or t.shape[0] not in (1, n):
            raise PhysadvError(f"texture must be {tuple(self.obj.texture.shape)} (or one per view), got {tuple(texture.shape)}")
        return t.expand(n, -1, -1, -1)


class PlanarScene(Scene):
    kind = "planar"

    def __init__(self, obj: PhysicalObject, world: WorldConfig, view: str = "crop", frame_px: int = 640, seed: int = 0,
                 stratified: bool = True):
        if not obj.planar:
            raise PhysadvError(f"{obj.name} is a mesh: use a mesh scene")
        super().__init__(obj, seed)
        self.world, self.view, self.frame_px, self.stratified = world, view, frame_px, stratified

    def sample(self, n: int) -> Draw:
        from physadv.rendering.signs.world import sample_poses

        return Draw(sample_poses(n, self.world.pose, self.g, self.stratified), self._seed())

    def grid(self, spec: GridSpec) -> Draw:
        poses, cells = spec.poses()
        return Draw(poses, spec.seed, cells)

    def render(self, texture: torch.Tensor, draw: Draw) -> Views:
        from physadv.core.colour import srgb_to_linear
        from physadv.rendering.signs.world import photograph_frames, photograph_planar

        n = len(draw)
        lin = srgb_to_linear(self._textures(texture, n).clamp(0, 1))
        alpha = self.obj.alpha.to(lin).expand(n, -1, -1, -1)
        g = torch.Generator().manual_seed(draw.seed)
        group = [(list(range(n)), self.obj.size_m, self.obj.outline_m)]
        if self.view == "frame":
            images, boxes = photograph_frames(lin, alpha, group, draw.items, self.world, g, self.frame_px)
            return Views(images, boxes, draw.seed)
        return Views(photograph_planar(lin, alpha, group, draw.items, self.world, g).images, seed=draw.seed)


class MeshScene(Scene):
    """A mesh from a pool of rasterized poses. Each view is a whole image with the object's box (its face outline
    for a sign, else the covered pixels), so a classifier victim crops it as a detector would."""

    kind = "mesh"

    def __init__(self, obj: PhysicalObject, world: WorldConfig, cfg: MeshViewConfig, seed: int = 0,
                 device: str | torch.device = "cpu", stratified: bool = True):
        if obj.mesh is None:
            raise PhysadvError(f"{obj.name} has no mesh: use a planar scene")
        super().__init__(obj, seed)
        self.world, self.cfg, self.device = world, cfg, torch.device(device)
        self._pools: dict = {}
        self.camera = self._camera()
        self.pool, self.boxes = self._rasterize(self._poses(cfg.pool_size, self.g, stratified))

    def _camera(self):
        from physadv.rendering.camera import Intrinsics

        h, w = self.cfg.image_size
        return Intrinsics.from_fov(self.cfg.fov, w, h)

    def _poses(self, n: int, g: torch.Generator, stratified: bool) -> list[Pose]:
        from physadv.rendering.signs.world import sample_poses

        return sample_poses(n, self.world.pose, g, stratified)  # the pool itself spreads over distance and angle

    def _rasterize(self, poses: list[Pose]):
        from physadv.rendering.fragments import rasterize_pool
        from physadv.rendering.planar import apply_homography, bbox_of
        from physadv.rendering.camera import plane_homography

        pool = rasterize_pool(self.obj.mesh, poses, self.camera, self.cfg.supersample, device=self.device, progress=False)
        boxes = []
        for i, pose in enumerate(poses):
            if self.obj.outline_m is not None:  # a sign: its face (x0, y0, x1, y1), OpenCV pixels -> torchvision's
                boxes.append(bbox_of(apply_homography(plane_homography(pose, self.camera), self.obj.outline_m)) + 0.5)
            else:
                ys, xs = torch.nonzero(pool.alpha[i, 0] > 0.5, as_tuple=True)
                if len(xs) == 0:
                    raise PhysadvError(f"{self.obj.name} is out of view at {pose}; move the camera (world.pose)")
                boxes.append(np.array([float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1]))
        return pool, torch.tensor(np.stack(boxes), dtype=torch.float32)

    def sample(self, n: int) -> Draw:
        return Draw(torch.randint(len(self.pool), (n,), generator=self.g).tolist(), self._seed())

    def grid(self, spec: GridSpec) -> Draw:
        poses, cells = spec.poses()
        key = (tuple(spec.distances_ft), tuple(spec.angles_deg), spec.lights_per_cell, spec.seed)
        if key not in self._pools:
            self._pools[key] = self._rasterize(poses)
        return Draw([("grid", key, i) for i in range(len(poses))], spec.seed, cells)

    def render(self, texture: torch.Tensor, draw: Draw) -> Views:
        from physadv.rendering.backgrounds import sample_backgrounds
        from physadv.rendering.lights import sample_lights
        from physadv.rendering.renderer import render
        from physadv.rendering.signs.world import camera_effects

        n = len(draw)
        tex = self._textures(texture, n)
        if isinstance(draw.items[0], tuple):  # grid views live in their own pool
            pool, boxes = self._pools[draw.items[0][1]]
            idx = [it[2] for it in draw.items]
        else:
            pool, boxes, idx = self.pool, self.boxes, list(draw.items)
        g = torch.Generator().manual_seed(draw.seed)
        h, w = pool.size
        lights = sample_lights(self.cfg.lights, n, g).to(self.device)
        bgs = sample_backgrounds(n, h, w, tuple(self.world.backgrounds), g).to(self.device)
        if texture.ndim == 3:
            images = render(tex[0].permute(1, 2, 0).to(self.device), pool, idx, lights, bgs)
        else:  # one texture per view (a patch pasted at a different place in each)
            images = torch.cat([render(tex[k].permute(1, 2, 0).to(self.device), pool, [idx[k]], lights.index(slice(k, k + 1)),
                                       bgs[k : k + 1]) for k in range(n)])
        jit = (torch.rand(n, 4, generator=g) * 2 - 1) * self.world.box_jitter
        b = boxes[idx].clone()
        size = torch.stack([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]] * 2, 1)
        images = camera_effects(images, torch.ones(n), self.world.effects, None, g)
        b = b + jit * size
        if self.world.square_crops:  # these views' crops keep the object's aspect (world.square_crops)
            square = torch.rand(n, generator=g) < self.world.square_crops
            b[square] = torch.tensor([square_window(w) for w in b[square].tolist()], dtype=b.dtype).view(-1, 4)
        return Views(images, b, draw.seed)


class FlatScene(Scene):
    """2D views: the object's texture (or, with ``carriers``, dataset images) under ``FlatConfig``'s transformations,
    with Kornia (``rendering.augment.flat_transform``)."""

    kind = "flat"

    def __init__(self, obj: PhysicalObject, cfg: FlatConfig, carriers: torch.Tensor | None = None, seed: int = 0):
        super().__init__(obj, seed)
        self.cfg = cfg
        self.images = carriers
        if carriers is not None and (carriers.ndim != 4 or tuple(carriers.shape[1:]) != tuple(obj.texture.shape)):
            raise PhysadvError(f"carrier images must be N x {' x '.join(map(str, obj.texture.shape))}, got {tuple(carriers.shape)}")

    def sample(self, n: int) -> Draw:
        items = (torch.randint(len(self.images), (n,), generator=self.g).tolist() if self.images is not None else [0] * n)
        return Draw(items, self._seed())

    def grid(self, spec: GridSpec) -> Draw:
        g = torch.Generator().manual_seed(spec.seed)
        n = spec.flat_views
        items = torch.randint(len(self.images), (n,), generator=g).tolist() if self.images is not None else [0] * n
        return Draw(items, spec.seed)

    def carriers(self, draw: Draw) -> torch.Tensor:
        if self.images is None:
            return super().carriers(draw)
        return self.images[draw.items]

    def render(self, texture: torch.Tensor, draw: Draw) -> Views:
        from physadv.rendering.augment import flat_transform, sample_flat

        n = len(draw)
        tex = self._textures(texture, n)
        params = sample_flat(self.cfg, tex.shape, torch.Generator().manual_seed(draw.seed))
        return Views(flat_transform(tex, params, self.cfg.fill), seed=draw.seed)


def build_scene(cfg: SceneConfig, device: str | torch.device = "cpu", min_view_px: int = 0,
                exclude_class: str | None = None) -> Scene:
    """The scene ``cfg`` describes. ``min_view_px``: the largest victim input, so crops are not coarser than it;
    ``exclude_class``: carrier images of this class are left out (a targeted patch is judged on the others)."""
    try:
        cfg.validate()
    except ValueError as exc:
        raise PhysadvError(f"scene: {exc}") from None
    obj = load_object(cfg.object, with_mesh=cfg.kind == "mesh")
    world = cfg.world
    px = max(cfg.view_px or world.crop_px, min_view_px)
    if px != world.crop_px:  # render at the victims' resolution (the work grid at least twice the crop)
        world = replace(world, crop_px=px, work_px=max(world.work_px, 2 * px))
    if cfg.kind == "planar":
        return PlanarScene(obj, world, cfg.view, cfg.frame_px, cfg.seed, cfg.stratified)
    if cfg.kind == "mesh":
        return MeshScene(obj, world, cfg.mesh, cfg.seed, device, cfg.stratified)
    carriers = None
    if cfg.carriers:
        carriers, obj = _carriers(cfg, exclude_class)
    elif cfg.object.kind == "sign":  # a sign as a flat image: over a neutral fill
        obj = replace(obj, texture=obj.texture * obj.alpha + cfg.flat.fill * (1 - obj.alpha), alpha=torch.ones_like(obj.alpha))
    return FlatScene(obj, cfg.flat, carriers, cfg.seed)


def _carriers(cfg: SceneConfig, exclude_class: str | None) -> tuple[torch.Tensor, PhysicalObject]:
    """The carrier images (RGB, ``N x 3 x H x W``) of ``cfg.carriers`` and a flat object of their size."""
    from physadv.core.data import load_dataset

    data = load_dataset(cfg.carriers, "test")
    keep = data.labels != data.classes.index(exclude_class) if exclude_class in data.classes else torch.ones(len(data), dtype=torch.bool)
    images = data.images[keep][: cfg.carriers_limit]
    if len(images) == 0:
        raise PhysadvError(f"scene.carriers: no {cfg.carriers} test images outside the class '{exclude_class}'")
    images = images.expand(-1, 3, -1, -1).contiguous() if images.shape[1] == 1 else images
    obj = PhysicalObject(f"{cfg.carriers} images", images[0], torch.ones(1, *images.shape[-2:]), (1.0, 1.0), None, "dataset",
                         f"{cfg.carriers}:test")
    return images, obj


__all__ = ["Draw", "GridSpec", "FlatConfig", "MeshViewConfig", "SceneConfig", "Scene", "PlanarScene", "MeshScene",
           "FlatScene", "build_scene"]
