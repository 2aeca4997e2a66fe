"""GAN architectures, games, trainer (resume, NaN guard, bad input), metrics and the CLI."""
import math

import numpy as np
import pytest
import torch
from scipy import linalg

from physadv.core.config import from_dict, to_dict
from physadv.core.data import load_dataset
from physadv.core.errors import PhysadvError
from physadv.core.io import load_checkpoint
from physadv.gans.games import WGAN, WGANGP, GameConfig, Minimax, make_game
from physadv.gans.metrics import class_coverage, frechet_distance, frechet_distance_gaussians, inception_score, kernel_inception_distance
from physadv.gans.models import DCGANDiscriminator, DCGANGenerator, MLPGenerator
from physadv.gans.progressive import ProgressiveDiscriminator, ProgressiveGenerator, fade_reals, phase, stage_at
from physadv.gans.trainer import JUMP_LIMIT, GanConfig, load_generator, stage_jumps, train_gan


@pytest.fixture(scope="module")
def small_mnist():
    return load_dataset("mnist", "train").subset(128)


def tiny(**over) -> GanConfig:
    d = {"steps": 4, "batch_size": 16, "sample_every": 2, "checkpoint_every": 2, "device": "cpu", "ema": 0.9,
         "model": {"arch": "dcgan", "width": 8, "d_width": 8, "z_dim": 16}, "game": {"name": "minimax"}}
    for k, v in over.items():
        d[k] = {**d[k], **v} if isinstance(v, dict) and isinstance(d.get(k), dict) else v
    return from_dict(GanConfig, d, "test")


# --------------------------------------------------------------------------- architectures
@pytest.mark.parametrize("res", [28, 32, 64])
def test_dcgan_shapes_and_range(res):
    G, D = DCGANGenerator(100, res, 3, 8), DCGANDiscriminator(res, 3, 8)
    x = G(torch.randn(5, 100))
    assert x.shape == (5, 3, res, res) and x.abs().max() <= 1
    assert D(x).shape == (5,)


def test_conditional_generator_uses_labels():
    G = DCGANGenerator(16, 28, 1, 8, num_classes=10).eval()
    D = DCGANDiscriminator(28, 1, 8, num_classes=10).eval()
    z = torch.randn(4, 16)
    a, b = G(z, torch.zeros(4, dtype=torch.long)), G(z, torch.ones(4, dtype=torch.long))
    assert not torch.allclose(a, b)
    assert D(a, torch.zeros(4, dtype=torch.long)).shape == (4,)
    with pytest.raises(PhysadvError, match="labels"):
        MLPGenerator(16, 28, 1, 8, num_classes=10)(z)


def test_bad_resolution_and_unknown_game_are_clear_errors():
    with pytest.raises(PhysadvError, match="model.resolution 30"):
        tiny(model={"resolution": 30})
    with pytest.raises(PhysadvError, match="game.name 'lsgan'"):
        tiny(game={"name": "lsgan"})
    with pytest.raises(PhysadvError, match="d_norm"):
        tiny(game={"name": "wgan-gp"}, model={"d_norm": "batch"})


# --------------------------------------------------------------------------- games against their definitions
class Const(torch.nn.Module):
    """D(x) = sigmoid(<w, x>): logits linear in x."""

    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.Parameter(w)

    def forward(self, x, y=None):
        return (x.flatten(1) * self.w).sum(1)


def test_minimax_losses_match_goodfellow_value_function():
    torch.manual_seed(0)
    D = Const(torch.randn(12))
    real, fake = torch.randn(8, 12), torch.randn(8, 12)
    d_real, d_fake = torch.sigmoid(D(real)), torch.sigmoid(D(fake))
    loss, _ = Minimax().d_loss(D, real, fake)
    assert torch.allclose(loss, -(torch.log(d_real).mean() + torch.log(1 - d_fake).mean()), atol=1e-5)
    assert torch.allclose(Minimax(nonsaturating=False).g_loss(D, fake), torch.log(1 - d_fake).mean(), atol=1e-5)
    assert torch.allclose(Minimax(nonsaturating=True).g_loss(D, fake), -torch.log(d_fake).mean(), atol=1e-5)


