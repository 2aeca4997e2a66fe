"""The sparse-coding view of CNNs (Papyan, Romano & Elad 2016): the two-layer deconvolutional data model.

    X = D1 Gamma1,  Gamma1 = D2 Gamma2,  so  X = D1 D2 Gamma2,  Gamma_i >= 0 and sparse

with convolutional dictionaries (a synthesis ``D`` is a transposed convolution; its adjoint ``D^T`` is the
convolution with the same weights). Two pursuits estimate the codes layer by layer:

* layered thresholding: Gamma1 = ReLU(D1^T X - b1), Gamma2 = ReLU(D2^T Gamma1 - b2), which is exactly the
  forward pass of a two-layer ReLU CNN with weights W_i = D_i and biases -b_i;
* layered basis pursuit: per layer, min_{G >= 0} 1/2 ||Y - D G||^2 + lambda ||G||_1, solved by FISTA with the
  non-negative soft threshold; with lambda_i = b_i its first (unit-step) iteration from zero is the thresholding.

``DeconvolutionalModel.random`` draws dictionaries and codes in the regime of the paper's stability theorems:
unit-norm atoms of measured mutual coherence mu, non-negative codes with bounded amplitudes, and local
(stripe) sparsity: the footprints of different atoms do not fall in one receptive field.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from physadv.core.errors import PhysadvError


# --------------------------------------------------------------------------- the operators
def synthesize(gamma: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """D Gamma: codes (N x m x h x w) -> signal (N x c x (h+k-1) x (w+k-1)); D is m x c x k x k."""
    return F.conv_transpose2d(gamma, D)


def analyze(x: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """D^T X, the adjoint of ``synthesize``: a valid convolution with the same weights."""
    return F.conv2d(x, D)


def layered_thresholding(x: torch.Tensor, dictionaries: list[torch.Tensor], thresholds: list[float]) -> list[torch.Tensor]:
    """Gamma_i = ReLU(D_i^T Gamma_{i-1} - b_i), Gamma_0 = X (the non-negative soft layered thresholding)."""
    codes, g = [], x
    for D, b in zip(dictionaries, thresholds):
        g = F.relu(analyze(g, D) - b)
        codes.append(g)
    return codes


def as_cnn(dictionaries: list[torch.Tensor], thresholds: list[float]) -> nn.Sequential:
    """The ReLU CNN whose forward pass is the layered thresholding: conv weights D_i, biases -b_i."""
    layers: list[nn.Module] = []
    for D, b in zip(dictionaries, thresholds):
        conv = nn.Conv2d(D.shape[1], D.shape[0], D.shape[-1])
        with torch.no_grad():
            conv.weight.copy_(D)
            conv.bias.fill_(-b)
        layers += [conv, nn.ReLU()]
    return nn.Sequential(*layers)


def operator_norm_sq(D: torch.Tensor, shape: tuple[int, ...], iters: int = 20, seed: int = 0) -> float:
    """||D||_2^2 of the synthesis operator on codes of ``shape`` (power iteration on D^T D)."""
    g = torch.randn(1, *shape, generator=torch.Generator().manual_seed(seed), dtype=D.dtype)
    for _ in range(iters):
        g = analyze(synthesize(g, D), D)
        g = g / g.norm()
    return float(analyze(synthesize(g, D), D).flatten().dot(g.flatten()))


def basis_pursuit(y: torch.Tensor, D: torch.Tensor, lam: float, iters: int = 300) -> torch.Tensor:
    """argmin_{G >= 0} 1/2 ||y - D G||_2^2 + lam ||G||_1 by FISTA (Beck & Teboulle 2009)."""
    k = D.shape[-1]
    shape = (D.shape[0], y.shape[-2] - k + 1, y.shape[-1] - k + 1)
    step = 1.0 / operator_norm_sq(D, shape)
    g = torch.zeros(len(y), *shape, dtype=y.dtype)
    z, t = g.clone(), 1.0
    for _ in range(iters):
        g_next = F.relu(z - step * analyze(synthesize(z, D) - y, D) - step * lam)
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        z = g_next + (t - 1) / t_next * (g_next - g)
        g, t = g_next, t_next
    return g


def layered_basis_pursuit(x: torch.Tensor, dictionaries: list[torch.Tensor], lambdas: list[float], iters: int = 300) -> list[torch.Tensor]:
    """Basis pursuit layer after layer: Gamma_i = BP(Gamma_{i-1}, D_i, lambda_i)."""
    codes, g = [], x
    for D, lam in zip(dictionaries, lambdas):
        g = basis_pursuit(g, D, lam, iters)
        codes.append(g)
    return codes


def mutual_coherence(D: torch.Tensor) -> float:
    """max |<d_i, shift(d_j)>| over atom pairs and all 2D shifts, except an atom against itself unshifted
    (atoms unit-norm over their c x k x k support)."""
    m, c, k, _ = D.shape
    corr = F.conv2d(D, D, padding=k - 1)  # m x m x (2k-1) x (2k-1): cross-correlations
    corr[torch.arange(m), torch.arange(m), k - 1, k - 1] = 0
    return float(corr.abs().max())


def support_jaccard(est: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """|S ^ S'| / |S u S'| per sample (1 = the support is recovered exactly)."""
    a, b = est.flatten(1) > 0, true.flatten(1) > 0
    union = (a | b).sum(1).clamp_min(1)
    return (a & b).sum(1) / union


# --------------------------------------------------------------------------- the generative model
@dataclass
class SparseCodingConfig:
    signal_size: int = 64  # X is signal_size x signal_size
    channels: int = 1
    atoms1: int = 4
    kernel1: int = 5
    atoms2: int = 6
    taps2: int = 3  # non-zeros per D2 atom (placed at corners of its kernel)
    nonzeros2: int = 3  # non-zeros of Gamma2 per signal
    amplitude: tuple[float, float] = (1.0, 1.2)  # range of Gamma2's non-zeros
    noise_levels: list[float] = field(default_factory=lambda: [0.0, 0.02, 0.05, 0.1, 0.2])
    n_signals: int = 32
    bp_iters: int = 100
    candidates: int = 50  # random dictionaries drawn; the least coherent is kept
    seed: int = 0

    def validate(self) -> None:
        if not 1 <= self.taps2 <= 4:
            raise ValueError(f"taps2 must be 1..4 (corners of the D2 kernel), got {self.taps2}")
        if self.amplitude[0] <= 0 or self.amplitude[1] < self.amplitude[0]:
            raise ValueError(f"amplitude must be 0 < low <= high, got {self.amplitude}")
        if self.code_size() < 1:
            raise ValueError(f"signal_size {self.signal_size} is too small for kernels {self.kernel1} and {self.kernel2()}")

    def kernel2(self) -> int:
        return 2 * self.kernel1  # corner taps 2 k1 - 1 apart: their D1 footprints never share a receptive field

    def code_size(self) -> int:
        return self.signal_size - self.kernel1 - self.kernel2() + 2


@dataclass
class DeconvolutionalModel:
    D1: torch.Tensor  # atoms1 x channels x k1 x k1, unit-norm atoms
    D2: torch.Tensor  # atoms2 x atoms1 x k2 x k2, non-negative unit-norm atoms with ``taps`` equal taps
    cfg: SparseCodingConfig

    @classmethod
    def random(cls, cfg: SparseCodingConfig) -> "DeconvolutionalModel":
        g = torch.Generator().manual_seed(cfg.seed)
        k1, k2 = cfg.kernel1, cfg.kernel2()
        best = None
        for _ in range(cfg.candidates):
            D1 = torch.randn(cfg.atoms1, cfg.channels, k1, k1, generator=g, dtype=torch.float32)
            D1 = D1 / D1.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
            mu = mutual_coherence(D1)
            if best is None or mu < best[0]:
                best = (mu, D1)
        corners = [(0, 0), (0, k2 - 1), (k2 - 1, 0), (k2 - 1, k2 - 1)]
        best2 = None
        for _ in range(cfg.candidates):
            D2 = torch.zeros(cfg.atoms2, cfg.atoms1, k2, k2, dtype=torch.float32)
            for j in range(cfg.atoms2):
                for ci in torch.randperm(4, generator=g)[: cfg.taps2].tolist():
                    ch = int(torch.randint(cfg.atoms1, (1,), generator=g))
                    D2[j, ch, corners[ci][0], corners[ci][1]] = 1 / math.sqrt(cfg.taps2)
            mu2 = mutual_coherence(D2)
            if best2 is None or mu2 < best2[0]:
                best2 = (mu2, D2)
        return cls(best[1], best2[1], cfg)

    @property
    def coherence(self) -> tuple[float, float]:
        return mutual_coherence(self.D1), mutual_coherence(self.D2)

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(X, Gamma1, Gamma2): Gamma2 with ``nonzeros2`` spikes per signal, spaced so that the layer-1 footprints
        of different spikes never share a receptive field (local sparsity)."""
        cfg = self.cfg
        s = cfg.code_size()
        gap = cfg.kernel2() + 2 * cfg.kernel1 - 1
        lo, hi = cfg.amplitude
        g2 = torch.zeros(n, cfg.atoms2, s, s, dtype=torch.float32)
        for i in range(n):
            placed: list[tuple[int, int]] = []
            for _ in range(1000):
                if len(placed) == cfg.nonzeros2:
                    break
                r, c = (int(v) for v in torch.randint(s, (2,), generator=generator))
                if all(max(abs(r - a), abs(c - b)) >= gap for a, b in placed):
                    placed.append((r, c))
            if len(placed) < cfg.nonzeros2:
                raise PhysadvError(f"signal_size {cfg.signal_size} cannot hold {cfg.nonzeros2} separated spikes; "
                                   "raise signal_size or lower nonzeros2")
            for r, c in placed:
                atom = int(torch.randint(cfg.atoms2, (1,), generator=generator))
                g2[i, atom, r, c] = lo + (hi - lo) * float(torch.rand(1, generator=generator))
        g1 = synthesize(g2, self.D2)
        return synthesize(g1, self.D1), g1, g2

    def thresholds(self) -> tuple[float, float]:
        """Thresholds in the spirit of the paper's Theorem 4: midway between the smallest on-support response and
        the largest off-support one the coherences allow (noiseless)."""
        mu1, mu2 = self.coherence
        lo, hi = self.cfg.amplitude
        t = self.cfg.taps2
        on1, off1 = lo / math.sqrt(t), mu1 * hi / math.sqrt(t)
        b1 = (on1 + off1) / 2
        on2, off2 = lo - math.sqrt(t) * b1, mu2 * (hi - math.sqrt(t) * b1)
        return b1, (on2 + off2) / 2


