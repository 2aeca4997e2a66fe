"""capture.detect / capture.detect_video: judging whole photos and video frames with a detector.

References: torchvision's own ``GeneralizedRCNNTransform`` for the working size; a colour detector (the bounding box
of the red pixels, an independent finder of the print) against the box the fiducials give; closed-form rates; a
random-weight COCO Faster R-CNN saved with ``torch.save`` through the command line, and the bad inputs.
"""
from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from physadv.capture.detect import evaluate_photos_detector, quad_box, working_size, write_detection_reports
from physadv.capture.detect_video import judge_video_detector, write_video_detector_report
from physadv.capture.judge import JudgeConfig
from physadv.capture.photos import ManifestRow, read_manifest, write_manifest
from physadv.capture.simulate import SimulateConfig, load_print, render_photo, simulate
from physadv.core.config import from_dict
from physadv.core.detection import Detector
from physadv.core.detection_spec import DetectionConfig
from physadv.core.detection_victim import DetectorVictim
from physadv.core.errors import PhysadvError
from physadv.core.io import write_image
from physadv.rendering.camera import Intrinsics, Pose

CLASSES = ["__background__", "stop", "yield"]


pytestmark = pytest.mark.usefixtures("torch_one_thread")


class RedDetector(nn.Module):
    """A detector in torchvision's interface that reports the bounding box of the red pixels as "stop" (0.9) and of
    the blue ones as "yield" (0.8); its ``transform`` only names its working size (min 96, max 128)."""

    def __init__(self):
        super().__init__()
        self.transform = GeneralizedRCNNTransform(96, 128, [0.5] * 3, [0.25] * 3)
        self.register_buffer("seen", torch.zeros(2))  # the working size of the last image (h, w)

    def forward(self, images):
        out = []
        for im in images:
            self.seen = torch.tensor(im.shape[-2:], dtype=torch.float32)
            r, g, b = im
            boxes, labels, scores = [], [], []
            for mask, label, score in (((r > 0.5) & (g < 0.35) & (b < 0.35), 1, 0.9), ((b > 0.5) & (r < 0.35), 2, 0.8)):
                ys, xs = torch.nonzero(mask, as_tuple=True)
                if len(xs) > 4:
                    boxes.append(torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float())
                    labels.append(label)
                    scores.append(score)
            out.append({"boxes": torch.stack(boxes) if boxes else torch.zeros(0, 4), "labels": torch.tensor(labels, dtype=torch.long),
                        "scores": torch.tensor(scores)})
        return out


def _red_victim(**kw) -> DetectorVictim:
    return DetectorVictim(Detector(RedDetector(), CLASSES, "red"), "red", **kw)


