"""Sample-quality metrics on the features of a classifier of the same domain.

    feats = classifier_features(clf, images)                     # penultimate activations
    fid = frechet_distance(feats_real, feats_fake)               # Heusel et al. 2017, closed form on Gaussians
    kid = kernel_inception_distance(feats_real, feats_fake)      # Binkowski et al. 2018, unbiased MMD^2, cubic kernel
    score = inception_score(probs)                               # Salimans et al. 2016
    cov = class_coverage(predicted_labels, num_classes)

All are computed with whichever feature network is passed in; outputs name it, e.g. "FID (LeNet-MNIST
features)". ``evaluate_samples`` puts them side by side with the real-vs-real floor (train vs test).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from physadv.core.errors import PhysadvError


@torch.no_grad()
def classifier_outputs(clf, images: torch.Tensor, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """(penultimate features, softmax probabilities) of ``images`` in [0, 1], resized to the classifier's input."""
    c, h, w = clf.input_size
    dev = next(clf.parameters()).device
    feats, probs = [], []
    clf.eval()
    for i in range(0, len(images), batch):
        x = images[i : i + batch].to(dev, torch.float32)
        if x.shape[1] != c:
            x = x.mean(1, keepdim=True) if c == 1 else x.expand(-1, c, -1, -1) if x.shape[1] == 1 else x
        if x.shape[-2:] != (h, w):
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        f = clf.features(x)
        feats.append(f.double().cpu())
        probs.append(F.softmax(clf(x), 1).double().cpu())
    return torch.cat(feats), torch.cat(probs)


def _stats(feats: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(feats, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise PhysadvError(f"need at least 2 feature vectors (N x D), got shape {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False)


def _psd_sqrt(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance_gaussians(mu1, s1, mu2, s2) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)).

    Tr (S1 S2)^(1/2) is taken as Tr (S1^(1/2) S2 S1^(1/2))^(1/2) (same eigenvalues, symmetric PSD), which stays
    exact when a covariance is singular (dead ReLU features), where a general matrix square root struggles."""
    r = _psd_sqrt(np.asarray(s1, np.float64))
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh(r @ np.asarray(s2, np.float64) @ r), 0, None)).sum()
    d = np.asarray(mu1, np.float64) - np.asarray(mu2, np.float64)
    return float(max(0.0, d @ d + np.trace(s1) + np.trace(s2) - 2 * tr_covmean))


def frechet_distance(real: torch.Tensor | np.ndarray, fake: torch.Tensor | np.ndarray) -> float:
    """FID between two sets of feature vectors (N x D each)."""
    return frechet_distance_gaussians(*_stats(real), *_stats(fake))


def kernel_inception_distance(real, fake, subsets: int = 10, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3, averaged over random subsets: (mean, std)."""
    x, y = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    d = x.shape[1]
    m = min(subset_size, len(x), len(y))
    rng = np.random.RandomState(seed)
    vals = []
    for _ in range(subsets):
        a = x[rng.choice(len(x), m, replace=False)]
        b = y[rng.choice(len(y), m, replace=False)]
        kxx, kyy, kxy = (a @ a.T / d + 1) ** 3, (b @ b.T / d + 1) ** 3, (a @ b.T / d + 1) ** 3
        mmd = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()
        vals.append(mmd)
    return float(np.mean(vals)), float(np.std(vals))


def inception_score(probs: torch.Tensor | np.ndarray, splits: int = 10) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) || p(y))) over ``splits`` chunks: (mean, std)."""
    p = np.asarray(probs, np.float64)
    scores = []
    for chunk in np.array_split(p, splits):
        py = chunk.mean(0, keepdims=True)
        kl = (chunk * (np.log(chunk + 1e-12) - np.log(py + 1e-12))).sum(1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))


def class_coverage(pred: torch.Tensor, num_classes: int, min_share: float | None = None) -> dict:
    """Histogram of predicted classes; a class is covered when it holds at least ``min_share`` of the samples
    (default a fifth of the uniform share, 2% for 10 classes)."""
    min_share = 0.2 / num_classes if min_share is None else min_share
    counts = torch.bincount(torch.as_tensor(pred).long(), minlength=num_classes).double()
    share = (counts / counts.sum()).tolist()
    return {"histogram": [round(s, 4) for s in share], "covered": int(sum(s >= min_share for s in share)),
            "max_share": round(max(share), 4), "min_share_for_covered": min_share}


def nearest_neighbours(query: torch.Tensor, bank: torch.Tensor, k: int = 5) -> torch.Tensor:
    """Indices (Q x k) of the ``k`` nearest rows of ``bank`` to each row of ``query`` (Euclidean)."""
    d = torch.cdist(query.double(), bank.double())
    return d.topk(k, dim=1, largest=False).indices


def score_set(real_feats, real_probs, feats, probs, label: str, num_classes: int, seed: int = 0) -> dict:
    kid, kid_std = kernel_inception_distance(real_feats, feats, seed=seed)
    is_mean, is_std = inception_score(probs)
    return {f"FID ({label} features)": round(frechet_distance(real_feats, feats), 4),
            f"KID ({label} features)": round(kid, 6), "KID std": round(kid_std, 6),
            f"Inception score ({label})": round(is_mean, 4), "IS std": round(is_std, 4),
            "coverage": class_coverage(probs.argmax(1), num_classes)}


def inception_features(images: torch.Tensor, weights: str, batch: int = 32) -> torch.Tensor:
    """2048-d Inception-v3 pool features from a user-given weights file (images resized to 299)."""
    from physadv.core.models import load_pretrained

    net = load_pretrained("inception-v3", weights).eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = images[i : i + batch].float()
            x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
            out.append(net.features(F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)).double())
    return torch.cat(out)
