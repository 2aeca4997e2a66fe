"""physical/ and its shared parts: masks, 2D transforms, patch placement, the grid report and the result type,
each against an independent definition."""
import math

import cv2
import numpy as np
import pytest
import torch

from physadv.core.errors import PhysadvError
from physadv.physical import masks as M


def test_rectangle_mask_area_is_exact():
    m = M.rectangles_mask((200, 100), [(0.1, 0.2, 0.5, 0.3), (0.6, 0.6, 0.9, 0.9)])
    assert float(m.sum()) == 40 * 20 + 30 * 60


def test_mask_checks_name_the_problem():
    alpha = torch.zeros(1, 64, 64)
    alpha[:, 8:56, 8:56] = 1
    face = float((alpha > 0.5).sum())
    ok = M.rectangles_mask((64, 64), [(0.25, 0.25, 0.5, 0.5)])
    assert M.check_mask(ok, alpha) == pytest.approx(float(ok.sum()) / face)
    with pytest.raises(PhysadvError, match="32, 32"):
        M.check_mask(torch.ones(32, 32), alpha)
    with pytest.raises(PhysadvError, match="off the object"):
        M.check_mask(M.rectangles_mask((64, 64), [(0.0, 0.0, 0.1, 0.1)]), alpha)
    with pytest.raises(PhysadvError, match="more than the allowed 15%"):
        M.check_mask(M.full_mask(alpha), alpha, max_coverage=0.15)
    with pytest.raises(PhysadvError, match="x0 < x1"):
        M.rectangles_mask((64, 64), [(0.5, 0.1, 0.4, 0.2)])


def test_text_mask_draws_the_words_inside():
    m = M.text_mask((128, 128), ["LOVE", "HATE"], [0.25, 0.75])
    rows = m.sum(1)
    assert rows[20:44].sum() > 0 and rows[84:108].sum() > 0 and rows[56:72].sum() == 0
    assert 0.02 < float(m.mean()) < 0.2


def test_mask_search_keeps_the_strongest_region():
    face = torch.ones(64, 64)
    delta = 0.01 * torch.rand(3, 64, 64)
    delta[:, 10:20, 30:50] = 0.8  # the effective region
    m = M.search_mask(delta.abs().sum(0), face, coverage=200 / 4096)
    assert float(m.sum()) == pytest.approx(200, abs=2)
    assert float(m[10:20, 30:50].sum()) / float(m.sum()) > 0.9


def test_mask_search_keeps_the_budget_when_scores_tie():
    """A flat score (every texel tied) or a plateau across the cut must still give exactly the asked share of the
    face, which check_mask accepts at that budget (a threshold at the last kept value would take every tied texel)."""
    face = torch.zeros(64, 64)
    face[8:56, 8:56] = 1  # 2304 texels
    for score in (torch.ones(64, 64), torch.cat([torch.full((32, 64), 2.0), torch.ones(32, 64)])):
        m = M.search_mask(score, face, coverage=0.3)
        assert float(m.sum()) == int(0.3 * 2304) and float((m * (1 - face)).sum()) == 0
        assert M.check_mask(m, face, max_coverage=0.3) <= 0.3


def test_identity_transform_is_identity_and_rotation_matches_opencv():
    from physadv.rendering.augment import FlatParams, flat_transform

    x = torch.rand(2, 3, 17, 17)
    n = 2

    def params(angle):
        return FlatParams(torch.full((n,), angle), torch.ones(n), torch.zeros(n, 2), torch.zeros(n), torch.ones(n),
                          torch.zeros_like(x))

    assert torch.allclose(flat_transform(x, params(0.0)), x, atol=1e-5)
    # Kornia rotates counter-clockwise for positive angles (image y axis down): compare with OpenCV's definition
    ref = np.stack([cv2.warpAffine(img.permute(1, 2, 0).numpy(), cv2.getRotationMatrix2D((8.0, 8.0), 90, 1.0), (17, 17))
                    for img in x]).transpose(0, 3, 1, 2)
    assert torch.allclose(flat_transform(x, params(90.0)), torch.from_numpy(ref), atol=1e-4)


def test_flat_transform_replays_the_same_warp_on_two_images():
    from physadv.rendering.augment import FlatConfig, flat_transform, sample_flat

    a, b = torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 16)
    p = sample_flat(FlatConfig(noise_std=(0.0, 0.0), brightness=(0.0, 0.0)), a.shape, torch.Generator().manual_seed(0))
    # warping is linear: T(a) + T(b) == T(a + b) (before clamping) with identity brightness/contrast and no noise
    lhs = flat_transform(a / 2, p) + flat_transform(b / 2, p)
    rhs = flat_transform((a + b) / 2, p) + flat_transform(torch.zeros_like(a), p)
    assert torch.allclose(lhs, rhs, atol=1e-4)


