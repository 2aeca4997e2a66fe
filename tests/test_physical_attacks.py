"""physical/: RP2, EOT (2D and 3D) and the patch as classes with one call shape, on small problems whose properties
must hold; checkpoints, exact resume and SIGKILL; any object; ensembles and bring-your-own classifiers through the
command line.

The sign classifier's own bars are in the slow tests; here a randomly initialised GTSRB-CNN (or the cached LeNet)
keeps everything fast while the properties still have to hold.
"""
import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch

from physadv.core.config import from_dict
from physadv.core.errors import PhysadvError
from physadv.core.models import build_classifier
from physadv.core.victims import ClassifierVictim, Objective
from physadv.rendering.signs.textures import sign_classes

SMALL_WORLD = {"texture_px": 64, "work_px": 32, "supersample": 1}


@pytest.fixture(scope="module")
def random_sign_model():
    torch.manual_seed(0)
    return build_classifier("gtsrb-cnn", sign_classes(), width=0.25, hidden=64).eval()


@pytest.fixture(scope="module")
def victim(random_sign_model):
    return ClassifierVictim(random_sign_model, "random")


def small_scene(**over):
    from physadv.rendering.scene import SceneConfig, build_scene

    cfg = {"object": {"kind": "sign", "sign": "stop", "texture_px": 64}, "world": SMALL_WORLD}
    cfg.update(over)
    return build_scene(from_dict(SceneConfig, cfg, "test"))


def small_rp2(**over):
    from physadv.physical.rp2 import RP2Config

    base = {"steps": 4, "batch": 4, "val_views": 4, "val_every": 1, "checkpoint_every": 2}
    base.update(over)
    return from_dict(RP2Config, base, "test")


def test_rp2_changes_only_the_mask_and_resumes_exactly(victim, tmp_path):
    # exact resume is a statement about one machine and one thread count (parallel reductions may reorder sums)
    from physadv.physical.rp2 import RP2
    from physadv.rendering.signs.world import one_thread

    with one_thread():
        r = RP2(victim, small_scene(), small_rp2()).run(progress_bar=False)
        outside = r.mask == 0
        assert torch.equal(r.texture[:, outside], r.clean[:, outside])
        assert (r.texture[:, r.mask > 0] - r.clean[:, r.mask > 0]).abs().max() > 0.01
        assert 0 < r.coverage <= 0.15 and r.stickers.shape == (4, 64, 64)
        assert set(k.split("/")[1] for k in r.history) >= {"adversarial", "norm", "nps", "val_success"}
        # exact resume of an interrupted run: test_sigkill_during_a_design_loses_at_most_one_checkpoint_interval


def test_a_checkpoint_of_another_config_lends_nothing(victim, tmp_path):
    """A run finds a finished design's checkpoint at its path, made at another coverage (the benchmark's coverage
    curve names one checkpoint per model): it must search its own mask, not resume the other one's."""
    from physadv.core.io import load_checkpoint
    from physadv.physical.rp2 import RP2
    from physadv.rendering.signs.world import one_thread

    search = lambda c: small_rp2(mask={"kind": "search", "coverage": c, "max_coverage": 0.3}, search_steps=2)  # noqa: E731
    ck = tmp_path / "ck.safetensors"
    with one_thread():
        small = RP2(victim, small_scene(), search(0.1)).run(ck, progress_bar=False)
        assert load_checkpoint(ck)[1]["phase"] == "rp2"  # finished: its mask is in the checkpoint
        over = RP2(victim, small_scene(), search(0.3)).run(ck, progress_bar=False)
        fresh = RP2(victim, small_scene(), search(0.3)).run(progress_bar=False)
    assert small.coverage == pytest.approx(0.1, abs=0.01) and over.coverage == pytest.approx(0.3, abs=0.01)
    assert torch.equal(over.mask, fresh.mask) and torch.equal(over.texture, fresh.texture)


def test_a_checkpoint_made_against_other_weights_lends_nothing(random_sign_model, victim, tmp_path):
    """A finished design's checkpoint at the path, made against the same victim name with other weights (a model
    retrained under its name): the run designs afresh against these weights, and records their fingerprint."""
    import copy

    from physadv.physical.rp2 import RP2
    from physadv.rendering.signs.world import one_thread

    other = copy.deepcopy(random_sign_model)
    with torch.no_grad():
        next(other.parameters()).add_(1e-2)
    moved = ClassifierVictim(other, "random")
    ck = tmp_path / "ck.safetensors"
    with one_thread():
        RP2(victim, small_scene(), small_rp2()).run(ck, progress_bar=False)
        again = RP2(moved, small_scene(), small_rp2()).run(ck, progress_bar=False)
        fresh = RP2(moved, small_scene(), small_rp2()).run(progress_bar=False)
    assert torch.equal(again.texture, fresh.texture) and again.victim["weights"] == fresh.victim["weights"]
    assert again.victim["weights"] != RP2(victim, small_scene(), small_rp2()).victim_weights


