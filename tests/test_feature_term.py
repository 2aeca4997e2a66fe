"""The activation attack term (Inkawhich et al. 2019) of the physical attacks: which activations a victim records,
the distance against its closed form, and the target's views replaying the design's draw exactly."""
import pytest
import torch
from torch import nn

from physadv.core.errors import PhysadvError
from physadv.core.models import Classifier
from physadv.core.victims import ClassifierVictim, EnsembleVictim, Victim, Views
from physadv.physical.attack import activation_distance
from physadv.rendering.signs.textures import sign_classes
from test_physical_attacks import small_rp2, small_scene

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def tiny(seed: int) -> Classifier:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(5, 6, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 16 * 16, len(sign_classes())))
    return Classifier(net, sign_classes(), (3, 32, 32), MEAN, STD, arch="tiny").eval()


def test_recording_keeps_the_convolution_at_the_relative_depth_and_removes_its_hook():
    model = tiny(0)
    victim = ClassifierVictim(model, "tiny")
    x = torch.rand(2, 3, 32, 32)
    z = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)  # the model's normalisation, by hand
    first = model.net[0](z)
    middle = model.net[2](torch.relu(first))
    last = model.net[4](torch.relu(middle))
    for depth, expected in ((0.0, first), (0.5, middle), (0.75, last), (1.0, last)):  # 3 convolutions: round(d * 2)
        with victim.recording(depth) as acts:
            victim.logits(Views(x))
        assert torch.allclose(acts["tiny"], expected, atol=1e-6), depth
    assert all(not m._forward_hooks for m in model.modules())
    with pytest.raises(PhysadvError, match="depth must be in"):
        with victim.recording(1.5):
            pass


def test_activation_distance_is_the_normalised_squared_distance():
    t = torch.rand(3, 4, 5, 5) + 0.1
    assert float(activation_distance({"a": t * 1.3}, {"a": t})) == pytest.approx(0.09, rel=1e-5)
    # the mean over members recorded in both; a member recorded once only does not count
    d = activation_distance({"a": t * 1.3, "b": t * 0.5, "c": t}, {"a": t, "b": t})
    assert float(d) == pytest.approx((0.09 + 0.25) / 2, rel=1e-5)
    with pytest.raises(PhysadvError, match="no classifier activations"):
        activation_distance({"a": t}, {"b": t})


def test_the_target_views_replay_the_design_draw_member_subset_and_diversity():
    """With the design equal to the reference, the term is 0: the reference is rendered with the same poses, light
    and camera effects, and judged with the same input diversity and the same random member, so nothing but the
    design can differ. Any other draw or seed would make it positive."""
    from physadv.physical.attack import reference_texture
    from physadv.physical.rp2 import RP2

    members = [ClassifierVictim(tiny(s), f"m{s}", diversity=1.0) for s in range(3)]
    victim = EnsembleVictim(members, subset=1)
    scene = small_scene()
    attack = RP2(victim, scene, small_rp2(feature_weight=2.0, target="speed_limit_80"))
    target = reference_texture("speed_limit_80")
    ref = torch.nn.functional.interpolate(target[None], size=attack.clean.shape[-2:], mode="bilinear", antialias=True,
                                          align_corners=False)[0]
    for k in range(3):
        draw = scene.sample(4)
        total, terms = attack.adversarial_terms(attack.views(ref, draw), ref, draw)
        assert terms["feature"] == pytest.approx(0.0, abs=1e-9)
        assert float(total) == pytest.approx(terms["adversarial"], rel=1e-6)
        total, terms = attack.adversarial_terms(attack.views(attack.clean, draw), attack.clean, draw)
        assert terms["feature"] > 1e-3  # the stop sign is not the 80 sign
        assert float(total) == pytest.approx(terms["adversarial"] + 2.0 * terms["feature"], rel=1e-5)


def test_the_feature_term_pulls_the_design_towards_the_target():
    """A few steps with a heavy feature weight lower the term well below where the clean face starts."""
    from physadv.physical.rp2 import RP2

    victim = ClassifierVictim(tiny(0), "tiny")
    scene = small_scene()
    attack = RP2(victim, scene, small_rp2(feature_weight=50.0, steps=40, lr=0.1, mask={"kind": "poster"}, nps_weight=0.0,
                                          lam=0.0, init_noise=0.0))
    draw = scene.sample(8)
    before = attack.adversarial_terms(attack.views(attack.clean, draw), attack.clean, draw)[1]["feature"]
    result = attack.run(progress_bar=False)
    design = result.texture.to(attack.clean)
    after = attack.adversarial_terms(attack.views(design, draw), design, draw)[1]["feature"]
    assert after < 0.5 * before, (before, after)


def test_bad_feature_settings_are_one_line_errors():
    from physadv.physical.rp2 import RP2

    victim = ClassifierVictim(tiny(0), "tiny")
    scene = small_scene()
    with pytest.raises(PhysadvError, match="reference 'nope.png': neither a sign"):
        RP2(victim, scene, small_rp2(feature_weight=1.0, reference="nope.png"))
    with pytest.raises(PhysadvError, match="feature_depth in"):
        RP2(victim, scene, small_rp2(feature_weight=1.0, feature_depth=2.0))
    with pytest.raises(PhysadvError, match="needs a target"):
        RP2(victim, scene, small_rp2(feature_weight=1.0, target=None))

    class Boxes(Victim):  # a victim with no activations (as a detector): refused before any work
        name, classes, input_size = "boxes", sign_classes(), (3, 32, 32)

    with pytest.raises(PhysadvError, match="victim boxes has no activations"):
        RP2(Boxes(), scene, small_rp2(feature_weight=1.0))


def test_val_by_least_member_is_the_least_fooled_member_judged_alone():
    """An ensemble's validation success with ``val_by: least_member`` is the minimum over its members, each judged
    as a victim of its own; by default it is the fused verdict's share."""
    from physadv.core.victims import Objective
    from physadv.physical.rp2 import RP2

    scene = small_scene()
    cfg = small_rp2(target="speed_limit_80")
    draw = scene.sample(48)
    chunk = draw.split(64)[0]  # as success_rate renders it (one chunk, its own replayable seed)
    objective = Objective("targeted", "stop", "speed_limit_80")
    for order in ((0, 1, 2), (1, 2, 0)):  # the least-fooled member neither always first nor always last
        members = [ClassifierVictim(tiny(s), f"m{s}") for s in order]
        shape = RP2(members[0], scene, cfg).clean.shape[-2:]
        design = torch.rand(3, *shape, generator=torch.Generator().manual_seed(3))
        alone = [float(m.judge(RP2(m, scene, cfg).views(design, chunk), objective).success.float().mean())
                 for m in members]
        assert max(alone) > min(alone)  # the members disagree, so the minimum is a choice
        least = RP2(EnsembleVictim(members), scene, small_rp2(target="speed_limit_80", val_by="least_member"))
        assert least.success_rate(design, draw) == pytest.approx(min(alone))
        fused = RP2(EnsembleVictim(members), scene, cfg)
        verdict = fused.victim.judge(fused.views(design, chunk), objective)
        assert fused.success_rate(design, draw) == pytest.approx(float(verdict.success.float().mean()))
