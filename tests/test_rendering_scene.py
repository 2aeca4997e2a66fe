"""rendering.objects and rendering.scene: objects from files, the three scene kinds, replayable draws, and object boxes
against OpenCV's projection."""
import cv2
import numpy as np
import pytest
import torch

from physadv.core.config import from_dict
from physadv.core.errors import PhysadvError
from physadv.rendering.objects import ObjectConfig, image_object, load_object
from physadv.rendering.scene import GridSpec, SceneConfig, build_scene

SMALL_WORLD = {"texture_px": 64, "work_px": 32, "supersample": 1}


def scene_of(**cfg):
    cfg.setdefault("world", SMALL_WORLD)
    return build_scene(from_dict(SceneConfig, cfg, "test"))


def projected_box(pose, intr, outline_m):
    """The torchvision-convention box of an outline in the plane z = 0, projected by OpenCV."""
    R, t = pose.extrinsics()
    pts = np.column_stack([outline_m, np.zeros(len(outline_m))])
    uv, _ = cv2.projectPoints(pts, cv2.Rodrigues(R)[0], t, intr.K, None)
    uv = uv.reshape(-1, 2)
    return np.array([uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max()]) + 0.5


def test_image_object_keeps_its_aspect_ratio_and_shape(tmp_path):
    from PIL import Image, ImageDraw

    im = Image.new("RGBA", (400, 200), (0, 0, 0, 0))
    ImageDraw.Draw(im).rectangle((100, 50, 299, 149), fill=(255, 0, 0, 255))  # a quarter of the canvas
    im.save(tmp_path / "o.png")
    obj = image_object(tmp_path / "o.png", 0.8, texture_px=128)
    assert obj.size_m == pytest.approx((0.8, 0.4)) and tuple(obj.texture.shape) == (3, 64, 128)
    assert float((obj.alpha > 0.5).float().mean()) == pytest.approx(0.25, abs=0.02)
    assert float(obj.texture[0][obj.alpha[0] > 0.9].mean()) == pytest.approx(1.0, abs=0.01)  # un-premultiplied red
    ys, xs = obj.outline_m[:, 1], obj.outline_m[:, 0]
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == pytest.approx((-0.2, 0.2, -0.1, 0.1), abs=0.01)
    # a mask file instead of alpha; bad inputs are one-line errors naming the field or file
    Image.new("RGB", (400, 200), (9, 9, 9)).save(tmp_path / "flat.png")
    Image.new("L", (400, 200), 255).save(tmp_path / "m.png")
    assert float(image_object(tmp_path / "flat.png", 1.0, 64, tmp_path / "m.png").alpha.mean()) == pytest.approx(1.0)
    with pytest.raises(PhysadvError, match="width_m"):
        load_object(ObjectConfig(kind="image", image=str(tmp_path / "o.png")))
    Image.new("RGBA", (50, 50), (0, 0, 0, 0)).save(tmp_path / "empty.png")
    with pytest.raises(PhysadvError, match="empty.png.*empty"):
        image_object(tmp_path / "empty.png", 0.5)