KILL_SCRIPT = """
import sys, torch
from physadv.core.config import from_dict
from physadv.core.models import build_classifier
from physadv.core.victims import ClassifierVictim
from physadv.physical.rp2 import RP2, RP2Config
from physadv.rendering.scene import SceneConfig, build_scene
from physadv.rendering.signs.textures import sign_classes
torch.set_num_threads(1)
torch.manual_seed(0)
model = build_classifier("gtsrb-cnn", sign_classes(), width=0.25, hidden=64).eval()
scene = build_scene(from_dict(SceneConfig, {"object": {"texture_px": 64}, "world": %r}, "t"))
cfg = from_dict(RP2Config, {"steps": int(sys.argv[2]), "batch": 4, "val_views": 4, "val_every": 3, "checkpoint_every": 3,
                            "lr_schedule": "constant", "mask": {"kind": "search", "coverage": 0.15}, "search_steps": 3}, "t")
r = RP2(ClassifierVictim(model), scene, cfg).run(sys.argv[1], progress_bar=False)
r.save(sys.argv[3])
""" % SMALL_WORLD


def test_sigkill_during_a_design_loses_at_most_one_checkpoint_interval(tmp_path):
    from physadv.core.io import load_checkpoint
    from physadv.physical.attack import PhysicalResult

    script = tmp_path / "design.py"
    script.write_text(KILL_SCRIPT)
    ck, steps = tmp_path / "ck.safetensors", 60
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(script), str(ck), str(steps), str(tmp_path / "killed.safetensors")], env=env)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if ck.is_file() and load_checkpoint(ck)[1].get("phase") == "rp2" and load_checkpoint(ck)[1]["step"] >= 6:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    meta = load_checkpoint(ck)[1]  # readable: written atomically
    assert meta["phase"] == "rp2" and 6 <= meta["step"] < steps
    for out, ckpt in (("resumed", ck), ("straight", tmp_path / "fresh.safetensors")):
        subprocess.run([sys.executable, str(script), str(ckpt), str(steps), str(tmp_path / f"{out}.safetensors")],
                       env=env, check=True)
    resumed, straight = (PhysicalResult.load(tmp_path / f"{o}.safetensors") for o in ("resumed", "straight"))
    assert torch.equal(resumed.texture, straight.texture) and torch.equal(resumed.mask, straight.mask)


def test_translation_invariant_steps_on_the_gradient_smoothed_as_opencv_smooths_it(victim):
    """TI (Dong et al. 2019, eq. 8) with MI-FGSM's sign step: the first step is ``-lr * sign(W * grad)``, ``W`` the
    Gaussian kernel; the reference gradient is taken on the same views and blurred by OpenCV (reflected borders)."""
    from physadv.physical.attack import translation_invariant
    from physadv.physical.rp2 import RP2

    g = torch.randn(3, 20, 24, dtype=torch.float64)
    ref = np.stack([cv2.GaussianBlur(c, (13, 13), 2.0, borderType=cv2.BORDER_REFLECT_101) for c in g.numpy()])
    assert np.allclose(translation_invariant(g, 2.0).numpy(), ref, atol=1e-10)

    scene = small_scene()
    attack = RP2(victim, scene, small_rp2(grad_sigma=2.0, optimizer="momentum", lr=0.01, mask={"kind": "poster"}))
    w0, val = attack.start(), scene.sample(4)
    state = scene.state()
    draw = scene.sample(attack.cfg.batch)  # the views the step will draw
    scene.restore(state)
    w = w0.clone().requires_grad_(True)
    attack.loss(w, draw)[0].backward()
    smooth = np.stack([cv2.GaussianBlur(c, (13, 13), 2.0, borderType=cv2.BORDER_REFLECT_101) for c in w.grad.numpy()])
    w1, _, _ = attack.optimise(w0, 1, val, None, "ti", progress_bar=False)
    step = np.sign((w0 - w1).numpy())
    sure = np.abs(smooth) > 1e-3 * np.abs(smooth).max()  # away from the blurred gradient's zeros (float32 ties)
    assert sure.mean() > 0.5
    assert np.array_equal(step[sure], np.sign(smooth[sure]))
    assert (np.sign(w.grad.numpy()) != np.sign(smooth))[sure].mean() > 0.05  # the raw gradient's signs would differ


