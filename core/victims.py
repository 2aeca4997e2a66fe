"""Victims: what an attack optimises against, behind one protocol.

A victim takes *views* of an object (``N x 3 x H x W`` images in [0, 1], sRGB, at any size), applies its own
preprocessing (crop around the object, resize to its input size, grey if it wants one channel; normalisation
lives inside the model), and gives

- ``loss(views, objective)``: a differentiable per-view loss to *minimise*, and
- ``judge(views, objective)``: a ``Verdict`` per view (prediction, score, success), without gradients.

An ``Objective`` names what the attacker wants by class *name*, so members of an ensemble, or a detector with
another label set, each resolve it against their own classes:

- ``targeted``: the object read as ``target`` (and, for detectors, not as ``source``);
- ``untargeted``: the object read as anything but ``source``;
- ``disappearance`` / ``creation``: detector objectives (the object not detected as ``source``; a phantom
  object of class ``target``), implemented by detector victims.

Losses on a classifier's log-probabilities ``l = log softmax(z)``:

- ``ce`` targeted ``-l_t`` (the cross-entropy of RP2, Eykholt et al. 2018, eq. 3, and EOT, Athalye et al. 2018);
  untargeted ``-log(1 - p_s)`` (Liu et al. 2017, section 3.1), computed as ``-logsumexp_{j != s} l_j``;
- ``margin`` targeted ``max(max_{j != t} l_j - l_t, -kappa)``, untargeted ``max(l_s - max_{j != s} l_j, -kappa)``:
  Carlini and Wagner's f_6 (2017, section V.A). On one classifier ``l_j - l_t = z_j - z_t``, so this is their
  logit margin exactly; on an averaged ensemble it is the margin of the fused log-probabilities.

On a classifier's logits ``z`` (before the softmax):

- ``logit`` targeted ``-z_t`` (Zhao et al., NeurIPS 2021, "On success and simplicity: a second look at
  transferable targeted attacks", section 3.2), untargeted ``z_s``: no softmax, so the push does not fade as the
  target's probability nears 1 (cross-entropy's gradient vanishes there); the view keeps moving towards the target
  class, which is what transfers to models it was not made on. On an ensemble it is the members' weighted sum,
  i.e. the loss on their averaged logits (their ensemble; Dong et al. 2018, eq. 8), whatever the fusion.

Victims by name (``load_model``, ``load_victim``; the ``--victim`` of every job): ``sign`` (registered by the sign
world: the built-in sign classifier), a zoo member (``core.zoo``; ``NAME@SEED``: its recipe from another seed;
``NAME+pgdEPS``: adversarially fine-tuned at EPS/255; ``NAME+lgvK``: its K-th LGV snapshot), a ``core.models``
registry name, a physadv classifier file, or ``ARCH=FILE`` (a torchvision or timm ImageNet architecture with local
weights, ``core.imagenet``); several names make an ensemble.

Implementations: ``ClassifierVictim`` (one ``core.models.Classifier``) and ``EnsembleVictim`` (several, each
seeing the same view through its own input size) whose fusion is a named option:

- ``mean_probability`` (the paper's setting, Liu et al. 2017, eq. 2 of section 4: the loss on
  ``log sum_i w_i softmax(f_i(x))``);
- ``sum_losses``: ``sum_i w_i loss(f_i(x))``, each member's own loss (pushes every member, including those the
  average already ignores);
- ``mean_logits``: the loss on ``log softmax(sum_i w_i z_i(x))``, the members' averaged logits (Dong et al. 2018,
  eq. 8, whose logit ensemble transferred better than averaged probabilities or losses); the ensemble's verdict is
  the argmax of those logits.

Activations (Inkawhich et al., CVPR 2019, "Feature space perturbations yield more transferable adversarial
examples"): ``with victim.recording(depth) as acts:`` keeps, for every classifier that runs inside the block,
the output of its convolution at relative depth ``depth`` (0: the first, 1: the last, in the order the network
registers them), keyed by the member's name; the physical attacks' ``feature_weight`` pulls them towards the
target's own activations under the same view.
"""
from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Literal, Mapping, Optional, Sequence, get_args

import torch
import torch.nn.functional as F
from torch import nn

from physadv.core.config import added_later
from physadv.core.data import ImageSet, dataset_names, load_dataset
from physadv.core.errors import PhysadvError
from physadv.core.models import Classifier

ObjectiveKind = Literal["targeted", "untargeted", "disappearance", "creation"]
LossKind = Literal["ce", "margin", "logit"]
Fusion = Literal["mean_probability", "sum_losses", "mean_logits"]
BalanceBy = Literal["member", "view"]  # an ensemble's loss balancing: each member over the views, or each view's members


