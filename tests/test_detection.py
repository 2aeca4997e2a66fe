"""core.detection*: AP50 against hand-computed closed forms; torchvision detector families built offline with raw
candidates; weights round trip and wrong-architecture errors; the detector victim's objectives and gradients."""
import math

import pytest
import torch
from torch import nn

from physadv.core.detection import (COCO_CATEGORIES, TORCHVISION_DETECTORS, Detector, build_detector, load_detector,
                                    load_detector_weights, save_detector)
from physadv.core.detection_metrics import ap_from_hits, average_precision
from physadv.core.detection_raw import Candidates, family
from physadv.core.detection_victim import DetectorVictim
from physadv.core.errors import PhysadvError
from physadv.core.victims import Objective, Views


def _det(boxes, scores, labels=None):
    b = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    return {"boxes": b, "scores": torch.tensor(scores, dtype=torch.float32),
            "labels": torch.tensor(labels if labels is not None else [1] * len(b), dtype=torch.long)}


def _gt(boxes, labels=None):
    b = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    return {"boxes": b, "labels": torch.tensor(labels if labels is not None else [1] * len(b), dtype=torch.long)}


A, B, FAR = [0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]


@pytest.fixture(autouse=True)
def one_thread():
    """ResNet-50 detectors on a shared 2-core machine: one thread is several times faster than two."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


_BUILT: dict = {}


def _family(name):
    """Each torchvision family built once per session (random weights, small input size)."""
    if name not in _BUILT:
        torch.manual_seed(0)
        _BUILT[name] = build_detector(name, **({} if name.startswith("ssd") else {"min_size": 64, "max_size": 80}))
    return _BUILT[name]


# --------------------------------------------------------------------------- AP closed forms
def test_ap_perfect_and_missing():
    assert average_precision([_det([A], [0.9])], [_gt([A])])["mean"] == 1.0
    assert average_precision([_det([], [])], [_gt([A])])["mean"] == 0.0


def test_ap_false_positive_ranked_first_halves_precision():
    # FP (0.9) then TP (0.8): recall 1 is reached at precision 1/2
    r = average_precision([_det([FAR, A], [0.9, 0.8])], [_gt([A])])
    assert r["mean"] == pytest.approx(0.5)


def test_ap_all_point_interpolation():
    # two objects; TP 0.9, FP 0.8, TP 0.7: (R, P) = (1/2, 1), (1/2, 1/2), (1, 2/3) -> 1/2 * 1 + 1/2 * 2/3
    r = average_precision([_det([A, FAR, B], [0.9, 0.8, 0.7])], [_gt([A, B])])
    assert r["mean"] == pytest.approx(0.5 + 0.5 * 2 / 3)
    # interpolation lifts an earlier dip: TP, FP, FP, TP, TP over 3 objects
    hits = torch.tensor([1, 0, 0, 1, 1], dtype=torch.bool).numpy()
    assert ap_from_hits(hits, 3) == pytest.approx(1 / 3 * 1 + 2 / 3 * 3 / 5)


def test_ap_duplicates_iou_threshold_classes_and_images():
    assert average_precision([_det([A, A], [0.9, 0.8])], [_gt([A])])["mean"] == 1.0  # a duplicate after the hit costs nothing
    half = [0, 0, 10, 4]  # IoU 0.4 with A
    assert average_precision([_det([half], [0.9])], [_gt([A])], iou=0.5)["mean"] == 0.0
    assert average_precision([_det([half], [0.9])], [_gt([A])], iou=0.3)["mean"] == 1.0
    # the wrong class is no hit; per class and mean; detections ranked across images
    r = average_precision([_det([A], [0.9], [2]), _det([B], [0.5], [1])], [_gt([A], [1]), _gt([B], [2])])
    assert r["per_class"] == {1: 0.0, 2: 0.0}
    r = average_precision([_det([FAR], [0.9]), _det([B], [0.5])], [_gt([A]), _gt([B])])
    assert r["mean"] == pytest.approx(0.5 * 0.5)  # TP at rank 2 of 2: recall 1/2 at precision 1/2


def test_ap_bad_input_is_one_line():
    with pytest.raises(PhysadvError, match="no 'scores'"):
        average_precision([{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)}], [_gt([A])])


# --------------------------------------------------------------------------- families, offline
@pytest.mark.parametrize("name", TORCHVISION_DETECTORS)
def test_torchvision_family_builds_offline_and_gives_raw_candidates(name):
    det = _family(name)
    assert det.classes == COCO_CATEGORIES and det.classes[13] == "stop sign"
    image = torch.rand(3, 60, 80, requires_grad=True)
    (cand,) = det.candidates([image])
    assert cand.probs.shape[1] == 91 and len(cand.boxes) == len(cand.probs) > 0
    assert float(cand.probs.detach().min()) >= 0 and float(cand.probs.detach().max()) <= 1
    # boxes come back in the input's pixels (the model resized the image)
    boxes = cand.boxes.detach()
    assert float(boxes[:, 2].max()) <= 80 + 1e-3 and float(boxes[:, 3].max()) <= 60 + 1e-3
    cand.probs[:, 13].max().backward()
    assert image.grad is not None and float(image.grad.abs().sum()) > 0
    out = det([image.detach()])[0]
    assert set(out) == {"boxes", "labels", "scores"}


def test_unknown_detector_and_foreign_model_are_one_line():
    with pytest.raises(PhysadvError, match="unknown detector 'yolo'"):
        build_detector("yolo")
    with pytest.raises(PhysadvError, match="raw_candidates"):
        family(nn.Linear(2, 2))


def test_fasterrcnn_weights_round_trip_and_wrong_architecture(tmp_path):
    det = _family("fasterrcnn_resnet50_fpn")
    path = tmp_path / "frcnn.pth"
    torch.save(det.model.state_dict(), path)
    back = load_detector_weights("fasterrcnn_resnet50_fpn", path, min_size=64, max_size=80)
    image = torch.rand(3, 60, 80)
    a, b = det([image])[0], back([image])[0]
    assert torch.allclose(a["scores"], b["scores"]) and torch.equal(a["labels"], b["labels"])
    with pytest.raises(PhysadvError) as err:
        load_detector_weights("retinanet_resnet50_fpn", path)
    assert str(path) in str(err.value) and "\n" not in str(err.value) and "do not fit" in str(err.value)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a state dict")
    with pytest.raises(PhysadvError, match="junk.pth"):
        load_detector_weights("fasterrcnn_resnet50_fpn", junk)


def _tiny_sign_net() -> Detector:
    torch.manual_seed(0)
    return build_detector("sign-detector", ["__background__", "stop", "yield", "no_entry"], frame_hw=(96, 128),
                          width=0.5, head_width=8)


def test_sign_detector_saves_and_loads_with_its_metadata(tmp_path):
    det = _tiny_sign_net()
    path = save_detector(tmp_path / "d.safetensors", det)
    back = load_detector(path)
    assert back.classes == det.classes and back.arch == "sign-detector"
    image = torch.rand(3, 96, 128)
    assert torch.allclose(det.candidates([image])[0].probs, back.candidates([image])[0].probs)
    with pytest.raises(PhysadvError, match="needs its class names"):
        build_detector("sign-detector")


# --------------------------------------------------------------------------- the detector victim
class ToyDetector(nn.Module):
    """Three fixed candidate boxes; class probabilities: softmax of a fixed linear map of each box's mean colour."""

    BOXES = torch.tensor([[8.0, 8, 24, 24], [10, 10, 26, 26], [40, 8, 56, 24]])

    def __init__(self):
        super().__init__()
        self.mix = nn.Linear(3, 4)
        with torch.no_grad():
            self.mix.weight.copy_(torch.tensor([[0.0, 0, 0], [4, -2, 0], [-2, 4, 0], [0, 0, 4]]))
            self.mix.bias.zero_()

    def raw_candidates(self, images):
        out = []
        for im in images:
            means = torch.stack([im[:, int(b[1]):int(b[3]), int(b[0]):int(b[2])].mean((1, 2)) for b in self.BOXES])
            out.append(Candidates(self.BOXES.clone(), torch.softmax(self.mix(means), -1)))
        return out

    def forward(self, images):
        out = []
        for c in self.raw_candidates(images):
            score, label = c.probs[:, 1:].max(1)
            out.append({"boxes": c.boxes, "labels": label + 1, "scores": score})
        return out


