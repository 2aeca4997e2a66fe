"""Colour science against scikit-image; least-squares transforms recover known ones; save/load round trip."""
import numpy as np
import pytest
import torch
from skimage.color import deltaE_ciede2000, rgb2lab

from physadv.core.errors import PhysadvError
from physadv.printing.colour import (ColourTransform, delta_e76, delta_e2000, fit_colour_transform, load_colour_transform,
                             rgb_to_lab, save_colour_transform, transform_error)


def _colours(n=500, seed=0):
    return np.random.default_rng(seed).random((n, 3))


def test_rgb_to_lab_matches_skimage():
    rgb = np.concatenate([_colours(), np.eye(3), np.zeros((1, 3)), np.ones((1, 3)), np.full((1, 3), 0.01)])
    ours = rgb_to_lab(torch.from_numpy(rgb)).numpy()
    np.testing.assert_allclose(ours, rgb2lab(rgb[None])[0], atol=2e-2)
    img = torch.from_numpy(rgb[:100].T.reshape(1, 3, 10, 10))  # N x 3 x H x W with channel_dim=1
    np.testing.assert_allclose(rgb_to_lab(img, channel_dim=1)[0].permute(1, 2, 0).reshape(-1, 3).numpy(), ours[:100],
                               atol=1e-9)


def test_delta_e2000_matches_skimage_and_sharma_pairs():
    lab1 = rgb2lab(_colours(400, 1)[None])[0]
    lab2 = rgb2lab(_colours(400, 2)[None])[0]
    lab2[:50] = lab1[:50] + np.random.default_rng(3).normal(0, 1.5, (50, 3))  # small differences too
    ours = delta_e2000(torch.from_numpy(lab1), torch.from_numpy(lab2)).numpy()
    np.testing.assert_allclose(ours, deltaE_ciede2000(lab1, lab2), atol=1e-4)
    # two pairs from Sharma, Wu and Dalal (2005), Table 1 (pairs 1 and 17)
    a = torch.tensor([[50.0, 2.6772, -79.7751], [50.0, 2.5, 0.0]], dtype=torch.float64)
    b = torch.tensor([[50.0, 0.0, -82.7485], [73.0, 25.0, -18.0]], dtype=torch.float64)
    np.testing.assert_allclose(delta_e2000(a, b).numpy(), [2.0425, 27.1492], atol=1e-4)
    np.testing.assert_allclose(delta_e76(a, b).numpy(), np.linalg.norm((a - b).numpy(), axis=1), rtol=1e-9)


def test_delta_e_is_differentiable():
    x = torch.rand(64, 3, dtype=torch.float64, requires_grad=True)
    y = torch.rand(64, 3, dtype=torch.float64)
    loss = delta_e2000(rgb_to_lab(x), rgb_to_lab(y)).mean()
    loss.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["affine", "poly2"])
def test_fit_recovers_a_transform_of_its_family(kind, tmp_path):
    src = torch.from_numpy(_colours(200))
    truth = ColourTransform(kind, torch.randn(4 if kind == "affine" else 10, 3) * 0.2 + ColourTransform(kind).weight.data)
    tgt = truth(src.float()).double()
    fitted = fit_colour_transform(src, tgt, kind, ridge=0.0)
    torch.testing.assert_close(fitted.weight.data, truth.weight.data, atol=1e-4, rtol=0)
    save_colour_transform(tmp_path / "t.safetensors", fitted, {"note": "x"})
    loaded, meta = load_colour_transform(tmp_path / "t.safetensors")
    assert meta["kind"] == kind and meta["note"] == "x"
    torch.testing.assert_close(loaded.weight, fitted.weight)
    img = torch.rand(2, 3, 5, 7)
    torch.testing.assert_close(loaded(img), truth(img), atol=1e-3, rtol=0)


def test_identity_and_errors(tmp_path):
    x = torch.rand(2, 3, 4, 4)
    torch.testing.assert_close(ColourTransform("poly2")(x), x)
    assert transform_error(ColourTransform(), x.reshape(-1, 3), x.reshape(-1, 3))["mean_delta_e2000"] < 1e-3
    with pytest.raises(PhysadvError, match="cubic"):
        ColourTransform("cubic")
    with pytest.raises(PhysadvError, match="at least 10"):
        fit_colour_transform(torch.rand(5, 3), torch.rand(5, 3), "poly2")
    (tmp_path / "bad.safetensors").write_bytes(b"junk")
    with pytest.raises(PhysadvError):
        load_colour_transform(tmp_path / "bad.safetensors")