def test_saturating_generator_loss_has_no_gradient_where_d_rejects_the_samples():
    """Goodfellow et al. section 3: when D(G(z)) -> 0, log(1 - D(G(z))) saturates (d/dlogit = -D(G(z)) -> 0)
    while -log D(G(z)) keeps a gradient of magnitude 1 - D(G(z)) -> 1."""
    w = torch.ones(1)
    for nonsaturating, expect in [(False, 0.0), (True, 1.0)]:
        fake = torch.full((4, 1), -12.0, requires_grad=True)  # logits -12: D(G(z)) = 6e-6
        Minimax(nonsaturating=nonsaturating).g_loss(Const(w), fake).backward()
        assert fake.grad.abs().mean().item() * 4 == pytest.approx(expect, abs=1e-4)


def test_gradient_penalty_on_a_linear_critic_is_closed_form():
    w = torch.tensor([3.0, 4.0, 0.0, 0.0])  # ||grad D|| = 5 everywhere -> penalty (5 - 1)^2 = 16
    D = Const(w)
    real, fake = torch.randn(6, 4), torch.randn(6, 4)
    loss, stats = WGANGP(gp_lambda=10.0).d_loss(D, real.view(6, 1, 2, 2), fake.view(6, 1, 2, 2))
    assert stats["gp"] == pytest.approx(16.0, rel=1e-6)
    assert loss.item() == pytest.approx(float((D(fake).mean() - D(real).mean()).detach()) + 160.0, rel=1e-5)
    # Karras et al.'s generalisation: lambda / gamma^2 (||grad|| - gamma)^2; gamma = 5 makes this critic penalty-free
    assert WGANGP(target=5.0).d_loss(D, real.view(6, 1, 2, 2), fake.view(6, 1, 2, 2))[1]["gp"] == pytest.approx(0.0, abs=1e-10)
    assert WGANGP(target=2.0).d_loss(D, real.view(6, 1, 2, 2), fake.view(6, 1, 2, 2))[1]["gp"] == pytest.approx(9 / 4, rel=1e-6)


def test_wgan_clips_critic_weights():
    D = Const(torch.tensor([1.0, -2.0, 0.005]))
    WGAN(clip=0.01).after_d_step(D)
    assert torch.equal(D.w.data, torch.tensor([0.01, -0.01, 0.005]))
    assert make_game(GameConfig(name="wgan", k=5)).k == 5


# --------------------------------------------------------------------------- trainer
@pytest.mark.parametrize("game,norm", [("minimax", "batch"), ("wgan-gp", "layer")])  # BN buffers; GP noise
def test_resume_is_bitwise_identical(tmp_path, small_mnist, game, norm):
    over = {"game": {"name": game, "k": 2}, "model": {"d_norm": norm}}
    train_gan(tiny(steps=6, **over), tmp_path / "a", data=small_mnist, show_progress=False)
    train_gan(tiny(steps=3, **over), tmp_path / "b", data=small_mnist, show_progress=False)
    train_gan(tiny(steps=6, **over), tmp_path / "b", data=small_mnist, show_progress=False,
              resume=tmp_path / "b" / "checkpoint.safetensors")
    a, ma = load_checkpoint(tmp_path / "a" / "checkpoint.safetensors")
    b, mb = load_checkpoint(tmp_path / "b" / "checkpoint.safetensors")
    assert set(a) == set(b) and ma["step"] == mb["step"] == 6
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    assert ma["history"] == mb["history"]
    assert (tmp_path / "a" / "losses.png").is_file() and (tmp_path / "a" / "samples" / "step_000006.png").is_file()


def test_nan_guard_stops_and_keeps_last_good_checkpoint(tmp_path, small_mnist, monkeypatch):
    calls = {"n": 0}
    original = Minimax.d_loss

    def poisoned(self, D, real, fake, y=None):
        calls["n"] += 1
        loss, stats = original(self, D, real, fake, y)
        return (loss * float("nan"), stats) if calls["n"] == 3 else (loss, stats)

    monkeypatch.setattr(Minimax, "d_loss", poisoned)
    with pytest.raises(PhysadvError, match=r"step 3: the discriminator loss became nan.*step 2"):
        train_gan(tiny(steps=6), tmp_path, data=small_mnist, show_progress=False)
    _, meta = load_checkpoint(tmp_path / "checkpoint.safetensors")
    assert meta["step"] == 2