def test_view_balance_steps_on_the_soft_maximum_of_the_views_losses(victim):
    """Min-max over views: by Danskin's theorem the entropy-regularised maximum ``T log sum_v exp(L_v / T)`` has the
    gradient ``softmax(L / T) . grad L``, which is the step ``view_balance`` = T takes; T -> 0 is the hardest view's
    loss, T -> infinity the mean (EOT)."""
    from physadv.physical.attack import view_weighted
    from physadv.physical.rp2 import RP2

    losses = torch.tensor([0.1, 0.4, 2.0, 0.3], dtype=torch.float64)
    assert float(view_weighted(losses, 1e-3)) == pytest.approx(2.0)
    assert float(view_weighted(losses, 1e4)) == pytest.approx(float(losses.mean()), abs=1e-3)

    scene, T = small_scene(), 0.002  # the untrained victim's losses differ by thousandths
    attack = RP2(victim, scene, small_rp2(view_balance=T, lam=0.0, nps_weight=0.0, batch=8, mask={"kind": "poster"}))
    w, draw = attack.start(), scene.sample(8)
    w1 = w.clone().requires_grad_(True)
    attack.loss(w1, draw)[0].backward()
    w2 = w.clone().requires_grad_(True)
    per_view = victim.loss(attack.views(attack.design(w2), draw), attack.objective)
    p = torch.softmax(per_view.detach() / T, 0)
    assert p.max() > 5 * p.min()  # views that weigh differently
    (T * torch.logsumexp(per_view / T, 0)).backward()
    assert torch.allclose(w1.grad, w2.grad, rtol=1e-4, atol=1e-7)
    w3 = w.clone().requires_grad_(True)
    victim.loss(attack.views(attack.design(w3), draw), attack.objective).mean().backward()
    assert not torch.allclose(w1.grad, w3.grad, rtol=1e-2, atol=1e-6)  # the plain mean steps elsewhere


def test_rp2_bad_input(victim):
    from physadv.physical.rp2 import RP2

    with pytest.raises(PhysadvError, match="speed_limit_90"):
        RP2(victim, small_scene(), small_rp2(target="speed_limit_90"))
    with pytest.raises(PhysadvError, match="more than the allowed"):
        RP2(victim, small_scene(), small_rp2(mask={"kind": "poster", "max_coverage": 0.15})).run(progress_bar=False)
    with pytest.raises(PhysadvError, match="off the object"):
        RP2(victim, small_scene(), small_rp2(mask={"kind": "rectangles", "rects": [[0.0, 0.0, 0.08, 0.08]]})).run(
            progress_bar=False)
    with pytest.raises(PhysadvError, match="grad_sigma.*-1"):
        small_rp2(grad_sigma=-1.0)
    with pytest.raises(PhysadvError, match="view_balance.*-0.5"):
        small_rp2(view_balance=-0.5)


def test_a_nan_loss_keeps_the_best_design(victim, tmp_path, monkeypatch):
    from physadv.physical.rp2 import RP2

    calls = {"n": 0}
    real = RP2.loss

    def flaky(self, *a, **k):
        total, terms = real(self, *a, **k)
        calls["n"] += 1
        return (total * float("nan"), terms) if calls["n"] >= 3 else (total, terms)

    monkeypatch.setattr(RP2, "loss", flaky)
    with pytest.raises(PhysadvError, match="diverged.*best design so far is saved"):
        RP2(victim, small_scene(), small_rp2()).run(tmp_path / "ck.safetensors", progress_bar=False)
    assert (tmp_path / "best_texture.png").is_file() and (tmp_path / "best_texture.safetensors").is_file()


def test_grid_judges_every_cell_by_every_victim_on_shared_views(victim):
    from physadv.physical.evaluate import face, judge_grid
    from physadv.rendering.scene import GridSpec

    scene = small_scene()
    other = ClassifierVictim(build_classifier("gtsrb-cnn", sign_classes(), width=0.25, hidden=32).eval(), "other")
    grid = GridSpec(distances_ft=(5, 40), angles_deg=(0, 60), lights_per_cell=2)
    objective = Objective("targeted", "stop", "speed_limit_80")
    renders = {"clean": face(scene, scene.obj.texture), "adversarial": face(scene, 1 - scene.obj.texture)}
    js = judge_grid(scene, renders, {"random": victim, "other": other}, objective, grid, progress_bar=False)
    assert len(js) == 2 * 2 * 2 * 2 * 2  # distances x angles x lights x sets x victims
    assert {(j.distance, j.angle) for j in js} == {(5, 0), (5, 60), (40, 0), (40, 60)}
    for j in js:
        assert j.top1_conf >= j.top2_conf and abs(sum(j.probs) - 1) < 1e-3
        assert j.probs[sign_classes().index(j.top1)] >= max(j.probs) - 1e-4
    # the same grid again gives the same verdicts (views replay)
    again = judge_grid(scene, renders, {"random": victim}, objective, grid, progress_bar=False)
    assert [j.probs for j in again] == [j.probs for j in js if j.victim == "random"]