@dataclass(frozen=True)
class Objective:
    """What the attacker wants; classes by name (each victim resolves them against its own classes)."""

    kind: ObjectiveKind
    source: str | None = None  # the object's own class
    target: str | None = None
    loss: LossKind = "ce"
    kappa: float = 0.0  # margin loss: no further push once the margin reaches kappa

    def __post_init__(self) -> None:
        need = {"targeted": ("target",), "untargeted": ("source",), "disappearance": ("source",), "creation": ("target",)}
        if self.kind not in need:
            raise PhysadvError(f"objective '{self.kind}' is not one of {', '.join(need)}")
        for name in need[self.kind]:
            if not getattr(self, name):
                raise PhysadvError(f"a {self.kind} objective needs a {name} class")
        if self.loss not in get_args(LossKind):
            raise PhysadvError(f"objective loss '{self.loss}' is not one of {', '.join(get_args(LossKind))}")
        if self.kind == "targeted" and self.source == self.target:
            raise PhysadvError(f"source and target are both '{self.target}'")
        if self.kappa < 0:
            raise PhysadvError(f"kappa must be >= 0, got {self.kappa}")


@dataclass
class Views:
    """Images of an object: ``images`` ``N x 3 x H x W`` in [0, 1] (sRGB); ``boxes`` ``N x 4`` (x0, y0, x1, y1) in
    torchvision's pixel convention (an image of width W spans [0, W]) where the object is in each image, or None
    when each image is already a crop around the object; ``seed`` (a scene's draw sets it) makes the victim's own
    random choices replayable."""

    images: torch.Tensor
    boxes: torch.Tensor | None = None
    seed: int | None = None  # replays the victim's own randomness on these views (input diversity, member subsets)

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[1] != 3:
            raise PhysadvError(f"views must be N x 3 x H x W images, got {tuple(self.images.shape)}")
        if self.boxes is not None and tuple(self.boxes.shape) != (len(self.images), 4):
            raise PhysadvError(f"views: {len(self.images)} images need N x 4 boxes, got {tuple(self.boxes.shape)}")

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class Verdict:
    """What a victim made of each view: predicted class index (-1: nothing detected), its score, the objective's
    success, and (ensembles) each member's own verdict."""

    pred: torch.Tensor  # N, long
    score: torch.Tensor  # N, probability of the prediction
    success: torch.Tensor  # N, bool
    probs: torch.Tensor | None = None  # N x K (classifiers)
    members: dict[str, "Verdict"] = field(default_factory=dict)


def log_prob_loss(logp: torch.Tensor, objective: Objective, source: int | None, target: int | None) -> torch.Tensor:
    """The per-view loss of ``objective`` on log-probabilities ``N x K`` (see the module docstring)."""
    if objective.kind == "targeted":
        idx = target
    elif objective.kind == "untargeted":
        idx = source
    else:
        raise PhysadvError(f"a classifier has no '{objective.kind}' objective (detectors have it)")
    own = logp[:, idx]
    others = logp.clone()
    others[:, idx] = -float("inf")
    if objective.loss == "ce":
        return -own if objective.kind == "targeted" else -torch.logsumexp(others, dim=1)
    best_other = others.amax(dim=1)
    margin = best_other - own if objective.kind == "targeted" else own - best_other
    return margin.clamp(min=-objective.kappa)


def loss_from_logits(z: torch.Tensor, objective: Objective, source: int | None, target: int | None) -> torch.Tensor:
    """The per-view loss of ``objective`` on logits ``N x K``: Zhao et al.'s ``-z_t`` (targeted), ``z_s``
    (untargeted) with ``loss: logit``, else ``log_prob_loss`` on ``log_softmax(z)``."""
    if objective.loss != "logit":
        return log_prob_loss(F.log_softmax(z, dim=1), objective, source, target)
    if objective.kind == "targeted":
        return -z[:, target]
    if objective.kind == "untargeted":
        return z[:, source]
    raise PhysadvError(f"a classifier has no '{objective.kind}' objective (detectors have it)")


def success_of(pred: torch.Tensor, objective: Objective, source: int | None, target: int | None) -> torch.Tensor:
    if objective.kind == "targeted":
        return pred == target
    if objective.kind == "untargeted":
        return pred != source
    raise PhysadvError(f"a classifier has no '{objective.kind}' objective (detectors have it)")


