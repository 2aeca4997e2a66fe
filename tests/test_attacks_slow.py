"""The issue's bars on the full MNIST-5k test split (slow: run with pytest -m '')."""
import pytest

from physadv.attacks import DeepFool, MinimalFGSM, SpatialAttack

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_deepfool_bars_on_lenet(lenet_mnist, mnist_test, norm):
    """The paper's Table 1 setting (no [0, 1] box; configs/attacks/deepfool.yaml)."""
    m = DeepFool(lenet_mnist, norm=norm, box=False).run(mnist_test.images).metrics()
    assert m["success_rate"] >= 0.99 and m["mean_iterations"] < 4
    if norm == "l2":
        assert 0.1 <= m["rho_adv_l2"] <= 0.3          # the paper: 0.20
    else:
        assert 0.05 <= m["rho_adv_linf"] <= 0.2       # the paper: 0.10


def test_fgsm_baseline_needs_larger_perturbations(lenet_mnist, mnist_test):
    from physadv.attacks.base import predict
    from physadv.attacks.gradient import fgsm_baseline

    x = mnist_test.images
    y = predict(lenet_mnist, x)
    # the paper's definition and setting (no [0, 1] box for either method): the bar, 3x (paper: 1.0 vs 0.20)
    paper = fgsm_baseline(lenet_mnist, x, y, box=False)
    assert paper["rho_adv_l2"] >= 3 * DeepFool(lenet_mnist, box=False).run(x, y).metrics()["rho_adv_l2"]
    # the per-image minimal eps (an extra, not the paper's definition) is still well above DeepFool
    df = DeepFool(lenet_mnist).run(x, y).metrics()
    fg = MinimalFGSM(lenet_mnist).run(x, y).metrics()
    assert fg["rho_adv_l2"] > 1.5 * df["rho_adv_l2"]


def test_spatial_grid_breaks_lenet(lenet_mnist, mnist_test):
    data = mnist_test.subset(200)
    m = SpatialAttack(lenet_mnist, mode="grid").run(data.images, data.labels).metrics()
    assert m["accuracy_adversarial"] < 0.10
