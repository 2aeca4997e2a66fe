"""The synthetic sign world: textures, the generator (geometry against OpenCV, determinism, footprint
falling with distance), the GTSRB crop, the dataset registry, a tiny classifier, and bad input."""
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

import physadv.rendering.signs  # noqa: F401  (registers the "signs" dataset)
from physadv.core.config import load_config
from physadv.core.data import load_dataset
from physadv.core.errors import PhysadvError
from physadv.rendering.camera import Pose
from physadv.rendering.signs.classifier import SignsConfig, get_sign_classifier, grid_set, train_config
from physadv.rendering.signs.textures import sign_classes, sign_spec, sign_texture
from physadv.core.colour import linear_to_srgb, srgb_to_linear
from physadv.rendering.signs.world import PoseRanges, WorldConfig, generate_signs, gtsrb_crop, sample_poses, temperature_rgb

SMALL = WorldConfig(train_per_class=12, test_per_class=4, work_px=48)


def test_at_least_twelve_classes_with_the_expected_names_and_sizes():
    names = sign_classes()
    assert len(names) >= 12 and len(set(names)) == len(names)
    for needed in ["stop", "speed_limit_30", "speed_limit_50", "speed_limit_60", "speed_limit_70", "speed_limit_80",
                   "speed_limit_100", "yield", "no_entry", "keep_right", "priority_road", "pedestrian_crossing"]:
        assert needed in names
    assert sign_spec("stop").size_m == 0.75 and sign_spec("stop").shape == "octagon"
    assert {sign_spec(n).shape for n in names} == {"octagon", "circle", "triangle", "diamond", "rectangle"}


@pytest.mark.parametrize("name", ["stop", "speed_limit_80", "yield", "priority_road", "pedestrian_crossing"])
def test_texture_alpha_matches_the_outline_polygon(name):
    """The drawn alpha covers the shape's polygon: its area agrees with cv2.contourArea of the outline."""
    rgb, alpha = sign_texture(name, 256)
    assert rgb.shape == (3, 256, 256) and alpha.shape == (1, 256, 256)
    assert 0 <= float(rgb.min()) and float(rgb.max()) <= 1
    spec = sign_spec(name)
    px_per_m = 256 / spec.size_m
    area_px = cv2.contourArea((spec.outline() * px_per_m).astype(np.float32))
    assert alpha.sum().item() == pytest.approx(area_px, rel=0.01)


def test_stop_sign_is_red_and_speed_limit_is_mostly_white():
    rgb, alpha = sign_texture("stop", 64)
    inside = alpha[0] > 0.99
    mean = rgb[:, inside].mean(1)
    assert mean[0] > 0.6 and mean[1] < 0.4 and mean[2] < 0.4
    rgb, alpha = sign_texture("speed_limit_80", 64)
    centre = rgb[:, 28:36, 10:15].mean((1, 2))  # left of the digits, inside the ring
    assert centre.min() > 0.8


def test_srgb_round_trip_and_colour_temperature():
    x = torch.linspace(0, 1, 101)
    torch.testing.assert_close(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-5, rtol=0)
    gains = temperature_rgb(torch.tensor([3000.0, 6500.0, 10000.0]))
    torch.testing.assert_close(gains[1], torch.ones(3))
    assert gains[0, 0] > gains[0, 2] and gains[2, 2] > gains[2, 0]  # warm light is red, cold light is blue


def test_generator_is_deterministic_and_balanced():
    a = generate_signs(SMALL, 2, seed=3, progress=False)
    b = generate_signs(SMALL, 2, seed=3, progress=False)
    c = generate_signs(SMALL, 2, seed=4, progress=False)
    assert a.images.shape == (2 * len(sign_classes()), 3, 32, 32)
    torch.testing.assert_close(a.images, b.images, atol=0, rtol=0)
    assert not torch.equal(a.images, c.images)
    assert torch.bincount(a.labels).tolist() == [2] * len(sign_classes())
    assert 0 <= float(a.images.min()) and float(a.images.max()) <= 1