def _toy_victim():
    return DetectorVictim(Detector(ToyDetector().eval(), ["__background__", "stop", "yield", "no_entry"], "toy"))


def _red_views():
    images = torch.zeros(2, 3, 32, 64)
    images[:, 0, 8:26, 8:26] = 0.9  # a red object where boxes 0 and 1 are
    return Views(images.requires_grad_(True), torch.tensor([[8.0, 8, 25, 25]] * 2))


def test_victim_losses_follow_their_definitions():
    victim, views = _toy_victim(), _red_views()
    probs = victim.detector.candidates(views.images)[0].probs[:2].detach()  # the two candidates overlapping the object
    stop, yld = 1, 2
    d = victim.loss(views, Objective("disappearance", source="stop"))
    assert d.shape == (2,) and torch.allclose(d, probs[:, stop].max().expand(2))
    t = victim.loss(views, Objective("targeted", source="stop", target="yield"))
    expect = (-probs[:, yld].log() - (1 - probs[:, stop]).log()).mean()
    assert torch.allclose(t, expect.expand(2), atol=1e-5)
    c = victim.loss(views, Objective("creation", target="yield"))
    assert torch.allclose(c, -probs[:, yld].max().log().expand(2), atol=1e-5)
    m = victim.loss(views, Objective("disappearance", source="stop", loss="margin", kappa=1.0))
    z = probs[:, stop].max()
    assert torch.allclose(m, (z.log() - (1 - z).log()).clamp(min=-1.0).expand(2), atol=1e-5)