def test_bad_input_errors(tmp_path, small_mnist):
    with pytest.raises(PhysadvError, match="fewer than one batch"):
        train_gan(tiny(batch_size=200), tmp_path / "x", data=small_mnist, show_progress=False)
    train_gan(tiny(steps=2), tmp_path / "y", data=small_mnist, show_progress=False)
    with pytest.raises(PhysadvError, match="another architecture"):
        train_gan(tiny(model={"width": 16}), tmp_path / "z", data=small_mnist, show_progress=False,
                  resume=tmp_path / "y" / "checkpoint.safetensors")
    from physadv.core.io import save_checkpoint

    save_checkpoint(tmp_path / "clf.safetensors", {"w": torch.zeros(2)}, {"arch": "lenet-mnist"})
    with pytest.raises(PhysadvError, match="not a physadv GAN checkpoint"):
        load_generator(tmp_path / "clf.safetensors")


def test_conditional_training_and_sampling(tmp_path, small_mnist):
    train_gan(tiny(steps=2, model={"conditional": True}), tmp_path, data=small_mnist, show_progress=False)
    G, cfg, meta = load_generator(tmp_path / "checkpoint.safetensors")
    from physadv.gans.trainer import generate

    images, labels = generate(G, 12, cfg.model, torch.Generator().manual_seed(0), num_classes=meta["num_classes"])
    assert images.shape == (12, 1, 28, 28) and labels.tolist() == [i % 10 for i in range(12)]


# --------------------------------------------------------------------------- progressive growing
def test_progressive_fade_in_is_continuous_at_a_stage_change():
    """At a stage change (alpha = 0) G, D, the faded reals and so the whole WGAN-GP critic loss, gradient penalty
    and drift included, are the same as at the end of the previous stage: nothing jumps but what training moves."""
    torch.manual_seed(0)
    G, D = ProgressiveGenerator(16, 32, 1, 8), ProgressiveDiscriminator(32, 1, 8)
    z, x = torch.randn(8, 16), torch.rand(8, 1, 32, 32) * 2 - 1
    game = WGANGP(k=1, drift=0.001)
    losses = []
    for level, alpha in [(1, 1.0), (2, 0.0)]:
        G.set_stage(level, alpha), D.set_stage(level, alpha)
        fake, real = G(z), fade_reals(x, level, alpha)
        assert fake.shape == real.shape == (8, 1, 32, 32)  # both networks speak the final resolution at every stage
        game.generator = torch.Generator().manual_seed(1)  # the same interpolation weights eps
        losses.append((fake, real, D(real), game.d_loss(D, real, fake)))
    (f0, r0, d0, (l0, s0)), (f1, r1, d1, (l1, s1)) = losses
    # the 16x16 stage at alpha = 0 is the nearest-upsampled 8x8 output; its reals are the 8x8 reals
    assert torch.allclose(f0, f1, atol=1e-6) and torch.allclose(r0, r1, atol=1e-6) and torch.allclose(d0, d1, atol=1e-5)
    assert s0["gp"] > 0.01 and s1["gp"] == pytest.approx(s0["gp"], rel=1e-4) and l1.item() == pytest.approx(l0.item(), rel=1e-4)
    # reals fade linearly between the two resolutions (Karras et al. section 2)
    half = fade_reals(x, 2, 0.5)
    assert torch.allclose(half, 0.5 * fade_reals(x, 2, 1.0) + 0.5 * fade_reals(x, 1, 1.0), atol=1e-6)


def test_stage_schedule():
    assert stage_at(0, 3, 10, 5) == (0, 1.0)
    assert stage_at(10, 3, 10, 5) == (1, 0.0)
    assert stage_at(12, 3, 10, 5) == (1, pytest.approx(0.4))
    assert stage_at(15, 3, 10, 5) == (1, 1.0)
    assert stage_at(25, 3, 10, 5) == (2, 0.0)
    assert stage_at(10_000, 3, 10, 5) == (3, 1.0)
    # the optimisers' state is reset when a fade-in starts (step 10, 25) and when it ends (15, 30), as the authors do
    changes = [s for s in range(1, 60) if phase(s, 3, 10, 5) != phase(s - 1, 3, 10, 5)]
    assert changes == [10, 15, 25, 30, 40, 45]