def test_footprint_is_the_pinhole_projection_and_falls_with_distance():
    """The sign's width in camera pixels is f * size / distance for a frontal sign (independent closed form)."""
    k = len(sign_classes())
    stop = sign_classes().index("stop")
    f = SMALL.camera.intrinsics().fx
    for d in (1.5, 6.0, 12.0):
        data = generate_signs(SMALL, 1, seed=0, poses=[Pose(d)], labels=torch.tensor([stop]), progress=False)
        assert data.info["footprint_px"][0].item() == pytest.approx(f * 0.75 / d, rel=0.01)
    near = grid_set(replace(SignsConfig(world=SMALL), grid=replace(SignsConfig().grid, per_class=1)), 1.5, 0.0)
    far = grid_set(replace(SignsConfig(world=SMALL), grid=replace(SignsConfig().grid, per_class=1)), 12.0, 0.0)
    assert len(near) == k and near.info["footprint_px"].mean() > 7 * far.info["footprint_px"].mean()


def test_photograph_sign_is_differentiable_and_matches_the_class_render():
    from physadv.rendering.signs.world import photograph_sign, render_signs

    poses = [Pose(4.0, azimuth=20), Pose(9.0, azimuth=-45, elevation=5)]
    rgb, _ = sign_texture("stop", SMALL.texture_px)
    stop = sign_classes().index("stop")
    same = photograph_sign(rgb, "stop", poses, SMALL, torch.Generator().manual_seed(5))
    ref = render_signs(torch.tensor([stop, stop]), poses, SMALL, torch.Generator().manual_seed(5))
    torch.testing.assert_close(same.images, ref.images, atol=2e-3, rtol=0)  # the same photograph
    tex = rgb.clone().requires_grad_(True)
    photograph_sign(tex, "stop", poses, SMALL, torch.Generator().manual_seed(5)).images[:, 0].sum().backward()
    centre, corner = tex.grad[:, 60:68, 60:68].abs().sum(), tex.grad[:, :4, :4].abs().sum()
    assert centre > 0 and corner == 0  # the face gets gradients, the transparent corner does not
    with pytest.raises(PhysadvError, match="3 x S x S"):
        photograph_sign(torch.rand(3, 10, 12), "stop", poses, SMALL, torch.Generator())


def test_sample_poses_respect_ranges():
    ranges = PoseRanges(distance_m=(2.0, 3.0), angle_deg=(10.0, 20.0), elevation_deg=(0.0, 0.0), roll_deg=(0.0, 0.0),
                        look_at_jitter_m=0.0)
    poses = sample_poses(200, ranges, torch.Generator().manual_seed(0))
    assert all(2.0 <= p.distance <= 3.0 and 10.0 - 1e-9 <= abs(p.azimuth) <= 20.0 + 1e-9 for p in poses)
    assert all(abs(p.off_axis - abs(p.azimuth)) < 1e-6 for p in poses)  # no elevation: off-axis = azimuth
    assert any(p.azimuth < 0 for p in poses) and any(p.azimuth > 0 for p in poses)


@pytest.mark.parametrize("square", [0.0, 1.0])
def test_square_crops_keep_an_oblique_signs_aspect(square):
    """A sign turned 60 degrees spans cos 60 = 1/2 of its height in width (a far sign: closed form). GTSRB-style the
    crop stretches it to fill the square; with ``square_crops`` it keeps its aspect. The sign's region is where a white
    face and a black one, photographed alike, differ."""
    from physadv.rendering.signs.world import CameraEffects, LightConfig, photograph_sign

    world = replace(SMALL, square_crops=square, box_jitter=0.0, light=LightConfig(gain=(1, 1), shading=0.0),
                    effects=CameraEffects(blur_px=(0, 0), noise_std=(0, 0), contrast=(1, 1), brightness=(0, 0),
                                          jpeg_quality=(100, 100)))
    poses = [Pose(8.0, azimuth=60), Pose(8.0, azimuth=-60)]
    shots = [photograph_sign(torch.full((3, 128, 128), v), "stop", poses, world, torch.Generator().manual_seed(1)).images
             for v in (1.0, 0.0)]
    sign = (shots[0] - shots[1]).amax(1) > 0.5
    for m in sign:
        cols, rows = m.any(0).sum().item(), m.any(1).sum().item()
        expected = 0.5 if square else 1.0
        assert cols / rows == pytest.approx(expected, abs=0.08), (cols, rows)
        assert rows == pytest.approx(m.shape[0] / (1 + 2 * world.margin), abs=2)  # the height fills the crop but its margin
    with pytest.raises(ValueError, match="square_crops"):
        replace(SMALL, square_crops=1.5).validate()


