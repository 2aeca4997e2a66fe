"""The sign-world model zoo (issue 13): architectures, the registry, PGD (core.robust), adversarial and EOT training
options, the ``physadv signs zoo`` table. The full-size bars are a slow test."""
import json
import math
import re

import pytest
import torch
import torch.nn.functional as F

import physadv.rendering.signs  # noqa: F401  (registers the signs data set and the eot augmentation)
from physadv.core.data import ImageSet
from physadv.core.errors import PhysadvError
from physadv.core.models import build_classifier
from physadv.core.robust import PGDConfig, pgd_linf, robust_accuracy
from physadv.core.train import TrainConfig, default_train_config, train_classifier
from physadv.core.zoo import get_zoo_classifier, zoo_config, zoo_member, zoo_names

NEW_ARCHS = [("lisa-cnn", 32, {}), ("resnet-cifar", 32, {"depth": 8}), ("mobilenet-v2", 32, {"width": 0.35, "stages": 4, "last": 64}),
             ("vgg-bn", 32, {"width": 8}), ("convnext", 64, {"depths": [1, 1, 1, 1], "dims": [8, 16, 32, 64]}),
             ("gtsrb-cnn", 64, {"width": 0.25})]


# --------------------------------------------------------------------------- architectures
@pytest.mark.parametrize("name,size,args", NEW_ARCHS)
def test_architecture_builds_and_backpropagates_at_its_input_size(name, size, args):
    torch.manual_seed(0)
    model = build_classifier(name, [f"c{i}" for i in range(15)], input_size=(3, size, size), **args)
    x = torch.rand(2, 3, size, size, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 15) and torch.isfinite(out).all()
    out[:, 3].sum().backward()
    assert x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.net.parameters() if p.requires_grad)
    with pytest.raises(PhysadvError, match=f"{size} x {size}"):  # any other size is a clear error
        model(torch.rand(1, 3, size // 2, size // 2))


def test_lisa_cnn_has_the_layers_of_the_paper():
    """Eykholt et al. 2018 / cleverhans: conv 8x8x64 stride 2 (same), conv 6x6x128 stride 2, conv 5x5x128, FC."""
    net = build_classifier("lisa-cnn", [str(i) for i in range(18)]).net
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [(64, (8, 8), (2, 2)), (128, (6, 6), (2, 2)),
                                                                          (128, (5, 5), (1, 1))]
    assert net.fc.in_features == 128 * 2 * 2  # 32 -> 16 (same) -> 6 -> 2 (valid)


def test_resnet20_and_mobilenet_v2_have_the_papers_parameter_counts():
    import torchvision

    # He et al. 2016, table 6: ResNet-20 on CIFAR-10 has 0.27M parameters
    resnet20 = build_classifier("resnet-cifar", [str(i) for i in range(10)], depth=20).net
    assert sum(p.numel() for p in resnet20.parameters()) == pytest.approx(0.27e6, rel=0.01)
    # MobileNetV2 1.0 with the full table: torchvision's 224 px net (same blocks; strides do not change the count)
    ours = build_classifier("mobilenet-v2", [str(i) for i in range(1000)]).net
    theirs = torchvision.models.mobilenet_v2(weights=None)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())


def test_bad_architecture_arguments_are_clear_errors():
    with pytest.raises(PhysadvError, match="6n \\+ 2"):
        build_classifier("resnet-cifar", ["a", "b"], depth=10)
    with pytest.raises(PhysadvError, match="at least 26"):
        build_classifier("lisa-cnn", ["a", "b"], input_size=(3, 16, 16))


# --------------------------------------------------------------------------- the registry
def test_zoo_registry_has_six_families_one_at_64px_and_hardened_members():
    plain, hardened = zoo_names(hardened=False), zoo_names(hardened=True)
    assert sorted(plain + hardened) == sorted(zoo_names()) and not set(plain) & set(hardened)
    members = [zoo_member(n) for n in plain]
    assert len({m.train.model for m in members}) >= 6
    assert {"gtsrb-cnn", "lisa-cnn"} <= {m.train.model for m in members}
    assert any(m.train.data.size == 64 for m in members)
    assert len({m.train.seed for m in members}) == len(members)  # different seeds
    hard = [zoo_member(n).train for n in hardened]
    assert any(t.adversarial is not None and t.adversarial.eps_255 == 8 for t in hard)
    assert any(t.augment == "eot" for t in hard)
    for n in zoo_names():  # every recipe builds its model at its input size
        t = zoo_member(n).train
        size = t.data.size or 32
        model = build_classifier(t.model, [str(i) for i in range(15)], input_size=(3, size, size), **t.model_args)
        assert model(torch.rand(1, 3, size, size)).shape == (1, 15)


def test_zoo_bad_names_and_files_are_clear_errors(tmp_path):
    with pytest.raises(PhysadvError, match="unknown zoo member 'resnet-9000'"):
        get_zoo_classifier("resnet-9000")
    bad = tmp_path / "zoo.yaml"
    bad.write_text("members:\n  a: {family: x, train: {model: lisa-cnn, epoch: 3}}\n")
    with pytest.raises(PhysadvError, match="epoch.*did you mean 'epochs'"):
        zoo_config(str(bad))


def test_new_training_options_leave_old_cache_keys_alone():
    # the key LeNet-MNIST had before adversarial/augment existed (cached classifiers stay valid)
    assert default_train_config("lenet-mnist").cache_key() == "lenet-mnist-c50f5823d0e1"
    plain = zoo_member(zoo_names(hardened=False)[0]).train
    from dataclasses import replace

    assert replace(plain, adversarial=PGDConfig(steps=7)).cache_key() != plain.cache_key()
    assert replace(plain, augment="eot").cache_key() != plain.cache_key()


# --------------------------------------------------------------------------- PGD
def _linear_model(w: torch.Tensor, b: torch.Tensor) -> torch.nn.Module:
    lin = torch.nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        lin.weight.copy_(w)
        lin.bias.copy_(b)
    return torch.nn.Sequential(torch.nn.Flatten(), lin)


def test_pgd_on_a_linear_model_reaches_the_closed_form_maximiser():
    """Two-class linear model: CE(x) = softplus(-(w_y - w_o).x - (b_y - b_o)), so the L-inf ball's maximiser is
    x - eps sign(w_y - w_o) and the loss there is softplus(-(m - eps ||w_y - w_o||_1))."""
    g = torch.Generator().manual_seed(0)
    w, b = torch.randn(2, 3 * 4 * 4, generator=g), torch.randn(2, generator=g)
    model = _linear_model(w, b)
    x = 0.3 + 0.4 * torch.rand(5, 3, 4, 4, generator=g)  # away from 0 and 1: the box does not bind
    y = torch.tensor([0, 1, 0, 1, 1])
    eps = 8 / 255
    adv = pgd_linf(model, x, y, eps, step=2 / 255, steps=10, random_start=True, generator=g)
    dw = (w[y] - w[1 - y]).view(5, 3, 4, 4)
    torch.testing.assert_close(adv, x - eps * dw.sign(), atol=1e-6, rtol=0)
    margin = (dw * x).flatten(1).sum(1) + (b[y] - b[1 - y])
    expected = F.softplus(-(margin - eps * dw.abs().flatten(1).sum(1)))
    got = F.cross_entropy(model(adv), y, reduction="none")
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert (got > F.cross_entropy(model(x), y, reduction="none")).all()


def test_pgd_stays_in_the_ball_and_the_image_range():
    torch.manual_seed(0)
    model = build_classifier("lisa-cnn", [str(i) for i in range(15)]).eval()
    x = torch.rand(6, 3, 32, 32)
    x[:, :, :4] = 0.0  # some pixels at the range's edges
    x[:, :, -4:] = 1.0
    y = torch.arange(6)
    adv = pgd_linf(model, x, y, 8 / 255, 2 / 255, 5, generator=torch.Generator().manual_seed(1))
    assert (adv - x).abs().max() <= 8 / 255 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert (adv - x).abs().max() > 7 / 255  # it moved to the ball's edge somewhere
    assert F.cross_entropy(model(adv), y) > F.cross_entropy(model(x), y)
    assert all(p.grad is None for p in model.parameters())  # only the input's gradient was taken


def test_robust_accuracy_at_zero_eps_is_the_clean_accuracy_and_never_above_it():
    torch.manual_seed(0)
    model = build_classifier("vgg-bn", [str(i) for i in range(3)], width=8).eval()
    x, y = torch.rand(40, 3, 32, 32), torch.randint(0, 3, (40,))
    clean = float((model(x).argmax(1) == y).float().mean())
    zero = robust_accuracy(model, x, y, PGDConfig(eps_255=0, steps=3), progress=False)
    assert zero["robust_accuracy"] == pytest.approx(clean) and zero["clean_accuracy"] == pytest.approx(clean)
    attacked = robust_accuracy(model, x, y, PGDConfig(eps_255=16, step_255=4, steps=5), progress=False)
    assert attacked["robust_accuracy"] < clean


# --------------------------------------------------------------------------- training options
def _colour_set(n: int = 64) -> ImageSet:
    """Three classes told apart by colour: trivially learnable."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 3
    x = 0.25 * torch.rand(n, 3, 32, 32, generator=g)
    x[torch.arange(n), y] += 0.6
    return ImageSet(x, y, ["r", "g", "b"], "colours")


def test_adversarial_training_runs_pgd_inside_every_batch():
    data = _colour_set()
    cfg = TrainConfig(model="lisa-cnn", model_args={"width": 0.125}, epochs=1, batch_size=16,
                      adversarial=PGDConfig(eps_255=8, step_255=2, steps=3), device="cpu")
    calls = {"n": 0}
    import physadv.core.train as train

    original = train.pgd_linf

    def counting(model, x, y, eps, step, steps, random_start, gen):
        calls["n"] += 1
        assert (eps, step, steps, model.training) == (8 / 255, 2 / 255, 3, False)  # adversary made in eval mode
        return original(model, x, y, eps, step, steps, random_start, gen)

    train.pgd_linf = counting
    try:
        model, metrics = train_classifier(cfg, data, data, progress=False)
    finally:
        train.pgd_linf = original
    assert calls["n"] == len(data) // 16 and math.isfinite(metrics["train_loss"][0])
    assert model.training is False


def test_eot_augmentation_trains_and_unknown_augmentations_are_clear_errors():
    data = _colour_set()
    cfg = TrainConfig(model="lisa-cnn", model_args={"width": 0.125}, epochs=1, batch_size=16, augment="eot",
                      augment_args={"noise": {"p": 1.0, "std": 0.05}}, device="cpu")
    _, metrics = train_classifier(cfg, data, data, progress=False)
    assert math.isfinite(metrics["train_loss"][0])
    from dataclasses import replace

    with pytest.raises(PhysadvError, match="unknown training augmentation 'blur'"):
        train_classifier(replace(cfg, augment="blur"), data, data, progress=False)
    with pytest.raises(PhysadvError, match="noise"):
        train_classifier(replace(cfg, augment_args={"noise": {"p": 2.0}}), data, data, progress=False)


# --------------------------------------------------------------------------- the zoo job
TINY_WORLD = ("train_per_class: 12\ntest_per_class: 4\nwork_px: 32\nsupersample: 1\ntexture_px: 64\n"
              "pose: {distance_m: [2, 4], angle_deg: [0, 10]}\nbackgrounds: [solid]\n")


def test_zoo_job_trains_grades_and_writes_the_table(tmp_path):
    from physadv.physical.cli import main

    world = tmp_path / "world.yaml"
    world.write_text(TINY_WORLD)
    zoo = tmp_path / "zoo.yaml"
    common = f"data: {{name: signs, root: {world}}}, epochs: 2, batch_size: 16, device: cpu"
    zoo.write_text("members:\n"
                   f"  tiny-lisa: {{family: LISA-CNN, train: {{model: lisa-cnn, model_args: {{width: 0.25}}, {common}, seed: 1}}}}\n"
                   f"  tiny-vgg: {{family: VGG, train: {{model: vgg-bn, model_args: {{width: 8}}, {common}, seed: 2}}}}\n"
                   f"  tiny-pgd: {{family: LISA-CNN, hardened: true, train: {{model: lisa-cnn, model_args: {{width: 0.25}}, "
                   f"{common}, seed: 3, adversarial: {{eps_255: 8, steps: 2}}}}}}\n")
    out = tmp_path / "run"
    sets = ["grid.distances_ft=[10]", "grid.angles_deg=[0, 30]", "grid.per_class=1", "pgd.steps=3", "pgd_limit=30",
            "hardened=false"]
    assert main(["signs", "zoo", "--config", "configs/signs/zoo_report.yaml", "--set", f"zoo={zoo}", "--out", str(out),
                 *[a for s in sets for a in ("--set", s)]]) == 0
    rows = json.loads((out / "zoo.json").read_text())
    assert [r["name"] for r in rows] == ["tiny-lisa", "tiny-vgg"]  # hardened left out
    for r in rows:
        assert r["input_px"] == 32 and r["params"] > 0 and r["held_out_n"] == 60 and r["pgd_n"] == 30
        assert 0 <= r["pgd_robust_accuracy"] <= 1 and 0 <= r["grid_worst"] <= r["grid_mean"] <= 1
        assert r["train_seconds"] > 0 and r["reused_cache"] is False
        assert [(c["distance_ft"], c["angle_deg"]) for c in r["grid"]] == [(10, 0), (10, 30)]
        assert r["grid_worst"] == pytest.approx(min(c["accuracy"] for c in r["grid"]), abs=1e-4)
    md = (out / "zoo.md").read_text()
    assert "| tiny-vgg | VGG | 32 px |" in md and "PGD-3 eps 8/255" in md
    assert (out / "zoo.png").stat().st_size > 0 and (out / "config.yaml").is_file()
    # a second run reuses the cache; --only picks members (hardened ones too when named)
    # copies named in --only are graded after the members (a robust copy: trained now)
    assert main(["signs", "zoo", "--set", f"zoo={zoo}", "--out", str(tmp_path / "again"), "--only",
                 "tiny-vgg,tiny-pgd,tiny-lisa@5+pgd1", *[a for s in sets for a in ("--set", s)]]) == 0
    again = json.loads((tmp_path / "again" / "zoo.json").read_text())
    assert [r["name"] for r in again] == ["tiny-vgg", "tiny-pgd", "tiny-lisa@5+pgd1"]
    assert again[0]["reused_cache"] is True and again[2]["reused_cache"] is False
    for bad in ("nope", "tiny-lisa+pgdx"):  # one line naming the member
        assert main(["signs", "zoo", "--set", f"zoo={zoo}", "--only", bad]) == 2


# --------------------------------------------------------------------------- the bars (full size: slow)
@pytest.mark.slow
@pytest.mark.parametrize("name", zoo_names(hardened=False))
def test_zoo_member_meets_the_bars(name):
    """Issue 13: every plain zoo member >= 97% on the held-out sign test set and >= 95% on the clean grid (mean)."""
    from physadv.rendering.signs.classifier import SignsConfig, evaluate_grid
    from physadv.core.train import evaluate

    model = get_zoo_classifier(name, progress=False)
    test = zoo_member(name).train.data.load("test")
    assert evaluate(model, test, progress=False)["accuracy"] >= 0.97
    grid = evaluate_grid(model, SignsConfig(), progress=False)
    assert float(grid.accuracy.mean()) >= 0.95, grid.rows()


def test_train_zoo_in_parallel_gives_the_weights_of_training_one_at_a_time(tmp_path, monkeypatch):
    """Two members trained at once in forked workers, against the same two trained in this process, one by one."""
    from physadv.core.io import load_checkpoint
    from physadv.core.train import cached_classifier_path
    from physadv.core.zoo import train_zoo

    zoo = tmp_path / "zoo.yaml"
    recipe = "{{model: lenet-mnist, data: {{name: digits, size: 28}}, epochs: 1, batch_size: 32, seed: {}}}"
    zoo.write_text("members:\n" + "".join(f"  m{s}: {{family: LeNet, train: {recipe.format(s)}}}\n" for s in (1, 2)))
    weights = {}
    for workers in (2, 1):
        monkeypatch.setenv("PHYSADV_CACHE", str(tmp_path / f"cache{workers}"))
        assert train_zoo(["m1", "m2"], workers=workers, progress=False, path=str(zoo)) == ["m1", "m2"]
        assert train_zoo(["m1", "m2"], workers=workers, progress=False, path=str(zoo)) == []  # cached now
        weights[workers] = [load_checkpoint(cached_classifier_path(zoo_member(n, str(zoo)).train))[0] for n in ("m1", "m2")]
    for parallel, serial in zip(weights[2], weights[1]):
        assert parallel.keys() == serial.keys()
        assert all(torch.equal(parallel[k], serial[k]) for k in serial)
    assert not all(torch.equal(weights[1][0][k], weights[1][1][k]) for k in weights[1][0])  # the seeds differ


def _tiny_zoo(tmp_path, monkeypatch, recipes: dict[str, str], cache: str = "cache") -> str:
    """A zoo file of LeNet members (name -> training recipe in YAML flow style), made the default zoo, with its own
    cache."""
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text("members:\n" + "".join(f"  {n}: {{family: LeNet, train: {r}}}\n" for n, r in recipes.items()))
    monkeypatch.setenv("PHYSADV_ZOO", str(zoo))
    monkeypatch.setenv("PHYSADV_CACHE", str(tmp_path / cache))
    return str(zoo)


def test_name_at_seed_is_the_members_recipe_trained_from_that_seed(tmp_path, monkeypatch):
    """``m1@2`` against the zoo's own seed-2 entry ``m2`` (same recipe, written out): the same weights, not m1's."""
    from physadv.core.victims import load_model
    from physadv.core.zoo import train_zoo

    recipe = "{{model: lenet-mnist, data: {{name: digits, size: 28}}, epochs: 1, batch_size: 32, seed: {}}}"
    zoo = _tiny_zoo(tmp_path, monkeypatch, {f"m{s}": recipe.format(s) for s in (1, 2)})
    assert train_zoo(["m1", "m2"], workers=1, progress=False, path=zoo) == ["m1", "m2"]
    assert train_zoo(["m1@2"], workers=1, progress=False, path=zoo) == []  # m2's cached weights: the same recipe
    m1, m2, m1_at_2 = (load_model(n).state_dict() for n in ("m1", "m2", "m1@2"))
    assert all(torch.equal(m1_at_2[k], m2[k]) for k in m2)
    assert not all(torch.equal(m1_at_2[k], m1[k]) for k in m1)
    with pytest.raises(PhysadvError, match="'m1@x': after '@' comes a training seed"):
        load_model("m1@x")
    with pytest.raises(PhysadvError, match="unknown zoo member 'm3'"):
        zoo_member("m3@2", zoo)


def test_name_plus_pgd_is_the_members_weights_adversarially_fine_tuned_at_that_radius(tmp_path, monkeypatch):
    """``m1+pgd1.2`` against the zoo's own entry with Madry et al.'s adversary and the start written out (eps 1.2/255,
    3 steps of 2.5 * 1.2 / 3 = 1.0, from m1's recipe): the same weights, whether m1 was trained inside m2's training
    or before the copy (in a pool of two workers, the copy waits for m1's weights); they differ from m1's, trained without it."""
    from physadv.core.victims import load_model
    from physadv.core.zoo import train_zoo

    recipe = "{model: lenet-mnist, data: {name: digits, size: 28}, batch_size: 32, seed: 1, epochs: 1}"
    adversary = "adversarial: {eps_255: 1.2, step_255: 1.0, steps: 3, random_start: true}"
    zoo = _tiny_zoo(tmp_path, monkeypatch, {"m1": recipe, "m2": f"{recipe[:-1]}, {adversary}, init: {recipe}}}"}, "first")
    assert train_zoo(["m1+pgd1.2", "m1@2"], workers=2, progress=False, path=zoo) == ["m1+pgd1.2", "m1@2"]
    copy = load_model("m1+pgd1.2").state_dict()
    monkeypatch.setenv("PHYSADV_CACHE", str(tmp_path / "cache"))
    assert train_zoo(["m2", "m1"], workers=1, progress=False, path=zoo) == ["m2", "m1"]  # m2 trains m1 first
    assert train_zoo(["m1+pgd1.2"], workers=1, progress=False, path=zoo) == []  # m2's weights: the same recipe
    m1, m2, robust = (load_model(n).state_dict() for n in ("m1", "m2", "m1+pgd1.2"))
    assert all(torch.equal(robust[k], m2[k]) and torch.equal(copy[k], m2[k]) for k in m2)
    assert not all(torch.equal(robust[k], m1[k]) for k in m1)
    assert zoo_member("m1@3+pgd1.2", zoo).train.seed == 3 and zoo_member("m1+pgd1.2", zoo).hardened
    assert zoo_member("m1@3+pgd1.2", zoo).train.init.seed == 3  # from m1@3's weights
    for bad in ("m1+pgdx", "m1+fgsm1", "m1+pgd0", "m1+pgd40", "m2+pgd1"):  # m2 is adversarially trained already
        with pytest.raises(PhysadvError, match=f"zoo member '{re.escape(bad)}': after '\\+' comes pgdEPS"):
            zoo_member(bad, zoo)


def test_name_plus_lgv_is_the_kth_snapshot_of_training_continued_at_a_constant_learning_rate(tmp_path, monkeypatch):
    """``m1+lgv2`` against the zoo's own entry with LGV's chain written out (Gubri et al. 2022, Alg. 1: the member's
    training continued from its weights at half its initial learning rate, constant, one epoch per snapshot): the same
    weights; the snapshots move away from the member and from each other."""
    from physadv.core.victims import load_model
    from physadv.core.zoo import train_zoo

    recipe = "{{model: lenet-mnist, data: {{name: digits, size: 28}}, batch_size: 32, seed: {}, epochs: {}{}}}"
    base = recipe.format(1, 2, "")
    first = recipe.format(2, 1, f", lr: 0.0005, lr_schedule: constant, init: {base}")  # half lenet's 1e-3
    second = recipe.format(3, 1, f", lr: 0.0005, lr_schedule: constant, init: {first}")
    adversary = "adversarial: {eps_255: 1.2, step_255: 1.0, steps: 3, random_start: true}"
    zoo = _tiny_zoo(tmp_path, monkeypatch, {"m1": base, "m2": second, "m3": f"{base[:-1]}, {adversary}}}"})
    assert train_zoo(["m1+lgv2", "m1+lgv1"], workers=2, progress=False, path=zoo) == ["m1+lgv2", "m1+lgv1"]
    assert train_zoo(["m2"], workers=1, progress=False, path=zoo) == []  # the same recipe: m1+lgv2's weights
    m1, one, two = (load_model(n).state_dict() for n in ("m1", "m1+lgv1", "m1+lgv2"))
    assert not any(all(torch.equal(a[k], b[k]) for k in a) for a, b in ((m1, one), (one, two), (m1, two)))
    assert zoo_member("m1@5+lgv3", zoo).train.init.init.init.seed == 5  # from m1@5's weights
    for bad in ("m1+lgv0", "m1+lgvx", "m1+lgv41", "m3+lgv1", "m2+lgv1"):  # m3 adversarial, m2 fine-tuned already
        with pytest.raises(PhysadvError, match=f"zoo member '{re.escape(bad)}': after '\\+' comes lgvK"):
            zoo_member(bad, zoo)
