"""NPS and TV against direct loops over the paper's definitions; PrintModel parts against OpenCV / scipy."""
import cv2
import numpy as np
import pytest
import torch
from scipy.spatial import ConvexHull

from physadv.core.errors import PhysadvError
from physadv.printing.colour import ColourTransform
from physadv.printing.printability import (PrintModel, clip_to_hull, load_palette, non_printability_score, palette_from_colours,
                                   save_palette, total_variation)


def _nps_loop(img, palette):  # Sharif et al. 2016: sum_p prod_c |p - c|
    total = 0.0
    for i in range(img.shape[1]):
        for j in range(img.shape[2]):
            prod = 1.0
            for c in palette:
                prod *= float(np.sqrt(sum((img[k, i, j] - c[k]) ** 2 for k in range(3))))
            total += prod
    return total


def test_nps_matches_a_direct_loop_and_reductions():
    rng = np.random.default_rng(0)
    img, palette = rng.random((2, 3, 5, 4)), rng.random((7, 3))
    got = non_printability_score(torch.from_numpy(img), torch.from_numpy(palette), chunk=6)
    np.testing.assert_allclose(got.numpy(), [_nps_loop(im, palette) for im in img], rtol=1e-10)
    mean = non_printability_score(torch.from_numpy(img), torch.from_numpy(palette), reduction="mean")
    np.testing.assert_allclose(mean.numpy(), got.numpy() / 20, rtol=1e-10)
    mask = torch.zeros(5, 4, dtype=torch.float64)
    mask[1:3, 1:3] = 1
    masked = non_printability_score(torch.from_numpy(img), torch.from_numpy(palette), mask=mask)
    np.testing.assert_allclose(masked[0].item(), _nps_loop(img[0][:, 1:3, 1:3], palette), rtol=1e-10)
    # a pixel exactly on a palette colour scores 0
    on = torch.from_numpy(palette[2]).reshape(1, 3, 1, 1)
    assert non_printability_score(on, torch.from_numpy(palette)).item() == 0.0


def test_nps_gradient_is_exact():
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.random((1, 3, 3, 3))).requires_grad_(True)
    pal = torch.from_numpy(rng.random((5, 3)))
    assert torch.autograd.gradcheck(lambda t: non_printability_score(t, pal, chunk=4), (x,))
    # and it matches plain autograd through the product
    ref = (torch.sqrt(((x.permute(0, 2, 3, 1)[..., None, :] - pal) ** 2).sum(-1)).prod(-1)).sum()
    g_ref, = torch.autograd.grad(ref, x)
    g, = torch.autograd.grad(non_printability_score(x, pal).sum(), x)
    torch.testing.assert_close(g, g_ref)


def test_tv_matches_a_direct_loop():
    rng = np.random.default_rng(2)
    img = rng.random((3, 6, 5))
    ref = sum(np.sqrt(((img[:, i, j] - img[:, i + 1, j]) ** 2 + (img[:, i, j] - img[:, i, j + 1]) ** 2).sum())
              for i in range(5) for j in range(4))
    assert total_variation(torch.from_numpy(img), eps=0.0).item() == pytest.approx(ref, rel=1e-10)


def test_print_model_identity_and_blur_matches_opencv():
    x = torch.rand(2, 3, 20, 24)
    torch.testing.assert_close(PrintModel()(x), x)
    blurred = PrintModel(blur_sigma_px=1.0)(x)
    ref = cv2.GaussianBlur(x[0].permute(1, 2, 0).numpy(), (7, 7), 1.0, borderType=cv2.BORDER_REFLECT_101)
    np.testing.assert_allclose(blurred[0].permute(1, 2, 0).numpy()[4:-4, 4:-4], ref[4:-4, 4:-4], atol=1e-4)
    y = PrintModel(ColourTransform("affine", torch.tensor([[0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5], [0.7, 0.7, 0.7]])),
                   gamut="clip")(x.requires_grad_(True))
    assert y.max() <= 1.0 and y.min() >= 0.7
    y.sum().backward()
    assert x.grad.abs().sum() > 0


def test_hull_clipping_lands_on_the_hull():
    rng = np.random.default_rng(3)
    palette = torch.from_numpy(0.2 + 0.6 * rng.random((30, 3))).float()
    model = PrintModel(gamut="hull", palette=palette)
    pts = torch.rand(500, 3)
    out = clip_to_hull(pts, model.hull_equations, model.hull_centre)
    hull = ConvexHull(palette.numpy())
    inside_before = (pts.numpy() @ hull.equations[:, :3].T + hull.equations[:, 3] <= 1e-6).all(1)
    slack = out.numpy() @ hull.equations[:, :3].T + hull.equations[:, 3]
    assert (slack <= 1e-5).all()  # everything ends up inside (or on) the hull
    np.testing.assert_allclose(out.numpy()[inside_before], pts.numpy()[inside_before], atol=1e-6)
    assert np.abs(slack[~inside_before].max(1)).max() < 1e-5  # points from outside sit on the surface
    img = torch.rand(1, 3, 4, 4, requires_grad=True)
    model(img).sum().backward()
    assert torch.isfinite(img.grad).all()
    with pytest.raises(PhysadvError, match="palette"):
        PrintModel(gamut="hull")


def test_palette_files(tmp_path):
    pal = palette_from_colours(torch.rand(100, 3), k=12)
    assert pal.shape == (12, 3)
    save_palette(tmp_path / "p.json", pal)
    torch.testing.assert_close(load_palette(tmp_path / "p.json"), pal, atol=1e-5, rtol=0)
    (tmp_path / "bad.yaml").write_text("colours: [[1, 2]]\n")
    with pytest.raises(PhysadvError, match="colours"):
        load_palette(tmp_path / "bad.yaml")
    assert load_palette("configs/printing/palette.yaml").shape[1] == 3


def test_rp2s_default_palette_is_the_shipped_one_whatever_the_working_directory_holds(tmp_path, monkeypatch):
    """A working directory's ``configs/printing/palette.yaml`` (here one colour) must not stand in for the shipped
    30-colour palette that RP2 uses by default."""
    from physadv.physical.rp2 import RP2Config

    decoy = tmp_path / "configs" / "printing"
    decoy.mkdir(parents=True)
    (decoy / "palette.yaml").write_text("colours: [[0.5, 0.5, 0.5]]\n")
    monkeypatch.chdir(tmp_path)
    assert load_palette(RP2Config().palette).shape == (30, 3)
