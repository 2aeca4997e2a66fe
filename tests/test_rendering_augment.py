"""The Kornia EOT stack: replayable parameters, the colour-transform hook, OpenCV as the reference warp."""
import cv2
import numpy as np
import pytest
import torch

from physadv.core.config import load_config
from physadv.core.errors import PhysadvError
from physadv.rendering.augment import AugmentConfig, ColourJitter, Defocus, EOTAugment, Gamma, Jpeg, Motion, Noise, Perspective

EVERYTHING = AugmentConfig(ColourJitter(1.0, saturation=0.1, hue=0.02), Gamma(1.0), Defocus(1.0), Motion(1.0), Noise(1.0),
                           Jpeg(1.0), Perspective(1.0))


def images(n=4, size=48, seed=0, high=1.0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * high


def test_replay_gives_the_same_transformation():
    torch.manual_seed(0)
    aug = EOTAugment(EVERYTHING)
    clean = images()
    first = aug(clean)
    params = aug.params
    assert torch.allclose(aug(clean, params=params), first, atol=1e-6)  # noise and JPEG quality replayed too
    assert (aug(clean) - first).abs().max() > 0.05  # a fresh call draws new parameters


def test_replay_applies_the_same_linear_effects_to_clean_and_adversarial():
    """Perspective and blurs are linear in the image: with replayed parameters, aug(x + d) = aug(x) + aug(d)."""
    torch.manual_seed(1)
    aug = EOTAugment(AugmentConfig(ColourJitter(0), Gamma(0), Defocus(1.0), Motion(1.0), Noise(0), Jpeg(0), Perspective(1.0)))
    clean, delta = images(high=0.5), images(seed=1, high=0.5)
    seen_clean = aug(clean)
    params = aug.params
    seen_adv = aug(clean + delta, params=params)
    seen_delta = aug(delta, params=params)
    assert torch.allclose(seen_adv, seen_clean + seen_delta, atol=1e-5)


def test_perspective_matches_opencv_warp():
    torch.manual_seed(2)
    aug = EOTAugment(AugmentConfig(ColourJitter(0), Gamma(0), Defocus(0), Motion(0), Noise(0), Jpeg(0), Perspective(1.0, 0.2)))
    x = torch.nn.functional.interpolate(images(2, 16), size=64, mode="bicubic", align_corners=False).clamp(0, 1)  # smooth
    out = aug(x)
    p = aug.params[0].data
    for i in range(2):
        M = cv2.getPerspectiveTransform(p["start_points"][i].numpy().astype(np.float32), p["end_points"][i].numpy().astype(np.float32))
        ref = cv2.warpPerspective(x[i].permute(1, 2, 0).numpy(), M, (64, 64), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        ours = out[i].permute(1, 2, 0).numpy()
        inside = cv2.erode((cv2.warpPerspective(np.ones((64, 64), np.float32), M, (64, 64)) > 0.999).astype(np.uint8), np.ones((3, 3)))
        assert inside.sum() > 1000
        assert np.abs(ours - ref)[inside.astype(bool)].max() < 0.02


def test_colour_transform_hook_runs_before_the_camera_effects():
    torch.manual_seed(3)
    def hook(x):
        return x.flip(1) * 0.8  # swap red and blue, darken: a stand-in printer model

    x = images()
    assert torch.equal(EOTAugment(AugmentConfig.none(), colour_transform=hook)(x), hook(x))
    with_hook = EOTAugment(EVERYTHING, colour_transform=hook)
    out = with_hook(x)
    plain = EOTAugment(EVERYTHING)
    assert torch.allclose(plain(hook(x), params=with_hook.params), out, atol=1e-6)


def test_gradients_flow_through_every_effect():
    torch.manual_seed(4)
    x = images(2, 32).requires_grad_()
    EOTAugment(EVERYTHING)(x).mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_bad_config_and_input(tmp_path):
    bad = tmp_path / "aug.yaml"
    bad.write_text("jpeg:\n  quality: [90, 40]\n")
    with pytest.raises(PhysadvError, match="jpeg.quality"):
        load_config(AugmentConfig, bad)
    bad.write_text("motion:\n  kernel: 4\n")
    with pytest.raises(PhysadvError, match="motion.kernel"):
        load_config(AugmentConfig, bad)
    bad.write_text("noise:\n  sdt: 0.1\n")
    with pytest.raises(PhysadvError, match="did you mean 'std'"):
        load_config(AugmentConfig, bad)
    with pytest.raises(PhysadvError, match="N x 3 x H x W"):
        EOTAugment()(torch.rand(3, 32, 32))


def test_straight_through_jpeg_is_libjpeg_forward_and_identity_backward():
    from physadv.rendering.augment import jpeg

    x = torch.nn.functional.interpolate(images(1, 12), size=48, mode="bicubic", align_corners=False).clamp(0, 1)
    x = x.expand(2, -1, -1, -1).clone().requires_grad_()
    out = jpeg(x, [50, 95])
    arr = (x[0].detach().permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    ok, enc = cv2.imencode(".jpg", arr[:, :, ::-1].copy(), [cv2.IMWRITE_JPEG_QUALITY, 50])
    ref = cv2.imdecode(enc, cv2.IMREAD_COLOR)[:, :, ::-1] / 255.0
    assert np.abs(out[0].detach().permute(1, 2, 0).numpy() - ref).max() < 1e-6
    assert (out[0] - x[0]).abs().mean() > 1.5 * (out[1] - x[1]).abs().mean() > 0  # quality 50 changes more than 95
    w = torch.rand_like(x)
    (g,) = torch.autograd.grad((out * w).sum(), x)
    assert torch.equal(g, w)


def test_jpeg_options_in_the_stack_agree_on_the_codec():
    """The stack's straight-through JPEG draws qualities as Kornia's RandomJPEG does; Kornia's
    differentiable codec at the same qualities approximates the same libjpeg output."""
    from kornia.enhance import jpeg_codec_differentiable

    x = torch.nn.functional.interpolate(images(4, 12), size=64, mode="bicubic", align_corners=False).clamp(0, 1)
    only_jpeg = dict(colour=ColourJitter(0), gamma=Gamma(0), defocus=Defocus(0), motion=Motion(0), noise=Noise(0),
                     perspective=Perspective(0))
    torch.manual_seed(5)
    st = EOTAugment(AugmentConfig(jpeg=Jpeg(1.0, (60.0, 80.0)), **only_jpeg))
    a = st(x)
    quality = st.params[0].data["jpeg_quality"]
    assert quality.shape == (4,) and ((quality >= 60) & (quality <= 80)).all()
    assert torch.equal(st(x, params=st.params), a)  # replayed
    b = jpeg_codec_differentiable(x, quality)
    assert (a - x).abs().mean() > 0.003  # the codec did something
    assert (a - b).abs().mean() < 0.5 * (a - x).abs().mean()  # the two codecs agree far better than either with x
    with pytest.raises(PhysadvError, match="jpeg.gradient"):
        EOTAugment(AugmentConfig(jpeg=Jpeg(gradient="exact")))
