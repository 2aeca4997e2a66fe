"""Meshes, pose/light sampling and the cached-fragment renderer, checked against PyTorch3D and OpenCV."""
import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from physadv.core.config import load_config
from physadv.core.errors import PhysadvError
from physadv.rendering.camera import Intrinsics, Pose
from physadv.rendering.fragments import FragmentPool, pytorch3d_cameras, rasterize_pool
from physadv.rendering.lights import LightConfig, Lights, kelvin_to_rgb, sample_lights
from physadv.rendering.mesh import SIGN_SHAPES, box, cylinder, export_mesh, load_mesh, shape_outline, sign_plate, sphere
from physadv.rendering.poses import PoseConfig, sample_poses
from physadv.rendering.renderer import render

CAM = Intrinsics.from_fov(30, 64, 48)
POSES = [Pose(3.0, 30, 10, 5), Pose(2.5, -50, -5, 0), Pose(3.5, 160, 20, -10)]


def pytorch3d_render(mesh, poses, cam, lights, bg, supersample=1):
    """PyTorch3D's own MeshRenderer with the shader ours reproduces (hard Phong, one directional light), in linear
    light as the project's convention has it: the texture and background linearised, the image sRGB-encoded."""
    from pytorch3d.renderer import BlendParams, HardPhongShader, MeshRasterizer, MeshRenderer, RasterizationSettings

    from physadv.core.colour import linear_to_srgb, srgb_to_linear

    cams = pytorch3d_cameras(poses, cam, supersample)
    l3, mat = lights.to_pytorch3d()
    settings = RasterizationSettings(image_size=(cam.height * supersample, cam.width * supersample), faces_per_pixel=1, bin_size=0)
    bg_lin = tuple(float(v) for v in srgb_to_linear(torch.tensor(bg)))
    r = MeshRenderer(MeshRasterizer(cameras=cams, raster_settings=settings),
                     HardPhongShader(cameras=cams, lights=l3, materials=mat, blend_params=BlendParams(background_color=bg_lin)))
    from dataclasses import replace

    linear = replace(mesh, texture=srgb_to_linear(mesh.texture),
                     base_color=tuple(float(v) for v in srgb_to_linear(torch.tensor(mesh.base_color))))
    return linear_to_srgb(r(linear.to_pytorch3d().extend(len(poses)))[..., :3].permute(0, 3, 1, 2))


@pytest.mark.parametrize("mesh", [sign_plate("octagon", post_length=1.0), sphere(0.4, 16, 32)], ids=["sign", "sphere"])
def test_matches_pytorch3d_mesh_renderer(mesh):
    lights = Lights.fixed(3, 0.5, 0.4, 0.3, (0.2, 0.6, 1.0), shininess=20)
    bg = (0.1, 0.2, 0.3)
    pool = rasterize_pool(mesh, POSES, CAM, supersample=1, progress=False)
    ours = render(mesh.texture, pool, [0, 1, 2], lights, torch.tensor(bg)[:, None, None].expand(3, 48, 64), clamp=False)
    ref = pytorch3d_render(mesh, POSES, CAM, lights, bg)
    assert pool.alpha.sum() > 300  # the object is in view
    assert (ours - ref).abs().max() < 1e-4


def test_supersampled_render_is_box_filtered_pytorch3d_render():
    mesh = sign_plate("diamond", post_length=0.5)
    lights = Lights.fixed(2, 0.6, 0.3, 0.1, shininess=32)
    bg = (0.9, 0.5, 0.1)
    pool = rasterize_pool(mesh, POSES[:2], CAM, supersample=2, progress=False)
    ours = render(mesh.texture, pool, [0, 1], lights, torch.tensor(bg)[:, None, None].expand(3, 48, 64), clamp=False)
    ref = F.avg_pool2d(pytorch3d_render(mesh, POSES[:2], CAM, lights, bg, supersample=2), 2)
    assert (ours - ref).abs().max() < 1e-4
    edge = (pool.alpha > 0) & (pool.alpha < 1)
    assert edge.sum() > 20  # partially covered pixels exist: the silhouette is anti-aliased


