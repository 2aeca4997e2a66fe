"""The sign-world model zoo: named, diverse victim classifiers, each a training recipe in ``configs/signs/zoo.yaml``.

    from physadv.core.zoo import get_zoo_classifier, zoo_names
    import physadv.rendering.signs            # registers the ``signs`` data set (and the ``eot`` augmentation)
    names = zoo_names(hardened=False)         # the plain victims (the demo's ensemble picks from these)
    train_zoo(names)                          # the uncached members, two at a time on two cores (progress bar)
    models = [get_zoo_classifier(n) for n in names]   # then from the cache
    other = get_zoo_classifier("resnet-8@101")  # the same recipe from another seed (trained once, cached)
    robust = get_zoo_classifier("resnet-8+pgd1")  # its weights adversarially fine-tuned at 1/255: a robust surrogate

Every member is a ``core.train.TrainConfig`` (architecture, input size, seed, epochs, lr, ...) trained by
``core.train`` and cached by its config hash in ``$PHYSADV_CACHE/classifiers``. Hardened members
(``hardened: true``) are trained against an adversary (PGD adversarial training, Madry et al. 2018) or with
the EOT camera effects as augmentation; they are slower to train and not meant for the demo.

``core`` never imports ``rendering``: the sign data set is registered by importing ``physadv.rendering.signs``
(the ``physadv`` command line does), and asking for a member before that is a clear error.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import lru_cache

import torch

from physadv.core.config import load_config
from physadv.core.errors import PhysadvError
from physadv.core.models import Classifier
from physadv.core.resources import packaged
from physadv.core.robust import PGDConfig
from physadv.core.train import TrainConfig, cached_classifier_path, cached_metrics, get_classifier

ZOO_FILE = str(packaged("signs/zoo.yaml"))  # the shipped recipes, found from any directory
ROBUST_EPS_MAX = 16.0  # NAME+pgdEPS: the largest radius (1/255) of a robust copy
LGV_MAX = 40  # NAME+lgvK: the most snapshots (LGV's 10 epochs x 4 per epoch)


@dataclass
class ZooMember:
    """One zoo entry: its family (for tables and for choosing a diverse ensemble) and its training recipe."""

    family: str
    train: TrainConfig = field(default_factory=TrainConfig)
    hardened: bool = False  # trained against an adversary or with EOT augmentation: not a plain victim
    note: str = ""

    def validate(self) -> None:
        if not self.family:
            raise ValueError("family must be given (e.g. 'ResNet')")


@dataclass
class ZooConfig:
    members: dict[str, ZooMember] = field(default_factory=dict)

    def validate(self) -> None:
        if not self.members:
            raise ValueError("members: the zoo needs at least one member")


@lru_cache(maxsize=4)
def _load(path: str) -> ZooConfig:
    return load_config(ZooConfig, path)


def zoo_config(path: str | None = None) -> ZooConfig:
    """The zoo's recipes (default: the shipped ``configs/signs/zoo.yaml``; ``$PHYSADV_ZOO`` names another file)."""
    return _load(str(path or os.environ.get("PHYSADV_ZOO") or ZOO_FILE))


def zoo_names(hardened: bool | None = None, path: str | None = None) -> list[str]:
    """Member names in file order; ``hardened=False``: only plain victims, ``True``: only hardened ones."""
    members = zoo_config(path).members
    return [n for n, m in members.items() if hardened is None or m.hardened == hardened]


