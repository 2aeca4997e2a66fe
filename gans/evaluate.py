"""Score a generator against the real data, with the real-vs-real floor beside every number.

The reference set is the training split the GAN learned from; the floor is the test split scored
against the same reference with the same sample size, so a perfect generator would sit at the floor.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from physadv.core.data import ImageSet
from physadv.core.plots import save_image_grid
from physadv.gans.metrics import classifier_outputs, frechet_distance, inception_features, nearest_neighbours, score_set
from physadv.gans.trainer import GanConfig, build_networks, generate


def evaluate_generator(G: nn.Module, cfg: GanConfig, clf, train: ImageSet, test: ImageSet, n: int = 1000,
                       seed: int = 0, label: str = "LeNet-MNIST", out: Path | None = None,
                       inception_weights: str | None = None, baseline: bool = True) -> dict:
    """Metrics of ``n`` samples of ``G`` (and of an untrained generator of the same architecture, and the floor)."""
    gen = torch.Generator().manual_seed(seed)
    fake, _ = generate(G, n, cfg.model, gen, num_classes=len(train.classes))
    keep = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:n]  # the split files are sorted by class
    test = ImageSet(test.images[keep], test.labels[keep], test.classes, test.name)
    rf, rp = classifier_outputs(clf, train.images)
    tf, tp = classifier_outputs(clf, test.images)
    ff, fp = classifier_outputs(clf, fake)
    k = len(train.classes)
    res = {"n_generated": n, "reference": f"{train.name} ({len(train)} images)", "features": f"{label} penultimate layer",
           "generated": score_set(rf, rp, ff, fp, label, k, seed),
           "real_vs_real_floor": {"set": f"{test.name} ({len(test)} images)", **score_set(rf, rp, tf, tp, label, k, seed)}}
    if baseline:
        torch.manual_seed(cfg.seed)
        G0, _ = build_networks(cfg.model, train.images.shape[1], k)
        if hasattr(G, "level"):
            G0.set_stage(G.level, G.alpha)
        G0 = G0.to(next(G.parameters()).device).eval()
        f0, p0 = classifier_outputs(clf, generate(G0, n, cfg.model, torch.Generator().manual_seed(seed), num_classes=k)[0])
        res["untrained_generator"] = score_set(rf, rp, f0, p0, label, k, seed)
        key = f"FID ({label} features)"
        res["fid_ratio_to_untrained"] = round(res["generated"][key] / max(res["untrained_generator"][key], 1e-12), 4)
    if inception_weights:
        ri = inception_features(train.images, inception_weights)
        res["generated"]["FID (Inception-v3 pool features)"] = round(frechet_distance(ri, inception_features(fake, inception_weights)), 4)
        res["real_vs_real_floor"]["FID (Inception-v3 pool features)"] = round(
            frechet_distance(ri, inception_features(test.images, inception_weights)), 4)
    if out is not None:
        out = Path(out)
        save_image_grid(out / "samples.png", fake[:64], nrow=8, scale=2)
        rows, kn = 8, 6
        idx = nearest_neighbours(ff[:rows], rf, kn)
        tiles = []
        for r in range(rows):
            tiles.append(_fit(fake[r], train.images.shape[1:]))
            tiles += [train.images[j] for j in idx[r]]
        save_image_grid(out / "nearest_neighbours.png", torch.stack(tiles), nrow=kn + 1, scale=2)
        res["nearest_neighbours_grid"] = str(out / "nearest_neighbours.png") + " (left column generated, then its nearest training images in feature space)"
    return res


def _fit(img: torch.Tensor, shape) -> torch.Tensor:
    if tuple(img.shape) == tuple(shape):
        return img
    x = img[None]
    if x.shape[1] != shape[0]:
        x = x.mean(1, keepdim=True).expand(-1, shape[0], -1, -1)
    return torch.nn.functional.interpolate(x, size=tuple(shape[1:]), mode="bilinear", align_corners=False)[0]
