"""`physadv print export|chart|calibrate` end to end on small inputs; bad input exits with a clear error."""
import argparse
import json

import numpy as np
import pypdfium2 as pdfium
import pytest
import torch
from PIL import Image

from physadv.core.errors import PhysadvError
from physadv.printing import cli
from physadv.printing.colour import load_colour_transform
from physadv.printing.layout import PrintLayout
from physadv.printing.printability import load_palette


def run(argv):
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="job", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_export_cli(tmp_path):
    tex = np.zeros((32, 48, 4), np.uint8)
    tex[..., 0], tex[..., 3] = 200, 255
    Image.fromarray(tex, "RGBA").save(tmp_path / "tex.png")
    out = tmp_path / "out"
    assert run(["print", "export", "--texture", str(tmp_path / "tex.png"), "--width", "6cm", "--dpi", "150",
                "--set", "formats=[png,pdf]", "--out", str(out)]) == 0
    layout = PrintLayout.from_json(out / "layout.json")
    assert layout.object_rect.width == pytest.approx(60, abs=0.2) and layout.object_rect.height == pytest.approx(40, abs=0.2)
    assert layout.dpi == 150 and len(layout.markers) == 4 and layout.run_id == "physadv out"
    w_pt, _ = pdfium.PdfDocument(str(out / "print.pdf"))[0].get_size()
    assert w_pt / 72 * 25.4 == pytest.approx(layout.page_width_mm, rel=1e-4)
    assert json.loads((out / "metrics.json").read_text())["markers"] == 4
    with pytest.raises(PhysadvError, match="not found"):
        run(["print", "export", "--texture", str(tmp_path / "missing.png"), "--out", str(tmp_path / "x")])
    with pytest.raises(PhysadvError, match="width"):
        run(["print", "export", "--texture", str(tmp_path / "tex.png"), "--width", "wide", "--out", str(tmp_path / "y")])


def test_export_cli_tensor_and_mask(tmp_path):
    from physadv.core.io import save_checkpoint

    save_checkpoint(tmp_path / "adv.safetensors", {"texture": torch.rand(3, 40, 40)}, {"attack": "test"})
    mask = np.zeros((40, 40), np.uint8)
    mask[5:20, 5:30] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "out"
    assert run(["print", "export", "--texture", str(tmp_path / "adv.safetensors"), "--mask", str(tmp_path / "mask.png"),
                "--width", "4cm", "--no-fiducials", "--set", "formats=[png]", "--out", str(out)]) == 0
    layout = PrintLayout.from_json(out / "layout.json")
    assert layout.kind == "stickers" and layout.markers == []
    img = np.asarray(Image.open(out / "print.png").convert("RGB"))
    ppm = 300 / 25.4
    r = layout.object_rect
    assert (img[round((r.y + 35) * ppm), round((r.x + 35) * ppm)] == 255).all()  # outside the sticker: paper


def test_chart_then_calibrate_cli(tmp_path):
    from test_printing_chart import distort, photograph

    assert run(["print", "chart", "--set", "dpi=100", "--set", "formats=[png]", "--out", str(tmp_path / "chart")]) == 0
    page = np.asarray(Image.open(tmp_path / "chart" / "chart.png").convert("RGB")) / 255.0
    Image.fromarray((photograph(distort(page)) * 255 + 0.5).astype(np.uint8)).save(tmp_path / "photo.jpg", quality=92)
    out = tmp_path / "calib"
    assert run(["print", "calibrate", "--photo", str(tmp_path / "photo.jpg"), "--layout",
                str(tmp_path / "chart" / "layout.json"), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["poly2"]["inverse"]["mean_delta_e2000"] < 3.0
    model, meta = load_colour_transform(out / "colour_poly2.safetensors")
    assert model.kind == "poly2" and meta["direction"] == "intended -> captured"
    assert load_palette(out / "palette.json").shape == (30, 3)
    # the fitted print model predicts what the "printer + camera" does to colours it has not seen
    from physadv.printing.colour import delta_e2000, rgb_to_lab
    from physadv.printing.printability import PrintModelConfig, build_print_model

    pm = build_print_model(PrintModelConfig(transform=str(out / "colour_poly2.safetensors"), palette=str(out / "gamut.json"),
                                            gamut="hull"))
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    pred = pm(x)[0].permute(1, 2, 0).double()
    truth = torch.from_numpy(distort(x[0].permute(1, 2, 0).double().numpy()))
    assert delta_e2000(rgb_to_lab(pred), rgb_to_lab(truth)).mean() < 3.0
    with pytest.raises(PhysadvError, match="config.yaml: invalid JSON"):
        run(["print", "calibrate", "--photo", str(tmp_path / "photo.jpg"), "--layout",
             str(tmp_path / "calib" / "config.yaml"), "--out", str(tmp_path / "bad")])
    Image.fromarray(np.full((300, 400, 3), 128, np.uint8)).save(tmp_path / "grey.png")
    with pytest.raises(PhysadvError, match="grey.png: found 0 of the layout's 4 fiducials"):
        run(["print", "calibrate", "--photo", str(tmp_path / "grey.png"), "--layout",
             str(tmp_path / "chart" / "layout.json"), "--out", str(tmp_path / "bad")])
