"""Export: the PDF at 300 DPI gives the object at its stated size, and its fiducials are found where layout.json says."""
import numpy as np
import pypdfium2 as pdfium
import pytest
from PIL import Image

from physadv.core.errors import PhysadvError
from physadv.printing.export import ExportConfig, export_print, parse_length, plan_tiles
from physadv.printing.fiducials import detect_markers
from physadv.printing.layout import PrintLayout


def _red_texture(h=60, w=90):
    rng = np.random.default_rng(0)
    tex = np.zeros((h, w, 3), np.float32)
    tex[..., 0] = 0.85 + 0.1 * rng.random((h, w))
    tex[..., 1:] = 0.1 * rng.random((h, w, 2))
    return tex


def _red_bbox(img):
    img = img.astype(np.int32)
    red = (img[..., 0] - img[..., 1] > 120) & (img[..., 0] - img[..., 2] > 120)
    ys, xs = np.nonzero(red)
    return xs.min(), xs.max() + 1, ys.min(), ys.max() + 1


def test_parse_length_units():
    assert parse_length("75cm") == pytest.approx(750)
    assert parse_length("8.5in") == pytest.approx(215.9)
    assert parse_length("300 mm") == pytest.approx(300)
    with pytest.raises(PhysadvError, match="width"):
        parse_length("big", "width")


def test_pdf_object_size_and_fiducials(tmp_path):
    cfg = ExportConfig(width="9cm", label="run-42")
    layout = export_print(_red_texture(), tmp_path, cfg)
    assert PrintLayout.from_json(tmp_path / "layout.json") == layout
    assert Image.open(tmp_path / "print.png").info["dpi"][0] == pytest.approx(300, abs=0.01)
    with Image.open(tmp_path / "print.tiff") as tif:
        assert float(tif.info["dpi"][0]) == pytest.approx(300) and tif.size == Image.open(tmp_path / "print.png").size

    doc = pdfium.PdfDocument(str(tmp_path / "print.pdf"))
    page = doc[0]
    w_pt, h_pt = page.get_size()
    assert w_pt / 72 * 25.4 == pytest.approx(layout.page_width_mm, rel=1e-4)  # MediaBox = page in mm
    raster = np.asarray(page.render(scale=300 / 72).to_pil().convert("RGB"))
    x0, x1, y0, y1 = _red_bbox(raster)
    px_per_mm = 300 / 25.4
    assert (x1 - x0) == pytest.approx(90 * px_per_mm, rel=0.01)  # 9 cm wide
    assert (y1 - y0) == pytest.approx(60 * px_per_mm, rel=0.01)  # aspect 60:90 -> 6 cm tall
    assert x0 == pytest.approx(layout.object_rect.x * px_per_mm, abs=1.5)

    # scale bar: the longest dark horizontal run below the bottom markers is 10 cm
    below = raster[int((layout.marker_corners_mm()[3][2, 1] + 1) * px_per_mm):] < 80
    runs = [max((len(s) for s in "".join("1" if v else "0" for v in row.all(1)).split("0")), default=0) for row in below]
    assert max(runs) == pytest.approx(100 * px_per_mm, rel=0.01)

    found = detect_markers(raster, layout.dictionary)
    assert set(found) == {0, 1, 2, 3}
    for mid, corners_mm in layout.marker_corners_mm().items():
        # OpenCV pixel centres sit at integer coordinates: page mm -> px is mm * px/mm - 0.5
        np.testing.assert_allclose(found[mid], corners_mm * px_per_mm - 0.5, atol=1.0)


def test_alpha_is_white_paper_and_cut_lines(tmp_path):
    tex = np.concatenate([_red_texture(40, 40), np.zeros((40, 40, 1), np.float32)], axis=2)
    tex[10:30, 10:30, 3] = 1.0  # one opaque square sticker
    layout = export_print(tex, tmp_path, ExportConfig(width="4cm", cut_lines=True, fiducials=False, formats=["png"]))
    img = np.asarray(Image.open(tmp_path / "print.png").convert("RGB"))
    x0, x1, y0, y1 = _red_bbox(img)
    assert (x1 - x0) == pytest.approx(20 * 300 / 25.4, rel=0.02)  # the sticker is half of the 4 cm width: 2 cm
    r = layout.object_rect
    ppm = 300 / 25.4
    corner = img[round(r.y * ppm) + 5, round(r.x * ppm) + 5]
    assert (corner == 255).all()  # transparent -> white paper
    # dashed grey cut line around the sticker: some grey pixels on its outline, not all of it
    row = img[round((r.y + 10) * ppm), round(r.x * ppm):round((r.x + r.width) * ppm)]
    col = img[round(r.y * ppm):round((r.y + r.height) * ppm), round((r.x + 10) * ppm) - 1]
    assert ((col[:, 0] < 200) & (np.abs(col[:, 0].astype(int) - col[:, 1]) < 20)).any()
    assert layout.kind == "stickers" and len(row) > 0