def test_progressive_training_runs_through_stages(tmp_path):
    data = load_dataset("digits", "train").subset(64)
    cfg = tiny(steps=8, batch_size=8, model={"arch": "progressive", "resolution": 16, "width": 8, "d_width": 8, "d_norm": "none"},
               game={"name": "wgan-gp", "k": 1, "drift": 0.001}, progressive={"stable_steps": 2, "fade_steps": 1},
               sample_every=4, checkpoint_every=4)
    m = train_gan(cfg, tmp_path / "a", data=data, show_progress=False)
    assert m["stage_changes"] == [2, 5] and m["steps"] == 8
    G, _, meta = load_generator(tmp_path / "a" / "checkpoint.safetensors")
    assert meta["stage"] == [2, 1.0] and G(torch.randn(2, 16)).shape == (2, 1, 16, 16)
    # resume across a stage change and the optimiser resets (steps 5, 6) gives the same weights
    train_gan(from_dict(GanConfig, {**to_dict(cfg), "steps": 4}, "test"), tmp_path / "b", data=data, show_progress=False)
    train_gan(cfg, tmp_path / "b", data=data, show_progress=False, resume=tmp_path / "b" / "checkpoint.safetensors")
    a, _ = load_checkpoint(tmp_path / "a" / "checkpoint.safetensors")
    b, _ = load_checkpoint(tmp_path / "b" / "checkpoint.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]


# --------------------------------------------------------------------------- metrics against closed forms
def test_fid_matches_closed_form_for_gaussians():
    rng = np.random.default_rng(0)
    d = 4
    A, B = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    s1, s2 = A @ A.T + np.eye(d), B @ B.T + np.eye(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    # independent route: scipy's general matrix square root of S1 S2
    w2 = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(np.real(linalg.sqrtm(s1 @ s2)))
    assert frechet_distance_gaussians(mu1, s1, mu2, s2) == pytest.approx(w2, rel=1e-8)
    x = rng.multivariate_normal(mu1, s1, 200_000)
    y = rng.multivariate_normal(mu2, s2, 200_000)
    assert frechet_distance(x, y) == pytest.approx(w2, rel=0.03)
    assert frechet_distance(x[:5000], x[:5000]) == pytest.approx(0.0, abs=1e-6)


def test_kid_is_the_unbiased_mmd_with_the_cubic_kernel():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(30, 3)), rng.normal(0.5, 1, size=(30, 3))
    k = lambda a, b: (a @ b / 3 + 1) ** 3  # noqa: E731
    m = 30
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    mean, std = kernel_inception_distance(x, y, subsets=3, subset_size=30)
    assert mean == pytest.approx(xx + yy - 2 * xy, rel=1e-9) and std == pytest.approx(0, abs=1e-12)


def test_inception_score_and_coverage_extremes():
    onehot = torch.eye(10).repeat(10, 1)  # confident and uniform over classes: IS = 10
    assert inception_score(onehot, splits=1)[0] == pytest.approx(10.0, rel=1e-6)
    assert inception_score(torch.eye(10)[[3] * 50], splits=1)[0] == pytest.approx(1.0, rel=1e-6)
    cov = class_coverage(torch.tensor([0] * 50 + [1] * 49 + [2]), 10)
    assert cov["covered"] == 2 and cov["max_share"] == 0.5


# --------------------------------------------------------------------------- command line
def test_cli_train_sample_eval(tmp_path, lenet_mnist):
    from physadv.physical.cli import main

    run = tmp_path / "train"
    sets = ["steps=3", "batch_size=16", "model.arch=mlp", "model.width=32", "model.d_width=32", "data.limit=64",
            "device=cpu", "sample_every=3", "checkpoint_every=3"]
    args = ["gan", "train", "--config", "configs/gans/minimax.yaml", "--out", str(run)]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    ckpt = run / "checkpoint.safetensors"
    assert main(["gan", "sample", "--checkpoint", str(ckpt), "--n", "9", "--out", str(tmp_path / "s")]) == 0
    imgs = load_checkpoint(tmp_path / "s" / "samples.safetensors")[0]["images"]
    assert imgs.shape == (9, 1, 28, 28) and 0 <= imgs.min() and imgs.max() <= 1
    assert main(["gan", "eval", "--checkpoint", str(ckpt), "--set", "n=100", "--set", "device=cpu", "--out", str(tmp_path / "e")]) == 0
    import json

    res = json.loads((tmp_path / "e" / "metrics.json").read_text())
    key = "FID (LeNet-MNIST features)"
    assert res["real_vs_real_floor"][key] < res["generated"][key]
    assert (tmp_path / "e" / "nearest_neighbours.png").is_file()
    assert main(["gan", "train", "--config", "configs/gans/minimax.yaml", "--set", "game.name=nope", "--out", str(tmp_path / "x")]) == 2


# --------------------------------------------------------------------------- several processes
@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path):
    """DistributedDataParallel over gloo: 2 processes train a few steps and write one checkpoint."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = Path(__file__).resolve().parents[1]
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "physadv.gans",
           "train", "--config", "configs/gans/dcgan.yaml", "--out", str(tmp_path), "--set", "steps=4", "--set", "batch_size=8",
           "--set", "model.width=8", "--set", "model.d_width=8", "--set", "data.limit=64", "--set", "device=cpu",
           "--set", "sample_every=2", "--set", "checkpoint_every=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    tensors, meta = load_checkpoint(tmp_path / "checkpoint.safetensors")
    assert meta["world_size"] == 2 and meta["step"] == 4
    assert all(math.isfinite(v) for v in meta["history"]["d_loss"] + meta["history"]["g_loss"])
    # both processes consumed distinct halves of each global batch: 4 steps x 1 D step x 2 x 8 images
    assert meta["data_position"] == [0, 4 * 2 * 8]


def test_stage_jumps_flags_a_step_in_the_loss_and_not_noise():
    rng = np.random.default_rng(0)
    d = rng.normal(0, 1, 400)  # stationary noise: no change point is special
    hist = {"step": list(range(1, 401)), "d_loss": d.tolist()}
    calm = [j["jump_in_spreads"] for j in stage_jumps(hist, [100, 200, 300], spread_window=30)]
    stepped = d + 5.0 * (np.arange(400) >= 200)  # a discontinuity of 5 sds at step 200
    jumps = stage_jumps({"step": hist["step"], "d_loss": stepped.tolist()}, [100, 200, 300], spread_window=30)
    # the 5-step mean of unit noise against a line's prediction has sd of about 0.5: 3 spreads is about 6 sds of it
    assert max(calm) < JUMP_LIMIT and jumps[1]["jump_in_spreads"] > JUMP_LIMIT + 1 and not jumps[1]["within_limit"]
    assert jumps[0]["ordinary_q99"] < JUMP_LIMIT


@pytest.mark.slow
def test_progressive_recipe_reaches_32x32_without_a_loss_jump_at_stage_changes(tmp_path):
    """The issue's bar on the recipe (configs/gans/progressive.yaml, ~4 min on one shared core): 4x4 -> 32x32 through
    three fade-ins, and at each stage change the critic loss departs at most JUMP_LIMIT = 3 spreads from its trend
    (a line through the fade_steps / 4 steps before predicts the mean of the 5 after; spread = std of the fit's
    residuals). At ordinary steps the same statistic exceeds 3.4-4.8 one time in a hundred; a penalty measured at
    each stage's own size instead (the earlier implementation) scored 12.4, 7.2 and 5.3."""
    from physadv.core.config import load_config

    cfg = load_config(GanConfig, "configs/gans/progressive.yaml", ["device=cpu", "threads=1"])
    m = train_gan(cfg, tmp_path, show_progress=False)
    G, _, meta = load_generator(tmp_path / "checkpoint.safetensors")
    assert meta["stage"] == [3, 1.0] and G.current_resolution == 32 and G(torch.randn(2, cfg.model.z_dim)).shape == (2, 1, 32, 32)
    jumps = m["stage_change_jumps"]
    assert [j["step"] for j in jumps] == [150, 450, 750]
    assert all(j["jump_in_spreads"] <= JUMP_LIMIT for j in jumps), jumps
    assert (tmp_path / "losses.png").is_file()