def test_patch_covers_the_requested_area_and_only_where_allowed():
    from physadv.physical.patch import patch_mask
    from physadv.rendering.augment import PlacementConfig, paste

    cfg = PlacementConfig(area=(0.1, 0.1), rotation_deg=(0.0, 0.0))
    carriers = torch.zeros(8, 3, 64, 64)
    out = paste(carriers, torch.ones(3, 16, 16), patch_mask("square", 16), cfg, torch.Generator().manual_seed(0))
    assert torch.allclose(out.mean((1, 2, 3)), torch.full((8,), 0.1), atol=0.01)
    where = torch.zeros(1, 64, 64)
    where[:, :, :32] = 1  # the patch may show on the left half only
    out = paste(carriers, torch.ones(3, 16, 16), patch_mask("square", 16), cfg, torch.Generator().manual_seed(0), where)
    assert float(out[..., 32:].abs().max()) == 0 and float(out[..., :32].sum()) > 0
    assert float(patch_mask("circle", 64).mean()) == pytest.approx(math.pi / 4, abs=0.01)


def _judgements():
    from physadv.core.gridreport import Judgement as J

    return [J("clean", 5, 0, "a", "ft", "m", "stop", 0.9, "yield", 0.04, "stop", "speed_limit_80"),
            J("clean", 5, 0, "b", "ft", "m", "stop", 0.8, "yield", 0.08, "stop", "speed_limit_80"),
            J("adversarial", 5, 0, "a", "ft", "m", "speed_limit_80", 0.7, "stop", 0.2, "stop", "speed_limit_80"),
            J("adversarial", 5, 0, "b", "ft", "m", "stop", 0.6, "speed_limit_80", 0.3, "stop", "speed_limit_80"),
            J("adversarial", 10, 15, "a", "ft", "m", "speed_limit_80", 0.9, "stop", 0.05, "stop", "speed_limit_80")]


def test_grid_report_rates_and_table5_by_hand(tmp_path):
    from physadv.core import gridreport as G

    s = G.summary(_judgements())["m"]
    assert s["clean"]["accuracy"] == 1.0
    assert s["adversarial"]["targeted_success"] == pytest.approx(2 / 3)
    assert s["adversarial"]["by_angle"]["0"]["targeted_success"] == 0.5
    assert s["adversarial"]["by_distance"]["10"]["targeted_success"] == 1.0
    md = G.markdown_table(G.cells(_judgements()))
    assert "| 5 | 0 | stop (0.85) | yield (0.06) |" in md  # mean confidence of the majority class
    assert "| 10 | 15 | – | – | speed_limit_80 (0.90) | stop (0.05) | 100% |" in md
    # with probabilities, a cell's classes come from its mean probability vector
    recs = [G.Judgement("adversarial", 5, 0, "a", "ft", "m", "b", 0.5, "c", 0.4, "a", "b", (0.1, 0.5, 0.4)),
            G.Judgement("adversarial", 5, 0, "b", "ft", "m", "c", 0.6, "b", 0.3, "a", "b", (0.1, 0.3, 0.6))]
    assert "| 5 | 0 | c (0.50) | b (0.40) | 50% |" in G.markdown_table(G.cells(recs, ["a", "b", "c"]))
    out = G.write_report(tmp_path, _judgements(), "t")
    assert cv2.imread(str(next(tmp_path.glob("heatmap_m_adversarial_targeted.png")))) is not None
    assert out["summary"]["m"]["adversarial"]["views"] == 3


def test_success_intervals_are_scipys_wilson_intervals():
    """Wilson's score interval (the grid's bars sit on 70 views: 62 of 70 is 79-94%) against SciPy's binomtest."""
    from scipy.stats import binomtest

    from physadv.core.gridreport import summary, wilson_interval

    for k, n in ((62, 70), (0, 70), (70, 70), (35, 70), (1, 3), (7, 560)):
        ref = binomtest(k, n).proportion_ci(0.95, "wilson")
        assert wilson_interval(k, n) == pytest.approx((ref.low, ref.high), abs=1e-12)
    ref = binomtest(5, 20).proportion_ci(0.99, "wilson")
    assert wilson_interval(5, 20, 0.99) == pytest.approx((ref.low, ref.high), abs=1e-12)
    s = summary(_judgements())["m"]["adversarial"]  # 2 of 3 targeted, 2 of 3 untargeted
    ref = binomtest(2, 3).proportion_ci(0.95, "wilson")
    assert s["targeted_success_ci95"] == pytest.approx([ref.low, ref.high], abs=1e-4)
    with pytest.raises(ValueError, match="4 of 3"):
        wilson_interval(4, 3)


