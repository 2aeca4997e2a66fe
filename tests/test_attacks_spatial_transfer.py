"""Rotation/translation attack and transferability: geometry against exact references, the search rule,
and the transfer table against direct evaluation."""
import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from physadv.attacks import Ensemble, OptimizationAttack, SpatialAttack, black_canvas, rotate_translate, transfer_matrix
from physadv.attacks.base import predict
from physadv.attacks.spatial import transform_grid
from physadv.core.errors import PhysadvError


def scipy_rotate_translate(img: np.ndarray, angle: float, tx: float, ty: float) -> np.ndarray:
    """The reference warp, written from the convention alone (positive angles clockwise as displayed, y down; then
    a shift by (tx, ty) pixels): output pixel p shows input R(a)^T (p - c - t) + c, bilinear, zeros outside."""
    a = math.radians(angle)
    M = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])  # acting on (row, col) = (y, x)
    centre = (np.array(img.shape) - 1) / 2
    return ndimage.affine_transform(img.astype(np.float64), M, offset=centre - M @ (centre + np.array([ty, tx])),
                                    order=1, mode="grid-constant", cval=0.0)


@pytest.mark.parametrize("h,w", [(12, 12), (12, 10)])  # a non-square image turns without shearing
def test_rotate_translate_matches_scipy(h, w):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, h, w, generator=g)
    params = torch.tensor([[90.0, 0, 0], [17.0, 1.5, -2.25], [-30.0, -3.0, 0.5]])
    out = rotate_translate(x, params)
    ref = np.stack([scipy_rotate_translate(x[i, 0].numpy(), *params[i].tolist()) for i in range(3)])
    assert np.abs(out[:, 0].numpy() - ref).max() < 1e-5
    dot = torch.zeros(1, 1, 5, 5)
    dot[0, 0, 2, 4] = 1.0                                          # right of the centre
    turned = rotate_translate(dot, torch.tensor([[90.0, 0, 0]]))
    assert turned[0, 0, 4, 2] > 0.99                               # +90 degrees: below the centre (clockwise)
    shifted = rotate_translate(x, torch.tensor([[0.0, 2, -3]] * 3))
    assert torch.allclose(shifted[..., :-3, 2:], x[..., 3:, :-2], atol=1e-6)  # integer shifts move pixels exactly
    assert shifted[..., :, :2].abs().max() == 0 and shifted[..., -3:, :].abs().max() == 0  # black where nothing came in


def test_grid_is_the_papers_and_canvas_keeps_content():
    g = transform_grid(30, 3, 31, 5)
    assert g.shape == (775, 3) and g[:, 0].min() == -30 and g[:, 1].max() == 3
    x = torch.zeros(1, 1, 28, 28)
    x[..., 4:24, 4:24] = 1.0
    canvas = black_canvas(x, 8)
    assert canvas.shape[-1] == 44 and canvas.sum() == x.sum()
    out = rotate_translate(canvas, torch.tensor([[30.0, 3, 3]]))
    assert abs(float(out.sum()) - float(x.sum())) / float(x.sum()) < 0.02     # nothing cut on the canvas
    cut = rotate_translate(x, torch.tensor([[30.0, 3, 3]]))
    assert float(cut.sum()) < 0.98 * float(x.sum())                           # the standard setting cuts


def test_lenet_mnist_follows_the_input_size(tmp_path):
    from physadv.core.models import build_classifier
    from physadv.core.train import load_classifier, save_classifier

    default = build_classifier("lenet-mnist")
    assert default.input_size == (1, 28, 28) and default.net.classifier[1].in_features == 50 * 4 * 4
    canvas = build_classifier("lenet-mnist", input_size=(1, 44, 44))
    assert canvas.net.classifier[1].in_features == 50 * 8 * 8        # ((44 - 4) / 2 - 4) / 2 = 8
    assert canvas(torch.rand(2, 1, 44, 44)).shape == (2, 10)
    back = load_classifier(save_classifier(tmp_path / "c.safetensors", canvas))
    x = torch.rand(3, 1, 44, 44)
    assert torch.allclose(back(x), canvas(x))


class Distance(nn.Module):
    """Two-class toy model whose logits depend on the L1 distance d to a reference image."""

    num_classes = 2

    def __init__(self, ref, fooled_when_moved: bool):
        super().__init__()
        self.ref, self.fooled = ref, fooled_when_moved

    def forward(self, x):
        d = (x - self.ref).flatten(1).abs().sum(1)
        if self.fooled:  # right only for the untouched image
            return torch.stack([-d, d - 1e-3], 1)
        return torch.stack([torch.ones_like(d), d / 100], 1)  # d < 100: never fooled; the loss grows with d


def test_spatial_picks_misclassifying_else_max_loss():
    g = torch.Generator().manual_seed(1)
    x = 0.2 + 0.6 * torch.rand(1, 1, 10, 10, generator=g)
    y = torch.tensor([0])
    res = SpatialAttack(Distance(x, True), mode="grid", rot_steps=3, trans_steps=3).run(x, y)
    assert res.success.all() and (res.adversarial - x).abs().sum() > 0
    res = SpatialAttack(Distance(x, False), mode="grid", rot_steps=5, trans_steps=3).run(x, y)
    grid = transform_grid(30, 3, 5, 3)
    d = (rotate_translate(x.expand(len(grid), -1, -1, -1), grid) - x).flatten(1).abs().sum(1)
    assert not res.success.any()
    assert float((res.adversarial - x).abs().sum()) == pytest.approx(float(d.max()), rel=1e-5)