def test_gtsrb_crop_takes_the_box_plus_margin():
    """A box of a known colour inside a larger image: the crop with margin 0 is that colour, with margin it is not."""
    img = torch.zeros(3, 100, 120)
    img[0, 20:60, 30:70] = 1.0  # a red square, pixels 30..69 x 20..59 -> pixel-edge box (29.5, 19.5, 69.5, 59.5)
    box = (29.5, 19.5, 69.5, 59.5)
    tight = gtsrb_crop(img, box, size=16, margin=0.0)
    assert tight.shape == (3, 16, 16)
    torch.testing.assert_close(tight[0], torch.ones(16, 16))
    loose = gtsrb_crop(img, box, size=24, margin=0.1)
    # 10% of 40 px on each side = 4 px of black: 24 * 4 / 48 = 2 output pixels of border
    assert loose[0, 12, 0] < 0.05 and loose[0, 12, 12] > 0.99 and loose[0, 0, 12] < 0.05
    # a box partly outside the image repeats the border instead of failing
    assert gtsrb_crop(img, (-10, -10, 20, 20), size=8).shape == (3, 8, 8)
    # differentiable with respect to the image
    x = img.clone().requires_grad_(True)
    gtsrb_crop(x, box, size=16).sum().backward()
    assert x.grad[:, 30, 40].abs().sum() > 0 and x.grad[:, 0, 0].abs().sum() == 0


def test_dataset_is_registered_and_cached(tmp_path):
    path = tmp_path / "world.yaml"
    path.write_text("train_per_class: 3\ntest_per_class: 2\nwork_px: 48\n")
    train = load_dataset("signs", "train", root=path)
    test = load_dataset("signs", "test", root=path)
    again = load_dataset("signs", "train", root=path)
    assert len(train) == 3 * len(sign_classes()) and len(test) == 2 * len(sign_classes())
    assert train.classes == sign_classes() and train.shape == (3, 32, 32)
    torch.testing.assert_close(train.images, again.images)
    assert not torch.equal(train.images[: len(test)], test.images)  # held out: another seed


# an easy, tiny world and a short run: trains in seconds (the full recipe and its bars are a slow test)
TINY = ["world.train_per_class=30", "world.test_per_class=6", "world.work_px=32", "world.supersample=1",
        "world.texture_px=64", "world.pose.distance_m=[2, 4]", "world.pose.angle_deg=[0, 10]",
        "world.backgrounds=[solid]", "world.light.gain=[0.9, 1.1]", "world.effects.blur_px=[0, 0.5]",
        "world.effects.noise_std=[0, 0.01]", "world.effects.contrast=[1, 1]", "world.effects.brightness=[0, 0]",
        "world.effects.jpeg_quality=[90, 95]", "classifier.model_args={width: 0.5, hidden: 128}",
        "classifier.epochs=10", "classifier.batch_size=16", "classifier.lr=0.001", "classifier.device=cpu",
        "grid.distances_ft=[10, 20]", "grid.angles_deg=[0, 15]", "grid.per_class=1"]