def test_each_judge_sees_the_grid_at_its_own_input_size(victim):
    """A 32 px judge's verdicts do not change when a 64 px judge judges beside it: each sees the grid rendered at its
    own size (as the designs were optimised), not the largest judge's views shrunk (which do change its verdicts)."""
    from physadv.physical.attack import PhysicalResult
    from physadv.physical.detect import judge_grid_each_size
    from physadv.physical.evaluate import face, judge_grid
    from physadv.rendering.scene import GridSpec

    torch.manual_seed(1)
    big = ClassifierVictim(build_classifier("gtsrb-cnn", sign_classes(), (3, 64, 64), width=0.25, hidden=32).eval(), "big")
    scenes = {px: small_scene(view_px=px) for px in (32, 64)}
    grid = GridSpec(distances_ft=(5, 40), angles_deg=(0, 60), lights_per_cell=1)
    objective = Objective("targeted", "stop", "speed_limit_80")
    s32 = scenes[32]
    design = PhysicalResult("rp2", 1 - s32.obj.texture, s32.obj.texture, s32.obj.alpha, torch.ones(s32.obj.alpha.shape[-2:]))
    js, _ = judge_grid_each_size(scenes.__getitem__, {"adv": design}, {"random": victim, "big": big}, objective, grid,
                                 progress_bar=False)

    def probs(judgements, name):
        return [j.probs for j in judgements if j.victim == name and j.set == "adv"]

    def alone(px, v):
        sc = scenes[px]
        return judge_grid(sc, {"adv": face(sc, 1 - sc.obj.texture)}, {v.name: v}, objective, grid, progress_bar=False)

    assert len(probs(js, "random")) == len(probs(js, "big")) == 4
    assert probs(js, "random") == probs(alone(32, victim), "random")
    assert probs(js, "big") == probs(alone(64, big), "big")
    shrunk = np.array(probs(alone(64, victim), "random"))  # the old way: the largest judge's views, resized
    assert np.abs(shrunk - np.array(probs(js, "random"))).max() > 1e-4


def test_eot_2d_beats_the_clean_image_and_respects_eps(lenet_mnist, mnist_test):
    from physadv.physical.eot import EOT, EOTConfig
    from physadv.rendering.scene import GridSpec, SceneConfig, build_scene

    idx = int(torch.nonzero(mnist_test.labels == 7)[0])
    scene = build_scene(from_dict(SceneConfig, {"kind": "flat", "object": {"kind": "dataset", "dataset": "mnist", "index": idx}}))
    cfg = from_dict(EOTConfig, {"source": "", "target": "3", "steps": 40, "batch": 16, "lr": 0.05, "eps": 0.3, "lam": 0.0,
                                "val_views": 32, "val_every": 10})
    attack = EOT(ClassifierVictim(lenet_mnist), scene, cfg)
    assert attack.objective.source == "7"  # the dataset image's own label
    r = attack.run(progress_bar=False)
    assert r.metrics["linf"] <= 0.3 + 1e-6
    fresh = scene.grid(GridSpec(flat_views=200))
    assert attack.success_rate(r.clean, fresh) < 0.05 and attack.success_rate(r.texture, fresh) > 0.5
    with pytest.raises(PhysadvError, match="'12' is not one of"):
        EOT(ClassifierVictim(lenet_mnist), scene, from_dict(EOTConfig, {"source": "", "target": "12"}))


def test_patch_outperforms_no_patch(lenet_mnist):
    from physadv.physical.patch import Patch, PatchConfig
    from physadv.rendering.scene import GridSpec, SceneConfig, build_scene

    scene = build_scene(from_dict(SceneConfig, {"kind": "flat", "carriers": "mnist", "carriers_limit": 500,
                                                "flat": {"rotation_deg": [0, 0], "scale": [1, 1], "translate": 0.0,
                                                         "brightness": [0, 0], "noise_std": [0, 0]}}), exclude_class="8")
    cfg = from_dict(PatchConfig, {"target": "8", "patch_px": 12, "placement": {"area": [0.15, 0.25], "rotation_deg": [-20, 20]},
                                  "steps": 60, "batch": 32, "lr": 0.2, "val_views": 64, "val_every": 20}, "t")
    attack = Patch(ClassifierVictim(lenet_mnist), scene, cfg)
    r = attack.run(progress_bar=False)
    fresh = scene.grid(GridSpec(flat_views=200))
    with torch.no_grad():
        base = ClassifierVictim(lenet_mnist).judge(scene.render(scene.carriers(fresh), fresh), attack.objective).success
    assert attack.success_rate(r.texture, fresh) > float(base.float().mean()) + 0.2