def zoo_member(name: str, path: str | None = None) -> ZooMember:
    """Member ``name``: ``NAME``, ``NAME@SEED`` (the same recipe trained from another seed: a second instance of the
    architecture, for asking whether a result holds for the architecture or only for one set of weights), and either
    with ``+pgdEPS`` (the member's trained weights adversarially fine-tuned at the small L-inf radius EPS/255 by its
    own recipe, e.g. ``resnet-8+pgd1``: a slightly robust surrogate, whose adversarial examples carry to other models;
    Springer et al. 2021, "A little robustness goes a long way", who train from scratch; fine-tuning after Jeddi et al.
    2020, "A simple fine-tuning is all you need") or ``+lgvK`` (the K-th LGV snapshot: its training continued at a
    high constant learning rate, Gubri et al. 2022)."""
    spec, plus, eps = name.partition("+")
    base, at, seed = spec.partition("@")
    if plus and eps.startswith("lgv"):
        return _lgv_snapshot(name, zoo_member(spec, path), eps.removeprefix("lgv"))
    members = zoo_config(path).members
    if base not in members:
        raise PhysadvError(f"unknown zoo member '{base}'; known: {', '.join(members)}")
    member = members[base]
    if at:
        if not seed.isdigit():
            raise PhysadvError(f"zoo member '{name}': after '@' comes a training seed (a non-negative integer), got '{seed}'")
        member = replace(member, train=replace(member.train, seed=int(seed)))
    if plus:
        radius = _pgd_radius(eps)
        if radius is None or member.train.adversarial is not None:
            raise PhysadvError(f"zoo member '{name}': after '+' comes pgdEPS, a small L-inf radius in 1/255 (e.g. "
                               f"'+pgd1') of a member not adversarially trained already, or lgvK; got '+{eps}'")
        # from scratch, adversarial training converged slower and less surely (a MobileNetV2 copy stopped at 77% with
        # the recipe's epochs, one from another seed at 93% with twice them, reading 80 as 50); from the member's
        # weights it keeps the member's accuracy in the recipe's epochs
        member = replace(member, hardened=True, train=replace(member.train, adversarial=surrogate_pgd(radius),
                                                             init=member.train))
    return member


def _lgv_snapshot(name: str, member: ZooMember, k: str) -> ZooMember:
    """``NAME+lgvK``: the K-th weights of LGV (Gubri et al. 2022, "LGV: boosting adversarial example transferability
    from large geometric vicinity", Alg. 1), collected along the member's training continued from its trained weights
    at a constant high learning rate, one epoch per snapshot: snapshot K starts from snapshot K-1's weights (from the
    member's at K = 1), with the data order of seed + K. The rate is half the recipe's initial one, as LGV's 0.05
    is half the 0.1 its ImageNet surrogates started from (at the full rate a ResNet-8's third snapshot fell to 85%)."""
    if not k.isdigit() or not 1 <= int(k) <= LGV_MAX or member.train.adversarial is not None or member.train.init:
        raise PhysadvError(f"zoo member '{name}': after '+' comes lgvK, the K-th LGV snapshot (1 to {LGV_MAX}) of a "
                           f"member trained from scratch and not adversarially, got '+lgv{k}'")
    start = member.train
    for step in range(1, int(k) + 1):
        start = replace(member.train, epochs=1, lr=member.train.lr / 2, lr_schedule="constant",
                        seed=member.train.seed + step, init=start)
    return replace(member, train=start)


def _pgd_radius(word: str) -> float | None:
    try:
        eps = float(word.removeprefix("pgd")) if word.startswith("pgd") else None
    except ValueError:
        return None
    return eps if eps is not None and 0 < eps <= ROBUST_EPS_MAX else None


def surrogate_pgd(eps_255: float) -> PGDConfig:
    """A slightly robust surrogate's adversary (``+pgdEPS``): Madry et al.'s PGD from a random start with 3 steps of
    2.5 eps / 3 (their step rule), cheap enough at the small radii Springer et al. 2021 use for transfer."""
    return PGDConfig(eps_255=eps_255, step_255=round(2.5 * eps_255 / 3, 4), steps=3, random_start=True)


def is_zoo_spec(spec: str, path: str | None = None) -> bool:
    """Whether ``spec`` names a zoo member: ``NAME``, ``NAME@SEED``, either with ``+pgdEPS`` or ``+lgvK``."""
    return spec.partition("+")[0].partition("@")[0] in zoo_config(path).members