def test_signs_train_job_trains_caches_and_grades_the_classifier(tmp_path):
    import csv
    import json

    from physadv.core.train import cached_classifier_path
    from physadv.physical.cli import main

    out = tmp_path / "run"
    assert main(["signs", "train", "--out", str(out), *[a for o in TINY for a in ("--set", o)]]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    # chance is 1/15 (an untrained net: under 0.15 on these 90 crops); ten short epochs on 450 crops reach 0.47-0.78
    # over classifier seeds 0-2 and seven 0.43-0.67, by CPU (0.4333 on one machine, above 0.45 on another): learning,
    # not one machine's float order, is what this bar checks
    assert metrics["held_out_accuracy"] > 0.3
    rows = list(csv.DictReader(open(out / "grid.csv")))
    assert [(float(r["distance"]), float(r["angle"])) for r in rows] == [(10, 0), (10, 15), (20, 0), (20, 15)]
    assert {r["unit"] for r in rows} == {"ft"} and float(rows[0]["distance_m"]) == pytest.approx(3.048)
    assert all(0 <= float(r["accuracy"]) <= 1 and int(r["n"]) == len(sign_classes()) for r in rows)
    # the sign is about twice as wide in pixels at half the distance
    assert float(rows[0]["footprint_px"]) == pytest.approx(2 * float(rows[2]["footprint_px"]), rel=0.15)
    md = (out / "grid.md").read_text()  # the shared distance x angle layout: distance rows, angle columns
    assert (out / "grid.png").stat().st_size > 0 and md.startswith("| distance (ft) | 0° | 15° |") and "\n| 10 | " in md
    assert (out / "config.yaml").is_file()
    # the classifier is cached by config hash; another world gets another entry
    cfg = load_config(SignsConfig, "configs/signs/train.yaml", TINY)
    assert cached_classifier_path(train_config(cfg)).is_file()
    assert train_config(cfg).data.root != train_config(SignsConfig()).data.root
    model = get_sign_classifier(cfg, progress=False)
    assert model.classes == sign_classes() and model.input_size == (3, 32, 32)


def test_signs_show_job(tmp_path):
    from physadv.physical.cli import main

    assert main(["signs", "show", "--out", str(tmp_path), "--n", "15", *[a for o in TINY for a in ("--set", o)]]) == 0
    assert (tmp_path / "textures.png").is_file() and (tmp_path / "crops.png").is_file()


# --------------------------------------------------------------------------- bad input
def test_unknown_sign_class_is_a_clear_error():
    with pytest.raises(PhysadvError, match="unknown sign class 'speed_limit_90'"):
        sign_texture("speed_limit_90")
    with pytest.raises(PhysadvError, match="size_px"):
        sign_texture("stop", 3)


def test_pose_range_with_min_above_max_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("world:\n  pose:\n    distance_m: [12.0, 1.5]\n")
    with pytest.raises(PhysadvError, match=r"world.pose: distance_m: min 12.0 is greater than max 1.5"):
        load_config(SignsConfig, path)
    from physadv.physical.cli import main

    assert main(["signs", "train", "--config", str(path)]) == 2  # one line on stderr, exit code 2
    with pytest.raises(PhysadvError, match="angle_deg"):
        load_config(WorldConfig, None, ["pose.angle_deg=[60, 0]"])
    with pytest.raises(PhysadvError, match="unknown key"):
        load_config(WorldConfig, None, ["pose.distanc_m=[1, 2]"])


def test_empty_crop_box_is_a_clear_error():
    with pytest.raises(PhysadvError, match="empty"):
        gtsrb_crop(torch.rand(3, 10, 10), (5, 5, 5, 8))
    with pytest.raises(PhysadvError, match="outside"):
        gtsrb_crop(torch.rand(3, 10, 10), (50, 50, 60, 60), margin=0.0)


@pytest.mark.slow
def test_full_classifier_meets_the_bars():
    """The default sign classifier: >= 95% on held-out renders, >= 90% in every distance x angle cell."""
    from physadv.core.train import evaluate
    from physadv.rendering.signs.classifier import evaluate_grid
    from physadv.rendering.signs.world import load_signs

    cfg = SignsConfig()
    model = get_sign_classifier(cfg, progress=False)
    assert evaluate(model, load_signs("test", cfg.world), progress=False)["accuracy"] >= 0.95
    grid = evaluate_grid(model, cfg, progress=False)
    assert grid.worst >= 0.90, grid.rows()