def test_eot_3d_paints_only_the_sign_face(victim):
    from physadv.physical.eot import EOT, EOTConfig

    scene = small_scene(kind="mesh", mesh={"image_size": [48, 48], "pool_size": 4})
    r = EOT(victim, scene, from_dict(EOTConfig, {"steps": 2, "batch": 4, "val_views": 4, "lr": 0.05})).run(progress_bar=False)
    off = scene.obj.alpha[0] <= 0.5
    assert torch.equal(r.texture[:, off], r.clean[:, off]) and (r.texture - r.clean).abs().max() > 0
    assert r.metrics["mean_delta_e_texture"] > 0


def _save_random(tmp_path, name="model.safetensors", seed=0):
    from physadv.core.train import save_classifier

    torch.manual_seed(seed)
    path = tmp_path / name
    save_classifier(path, build_classifier("gtsrb-cnn", sign_classes(), width=0.25, hidden=64).eval())
    return path


def test_design_eot3d_job_writes_texture_mesh_views_and_report(tmp_path):
    from physadv.physical.cli import main

    out = tmp_path / "run"
    assert main(["design", "eot3d", "--out", str(out), "--victim", str(_save_random(tmp_path)), "--set", "steps=2",
                 "--set", "scene.mesh.pool_size=3", "--set", "scene.object.texture_px=48", "--set", "val_views=4",
                 "--set", "scene.mesh.image_size=[48, 48]", "--set", "grid.distances_ft=[10]", "--set", "grid.angles_deg=[0]",
                 "--set", "device=cpu"]) == 0
    for name in ("design.safetensors", "texture.png", "texture.safetensors", "textured.glb", "views.png", "loss.png",
                 "config.yaml", "report.html", "grid/grid.md", "grid/views.csv"):
        assert (out / name).is_file(), name
    m = json.loads((out / "metrics.json").read_text())
    assert m["attack"] == "eot" and m["grid"]["model"]["adversarial"]["views"] == 2
    assert "data:image/png;base64," in (out / "report.html").read_text()


def read_texture_rgb(path):
    from physadv.core.io import read_image

    return read_image(path, mode="RGB").permute(1, 2, 0).numpy()


