"""rendering.signs.scenes: the aimed camera against OpenCV's projection, ground-truth boxes against the rendered
pixels, deterministic cached sets; the sign-world detector's training (a few steps, resumable) and its AP50 bar."""
import math
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from physadv.core.detection_data import DetectionSet
from physadv.core.errors import PhysadvError
from physadv.rendering.camera import Pose
from physadv.rendering.signs.scenes import (AimedPose, ScenesConfig, SceneLayout, aimed, compose, generate_scenes,
                                            load_scenes, projected_box, sample_scene)
from physadv.rendering.signs.textures import sign_spec
from physadv.rendering.signs.world import CameraEffects


def _quiet(cfg: ScenesConfig, **layout) -> ScenesConfig:
    """No camera effects and a fixed light: pixels show exactly where objects are."""
    fx = CameraEffects(blur_px=(0.0, 0.0), noise_std=(0.0, 0.0), contrast=(1.0, 1.0), brightness=(0.0, 0.0),
                       jpeg_quality=(100.0, 100.0))
    return replace(cfg, effects=fx, layout=replace(cfg.layout, **layout))


@pytest.mark.parametrize("pose,centre", [(Pose(4.0, 35.0, 5.0, 3.0), (60.0, 300.0)), (Pose(12.0, -60.0, -7.0, -4.0), (480.0, 20.0)),
                                         (Pose(1.5, 0.0, 0.0, 0.0), (255.5, 191.5))])
def test_aimed_camera_matches_opencv_projection(pose, centre):
    intr = ScenesConfig().camera.intrinsics()
    placed = aimed(pose, intr, centre)
    R, t = placed.extrinsics()
    outline = sign_spec("stop").outline()
    world = np.column_stack([outline, np.zeros(len(outline))])
    img, _ = cv2.projectPoints(np.vstack([[0.0, 0, 0], world]), cv2.Rodrigues(R)[0], t, intr.K, None)
    img = img.reshape(-1, 2)
    assert np.allclose(img[0], centre, atol=1e-6)  # the sign's centre lands where it was aimed
    box = np.array([img[1:, 0].min(), img[1:, 1].min(), img[1:, 0].max(), img[1:, 1].max()]) + 0.5
    assert np.allclose(projected_box(placed, intr, outline), box, atol=1e-6)
    # turning the camera about its centre keeps the distance and the viewing angle
    assert math.isclose(float(np.linalg.norm(t)), pose.distance, rel_tol=1e-9)
    normal_cam, to_camera = R @ np.array([0.0, 0, 1]), -t / np.linalg.norm(t)
    assert math.isclose(math.degrees(math.acos(normal_cam @ to_camera)), pose.off_axis, abs_tol=1e-6)


def test_ground_truth_boxes_bound_the_rendered_sign():
    cfg = _quiet(ScenesConfig(), signs=(1, 1), distractors=(0, 0), posters=(0, 0))
    g = torch.Generator().manual_seed(4)
    for _ in range(3):
        spec = sample_scene(cfg, g)
        spec = replace(spec, background=torch.zeros_like(spec.background))
        shot = compose(spec, cfg)
        ys, xs = torch.nonzero(shot.image.max(0).values > 0.1, as_tuple=True)
        painted = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
        assert torch.allclose(painted, shot.boxes[0], atol=1.5), (painted, shot.boxes[0])
        assert 1.0 <= float(shot.distance_m[0]) <= 15.0 and 0 <= float(shot.angle_deg[0]) <= 66.0


def test_scenes_hold_1_to_6_signs_in_frame_without_overlap():
    cfg = ScenesConfig()
    data = generate_scenes(cfg, 6, seed=11, progress=False)
    assert data.classes[0] == "__background__" and len(data.classes) == 16
    for i in range(len(data)):
        image, target = data[i]
        b = target["boxes"]
        assert image.shape == (3, 384, 512) and 1 <= len(b) <= 6
        assert float(b[:, :2].min()) >= 0 and float(b[:, 2].max()) <= 512 and float(b[:, 3].max()) <= 384
        assert bool((target["labels"] >= 1).all()) and bool((target["labels"] <= 15).all())
        from torchvision.ops import box_iou

        iou = box_iou(b, b) - torch.eye(len(b))
        assert float(iou.max()) == 0.0


def test_scene_sets_are_deterministic_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("PHYSADV_CACHE", str(tmp_path))
    cfg = replace(ScenesConfig(), train_scenes=3, test_scenes=2)
    a = load_scenes("test", cfg, progress=False)
    again = generate_scenes(cfg, 2, seed=1, progress=False)
    assert torch.equal(a.encoded, again.encoded) and torch.equal(a.boxes, again.boxes)
    cached = load_scenes("test", cfg, progress=False)  # from the safetensors file
    assert torch.equal(cached.encoded, a.encoded) and torch.equal(cached.labels, a.labels) and cached.classes == a.classes
    assert not torch.equal(load_scenes("train", cfg, progress=False).encoded[:1000], a.encoded[:1000])
    assert list(tmp_path.glob("scenes/*.safetensors"))
    from physadv.rendering.signs.scenes import scenes_hash

    bigger_test = replace(cfg, test_scenes=7)  # neither renders the training set again nor retrains the detector
    assert scenes_hash(bigger_test, "train") == scenes_hash(cfg, "train") != scenes_hash(bigger_test, "test")


def test_replaced_face_is_differentiable():
    cfg = ScenesConfig()
    spec = sample_scene(cfg, torch.Generator().manual_seed(2))
    k = spec.signs[0]
    face = torch.full((3, 64, 64), 0.5, requires_grad=True)
    shot = compose(spec, cfg, textures={k: face})
    x0, y0, x1, y1 = shot.boxes[0].tolist()
    shot.image[:, int(y0):int(math.ceil(y1)), int(x0):int(math.ceil(x1))].sum().backward()
    assert float(face.grad.abs().sum()) > 0