class Victim(nn.Module):
    """The protocol. Subclasses set ``name``, ``classes`` and ``input_size`` and implement ``loss`` and ``judge``."""

    name: str = "victim"
    classes: list[str]
    input_size: tuple[int, int, int]

    def index(self, name: str | None) -> int | None:
        """The index of class ``name`` (None stays None); an unknown name is a one-line error naming the victim."""
        if name is None:
            return None
        if name not in self.classes:
            shown = ", ".join(self.classes[:15]) + (", ..." if len(self.classes) > 15 else "")
            raise PhysadvError(f"class '{name}' is not one of {self.name}'s classes ({shown})")
        return self.classes.index(name)

    @property
    def device(self) -> torch.device:
        for t in list(self.parameters()) + list(self.buffers()):
            return t.device
        return torch.device("cpu")

    def classes_of(self, objective: Objective) -> tuple[int | None, int | None]:
        """(source, target) indices the objective needs (a classifier's targeted objective ignores the source)."""
        source = None if objective.kind == "targeted" else self.index(objective.source)
        return source, self.index(objective.target)

    def loss(self, views: Views, objective: Objective) -> torch.Tensor:
        raise NotImplementedError

    def judge(self, views: Views, objective: Objective) -> Verdict:
        raise NotImplementedError

    wants_clean = False  # remember_clean has work to do (clean feature mixup is on)
    mixup_images = ""  # where its clean views come from: a dataset's other classes (competing_views), or the object's

    def remember_clean(self, views: Views) -> None:
        """Record what the victim needs from clean views before an optimisation (clean feature mixup's features);
        most victims need nothing."""

    @contextmanager
    def recording(self, depth: float):
        """Inside the block, each classifier that runs keeps its activation at relative ``depth`` (module
        docstring) in the yielded ``{name: N x C x h x w}``; a victim without them says so."""
        raise PhysadvError(f"victim {self.name} has no activations to record (feature_weight needs classifiers)")
        yield {}


def activation_layer(model: nn.Module, depth: float) -> nn.Module:
    """The convolution at relative ``depth`` in [0, 1] among ``model``'s, in registration order."""
    if not 0 <= depth <= 1:
        raise PhysadvError(f"feature depth must be in [0, 1], got {depth}")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise PhysadvError(f"{type(model).__name__} has no convolution whose activations could be recorded")
    return convs[round(depth * (len(convs) - 1))]


def crop_boxes(images: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int], margin: float) -> torch.Tensor:
    """Each box plus ``margin`` of its size on every side, resampled to ``size`` (differentiable; bilinear with
    adaptive supersampling, so shrinking averages rather than aliases)."""
    from torchvision.ops import roi_align

    b = boxes.to(images)
    w, h = (b[:, 2] - b[:, 0]).clamp(min=1), (b[:, 3] - b[:, 1]).clamp(min=1)
    grown = torch.stack([b[:, 0] - margin * w, b[:, 1] - margin * h, b[:, 2] + margin * w, b[:, 3] + margin * h], 1)
    rois = torch.cat([torch.arange(len(b), device=b.device, dtype=b.dtype)[:, None], grown], 1)
    return roi_align(images, rois, output_size=size, spatial_scale=1.0, sampling_ratio=-1, aligned=True)


def input_diversity(x: torch.Tensor, p: float, g: torch.Generator, low: float = 0.9) -> torch.Tensor:
    """Input diversity (Xie et al., CVPR 2019, "Improving transferability of adversarial examples with input
    diversity", eq. 4): with probability ``p`` the batch is resized to a random side in ``[low * S, S]`` and padded
    back to ``S`` at a random offset (zeros, as their reference code); differentiable."""
    if float(torch.rand(1, generator=g)) >= p:
        return x
    h, w = x.shape[-2:]
    side = int(torch.randint(int(low * min(h, w)), min(h, w) + 1, (1,), generator=g))
    small = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
    top, left = (int(torch.randint(d - side + 1, (1,), generator=g)) for d in (h, w))
    return F.pad(small, (left, w - side - left, top, h - side - top))


@contextmanager
def dropout_erosion(model: nn.Module, p: float, g: torch.Generator):
    """Ghost networks by dropout erosion (Li et al., AAAI 2020, "Learning transferable adversarial examples via
    ghost networks", sec. 3.1): every convolution's output is multiplied by a fresh Bernoulli(1 - p) / (1 - p) mask,
    so each call sees another "ghost" of the model at no training cost; differentiable, and ``g`` replays it."""
    def erode(mod, inp, out):
        keep = torch.rand(out.shape, generator=g) >= p
        return out * keep.to(out.device, out.dtype) / (1 - p)

    hooks = [m.register_forward_hook(erode) for m in model.modules() if isinstance(m, nn.Conv2d)] if p > 0 else []
    try:
        yield
    finally:
        for h in hooks:
            h.remove()