def test_spatial_grid_choice_is_the_brute_force_worst_case(lenet_mnist, mnist_test):
    """Against a brute force with the reference warp: every grid transformation of every image classified one by
    one; the attack must succeed exactly where some transformation misclassifies, and elsewhere choose the one of
    highest cross-entropy (the authors' rule); its images are the reference warps of the chosen parameters."""
    data = mnist_test.subset(24)
    x, y = data.images, data.labels
    res = SpatialAttack(lenet_mnist, mode="grid", rot_steps=7, trans_steps=3).run(x, y)
    grid = transform_grid(30, 3, 7, 3).tolist()
    chosen = torch.stack([res.extras[k] for k in ("angle", "tx", "ty")], 1)
    for i in range(len(x)):
        warped = torch.tensor(np.stack([scipy_rotate_translate(x[i, 0].numpy(), *t) for t in grid]), dtype=torch.float32)
        with torch.no_grad():
            logits = lenet_mnist(warped[:, None])
        loss = torch.nn.functional.cross_entropy(logits, y[i].expand(len(grid)), reduction="none")
        wrong = logits.argmax(1) != y[i]
        assert bool(res.success[i]) == bool(wrong.any())
        best = loss[wrong].max() if wrong.any() else loss.max()
        j = int(torch.cdist(chosen[i:i + 1].double(), torch.tensor(grid, dtype=torch.float64)).argmin())  # its grid index
        assert float(loss[j]) == pytest.approx(float(best), rel=1e-4, abs=1e-5)
        assert np.abs(res.adversarial[i, 0].numpy() - warped[j].numpy()).max() < 1e-5
    # LeNet is not robust to these small transformations (Engstrom et al.: accuracy falls to a few percent under
    # the full grid): this small 7 x 3 x 3 grid already fools it on some images
    assert res.success.any()


def test_combined_adversary_runs_pgd_through_each_transformation(lenet_mnist, mnist_test):
    """The authors' combined adversary: with the identity as the only candidate it is plain PGD; with real
    candidates the classifier sees T(x + delta), |delta| <= eps, and does no better than under either part."""
    from physadv.attacks import PGD

    data = mnist_test.subset(20)
    x, y = data.images, data.labels
    pgd = dict(pgd_eps=0.1, pgd_steps=5, pgd_alpha=0.03)
    ident = SpatialAttack(lenet_mnist, mode="random", k=1, max_rot=0.0, max_trans=0.0, **pgd).run(x, y)
    plain = PGD(lenet_mnist, 0.1, 0.03, 5, "linf").run(x, y)
    differ = (ident.adversarial - plain.adversarial).abs() > 1e-5  # the identity warp is exact to ~1e-7, which can
    assert differ.float().mean() < 1e-3  # flip the sign of a near-zero gradient: a handful of pixels out of 15,680
    both = SpatialAttack(lenet_mnist, mode="random", k=3, seed=2, **pgd).run(x, y)
    spatial = SpatialAttack(lenet_mnist, mode="random", k=3, seed=2).run(x, y)
    params = torch.stack([both.extras[k] for k in ("angle", "tx", "ty")], 1)
    # the perturbation bound seen through the chosen transformation, on the pixels that stay in the frame
    inside = rotate_translate(torch.ones_like(x), params) > 0.999
    diff = (both.adversarial - rotate_translate(x, params))[inside]
    assert diff.abs().max() <= 0.1 + 1e-4
    acc = lambda r: r.metrics()["accuracy_adversarial"]  # noqa: E731
    assert acc(both) <= min(acc(spatial), acc(plain)) + 1e-9


class Fixed(nn.Module):
    """A 'model' whose logits are given: the ensemble is then checked against numbers written out by hand."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, x):
        return self.logits


def test_ensemble_fusion_is_liu_et_als_average_of_probabilities():
    """Liu et al. 2017 section 3.2: the ensemble's output is sum_i a_i J_i(x), J_i the softmax of model i."""
    a = Fixed(torch.tensor([[2.0, 0.0, 0.0]]))   # softmax (0.787, 0.107, 0.107)
    b = Fixed(torch.tensor([[0.0, 0.0, 30.0]]))  # softmax (0, 0, 1) to 13 decimals
    x = torch.zeros(1, 1, 2, 2)
    pa = [math.exp(2) / (math.exp(2) + 2), 1 / (math.exp(2) + 2), 1 / (math.exp(2) + 2)]
    avg = [0.25 * p + 0.75 * q for p, q in zip(pa, [0.0, 0.0, 1.0])]   # weights 1:3, normalised
    ens = Ensemble([a, b], [1, 3])
    assert torch.allclose(ens(x).exp(), torch.tensor([avg]), atol=1e-6)
    # the targeted loss of the paper's fusion on class 0 is -log(0.25 * 0.787): member b's certainty does not enter
    assert float(-ens(x)[0, 0]) == pytest.approx(-math.log(0.25 * pa[0]), rel=1e-6)
    # the geometric mean: softmax(0.25 log pa + 0.75 log pb); class 0 gets p ~ e^(-0.75 * 30): b is pushed too
    geo = Ensemble([a, b], [1, 3], fusion="geometric_mean")
    logits = 0.25 * torch.tensor(pa).log() + 0.75 * torch.log_softmax(torch.tensor([0.0, 0.0, 30.0]), 0)
    assert torch.allclose(geo(x), torch.log_softmax(logits, 0)[None], atol=1e-5)
    assert float(-geo(x)[0, 0]) > 20 > float(-ens(x)[0, 0])
    with pytest.raises(PhysadvError, match="fusion 'sum'"):
        Ensemble([a, b], fusion="sum")


