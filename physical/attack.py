"""The one call shape of the physical attacks, their one result type, and what they share.

    attack = RP2(victim, scene, RP2Config(target="speed_limit_80"))   # or EOT(...), Patch(...)
    result = attack.run(checkpoint="runs/x/checkpoint.safetensors")   # PhysicalResult
    result.save("design.safetensors"); PhysicalResult.load("design.safetensors")

An attack optimises a parameter tensor ``w`` (RP2 and the patch: the colours through ``(tanh(w) + 1) / 2``, so they
stay in [0, 1]; EOT: the image itself, projected back onto [0, 1] and its eps-ball after each step) with Adam over views the scene draws, against a ``core.victims.Victim`` and its ``Objective``. The base class
owns the loop: the learning-rate schedule (a function of the step alone), the guarded step (a NaN or infinite loss
is a one-line error), validation on fixed held-out views with the best design kept, atomic checkpoints every
``checkpoint_every`` steps (parameter, Adam moments, the scene's random state, the best design, the history) and
exact resume. Subclasses say what the design is and what it costs: ``start``, ``loss`` and ``design``.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Literal, Optional

import torch
import torch.nn.functional as F

from physadv.core.config import added_later, config_hash
from physadv.core.errors import PhysadvError
from physadv.core.io import load_checkpoint, save_checkpoint, weights_fingerprint
from physadv.core.progress import progress
from physadv.core.victims import LossKind, Objective, Victim, Views, competing_views
from physadv.rendering.augment import gaussian_blur
from physadv.rendering.scene import Draw, Scene


@dataclass
class DesignConfig:
    """What every physical attack shares: the objective and the optimisation loop."""

    source: str = "stop"  # the object's own class ("": the object's label, e.g. a dataset image's)
    target: Optional[str] = "speed_limit_80"  # None: untargeted (away from source)
    objective: Literal["auto", "targeted", "untargeted", "disappearance", "creation"] = "auto"  # auto: from target
    loss: LossKind = "ce"  # cross-entropy (the papers), Carlini-Wagner's margin, or Zhao et al.'s logit
    kappa: float = 0.0  # margin loss: confidence at which the push stops
    steps: int = 300
    batch: int = 32  # views per step
    lr: float = 0.2
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    optimizer: Literal["adam", "momentum"] = "adam"  # momentum: MI-FGSM's normalised momentum, sign steps (Dong et al.)
    momentum: float = 1.0  # MI-FGSM's decay mu
    grad_sigma: float = added_later(0.0)  # TI (Dong et al. 2019): the texture gradient smoothed by a Gaussian, texels
    # min-max over views (after Wang et al., NeurIPS 2021: the robust attack over data transformations): each
    # step's views weighted by softmax(their loss / T), this temperature T (0: off, EOT's plain mean over views)
    view_balance: float = added_later(0.0)
    val_views: int = 96  # fixed held-out views on which the best design is chosen
    val_every: int = 25
    # an ensemble's best design: by its fused verdict, or by its least-fooled member (every member fooled)
    val_by: Literal["victim", "least_member"] = added_later("victim")
    checkpoint_every: int = 50
    restarts: int = 1  # independent runs (seeds seed, seed + 1, ...): the best on the validation views is kept
    restart_until: float = 1.0  # no further restart once the best run reaches this validation success
    seed: int = 0
    # Activation attack (Inkawhich et al. 2019): the victims' activations pulled towards the target's own under the
    # same view, with this weight (0: off); which activations; what the target looks like ("": the target's sign)
    feature_weight: float = added_later(0.0)
    feature_depth: float = added_later(0.5)  # the convolution at this relative depth of each classifier (0: first, 1: last)
    reference: str = added_later("")  # a sign of the sign world or an image file, stretched over the design

    def validate(self) -> None:
        if min(self.steps, self.batch, self.val_views, self.val_every, self.checkpoint_every, self.restarts) < 1:
            raise ValueError("steps, batch, val_views, val_every, checkpoint_every and restarts must be at least 1")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.view_balance < 0:
            raise ValueError(f"view_balance is a softmax temperature over the views' losses (0: off), "
                             f"got {self.view_balance}")
        if self.grad_sigma < 0:
            raise ValueError(f"grad_sigma is a Gaussian's width in texels (0: off), got {self.grad_sigma}")
        if not 0 <= self.restart_until <= 1:
            raise ValueError(f"restart_until is a success rate in [0, 1], got {self.restart_until}")
        if self.feature_weight < 0 or not 0 <= self.feature_depth <= 1:
            raise ValueError(f"feature_weight must be >= 0 and feature_depth in [0, 1], got {self.feature_weight} and "
                             f"{self.feature_depth}")
        if self.feature_weight > 0 and not self.target:
            raise ValueError("feature_weight pulls towards the target's activations: it needs a target")

    def make_objective(self) -> Objective:
        kind = self.objective if self.objective != "auto" else ("targeted" if self.target else "untargeted")
        return Objective(kind, self.source or None, self.target or None, self.loss, self.kappa)


@dataclass
class PhysicalResult:
    """What a physical attack made: the design, where it is, how the optimisation went, and what it cost."""

    attack: str  # rp2, eot, patch
    texture: torch.Tensor  # 3 x h x w sRGB: what to print (the object's face with the perturbation; a patch: the patch)
    clean: torch.Tensor  # 3 x h x w: the unperturbed face (a patch: the object's face it was designed on)
    alpha: torch.Tensor  # 1 x h x w: the design's shape
    mask: torch.Tensor  # h x w: where the perturbation is
    history: dict = field(default_factory=dict)  # loss terms and validation success per step
    metrics: dict = field(default_factory=dict)  # coverage, validation success, best step, colour distances, ...
    timings: dict = field(default_factory=dict)  # seconds, seconds_per_step, victim_share
    object: dict = field(default_factory=dict)  # the object (name, size in metres, source)
    objective: dict = field(default_factory=dict)  # kind, source, target, loss
    victim: dict = field(default_factory=dict)  # the victim it was designed against: name, members, their weights

    _TENSORS = ("texture", "clean", "alpha", "mask")

    @property
    def stickers(self) -> torch.Tensor:
        """RGBA: the perturbation alone (transparent elsewhere), what a sticker sheet prints."""
        return torch.cat([self.texture * self.mask, self.mask[None]], 0)

    @property
    def coverage(self) -> float:
        return float(self.metrics.get("coverage", 0.0))

    def save(self, path: str | Path) -> Path:
        """The whole result as safetensors (numbers, history and settings in its JSON metadata), atomically."""
        d = asdict(self)
        return save_checkpoint(path, {k: d.pop(k) for k in self._TENSORS}, d | {"format": "physadv.PhysicalResult/1"})

    @staticmethod
    def load(path: str | Path) -> "PhysicalResult":
        tensors, meta = load_checkpoint(path)
        if meta.pop("format", None) != "physadv.PhysicalResult/1":
            raise PhysadvError(f"{path}: not a physadv design result (a design run's design.safetensors)")
        names = {f.name for f in fields(PhysicalResult)}
        return PhysicalResult(**tensors, **{k: v for k, v in meta.items() if k in names})


def atanh_of(x: torch.Tensor) -> torch.Tensor:
    """The ``w`` whose ``(tanh(w) + 1) / 2`` is ``x`` (kept off the saturated ends)."""
    return torch.atanh((x * 2 - 1).clamp(-0.999, 0.999))


def colours(w: torch.Tensor) -> torch.Tensor:
    return (torch.tanh(w) + 1) / 2


def activation_distance(acts: dict, target: dict) -> torch.Tensor:
    """Inkawhich et al.'s activation attack distance (CVPR 2019, section 3: ``||f_L(x) - f_L(x_t)||``), squared and
    normalised per view by ``||f_L(x_t)||^2`` so that members of any width weigh alike; the mean over views and over
    the classifiers recorded in both ``acts`` and ``target`` (name -> ``N x C x h x w``)."""
    names = [n for n in acts if n in target]
    if not names:
        raise PhysadvError("no classifier activations were recorded for the feature term")
    return torch.stack([((acts[n] - target[n]).pow(2).flatten(1).sum(1) / target[n].pow(2).flatten(1).sum(1).clamp_min(1e-12)).mean()
                        for n in names]).mean()


def reference_texture(name: str, size: tuple[int, int] | None = None) -> torch.Tensor:
    """What the target looks like, ``3 x h x w`` sRGB: a sign of the sign world by name, else an image file;
    ``size``: stretched over a design of that size (bilinear, anti-aliased)."""
    from physadv.rendering.objects import image_object, sign_object
    from physadv.rendering.signs.textures import sign_classes

    if name in sign_classes():
        texture = sign_object(name).texture
    elif Path(name).is_file():
        texture = image_object(name, 1.0).texture
    else:
        raise PhysadvError(f"reference '{name}': neither a sign of the sign world nor an image file (feature_weight and "
                       "init: reference need the target's appearance: set reference to an image of it)")
    return texture if size is None else stretched(texture, size)


def stretched(texture: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``texture`` (``3 x h x w``) stretched over a design of ``size`` (bilinear, anti-aliased); as it is if it fits."""
    if tuple(texture.shape[-2:]) == tuple(size):
        return texture
    return F.interpolate(texture[None], size=tuple(size), mode="bilinear", antialias=True, align_corners=False)[0]


