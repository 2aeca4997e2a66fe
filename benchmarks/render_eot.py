"""One EOT step from the cached fragment pool vs the same step re-rasterizing with PyTorch3D's MeshRenderer.

A step: render a batch of views of a textured mesh (about 5,000 faces) at 224 x 224 with sampled
lights and backgrounds, box-filter to the classifier's 32 x 32 input, apply the Kornia EOT stack there
(as RP2 does), run a GTSRB-CNN-style classifier (untrained: only its cost matters) forward and
backward to the texture. The cached step bins the 224 x 224 samples straight into 32 x 32 pixels
(``render(..., downsample=7)``, equal to rendering at 224 and area-resizing); the peer does the same
with PyTorch3D's ``MeshRenderer`` (``HardPhongShader``, the shader our renderer reproduces)
rasterizing every view in every step, then area-resizing. Prints JSON: median seconds per step for
both, their ratio, and the classifier's share of the cached step (the rest is rendering + augmentation).
The same run also times the cached step with the EOT stack applied to the 224 x 224 camera images
(faithful to where blur, noise and JPEG happen, and dominated by Kornia's differentiable JPEG).

    python benchmarks/render_eot.py                       # 32 views, pool of 32, 5 cached steps, 1 peer step
    python benchmarks/render_eot.py --supersample 2       # anti-aliased pool (4x the rasterization, once)
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from physadv.core.colour import linear_to_srgb, srgb_to_linear  # noqa: E402
from physadv.core.io import cache_dir  # noqa: E402
from physadv.core.models import build_classifier  # noqa: E402
from physadv.rendering.augment import AugmentConfig, EOTAugment  # noqa: E402
from physadv.rendering.backgrounds import sample_backgrounds  # noqa: E402
from physadv.rendering.fragments import FragmentPool, pytorch3d_cameras, rasterize_pool  # noqa: E402
from physadv.rendering.lights import LightConfig, sample_lights  # noqa: E402
from physadv.rendering.mesh import sphere  # noqa: E402
from physadv.rendering.poses import PoseConfig, sample_poses  # noqa: E402
from physadv.rendering.renderer import render  # noqa: E402


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--views", type=int, default=32, help="views per step")
    ap.add_argument("--pool", type=int, default=32, help="poses rasterized once into the pool")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--supersample", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5, help="cached steps timed")
    ap.add_argument("--peer-steps", type=int, default=1, help="PyTorch3D steps timed")
    ap.add_argument("--augment", choices=["default", "none"], default="default")
    ap.add_argument("--reuse-pool", action="store_true",
                    help="load the pool rasterized by an earlier run with the same settings (cached in $PHYSADV_CACHE)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: on a machine shared with other jobs, more threads oversubscribe the cores)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    g = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    mesh = sphere(0.4, rings=40, segments=64)  # 4,992 faces
    pose_cfg = PoseConfig(distance=(1.2, 3.0), azimuth=(-180, 180), elevation=(-30, 45), image_size=(args.size, args.size), fov=40)
    camera = pose_cfg.camera()
    poses = sample_poses(pose_cfg, args.pool, g)
    cached_pool = cache_dir("benchmarks") / f"render_eot_pool_{args.pool}_{args.size}_{args.supersample}_{args.seed}.safetensors"
    if args.reuse_pool and cached_pool.is_file():
        pool = FragmentPool.load(cached_pool)
        t_pool = json.loads(cached_pool.with_suffix(".json").read_text())["seconds"]
    else:
        pool, t_pool = timed(lambda: rasterize_pool(mesh, poses, camera, args.supersample, progress=False))
        pool.save(cached_pool)
        cached_pool.with_suffix(".json").write_text(json.dumps({"seconds": t_pool}))
    backgrounds = sample_backgrounds(64, args.size, args.size, generator=g)
    aug = EOTAugment(AugmentConfig() if args.augment == "default" else AugmentConfig.none())
    clf = build_classifier("gtsrb-cnn").eval()  # eval: no dropout randomness; the cost is the same
    labels = torch.zeros(args.views, dtype=torch.long)
    texture = mesh.texture.clone().requires_grad_()

    factor = args.size // clf.input_size[-1]  # 224 -> 32: 7 x 7 camera pixels per classifier pixel
    if factor * clf.input_size[-1] != args.size:
        raise SystemExit(f"--size must be a multiple of the classifier's {clf.input_size[-1]} pixels")

    def resize(images):
        return F.interpolate(images, size=clf.input_size[1:], mode="area")  # the same box filter

    def cached_step(at_camera: bool = False):
        idx = torch.randint(0, len(pool), (args.views,), generator=g)
        lights = sample_lights(LightConfig(), args.views, g)
        bg = backgrounds[torch.randint(0, len(backgrounds), (args.views,), generator=g)]
        t = time.perf_counter()
        images = render(texture, pool, idx, lights, bg, downsample=1 if at_camera else factor)
        t_render = time.perf_counter() - t
        seen = resize(aug(images)) if at_camera else aug(images)
        t_aug = time.perf_counter() - t - t_render
        F.cross_entropy(clf(seen), labels).backward()
        texture.grad = None
        return t_render, t_aug

    def classifier_only():
        x = torch.rand(args.views, *clf.input_size, generator=g).requires_grad_()
        t = time.perf_counter()
        F.cross_entropy(clf(x), labels).backward()
        return time.perf_counter() - t

    def peer_step():
        from pytorch3d.renderer import BlendParams, HardPhongShader, MeshRasterizer, MeshRenderer, RasterizationSettings

        step_poses = [poses[int(i)] for i in torch.randint(0, len(poses), (args.views,), generator=g)]
        lights = sample_lights(LightConfig(), args.views, g)
        l3, mat = lights.to_pytorch3d()
        cams = pytorch3d_cameras(step_poses, camera)
        settings = RasterizationSettings(image_size=(args.size, args.size), faces_per_pixel=1, bin_size=0)
        renderer = MeshRenderer(MeshRasterizer(cameras=cams, raster_settings=settings),
                                HardPhongShader(cameras=cams, lights=l3, materials=mat, blend_params=BlendParams(background_color=(0, 0, 0))))
        bg = backgrounds[torch.randint(0, len(backgrounds), (args.views,), generator=g)]
        rgba = renderer(mesh.to_pytorch3d(srgb_to_linear(texture)).extend(args.views))  # shaded in linear light, as ours
        images = linear_to_srgb(rgba[..., :3].clamp(0, 1)).permute(0, 3, 1, 2)
        alpha = rgba[..., 3:].permute(0, 3, 1, 2)
        images = (images * alpha + (1 - alpha) * bg).clamp(0, 1)
        F.cross_entropy(clf(aug(resize(images))), labels).backward()
        texture.grad = None

    cached_step()  # warm-up
    cached_step(at_camera=True)
    classifier_only()
    cached, parts, clf_times = [], [], []
    for _ in range(args.steps):  # interleaved, so load from other processes hits both alike
        (tr, ta), t = timed(cached_step)
        cached.append(t)
        parts.append((tr, ta))
        clf_times.append(classifier_only())
    at_camera = [timed(lambda: cached_step(at_camera=True))[1] for _ in range(max(1, args.steps // 2))]
    peer = [timed(peer_step)[1] for _ in range(args.peer_steps)]
    step, peer_step_s, clf_s = statistics.median(cached), statistics.median(peer), statistics.median(clf_times)
    result = {
        "benchmark": "render_eot",
        "mesh_faces": mesh.num_faces,
        "views_per_step": args.views,
        "image_size": args.size,
        "supersample": args.supersample,
        "augment": args.augment,
        "augment_at": "classifier input (32 x 32)",
        "pool_views": args.pool,
        "pool_rasterize_seconds": round(t_pool, 3),
        "pool_seconds_per_view": round(t_pool / args.pool, 3),
        "pool_samples_per_view": int(pool.offsets[-1]) // args.pool,
        "cached_step_seconds": round(step, 4),
        "cached_render_forward_seconds": round(statistics.median(p[0] for p in parts), 4),
        "cached_augment_forward_seconds": round(statistics.median(p[1] for p in parts), 4),
        "classifier_seconds": round(clf_s, 4),
        "classifier_share_of_cached_step": round(clf_s / step, 3),
        "rendering_share_of_cached_step": round(1 - clf_s / step, 3),
        "cached_step_seconds_augment_at_camera": round(statistics.median(at_camera), 4),
        "rendering_share_augment_at_camera": round(1 - clf_s / statistics.median(at_camera), 3),
        "pytorch3d_step_seconds": round(peer_step_s, 3),
        "speedup_vs_pytorch3d": round(peer_step_s / step, 1),
        "bar_speedup_20x": peer_step_s / step >= 20,
        "bar_rendering_at_most_half": clf_s / step >= 0.5,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "threads": torch.get_num_threads(),
        "note": "CPU, 2 cores shared with other jobs; medians of interleaved runs",
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