def test_a_mesh_without_uvs_is_a_one_line_error(tmp_path):
    (tmp_path / "t.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(PhysadvError, match="t.obj: the mesh has no UV coordinates"):
        load_object(ObjectConfig(kind="mesh", mesh=str(tmp_path / "t.obj")))


def test_frames_box_the_object_where_opencv_projects_it():
    scene = scene_of(view="frame", frame_px=320)
    draw = scene.sample(4)
    views = scene.render(scene.obj.texture, draw)
    intr = scene.world.camera.intrinsics().scaled(320)
    assert views.images.shape == (4, 3, intr.height, intr.width)
    for k, pose in enumerate(draw.items):
        np.testing.assert_allclose(views.boxes[k].numpy(), projected_box(pose, intr, scene.obj.outline_m), atol=1e-3)


def test_a_draw_replays_views_that_differ_only_on_the_object():
    scene = scene_of(view="frame", frame_px=320)
    draw = scene.sample(3)
    a = scene.render(scene.obj.texture, draw)
    b = scene.render(1 - scene.obj.texture, draw)
    again = scene.render(scene.obj.texture, draw)
    assert torch.equal(a.images, again.images)
    for k in range(3):
        x0, y0, x1, y1 = a.boxes[k].tolist()
        outside = torch.ones(a.images.shape[-2:], dtype=torch.bool)
        # blur reaches a few pixels, JPEG spreads a change over its 16 x 16 (chroma-subsampled) blocks, and the
        # decoder's chroma upsampling one pixel beyond them
        r0, r1 = (int(y0) - 6) // 16 * 16 - 1, (int(y1) + 6) // 16 * 16 + 17
        c0, c1 = (int(x0) - 6) // 16 * 16 - 1, (int(x1) + 6) // 16 * 16 + 17
        outside[max(0, r0): r1, max(0, c0): c1] = False
        diff = (a.images[k] - b.images[k]).abs().sum(0)
        assert float(diff[outside].max()) == 0 and float(diff[~outside].max()) > 0.2


def test_mesh_scene_boxes_the_sign_face_where_opencv_projects_it():
    scene = scene_of(kind="mesh", object={"kind": "sign", "texture_px": 64}, mesh={"image_size": [64, 64], "pool_size": 3})
    draw = scene.sample(2)
    views = scene.render(scene.obj.texture, draw)
    jitter = scene.world.box_jitter
    for k, idx in enumerate(draw.items):
        ref = projected_box(scene.pool.poses[idx], scene.camera, scene.obj.outline_m)
        size = np.array([ref[2] - ref[0], ref[3] - ref[1]] * 2)
        assert np.all(np.abs(views.boxes[k].numpy() - ref) <= jitter * size + 0.6)  # the face's box, jittered as a detector's
    grid = scene.grid(GridSpec(distances_ft=(10,), angles_deg=(0, 30), lights_per_cell=1))
    assert len(grid) == 2 and scene.render(scene.obj.texture, grid).images.shape == (2, 3, 64, 64)


def test_mesh_scene_square_crops_are_the_square_around_the_faces_box():
    """``world.square_crops: 1``: every view's box is the square around the face's box (OpenCV's projection, jittered
    as a detector's), so the crop keeps the face's aspect."""
    scene = scene_of(kind="mesh", object={"kind": "sign", "texture_px": 64}, mesh={"image_size": [64, 64], "pool_size": 3},
                     world={**SMALL_WORLD, "square_crops": 1.0})
    draw = scene.sample(3)
    views = scene.render(scene.obj.texture, draw)
    jitter = scene.world.box_jitter
    for k, idx in enumerate(draw.items):
        ref = projected_box(scene.pool.poses[idx], scene.camera, scene.obj.outline_m)
        side, tol = max(ref[2] - ref[0], ref[3] - ref[1]), 2 * jitter * max(ref[2] - ref[0], ref[3] - ref[1]) + 0.6
        x0, y0, x1, y1 = views.boxes[k].numpy()
        assert x1 - x0 == pytest.approx(y1 - y0, abs=1e-4) and abs((x1 - x0) - side) <= tol
        assert abs((x0 + x1) / 2 - (ref[0] + ref[2]) / 2) <= tol and abs((y0 + y1) / 2 - (ref[1] + ref[3]) / 2) <= tol


def test_flat_carriers_leave_out_the_target_class():
    scene = build_scene(from_dict(SceneConfig, {"kind": "flat", "carriers": "digits"}), exclude_class="3")
    from physadv.core.data import load_dataset

    data = load_dataset("digits", "test")
    assert len(scene.images) == int((data.labels != 3).sum()) and scene.images.shape[1] == 3
    with pytest.raises(PhysadvError, match="mesh"):
        build_scene(from_dict(SceneConfig, {"kind": "planar", "object": {"kind": "mesh", "mesh": "x.obj"}}))


def test_stratified_views_put_one_view_in_every_distance_and_angle_stratum():
    from physadv.rendering.signs.world import PoseRanges, sample_poses

    r = PoseRanges(distance_m=(2.0, 12.0), angle_deg=(0.0, 60.0), elevation_deg=(0.0, 0.0), roll_deg=(0.0, 0.0))
    poses = sample_poses(12, r, torch.Generator().manual_seed(4), stratified=True)
    d = sorted(int((p.distance - 2.0) / 10.0 * 12) for p in poses)
    a = sorted(int(abs(p.azimuth) / 60.0 * 12) for p in poses)
    assert d == list(range(12)) and a == list(range(12))


def test_log_distance_scale_is_uniform_in_log_distance_and_stratified_there():
    """``distance_scale: log`` against the closed-form CDF ln(d / lo) / ln(hi / lo): a Kolmogorov-Smirnov distance
    under the 1% critical value 1.63 / sqrt(n), which the linear scale (the control) fails; stratified, one view in
    each of n equal strata of log distance."""
    from dataclasses import replace

    from physadv.rendering.signs.world import PoseRanges, sample_poses

    lo, hi, n = 1.2, 13.0, 4000
    r = PoseRanges(distance_m=(lo, hi), distance_scale="log")
    cdf = np.arange(1, n + 1) / n

    def ks(ranges):
        d = np.sort([p.distance for p in sample_poses(n, ranges, torch.Generator().manual_seed(5))])
        return np.abs(np.log(d / lo) / np.log(hi / lo) - cdf).max()

    assert ks(r) < 1.63 / n**0.5 < ks(replace(r, distance_scale="linear"))
    poses = sample_poses(12, r, torch.Generator().manual_seed(4), stratified=True)
    assert sorted(int(np.log(p.distance / lo) / np.log(hi / lo) * 12) for p in poses) == list(range(12))
    with pytest.raises(PhysadvError, match=r"world.pose.distance_scale: 'cubic' is not one of"):
        from_dict(SceneConfig, {"world": {"pose": {"distance_scale": "cubic"}}}, "scene")