def test_transfer_matrix_rates_by_hand():
    from physadv.core.gridreport import Judgement as J, transfer_line, transfer_table

    js = [J("d1", 5, 0, victim="a", top1="t", true_class="s", target_class="t"),
          J("d1", 5, 0, victim="a", top1="s", true_class="s", target_class="t"),
          J("d1", 5, 0, victim="a", top1="t", true_class="s", target_class="t"),
          J("d1", 5, 0, victim="b", top1="x", true_class="s", target_class="t"),
          J("d2", 5, 0, victim="a", top1="s", true_class="s", target_class="t"),
          J("clean", 5, 0, victim="a", top1="s", true_class="s", target_class="t")]
    rows = transfer_table(js, {"d1": {"coverage": 0.1}})
    assert [r["design"] for r in rows] == ["d1", "d2"]  # the clean object is no design
    assert rows[0] == {"design": "d1", "coverage": 0.1, "targeted:a": 2 / 3, "untargeted:a": 2 / 3, "read:a": "t (67%)",
                       "targeted:b": 0.0, "untargeted:b": 1.0, "read:b": "x (100%)"}  # b read neither source nor target
    assert rows[1]["targeted:b"] is None and rows[1]["read:b"] is None
    assert rows[1]["untargeted:a"] == 0.0 and rows[1]["read:a"] == "s (100%)"
    assert transfer_line(rows[0]) == ("d1: targeted:a 66.7%, untargeted:a 66.7%, read:a t (67%), targeted:b 0.0%, "
                                      "untargeted:b 100.0%, read:b x (100%)")
    assert transfer_line(rows[1]) == "d2: targeted:a 0.0%, untargeted:a 0.0%, read:a s (100%)"  # b judged no view of d2


def test_transfer_heatmap_puts_an_ensembles_many_judges_down_the_page():
    """Four designs judged by 40 models: a tall figure (judges as rows); by 6 models: designs as rows, judges across."""
    import io

    from PIL import Image

    from physadv.core.gridreport import transfer_png

    def size(judges: int) -> tuple[int, int]:
        rows = [{"design": f"all but m{i}", **{f"targeted:member-{j}": (i + j) % 5 / 4 for j in range(judges)}}
                for i in range(4)]
        return Image.open(io.BytesIO(transfer_png(rows))).size

    (w40, h40), (w6, h6) = size(40), size(6)
    assert h40 > 2 * w40 and w6 > h6 and h40 > 4 * h6


def test_physical_result_round_trip_and_demo_design_key(tmp_path):
    from physadv.core.models import build_classifier
    from physadv.physical.attack import PhysicalResult
    from physadv.physical.demo import design_key
    from physadv.physical.rp2 import RP2Config

    g = torch.Generator().manual_seed(0)
    r = PhysicalResult("rp2", torch.rand(3, 8, 6, generator=g), torch.rand(3, 8, 6, generator=g), torch.ones(1, 8, 6),
                       (torch.rand(8, 6, generator=g) > 0.5).float(), {"rp2/loss": [1.0, 0.5]},
                       {"coverage": 0.4, "val_success": 0.9}, {"seconds": 12.0}, {"name": "stop", "width_m": 0.75},
                       {"kind": "targeted", "target": "speed_limit_80"})
    r.save(tmp_path / "d.safetensors")
    back = PhysicalResult.load(tmp_path / "d.safetensors")
    assert torch.equal(back.texture, r.texture) and torch.equal(back.mask, r.mask)
    assert (back.coverage, back.history, back.object, back.objective) == (r.coverage, r.history, r.object, r.objective)
    assert back.stickers.shape == (4, 8, 6)
    torch.manual_seed(1)
    a = build_classifier("gtsrb-cnn", width=0.25, hidden=16)
    key = design_key(a, RP2Config())
    assert key == design_key(a, RP2Config())
    assert key != design_key(a, RP2Config(steps=7))  # another config
    with torch.no_grad():
        next(a.parameters())[0, 0, 0, 0] += 1e-3
    assert key != design_key(a, RP2Config())  # other weights
    with pytest.raises(PhysadvError, match="not a physadv design"):
        from physadv.core.io import save_checkpoint

        save_checkpoint(tmp_path / "other.safetensors", {"x": torch.zeros(1)})
        PhysicalResult.load(tmp_path / "other.safetensors")