def test_scene_with_sign_feeds_a_detector_victim_differentiably():
    from physadv.core.detection import build_detector
    from physadv.core.detection_victim import DetectorVictim
    from physadv.core.victims import Objective, Views
    from physadv.rendering.signs.scenes import scene_with_sign

    cfg = ScenesConfig()
    spec, k = scene_with_sign(cfg, "stop", 9.0, 40.0, torch.Generator().manual_seed(5))
    target = spec.objects[k]
    assert target.pose.distance == 9.0 and math.isclose(abs(target.pose.azimuth), 40.0)
    torch.manual_seed(0)  # FCOS scores every location, so candidates overlap the sign even with random weights
    victim = DetectorVictim(build_detector("fcos_resnet50_fpn", min_size=192, max_size=256))
    face = torch.full((3, 64, 64), 0.5, requires_grad=True)
    shot = compose(spec, cfg, textures={k: face})
    views = Views(shot.image[None], shot.box_of(k)[None])
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    victim.loss(views, Objective("disappearance", source="stop sign")).sum().backward()
    torch.set_num_threads(n)
    assert float(face.grad.abs().sum()) > 0
    with pytest.raises(PhysadvError, match="does not fit"):
        scene_with_sign(cfg, "yield", 0.4, 0.0, torch.Generator().manual_seed(5))


def test_bad_scene_config_is_one_line():
    from physadv.core.config import from_dict

    with pytest.raises(PhysadvError, match="layout.signs"):
        from_dict(ScenesConfig, {"layout": {"signs": [0, 2]}})
    with pytest.raises(PhysadvError, match="unknown kind 'fog'"):
        from_dict(ScenesConfig, {"backgrounds": ["fog"]})
    assert isinstance(SceneLayout(), SceneLayout) and AimedPose(2.0).turn().shape == (3, 3)


def test_detector_training_resumes_exactly_and_caches(tmp_path, monkeypatch):
    import physadv.core.detection_train as dt

    monkeypatch.setenv("PHYSADV_CACHE", str(tmp_path))
    cfg = replace(ScenesConfig(), camera=replace(ScenesConfig().camera, width=128, height=96))
    cfg = replace(cfg, layout=replace(cfg.layout, distance_m=(3.0, 8.0)))
    data = generate_scenes(cfg, 4, seed=3, progress=False)
    recipe = dt.DetectorTrainConfig(width=0.5, head_width=8, epochs=2, batch_size=2, warmup_steps=1, checkpoint_every=1)
    whole, metrics = dt.train_sign_detector(recipe, data, None, progress=False)
    assert metrics["steps"] == 4
    partial, save = tmp_path / "partial.safetensors", dt._save_partial

    def interrupted(path, *args):
        save(path, *args)
        if args[3] == 2:  # the step count
            raise KeyboardInterrupt

    monkeypatch.setattr(dt, "_save_partial", interrupted)
    with pytest.raises(KeyboardInterrupt):
        dt.train_sign_detector(recipe, data, partial, progress=False)
    monkeypatch.setattr(dt, "_save_partial", save)
    resumed, _ = dt.train_sign_detector(recipe, data, partial, progress=False)
    for k, v in whole.model.state_dict().items():
        assert torch.allclose(v.float(), resumed.model.state_dict()[k].float(), atol=1e-6), k
    det = dt.get_sign_detector(recipe, data, "toy-data", progress=False)
    again = dt.get_sign_detector(recipe, None, "toy-data", progress=False)  # from the cache: no data needed
    key = "roi_heads.box_predictor.cls_score.weight"
    assert torch.equal(det.model.state_dict()[key], again.model.state_dict()[key]) and again.classes == data.classes
    assert isinstance(data, DetectionSet)


@pytest.mark.slow
def test_sign_detector_ap50_bar():
    """The issue's bar: AP50 >= 0.90 on the held-out scenes (trains the detector once if not cached: ~1 h on 2 cores)."""
    from physadv.core.config import load_config
    from physadv.core.detection_train import evaluate_detector
    from physadv.core.resources import packaged
    from physadv.rendering.signs.detector_cli import DEFAULT_CONFIG, SignDetectorJob, sign_detector

    job = load_config(SignDetectorJob, packaged(DEFAULT_CONFIG))
    result = evaluate_detector(sign_detector(job, progress=False), load_scenes("test", job.scenes, progress=False), progress=False)
    assert result["ap50"] >= 0.90, result["per_class"]


def test_signs_detector_job_writes_metrics_and_picture(tmp_path, monkeypatch, capsys):
    import argparse
    import json

    from physadv.rendering.signs.detector_cli import _run

    monkeypatch.setenv("PHYSADV_CACHE", str(tmp_path / "cache"))
    sets = ["scenes.camera.width=128", "scenes.camera.height=96", "scenes.layout.distance_m=[3.0,8.0]",
            "scenes.train_scenes=4", "scenes.test_scenes=2", "detector.width=0.5", "detector.head_width=8",
            "detector.epochs=1", "detector.warmup_steps=1", "pictures=2", "score_thresh=0.0"]
    args = argparse.Namespace(config="configs/signs/detector.yaml", overrides=sets, out=str(tmp_path / "run"), retrain=False)
    assert _run(args) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0.0 <= metrics["ap50"] <= 1.0 and metrics["reused_cache"] is False and metrics["test_scenes"] == 2
    assert (tmp_path / "run" / "detections.png").is_file() and (tmp_path / "run" / "config.yaml").is_file()
    assert "AP50" in capsys.readouterr().out
    assert _run(args) == 0 and json.loads((tmp_path / "run" / "metrics.json").read_text())["reused_cache"] is True