def test_tiling_a4(tmp_path):
    tex = _red_texture(50, 50)
    layout = export_print(tex, tmp_path, ExportConfig(width="40cm", tile="A4", formats=["png", "pdf"], dpi=50))
    doc = pdfium.PdfDocument(str(tmp_path / "print_tiles.pdf"))
    assert len(doc) == len(layout.tiles) >= 4
    for i, tile in enumerate(layout.tiles):
        w_pt, h_pt = doc[i].get_size()
        assert sorted([w_pt / 72 * 25.4, h_pt / 72 * 25.4]) == pytest.approx([210, 297], abs=0.6)
        assert (tmp_path / tile.file).is_file()
    # the tiles cover the sheet, and neighbours share the overlap
    right = max(t.region.x + t.region.width for t in layout.tiles)
    bottom = max(t.region.y + t.region.height for t in layout.tiles)
    assert right == pytest.approx(layout.page_width_mm, abs=0.6) and bottom == pytest.approx(layout.page_height_mm, abs=0.6)
    a, b = layout.tiles[0], layout.tiles[1]
    assert a.region.x + a.region.width - b.region.x == pytest.approx(15, abs=0.6)


def _octagon_sign(n=200):
    """A stop-sign-like RGBA texture: a red octagon, transparent corners."""
    import cv2

    tex = np.zeros((n, n, 4), np.float32)
    r, c = n / 2, n / 2
    pts = np.array([[c + r * np.cos(np.pi / 8 + k * np.pi / 4), c + r * np.sin(np.pi / 8 + k * np.pi / 4)] for k in range(8)])
    alpha = cv2.fillPoly(np.zeros((n, n), np.uint8), [np.round(pts).astype(np.int32)], 1).astype(np.float32)
    tex[..., 0], tex[..., 1], tex[..., 2], tex[..., 3] = 0.8, 0.05, 0.1, alpha
    return tex


def _assembled_tiled_pdf(tmp_path, dpi, render_dpi):
    from physadv.printing.export import assemble_tiles

    layout = export_print(_octagon_sign(), tmp_path, ExportConfig(width="75cm", tile="A4", dpi=dpi, formats=["pdf"]))
    doc = pdfium.PdfDocument(str(tmp_path / "print_tiles.pdf"))
    pages = [np.asarray(doc[i].render(scale=render_dpi / 72).to_pil().convert("RGB")) for i in range(len(doc))]
    return layout, assemble_tiles(pages, layout, render_dpi)


@pytest.mark.parametrize("dpi", [40, pytest.param(300, marks=pytest.mark.slow)])
def test_tiled_stop_sign_reassembles_at_75cm(tmp_path, dpi):
    import cv2

    layout, sheet = _assembled_tiled_pdf(tmp_path, dpi, dpi)
    ppm = dpi / 25.4
    x0, x1, y0, y1 = _red_bbox(sheet)
    # the octagon's flat sides span the 75 cm width less the polygon's corner inset (cos(pi/8))
    assert (x1 - x0) == pytest.approx(750 * np.cos(np.pi / 8) * ppm, rel=0.01)
    assert (y1 - y0) == pytest.approx(750 * np.cos(np.pi / 8) * ppm, rel=0.01)
    small = cv2.resize(sheet, None, fx=min(1.0, 2000 / sheet.shape[1]), fy=min(1.0, 2000 / sheet.shape[1]),
                       interpolation=cv2.INTER_AREA)
    assert set(detect_markers(small, layout.dictionary)) == {0, 1, 2, 3}


def test_plan_tiles_counts():
    ppm = 300 / 25.4
    plan = plan_tiles(round(900 * ppm), round(950 * ppm), "A4", 300, 8, 15)
    aw, ah = 210 - 16, 297 - 16  # printable area of one page, mm; orientation chosen to need fewest pages
    counts = [int(np.ceil((900 - 15) / (a - 15))) * int(np.ceil((950 - 15) / (b - 15))) for a, b in ((aw, ah), (ah, aw))]
    assert len(plan) == min(counts)


def test_bad_texture_is_clear(tmp_path):
    with pytest.raises(PhysadvError, match="texture"):
        export_print(np.zeros((5, 5)), tmp_path)
    with pytest.raises(PhysadvError, match="NaN"):
        export_print(np.full((5, 5, 3), np.nan), tmp_path)
