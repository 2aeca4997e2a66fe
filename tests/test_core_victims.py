"""core.victims: the objectives' losses and the ensemble fusions against their closed forms."""
import numpy as np
import pytest
import torch
from torch import nn

from physadv.core.errors import PhysadvError
from physadv.core.models import Classifier
from physadv.core.victims import ClassifierVictim, EnsembleVictim, Objective, Views, crop_boxes

CLASSES = ["stop", "yield", "speed_limit_80", "no_entry"]


def linear_classifier(seed: int, size: int = 8, classes=CLASSES) -> Classifier:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * size * size, len(classes)))
    return Classifier(net, classes, (3, size, size), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), arch=f"linear{seed}")


def logits_np(model: Classifier, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(x).double().numpy()


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.fixture
def views():
    return Views(torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(0)))


def test_targeted_and_untargeted_ce_are_the_papers(views):
    m = linear_classifier(0)
    p = softmax(logits_np(m, views.images))
    v = ClassifierVictim(m)
    t = v.loss(views, Objective("targeted", source="stop", target="speed_limit_80")).double().numpy()
    u = v.loss(views, Objective("untargeted", source="stop")).double().numpy()
    np.testing.assert_allclose(t, -np.log(p[:, 2]), rtol=1e-5)
    np.testing.assert_allclose(u, -np.log(1 - p[:, 0]), rtol=1e-5)


def test_margin_loss_is_carlini_wagner_on_the_logits(views):
    m = linear_classifier(1)
    z = logits_np(m, views.images)
    v = ClassifierVictim(m)
    got = v.loss(views, Objective("targeted", target="yield", loss="margin", kappa=0.5)).double().numpy()
    other = np.delete(z, 1, axis=1).max(1)
    np.testing.assert_allclose(got, np.maximum(other - z[:, 1], -0.5), rtol=1e-4, atol=1e-5)
    got_u = v.loss(views, Objective("untargeted", source="no_entry", loss="margin")).double().numpy()
    np.testing.assert_allclose(got_u, np.maximum(z[:, 3] - np.delete(z, 3, axis=1).max(1), 0), rtol=1e-4, atol=1e-5)


def test_logit_loss_is_zhao_et_al_and_an_ensemble_averages_logits_whatever_the_fusion(views):
    members = [linear_classifier(s) for s in (7, 8)]
    z = [logits_np(m, views.images) for m in members]
    v = ClassifierVictim(members[0])
    got = v.loss(views, Objective("targeted", target="yield", loss="logit")).double().numpy()
    np.testing.assert_allclose(got, -z[0][:, 1], rtol=1e-5, atol=1e-6)  # no softmax: -z_t itself
    got_u = v.loss(views, Objective("untargeted", source="stop", loss="logit")).double().numpy()
    np.testing.assert_allclose(got_u, z[0][:, 0], rtol=1e-5, atol=1e-6)
    avg = 0.25 * z[0] + 0.75 * z[1]  # Dong et al.'s ensemble in logits
    for fusion in ("mean_probability", "sum_losses", "mean_logits"):
        ens = EnsembleVictim([ClassifierVictim(m) for m in members], weights=[1, 3], fusion=fusion)
        got_e = ens.loss(views, Objective("targeted", target="no_entry", loss="logit")).detach().double().numpy()
        np.testing.assert_allclose(got_e, -avg[:, 3], rtol=1e-5, atol=1e-6)


def test_ensemble_mean_probability_is_liu_et_al(views):
    members = [linear_classifier(s) for s in (2, 3, 4)]
    w = np.array([0.5, 0.3, 0.2])
    probs = sum(wi * softmax(logits_np(m, views.images)) for wi, m in zip(w, members))
    ens = EnsembleVictim([ClassifierVictim(m) for m in members], weights=[5, 3, 2], fusion="mean_probability")
    got = ens.loss(views, Objective("targeted", target="speed_limit_80")).double().numpy()
    np.testing.assert_allclose(got, -np.log(probs[:, 2]), rtol=1e-5)
    verdict = ens.judge(views, Objective("targeted", target="speed_limit_80"))
    np.testing.assert_allclose(verdict.probs.double().numpy(), probs, rtol=1e-5, atol=1e-7)
    assert verdict.pred.tolist() == probs.argmax(1).tolist()
    assert set(verdict.members) == {m.arch for m in members}