def test_downsampled_render_equals_area_resize_of_full_render():
    """Binning samples straight into coarse pixels is the box filter of the full-resolution render,
    background composite included, and its gradient is the same."""
    mesh = sphere(0.5, 16, 32)
    pool = rasterize_pool(mesh, POSES, CAM, supersample=2, progress=False)
    lights = sample_lights(LightConfig(), 3, torch.Generator().manual_seed(4))
    bg = torch.rand(3, 3, 48, 64, generator=torch.Generator().manual_seed(5))
    tex = mesh.texture.clone().requires_grad_()
    full = F.interpolate(render(tex, pool, [2, 0, 2], lights, bg), scale_factor=1 / 4, mode="area")
    (g_full,) = torch.autograd.grad(full.square().sum(), tex)
    small = render(tex, pool, [2, 0, 2], lights, bg, downsample=4)
    (g_small,) = torch.autograd.grad(small.square().sum(), tex)
    assert small.shape == (3, 3, 12, 16)
    assert (small - full).abs().max() < 1e-5
    assert torch.allclose(g_small, g_full, atol=1e-5)
    with pytest.raises(PhysadvError, match="downsample"):
        render(tex, pool, [0], lights.index(slice(0, 1)), downsample=5)  # 48 x 64 is not a multiple of 5


def test_texture_sampling_split_across_threads_equals_one_grid_sample():
    from physadv.rendering.renderer import sample_texture

    g = torch.Generator().manual_seed(6)
    tex = torch.rand(64, 48, 3, generator=g, dtype=torch.float64, requires_grad=True)
    grid = torch.rand(300_001, 2, generator=g, dtype=torch.float64) * 2 - 1  # odd: the last split is padded
    threads = torch.get_num_threads()
    torch.set_num_threads(4)  # 4 splits
    try:
        ours = sample_texture(tex, grid)
    finally:
        torch.set_num_threads(threads)
    ref = F.grid_sample(tex.permute(2, 0, 1)[None], grid[None, None], mode="bilinear", padding_mode="border",
                        align_corners=False)[0, :, 0]
    w = torch.rand(3, len(grid), generator=g, dtype=torch.float64)
    assert ours.shape == ref.shape == (3, len(grid))
    assert torch.allclose(ours, ref)
    assert torch.allclose(*(torch.autograd.grad((x * w).sum(), tex)[0] for x in (ours, ref)))