@torch.no_grad()
def clean_features(model: nn.Module, x: torch.Tensor) -> dict:
    """The features clean feature mixup mixes in, by layer: the outputs of ``model`` on the clean inputs ``x`` at
    its linear layers and at its convolutions whose output is at most a quarter of the input's width (Byun et al.'s
    reference setting: the coarse end of the net); layers the forward pass does not run have none."""
    out: dict = {}
    hooks = [m.register_forward_hook(lambda mod, inp, o: out.__setitem__(mod, o.detach()))
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return {m: f for m, f in out.items() if isinstance(m, nn.Linear) or f.shape[-1] <= x.shape[-1] // 4}


@lru_cache(maxsize=2)
def _test_split(dataset: str) -> ImageSet:
    return load_dataset(dataset, "test")


def competing_views(dataset: str, objective: Objective, n: int, seed: int = 0) -> Views:
    """Clean images that compete with the object's class for clean feature mixup: ``n`` test images of
    ``dataset`` (class-balanced, drawn by ``seed``), none of the objective's source or target class. Byun et al.
    mix in the batch's other clean images, which are of other classes; the object's own views compete only with
    itself."""
    data = _test_split(dataset)
    keep = torch.tensor([c not in (objective.source, objective.target) for c in data.classes])[data.labels]
    if not keep.any():
        raise PhysadvError(f"victim.mixup_images: dataset '{dataset}' has no class but {objective.source} and {objective.target}")
    images = ImageSet(data.images[keep], data.labels[keep], data.classes, dataset).subset(n, seed).images
    return Views(images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images)


@contextmanager
def clean_feature_mixup(bank: Mapping[nn.Module, torch.Tensor], upper: float, prob: float, g: torch.Generator):
    """Clean feature mixup (Byun et al., CVPR 2023, "Introducing competition to boost the transferability of
    targeted adversarial examples through clean feature mixup", sec. 3.2, eq. 4): each layer of ``layers``, with
    probability ``prob`` per call, gives ``(1 - a) * f(x_adv) + a * f(x_clean)``, ``f(x_clean)`` a random row of
    the clean features ``bank`` (layer -> its outputs on clean views, ``clean_features``) for each view and ``a ~ U(0, upper)``
    per channel: competing clean features the perturbation must outweigh. Differentiable; ``g`` replays it."""
    def mix(bank_l):
        def hook(mod, inp, out):
            if float(torch.rand(1, generator=g)) >= prob:
                return out
            rows = torch.randint(len(bank_l), (len(out),), generator=g)
            n, c = len(out), out.shape[-1 if isinstance(mod, nn.Linear) else 1]  # a linear layer's channels come last
            a = torch.rand(n, c, generator=g) * upper
            a = a.view(n, *[1] * (out.ndim - 2), c) if isinstance(mod, nn.Linear) else a.view(n, c, *[1] * (out.ndim - 2))
            a = a.to(out.device, out.dtype)
            return (1 - a) * out + a * bank_l[rows].to(out)
        return hook

    hooks = [m.register_forward_hook(mix(b)) for m, b in bank.items()] if upper > 0 else []
    try:
        yield
    finally:
        for h in hooks:
            h.remove()


def _stable_hash(text: str) -> int:
    """A seed offset per member that does not change between runs (Python's hash() does)."""
    import zlib

    return zlib.crc32(text.encode()) % 1_000_003


class ClassifierVictim(Victim):
    """One classifier. Preprocessing: views with boxes are cropped GTSRB-style (the box plus ``margin`` per side);
    every view is resized (anti-aliased) to the classifier's input size, and turned grey for 1-channel models."""

    def __init__(self, model: Classifier, name: str | None = None, margin: float = 0.1, diversity: float = 0.0,
                 ghost: float = 0.0, mixup: float = 0.0, mixup_prob: float = 0.1, mixup_images: str = ""):
        super().__init__()
        if not 0 <= ghost < 1:
            raise PhysadvError(f"victim.ghost (dropout erosion rate) must be in [0, 1), got {ghost}")
        if not (0 <= mixup <= 1 and 0 <= mixup_prob <= 1):
            raise PhysadvError(f"victim.mixup and victim.mixup_prob must be in [0, 1], got {mixup} and {mixup_prob}")
        self.model = model.eval().requires_grad_(False)
        self.name = name or model.arch or "classifier"
        self.classes = list(model.classes)
        self.input_size = tuple(model.input_size)
        self.margin = margin
        self.diversity = diversity  # input diversity (Xie et al. 2019): the share of views resized and padded at random
        self.ghost = ghost  # dropout erosion (Li et al. 2020): a ghost of the model per optimisation step
        self.mixup, self.mixup_prob = mixup, mixup_prob  # clean feature mixup (Byun et al. 2023): see remember_clean
        self.mixup_images = mixup_images  # its clean images: a dataset's other classes, or ("") the object's own views
        if mixup_images and mixup_images not in dataset_names():
            raise PhysadvError(f"victim.mixup_images: unknown dataset '{mixup_images}'; known: {', '.join(dataset_names())}")
        self._clean_bank: dict = {}  # layer -> its features on clean views (remember_clean)

    def prepare(self, views: Views) -> torch.Tensor:
        c, h, w = self.input_size
        x = views.images.to(self.device)
        if views.boxes is not None:
            x = crop_boxes(x, views.boxes.to(self.device), (h, w), self.margin)
        elif tuple(x.shape[-2:]) != (h, w):
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        if c == 1:
            x = (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
        return x.clamp(0, 1)

    def logits(self, views: Views, diverse: bool = False) -> torch.Tensor:
        """Logits; ``diverse``: through input diversity, ghosts and clean feature mixup, when they are on
        (optimisation, not judging)."""
        x = self.prepare(views)
        if not diverse or not self.randomised:
            return self.model(x)
        if self.mixup > 0 and not self._clean_bank:
            raise PhysadvError(f"victim {self.name}: clean feature mixup (victim.mixup) needs remember_clean(views) first")
        g = torch.Generator().manual_seed((views.seed or 0) + _stable_hash(self.name))
        if self.diversity > 0:
            x = input_diversity(x, self.diversity, g)
        with dropout_erosion(self.model, self.ghost, g), \
                clean_feature_mixup(self._clean_bank, self.mixup, self.mixup_prob, g):
            return self.model(x)

    @property
    def randomised(self) -> bool:
        """Its optimisation forward differs from its judging forward (input diversity, ghosts, clean feature mixup)."""
        return self.diversity > 0 or self.ghost > 0 or self.mixup > 0

    @property
    def wants_clean(self) -> bool:
        return self.mixup > 0

    def remember_clean(self, views: Views) -> None:
        """With ``mixup`` on, record the features clean feature mixup mixes in (``clean_features``) on the clean
        ``views`` (the unperturbed object's, or with ``mixup_images`` ``competing_views``): the bank each
        optimisation step draws from."""
        if self.mixup > 0:
            self._clean_bank = clean_features(self.model, self.prepare(views))

    def log_probs(self, views: Views, diverse: bool = False) -> torch.Tensor:
        return F.log_softmax(self.logits(views, diverse), dim=1)

    def loss(self, views: Views, objective: Objective) -> torch.Tensor:
        return loss_from_logits(self.logits(views, diverse=True), objective, *self.classes_of(objective))

    @contextmanager
    def recording(self, depth: float, into: dict | None = None):
        acts = {} if into is None else into
        hook = activation_layer(self.model, depth).register_forward_hook(lambda mod, inp, out: acts.__setitem__(self.name, out))
        try:
            yield acts
        finally:
            hook.remove()

    @torch.no_grad()
    def judge(self, views: Views, objective: Objective) -> Verdict:
        p = self.log_probs(views).exp()
        score, pred = p.max(dim=1)
        return Verdict(pred, score, success_of(pred, objective, *self.classes_of(objective)), p)


class EnsembleVictim(Victim):
    """Several classifier victims on the same views, fused as ``fusion`` says (see the module docstring).

    Members must know the same class names (in any order: each member's outputs are reordered to the first's).
    ``weights`` default to equal and are normalised to sum to 1.
    """

    def __init__(self, members: Sequence[ClassifierVictim], weights: Sequence[float] | None = None,
                 fusion: Fusion = "mean_probability", name: str | None = None, subset: int = 0, balance: float = 0.0,
                 balance_plain: bool = False, balance_by: BalanceBy = "member"):
        super().__init__()
        if not members:
            raise PhysadvError("an ensemble victim needs at least one member")
        if fusion not in get_args(Fusion):
            raise PhysadvError(f"ensemble fusion '{fusion}' is not one of {', '.join(get_args(Fusion))}")
        if balance_by not in get_args(BalanceBy):
            raise PhysadvError(f"ensemble balance_by '{balance_by}' is not one of {', '.join(get_args(BalanceBy))}")
        if not 0 <= subset <= len(members) or balance < 0:
            raise PhysadvError(f"ensemble subset must be 0..{len(members)} and balance >= 0, got {subset} and {balance}")
        self.members = nn.ModuleList(members)
        self.classes = list(members[0].classes)
        for m in members[1:]:
            if sorted(m.classes) != sorted(self.classes):
                raise PhysadvError(f"ensemble members know different classes: {members[0].name} and {m.name}")
        self._order = [torch.tensor([m.classes.index(c) for c in self.classes]) for m in members]
        w = torch.tensor([1.0] * len(members) if weights is None else [float(x) for x in weights])
        if len(w) != len(members) or bool((w < 0).any()) or float(w.sum()) <= 0:
            raise PhysadvError(f"ensemble weights must be {len(members)} non-negative numbers, not all 0; got {w.tolist()}")
        self.weights = (w / w.sum()).tolist()
        self.fusion, self.subset, self.balance, self.balance_plain = fusion, subset, balance, balance_plain
        self.balance_by = balance_by
        self.name = name or "+".join(m.name for m in members)
        self.input_size = max((tuple(m.input_size) for m in members), key=lambda s: s[1] * s[2])

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.members]

    def member_logits(self, views: Views, members: Sequence[int] | None = None, diverse: bool = False) -> list[torch.Tensor]:
        """Each member's (or the chosen members') logits over the ensemble's class order."""
        idx = range(len(self.members)) if members is None else members
        return [self.members[i].logits(views, diverse)[:, self._order[i].to(self.members[i].device)] for i in idx]

    def fused_log_probs(self, logps: list[torch.Tensor], weights: Sequence[float] | torch.Tensor | None = None) -> torch.Tensor:
        """``log sum_i w_i p_i``: Liu et al.'s fusion of the members' probabilities (``weights``: one per member, or
        members x views)."""
        dev = logps[0].device
        stacked = torch.stack([lp.to(dev) for lp in logps])
        w = torch.as_tensor(self.weights if weights is None else weights, dtype=stacked.dtype, device=dev)
        log_w = (w / w.sum(0)).clamp_min(1e-30).log()
        return torch.logsumexp(stacked + log_w.view(len(log_w), -1, 1), dim=0)

    def loss(self, views: Views, objective: Objective) -> torch.Tensor:
        """The fused loss; with ``subset`` a random ``subset`` of members per call (seeded by ``views.seed``), with
        ``balance`` = T > 0 the members' weights times ``softmax(mean member cross-entropy / T)``, so members the
        design does not fool yet weigh more (no member is left behind); cross-entropy whatever the loss, because it
        is on one scale for every member (logits are not). With ``balance_plain`` that cross-entropy is each member's
        on the plain views, as it will be judged (one more forward pass, without gradients): input diversity, ghosts
        and clean feature mixup hurt members unequally, so their randomised losses can rank them wrongly. With
        ``balance_by: view`` each view weighs its members by their own cross-entropy on it, ``softmax(CE_mv / T)``
        over members: a member fooled on average but not on this view leads this view's loss (as T -> 0 the view's
        loss is its least-fooled member's; the min-max over models of Wang et al., NeurIPS 2021, per view)."""
        s, t = self.classes_of(objective)
        idx = list(range(len(self.members)))
        if self.subset:
            g = torch.Generator().manual_seed((views.seed or 0) + 17)
            idx = sorted(torch.randperm(len(idx), generator=g)[: self.subset].tolist())
        plain = {}  # member -> its plain logits, for the randomised members only (the others' are the same pass)
        if self.balance > 0 and self.balance_plain and torch.is_grad_enabled():  # only a gradient needs the weights
            redo = [i for i in idx if self.members[i].randomised]
            with torch.no_grad():  # before the randomised pass, so activations recorded for a feature loss are its
                plain = dict(zip(redo, self.member_logits(views, redo)))
        zs = self.member_logits(views, idx, diverse=True)
        dev = zs[0].device
        w = torch.tensor([self.weights[i] for i in idx], device=dev)
        per_member = self.fusion == "sum_losses" or objective.loss == "logit"
        if self.balance > 0:
            ce = replace(objective, loss="ce")
            judged = [plain.get(i, z) for i, z in zip(idx, zs)]  # what the weights come from
            unfooled = torch.stack([loss_from_logits(z.detach().to(dev), ce, s, t) for z in judged])  # members x views
            if self.balance_by == "view":
                w = w[:, None] * torch.softmax(unfooled / self.balance, 0)
            else:
                w = w * torch.softmax(unfooled.mean(1) / self.balance, 0)
        w = w / w.sum(0)  # per member, or members x views
        if per_member:
            own = torch.stack([loss_from_logits(z.to(dev), objective, s, t) for z in zs])  # members x views
            return (w.view(len(w), -1) * own).sum(0)
        if self.fusion == "mean_logits":
            return loss_from_logits(sum(wi.view(-1, 1) * z.to(dev) for wi, z in zip(w, zs)), objective, s, t)
        return log_prob_loss(self.fused_log_probs([F.log_softmax(z, dim=1) for z in zs], w), objective, s, t)

    @property
    def wants_clean(self) -> bool:
        return any(m.wants_clean for m in self.members)

    @property
    def mixup_images(self) -> str:
        return next((m.mixup_images for m in self.members if m.wants_clean and m.mixup_images), "")

    def remember_clean(self, views: Views) -> None:
        for m in self.members:
            m.remember_clean(views)

    @contextmanager
    def recording(self, depth: float):
        acts: dict = {}
        with ExitStack() as stack:
            for m in self.members:
                stack.enter_context(m.recording(depth, acts))
            yield acts

    @torch.no_grad()
    def judge(self, views: Views, objective: Objective) -> Verdict:
        s, t = self.classes_of(objective)
        zs = self.member_logits(views)
        logps = [F.log_softmax(z, dim=1) for z in zs]
        members = {}
        for name, lp in zip(self.names, logps):
            p = lp.exp()
            score, pred = p.max(dim=1)
            members[name] = Verdict(pred, score, success_of(pred, objective, s, t), p)
        if self.fusion == "mean_logits":
            p = torch.softmax(sum(w * z.to(zs[0].device) for w, z in zip(self.weights, zs)), dim=1)
        else:
            p = self.fused_log_probs(logps).exp()
        score, pred = p.max(dim=1)
        return Verdict(pred, score, success_of(pred, objective, s, t), p, members)


# --------------------------------------------------------------------------- victims by name
_MODEL_SOURCES: dict = {}


def register_model(name: str, loader) -> None:
    """Offer a named model (``loader() -> Classifier``) to ``load_model``; the sign world registers ``sign``."""
    _MODEL_SOURCES[name] = loader


@dataclass
class VictimConfig:
    models: list[str] = field(default_factory=lambda: ["sign"])
    fusion: Fusion = "mean_probability"  # Liu et al.'s, each member's loss, or Dong et al.'s averaged logits
    weights: Optional[list[float]] = None  # ensemble weights (default equal)
    margin: float = 0.1  # views with an object box are cropped with this margin per side (GTSRB)
    subset: int = 0  # ensembles: a random subset of this many members per step (0: all)
    balance: float = 0.0  # ensembles: temperature of the per-member loss balancing (0: off)
    balance_plain: bool = added_later(False)  # ...weighing members by their loss on the plain views, as judged (not
    # through input diversity, ghosts or clean feature mixup, which hurt members unequally); one more forward pass
    balance_by: BalanceBy = added_later("member")  # ...each member by its mean loss over the step's views, or each
    # view its members by their loss on it (a member fooled on average leads the views it is not fooled on)
    diversity: float = 0.0  # input diversity (Xie et al. 2019): probability of a random resize-and-pad per step
    ghost: float = added_later(0.0)  # ghost networks (Li et al. 2020): dropout erosion rate of every convolution's
    # output per step (0: off), a new virtual member each step
    mixup: float = added_later(0.0)  # clean feature mixup (Byun et al. 2023): the largest share of a clean view's
    # features mixed into a layer's output (their 0.75; 0: off), per channel, ...
    mixup_prob: float = added_later(0.1)  # ...in each mixup layer with this probability per step (theirs: 0.1)
    mixup_images: str = added_later("")  # ...from this dataset's test images of other classes (e.g. signs), as the paper's
    # batch of other images; "": the unperturbed object under the validation views
    # every zoo member named also joins trained from these seeds (NAME@SEED): an ensemble over weights as well as
    # architectures, for designs that transfer to weights they never saw (Liu et al. 2017; cf. Gubri et al. 2022)
    seeds: list[int] = added_later(factory=list)
    # every zoo member named, and its copies, is taken as its slightly robust copy NAME+pgdEPS, adversarially fine-tuned
    # at this L-inf radius in 1/255 (0: off): robust surrogates' designs carry to other models (Springer et al. 2021)
    robust_eps_255: float = added_later(0.0)
    robust_join: bool = added_later(False)  # ...the robust copies join the members instead of replacing them
    # every zoo member named, and its seed copies, is taken as its first lgv LGV snapshots NAME+lgv1..K (0: off): weights
    # collected along its training continued at a high constant learning rate (Gubri et al. 2022), a surrogate
    # ensemble of the vicinity of each member's weights
    lgv: int = added_later(0)

    def validate(self) -> None:
        if not self.models or not all(str(m).strip() for m in self.models):
            raise ValueError("victim.models: name at least one model")
        if self.weights is not None and len(self.weights) != len(self.named()):
            raise ValueError(f"victim.weights: {len(self.weights)} weights for {len(self.named())} models")
        if not 0 <= self.ghost < 1:
            raise ValueError(f"victim.ghost (dropout erosion rate) must be in [0, 1), got {self.ghost}")
        if not (0 <= self.mixup <= 1 and 0 <= self.mixup_prob <= 1):
            raise ValueError(f"victim.mixup and victim.mixup_prob must be in [0, 1], got {self.mixup} and {self.mixup_prob}")
        if not 0 <= self.diversity <= 1:
            raise ValueError(f"victim.diversity (a probability per step) must be in [0, 1], got {self.diversity}")
        if self.subset < 0 or self.balance < 0 or self.margin < 0:
            raise ValueError(f"victim.subset, victim.balance and victim.margin must be >= 0, got {self.subset}, "
                             f"{self.balance} and {self.margin}")
        if (self.balance_plain or self.balance_by != "member") and self.balance <= 0:
            raise ValueError("victim.balance_plain and victim.balance_by weigh the per-member balancing: set "
                             "victim.balance > 0 as well")
        if any(not isinstance(k, int) or k < 0 for k in self.seeds) or len(set(self.seeds)) < len(self.seeds):
            raise ValueError(f"victim.seeds: distinct non-negative integer seeds, got {self.seeds}")
        from physadv.core.zoo import LGV_MAX, ROBUST_EPS_MAX

        if not 0 <= self.robust_eps_255 <= ROBUST_EPS_MAX:
            raise ValueError(f"victim.robust_eps_255: a small L-inf radius in 1/255 (0: off), got {self.robust_eps_255}")
        if self.robust_join and not self.robust_eps_255:
            raise ValueError("victim.robust_join adds the members' robust copies: set victim.robust_eps_255 > 0 as well")
        if not 0 <= self.lgv <= LGV_MAX or (self.lgv and self.robust_eps_255):
            raise ValueError(f"victim.lgv: the number of LGV snapshots per member, 0 (off) to {LGV_MAX}, and not with "
                             f"victim.robust_eps_255; got {self.lgv}")

    def named(self) -> list[str]:
        """The models as named, one per comma-separated name."""
        return [s.strip() for m in self.models for s in str(m).split(",") if s.strip()]

    def _with_copies(self, name: str) -> list[str]:
        """``name``, then, for a zoo member, its copies from ``seeds``; with ``robust_eps_255``, each one's robust copy;
        with ``lgv``, each one's LGV snapshots instead."""
        from physadv.core.zoo import is_zoo_spec

        if not is_zoo_spec(name) or "+" in name:  # an explicit copy is kept as named
            return [name]
        names = [name] if "@" in name else [name, *(f"{name}@{k}" for k in self.seeds)]
        if self.lgv:
            return [f"{n}+lgv{k}" for n in names for k in range(1, self.lgv + 1)]
        if not self.robust_eps_255:
            return names
        robust = [f"{n}+pgd{self.robust_eps_255:g}" for n in names]
        return names + robust if self.robust_join else robust

    def specs(self) -> list[str]:
        """The members: the named models, each zoo member followed by its copies from ``seeds`` (or replaced by, or
        followed by, their robust copies: ``robust_eps_255``, ``robust_join``; or replaced by their LGV snapshots:
        ``lgv``)."""
        return [x for s in self.named() for x in self._with_copies(s)]

    def member_weights(self) -> Optional[list[float]]:
        """``weights`` per member: a model's copies from other seeds share its weight."""
        if self.weights is None:
            return None
        groups = [self._with_copies(s) for s in self.named()]
        return [w / len(g) for w, g in zip(self.weights, groups) for _ in g]


def load_model(spec: str, device: torch.device | str = "cpu") -> Classifier:
    """The classifier ``spec`` names (see the module docstring)."""
    from physadv.core.imagenet import is_imagenet_arch, load_imagenet_classifier
    from physadv.core.models import ARCHITECTURES
    from physadv.core.train import get_classifier, load_classifier

    if "=" in spec:
        arch, weights = spec.split("=", 1)
        if not is_imagenet_arch(arch):
            raise PhysadvError(f"--victim {spec}: '{arch}' is not a torchvision or timm ImageNet architecture")
        return load_imagenet_classifier(arch, weights).to(device)
    if spec == "":
        spec = "sign"
    if spec in _MODEL_SOURCES:
        return _MODEL_SOURCES[spec]().to(device).eval()
    from physadv.core.zoo import is_zoo_spec, zoo_names

    if is_zoo_spec(spec):
        from physadv.core.zoo import get_zoo_classifier

        return get_zoo_classifier(spec).to(device).eval()
    if spec in ARCHITECTURES and not ARCHITECTURES[spec].pretrained_only:
        return get_classifier(spec).to(device).eval()
    if Path(spec).is_file():
        return load_classifier(spec, device)
    raise PhysadvError(f"model '{spec}' is neither {', '.join(_MODEL_SOURCES) or 'sign'}, a zoo member "
                       f"({', '.join(zoo_names())}; NAME@SEED: another seed; NAME+pgdEPS: robust copy; NAME+lgvK: LGV "
                       "snapshot), a model name, a physadv classifier file, "
                       "nor ARCH=WEIGHTS for a torchvision/timm ImageNet architecture")


def load_victim(cfg: VictimConfig, device: torch.device | str = "cpu") -> Victim:
    """One classifier victim, or an ensemble of several."""
    try:
        cfg.validate()
    except ValueError as exc:
        raise PhysadvError(str(exc)) from None
    return victim_from(cfg, {s: load_model(s, device) for s in cfg.specs()})


def victim_from(cfg: VictimConfig, models: Mapping[str, Classifier], name: str | None = None) -> Victim:
    """The victim ``cfg`` describes over classifiers already loaded (``models``: spec -> classifier, holding every
    one of ``cfg.specs()``): one classifier, or an ensemble with the config's fusion, weights and options."""
    members = [ClassifierVictim(models[s], _short(s), cfg.margin, cfg.diversity, cfg.ghost, cfg.mixup, cfg.mixup_prob,
                                cfg.mixup_images) for s in cfg.specs()]
    if len(members) == 1:
        return members[0]
    return EnsembleVictim(members, cfg.member_weights(), cfg.fusion, name, subset=cfg.subset, balance=cfg.balance,
                          balance_plain=cfg.balance_plain, balance_by=cfg.balance_by)


def _short(spec: str) -> str:
    """A readable victim name for tables: the file's stem, the architecture, or the registry name."""
    if "=" in spec:
        return spec.split("=", 1)[0]
    return Path(spec).stem if spec.endswith((".safetensors", ".pt", ".pth")) else (spec or "sign")


__all__ = ["VictimConfig", "load_model", "load_victim", "victim_from", "register_model", "Objective", "Views", "Verdict", "Victim",
           "ClassifierVictim", "EnsembleVictim", "crop_boxes", "log_prob_loss", "loss_from_logits"]
