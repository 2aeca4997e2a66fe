"""Render a batch from a cached ``FragmentPool``: differentiable texture sampling, Phong shading,
anti-aliasing by supersampling, background compositing. Gradients flow to the texture (and lights).

    pool = rasterize_pool(mesh, poses, camera, supersample=2)       # once per run (slow, no gradient)
    images = render(texture, pool, indices, lights, backgrounds)     # every step (fast, differentiable)
    small = render(texture, pool, indices, lights, backgrounds, downsample=7)  # 224 -> 32, box-filtered

``downsample`` bins the samples straight into pixels ``downsample`` times larger: the same image as
``F.interpolate(render(...), scale_factor=1 / downsample, mode="area")`` (the box filter is linear, so
it commutes with compositing), without the full-resolution canvas. Use it when the classifier sees the
whole view at a lower resolution and the camera effects are applied at that resolution.

Shading is PyTorch3D's ``HardPhongShader`` with one directional light and a white material
(``(ambient + diffuse) * texel + specular``), evaluated in linear light (the project's convention, DESIGN.md
section 3): the texture is converted from sRGB and sampled, lit, clamped where the sensor saturates, and converted back to sRGB
before they are composited over the (sRGB) backgrounds. PyTorch3D's shader on the linearised texture, followed
by the sRGB encoding, gives the same image.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from physadv.core.colour import linear_to_srgb, srgb_to_linear
from physadv.core.errors import PhysadvError
from physadv.rendering.fragments import FragmentPool
from physadv.rendering.lights import Lights
from physadv.rendering.mesh import check_texture


def shade(texels: torch.Tensor, normal: torch.Tensor, to_camera: torch.Tensor, lights: Lights,
          counts: list[int] | None = None) -> torch.Tensor:
    """Phong shading of samples (``3 x M`` each, one row per component). With ``counts``, view ``i`` owns
    the next ``counts[i]`` samples and its own light; without, every sample sees the first light."""
    params = torch.cat([lights.ambient, lights.diffuse, lights.specular, lights.direction, lights.shininess[:, None]], 1).T
    if counts is None:
        params = params[:, :1]
    else:  # each view's column repeated over its samples (concatenated expands: a copy, no index arithmetic)
        params = torch.cat([params[:, i : i + 1].expand(-1, c) for i, c in enumerate(counts)], 1)
    ambient, diffuse, specular, d, shininess = params.split([3, 3, 3, 3, 1])
    cos = (normal * d).sum(0)
    # reflect . to_camera with reflect = 2 cos normal - d, without forming the reflected vector
    rv = torch.addcmul(-(to_camera * d).sum(0), 2 * cos, (normal * to_camera).sum(0))
    highlight = (rv.clamp(min=0) * (cos > 0)) ** shininess[0]
    return torch.addcmul(specular * highlight, torch.addcmul(ambient, diffuse, cos.clamp(min=0)), texels)


def sample_texture(texture: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Bilinear texels (``3 x M``) of an ``H x W x 3`` texture at ``grid`` (``M x 2``, ``grid_sample``'s [-1, 1]).

    The samples are split into one batch per CPU thread over copies of the texture: on the CPU,
    ``grid_sample``'s backward runs in parallel over the batch only."""
    m = len(grid)
    k = max(1, min(torch.get_num_threads(), m // 65536)) if grid.device.type == "cpu" else 1
    rows = -(-m // k)
    grid = F.pad(grid, (0, 0, 0, rows * k - m)).view(k, 1, rows, 2)
    tex = texture.permute(2, 0, 1)[None].expand(k, -1, -1, -1)
    texels = F.grid_sample(tex, grid, mode="bilinear", padding_mode="border", align_corners=False)  # k x 3 x 1 x rows
    return texels.transpose(0, 1).reshape(texture.shape[-1], -1)[:, :m]


def render(texture: torch.Tensor, pool: FragmentPool, indices: torch.Tensor | list[int], lights: Lights,
           backgrounds: torch.Tensor | None = None, clamp: bool = True, downsample: int = 1) -> torch.Tensor:
    """``N x 3 x H x W`` images of the mesh wearing ``texture`` (``H x W x 3``) in the pool's views ``indices``.

    ``lights`` has one light per view (or one for all); ``backgrounds`` is ``N x 3 x H x W`` (or
    ``3 x H x W``, the pool's resolution), black when None. With ``downsample = f`` the images are
    ``H / f x W / f``, each pixel the mean of an ``f x f`` block of the full-resolution render.
    """
    texture = check_texture(texture)
    idx = torch.as_tensor(indices, dtype=torch.long, device=pool.offsets.device).reshape(-1)
    n = len(idx)
    if n and (int(idx.min()) < 0 or int(idx.max()) >= len(pool)):
        raise PhysadvError(f"view index out of range: the pool has {len(pool)} views, got {idx.tolist()}")
    if len(lights) not in (1, n):
        raise PhysadvError(f"expected 1 or {n} lights (one per view), got {len(lights)}")
    pixel = pool.binned_pixel(downsample)
    H, W = pool.size
    h, w = H // downsample, W // downsample
    starts, ends = pool.offsets[idx].tolist(), pool.offsets[idx + 1].tolist()
    counts = pool.offsets[idx + 1] - pool.offsets[idx]

    def take(x: torch.Tensor) -> torch.Tensor:  # the samples of the batch's views, view after view
        return torch.cat([x[..., a:b] for a, b in zip(starts, ends)], -1)

    uv = take(pool.uv)
    grid = torch.stack([uv[0] * 2 - 1, 1 - uv[1] * 2], -1).to(texture.dtype)
    texels = sample_texture(srgb_to_linear(texture), grid)  # reflectance is interpolated in linear light
    textured = take(pool.textured)
    if not bool(textured.all()):
        base = srgb_to_linear(torch.tensor(pool.base_color, dtype=texels.dtype, device=texels.device))
        texels = torch.where(textured, texels, base[:, None])
    batch = torch.repeat_interleave(torch.arange(n, device=idx.device), counts)
    colour = shade(texels, take(pool.normal), take(pool.to_camera), lights,
                   counts.tolist() if len(lights) == n else None)  # light acts in linear light
    if clamp:  # the sensor saturates; clamped samples keep the composite (a convex combination) in [0, 1]
        colour = colour.clamp(0, 1)
    colour = linear_to_srgb(colour)
    # composite: start from the background times (1 - coverage) (at the pool's resolution, box-filtered
    # when downsampling), then box-filter the samples into their output pixels (premultiplied colour),
    # in one flat N x 3 x h x w buffer
    if backgrounds is None:
        canvas = torch.zeros(n * 3 * h * w, dtype=colour.dtype, device=colour.device)
    else:
        bg = backgrounds if backgrounds.ndim == 4 else backgrounds[None]
        if bg.shape[-3:] != (3, H, W) or bg.shape[0] not in (1, n):
            raise PhysadvError(f"backgrounds must be N x 3 x {H} x {W} (N = {n} or 1), got {tuple(backgrounds.shape)}")
        bg = bg.to(colour.dtype)
        canvas = torch.addcmul(bg, pool.alpha[idx], bg, value=-1).expand(n, 3, H, W)  # (1 - alpha) * bg
        if downsample > 1:
            canvas = F.avg_pool2d(canvas, downsample)
        canvas = canvas.reshape(-1)
    target = (batch * 3 * h * w + take(pixel))[None] + torch.arange(3, device=idx.device)[:, None] * (h * w)
    image = canvas.index_add(0, target.reshape(-1), colour.reshape(-1), alpha=1.0 / (pool.supersample * downsample) ** 2)
    return image.view(n, 3, h, w)
