"""Rotations and translations (Engstrom, Tran, Tsipras, Schmidt and Madry, ICML 2019).

An image is rotated by an angle about its centre, then shifted by (tx, ty) pixels (bilinear sampling, black
outside the frame). The adversary searches, per image:

- ``grid``: every combination of ``trans_steps`` x ``trans_steps`` translations in +-``max_trans`` and
  ``rot_steps`` rotations in +-``max_rot`` degrees (the paper: 5 x 5 x 31 within +-3 px and +-30 degrees);
- ``random`` (worst-of-k): ``k`` transformations per image drawn uniformly from the same continuous ranges,
  not from the grid (the paper: k = 10; the authors' code draws each image's tries the same way);

and keeps a transformation that misclassifies when there is one (the highest-loss one among them), else the one
with the highest cross-entropy of the given label, as the authors' code does.
With ``pgd_eps > 0`` the adversary is the paper's combined one, as the authors' code runs it: for every
candidate transformation T, L-inf PGD on the untransformed image x through T (the classifier sees
T(x + delta)); the candidate is then chosen by the same rule on T(x + delta_T). It costs one PGD run per
candidate (k for worst-of-k, the whole grid for ``grid``).

"Black canvas" setting: pad the images onto a larger black canvas first (``black_canvas``) so that nothing
is cut by the transformation, and attack a model trained on canvas images (``canvas_classifier``); the
standard setting transforms the image within its own frame (zeros come in, what leaves is cut), which is what
the authors' released code does by default (zero-pad, rotate, translate, crop back to the input size).
On a canvas pass ``max_trans`` of the original image (the ``spatial`` job does: +-3 px on MNIST), else the
range would be 10% of the canvas width.

``loss_landscape``: the paper's Figure 3, one image's loss over left-right translation x rotation, whose many
local maxima show why first-order methods do poorly here and the grid search is used (``physadv attack spatial
--set landscape=0`` writes it for the first attacked image).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from physadv.attacks.base import Attack, check_nonneg, check_positive_int
from physadv.attacks.gradient import PGD
from physadv.core.errors import PhysadvError


def rotate_translate(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Rotate each image of ``x`` (``N x C x H x W``) by ``params[:, 0]`` degrees about its centre, then shift it
    by ``params[:, 1:]`` = (tx, ty) pixels (x right, y down); bilinear, black outside the frame. Positive angles
    turn the image clockwise as displayed (x right, y down: the pixel at ``(x, y)`` from the centre goes to
    ``(x cos a - y sin a, x sin a + y cos a)``; OpenCV's ``getRotationMatrix2D`` turns the other way)."""
    n, _, h, w = x.shape
    a = params[:, 0].to(x) * math.pi / 180
    c, s = torch.cos(a), torch.sin(a)
    tx, ty = params[:, 1].to(x) * 2 / w, params[:, 2].to(x) * 2 / h  # pixels -> normalised coordinates
    # output p = R q + t in pixels  =>  sampled input q = R^T (p - t); in normalised coordinates R^T becomes
    # A^-1 R^T A with A = diag(w, h) / 2, so that a non-square image turns without shearing
    r, rt = h / w, w / h
    theta = torch.stack([torch.stack([c, s * r, -(c * tx + s * r * ty)], 1),
                         torch.stack([-s * rt, c, s * rt * tx - c * ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def black_canvas(images: torch.Tensor, pad: int) -> torch.Tensor:
    """Images centred on a black canvas ``pad`` pixels wider on every side."""
    return F.pad(images, (pad, pad, pad, pad), value=0.0)


def transform_grid(max_rot: float, max_trans: float, rot_steps: int, trans_steps: int) -> torch.Tensor:
    """All (angle, tx, ty) combinations of the grid attack, ``T x 3``."""
    rots = torch.linspace(-max_rot, max_rot, rot_steps)
    trans = torch.linspace(-max_trans, max_trans, trans_steps)
    r, tx, ty = torch.meshgrid(rots, trans, trans, indexing="ij")
    return torch.stack([r.flatten(), tx.flatten(), ty.flatten()], 1)


class _Transformed(nn.Module):
    """``model`` seeing its input through the per-image transformations ``params``."""

    def __init__(self, model: nn.Module, params: torch.Tensor):
        super().__init__()
        self.model, self.params = model, params

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(rotate_translate(x, self.params))


def _score(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A misclassifying transformation first (the highest loss among them), else the highest loss."""
    return F.cross_entropy(logits, y, reduction="none") + (logits.argmax(1) != y).float() * 1e6


class SpatialAttack(Attack):
    """Grid or worst-of-k rotation + translation attack; ``result.extras`` has the chosen angle, tx and ty."""

    name = "spatial"

    def __init__(self, model: nn.Module, mode: str = "grid", max_rot: float = 30.0, max_trans: float | None = None,
                 rot_steps: int = 31, trans_steps: int = 5, k: int = 10, pgd_eps: float = 0.0, pgd_steps: int = 40,
                 pgd_alpha: float = 0.01, seed: int = 0, chunk: int = 4096, batch_size: int = 256):
        if mode not in ("grid", "random"):
            raise PhysadvError(f"mode must be 'grid' or 'random', got '{mode}'")
        check_nonneg(max_rot=max_rot, pgd_eps=pgd_eps, max_trans=0 if max_trans is None else max_trans)
        check_positive_int(rot_steps=rot_steps, trans_steps=trans_steps, k=k, chunk=chunk)
        super().__init__(model, batch_size)
        self.mode, self.max_rot, self.max_trans = mode, max_rot, max_trans
        self.rot_steps, self.trans_steps, self.k = rot_steps, trans_steps, k
        self.pgd_eps, self.pgd_steps, self.pgd_alpha, self.seed, self.chunk = pgd_eps, pgd_steps, pgd_alpha, seed, chunk
        self._gen = torch.Generator().manual_seed(seed)

    def translation_range(self, width: int) -> float:
        """+-3 px for MNIST-sized inputs (the paper), else +-10% of the width."""
        if self.max_trans is not None:
            return self.max_trans
        return 3.0 if width <= 32 else 0.1 * width

    def candidates(self, n: int, width: int) -> torch.Tensor:
        """``n x T x 3`` transformations to try per image (shared by all images for the grid)."""
        t = self.translation_range(width)
        if self.mode == "grid":
            g = transform_grid(self.max_rot, t, self.rot_steps, self.trans_steps)
            return g.unsqueeze(0).expand(n, -1, -1)
        lo = torch.tensor([-self.max_rot, -t, -t])
        return lo + torch.rand(n, self.k, 3, generator=self._gen) * (-2 * lo)

    @torch.no_grad()
    def _search(self, x: torch.Tensor, y: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
        n, T = cand.shape[:2]
        best_score = torch.full((n,), -float("inf"), device=x.device)
        best = torch.zeros(n, 3, device=x.device)
        per = max(1, self.chunk // n)
        cand = cand.to(x.device)
        for j in range(0, T, per):
            c = cand[:, j:j + per]                          # n x t x 3
            t = c.shape[1]
            xt = rotate_translate(x.repeat_interleave(t, 0), c.reshape(-1, 3))
            score = _score(self.model(xt), y.repeat_interleave(t)).view(n, t)
            s, i = score.max(1)
            better = s > best_score
            best_score = torch.where(better, s, best_score)
            best[better] = c[better, i[better]]
        return best

    def _search_with_pgd(self, x: torch.Tensor, y: torch.Tensor, cand: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The combined adversary: PGD through each candidate transformation, then the search rule."""
        n, T = cand.shape[:2]
        best_score = torch.full((n,), -float("inf"), device=x.device)
        best, best_adv = torch.zeros(n, 3, device=x.device), x.clone()
        for j in range(T):
            c = cand[:, j].to(x.device)
            seen = _Transformed(self.model, c)
            z, _ = PGD(seen, self.pgd_eps, self.pgd_alpha, self.pgd_steps, "linf", seed=self.seed)._attack(x, y, None)
            with torch.no_grad():
                xt = rotate_translate(z, c)
                score = _score(self.model(xt), y)
            better = score > best_score
            best_score = torch.where(better, score, best_score)
            best[better], best_adv[better] = c[better], xt[better]
        return best, best_adv

    def _attack(self, x, y, target):
        if target is not None:
            raise PhysadvError("the rotation/translation attack is untargeted: call it without target")
        cand = self.candidates(len(x), x.shape[-1])
        if self.pgd_eps > 0:
            best, adv = self._search_with_pgd(x, y, cand)
            iters = cand.shape[1] * self.pgd_steps
        else:
            best = self._search(x, y, cand)
            adv, iters = rotate_translate(x, best), cand.shape[1]
        return adv, iters, {"angle": best[:, 0], "tx": best[:, 1], "ty": best[:, 2]}


@torch.no_grad()
def loss_landscape(model: nn.Module, image: torch.Tensor, label: int, max_rot: float = 30.0, max_trans: float = 3.0,
                   steps: int = 61, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Engstrom et al. 2019, Figure 3: the cross-entropy of one image (``C x H x W``) over left-right translation x
    rotation (no vertical shift), ``steps`` values of each in +-``max_trans`` px and +-``max_rot`` degrees.
    Returns (angles, shifts, loss ``steps x steps``, rows = angles)."""
    angles, shifts = torch.linspace(-max_rot, max_rot, steps), torch.linspace(-max_trans, max_trans, steps)
    a, t = torch.meshgrid(angles, shifts, indexing="ij")
    params = torch.stack([a.flatten(), t.flatten(), torch.zeros(a.numel())], 1)
    dev = next(model.parameters()).device
    x = image.unsqueeze(0).to(dev)
    losses = []
    for i in range(0, len(params), chunk):
        p = params[i:i + chunk].to(dev)
        logits = model(rotate_translate(x.expand(len(p), -1, -1, -1), p))
        losses.append(F.cross_entropy(logits, torch.full((len(p),), int(label), device=dev), reduction="none").cpu())
    return angles, shifts, torch.cat(losses).view(steps, steps)


def local_maxima(values: torch.Tensor) -> int:
    """Strict local maxima of a 2-D grid among their 8 neighbours: a concave function has at most one."""
    padded = F.pad(values[None, None], (1, 1, 1, 1), value=-float("inf"))
    neighbours = F.unfold(padded, 3).view(9, *values.shape)
    others = torch.cat([neighbours[:4], neighbours[5:]])
    return int((values > others.max(0).values).sum())


def save_landscape(path, angles: torch.Tensor, shifts: torch.Tensor, loss: torch.Tensor, title: str):
    """Figure 3's surface: loss over left-right translation (px) x rotation (degrees)."""
    from physadv.core.plots import pyplot, save_figure

    plt = pyplot()
    fig = plt.figure(figsize=(6.2, 4.6))
    ax = fig.add_subplot(projection="3d")
    t, a = torch.meshgrid(shifts, angles, indexing="xy")
    ax.plot_surface(t.numpy(), a.numpy(), loss.numpy(), cmap="viridis", linewidth=0, antialiased=True)
    ax.set_xlabel("left-right translation (px)", fontsize=8)
    ax.set_ylabel("rotation (degrees)", fontsize=8)
    ax.set_zlabel("cross-entropy loss", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_title(title, fontsize=8)
    return save_figure(fig, path)


def register_canvas_dataset(pad: int = 8) -> str:
    """Register ``mnist-canvas<pad>``: MNIST-5k centred on a black canvas ``pad`` px wider on each side."""
    from physadv.core.data import ImageSet, load_dataset, register_dataset

    name = f"mnist-canvas{pad}"

    def loader(split: str, root=None, size=None) -> ImageSet:
        base = load_dataset("mnist", split, root=root, size=size)
        return ImageSet(black_canvas(base.images, pad), base.labels, base.classes, f"{base.name}-canvas{pad}", dict(base.info))

    register_dataset(name, loader)
    return name


def canvas_classifier(model: str = "lenet-mnist", pad: int = 8, progress: bool = True):
    """A classifier trained (once, then cached by core) on MNIST on a black canvas, with the same recipe as on
    28 px. lenet-mnist sizes its head to the canvas; allconv-mnist and nin-mnist pool globally."""
    from physadv.core.config import from_dict
    from physadv.core.train import TrainConfig, get_classifier

    data = register_canvas_dataset(pad)
    cfg = from_dict(TrainConfig, {"model": model, "data": {"name": data}}, f"canvas recipe for {model}")
    return get_classifier(cfg, progress=progress)