def test_gradient_reaches_texels_finite_difference():
    mesh = sign_plate("circle", thickness=0.01)
    tex = mesh.texture[::8, ::8].double().contiguous().requires_grad_()  # 32 x 32 texels
    pool = rasterize_pool(mesh, POSES[:2], CAM, supersample=2, progress=False)
    lights = sample_lights(LightConfig(), 2, torch.Generator().manual_seed(1))
    weights = torch.rand(2, 3, 48, 64, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def loss(t):
        return (render(t, pool, [0, 1], lights, clamp=False) * weights).sum()

    loss(tex).backward()
    grad = tex.grad
    visible = grad.abs().sum(-1).nonzero()
    assert len(visible) > 50
    picks = visible[torch.randperm(len(visible), generator=torch.Generator().manual_seed(3))[:6]]
    eps = 1e-4
    for i, j in picks.tolist():
        for c in range(3):
            plus, minus = tex.detach().clone(), tex.detach().clone()
            plus[i, j, c] += eps
            minus[i, j, c] -= eps
            fd = (loss(plus) - loss(minus)) / (2 * eps)
            assert abs(fd.item() - grad[i, j, c].item()) < 1e-6 * max(1.0, abs(fd.item()))
            assert grad[i, j, c] != 0


@pytest.mark.parametrize("supersample", [1, 2])
def test_silhouette_matches_opencv_projection(supersample):
    """The coverage of a flat octagon is the polygon OpenCV's projectPoints gives for the same camera, with
    OpenCV's pixel convention (pixel (u, v) centred on integer (u, v)): same area, same centroid."""
    mesh = sign_plate("octagon", thickness=0.0)
    cam = Intrinsics.from_fov(25, 160, 120)
    pose = Pose(3.0, 35, 15, 10)
    alpha = rasterize_pool(mesh, [pose], cam, supersample=supersample, progress=False).alpha[0, 0].double().numpy()
    outline, _, _ = shape_outline("octagon", 0.75)
    R, t = pose.extrinsics()
    pts, _ = cv2.projectPoints(np.column_stack([outline, np.zeros(8)]), cv2.Rodrigues(R)[0], t, cam.K, None)
    x, y = pts[:, 0, 0], pts[:, 0, 1]
    cross = x * np.roll(y, -1) - np.roll(x, -1) * y
    area = cross.sum() / 2
    centroid = np.array([((x + np.roll(x, -1)) * cross).sum(), ((y + np.roll(y, -1)) * cross).sum()]) / (6 * area)
    rows, cols = np.mgrid[0:120, 0:160]
    ours = np.array([(alpha * cols).sum(), (alpha * rows).sum()]) / alpha.sum()
    assert abs(alpha.sum() - abs(area)) < 0.002 * abs(area)
    assert np.abs(ours - centroid).max() < 0.05  # pixels
    # and pixel by pixel against OpenCV's own polygon fill (drawn at 8x with sub-pixel precision, box-filtered)
    mask = np.zeros((120 * 8, 160 * 8), np.uint8)
    cv2.fillPoly(mask, [np.round(((pts[:, 0] + 0.5) * 8 - 0.5) * 16).astype(np.int32)], 255, lineType=cv2.LINE_8, shift=4)
    ref = cv2.resize(mask.astype(np.float64) / 255, (160, 120), interpolation=cv2.INTER_AREA)
    assert np.minimum(alpha, ref).sum() / np.maximum(alpha, ref).sum() > 0.98


def test_pool_save_load_roundtrip(tmp_path):
    mesh = box()
    pool = rasterize_pool(mesh, POSES[:2], CAM, supersample=2, progress=False)
    pool.save(tmp_path / "pool.safetensors")
    again = FragmentPool.load(tmp_path / "pool.safetensors")
    lights = Lights.fixed(2)
    assert again.poses == pool.poses and again.camera == pool.camera
    assert torch.equal(render(mesh.texture, pool, [1, 0], lights), render(mesh.texture, again, [1, 0], lights))


@pytest.mark.parametrize("mesh", [sign_plate(s, post_length=0.3) for s in SIGN_SHAPES] + [sphere(), box(), cylinder()],
                         ids=list(SIGN_SHAPES) + ["sphere", "box", "cylinder"])
def test_procedural_meshes_are_closed_outward_and_textured(mesh):
    v, f = mesh.verts.double(), mesh.faces
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    n = torch.cross(b - a, c - a, dim=1)
    assert (n.norm(dim=1) > 0).all()
    # faces wind counter-clockwise seen from outside: the signed volume (divergence theorem) is positive
    assert torch.einsum("ij,ij->i", a, torch.cross(b, c, dim=1)).sum() / 6 > 0
    assert mesh.textured.any()
    assert mesh.verts_uvs.min() >= 0 and mesh.verts_uvs.max() <= 1


def test_sign_plate_geometry_and_front_uvs():
    mesh = sign_plate("octagon", size=0.75, thickness=0.005)
    front = mesh.faces[mesh.textured].unique()
    xy = mesh.verts[front, :2]
    assert torch.allclose(mesh.verts[front, 2], torch.zeros(len(front)))
    assert math.isclose(float(xy[:, 0].max() - xy[:, 0].min()), 0.75, rel_tol=1e-5)  # across the flats
    assert math.isclose(float(xy[:, 1].max() - xy[:, 1].min()), 0.75, rel_tol=1e-5)
    uv = mesh.verts_uvs[mesh.faces_uvs[mesh.textured].unique()]
    assert torch.allclose(uv, xy / 0.75 + 0.5, atol=1e-6)  # the texture's square covers the bounding square
    assert math.isclose(float(mesh.verts[:, 2].min()), -0.005, rel_tol=1e-5)


@pytest.mark.parametrize("suffix", [".obj", ".glb"])
def test_export_and_reload_render_the_same(tmp_path, suffix):
    mesh = sign_plate("triangle_down", post_length=0.4)
    path = export_mesh(mesh, tmp_path / f"sign{suffix}")
    again = load_mesh(path)
    lights = Lights.fixed(2)
    a = render(mesh.texture, rasterize_pool(mesh, POSES[:2], CAM, 1, progress=False), [0, 1], lights)
    b = render(again.texture, rasterize_pool(again, POSES[:2], CAM, 1, progress=False), [0, 1], lights)
    assert (a - b).abs().mean() < 2e-3  # the texture went through 8-bit PNG
    assert (a - b).abs().max() < 0.05


def test_bad_mesh_files(tmp_path):
    import trimesh

    junk = tmp_path / "junk.obj"
    junk.write_text("this is not a mesh\n")
    with pytest.raises(PhysadvError, match="junk.obj"):
        load_mesh(junk)
    png = tmp_path / "image.ply"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(PhysadvError, match="image.ply"):
        load_mesh(png)
    with pytest.raises(PhysadvError, match="not found"):
        load_mesh(tmp_path / "missing.obj")
    plain = tmp_path / "plain.ply"
    trimesh.creation.icosphere(2).export(plain)
    with pytest.raises(PhysadvError, match="no UV"):
        load_mesh(plain)
    unwrapped = load_mesh(plain, auto_uv=True)
    assert unwrapped.verts_uvs.shape == (len(unwrapped.verts), 2)
    assert unwrapped.verts_uvs.min() >= 0 and unwrapped.verts_uvs.max() <= 1


def test_texture_of_wrong_shape():
    mesh = sign_plate()
    pool = rasterize_pool(mesh, POSES[:1], CAM, 1, progress=False)
    for bad in (torch.rand(3, 32, 32), torch.rand(32, 32), torch.rand(32, 32, 4)):
        with pytest.raises(PhysadvError, match="H x W x 3"):
            render(bad, pool, [0], Lights.fixed())


def test_pose_sampler_ranges_and_errors(tmp_path):
    cfg = PoseConfig(distance=(1.5, 12.0), azimuth=(-60, 60), elevation=(0, 20), roll=(-5, 5), look_at_jitter=0.1)
    poses = sample_poses(cfg, 200, torch.Generator().manual_seed(0))
    d = np.array([[p.distance, p.azimuth, p.elevation, p.roll] for p in poses])
    assert (d.min(0) >= [1.5, -60, 0, -5]).all() and (d.max(0) <= [12, 60, 20, 5]).all()
    assert d[:, 0].max() - d[:, 0].min() > 8  # spread over the range
    assert max(abs(c) for p in poses for c in p.look_at) <= 0.1
    assert sample_poses(cfg, 5, torch.Generator().manual_seed(4)) == sample_poses(cfg, 5, torch.Generator().manual_seed(4))
    with pytest.raises(PhysadvError, match="distance.*min 5.0 is greater than max 2.0"):
        sample_poses(PoseConfig(distance=(5.0, 2.0)), 3)
    bad = tmp_path / "poses.yaml"
    bad.write_text("elevation: [30, 10]\n")
    with pytest.raises(PhysadvError, match="elevation"):
        load_config(PoseConfig, bad)
    with pytest.raises(PhysadvError, match="ambient"):
        sample_lights(LightConfig(ambient=(0.9, 0.1)), 2)
    intr = PoseConfig(intrinsics=(500.0, 510.0, 100.0, 90.0), image_size=(180, 200)).camera()
    assert (intr.fx, intr.fy, intr.cx, intr.cy, intr.width, intr.height) == (500.0, 510.0, 100.0, 90.0, 200, 180)


def test_light_sampler_and_colour_temperature():
    assert torch.allclose(kelvin_to_rgb(6500.0), torch.ones(3), atol=1e-6)
    warm, cool = kelvin_to_rgb(3000.0), kelvin_to_rgb(10000.0)
    assert warm[0] > warm[1] > warm[2] and cool[2] > cool[1] > cool[0]  # the Planckian locus: red to blue
    cfg = LightConfig(elevation=(10, 80))
    lights = sample_lights(cfg, 100, torch.Generator().manual_seed(0))
    assert torch.allclose(lights.direction.norm(dim=1), torch.ones(100), atol=1e-5)
    el = torch.rad2deg(torch.asin(lights.direction[:, 1]))
    assert el.min() >= 10 - 1e-3 and el.max() <= 80 + 1e-3
    brightest = lights.ambient.amax(1)
    assert brightest.min() >= cfg.ambient[0] - 1e-5 and brightest.max() <= cfg.ambient[1] + 1e-5