def test_ensemble_sum_of_losses(views):
    members = [linear_classifier(s) for s in (5, 6)]
    z = [torch.from_numpy(logits_np(m, views.images)) for m in members]
    ce = [torch.nn.functional.cross_entropy(zi, torch.full((5,), 3), reduction="none").numpy() for zi in z]
    ens = EnsembleVictim([ClassifierVictim(m) for m in members], weights=[1, 3], fusion="sum_losses")
    got = ens.loss(views, Objective("targeted", target="no_entry")).detach().double().numpy()
    np.testing.assert_allclose(got, 0.25 * ce[0] + 0.75 * ce[1], rtol=1e-5)


def test_ensemble_mean_logits_is_dong_et_al(views):
    """Dong et al. 2018, eq. 8: cross-entropy (and the margin) on the softmax of the weighted sum of logits; the
    ensemble's verdict is that softmax's argmax, which can differ from the averaged probabilities'."""
    members = [linear_classifier(s) for s in (2, 3, 4)]
    z = sum(wi * logits_np(m, views.images) for wi, m in zip((0.5, 0.3, 0.2), members))
    ens = EnsembleVictim([ClassifierVictim(m) for m in members], weights=[5, 3, 2], fusion="mean_logits")
    got = ens.loss(views, Objective("targeted", target="speed_limit_80")).double().numpy()
    np.testing.assert_allclose(got, -np.log(softmax(z)[:, 2]), rtol=1e-5)
    got_m = ens.loss(views, Objective("targeted", target="yield", loss="margin")).double().numpy()
    np.testing.assert_allclose(got_m, np.maximum(np.delete(z, 1, axis=1).max(1) - z[:, 1], 0), rtol=1e-4, atol=1e-5)
    verdict = ens.judge(views, Objective("targeted", target="speed_limit_80"))
    np.testing.assert_allclose(verdict.probs.double().numpy(), softmax(z), rtol=1e-5, atol=1e-7)
    assert verdict.pred.tolist() == z.argmax(1).tolist()
    with pytest.raises(PhysadvError, match="mean_logits"):
        EnsembleVictim([ClassifierVictim(m) for m in members], fusion="median")


def test_members_see_the_view_through_their_own_input_size():
    small, large = linear_classifier(7, 8), linear_classifier(8, 16)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    ens = EnsembleVictim([ClassifierVictim(small), ClassifierVictim(large)])
    assert ens.input_size == (3, 16, 16)
    from PIL import Image  # PIL's anti-aliased bilinear resize is the reference for torch's antialias=True

    down = torch.from_numpy(np.stack([[np.asarray(Image.fromarray(ch.numpy(), mode="F").resize((8, 8), Image.BILINEAR))
                                       for ch in img] for img in x]))
    want = softmax(logits_np(small, down))
    np.testing.assert_allclose(ens.member_logits(Views(x))[0].softmax(1).detach().numpy(), want, rtol=1e-4, atol=1e-6)


def test_members_with_reordered_classes_are_aligned_by_name(views):
    a = linear_classifier(9)
    b = linear_classifier(9, classes=list(reversed(CLASSES)))  # the same weights, other names
    ens = EnsembleVictim([ClassifierVictim(a), ClassifierVictim(b)])
    pa, pb = (z.softmax(1) for z in ens.member_logits(views))
    torch.testing.assert_close(pb, pa.flip(1))


def test_box_crop_of_an_exact_window_is_the_pixels():
    img = torch.rand(1, 3, 20, 30, generator=torch.Generator().manual_seed(2))
    out = crop_boxes(img, torch.tensor([[4.0, 6.0, 12.0, 14.0]]), (8, 8), margin=0.0)
    torch.testing.assert_close(out[0], img[0, :, 6:14, 4:12])
    out = crop_boxes(img, torch.tensor([[6.0, 8.0, 10.0, 12.0]]), (8, 8), margin=0.5)  # the same window, by margin
    torch.testing.assert_close(out[0], img[0, :, 6:14, 4:12])


