"""Expectation over Transformation for a 3D object's texture (Athalye et al. 2018, the 3D case).

The texture of a textured mesh (by default the procedural stop sign on its post) is optimised over a
pool of camera poses rasterized once (``rendering.fragments``), with fresh lights and backgrounds every
step, through the differentiable cached-fragment renderer (``rendering.renderer``). The classifier
sees what a detector would give it: the GTSRB-style crop around the sign face. The perturbation is
penalised by its mean CIELAB distance to the original texture (optionally bounded in L-infinity).
Success is reported on fresh poses that were not in the optimisation pool.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import torch

from physadv.core.errors import PhysadvError
from physadv.core.models import Classifier
from physadv.core.progress import progress
from physadv.core.train import descend
from physadv.printing.colour import rgb_to_lab
from physadv.rendering.backgrounds import sample_backgrounds
from physadv.rendering.camera import plane_homography
from physadv.rendering.fragments import FragmentPool, rasterize_pool
from physadv.rendering.lights import LightConfig, sample_lights
from physadv.rendering.mesh import TexturedMesh, load_mesh, sign_plate
from physadv.rendering.planar import apply_homography, bbox_of
from physadv.rendering.poses import PoseConfig, sample_poses
from physadv.rendering.renderer import render
from physadv.rendering.signs.textures import sign_spec, sign_texture
from physadv.rendering.signs.world import gtsrb_crop


@dataclass
class EOT3DConfig:
    source: str = "stop"
    target: str = "speed_limit_80"
    mesh: str = ""  # a mesh file with UVs; empty: the procedural sign of `source` on a post
    texture_px: int = 128
    post_length: float = 1.2  # metres of post below the sign plate
    poses: PoseConfig = field(default_factory=lambda: PoseConfig(distance=(2.5, 9.0), azimuth=(-50.0, 50.0),
                                                                 elevation=(-10.0, 20.0), image_size=(96, 96), fov=15.0))
    lights: LightConfig = field(default_factory=LightConfig)
    pool_size: int = 48
    eval_poses: int = 200
    lam: float = 0.02  # weight of the mean CIELAB delta E between the texture and the original
    eps: Optional[float] = None  # optional L-infinity bound on the texture change
    noise_std: float = 0.02  # camera noise added to every view
    steps: int = 200
    batch: int = 16
    lr: float = 0.03
    seed: int = 0

    def validate(self) -> None:
        if self.pool_size < 1 or self.eval_poses < 1 or self.steps < 1 or self.batch < 1:
            raise ValueError("pool_size, eval_poses, steps and batch must be at least 1")
        if self.eps is not None and self.eps <= 0:
            raise ValueError(f"eps must be positive, got {self.eps}")


@dataclass
class EOT3DResult:
    texture: torch.Tensor  # 3 x S x S
    clean: torch.Tensor
    mean_target_probability: float  # over fresh poses
    targeted_success: float
    clean_accuracy: float  # the unperturbed texture on the same fresh poses
    clean_target_probability: float
    mean_delta_e: float  # CIELAB distance of the texture to the original (texels of the face)
    history: dict
    seconds: float
    seconds_per_step: float


class MeshViews:
    """Cached fragments of a mesh + the crop box of its sign face in each view."""

    def __init__(self, mesh: TexturedMesh, cfg: EOT3DConfig, n: int, g: torch.Generator, face_outline_m,
                 device: str | torch.device = "cpu"):
        self.cfg = cfg
        self.device = torch.device(device)
        poses = sample_poses(cfg.poses, n, g)
        self.pool: FragmentPool = rasterize_pool(mesh, poses, cfg.poses.camera(), supersample=2, progress=False).to(device)
        intr = cfg.poses.camera()
        self.boxes = [bbox_of(apply_homography(plane_homography(p, intr), face_outline_m)) for p in poses]

    def crops(self, texture_hwc: torch.Tensor, idx: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        n = len(idx)
        h, w = self.pool.size
        lights = sample_lights(self.cfg.lights, n, g).to(self.device)
        bgs = sample_backgrounds(n, h, w, generator=g).to(self.device)
        images = render(texture_hwc, self.pool, idx, lights, bgs)
        crops = torch.stack([gtsrb_crop(images[k], self.boxes[int(i)], 32) for k, i in enumerate(idx)])
        return (crops + self.cfg.noise_std * torch.randn(crops.shape, generator=g).to(self.device)).clamp(0, 1)


def target_mesh(cfg: EOT3DConfig, texture_hwc: torch.Tensor) -> TexturedMesh:
    """The mesh whose texture is optimised: the file `cfg.mesh`, or the procedural sign of `cfg.source` on a post."""
    if cfg.mesh:
        return load_mesh(cfg.mesh, texture=texture_hwc)
    spec = sign_spec(cfg.source)
    return sign_plate(spec.shape, spec.size_m, post_length=cfg.post_length, texture=texture_hwc)


def eot_3d(model: Classifier, cfg: EOT3DConfig, progress_bar: bool = True,
           device: str | torch.device = "cpu") -> EOT3DResult:
    start = time.perf_counter()
    for name in (cfg.source, cfg.target):
        if name not in model.classes:
            raise PhysadvError(f"class '{name}' does not exist; classes: {', '.join(model.classes)}")
    target, source = model.classes.index(cfg.target), model.classes.index(cfg.source)
    model = model.to(device).eval().requires_grad_(False)
    g = torch.Generator().manual_seed(cfg.seed)
    rgb, alpha = sign_texture(cfg.source, cfg.texture_px)
    clean = rgb.permute(1, 2, 0).contiguous()  # H x W x 3, as the renderer takes it
    outline = sign_spec(cfg.source).outline()
    mesh = target_mesh(cfg, clean)
    views = MeshViews(mesh, cfg, cfg.pool_size, g, outline, device)
    clean = clean.to(device)
    face = (alpha[0] > 0.5).float()[..., None].to(device)
    w = torch.atanh((clean * 2 - 1).clamp(-0.999, 0.999)).clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=cfg.lr)
    lab0 = rgb_to_lab(clean)
    history: dict[str, list[float]] = {"classification": [], "delta_e": [], "batch_target_probability": []}
    t_opt = time.perf_counter()
    for step in progress(range(cfg.steps), desc="EOT 3D", disable=not progress_bar):
        tex = (torch.tanh(w) + 1) / 2
        if cfg.eps is not None:
            tex = clean + (tex - clean).clamp(-cfg.eps, cfg.eps)
        tex = clean * (1 - face) + tex * face  # only the sign face is paintable
        idx = torch.randint(len(views.pool), (cfg.batch,), generator=g)
        probs = torch.softmax(model(views.crops(tex, idx, g)), 1)
        cls = -torch.log(probs[:, target] + 1e-12).mean()
        de = ((rgb_to_lab(tex) - lab0).pow(2).sum(-1) + 1e-8).sqrt()
        de = (de * face[..., 0]).sum() / face.sum()
        loss = cls + cfg.lam * de
        descend(opt, loss, f"EOT 3D diverged at step {step}", f"lower lr (now {cfg.lr})")
        history["classification"].append(float(cls.detach()))
        history["delta_e"].append(float(de.detach()))
        history["batch_target_probability"].append(float(probs[:, target].mean().detach()))
    per_step = (time.perf_counter() - t_opt) / cfg.steps
    with torch.no_grad():
        tex = (torch.tanh(w) + 1) / 2
        if cfg.eps is not None:
            tex = clean + (tex - clean).clamp(-cfg.eps, cfg.eps)
        tex = clean * (1 - face) + tex * face
        ge = torch.Generator().manual_seed(cfg.seed + 1_000_003)  # fresh poses, lights and backgrounds
        fresh = MeshViews(mesh, cfg, cfg.eval_poses, ge, outline, device)
        stats = {}
        for name, t in (("adv", tex), ("clean", clean)):
            gg = torch.Generator().manual_seed(cfg.seed + 7)  # the same lights/backgrounds for both
            p = torch.cat([torch.softmax(model(fresh.crops(t, torch.arange(i, min(i + 50, cfg.eval_poses)), gg)), 1)
                           for i in range(0, cfg.eval_poses, 50)])
            stats[name] = p
        de = (rgb_to_lab(tex) - lab0).pow(2).sum(-1).sqrt()
        mean_de = float((de * face[..., 0]).sum() / face.sum())
    pa, pc = stats["adv"], stats["clean"]
    return EOT3DResult(tex.permute(2, 0, 1).contiguous().cpu(), rgb, float(pa[:, target].mean()),
                       float((pa.argmax(1) == target).float().mean()), float((pc.argmax(1) == source).float().mean()),
                       float(pc[:, target].mean()), mean_de, history, time.perf_counter() - start, per_step)


def contact_sheet(model: Classifier, cfg: EOT3DConfig, texture: torch.Tensor, n: int = 8, seed: int = 3):
    """Full rendered views of the textured mesh (for pictures), and the classifier's labels of their crops."""
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    tex = texture.permute(1, 2, 0).contiguous()
    views = MeshViews(target_mesh(cfg, tex), cfg, n, g, sign_spec(cfg.source).outline(), device)
    idx = torch.arange(n)
    h, w = views.pool.size
    with torch.no_grad():
        images = render(tex.to(device), views.pool, idx, sample_lights(cfg.lights, n, g).to(device),
                        sample_backgrounds(n, h, w, generator=g).to(device))
        crops = torch.stack([gtsrb_crop(images[k], views.boxes[k], 32) for k in range(n)])
        labels = [model.classes[int(c)] for c in model(crops).argmax(1)]
    return images.cpu(), labels
