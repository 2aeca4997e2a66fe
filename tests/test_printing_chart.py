"""Chart bar: a chart photo through a known colour distortion, perspective warp and background is inverted
to mean delta E2000 < 3 (on the patches and on a held-out photo); bad chart photos give clear errors."""
import copy

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from physadv.core.errors import PhysadvError
from physadv.printing.chart import ChartConfig, calibrate, chart_colours, patch_comparison_image, read_chart, write_chart
from physadv.printing.colour import delta_e2000, rgb_to_lab


def distort(rgb):  # a print-and-capture look: gamma, channel cross-talk, lifted blacks, a warm cast
    M = np.array([[0.82, 0.10, 0.03], [0.06, 0.78, 0.08], [0.02, 0.09, 0.74]])
    return np.clip((rgb ** 1.2) @ M.T + np.array([0.07, 0.05, 0.09]), 0, 1)


def photograph(page, size=(1600, 1200), seed=0):
    h, w = page.shape[:2]
    bg = cv2.resize(data.coffee(), size) / 255.0
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = np.float32([[260, 170], [1380, 240], [1300, 1050], [200, 980]]) * np.float32([size[0] / 1600, size[1] / 1200])
    H = cv2.getPerspectiveTransform(src, dst)
    warped = cv2.warpPerspective(page.astype(np.float32), H, size, flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.ones((h, w), np.float32), H, size)[..., None]
    photo = warped * mask + bg * (1 - mask)
    return np.clip(photo + np.random.default_rng(seed).normal(0, 0.01, photo.shape), 0, 1)


@pytest.fixture(scope="module")
def chart(tmp_path_factory):
    out = tmp_path_factory.mktemp("chart")
    layout = write_chart(out, ChartConfig(dpi=100, formats=["png"]))
    page = np.asarray(Image.open(out / "chart.png").convert("RGB")) / 255.0
    return layout, page


def test_chart_colours_span_the_cube():
    c = chart_colours(96, seed=0)
    assert c.shape == (96, 3) and c.min() == 0 and c.max() == 1
    assert len({tuple(v) for v in c}) == 96
    assert (np.ptp(c, axis=1) == 0).sum() >= 16  # a grey ramp (plus the cube's diagonal)


def test_calibration_inverts_a_known_distortion(chart):
    layout, page = chart
    reading = read_chart(photograph(distort(page)), layout)
    assert reading.markers_used == sorted(m.id for m in layout.markers) and reading.reprojection_px < 1.0
    # the sampled colours are the distorted patch colours
    np.testing.assert_allclose(reading.captured.numpy(), distort(reading.intended.numpy()), atol=0.02)
    result = calibrate(reading)
    assert result["poly2"].inverse_error["mean_delta_e2000"] < 3.0
    assert result["poly2"].forward_error["mean_delta_e2000"] < result["affine"].forward_error["mean_delta_e2000"]
    # held out: a natural photo through the same distortion, corrected by the fitted inverse
    astro = data.astronaut()[::4, ::4] / 255.0
    corrected = result["poly2"].inverse(torch.from_numpy(distort(astro)).float()).clamp(0, 1).double()
    de = delta_e2000(rgb_to_lab(corrected), rgb_to_lab(torch.from_numpy(astro))).mean()
    before = delta_e2000(rgb_to_lab(torch.from_numpy(distort(astro))), rgb_to_lab(torch.from_numpy(astro))).mean()
    assert de < 3.0 < before
    pic = patch_comparison_image(reading, result["poly2"])
    assert pic.dtype == np.uint8 and pic.shape[2] == 3


def test_photo_without_fiducials(chart):
    layout, _ = chart
    with pytest.raises(PhysadvError, match="0 of the layout's 4 fiducials"):
        read_chart(cv2.resize(data.coffee(), (800, 600)), layout, source="empty.jpg")


def test_marker_geometry_that_does_not_fit(chart):
    layout, page = chart
    bad = copy.deepcopy(layout)
    bad.markers[2].corners_mm = (np.asarray(bad.markers[2].corners_mm) + [25.0, 0.0]).tolist()  # BR marker moved 25 mm
    with pytest.raises(PhysadvError, match="do not match the layout"):
        read_chart(photograph(page), bad)


def test_chart_too_small_in_the_photo(chart):
    layout, page = chart
    with pytest.raises(PhysadvError, match="fiducials|too small"):
        read_chart(photograph(page, size=(160, 120)), layout)


def test_layout_of_another_chart(chart, tmp_path):
    _, page = chart
    cfg = ChartConfig(dpi=100, patch_mm=12, seed=1, formats=["png"])
    assert cfg.chart_marker_ids() != ChartConfig().chart_marker_ids()
    other = write_chart(tmp_path, cfg)
    with pytest.raises(PhysadvError, match="different print"):
        read_chart(photograph(page), other)