def support_recovery_experiment(cfg: SparseCodingConfig, out: str | Path | None = None) -> dict:
    """Generate from the model, add Gaussian noise at each level, recover both layers both ways, score supports."""
    model = DeconvolutionalModel.random(cfg)
    b1, b2 = model.thresholds()
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    x, g1, g2 = model.sample(cfg.n_signals, gen)
    rows = []
    for sigma in cfg.noise_levels:
        y = x + sigma * torch.randn(x.shape, generator=gen, dtype=x.dtype)
        th = layered_thresholding(y, [model.D1, model.D2], [b1, b2])
        bp = layered_basis_pursuit(y, [model.D1, model.D2], [b1, b2], cfg.bp_iters)
        row = {"noise": sigma}
        for name, est in (("thresholding", th), ("basis_pursuit", bp)):
            j1, j2 = support_jaccard(est[0], g1), support_jaccard(est[1], g2)
            row[name] = {"layer1": round(float(j1.mean()), 4), "layer2": round(float(j2.mean()), 4),
                         "exact_layer2": round(float((j2 == 1).double().mean()), 4),
                         "l2_error_layer2": round(float((est[1] - g2).flatten(1).norm(dim=1).mean()), 4)}
        rows.append(row)
    mu1, mu2 = model.coherence
    res = {"rows": rows, "thresholds": [b1, b2], "coherence": [mu1, mu2],
           "signal_std": float(x.std()), "support_measure": "mean Jaccard index of estimated vs true supports",
           "bp_at_least_thresholding": all(r["basis_pursuit"]["layer2"] >= r["thresholding"]["layer2"] - 1e-9 for r in rows)}
    if out is not None:
        _plot(Path(out) / "support_recovery.png", rows)
        from physadv.core.plots import save_image_grid

        save_image_grid(Path(out) / "signals.png", _unit(x[:8]), nrow=8, scale=2)
    return res


def _unit(x: torch.Tensor) -> torch.Tensor:
    x = x.float()
    lo, hi = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(1e-12)


def _plot(path: Path, rows: list[dict]) -> None:
    from physadv.core.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    s = [r["noise"] for r in rows]
    for name, style in (("thresholding", "--"), ("basis_pursuit", "-")):
        for layer, marker in (("layer1", "o"), ("layer2", "s")):
            ax.plot(s, [r[name][layer] for r in rows], style, marker=marker, label=f"{name.replace('_', ' ')}, {layer}")
    ax.set_xlabel("noise std")
    ax.set_ylabel("support recovery (Jaccard)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7)
    save_figure(fig, path)
