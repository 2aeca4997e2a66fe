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


def _gather(pool: FragmentPool, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ids of the views ``indices`` (concatenated) and, for each, its position in the batch."""
    starts, ends = pool.offsets[indices], pool.offsets[indices + 1]
    counts = ends - starts
    batch = torch.repeat_interleave(torch.arange(len(indices), device=indices.device), counts)
    first = torch.cumsum(counts, 0) - counts
    ids = torch.arange(int(counts.sum()), device=indices.device) - first[batch] + starts[batch]
    return ids, batch


def shade(texels: torch.Tensor, normal: torch.Tensor, to_camera: torch.Tensor, lights: Lights,
          which: torch.Tensor) -> torch.Tensor:
    """Phong shading of samples (``M x 3`` each); ``which`` picks each sample's light."""
    d = lights.direction[which]
    cos = (normal * d).sum(-1, keepdim=True)
    diffuse = lights.diffuse[which] * cos.clamp(min=0)
    reflect = 2 * cos * normal - d
    spec = ((to_camera * reflect).sum(-1, keepdim=True).clamp(min=0) * (cos > 0)) ** lights.shininess[which, None]
    return (lights.ambient[which] + diffuse) * texels + lights.specular[which] * spec


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
    ids, batch = _gather(pool, idx)
    uv = pool.uv[ids]
    grid = torch.stack([uv[:, 0] * 2 - 1, 1 - uv[:, 1] * 2], -1).to(texture.dtype)
    tex = texture.permute(2, 0, 1)[None]
    texels = F.grid_sample(tex, grid[None, None], mode="bilinear", padding_mode="border", align_corners=False)[0, :, 0].T
    base = torch.tensor(pool.base_color, dtype=texels.dtype, device=texels.device)
    texels = torch.where(pool.textured[ids, None], texels, base)
    which = batch if len(lights) == n else torch.zeros_like(batch)
    colour = shade(texels, pool.normal[ids], pool.to_camera[ids], lights, which)
    # composite: start from the background times (1 - coverage), then box-filter the supersampled
    # samples into their output pixels (premultiplied colour), all in an N x H x W x 3 buffer
    alpha = pool.alpha[idx].permute(0, 2, 3, 1)
    if backgrounds is None:
        canvas = torch.zeros(n, H, W, 3, dtype=colour.dtype, device=colour.device)
    else:
        bg = backgrounds if backgrounds.ndim == 4 else backgrounds[None]
        if bg.shape[-3:] != (3, H, W) or bg.shape[0] not in (1, n):
            raise PhysadvError(f"backgrounds must be N x 3 x {H} x {W} (N = {n} or 1), got {tuple(backgrounds.shape)}")
        canvas = ((1 - alpha) * bg.permute(0, 2, 3, 1)).expand(n, H, W, 3).contiguous()
    target = batch * (H * W) + pool.pixel[ids]
    canvas = canvas.reshape(n * H * W, 3).index_add(0, target, colour, alpha=1.0 / pool.supersample**2)
    image = canvas.reshape(n, H, W, 3).permute(0, 3, 1, 2)
    return image.clamp(0, 1) if clamp else image

