"""benchmarks/outside_judges.py: its OpenCV photographer against closed forms, and its refusals."""
import importlib.util
import math
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("outside_judges", ROOT / "benchmarks" / "outside_judges.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as importlib's recipe does: dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("distance_ft,angle", [(20, 0), (30, 45), (40, 60)])
def test_the_sign_covers_the_area_a_pinhole_camera_gives_it(bench, distance_ft, angle):
    """Far from the camera, a plane of side W at distance d seen at angle a from its normal (yaw a, pitch p) spans the
    solid angle W^2 cos a cos p / d^2, which a pinhole camera images on f^2 / cos^3(phi) pixels per steradian at
    phi off its axis. Pitch is at most 8 degrees; perspective adds under 2% at 20 ft."""
    K = bench.camera()
    rng = np.random.default_rng(3)
    for _ in range(5):
        corners = bench.project(0.75, 1.0, distance_ft * bench.FT, angle, rng, K, (1280, 960))
        area = cv2.contourArea(corners.astype(np.float32))
        phi = math.atan(np.linalg.norm(corners.mean(0) - K[:2, 2]) / K[0, 0])
        solid = 0.75 ** 2 * math.cos(math.radians(angle)) / (distance_ft * bench.FT) ** 2
        ratio = area / (K[0, 0] ** 2 * solid / math.cos(phi) ** 3)
        assert math.cos(math.radians(8)) * 0.98 <= ratio <= 1.02, ratio
        assert (corners >= 0).all() and (corners[:, 0] <= 1280).all() and (corners[:, 1] <= 960).all()


def test_light_scales_the_sign_in_linear_light(bench):
    """The same photo under the dim light (gain 0.3) and the normal one (gain 1): the sign's pixels, decoded to
    linear light (IEC 61966-2-1), differ by the gain's ratio; in encoded values the ratio would be 0.3^(1/2.2)."""
    face = np.ones((64, 64, 4), np.float32)
    face[..., :3] = 0.6
    means = {}
    for light in ("dim", "normal"):
        (photo,), corners = bench.photograph([face], 0.75, 15, 0, light, np.random.default_rng(7))
        inner = corners.mean(0) + 0.3 * (corners - corners.mean(0))  # well inside the sign, away from its edge
        mask = np.zeros(photo.shape[:2], np.uint8)
        cv2.fillConvexPoly(mask, inner.astype(np.int32), 1)
        means[light] = bench.to_linear(photo[mask > 0] / 255.0).mean()
    assert means["dim"] / means["normal"] == pytest.approx(bench.LIGHTS["dim"], rel=0.04)


@pytest.mark.parametrize("kind", ["box", "square"])
def test_the_crop_frames_the_sign_as_the_margin_and_kind_say(bench, kind):
    """A white 100 x 50 rectangle on black, cropped with a 25% margin: GTSRB-style ("box") it fills the middle
    1 / 1.5 of the crop both ways; kept square it fills 1 / 1.5 of the width and 1 / 3 of the height."""
    photo = np.zeros((300, 400, 3), np.uint8)
    photo[100:150, 150:250] = 255
    corners = np.array([[150, 100], [250, 100], [250, 150], [150, 150]], np.float64) - 0.5  # pixel edges
    c = bench.crop(photo, corners, 0.25, kind, size=60)
    white = c[..., 0] > 127
    rows, cols = white.any(1).sum(), white.any(0).sum()
    assert cols == pytest.approx(40, abs=1) and rows == pytest.approx(40 if kind == "box" else 20, abs=1)
    assert white[30, 10:50].all() and not white[30, :9].any()


def test_sign_near_the_border_is_cropped_with_repeated_edges(bench):
    photo = np.zeros((100, 100, 3), np.uint8)
    photo[:, :50] = 200
    c = bench.crop(photo, np.array([[0, 0], [40, 0], [40, 40], [0, 40]], np.float64), 0.5, "square", size=40)
    assert c.shape == (40, 40, 3) and c[:, :10].min() == 200  # outside the photo: its left edge, repeated


def test_bad_input_is_one_line_and_exit_2(bench, tmp_path, capsys):
    from physadv.core.io import save_checkpoint

    def refused(argv):
        assert bench.main(argv) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("outside_judges: ")
        return lines[0]

    assert "no such file" in refused(["--design", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "o")])
    save_checkpoint(tmp_path / "t.safetensors", {"texture": torch.rand(3, 8, 8), "alpha": torch.ones(1, 8, 8)})
    assert "no clean tensor" in refused(["--design", str(tmp_path / "t.safetensors")])
    assert "--archs: vit is neither" in refused(["--design", "x", "--archs", "vit"])
    assert "--lights: unknown noon" in refused(["--design", "x", "--lights", "normal,noon"])
    assert "--distances takes numbers" in refused(["--design", "x", "--distances", "5,far"])
    assert not (tmp_path / "o").exists()