def test_optimization_attack_and_ensemble(lenet_mnist, fc_mnist, mnist_test):
    data = mnist_test.subset(10)
    res = OptimizationAttack(lenet_mnist, lr=0.03, steps=20).run(data.images, data.labels)
    assert res.metrics()["accuracy_adversarial"] < 0.2
    t = (data.labels + 1) % 10
    tr = OptimizationAttack(lenet_mnist, lr=0.03, steps=20).run(data.images, data.labels, target=t)
    assert tr.metrics()["target_match_rate"] > 0.7


def test_transfer_matrix_matches_direct_evaluation(lenet_mnist, fc_mnist, mnist_test):
    data = mnist_test.subset(12)
    models = {"lenet": lenet_mnist, "fc": fc_mnist}
    table = transfer_matrix(models, data.images, data.labels, attack="fgsm", params={"eps": 0.2})
    from physadv.attacks import FGSM

    adv = FGSM(fc_mnist, eps=0.2).run(data.images, data.labels).adversarial
    assert table.accuracy[1, 0] == pytest.approx(float((predict(lenet_mnist, adv) == data.labels).float().mean()))
    rmsd = float((adv - data.images).pow(2).flatten(1).mean(1).sqrt().mean())
    assert table.rmsd[1] == pytest.approx(rmsd, rel=1e-4)
    ens = transfer_matrix(models, data.images, data.labels, attack="fgsm", params={"eps": 0.2}, ensemble=True)
    assert ens.rows == ["ensemble-minus-lenet", "ensemble-minus-fc"]
    # all-but-one of two models is the other model alone (weight 1): same as the single-source row
    assert torch.allclose(ens.accuracy[0], table.accuracy[1])


def test_loss_landscape_is_figure_3s_surface(lenet_mnist, mnist_test, tmp_path):
    """Engstrom et al.'s Figure 3: the cross-entropy of one image at each (rotation, left-right shift), checked at
    grid points against the reference warp; local maxima counted against closed forms."""
    from physadv.attacks.spatial import local_maxima, loss_landscape

    img, label = mnist_test.images[0], int(mnist_test.labels[0])
    angles, shifts, loss = loss_landscape(lenet_mnist, img, label, steps=7)
    assert angles.tolist() == [-30, -20, -10, 0, 10, 20, 30] and shifts.tolist() == [-3, -2, -1, 0, 1, 2, 3]
    for i, j in [(3, 3), (0, 6), (5, 1)]:
        warped = torch.tensor(scipy_rotate_translate(img[0].numpy(), float(angles[i]), float(shifts[j]), 0.0), dtype=torch.float32)
        with torch.no_grad():
            ce = torch.nn.functional.cross_entropy(lenet_mnist(warped[None, None]), torch.tensor([label]))
        assert float(loss[i, j]) == pytest.approx(float(ce), rel=1e-4, abs=1e-6)
    u = torch.linspace(-1, 1, 21)
    bowl = -(u[:, None] ** 2 + u[None, :] ** 2)                     # concave: one maximum
    twin = torch.exp(-((u[:, None] - 0.5) ** 2 + u[None, :] ** 2) * 20) + torch.exp(-((u[:, None] + 0.5) ** 2 + u[None, :] ** 2) * 20)
    assert local_maxima(bowl) == 1 and local_maxima(twin) == 2


def test_spatial_job_writes_the_landscape(tmp_path, lenet_mnist):
    import argparse
    import json

    from physadv.attacks.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["attack", "spatial", "--limit", "3", "--out", str(tmp_path), "--set", "landscape=1",
                              "--set", "params.rot_steps=3", "--set", "params.trans_steps=3", "--set", "show=0"])
    assert args.func(args) == 0
    m = json.loads((tmp_path / "metrics.json").read_text())["landscape"]
    assert m["image"] == 1 and m["grid"] == [61, 61] and m["local_maxima"] >= 1 and (tmp_path / "landscape.png").is_file()
    bad = parser.parse_args(["attack", "spatial", "--limit", "3", "--out", str(tmp_path / "b"), "--set", "landscape=3"])
    with pytest.raises(PhysadvError, match="landscape 3"):
        bad.func(bad)