def sign_like_png(path):
    """A sign the sign world never drew: a yellow rounded rectangle with a word in PIL's font (not Hershey)."""
    from PIL import Image, ImageDraw, ImageFont

    im = Image.new("RGBA", (300, 200), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    d.rounded_rectangle((6, 6, 294, 194), radius=30, fill=(250, 200, 20, 255), outline=(20, 20, 20, 255), width=10)
    d.text((40, 70), "SLOW", fill=(15, 15, 15, 255), font=ImageFont.load_default(size=60))
    im.save(path)
    return path


def test_rp2_on_an_object_the_world_never_drew_designs_judges_and_exports(tmp_path):
    from physadv.core.io import read_image
    from physadv.physical.cli import main

    png = sign_like_png(tmp_path / "slow.png")
    run = tmp_path / "rp2"
    assert main(["design", "rp2", "--object", str(png), "--width", "45cm", "--victim", str(_save_random(tmp_path)),
                 "--out", str(run), "--set", "steps=3", "--set", "val_views=4", "--set", "mask.kind=search",
                 "--set", "search_steps=2", "--set", "mask.coverage=0.1", "--set", "grid.lights_per_cell=1",
                 "--set", "grid.distances_ft=[5, 30]", "--set", "grid.angles_deg=[0, 45]", "--set", "device=cpu"]) == 0
    m = json.loads((run / "metrics.json").read_text())
    assert m["object"]["width_m"] == pytest.approx(0.45) and m["object"]["height_m"] == pytest.approx(0.30, abs=0.01)
    tex = read_image(run / "texture.png", mode="RGBA")
    assert tex.shape[1:] == (85, 128)  # the object's aspect ratio at 128 texels across
    assert m["grid"]["model"]["adversarial"]["views"] == 4 and 0.05 < m["metrics"]["coverage"] <= 0.15
    grid = tmp_path / "grid"
    assert main(["evaluate", "grid", "--texture", str(run / "design.safetensors"), "--object", str(png), "--width", "45cm",
                 "--victim", str(tmp_path / "model.safetensors"), "--out", str(grid), "--set", "grid.lights_per_cell=1",
                 "--set", "grid.distances_ft=[10]", "--set", "grid.angles_deg=[15]", "--set", "device=cpu"]) == 0
    assert json.loads((grid / "metrics.json").read_text())["grid"]["model"]["clean"]["views"] == 1
    printed = tmp_path / "print"  # the design knows its object's width: the print is true to size without --width
    assert main(["print", "export", "--texture", str(run / "texture.safetensors"), "--out", str(printed)]) == 0
    layout = json.loads((printed / "layout.json").read_text())
    assert layout["object_rect"]["width"] == pytest.approx(450, abs=1) and layout["object_rect"]["height"] == pytest.approx(300, abs=5)


def test_ensemble_victim_from_the_command_line(tmp_path):
    from physadv.physical.cli import main

    a, b = _save_random(tmp_path, "a.safetensors", 1), _save_random(tmp_path, "b.safetensors", 2)
    out = tmp_path / "ens"
    assert main(["design", "rp2", "--victim", f"{a},{b}", "--out", str(out), "--set", "steps=2", "--set", "val_views=4",
                 "--set", "grid.lights_per_cell=1", "--set", "grid.distances_ft=[10]", "--set", "grid.angles_deg=[0]",
                 "--set", "victim.fusion=sum_losses", "--set", "device=cpu",
                 "--set", "scene.object.texture_px=64", "--set", "scene.world.work_px=32"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["grid"]) == {"a+b", "a", "b"}  # the ensemble and each member judge the grid
    (row,) = m["transfer"]  # one design, judged by every model: the transfer matrix's row
    assert row["victim"] == "a+b" and {"targeted:a", "untargeted:b", "coverage", "mean_delta_e"} <= set(row)
    assert (out / "grid" / "transfer.csv").is_file() and (out / "grid" / "transfer_targeted.png").is_file()


def test_bring_your_own_imagenet_classifier_end_to_end(tmp_path):
    """A torchvision ImageNet architecture with random weights saved to a file runs through design, evaluate grid and
    capture eval with ImageNet class names and its own preprocessing (the numbers mean nothing)."""
    import torchvision

    from physadv.physical.cli import main

    weights = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None, num_classes=1000).state_dict(), weights)
    spec = f"resnet18={weights}"
    common = ["--set", "grid.lights_per_cell=1", "--set", "grid.distances_ft=[10]", "--set", "grid.angles_deg=[0]",
              "--set", "device=cpu", "--set", "scene.world.work_px=224"]
    run = tmp_path / "design"
    assert main(["design", "rp2", "--victim", spec, "--out", str(run), "--set", "steps=1", "--set", "batch=2",
                 "--set", "val_views=2", "--set", "source=", "--set", "target=street sign", *common]) == 0
    m = json.loads((run / "metrics.json").read_text())
    assert m["objective"]["target"] == "street sign" and m["grid"]["resnet18"]["adversarial"]["views"] == 1
    assert main(["evaluate", "grid", "--texture", str(run / "design.safetensors"), "--victim", spec, "--out",
                 str(tmp_path / "grid"), "--set", "source=", "--set", "target=street sign", *common]) == 0
    photo = np.full((240, 320, 3), 200, np.uint8)  # a photo with the sign's corners in the manifest
    sign = cv2.resize((read_texture_rgb(run / "texture.png") * 255).astype(np.uint8), (120, 120))
    photo[60:180, 100:220] = sign
    cv2.imwrite(str(tmp_path / "p.jpg"), photo[..., ::-1])
    (tmp_path / "m.csv").write_text("file,distance,distance_unit,angle,light,notes,x0,y0,x1,y1,x2,y2,x3,y3\n"
                                    "p.jpg,10,ft,0,normal,,100,60,220,60,220,180,100,180\n")
    assert main(["capture", "eval", "--manifest", str(tmp_path / "m.csv"), "--model", "resnet18", "--weights", str(weights),
                 "--out", str(tmp_path / "cap"), "--set", "judge.target_class=street sign"]) == 0
    cap = json.loads((tmp_path / "cap" / "metrics.json").read_text())
    assert cap["by_status"] == {"ok": 1} and cap["target_class"] == "street sign"
    # weights of another architecture: a one-line error, exit code 2
    assert main(["design", "rp2", "--victim", f"resnet50={weights}", "--out", str(tmp_path / "x"), *common]) == 2


def test_a_shrinking_mask_search_keeps_each_round_inside_the_last(victim, monkeypatch):
    from physadv.physical import masks as M
    from physadv.physical.rp2 import RP2

    masks = []
    real = M.search_mask

    def spy(delta, region, coverage, blob=3, face=None):
        out = real(delta, region, coverage, blob, face)
        masks.append((region.clone(), out.clone(), coverage))
        return out

    monkeypatch.setattr(M, "search_mask", spy)
    cfg = small_rp2(steps=2, search_steps=6, mask={"kind": "search", "coverage": 0.1, "max_coverage": 0.1,
                                                   "search_rounds": 3, "warm_start": True})
    r = RP2(victim, small_scene(), cfg).run(progress_bar=False)
    assert [round(c, 4) for _, _, c in masks] == [round(0.1 ** (k / 3), 4) for k in (1, 2, 3)]
    face = float((r.alpha > 0.5).sum())
    for region, out, coverage in masks:
        assert float((out * (1 - region)).sum()) == 0  # each round keeps a part of the last round's mask
        assert float(out.sum()) / face == pytest.approx(coverage, abs=0.02)
    assert torch.equal(r.mask, masks[-1][1]) and r.coverage == pytest.approx(0.1, abs=0.02)