class PhysicalAttack:
    """Base class (see the module docstring). ``Config`` is the subclass's config dataclass."""

    name = "physical"
    Config = DesignConfig

    def __init__(self, victim: Victim, scene: Scene, cfg: DesignConfig | None = None, **overrides):
        cfg = cfg if cfg is not None else self.Config()
        if not isinstance(cfg, self.Config):
            raise PhysadvError(f"{type(self).__name__} takes a {self.Config.__name__}, got {type(cfg).__name__}")
        cfg = replace(cfg, **overrides) if overrides else cfg
        if not cfg.source and scene.obj.label:  # a dataset image or a sign knows its own class
            cfg = replace(cfg, source=scene.obj.label)
        try:
            cfg.validate()
        except ValueError as exc:
            raise PhysadvError(f"{self.name}: {exc}") from None
        self.cfg, self.victim, self.scene = cfg, victim.eval(), scene
        self.objective = cfg.make_objective()
        victim.classes_of(self.objective)  # unknown classes fail here, before any work
        self.device = victim.device
        self.victim_seconds = 0.0
        self.val_seed = cfg.seed  # restarts keep the first run's validation views, so their scores compare
        self.reference = reference_texture(cfg.reference or cfg.target) if cfg.feature_weight > 0 else None
        if self.reference is not None:
            with victim.recording(cfg.feature_depth):  # a victim without activations fails here, before any work
                pass

    # ------------------------------------------------------------------ what subclasses define
    def start(self) -> torch.Tensor:
        """The initial parameter ``w``."""
        raise NotImplementedError

    def design(self, w: torch.Tensor) -> torch.Tensor:
        """The printable design (``3 x h x w``) of parameter ``w``."""
        raise NotImplementedError

    def project(self, w: torch.Tensor) -> None:
        """Put ``w`` back into its feasible set after a step, in place (projected gradient methods)."""

    def loss(self, w: torch.Tensor, draw: Draw) -> tuple[torch.Tensor, dict]:
        """The total loss of one step on ``draw`` and its named terms (floats)."""
        raise NotImplementedError

    def prepare(self, val: Draw, checkpoint: str | Path | None, progress_bar: bool) -> dict:
        """Work before the main optimisation (RP2's mask search); returns its history."""
        return {}

    def views(self, design: torch.Tensor, draw: Draw) -> Views:
        """The views of the object wearing ``design`` (a patch pastes it first)."""
        return self.scene.render(design, draw)

    def finish(self, w: torch.Tensor, best: torch.Tensor) -> PhysicalResult:
        """The result from the best design (subclasses add their metrics)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shared pieces
    def adversarial_loss(self, views: Views) -> torch.Tensor:
        """The victim's mean loss on ``views`` for the objective (timed: the victim's share of a step); with
        ``view_balance`` = T > 0, the views' losses weighted by ``softmax(loss / T)`` (``view_weighted``)."""
        t0 = time.perf_counter()
        per_view = self.victim.loss(views, self.objective)
        out = view_weighted(per_view, self.cfg.view_balance) if self.cfg.view_balance > 0 else per_view.mean()
        self.victim_seconds += time.perf_counter() - t0
        return out

    def adversarial_terms(self, views: Views, design: torch.Tensor, draw: Draw) -> tuple[torch.Tensor, dict]:
        """The victim's mean loss on ``views`` of ``design`` (term ``adversarial``) plus, with ``feature_weight``,
        ``feature_weight`` times the activation term (``feature``): each classifier's activations on the views against
        its own on the reference stretched over the design, rendered with the same ``draw`` (poses, light, effects)
        and judged with the same seed (input diversity, member subset), so only the design differs. Returns the
        weighted total and the terms (floats)."""
        if self.reference is None:
            adv = self.adversarial_loss(views)
            return adv, {"adversarial": float(adv.detach())}
        with self.victim.recording(self.cfg.feature_depth) as acts:
            adv = self.adversarial_loss(views)
        self.reference = stretched(self.reference.to(design), design.shape[-2:])  # resampled on the first step only
        with torch.no_grad(), self.victim.recording(self.cfg.feature_depth) as target:
            self.victim.loss(self.views(self.reference, draw), self.objective)
        feature = activation_distance(acts, target)
        return adv + self.cfg.feature_weight * feature, {"adversarial": float(adv.detach()), "feature": float(feature.detach())}

    @torch.no_grad()
    def success_rate(self, design: torch.Tensor, draw: Draw) -> float:
        """The share of ``draw``'s views where the victim is fooled; with ``val_by: least_member``, an ensemble's
        least-fooled member's share (every member fooled is what transfer from ensembles asks: Liu et al. 2017)."""
        verdicts = [self.victim.judge(self.views(design, d), self.objective) for d in draw.split(64)]
        members = verdicts[0].members if self.cfg.val_by == "least_member" else None
        if not members:
            return float(torch.cat([v.success.float() for v in verdicts]).mean())
        return min(float(torch.cat([v.members[n].success.float() for v in verdicts]).mean()) for n in members)

    def validation_draw(self) -> Draw:
        """Fixed held-out views (their own random stream: the optimisation's draws do not move them)."""
        state = self.scene.state()
        self.scene.restore(torch.Generator().manual_seed(self.val_seed + 7_919).get_state())
        draw = self.scene.sample(self.cfg.val_views)
        self.scene.restore(state)
        return draw

    def run(self, checkpoint: str | Path | None = None, progress_bar: bool = True) -> PhysicalResult:
        """Optimise (resuming from ``checkpoint`` when it holds this attack's state) and return the result. With
        ``restarts`` > 1, independent runs from seeds ``seed``, ``seed + 1``, ... (random restarts, as strong attacks
        evaluate robustness: Madry et al. 2018, Croce and Hein 2020) and the best on the shared validation views; as
        AutoAttack does, restarts stop once a run reaches ``restart_until``, so they cost only where they are needed."""
        if self.victim.wants_clean:  # clean feature mixup's clean views, once: other classes' images, or the object
            draw = self.validation_draw()  # under the shared validation views
            dataset = self.victim.mixup_images
            self.victim.remember_clean(competing_views(dataset, self.objective, self.cfg.val_views, draw.seed) if dataset
                                       else self.scene.render(self.scene.obj.texture.to(self.device), draw))
        if self.cfg.restarts == 1:
            return self._run_once(checkpoint, progress_bar)
        results = []
        for i in range(self.cfg.restarts):
            ck = None if checkpoint is None else Path(checkpoint).with_name(f"{Path(checkpoint).stem}.restart{i}.safetensors")
            done = None if ck is None else ck.with_name(ck.stem + ".result.safetensors")
            # a run's key leaves out the restart loop's own keys: raising restarts or restart_until reuses finished runs
            run = type(self)(self.victim, self.scene, replace(self.cfg, seed=self.cfg.seed + i, restarts=1, restart_until=1.0))
            run.val_seed = self.cfg.seed
            key = config_hash({"config": _plain(run._config_key()), "victim": self.victim.name})
            finished = PhysicalResult.load(done) if done is not None and done.is_file() else None
            if (finished is not None and finished.metrics.get("restart_key") == key  # a finished restart is not run again
                    and finished.victim.get("weights", self.victim_weights) == self.victim_weights):  # (on these weights)
                results.append(finished)
            else:
                results.append(run._run_once(ck, progress_bar))
                results[-1].metrics["restart_key"] = key
                if done is not None:
                    results[-1].save(done)
            if results[-1].metrics["val_success"] >= self.cfg.restart_until:
                break
        best = max(results, key=lambda r: r.metrics["val_success"])  # the first of equals
        best.metrics["restarts"] = [r.metrics["val_success"] for r in results]
        best.timings["seconds"] = round(sum(r.timings["seconds"] for r in results), 2)
        return best

    def _run_once(self, checkpoint: str | Path | None, progress_bar: bool) -> PhysicalResult:
        start = time.perf_counter()
        torch.manual_seed(self.cfg.seed)
        self.scene.restore(torch.Generator().manual_seed(self.cfg.seed).get_state())
        val = self.validation_draw()
        before = self.prepare(val, checkpoint, progress_bar)
        w, best, stats = self.optimise(self.start().to(self.device), self.cfg.steps, val, checkpoint, self.name, progress_bar)
        result = self.finish(w, best)
        result.history = before | stats["history"]
        result.metrics.update(val_success=stats["best_rate"], best_step=stats["best_step"], steps=self.cfg.steps)
        result.timings = {"seconds": round(time.perf_counter() - start, 2),
                          "seconds_per_step": round(stats["seconds"] / max(1, stats["steps_run"]), 4),
                          "victim_share": round(self.victim_seconds / max(stats["seconds"], 1e-9), 3)}
        result.object = self.scene.obj.describe()
        result.objective = {k: v for k, v in asdict(self.objective).items()}
        result.victim = {"name": self.victim.name, "members": list(self.victim_weights), "weights": self.victim_weights}
        return result

    def optimise(self, w: torch.Tensor, steps: int, val: Draw, checkpoint: str | Path | None, phase: str,
                 progress_bar: bool = True) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Adam on ``w`` for ``steps`` steps of ``self.loss``; returns (w, the best design on ``val``, stats).
        Resumes from ``checkpoint`` when it holds state of this ``phase``; writes it every ``checkpoint_every``."""
        cfg = self.cfg
        w = w.detach().clone().requires_grad_(True)
        opt = torch.optim.Adam([w], lr=cfg.lr) if cfg.optimizer == "adam" else MomentumSign([w], cfg.lr, cfg.momentum)
        history: dict[str, list[float]] = {}
        best, best_rate, best_step, first = self.design(w.detach()), -1.0, 0, 0
        saved = self._resume(checkpoint, phase, w, opt)
        if saved is not None:
            best, best_rate, best_step, first, history = saved
        bar = progress(range(first, steps), desc=phase, total=steps, initial=first, disable=not progress_bar)
        self.victim_seconds, t0 = 0.0, time.perf_counter()
        for step in bar:
            if cfg.lr_schedule == "cosine":  # a function of the step alone: a resumed run follows the same schedule
                opt.param_groups[0]["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / steps))
            total, terms = self.loss(w, self.scene.sample(cfg.batch))
            if not torch.isfinite(total):
                if checkpoint:
                    self._save_best(checkpoint, best)
                raise PhysadvError(f"{phase} diverged: the loss became {float(total.detach())} at step {step} "
                                   f"(terms {terms}); the best design so far is saved" +
                                   (f" beside {checkpoint}" if checkpoint else "") + f"; lower lr (now {cfg.lr})")
            opt.zero_grad(set_to_none=True)
            total.backward()
            if cfg.grad_sigma > 0:
                w.grad = translation_invariant(w.grad, cfg.grad_sigma)
            opt.step()
            with torch.no_grad():
                self.project(w)
            for k, v in terms.items():
                history.setdefault(f"{phase}/{k}", []).append(v)
            if (step + 1) % cfg.val_every == 0 or step + 1 == steps:
                rate = self.success_rate(self.design(w.detach()), val)
                history.setdefault(f"{phase}/val_success", []).append(rate)
                if rate >= best_rate:
                    best, best_rate, best_step = self.design(w.detach()), rate, step + 1
                bar.set_postfix(loss=f"{float(total.detach()):.3f}", val=f"{rate:.0%}")
            if checkpoint and ((step + 1) % cfg.checkpoint_every == 0 or step + 1 == steps):
                self._checkpoint(checkpoint, phase, step + 1, w, opt, best, best_rate, best_step, history)
        stats = {"history": history, "best_rate": best_rate, "best_step": best_step, "steps_run": max(0, steps - first),
                 "seconds": time.perf_counter() - t0}
        return w.detach(), best, stats

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint(self, path, phase, step, w, opt, best, best_rate, best_step, history) -> None:
        state = {f"opt/{k}": torch.as_tensor(v).float().reshape(-1) if torch.as_tensor(v).ndim == 0 else v
                 for k, v in opt.state.get(w, {}).items()}
        save_checkpoint(path, {"w": w.detach(), "best": best, "rng": self.scene.state(), **state,
                               **self.checkpoint_tensors()},
                        {"attack": self.name, "phase": phase, "step": step, "best_rate": best_rate, "best_step": best_step,
                         "history": history, "config": self._config_key(), "victim_weights": self.victim_weights})

    @cached_property
    def victim_weights(self) -> dict[str, str]:
        """Each member's weights fingerprint (``core.io.weights_fingerprint``), by name: what a design was made against."""
        members = list(getattr(self.victim, "members", [self.victim]))
        return {m.name: weights_fingerprint(getattr(m, "model", m)) for m in members}

    def _config_key(self) -> dict:
        """The attack's own settings (a run's other sections, e.g. the grid, do not change its optimisation)."""
        from physadv.core.config import to_dict

        d = to_dict(self.cfg, for_hash=True)  # an option added later, at its default, leaves old checkpoints valid
        return {f.name: d[f.name] for f in fields(self.Config) if f.name in d}

    def holds(self, meta: dict) -> bool:
        """Whether a checkpoint's metadata is this attack's with this config, against these weights (any other lends
        nothing to the run; checkpoints written before the weights were recorded are taken as they are)."""
        return (meta.get("attack") == self.name and meta.get("config") == _plain(self._config_key())
                and meta.get("victim_weights", self.victim_weights) == self.victim_weights)

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        """Tensors a subclass needs to resume (e.g. RP2's mask)."""
        return {}

    def _resume(self, path, phase, w, opt):
        """Restore ``w``, Adam and the scene's random state from ``path`` if it holds this phase of this attack with
        this config; returns (best, best_rate, best_step, step, history) or None."""
        if not path or not Path(path).is_file():
            return None
        state, meta = load_checkpoint(path)
        if not self.holds(meta) or meta.get("phase") != phase:
            return None
        if tuple(state["w"].shape) != tuple(w.shape) or not self.accepts(state):
            return None
        with torch.no_grad():
            w.copy_(state["w"])
        saved = {k[4:]: v.clone().to(w.device) for k, v in state.items() if k.startswith("opt/")}
        if "step" in saved:  # Adam keeps its step count as a 0-d tensor
            saved["step"] = saved["step"].reshape(())
        if saved:
            opt.state[w] = saved
        self.scene.restore(state["rng"])
        return state["best"].to(w), meta["best_rate"], meta["best_step"], int(meta["step"]), meta["history"]

    def accepts(self, state: dict[str, torch.Tensor]) -> bool:
        """Whether a checkpoint's extra tensors fit this run (e.g. the same mask)."""
        return True

    def _save_best(self, path, best: torch.Tensor) -> None:
        from physadv.core.io import write_image

        p = Path(path)
        alpha = self.scene.obj.alpha if tuple(best.shape[-2:]) == tuple(self.scene.obj.alpha.shape[-2:]) else torch.ones(1, *best.shape[-2:])
        write_image(p.with_name("best_texture.png"), torch.cat([best.clamp(0, 1).cpu(), alpha], 0))
        save_checkpoint(p.with_name("best_texture.safetensors"), {"texture": best, "alpha": alpha})


