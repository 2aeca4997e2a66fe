"""benchmarks/transfer_physical.py: how it judges designs (its numbers are the README's transfer tables)."""
import importlib.util
from pathlib import Path

import torch

from physadv.core.config import load_config
from physadv.core.models import build_classifier
from physadv.core.victims import ClassifierVictim, Objective
from physadv.rendering.signs.textures import sign_classes

ROOT = Path(__file__).resolve().parents[1]


def _benchmark():
    spec = importlib.util.spec_from_file_location("transfer_physical", ROOT / "benchmarks" / "transfer_physical.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _usage_error(bench, argv: list[str], capsys) -> str:
    """Run the benchmark's main on ``argv``, expect exit code 2, and return the last line of stderr."""
    import pytest

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.argv", ["transfer_physical.py", *argv])
        with pytest.raises(SystemExit) as exit_:
            bench.main()
    assert exit_.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_a_models_grid_numbers_do_not_depend_on_the_models_judging_beside_it():
    """A 32 px judge sees views rendered at 32 px whether or not a 64 px judge is in the set (rendering at 64 px and
    shrinking would average the camera noise away and move its verdicts); the 64 px judge sees 64 px views."""
    from physadv.physical.attack import PhysicalResult
    from physadv.physical.design_cli import RP2Job
    from physadv.rendering.scene import build_scene

    bench = _benchmark()
    job = load_config(RP2Job, str(ROOT / "configs/physical/rp2_zoo.yaml"),
                      ["grid.distances_ft=[5,40]", "grid.angles_deg=[0,45]", "grid.lights_per_cell=1",
                       "scene.object.texture_px=64"])
    torch.manual_seed(0)
    small = ClassifierVictim(build_classifier("gtsrb-cnn", sign_classes(), width=0.25, hidden=32).eval(), "small")
    large = ClassifierVictim(build_classifier("gtsrb-cnn", sign_classes(), input_size=(3, 64, 64), width=0.25,
                                              hidden=32).eval(), "large")
    obj = build_scene(job.scene).obj
    texture = (obj.texture + 0.3 * torch.randn(obj.texture.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    design = PhysicalResult("rp2", texture, obj.texture, obj.alpha, torch.ones(obj.alpha.shape[-2:]))

    def confidences(judges):
        _, js = bench.judge(job, design, judges, "d")
        return {(j.set, j.victim, j.distance, j.angle): (j.top1, j.top1_conf) for j in js}

    alone, both, large_alone = (confidences({"small": small}), confidences({"small": small, "large": large}),
                                confidences({"large": large}))
    assert len(alone) == 2 * 2 * 2 and len(both) == 2 * len(alone)
    assert {k: v for k, v in both.items() if k[1] == "small"} == alone
    assert {k: v for k, v in both.items() if k[1] == "large"} == large_alone
    # and the two sizes are really different views: the 32 px judge on 64 px renders would not agree with itself
    scene64 = build_scene(job.scene, min_view_px=64)
    views = scene64.render(texture, scene64.grid(job.grid))
    conf64 = small.judge(views, Objective("targeted", "stop", "speed_limit_80")).score
    conf32 = torch.tensor([v[1] for k, v in alone.items() if k[0] == "d"])
    assert not torch.allclose(conf64.float(), conf32.float(), atol=1e-4)


def test_what_a_judge_reads_is_its_commonest_class_on_the_design_not_on_the_clean_sign():
    """``read``: the class a judge gives the design's views most often, with its share (the clean sign's views,
    judged in the same run, must not count)."""
    from collections import Counter

    from physadv.physical.attack import PhysicalResult
    from physadv.physical.design_cli import RP2Job
    from physadv.rendering.scene import build_scene

    bench = _benchmark()
    job = load_config(RP2Job, str(ROOT / "configs/physical/rp2_zoo.yaml"),
                      ["grid.distances_ft=[5,20]", "grid.angles_deg=[0,45]", "grid.lights_per_cell=1", "scene.object.texture_px=64"])
    classes = sign_classes()

    class Redness(torch.nn.Module):  # reads a red view as "stop", any other as "yield"
        input_size, arch = (3, 32, 32), "redness"

        def __init__(self):
            super().__init__()
            self.classes = classes

        def forward(self, x):
            m = x.mean((2, 3))
            logits = torch.zeros(len(x), len(classes))
            logits[:, classes.index("stop")] = 10 * (m[:, 0] - m[:, 1])
            logits[:, classes.index("yield")] = 10 * (m[:, 1] - m[:, 0]) + 1
            return logits

    judge = ClassifierVictim(Redness(), "j")
    obj = build_scene(job.scene).obj
    design = PhysicalResult("rp2", torch.zeros_like(obj.texture), obj.texture, obj.alpha, torch.ones(obj.alpha.shape[-2:]))
    verdicts, js = bench.judge(job, design, {"j": judge}, "d")
    on_design = Counter(j.top1 for j in js if j.set == "d")
    assert Counter(j.top1 for j in js if j.set == "clean") != on_design  # a black face is read otherwise than the sign
    top, n = on_design.most_common(1)[0]
    assert verdicts["j"]["read"] == f"{top} ({n / sum(on_design.values()):.0%})"


def test_a_mistyped_option_is_a_one_line_usage_error_before_any_model_loads(monkeypatch, tmp_path, capsys):
    import pytest

    bench = _benchmark()
    monkeypatch.setattr(bench, "load_model", lambda name: pytest.fail(f"loaded {name} before checking the options"))
    for option, says in (("+hardend", "--option '+hardend': --set '+hardend': expected key=value"),
                         ("loss=hinge", "--option 'loss=hinge': config (configs/physical/rp2_zoo.yaml + --set): loss: 'hinge'")):
        assert says in _usage_error(bench, ["--only", "transfer_options", "--option", option, "--config",
                                            "configs/physical/rp2_zoo.yaml", "--out", str(tmp_path)], capsys)


def test_judging_under_more_lights_keeps_the_design_keys(monkeypatch, tmp_path, capsys):
    """``--judge-lights N`` changes only the grid the designs are judged on: a design cached under the config's grid is
    found (its key leaves the judging grid out), and a negative count is a usage error before any model loads."""
    import pytest

    from physadv.physical.design_cli import RP2Job

    bench = _benchmark()
    monkeypatch.setattr(bench, "load_model", lambda name: pytest.fail(f"loaded {name} before checking the arguments"))
    assert "--judge-lights -1" in _usage_error(bench, ["--judge-lights", "-1", "--out", str(tmp_path)], capsys)

    looked_up = []

    def cached_design(job, members, zoo, coverage, out, name, cached_only=False):
        looked_up.append(job.grid.lights_per_cell)  # the design key hashes the job, grid included
        return None

    monkeypatch.setattr(bench, "load_model", lambda name: torch.nn.Identity())
    monkeypatch.setattr(bench, "ClassifierVictim", lambda model, name, *a: name)
    monkeypatch.setattr(bench, "design", cached_design)
    monkeypatch.setattr(bench, "judge", lambda job, res, judges, name: pytest.fail("judged a design that does not exist"))
    monkeypatch.setattr("sys.argv", ["transfer_physical.py", "--judge-lights", "8", "--cached-only", "--only", "white_box",
                                     "--models", "gtsrb-cnn", "--out", str(tmp_path)])
    bench.main()
    job = load_config(RP2Job, str(ROOT / "configs/physical/rp2_zoo.yaml"))
    assert looked_up == [job.grid.lights_per_cell] != [8]  # the design is looked up under the config's own grid
    assert capsys.readouterr().out.count('"lights_per_cell": 8') == 1  # the JSON records the grid judged on


def test_victim_seeds_widen_the_leave_one_out_ensembles_and_leave_white_box_alone(monkeypatch, tmp_path, capsys):
    """White-box is the model itself, whatever ``victim.seeds`` says; a leave-one-out ensemble gets its members'
    copies from those seeds (loaded to judge as members); the held-out model's seeds judge beside it."""
    import pytest

    bench = _benchmark()
    monkeypatch.setattr(bench, "load_model", lambda name: pytest.fail(f"loaded {name} before checking the arguments"))
    assert "--held-out-seeds 1,x" in _usage_error(bench, ["--held-out-seeds", "1,x", "--out", str(tmp_path)], capsys)

    calls, loaded = [], []
    monkeypatch.setattr(bench, "load_model", lambda name: loaded.append(name) or torch.nn.Identity())
    monkeypatch.setattr(bench, "ClassifierVictim", lambda model, name, *a: name)
    monkeypatch.setattr(bench, "design", lambda job, members, *a, **k: calls.append((a[3], job.victim.seeds)) or None)
    monkeypatch.setattr("sys.argv", ["transfer_physical.py", "--cached-only", "--only", "white_box,leave_one_out",
                                     "--models", "gtsrb-cnn,lisa-cnn,resnet-8", "--set", "victim.seeds=[101]",
                                     "--held-out-seeds", "7", "--out", str(tmp_path)])
    bench.main()
    assert calls == [(f"wb-{m}", []) for m in ("gtsrb-cnn", "lisa-cnn", "resnet-8")] + \
                    [(f"loo-{m}", [101]) for m in ("gtsrb-cnn", "lisa-cnn", "resnet-8")]
    assert {"gtsrb-cnn@7", "lisa-cnn@7", "resnet-8@7"} <= set(loaded)  # the held-out models' other seed judges
    assert {"gtsrb-cnn@101", "lisa-cnn@101", "resnet-8@101"} <= set(loaded)  # the members' copies, judged as members


def test_the_reference_sticker_is_the_target_sign_at_the_asked_share_of_the_face():
    """The control (Brown et al. 2017's toaster): the target sign itself, shrunk to a share of the source's face.
    Checked by counting texels, and by area resampling keeping the target face's mean colour."""
    import pytest

    from physadv.core.errors import PhysadvError
    from physadv.physical.design_cli import RP2Job
    from physadv.rendering.signs.textures import sign_texture

    bench = _benchmark()
    job = load_config(RP2Job, "configs/physical/rp2_zoo.yaml")
    rgb, a = sign_texture(job.target, 512)
    target_mean = rgb[:, a[0] > 0.5].mean(1)
    for coverage in (0.15, 0.3, 0.5):
        res = bench.reference_sticker(job, coverage)
        face = res.alpha[0] > 0.5
        on = res.mask > 0.5
        assert abs(float(on.sum()) / float(face.sum()) - coverage) < 0.02
        assert not (on & ~face).any()
        assert torch.equal(res.texture[:, ~on], res.clean[:, ~on])  # nothing but the sticker changes
        assert (res.texture[:, on].mean(1) - target_mean).abs().max() < 0.04, coverage
    with pytest.raises(PhysadvError, match=job.target):
        bench.reference_sticker(job, 1.0)  # the round sign cannot cover the whole octagon


def test_the_in_place_reference_shows_the_target_at_full_size_through_a_central_disc():
    """The in-place control: the target's own face at the source's texture size, seen only through the share of the
    face nearest the centre. Checked by counting texels, by distances to the centre, and against the drawing."""
    from physadv.physical.design_cli import RP2Job
    from physadv.rendering.signs.textures import sign_texture

    bench = _benchmark()
    job = load_config(RP2Job, "configs/physical/rp2_zoo.yaml")
    for coverage in (0.15, 0.3, 0.5):
        res = bench.reference_sticker(job, coverage, "in place")
        h, w = res.mask.shape
        face, on = res.alpha[0] > 0.5, res.mask > 0.5
        assert abs(float(on.sum()) / float(face.sum()) - coverage) < 0.02
        yy, xx = torch.meshgrid(torch.arange(h) - (h - 1) / 2, torch.arange(w) - (w - 1) / 2, indexing="ij")
        r = (yy ** 2 + xx ** 2).sqrt()
        assert r[on].max() <= r[face & ~on].min()  # a disc: every texel on is nearer the centre than any face texel off
        assert torch.equal(res.texture[:, on], sign_texture(job.target, h)[0][:, on])
        assert torch.equal(res.texture[:, ~on], res.clean[:, ~on])


def test_held_out_seeds_load_only_the_held_out_models_copies(monkeypatch, tmp_path):
    """``--held-out M --held-out-seeds S`` judges beside M its copies M@S, and loads (so trains, on a first run) no
    other model's copies from those seeds."""
    bench = _benchmark()
    loaded = []
    monkeypatch.setattr(bench, "load_model", lambda name: loaded.append(name) or torch.nn.Identity())
    monkeypatch.setattr(bench, "ClassifierVictim", lambda model, name, *a: name)
    monkeypatch.setattr(bench, "design", lambda *a, **k: None)
    monkeypatch.setattr("sys.argv", ["transfer_physical.py", "--cached-only", "--only", "leave_one_out",
                                     "--models", "gtsrb-cnn,lisa-cnn,resnet-8", "--held-out", "lisa-cnn",
                                     "--held-out-seeds", "7,8", "--out", str(tmp_path)])
    bench.main()
    assert sorted(n for n in loaded if "@" in n) == ["lisa-cnn@7", "lisa-cnn@8"]


def test_robust_copies_are_the_members_and_the_plain_others_are_judged_apart(monkeypatch, tmp_path):
    """``victim.robust_eps_255``: the leave-one-out ensemble is the other models' robust copies (``NAME+pgdEPS``, loaded
    to judge as members), never the held-out model's; ``members_targeted_min`` is the copies' least verdict and
    ``others_targeted_min`` the plain other models', which judge the design without being members."""
    import json
    from types import SimpleNamespace

    bench = _benchmark()
    loaded, teams = [], []
    fooled = {"gtsrb-cnn": 0.2, "lisa-cnn": 0.6, "resnet-8": 0.7, "lisa-cnn+pgd1": 0.95, "resnet-8+pgd1": 0.9}
    monkeypatch.setattr(bench, "load_model", lambda name: loaded.append(name) or torch.nn.Identity())
    monkeypatch.setattr(bench, "ClassifierVictim", lambda model, name, *a: name)
    monkeypatch.setattr(bench, "design", lambda job, members, *a, **k: teams.append(members)
                        or SimpleNamespace(coverage=0.3, timings={}))
    monkeypatch.setattr(bench, "design_extras", lambda res: {})
    monkeypatch.setattr(bench, "judge", lambda job, res, judges, name: ({m: {
        "targeted": fooled[m], "untargeted": 1.0, "read": "x", "targeted_ci95": [0, 1], "by_distance": {}}
        for m in judges}, []))
    monkeypatch.setattr("sys.argv", ["transfer_physical.py", "--only", "leave_one_out", "--held-out", "gtsrb-cnn",
                                     "--models", "gtsrb-cnn,lisa-cnn,resnet-8", "--set", "victim.robust_eps_255=1",
                                     "--out", str(tmp_path)])
    bench.main()
    [row] = json.loads((tmp_path / "result.json").read_text())["leave_one_out"]
    assert teams == [["lisa-cnn", "resnet-8"]] and "gtsrb-cnn+pgd1" not in loaded
    assert {"lisa-cnn+pgd1", "resnet-8+pgd1"} <= set(loaded)
    assert (row["targeted"], row["members_targeted_min"], row["least_member"], row["others_targeted_min"]) == \
        (0.2, 0.9, "resnet-8+pgd1", 0.6)


def test_a_cached_design_made_against_other_weights_of_a_member_is_refused(tmp_path):
    """The design key names the members, not their weights: a design is found again while its members' weights are
    the ones the attack recorded, and refused (one line naming the file and the member) once a member changed."""
    import pytest

    from physadv.core.errors import PhysadvError
    from physadv.physical.design_cli import RP2Job

    bench = _benchmark()
    job = load_config(RP2Job, str(ROOT / "configs/physical/rp2_zoo.yaml"),
                      ["steps=2", "search_steps=5", "restarts=1", "val_views=4", "val_every=1", "batch=2"])
    torch.manual_seed(0)
    zoo = {n: build_classifier("lisa-cnn", sign_classes(), input_size=(3, 32, 32), width=0.25).eval() for n in ("m1", "m2")}
    made = bench.design(job, ["m1", "m2"], zoo, 0.3, tmp_path, "d")
    assert set(made.victim["weights"]) == {"m1", "m2"}
    again = bench.design(job, ["m1", "m2"], zoo, 0.3, tmp_path, "d", cached_only=True)
    assert torch.equal(again.texture, made.texture)
    with torch.no_grad():
        next(zoo["m2"].parameters()).add_(1e-3)
    with pytest.raises(PhysadvError, match=r"d-\w+\.safetensors: designed against other weights of m2 than"):
        bench.design(job, ["m1", "m2"], zoo, 0.3, tmp_path, "d", cached_only=True)
