"""Render a batch from a cached ``FragmentPool``: differentiable texture sampling, Phong shading,
anti-aliasing by supersampling, background compositing. Gradients flow to the texture (and lights).

    pool = rasterize_pool(mesh, poses, camera, supersample=2)       # once per run (slow, no gradient)
    images = render(texture, pool, indices, lights, backgrounds)     # every step (fast, differentiable)

Shading is PyTorch3D's ``HardPhongShader`` with one directional light and a white material
(``(ambient + diffuse) * texel + specular``), evaluated on sRGB values as PyTorch3D does.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from core.errors import PhysadvError
from rendering.fragments import FragmentPool
from rendering.lights import Lights
from rendering.mesh import check_texture


def shade(texels: torch.Tensor, normal: torch.Tensor, to_camera: torch.Tensor, lights: Lights,
          counts: torch.Tensor | None = None) -> torch.Tensor:
    """Phong shading of samples (``M x 3`` each). With ``counts``, view ``i`` of the batch owns the next
    ``counts[i]`` samples and its own light; without, every sample sees the first light."""
    params = torch.cat([lights.ambient, lights.diffuse, lights.specular, lights.direction, lights.shininess[:, None]], 1)
    params = params.repeat_interleave(counts, 0) if counts is not None else params[:1]
    ambient, diffuse, specular, d, shininess = params.split([3, 3, 3, 3, 1], 1)
    cos = (normal * d).sum(-1, keepdim=True)
    reflect = 2 * cos * normal - d
    highlight = ((to_camera * reflect).sum(-1, keepdim=True).clamp(min=0) * (cos > 0)) ** shininess
    return (ambient + diffuse * cos.clamp(min=0)) * texels + specular * highlight


def render(texture: torch.Tensor, pool: FragmentPool, indices: torch.Tensor | list[int], lights: Lights,
           backgrounds: torch.Tensor | None = None, clamp: bool = True) -> torch.Tensor:
    """``N x 3 x H x W`` images of the mesh wearing ``texture`` (``H x W x 3``) in the pool's views ``indices``.

    ``lights`` has one light per view (or one for all); ``backgrounds`` is ``N x 3 x H x W`` (or
    ``3 x H x W``), black when None.
    """
    texture = check_texture(texture)
    idx = torch.as_tensor(indices, dtype=torch.long, device=pool.offsets.device).reshape(-1)
    n = len(idx)
    if n and (int(idx.min()) < 0 or int(idx.max()) >= len(pool)):
        raise PhysadvError(f"view index out of range: the pool has {len(pool)} views, got {idx.tolist()}")
    if len(lights) not in (1, n):
        raise PhysadvError(f"expected 1 or {n} lights (one per view), got {len(lights)}")
    H, W = pool.size
    starts, ends = pool.offsets[idx].tolist(), pool.offsets[idx + 1].tolist()
    counts = pool.offsets[idx + 1] - pool.offsets[idx]

    def take(x: torch.Tensor) -> torch.Tensor:  # the samples of the batch's views, view after view
        return torch.cat([x[a:b] for a, b in zip(starts, ends)])

    uv = take(pool.uv)
    grid = torch.stack([uv[:, 0] * 2 - 1, 1 - uv[:, 1] * 2], -1).to(texture.dtype)
    tex = texture.permute(2, 0, 1)[None]
    texels = F.grid_sample(tex, grid[None, None], mode="bilinear", padding_mode="border", align_corners=False)[0, :, 0].T
    textured = take(pool.textured)
    if not bool(textured.all()):
        base = torch.tensor(pool.base_color, dtype=texels.dtype, device=texels.device)
        texels = torch.where(textured[:, None], texels, base)
    colour = shade(texels, take(pool.normal), take(pool.to_camera), lights, counts if len(lights) == n else None)
    if clamp:  # clamping samples keeps the composite (a convex combination) in [0, 1]
        colour = colour.clamp(0, 1)
    batch = torch.repeat_interleave(torch.arange(n, device=idx.device), counts)
    # composite: start from the background times (1 - coverage), then box-filter the supersampled samples
    # into their output pixels (premultiplied colour), in one flat N x 3 x H x W buffer
    alpha = pool.alpha[idx]
    if backgrounds is None:
        canvas = torch.zeros(n * 3 * H * W, dtype=colour.dtype, device=colour.device)
    else:
        bg = backgrounds if backgrounds.ndim == 4 else backgrounds[None]
        if bg.shape[-3:] != (3, H, W) or bg.shape[0] not in (1, n):
            raise PhysadvError(f"backgrounds must be N x 3 x {H} x {W} (N = {n} or 1), got {tuple(backgrounds.shape)}")
        canvas = ((1 - alpha) * bg.to(colour.dtype)).expand(n, 3, H, W).reshape(-1)
    target = (batch * 3 * H * W + take(pool.pixel))[None] + torch.arange(3, device=idx.device)[:, None] * (H * W)
    image = canvas.index_add(0, target.reshape(-1), colour.T.reshape(-1), alpha=1.0 / pool.supersample**2)
    return image.view(n, 3, H, W)