class _TopThirdReader(torch.nn.Module):
    """A classifier that sees only the top third of a view: the target's logit rises ten times as fast as the mean
    green there (from 0 at a green of 0.6)."""

    def __init__(self, target: int, classes: int):
        super().__init__()
        self.target, self.classes = target, classes

    def forward(self, x):
        out = torch.zeros(len(x), self.classes)
        out[:, self.target] = 10 * (x[:, 1, : x.shape[2] // 3].mean((1, 2)) - 0.6)
        return out


def test_the_taylor_mask_score_keeps_what_the_victim_reads_not_what_is_largest():
    """A perturbation twice as strong on the bottom third of the face as on the top third, against a victim that
    reads only the top third of each view: RP2's magnitude keeps the bottom (useless) texels; the gradient score
    (first-order Taylor at the design, or integrated gradients from the clean face) gives the bottom nothing and
    keeps the top."""
    from physadv.core.models import Classifier
    from physadv.physical import masks as M
    from physadv.physical.attack import atanh_of
    from physadv.physical.rp2 import RP2

    classes = sign_classes()
    reader = Classifier(_TopThirdReader(classes.index("speed_limit_80"), len(classes)), classes, (3, 32, 32),
                        [0, 0, 0], [1, 1, 1], arch="top-third")
    scene = small_scene()
    face = (scene.obj.alpha[0] > 0.5).float()
    rows = torch.arange(64)[:, None].expand(64, 64)
    top, bottom = (rows < 18).float() * face, (rows >= 46).float() * face
    x = scene.obj.texture.clone()
    x[1] = (x[1] + 0.3 * top + 0.6 * bottom).clamp(0, 1)
    scores = {}
    for kind, steps in (("magnitude", 1), ("taylor", 1), ("integrated", 3)):
        att = RP2(ClassifierVictim(reader, "top-third"), scene,
                  small_rp2(mask={"kind": "search", "score": "magnitude" if kind == "magnitude" else "gradient",
                                  "score_steps": steps, "score_views": 16, "coverage": 0.15}))
        score = att.texel_score(atanh_of(x))
        mask = M.search_mask(score, face, 0.15)
        scores[kind] = (float((score * bottom).sum() / score.sum()), float((mask * top).sum() / mask.sum()),
                        float((mask * bottom).sum() / mask.sum()))
    assert scores["magnitude"][2] > 0.9  # the largest perturbation: the bottom
    for kind in ("taylor", "integrated"):
        assert scores[kind][0] < 0.01 and scores[kind][1] > 0.9


def test_integrated_gradients_sum_to_the_loss_fall_from_the_clean_face():
    """Completeness (Sundararajan et al. 2017): the texels' attributions add up to J(clean) - J(design) on the same
    views, the loss evaluated directly at both ends; one Taylor point at the design does not."""
    from physadv.core.models import Classifier
    from physadv.physical.rp2 import RP2

    classes = sign_classes()
    reader = Classifier(_TopThirdReader(classes.index("speed_limit_80"), len(classes)), classes, (3, 32, 32),
                        [0, 0, 0], [1, 1, 1], arch="top-third")
    scene = small_scene()
    x = scene.obj.texture.clone()
    x[1] = (x[1] + 0.5 * (scene.obj.alpha[0] > 0.5)).clamp(0, 1)  # much greener: the loss falls by a lot
    sums = {}
    for steps in (1, 32):
        att = RP2(ClassifierVictim(reader, "top-third"), scene,
                  small_rp2(mask={"kind": "search", "score": "gradient", "score_steps": steps, "score_views": 8}))
        state = scene.state()
        sums[steps] = float(att.attribution(x).sum())
        scene.restore(state)
        with torch.no_grad():
            draw = scene.sample(4), scene.sample(4)  # the same views, in the batches of small_rp2 (4)
            fall = sum(float(att.adversarial_loss(att.views(scene.obj.texture, d)) - att.adversarial_loss(att.views(x, d)))
                       for d in draw) / 2
    assert fall > 0.5
    assert sums[32] == pytest.approx(fall, rel=0.03)
    assert abs(sums[1] - fall) > 0.05 * fall  # 13% off here: the loss is curved along the path


def test_restarts_keep_the_best_run_on_shared_validation_views(victim, tmp_path):
    from physadv.physical.rp2 import RP2

    runs = [RP2(victim, small_scene(), small_rp2(seed=s)) for s in (5, 6)]
    for r in runs[1:]:
        r.val_seed = 5  # what a restart does: the first run's validation views
    single = [r.run(progress_bar=False) for r in runs]
    best = RP2(victim, small_scene(), small_rp2(seed=5, restarts=2)).run(tmp_path / "ck.safetensors", progress_bar=False)
    vals = [r.metrics["val_success"] for r in single]
    assert best.metrics["restarts"] == vals
    assert torch.equal(best.texture, single[vals.index(max(vals))].texture)
    assert sorted(p.name for p in tmp_path.glob("*.result.safetensors")) == [
        "ck.restart0.result.safetensors", "ck.restart1.result.safetensors"]


def test_restarts_stop_once_a_run_reaches_restart_until(victim, tmp_path):
    """restart_until 0: the first run reaches it, so no second run is made (one validation rate, one result file)."""
    from physadv.physical.rp2 import RP2

    early = RP2(victim, small_scene(), small_rp2(seed=5, restarts=2, restart_until=0.0)).run(tmp_path / "a.safetensors",
                                                                                          progress_bar=False)
    assert len(early.metrics["restarts"]) == 1
    assert [p.name for p in tmp_path.glob("a.*.result.safetensors")] == ["a.restart0.result.safetensors"]
    # the finished restart's file belongs to that config: another config on the same path runs again
    other = RP2(victim, small_scene(), small_rp2(seed=5, steps=5, restarts=2, restart_until=0.0)).run(
        tmp_path / "a.safetensors", progress_bar=False)
    assert other.metrics["steps"] == 5 and early.metrics["steps"] == 4
    with pytest.raises(PhysadvError, match=r"restart_until is a success rate in \[0, 1\], got 1.5"):
        small_rp2(restart_until=1.5)


def test_raising_restart_until_reuses_the_finished_runs(victim, tmp_path, monkeypatch):
    """A finished run is a function of its seed, not of how many runs the loop allows: asking for more (a higher
    restart_until) makes only the runs not yet made."""
    from physadv.physical.rp2 import RP2

    first = RP2(victim, small_scene(), small_rp2(seed=5, restarts=2, restart_until=0.0)).run(tmp_path / "a.safetensors",
                                                                                          progress_bar=False)
    made, real = [], RP2._run_once

    def counted(self, checkpoint, progress_bar):
        made.append(self.cfg.seed)
        return real(self, checkpoint, progress_bar)

    monkeypatch.setattr(RP2, "_run_once", counted)
    more = RP2(victim, small_scene(), small_rp2(seed=5, restarts=2, restart_until=1.0)).run(tmp_path / "a.safetensors",
                                                                                         progress_bar=False)
    assert made == [6] and more.metrics["restarts"][0] == first.metrics["restarts"][0]
    assert len(more.metrics["restarts"]) == 2


def test_init_reference_starts_the_stickers_from_the_target_sign_as_drawn():
    """``init: reference``: inside the mask the design starts from the target's sign as the sign world draws it
    (``sign_texture``, the independent drawing), outside it the clean face stays; a few small steps keep it there."""
    from physadv.physical.rp2 import RP2
    from physadv.rendering.signs.textures import sign_texture

    torch.manual_seed(0)
    net = build_classifier("gtsrb-cnn", sign_classes(), width=0.25, hidden=64).eval()
    scene = small_scene()
    centre = {"kind": "rectangles", "rects": [[0.3, 0.3, 0.7, 0.7]]}
    attack = RP2(ClassifierVictim(net, "random"), scene, small_rp2(mask=centre, init="reference", init_noise=0.0))
    start = attack.design(attack.start())
    target = sign_texture("speed_limit_80", 64)[0]
    inside, outside = attack.mask > 0, attack.mask == 0
    assert (start[:, inside] - target[:, inside]).abs().mean() < 0.03
    assert torch.equal(start[:, outside], attack.clean[:, outside])
    r = attack.run(progress_bar=False)
    to_target = (r.texture[:, inside] - target[:, inside]).abs().mean()
    assert to_target < 0.5 * (r.texture[:, inside] - r.clean[:, inside]).abs().mean()
    clean = RP2(ClassifierVictim(net, "random"), scene, small_rp2(mask=centre, init_noise=0.0))
    assert torch.allclose(clean.design(clean.start()), clean.clean, atol=2e-3)  # RP2's own start: the clean face
    with pytest.raises(PhysadvError, match="init: reference.*needs a target"):
        small_rp2(init="reference", target=None, objective="untargeted")