def test_bad_objectives_and_classes_are_one_line_errors(views):
    with pytest.raises(PhysadvError, match="needs a target"):
        Objective("targeted", source="stop")
    with pytest.raises(PhysadvError, match="'banana' is not one of linear0"):
        ClassifierVictim(linear_classifier(0)).loss(views, Objective("targeted", target="banana"))
    with pytest.raises(PhysadvError, match="detectors"):
        ClassifierVictim(linear_classifier(0)).loss(views, Objective("disappearance", source="stop"))
    other = linear_classifier(1, classes=["a", "b", "c", "d"])
    with pytest.raises(PhysadvError, match="different classes"):
        EnsembleVictim([ClassifierVictim(linear_classifier(0)), ClassifierVictim(other)])


def test_a_subset_of_one_is_one_members_own_loss_and_every_member_gets_its_turn(views):
    members = [linear_classifier(s) for s in (10, 11, 12)]
    own = [ClassifierVictim(m).loss(views, Objective("targeted", target="yield")).detach() for m in members]
    ens = EnsembleVictim([ClassifierVictim(m) for m in members], subset=1)
    chosen = set()
    for seed in range(12):
        got = ens.loss(Views(views.images, seed=seed), Objective("targeted", target="yield")).detach()
        match = [i for i, o in enumerate(own) if torch.allclose(got, o, atol=1e-6)]
        assert len(match) == 1
        chosen.add(match[0])
    assert chosen == {0, 1, 2}


def test_balancing_weighs_members_by_the_softmax_of_their_cross_entropy(views):
    members = [linear_classifier(s) for s in (13, 14)]
    ce = np.stack([-np.log(softmax(logits_np(m, views.images))[:, 2]) for m in members])  # members x views
    w = np.exp(ce.mean(1) / 0.5)
    w /= w.sum()
    ens = EnsembleVictim([ClassifierVictim(m) for m in members], fusion="sum_losses", balance=0.5)
    got = ens.loss(views, Objective("targeted", target="speed_limit_80")).detach().double().numpy()
    np.testing.assert_allclose(got, (w[:, None] * ce).sum(0), rtol=1e-5)
    # with the logit loss the weights still come from the cross-entropy (one scale for every member)
    z = np.stack([logits_np(m, views.images)[:, 2] for m in members])
    got = ens.loss(views, Objective("targeted", target="speed_limit_80", loss="logit")).detach().double().numpy()
    np.testing.assert_allclose(got, -(w[:, None] * z).sum(0), rtol=1e-5, atol=1e-6)


def test_balancing_by_view_weighs_each_views_members_by_their_own_cross_entropy(views):
    """``balance_by: view``: on each view the members weigh ``softmax_m(CE_mv / T)``, in Liu et al.'s fused loss
    ``-log sum_m w_mv p_mv,t``; as T -> 0 each view's loss is its least-fooled member's cross-entropy."""
    members = [linear_classifier(s) for s in (13, 14, 15)]
    p = np.stack([softmax(logits_np(m, views.images))[:, 2] for m in members])  # members x views: p(target)
    ce = -np.log(p)
    assert (ce.argmax(0) != ce.mean(1).argmax()).any()  # some view's least-fooled member is not the mean's
    objective = Objective("targeted", target="speed_limit_80")
    for T in (0.5, 2.0):
        w = np.exp(ce / T)
        w /= w.sum(0)
        ens = EnsembleVictim([ClassifierVictim(m) for m in members], balance=T, balance_by="view")
        np.testing.assert_allclose(ens.loss(views, objective).detach().double().numpy(), -np.log((w * p).sum(0)), rtol=1e-5)
    sharp = EnsembleVictim([ClassifierVictim(m) for m in members], balance=1e-3, balance_by="view")
    np.testing.assert_allclose(sharp.loss(views, objective).detach().double().numpy(), ce.max(0), rtol=1e-4)
    by_member = EnsembleVictim([ClassifierVictim(m) for m in members], balance=1e-3).loss(views, objective)
    assert not np.allclose(by_member.detach().double().numpy(), ce.max(0), rtol=1e-2)  # the mean's worst member is not