def _texture(size: int = 120) -> np.ndarray:
    t = np.zeros((size, size, 3), np.uint8)
    t[:] = (210, 25, 25)  # a red plate with a white disc: the red pixels' box is the object's rectangle
    cv2.circle(t, (size // 2, size // 2), size // 4, (255, 255, 255), -1)
    return t.astype(np.float32) / 255


@pytest.fixture(scope="module")
def printed(tmp_path_factory):
    from physadv.printing.export import ExportConfig, export_print

    out = tmp_path_factory.mktemp("print")
    layout = export_print(_texture(), out, from_dict(ExportConfig, {"width": "12cm", "dpi": 100, "formats": ["png"],
                                                                    "scale_bar": False}))
    return out, layout


@pytest.fixture(scope="module")
def photos(printed, tmp_path_factory):
    out, _ = printed
    root = tmp_path_factory.mktemp("sim")
    cfg = from_dict(SimulateConfig, {"print_file": str(out / "print.png"), "distances": [2.5, 4], "angles": [0, 40],
                                     "width": 960, "height": 720, "fov_deg": 40, "seed": 3, "backgrounds": ["solid"]})
    simulate(cfg, root)
    return root


# --------------------------------------------------------------------------- pieces against references
@pytest.mark.parametrize("hw", [(3024, 4032), (480, 640), (1000, 300), (96, 128)])
def test_working_size_is_torchvisions_own_resize(hw):
    t = GeneralizedRCNNTransform(800, 1333, [0.0] * 3, [1.0] * 3)
    det = Detector(nn.Module(), CLASSES, "x")
    det.model.transform = t
    image = torch.zeros(3, *hw)
    resized, _ = t.resize(image, None)
    h, w = working_size(det, *hw)
    assert abs(h - resized.shape[1]) <= 1 and abs(w - resized.shape[2]) <= 1


def test_quad_box_closed_form():
    quad = np.array([[10.0, 20], [50, 18], [52, 60], [9, 62]])  # OpenCV pixel centres
    assert quad_box(quad, 0.5, 0.25).tolist() == pytest.approx([(9 + 0.5) * 0.5, (18 + 0.5) * 0.25, (52 + 0.5) * 0.5,
                                                                 (62 + 0.5) * 0.25])


def test_colour_detector_finds_the_print_where_the_fiducials_put_it(printed, photos):
    """The red pixels' box (found in the resized photo) and the fiducials' box agree: the scales and conventions of
    resizing, locating and matching are consistent."""
    _, layout = printed
    victim = _red_victim(match_iou=0.7)
    results, report = evaluate_photos_detector(victim, JudgeConfig(true_class="stop", target_class="yield"), DetectionConfig(),
                                               None, photos / "manifest.csv", layout)
    assert [r.photo.status for r in results] == ["ok"] * 4 and all(r.matched_by == "box" for r in results)
    assert all(r.record.as_source and not r.record.as_target and r.record.score == pytest.approx(0.9) for r in results)
    assert tuple(victim.detector.model.seen.tolist()) == (96.0, 128.0)  # 960 x 720 photos at the detector's size
    cell = report["cells"][0]
    assert (cell["n"], cell["as_source"], cell["as_target"], cell["not_detected"]) == (1, 1.0, 0.0, 0.0)
    assert report["summary"]["detection"]["red"]["adversarial"]["as_source"] == 1.0


def test_every_photo_gets_a_status_and_nothing_is_lost(printed, photos, tmp_path):
    import shutil

    _, layout = printed
    rows = read_manifest(photos / "manifest.csv")[:2]
    shutil.copytree(photos / "photos", tmp_path / "photos")
    (tmp_path / "photos" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    write_image(tmp_path / "photos" / "wall.jpg", np.full((480, 640, 3), 0.5, np.float32))
    rows += [ManifestRow(0, "photos/missing.jpg", 10, "ft", 0), ManifestRow(0, "photos/broken.jpg", 10, "ft", 0),
             ManifestRow(0, "photos/wall.jpg", 10, "ft", 0)]
    write_manifest(tmp_path / "manifest.csv", rows)
    judge = JudgeConfig(true_class="stop")
    box = from_dict(DetectionConfig, {"match": "box"}, "test")
    results, report = evaluate_photos_detector(_red_victim(), judge, box, None, tmp_path / "manifest.csv", layout)
    assert [r.photo.status for r in results] == ["ok", "ok", "missing file", "unreadable", "object not found"]
    auto = evaluate_photos_detector(_red_victim(), judge, DetectionConfig(), None, tmp_path / "manifest.csv", layout)[0]
    wall = auto[-1]  # not located: matched anywhere in the frame, where nothing is red
    assert wall.photo.status == "ok" and wall.matched_by == "frame" and wall.record.label == "(none)" and not wall.record.detected
    files, _ = write_detection_reports(tmp_path / "rep", auto, evaluate_photos_detector(
        _red_victim(), judge, DetectionConfig(), None, tmp_path / "manifest.csv", layout)[1], "test")
    with open(files["results_csv"], newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 5
    page = files["html"].read_text()
    assert "detection-summary" in page and "missing file" in page and "unreadable" in page
    with pytest.raises(PhysadvError, match="'stopp' is not one of red's classes"):
        evaluate_photos_detector(_red_victim(), JudgeConfig(true_class="stopp"), DetectionConfig(), None,
                                 tmp_path / "manifest.csv", layout)


def _video(printed, path, frames_with_print=6, total=9):
    _, _ = printed
    page, lay = load_print(printed[0] / "print.png")
    intr = Intrinsics.from_fov(40, 640, 480)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    assert writer.isOpened()
    for i in range(total):
        if i < frames_with_print:
            bg = np.full((480, 640, 3), 0.35, np.float32)
            frame = (np.clip(render_photo(page, lay, Pose(0.7, azimuth=5 * i), intr, bg), 0, 1) * 255 + 0.5).astype(np.uint8)
        else:
            frame = np.full((480, 640, 3), 80, np.uint8)  # the print has left the frame
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_video_per_frame_rates(printed, tmp_path):
    path = _video(printed, tmp_path / "clip.avi")
    _, layout = printed
    frames, summary = judge_video_detector(path, _red_victim(), JudgeConfig(true_class="stop"), DetectionConfig(), layout,
                                           every=1)
    assert summary["frames_read"] == 9 and summary["frames_judged"] == 9 and summary["located"] == 6
    assert [f.matched_by for f in frames] == ["box"] * 6 + ["frame"] * 3
    assert summary["rates"]["as_source"] == pytest.approx(6 / 9) and summary["not_detected_as_source"] == pytest.approx(3 / 9)
    boxed = judge_video_detector(path, _red_victim(), JudgeConfig(true_class="stop"), from_dict(DetectionConfig, {"match": "box"}, "t"),
                                 layout, every=2)[1]
    assert boxed["frames_seen"] == 5 and boxed["frames_judged"] == 3 and boxed["rates"]["as_source"] == 1.0
    files = write_video_detector_report(tmp_path / "rep", frames, summary)
    assert files["csv"].read_text().count("\n") == 10 and "not detected as the source: 33.3%" in files["markdown"].read_text()


# --------------------------------------------------------------------------- the command line, a COCO detector from a file
def test_random_coco_faster_rcnn_file_through_capture_eval_and_video(printed, photos, frcnn_file, tmp_path, capsys):
    from physadv.physical.cli import main

    out, _ = printed
    small = ["--set", "detection.min_size=96", "--set", "detection.max_size=128"]
    common = ["--layout", str(out / "layout.json"), "--detector", "fasterrcnn_resnet50_fpn", "--weights", str(frcnn_file)]
    assert main(["capture", "eval", "--manifest", str(photos / "manifest.csv"), *common, "--set", "judge.true_class=stop sign",
                 *small, "--out", str(tmp_path / "eval")]) == 0
    with open(tmp_path / "eval" / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"} and {r["matched_by"] for r in rows} == {"box"}
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["detection"]["fasterrcnn_resnet50_fpn"]["adversarial"]["n"] == 4
    assert (tmp_path / "eval" / "detection_cells.csv").is_file() and (tmp_path / "eval" / "report.html").is_file()
    clip = _video(printed, tmp_path / "clip.avi", 2, 3)
    assert main(["capture", "video", "--source", str(clip), *common, "--every", "1", "--set", "judge.true_class=stop sign", *small,
                 "--out", str(tmp_path / "video")]) == 0
    summary = json.loads((tmp_path / "video" / "summary.json").read_text())
    assert summary["frames_read"] == 3 and summary["frames_judged"] == 3
    # bad input: one line, exit code 2
    capsys.readouterr()
    bad = [(["--detector", "retinanet_resnet50_fpn", "--weights", str(frcnn_file)], str(frcnn_file)),
           (["--detector", "fasterrcnn_resnet50_fpn", "--weights", str(frcnn_file), "--set", "judge.true_class=stop"],
            "'stop' is not one of fasterrcnn_resnet50_fpn's classes"),
           (["--detector", "fasterrcnn_resnet50_fpn"], "needs its weights")]
    for args, text in bad:
        code = main(["capture", "eval", "--manifest", str(photos / "manifest.csv"), "--layout", str(out / "layout.json"),
                     "--set", "judge.true_class=stop sign", *small, *args, "--out", str(tmp_path / "bad")] if "judge.true_class=stop" not in args
                    else ["capture", "eval", "--manifest", str(photos / "manifest.csv"), "--layout", str(out / "layout.json"),
                          *small, *args, "--out", str(tmp_path / "bad")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and text in err[0], err


def test_demo_section_judges_photo_sets_by_name(printed, photos, tmp_path):
    from physadv.core.detection_spec import register_detector
    from physadv.core.html import Page
    from physadv.physical.detect import detector_photo_section

    _, layout = printed
    register_detector("test-red", lambda: Detector(RedDetector(), CLASSES, "red"))
    page = Page("demo")
    out = detector_photo_section(page, tmp_path / "det", {"adversarial": photos, "clean": photos}, layout, "test-red",
                                 source="stop", target="yield")
    rates = out["summary"]["detection"]["test-red"]
    assert rates["clean"]["as_source"] == 1.0 and rates["adversarial"]["n"] == 4 and rates["adversarial"]["as_target"] == 0.0
    assert "detection-summary" in page.html() and out["files"]["html"].is_file()
