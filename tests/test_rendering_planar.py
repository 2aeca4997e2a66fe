"""The planar renderer against OpenCV: projected corners, covered area, windows, gradients, bad input."""
import cv2
import numpy as np
import pytest
import torch

from physadv.core.errors import PhysadvError
from physadv.rendering.camera import Intrinsics, Pose
from physadv.rendering.planar import rectangle_corners, render_planar

INTR = Intrinsics.from_fov(50, 320, 240)
POSES = [Pose(2.0, azimuth=35, elevation=10, roll=7, look_at=(0.05, -0.03, 0)),
         Pose(3.5, azimuth=-55, elevation=-5, roll=-3),
         Pose(1.2, azimuth=0, elevation=20, roll=15, look_at=(-0.1, 0.1, 0))]


def _opencv_points(points_m: np.ndarray, pose: Pose) -> np.ndarray:
    R, t = pose.extrinsics()
    pts3 = np.column_stack([points_m, np.zeros(len(points_m))])
    uv, _ = cv2.projectPoints(pts3, cv2.Rodrigues(R)[0], t, INTR.K, None)
    return uv.reshape(-1, 2)


def _visible_area(poly: np.ndarray) -> float:
    """Area of a projected convex polygon inside the image (pixel edges at -0.5 and W - 0.5)."""
    frame = np.array([[-0.5, -0.5], [INTR.width - 0.5, -0.5], [INTR.width - 0.5, INTR.height - 0.5],
                      [-0.5, INTR.height - 0.5]], np.float32)
    area, _ = cv2.intersectConvexConvex(poly.astype(np.float32), frame)
    return area


def test_corners_match_opencv_projectpoints():
    size = (0.6, 0.8)
    out = render_planar(torch.rand(3, 40, 30), POSES, INTR, size)
    for k, pose in enumerate(POSES):
        np.testing.assert_allclose(out.corners[k].numpy(), _opencv_points(rectangle_corners(size), pose), atol=1e-3)


@pytest.mark.parametrize("supersample", [1, 3])
def test_alpha_area_matches_projected_polygon(supersample):
    size = (0.6, 0.8)
    out = render_planar(torch.rand(3, 64, 48), POSES, INTR, size, supersample=supersample)
    for k, pose in enumerate(POSES):
        area = _visible_area(_opencv_points(rectangle_corners(size), pose))
        assert out.alpha[k].sum().item() == pytest.approx(area, rel=0.01)


def test_octagon_alpha_area_and_bbox_match_projected_outline():
    from physadv.rendering.signs.textures import sign_spec, sign_texture

    spec = sign_spec("stop")
    rgb, alpha = sign_texture("stop", 256)
    out = render_planar(rgb, POSES, INTR, spec.size_m, alpha=alpha, supersample=2)
    for k, pose in enumerate(POSES):
        poly = _opencv_points(spec.outline(), pose)
        assert out.alpha[k].sum().item() == pytest.approx(_visible_area(poly), rel=0.01)
        box = np.array([*poly.min(0), *poly.max(0)])
        np.testing.assert_allclose(out.bbox[k].numpy(), box, atol=1.0)  # within a pixel


def test_window_equals_crop_of_full_render():
    tex = torch.rand(3, 32, 32)
    full = render_planar(tex, POSES, INTR, 0.5).image
    # a window of whole pixels at the same resolution is a crop of the full image
    x0, y0, w, h = 100, 60, 80, 50
    win = render_planar(tex, POSES, INTR, 0.5, windows=[(x0 - 0.5, y0 - 0.5, x0 + w - 0.5, y0 + h - 0.5)] * 3,
                        out_hw=(h, w)).image
    torch.testing.assert_close(win, full[:, :, y0 : y0 + h, x0 : x0 + w], atol=1e-4, rtol=0)


def test_supersampled_render_converges_to_box_filtered_fine_render():
    """Supersampling by 4 equals rendering with 4x the pixels and averaging 4x4 blocks."""
    tex = torch.rand(3, 16, 16)
    coarse = render_planar(tex, POSES[:1], INTR, 0.5, supersample=4).alpha
    fine = render_planar(tex, POSES[:1], INTR.scaled(1280, 960), 0.5).alpha
    # OpenCV pixel centres: the 4x camera's pixel (4i + 1.5) is the coarse pixel i, so shift by 1.5 px
    fine_shifted = render_planar(tex, POSES[:1], Intrinsics(INTR.fx * 4, INTR.fy * 4, INTR.cx * 4 + 1.5,
                                                            INTR.cy * 4 + 1.5, 1280, 960), 0.5).alpha
    pooled = torch.nn.functional.avg_pool2d(fine_shifted, 4)
    torch.testing.assert_close(coarse, pooled, atol=1e-4, rtol=0)
    assert fine.sum().item() / 16 == pytest.approx(coarse.sum().item(), rel=0.01)


def test_compositing_over_background():
    bg = torch.rand(3, 3, INTR.height, INTR.width)
    tex = torch.rand(3, 20, 20)
    out = render_planar(tex, POSES, INTR, 0.5, backgrounds=bg)
    outside = out.alpha == 0
    assert outside.any() and (out.alpha == 1).any()
    torch.testing.assert_close(out.image[outside.expand_as(bg)], bg[outside.expand_as(bg)])


def test_gradients_reach_the_texture_finite_differences():
    torch.manual_seed(0)
    tex = torch.rand(4, 12, 12, dtype=torch.float64)
    bg = torch.rand(1, 3, 60, 80, dtype=torch.float64)
    intr = Intrinsics.from_fov(40, 80, 60)
    poses = [Pose(1.5, azimuth=30, elevation=5, roll=10)]
    weights = torch.rand(1, 3, 60, 80, dtype=torch.float64)

    def loss(t):
        return (render_planar(t, poses, intr, 0.4, backgrounds=bg, supersample=2).image * weights).sum()

    tex.requires_grad_(True)
    loss(tex).backward()
    eps = 1e-6
    for c, i, j in [(0, 5, 5), (1, 3, 8), (2, 7, 2), (3, 6, 6), (3, 0, 0)]:
        plus, minus = tex.detach().clone(), tex.detach().clone()
        plus[c, i, j] += eps
        minus[c, i, j] -= eps
        fd = (loss(plus) - loss(minus)).item() / (2 * eps)
        assert tex.grad[c, i, j].item() == pytest.approx(fd, rel=1e-4, abs=1e-8)
    assert tex.grad[:3].abs().sum() > 0


@pytest.mark.parametrize("bad", [torch.rand(2, 10, 10), torch.rand(10, 10), torch.rand(1, 5, 10, 10)])
def test_texture_of_the_wrong_shape_is_a_clear_error(bad):
    with pytest.raises(PhysadvError, match="texture must be"):
        render_planar(bad, POSES, INTR, 0.5)


def test_other_bad_input_is_a_clear_error():
    tex = torch.rand(3, 10, 10)
    with pytest.raises(PhysadvError, match="alpha"):
        render_planar(tex, POSES, INTR, 0.5, alpha=torch.ones(5, 5))
    with pytest.raises(PhysadvError, match="size_m"):
        render_planar(tex, POSES, INTR, -1.0)
    with pytest.raises(PhysadvError, match="backgrounds"):
        render_planar(tex, POSES, INTR, 0.5, backgrounds=torch.rand(3, 10, 10))
    with pytest.raises(PhysadvError, match="empty"):
        render_planar(tex, POSES[:1], INTR, 0.5, windows=[(5, 5, 5, 9)], out_hw=(8, 8))