def test_balancing_on_plain_views_weighs_members_as_they_will_be_judged():
    """``balance_plain``: the weights are ``softmax(CE / T)`` of each member's cross-entropy on the plain views
    (how it will be judged), the loss still its randomised one (here input diversity); the activations a feature
    loss records are the randomised pass's, with their gradient."""
    views = Views(torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(0)))

    def conv_classifier(seed):
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Conv2d(3, 4, 4, stride=4), nn.Flatten(), nn.Linear(4 * 8 * 8, len(CLASSES)))
        return Classifier(net, CLASSES, (3, 32, 32), (0.5,) * 3, (0.5,) * 3, arch=f"conv{seed}")

    members = [ClassifierVictim(conv_classifier(s), f"m{s}", diversity=1.0) for s in (13, 14, 15)]
    objective = Objective("targeted", target="speed_limit_80")

    def ce(z):
        return -np.log(softmax(z)[:, 2])

    plain = np.stack([ce(logits_np(m.model, views.images)) for m in members])
    with torch.no_grad():
        diverse = np.stack([ce(m.logits(views, diverse=True).double().numpy()) for m in members])
    assert np.abs(plain - diverse).max() > 0.05  # the diversity moves the losses: the two weightings differ
    for balance_plain, by in ((True, plain), (False, diverse)):
        w = np.exp(by.mean(1) / 0.5)
        w /= w.sum()
        ens = EnsembleVictim(members, fusion="sum_losses", balance=0.5, balance_plain=balance_plain)
        with ens.recording(1.0) as acts:
            got = ens.loss(Views(views.images.clone().requires_grad_(True)), objective)
        np.testing.assert_allclose(got.detach().double().numpy(), (w[:, None] * diverse).sum(0), rtol=1e-5)
        assert all(a.requires_grad for a in acts.values()) and len(acts) == 3


class _Fixed(nn.Module):
    """Logits ``b + a * s``, ``s`` the mean of the (normalised) image: a member as confident as ``b`` says."""

    def __init__(self, b, a):
        super().__init__()
        self.b, self.a = torch.tensor(b), torch.tensor(a)

    def forward(self, x):
        return self.b + x.flatten(1).mean(1, keepdim=True) * self.a


def test_balancing_keeps_a_confidently_unfooled_member_in_the_gradient(views):
    """Liu et al.'s fused loss ``-log sum_i w_i p_i,t`` hardly reaches a member that is sure of the source class
    (``dL/dz_t = -w p_t (1 - p_t) / P``, ``p_t`` ~ e^-10) once the others are fooled: the design can leave it behind
    (the demo's lisa-cnn). Balancing (``w_i`` times ``softmax(CE_i / T)``) gives it its weight back; both against
    the closed form."""
    t = CLASSES.index("speed_limit_80")
    fooled, unfooled = [0.0, 0.0, 10.0, 0.0], [10.0, 0.0, 0.0, 0.0]
    nets = [_Fixed(fooled, [0.0] * 4), _Fixed(fooled, [0.0] * 4), _Fixed(unfooled, [0.0, 0.0, 1.0, 0.0])]
    members = [ClassifierVictim(Classifier(n, CLASSES, (3, 8, 8), (0.5,) * 3, (0.5,) * 3, arch=f"m{i}"), f"m{i}")
               for i, n in enumerate(nets)]
    p = np.stack([softmax(logits_np(m.model, views.images)) for m in members])  # members x views x classes
    objective = Objective("targeted", source="stop", target="speed_limit_80")
    reached = {}
    for balance in (0.0, 1.0):
        w = np.full(3, 1 / 3)
        if balance:
            w = w * np.exp(-np.log(p[:, :, t]).mean(1) / balance)
            w /= w.sum()
        P = (w[:, None] * p[:, :, t]).sum(0)
        expected = -w[2] * p[2, :, t] * (1 - p[2, :, t]) / P  # dL / dz_t of the unfooled member, per view
        x = views.images.clone().requires_grad_(True)
        EnsembleVictim(members, balance=balance).loss(Views(x), objective).sum().backward()
        got = x.grad.double().flatten(1).sum(1).numpy() / 2  # s = mean((x - 0.5) / 0.5): the sum of ds/dx is 2
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-9)
        reached[balance] = float(np.abs(got).mean())
    assert reached[0.0] < 1e-3 < 0.1 < reached[1.0]