def test_maxout_discriminator_takes_the_max_of_affine_pieces():
    from physadv.gans.models import Maxout, MaxoutDiscriminator

    torch.manual_seed(0)
    m, x = Maxout(6, 3, 4), torch.randn(5, 6)
    pieces = (x @ m.linear.weight.T + m.linear.bias).view(5, 3, 4)
    assert torch.allclose(m(x), pieces.max(2).values)
    D = MaxoutDiscriminator(28, 1, 16, num_classes=10, max_norm=1.9365).eval()  # eval: no dropout, deterministic
    x = torch.rand(3, 1, 28, 28)
    y = torch.tensor([0, 1, 2])
    assert D(x, y).shape == (3,) and torch.equal(D(x, y), D(x, y))
    with torch.no_grad():
        D.net[1].linear.weight.mul_(1000)
    D.constrain()  # max-norm (the maxout paper's 1.9365): every unit's incoming weights within it, directions kept
    norms = D.net[1].linear.weight.norm(dim=1)
    assert norms.max() <= D.max_norm * (1 + 1e-5) and norms.min() > 1.9


def test_minimax_goodfellow_is_their_codes_mnist_practice(tmp_path):
    """configs/gans/minimax_goodfellow.yaml against goodfeli/adversarial (mnist.yaml, AdversaryCost2): G trained on
    -log D(G(z)), D's loss halved, z from the Generator's default (Gaussian) noise, dropout in D, learning rate
    lr / 1.000004^t after t updates (pylearn2's ExponentialDecay) and momentum 0.5 -> 0.7 linear in the epochs seen
    between epochs 1 and 250 (MomentumAdjustor), no max-norm."""
    from physadv.core.config import load_config
    from physadv.gans.trainer import build_networks, sample_z

    cfg = load_config(GanConfig, "configs/gans/minimax_goodfellow.yaml")
    game = make_game(cfg.game)
    torch.manual_seed(0)
    D = Const(0.3 * torch.randn(12))  # moderate logits: sigmoid and log stay accurate in float32
    real, fake = torch.randn(8, 12), torch.randn(8, 12)
    d_real, d_fake = torch.sigmoid(D(real)), torch.sigmoid(D(fake))
    assert torch.allclose(game.g_loss(D, fake), -torch.log(d_fake).mean(), atol=1e-5)  # non-saturating
    assert torch.allclose(game.d_loss(D, real, fake)[0], -0.5 * (torch.log(d_real).mean() + torch.log(1 - d_fake).mean()), atol=1e-5)
    z = sample_z(20000, cfg.model, torch.Generator().manual_seed(0))
    kurtosis = float(((z - z.mean()) ** 4).mean() / z.var() ** 2)
    assert abs(float(z.std()) - 1) < 0.01 and abs(kurtosis - 3) < 0.05   # N(0, 1): U[-1, 1] has std 0.58, kurtosis 1.8
    _, Dnet = build_networks(cfg.model, 1, 10)
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    assert not torch.equal(Dnet.train()(x), Dnet(x)) and torch.equal(Dnet.eval()(x), Dnet(x))  # dropout in training only
    assert Dnet.max_norm is None
    # train 9 updates on 300 images at batch 100 (3 updates an epoch) with small nets, the recipe's optimiser untouched
    data = load_dataset("mnist", "train").subset(300)
    small = load_config(GanConfig, "configs/gans/minimax_goodfellow.yaml",
                        ["steps=9", "model.width=32", "model.d_width=16", "device=cpu", "sample_every=9", "checkpoint_every=9",
                         "optim.momentum_saturate=4", "optim.lr_decay=1.01"])  # a visible decay and a ramp within the run
    train_gan(small, tmp_path, data=data, show_progress=False)
    _, meta = load_checkpoint(tmp_path / "checkpoint.safetensors")
    for opt in ("opt_g", "opt_d"):
        group = meta[opt]["param_groups"][0]
        assert group["lr"] == pytest.approx(0.1 / 1.01 ** 8, rel=1e-9)      # the 9th update used lr / decay^8
        # the 9th update came after 2 epochs seen (the stream wraps before update 7): 0.5 + 0.2 (2 - 1) / (4 - 1)
        assert group["momentum"] == pytest.approx(0.5 + 0.2 * (2 - 1) / 3, rel=1e-9)
    assert meta["data_position"][0] == 2
