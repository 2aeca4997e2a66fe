"""``physadv render``: a contact sheet of sampled views of a mesh or sign plate, clean and through the EOT stack.

    physadv render --config configs/rendering/stop_sign.yaml --set views=24 --set poses.distance=[1.5,12]
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field

import torch

from physadv.rendering.augment import AugmentConfig
from physadv.rendering.lights import LightConfig
from physadv.rendering.mesh import MeshConfig
from physadv.rendering.poses import PoseConfig


@dataclass
class RenderConfig:
    mesh: MeshConfig = field(default_factory=MeshConfig)
    poses: PoseConfig = field(default_factory=PoseConfig)
    lights: LightConfig = field(default_factory=LightConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    backgrounds: list[str] = field(default_factory=lambda: ["photo", "solid", "noise"])
    views: int = 16
    supersample: int = 2  # anti-aliasing: rasterize at this many times the resolution
    seed: int = 0
    device: str = "cpu"
    export: bool = False  # also write the mesh with its texture as OBJ beside the sheet

    def validate(self) -> None:
        if self.views < 1:
            raise ValueError(f"views: must be >= 1, got {self.views}")
        if not 1 <= self.supersample <= 4:
            raise ValueError(f"supersample: must be within 1 and 4, got {self.supersample}")


def register(sub: argparse._SubParsersAction) -> None:
    from physadv.core.cli import add_config_args

    p = sub.add_parser("render", help="contact sheet of sampled views of a mesh or sign plate (EOT renderer)")
    add_config_args(p, "rendering/stop_sign.yaml")
    p.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from physadv.core.cli import finish_run, resolve_config, start_run
    from physadv.core.plots import save_image_grid
    from physadv.core.train import resolve_device
    from physadv.rendering.augment import EOTAugment
    from physadv.rendering.backgrounds import sample_backgrounds
    from physadv.rendering.fragments import rasterize_pool
    from physadv.rendering.lights import sample_lights
    from physadv.rendering.mesh import build_mesh, export_mesh
    from physadv.rendering.poses import sample_poses
    from physadv.rendering.renderer import render

    cfg = resolve_config(RenderConfig, args)
    run_dir = start_run("render", cfg, args)
    device = resolve_device(cfg.device)
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    mesh = build_mesh(cfg.mesh)
    camera = cfg.poses.camera()
    poses = sample_poses(cfg.poses, cfg.views, g)
    t0 = time.perf_counter()
    pool = rasterize_pool(mesh, poses, camera, cfg.supersample, device=device)
    t1 = time.perf_counter()
    lights = sample_lights(cfg.lights, cfg.views, g, device)
    backgrounds = sample_backgrounds(cfg.views, camera.height, camera.width, tuple(cfg.backgrounds), g).to(device)
    texture = mesh.texture.to(device)
    with torch.no_grad():
        clean = render(texture, pool, torch.arange(cfg.views), lights, backgrounds)
        t2 = time.perf_counter()
        seen = EOTAugment(cfg.augment)(clean)
        t3 = time.perf_counter()
    captions = [f"{p.distance:.1f} m, az {p.azimuth:.0f}, el {p.elevation:.0f}" for p in poses]
    nrow = min(8, cfg.views)
    save_image_grid(run_dir / "views.png", clean, nrow=nrow, captions=captions)
    save_image_grid(run_dir / "views_eot.png", seen, nrow=nrow, captions=captions)
    pool.save(run_dir / "fragments.safetensors")
    if cfg.export:
        export_mesh(mesh, run_dir / "mesh.obj")
    metrics = {"mesh": mesh.name, "faces": mesh.num_faces, "views": cfg.views, "image_size": list(cfg.poses.image_size),
               "rasterize_seconds": t1 - t0, "render_seconds": t2 - t1, "augment_seconds": t3 - t2,
               "coverage_mean": float(pool.alpha.mean())}
    print(f"{mesh.name} ({mesh.num_faces} faces): {cfg.views} views rasterized in {t1 - t0:.1f} s, rendered in "
          f"{t2 - t1:.2f} s, augmented in {t3 - t2:.2f} s; contact sheets views.png, views_eot.png")
    finish_run(run_dir, metrics)
    return 0