def test_input_diversity_resizes_and_pads_or_leaves_alone():
    from physadv.core.victims import input_diversity

    x = torch.rand(4, 3, 32, 32) + 0.1
    assert torch.equal(input_diversity(x, 0.0, torch.Generator().manual_seed(0)), x)
    out = input_diversity(x, 1.0, torch.Generator().manual_seed(3))
    rows = (out.abs().sum((0, 1, 3)) > 0).sum()
    cols = (out.abs().sum((0, 1, 2)) > 0).sum()
    assert out.shape == x.shape and rows == cols and 28 <= int(rows) <= 32  # a square of side in [0.9 S, S], zeros around


def test_dropout_erosion_is_an_unbiased_ghost_replayed_by_seed_and_off_when_judging():
    """Ghost networks (Li et al. 2020): each convolution's output is kept with probability 1 - p and scaled by
    1 / (1 - p), so a one-conv model's ghosts average to the model itself; judging sees the model, not a ghost."""
    from physadv.core.victims import dropout_erosion

    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    net = nn.Sequential(conv, nn.Flatten(), nn.Linear(4 * 8 * 8, len(CLASSES)))
    model = Classifier(net, CLASSES, (3, 8, 8), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), arch="ghosted")
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        clean = conv((x - 0.5) / 0.5)
        g = torch.Generator().manual_seed(1)
        ghosts = []
        for _ in range(2000):
            with dropout_erosion(conv, 0.2, g):
                ghosts.append(conv((x - 0.5) / 0.5))
        ghosts = torch.stack(ghosts)
    zero = (ghosts == 0).float().mean()
    assert abs(float(zero) - 0.2) < 0.01  # Bernoulli(0.8) keep mask
    kept = ghosts[ghosts != 0] / clean.expand_as(ghosts)[ghosts != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 1 / 0.8))  # kept outputs scaled by 1 / (1 - p)
    assert float((ghosts.mean(0) - clean).abs().max()) < 0.05 * float(clean.abs().max())  # unbiased
    assert not conv._forward_hooks  # the hooks leave with the context

    victim = ClassifierVictim(model, "ghosted", ghost=0.5)
    with torch.no_grad():
        a, b = victim.logits(Views(x, seed=7), diverse=True), victim.logits(Views(x, seed=7), diverse=True)
        c = victim.logits(Views(x, seed=8), diverse=True)
        judged = victim.logits(Views(x, seed=7))
    torch.testing.assert_close(a, b)  # the same seed replays the same ghost (exact resume)
    assert not torch.allclose(a, c) and not torch.allclose(a, judged)
    torch.testing.assert_close(judged, model(x))
    with pytest.raises(PhysadvError, match="victim.ghost"):
        ClassifierVictim(model, "bad", ghost=1.0)


