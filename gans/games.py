"""The games: each a loss object with one call shape, chosen by name.

    game = make_game(cfg.game)                     # "minimax", "wgan" or "wgan-gp"
    d_loss, stats = game.d_loss(D, real, fake, y)  # one discriminator / critic step's objective (minimised)
    g_loss = game.g_loss(D, fake, y)               # the generator's objective (minimised)
    game.after_d_step(D)                           # e.g. WGAN's weight clipping

``game.k`` is the number of discriminator steps per generator step (Goodfellow's k, WGAN's n_critic).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from physadv.core.errors import PhysadvError

GAMES = ("minimax", "wgan", "wgan-gp")


class Game:
    name = ""

    def __init__(self, k: int = 1):
        self.k = k

    def d_loss(self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor, y: torch.Tensor | None = None):
        raise NotImplementedError

    def g_loss(self, D: nn.Module, fake: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def after_d_step(self, D: nn.Module) -> None:
        pass


class Minimax(Game):
    """Goodfellow et al. 2014, Algorithm 1: D ascends log D(x) + log(1 - D(G(z))); G descends log(1 - D(G(z))),
    or, with ``nonsaturating``, ascends log D(G(z)) (the paper's section 3 remedy for early saturation, and what
    their code's ``AdversaryCost2`` trains G on). ``d_scale`` multiplies D's loss (their code: 0.5, the mean of
    the two cross-entropies). D outputs logits: log D = -softplus(-l), log(1 - D) = -softplus(l)."""

    name = "minimax"

    def __init__(self, k: int = 1, nonsaturating: bool = False, d_scale: float = 1.0):
        super().__init__(k)
        self.nonsaturating, self.d_scale = nonsaturating, d_scale

    def d_loss(self, D, real, fake, y=None):
        lr, lf = D(real, y), D(fake, y)
        loss = self.d_scale * (F.softplus(-lr).mean() + F.softplus(lf).mean())
        return loss, {"d_real": torch.sigmoid(lr).mean().item(), "d_fake": torch.sigmoid(lf).mean().item()}

    def g_loss(self, D, fake, y=None):
        lf = D(fake, y)
        return F.softplus(-lf).mean() if self.nonsaturating else -F.softplus(lf).mean()


class WGAN(Game):
    """Arjovsky et al. 2017, Algorithm 1: the critic maximises E f(x) - E f(G(z)), weights clipped to [-c, c]."""

    name = "wgan"

    def __init__(self, k: int = 5, clip: float = 0.01):
        super().__init__(k)
        self.clip = clip

    def d_loss(self, D, real, fake, y=None):
        fr, ff = D(real, y).mean(), D(fake, y).mean()
        return ff - fr, {"wasserstein": (fr - ff).item()}

    def g_loss(self, D, fake, y=None):
        return -D(fake, y).mean()

    @torch.no_grad()
    def after_d_step(self, D):
        for p in D.parameters():
            p.clamp_(-self.clip, self.clip)


class WGANGP(WGAN):
    """Gulrajani et al. 2017, Algorithm 1: L = D(x~) - D(x) + lambda (||grad D(x^)||_2 - 1)^2 with
    x^ = eps x + (1 - eps) x~, one eps ~ U[0, 1] per sample. ``drift`` adds eps_drift * E D(x)^2
    (Karras et al. 2018, appendix A.1). ``target`` gamma generalises the penalty as Karras et al.'s code does,
    lambda / gamma^2 (||grad|| - gamma)^2 (gamma = 1: Algorithm 1 exactly)."""

    name = "wgan-gp"

    def __init__(self, k: int = 5, gp_lambda: float = 10.0, drift: float = 0.0, generator: torch.Generator | None = None,
                 target: float = 1.0):
        super().__init__(k, clip=0.0)
        self.gp_lambda, self.drift, self.target = gp_lambda, drift, target
        self.generator = generator  # the trainer's noise generator, so runs are reproducible and resumable

    def d_loss(self, D, real, fake, y=None):
        dr, df = D(real, y), D(fake, y)
        eps = torch.rand(len(real), 1, 1, 1, generator=self.generator).to(real.device)
        x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(D(x_hat, y).sum(), x_hat, create_graph=True)
        gp = (grad.flatten(1).norm(2, dim=1) - self.target).pow(2).mean() / self.target**2
        loss = df.mean() - dr.mean() + self.gp_lambda * gp
        if self.drift:
            loss = loss + self.drift * dr.pow(2).mean()
        return loss, {"wasserstein": (dr.mean() - df.mean()).item(), "gp": gp.item()}

    def after_d_step(self, D):
        pass


@dataclass
class GameConfig:
    """Which game, and its constants (``configs/gans/*.yaml``: ``game:``)."""

    name: str = "minimax"
    k: int = 1  # discriminator steps per generator step (n_critic)
    nonsaturating: bool = True  # minimax only: G maximises log D(G(z))
    d_scale: float = 1.0  # minimax only: D's loss times this (Goodfellow et al.'s code: 0.5)
    clip: float = 0.01  # wgan only
    gp_lambda: float = 10.0  # wgan-gp only
    gp_target: float = 1.0  # wgan-gp: the gradient norm gamma the penalty pulls to (1: Gulrajani et al.)
    drift: float = 0.0  # wgan-gp: eps_drift (0.001 for progressive growing)

    def validate(self) -> None:
        if self.name not in GAMES:
            raise ValueError(f"game.name '{self.name}' is not a game; known: {', '.join(GAMES)}")
        if self.k < 1:
            raise ValueError(f"game.k must be at least 1, got {self.k}")
        if self.gp_target <= 0:
            raise ValueError(f"game.gp_target must be positive, got {self.gp_target}")
        if self.d_scale <= 0 or (self.d_scale != 1.0 and self.name != "minimax"):
            raise ValueError(f"game.d_scale {self.d_scale}: a positive scale of the minimax discriminator loss")


def make_game(cfg: GameConfig, generator: torch.Generator | None = None) -> Game:
    if cfg.name == "minimax":
        return Minimax(cfg.k, cfg.nonsaturating, cfg.d_scale)
    if cfg.name == "wgan":
        return WGAN(cfg.k, cfg.clip)
    if cfg.name == "wgan-gp":
        return WGANGP(cfg.k, cfg.gp_lambda, cfg.drift, generator, cfg.gp_target)
    raise PhysadvError(f"game.name '{cfg.name}' is not a game; known: {', '.join(GAMES)}")