def view_weighted(losses: torch.Tensor, temperature: float) -> torch.Tensor:
    """``sum_v p_v L_v`` with ``p = softmax(L / T)`` held constant (no gradient through the weights), whose gradient is
    that of ``max_{p in simplex} sum_v p_v L_v + T H(p) = T log sum_v exp(L_v / T)`` (Danskin), the
    entropy-regularised worst case over the views. EOT takes the expectation (Athalye et al. 2018), where views already
    fooled keep pulling; a min-max over transformations (Wang et al., "Adversarial Attack Generation Empowered by
    Min-Max Optimization", NeurIPS 2021: domain weights on the probability simplex, there with a quadratic
    regulariser) spends the step on the views not yet fooled. ``T`` -> infinity gives the mean, ``T`` -> 0 the
    hardest view."""
    p = torch.softmax(losses.detach().flatten() / temperature, 0)
    return (p * losses.flatten()).sum()


def translation_invariant(grad: torch.Tensor, sigma: float) -> torch.Tensor:
    """TI (Dong, Pang, Su and Zhu, CVPR 2019, eq. 8): the gradient convolved with a Gaussian kernel ``W`` (radius
    ``3 sigma``, reflected at the borders), which stands for the gradients of translated copies of the input and
    favours smooth perturbations that transfer, most of all to defended models; here over a texture's texels."""
    flat = grad.reshape(1, -1, *grad.shape[-2:])
    return gaussian_blur(flat, torch.tensor([float(sigma)])).reshape(grad.shape)


class MomentumSign(torch.optim.Optimizer):
    """MI-FGSM's update (Dong et al., CVPR 2018, eq. 6-7): ``g <- mu * g + grad / ||grad||_1``, ``w <- w - lr * sign(g)``
    (the L1 norm as a mean over elements, which only rescales ``g``); momentum stabilises the direction across the
    changing views and models, which the paper shows transfers better."""

    def __init__(self, params, lr: float, momentum: float = 1.0):
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
                buf.mul_(group["momentum"]).add_(p.grad / p.grad.abs().mean().clamp_min(1e-12))
                p.sub_(group["lr"] * buf.sign())


def _plain(d):
    """A config as JSON gives it back (tuples become lists), to compare with a checkpoint's copy."""
    import json

    return json.loads(json.dumps(d))


__all__ = ["DesignConfig", "PhysicalResult", "PhysicalAttack", "atanh_of", "colours", "translation_invariant",
           "view_weighted"]