def test_clean_feature_mixup_is_a_convex_mix_with_clean_features_on_the_papers_layers():
    """Clean feature mixup (Byun et al. 2023, eq. 4): a mixed layer outputs (1 - a) f(x) + a f(x_clean) with a in
    [0, upper] per channel and f(x_clean) one recorded clean view's features; it acts on linear layers and on
    convolutions at a quarter of the input's width or less, never on a finer one, and never when judging."""
    torch.manual_seed(0)
    fine, coarse, head = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 5, 3, padding=1), nn.Linear(5 * 2 * 2, len(CLASSES))
    net = nn.Sequential(fine, nn.ReLU(), nn.AvgPool2d(4), coarse, nn.Flatten(), head)  # 8 px -> fine at 8, coarse at 2

    class WithSpare(nn.Module):  # a layer the forward pass never runs is no mixup layer
        def __init__(self):
            super().__init__()
            self.net, self.spare = net, nn.Linear(3, 3)

        def forward(self, x):
            return self.net(x)

    model = Classifier(WithSpare(), CLASSES, (3, 8, 8), (0.5,) * 3, (0.5,) * 3, arch="mixed")
    victim = ClassifierVictim(model, "mixed", mixup=0.75, mixup_prob=1.0)
    clean, x = torch.rand(6, 3, 8, 8), torch.rand(4, 3, 8, 8)
    with pytest.raises(PhysadvError, match="remember_clean"):
        victim.logits(Views(x, seed=1), diverse=True)
    victim.remember_clean(Views(clean))
    assert list(victim._clean_bank) == [coarse, head]  # not the 8 px convolution, nor the spare layer

    seen: dict = {}
    hook = head.register_forward_pre_hook(lambda m, i: seen.__setitem__("in", i[0]))  # the mixed coarse features
    with torch.no_grad():
        mixed = victim.logits(Views(x, seed=1), diverse=True)
        hook.remove()
        plain_coarse = nn.Sequential(*list(net)[:4])((x - 0.5) / 0.5)
        clean_coarse = nn.Sequential(*list(net)[:4])((clean - 0.5) / 0.5)
        clean_logits = model(clean)
    # each view's coarse features: per channel between its own and one clean view's, within a share of 0.75
    out = seen["in"].view_as(plain_coarse)
    for i in range(len(x)):
        fits = []
        for j in range(len(clean)):
            d = clean_coarse[j] - plain_coarse[i]
            a = ((out[i] - plain_coarse[i]) * d).flatten(1).sum(1) / d.pow(2).flatten(1).sum(1)  # per channel
            fits.append(bool(torch.allclose(out[i], plain_coarse[i] + a[:, None, None] * d, atol=1e-5)
                             and (a >= -1e-5).all() and (a <= 0.75 + 1e-5).all()))
        assert any(fits)
    # the logits: the head's output on the mixed features, mixed again with one clean view's logits
    with torch.no_grad():
        own = head(out.flatten(1))
    for i in range(len(x)):
        a = (mixed[i] - own[i]) / (clean_logits - own[i])
        assert bool(((a >= -1e-4) & (a <= 0.75 + 1e-4)).all(1).any())
    with torch.no_grad():
        torch.testing.assert_close(victim.logits(Views(x, seed=1)), model(x))  # judging sees the model
        torch.testing.assert_close(victim.logits(Views(x, seed=1), diverse=True), mixed)  # the seed replays it
    assert not coarse._forward_hooks and not head._forward_hooks
    with pytest.raises(PhysadvError, match="victim.mixup"):
        ClassifierVictim(model, "bad", mixup=1.5)


def test_mixup_images_are_a_datasets_other_classes_balanced():
    """``victim.mixup_images``: the clean features come from the named dataset's test images (``competing_views``),
    as many as asked, class-balanced, none of the objective's source or target class (Byun et al. mix other clean
    images in). Each class's images are one grey level, which the linear layer's recorded features give back."""
    from physadv.core.data import ImageSet, register_dataset
    from physadv.core.victims import competing_views

    classes = CLASSES + ["keep_right"]
    labels = torch.arange(5).repeat_interleave(6)
    grey = (labels.float() + 1) / 10
    register_dataset("test-greys", lambda split, root=None, size=None: ImageSet(
        grey.view(-1, 1, 1, 1).expand(-1, 3, 8, 8).clone(), labels, classes, "test-greys"))
    model = linear_classifier(0)
    victim = ClassifierVictim(model, "lin", mixup=0.5, mixup_images="test-greys")
    objective = Objective("targeted", "stop", "speed_limit_80")
    victim.remember_clean(competing_views(victim.mixup_images, objective, 7))
    (layer, feats), = victim._clean_bank.items()
    w, b = layer.weight.detach(), layer.bias.detach()
    level = ((feats[:, 0] - b[0]) / w[0].sum()) * 0.5 + 0.5  # each row's grey level, from the affine layer
    got = torch.round(level * 10).long() - 1
    assert torch.allclose(level, (got.float() + 1) / 10, atol=1e-4)
    counts = torch.bincount(got, minlength=5).tolist()
    assert counts[0] == counts[2] == 0 and sum(counts) == 7  # no stop, no speed limit 80
    assert max(counts) - min(counts[1], counts[3], counts[4]) <= 1  # balanced over yield, no_entry, keep_right
    with pytest.raises(PhysadvError, match="unknown dataset 'nope'"):
        ClassifierVictim(model, "lin", mixup=0.5, mixup_images="nope")
    register_dataset("test-two", lambda split, root=None, size=None: ImageSet(
        torch.rand(2, 3, 8, 8), torch.tensor([0, 2]), classes, "test-two"))
    with pytest.raises(PhysadvError, match="victim.mixup_images: dataset 'test-two' has no class but"):
        competing_views("test-two", objective, 3)