def test_victim_gradient_only_where_the_object_is_and_a_step_helps():
    victim, views = _toy_victim(), _red_views()
    objective = Objective("disappearance", source="stop")
    loss = victim.loss(views, objective)
    loss.sum().backward()
    g = views.images.grad[0].abs().sum(0)
    inside = torch.zeros_like(g, dtype=torch.bool)
    inside[8:26, 8:26] = True  # the union of the candidates that overlap the object
    assert float(g[inside].sum()) > 0 and float(g[~inside].sum()) == 0
    stepped = Views((views.images - 0.05 * views.images.grad.sign()).clamp(0, 1).detach(), views.boxes)
    assert bool((victim.loss(stepped, objective) < loss.detach()).all())


def test_victim_judge_matches_detections_to_the_object():
    victim, views = _toy_victim(), _red_views()
    v = victim.judge(views, Objective("disappearance", source="stop"))
    assert v.pred.tolist() == [1, 1] and not v.success.any() and v.probs.shape == (2, 4)
    assert victim.judge(views, Objective("targeted", source="stop", target="yield")).success.tolist() == [False, False]
    green = views.images.detach().clone()
    green[:, :, 8:26, 8:26] = torch.tensor([0.0, 0.9, 0.0]).view(3, 1, 1)  # now it reads as yield
    v = victim.judge(Views(green, views.boxes), Objective("targeted", source="stop", target="yield"))
    assert v.pred.tolist() == [2, 2] and v.success.all()
    far = Views(views.images.detach(), torch.tensor([[0.0, 0, 4, 4]] * 2))  # no detection there at all
    v = victim.judge(far, Objective("creation", target="yield"))
    assert v.pred.tolist() == [-1, -1] and v.score.tolist() == [0, 0] and not v.success.any()


def test_victim_bad_input_is_one_line():
    victim = _toy_victim()
    with pytest.raises(PhysadvError, match="views.boxes"):
        victim.loss(Views(torch.zeros(1, 3, 32, 64)), Objective("disappearance", source="stop"))
    with pytest.raises(PhysadvError, match="'stop sign' is not one of toy's classes"):
        victim.loss(_red_views(), Objective("disappearance", source="stop sign"))
    with pytest.raises(PhysadvError, match="not logits: use loss ce or margin"):
        victim.loss(_red_views(), Objective("disappearance", source="stop", loss="logit"))


def test_victim_on_a_tiny_random_sign_detector_is_differentiable():
    victim = DetectorVictim(_tiny_sign_net())
    torch.manual_seed(1)
    images = torch.rand(2, 3, 96, 128)
    images[:, :, 30:70, 40:80] = torch.tensor([0.8, 0.1, 0.1]).view(3, 1, 1)
    views = Views(images.requires_grad_(True), torch.tensor([[40.0, 30, 80, 70]] * 2))
    for objective in (Objective("disappearance", source="stop"), Objective("targeted", source="stop", target="yield"),
                      Objective("creation", target="no_entry")):
        loss = victim.loss(views, objective)
        assert loss.shape == (2,) and torch.isfinite(loss).all()
        (grad,) = torch.autograd.grad(loss.sum(), views.images)
        assert float(grad.abs().sum()) > 0
        stepped = Views((views.images - 0.02 * grad.sign()).clamp(0, 1).detach(), views.boxes)
        assert float(victim.loss(stepped, objective).sum().detach()) < float(loss.sum().detach())
    verdict = victim.judge(views, Objective("disappearance", source="stop"))
    assert verdict.pred.shape == (2,) and verdict.success.dtype == torch.bool
    assert not math.isnan(float(verdict.score.sum()))