def _check_data_registered(cfg: TrainConfig) -> None:
    from physadv.core.data import dataset_names

    if cfg.data.name not in dataset_names():
        raise PhysadvError(f"zoo: dataset '{cfg.data.name}' is not registered; `import physadv.rendering.signs` first")


@contextmanager
def torch_threads(n: int):
    """Run with ``n`` torch threads (small nets on a shared CPU train faster on one), then restore the old count."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def get_zoo_classifier(name: str, progress: bool = True, retrain: bool = False, path: str | None = None,
                       threads: int = 1) -> Classifier:
    """Zoo member ``name``, trained once with a progress bar (on ``threads`` torch threads), then from the cache."""
    cfg = zoo_member(name, path).train
    if not cached_classifier_path(cfg).is_file() or retrain:
        _check_data_registered(cfg)
    with torch_threads(threads):
        return get_classifier(cfg, retrain=retrain, progress=progress)


def train_zoo(names: list[str], workers: int | None = None, progress: bool = True, path: str | None = None) -> list[str]:
    """Train the members of ``names`` not cached yet (and the members robust copies start from) and return their
    names. Each trains on one torch thread (small nets train fastest so), so ``workers`` processes (default: one per
    CPU core) train that many members at once; with one worker, or on CUDA, they train one after another in this
    process. A member trains exactly as ``get_zoo_classifier`` trains it alone: same recipe, seed and thread count,
    hence the same weights."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from physadv.core.progress import progress as bar

    recipes = {n: zoo_member(n, path).train for n in names}
    todo = [n for n in names if not cached_classifier_path(recipes[n]).is_file()]
    for n in todo:
        _check_data_registered(recipes[n])
    workers = min(workers or os.cpu_count() or 1, len(todo))
    if workers <= 1 or torch.cuda.is_available():
        for n in todo:
            get_zoo_classifier(n, progress, path=path)
        return todo
    for data in {repr(recipes[n].data): recipes[n].data for n in todo}.values():
        data.load("train"), data.load("test")  # generated and cached once, before the workers read it
    # a fine-tuned recipe (a robust copy, an LGV snapshot) waits for the weights it starts from, and starts as soon as
    # they are there; of the recipes ready, the longest chain of recipes waiting on it goes first (critical path)
    waiting: dict[str, tuple[str, TrainConfig, str | None]] = {}  # cache key -> (name, recipe, the key it waits for)
    chain: dict[str, int] = {}  # cache key -> recipes from it to the end of the longest chain through it
    for n in todo:
        steps, cfg = [], recipes[n]
        while cfg is not None and not cached_classifier_path(cfg).is_file():
            steps.insert(0, cfg)
            cfg = cfg.init
        for k, cfg in enumerate(steps):
            key = cfg.cache_key()
            waiting.setdefault(key, (n if cfg is recipes[n] else f"{n}'s start", cfg, steps[k - 1].cache_key() if k else None))
            chain[key] = max(chain.get(key, 0), len(steps) - k)
    total, done, running = len(waiting), set(), {}
    # fork: the workers inherit the registered data sets (core cannot import rendering to register them again)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool, \
            bar(total=total, desc=f"zoo: training {total} members, {workers} at a time", disable=not progress) as b:
        while waiting or running:
            ready = sorted((k for k, (_, _, up) in waiting.items() if up is None or up in done), key=lambda k: -chain[k])
            for key in ready[:workers - len(running)]:
                name, cfg, _ = waiting.pop(key)
                running[pool.submit(_train_recipe, cfg)] = (key, name)
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for job in finished:
                key, name = running.pop(job)
                job.result()  # a member's error is raised here, naming it
                done.add(key)
                b.set_postfix_str(name)
                b.update()
    return todo


def _train_recipe(cfg: TrainConfig) -> None:
    with torch_threads(1):  # as get_zoo_classifier trains it
        get_classifier(cfg, progress=False)


def zoo_training_metrics(name: str, path: str | None = None) -> dict | None:
    """What training recorded (held-out accuracy, training seconds), or None when the member is not cached yet."""
    return cached_metrics(zoo_member(name, path).train)