def test_victim_from_carries_every_option_to_the_members_it_builds():
    """The one place a victim is built from a config over loaded classifiers (the benchmark and the demo use it):
    a ghost rate set in the config makes the optimisation's logits differ from the judge's, and the ensemble keeps
    the config's weights and fusion."""
    from physadv.core.victims import VictimConfig, victim_from

    def conv(k: int) -> Classifier:
        torch.manual_seed(k)
        return Classifier(nn.Sequential(nn.Conv2d(3, 3, 1), nn.Flatten(), nn.Linear(3 * 64, 4)), CLASSES, (3, 8, 8),
                          (0.5,) * 3, (0.5,) * 3, arch=f"conv{k}")

    models = {"c0": conv(0), "c1": conv(1)}
    cfg = VictimConfig(models=["c0", "c1"], weights=[3.0, 1.0], fusion="mean_logits", ghost=0.5, balance=2.0,
                       balance_plain=True)
    v = victim_from(cfg, models)
    x = Views(torch.rand(4, 3, 8, 8), seed=3)
    assert isinstance(v, EnsembleVictim) and v.weights == [0.75, 0.25] and v.fusion == "mean_logits" and v.balance == 2.0
    assert v.balance_plain and not victim_from(VictimConfig(models=["c0", "c1"]), models).balance_plain
    with torch.no_grad():
        assert not torch.allclose(v.members[0].logits(x, diverse=True), v.members[0].logits(x))
        single = victim_from(VictimConfig(models=["c0"]), models)
        torch.testing.assert_close(single.logits(x, diverse=True), models["c0"](x.images))
    with pytest.raises(PhysadvError, match="unknown dataset 'nowhere'"):  # the mixup's images reach every member
        victim_from(VictimConfig(models=["c0", "c1"], mixup=0.5, mixup_images="nowhere"), models)
    assert victim_from(VictimConfig(models=["c0", "c1"], mixup=0.5, mixup_images="digits"), models).mixup_images == "digits"
    assert victim_from(VictimConfig(models=["c0", "c1"], mixup_images="digits"), models).mixup_images == ""  # mixup off


def test_momentum_sign_is_mi_fgsm():
    from physadv.physical.attack import MomentumSign

    w = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    opt = MomentumSign([w], lr=0.1, momentum=0.5)
    grads = [torch.tensor([0.2, -0.4, 0.0]), torch.tensor([-1.0, 0.1, 0.3])]
    buf, ref = torch.zeros(3), w.detach().clone()
    for g in grads:
        w.grad = g.clone()
        opt.step()
        buf = 0.5 * buf + g / g.abs().mean()
        ref = ref - 0.1 * buf.sign()
    torch.testing.assert_close(w.detach(), ref)


