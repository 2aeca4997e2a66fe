"""The layout contract: JSON round trip, helpful errors, and the homography/rectification it supports."""
import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from physadv.core.errors import PhysadvError
from physadv.printing.export import ExportConfig, export_print
from physadv.printing.fiducials import detect_markers, page_homography, rectify
from physadv.printing.layout import PrintLayout, Rect, corner_markers


def test_round_trip_and_helpers(tmp_path):
    obj = Rect(30, 40, 100, 50)
    layout = PrintLayout(160, 130, 300, obj, markers=corner_markers(obj, 15, 5))
    layout.to_json(tmp_path / "layout.json")
    back = PrintLayout.from_json(tmp_path)  # a folder works too
    assert back == layout
    np.testing.assert_allclose(back.object_corners_mm(), [[30, 40], [130, 40], [130, 90], [30, 90]])
    tl = back.marker_corners_mm()[0]
    np.testing.assert_allclose(tl, [[10, 20], [25, 20], [25, 35], [10, 35]])  # TL, TR, BR, BL; 5 mm gap to the object
    assert back.page_size_px() == (round(160 / 25.4 * 300), round(130 / 25.4 * 300))


def test_bad_layouts(tmp_path):
    with pytest.raises(PhysadvError, match="not found"):
        PrintLayout.from_json(tmp_path / "nope.json")
    (tmp_path / "a.json").write_text('{"page_width_mm": 1}')
    with pytest.raises(PhysadvError, match="a.json: not a physadv print layout"):
        PrintLayout.from_json(tmp_path / "a.json")
    (tmp_path / "b.json").write_text("{oops")
    with pytest.raises(PhysadvError, match="invalid JSON"):
        PrintLayout.from_json(tmp_path / "b.json")


def test_homography_and_rectify_recover_the_object(tmp_path):
    tex = data.astronaut()[::2, ::2] / 255.0
    layout = export_print(tex, tmp_path, ExportConfig(width="8cm", dpi=100, formats=["png"]))
    page = np.asarray(Image.open(tmp_path / "print.png").convert("RGB"))
    h, w = page.shape[:2]
    dst = np.float32([[120, 90], [900, 60], [980, 820], [60, 760]])
    Hp = cv2.getPerspectiveTransform(np.float32([[0, 0], [w, 0], [w, h], [0, h]]), dst)
    photo = cv2.warpPerspective(page, Hp, (1100, 900), borderValue=(90, 120, 60))
    H, used = page_homography(detect_markers(photo), layout)
    assert used == [0, 1, 2, 3]
    # page mm -> photo px agrees with the warp we applied (page px = mm * ppm, corner-based)
    ppm = 100 / 25.4
    mm = layout.object_corners_mm()
    truth = cv2.perspectiveTransform((mm * ppm)[None].astype(np.float32), Hp)[0] - 0.5
    np.testing.assert_allclose(cv2.perspectiveTransform(mm[None], H)[0], truth, atol=1.0)
    flat = rectify(photo, H, layout.object_rect, ppm)
    r = layout.object_rect
    original = page[round(r.y * ppm):round(r.y * ppm) + flat.shape[0], round(r.x * ppm):round(r.x * ppm) + flat.shape[1]]
    assert np.abs(flat.astype(float) - original).mean() < 12  # resampled twice, same picture
    with pytest.raises(PhysadvError, match="found 0"):
        page_homography({}, layout, source="x.jpg")