def test_victim_seeds_add_each_zoo_members_copies_from_other_seeds_and_share_its_weight():
    from dataclasses import replace
    from pathlib import Path

    from physadv.core.config import load_config
    from physadv.core.victims import VictimConfig, load_victim
    from physadv.physical.design_cli import RP2Job

    job = load_config(RP2Job, str(Path(__file__).resolve().parents[1] / "configs/physical/rp2_zoo.yaml"),
                      ["victim.models=[gtsrb-cnn,sign,vgg-bn@7]", "victim.seeds=[101,102]", "victim.weights=[3,1,1]"])
    # zoo members join with their copies; the built-in classifier and an explicit NAME@SEED are not zoo recipes to reseed
    assert job.victim.specs() == ["gtsrb-cnn", "gtsrb-cnn@101", "gtsrb-cnn@102", "sign", "vgg-bn@7"]
    assert job.victim.member_weights() == [1.0, 1.0, 1.0, 1.0, 1.0]  # gtsrb-cnn's 3 shared by its three copies
    assert VictimConfig(["gtsrb-cnn"]).specs() == ["gtsrb-cnn"]
    # victim.robust_eps_255: every zoo member and copy as its slightly robust copy; an explicit +pgd copy is kept
    robust = replace(job.victim, models=["gtsrb-cnn,sign,vgg-bn@7,vgg-bn+pgd2"], weights=None, robust_eps_255=0.5)
    assert robust.specs() == ["gtsrb-cnn+pgd0.5", "gtsrb-cnn@101+pgd0.5", "gtsrb-cnn@102+pgd0.5", "sign",
                              "vgg-bn@7+pgd0.5", "vgg-bn+pgd2"]
    joined = replace(robust, models=["gtsrb-cnn,sign"], seeds=[], robust_join=True)
    assert joined.specs() == ["gtsrb-cnn", "gtsrb-cnn+pgd0.5", "sign"]
    # victim.lgv: every zoo member and seed copy as its first LGV snapshots; an explicit copy is kept
    lgv = replace(job.victim, models=["gtsrb-cnn,sign,vgg-bn+pgd2"], weights=None, seeds=[101], lgv=2)
    assert lgv.specs() == ["gtsrb-cnn+lgv1", "gtsrb-cnn+lgv2", "gtsrb-cnn@101+lgv1", "gtsrb-cnn@101+lgv2", "sign",
                           "vgg-bn+pgd2"]
    with pytest.raises(PhysadvError, match=r"victim.lgv: the number of LGV snapshots .* got 2"):
        load_config(RP2Job, str(Path(__file__).resolve().parents[1] / "configs/physical/rp2_zoo.yaml"),
                    ["victim.lgv=2", "victim.robust_eps_255=1"])
    with pytest.raises(PhysadvError, match=r"victim.robust_join adds .* set victim.robust_eps_255 > 0"):
        load_config(RP2Job, str(Path(__file__).resolve().parents[1] / "configs/physical/rp2_zoo.yaml"),
                    ["victim.robust_join=true"])
    with pytest.raises(PhysadvError, match=r"victim.robust_eps_255: a small L-inf radius in 1/255 .* got -1.0"):
        load_config(RP2Job, str(Path(__file__).resolve().parents[1] / "configs/physical/rp2_zoo.yaml"),
                    ["victim.robust_eps_255=-1"])
    for bad in ([-1], [5, 5]):
        with pytest.raises(PhysadvError, match=r"victim.seeds: distinct non-negative integer seeds"):
            load_victim(VictimConfig(["gtsrb-cnn"], seeds=bad))
    with pytest.raises(PhysadvError, match=r"victim.ghost .* must be in \[0, 1\), got 1.5"):
        load_config(RP2Job, str(Path(__file__).resolve().parents[1] / "configs/physical/rp2_zoo.yaml"), ["victim.ghost=1.5"])
    for key, match in (("victim.diversity=1.5", r"victim.diversity .* in \[0, 1\], got 1.5"),
                       ("victim.subset=-2", r"victim.subset, .* >= 0, got -2"), ("victim.balance=-1", r"got 0, -1.0"),
                       ("victim.balance_plain=true", r"victim.balance_plain .* set victim.balance > 0"),
                       ("victim.balance_by=view", r"victim.balance_by weigh .* set victim.balance > 0"),
                       ("victim.balance_by=pair", r"victim.balance_by: 'pair' is not one of")):
        with pytest.raises(PhysadvError, match=match):  # at load, before any model is trained or read
            load_config(RP2Job, str(Path(__file__).resolve().parents[1] / "configs/physical/rp2_zoo.yaml"), [key])
