"""The papers' numbers for an :class:`~attacks.base.AttackResult`.

rho_adv (DeepFool, eq. 15) is the mean over the set of ||r(x)||_p / ||x||_p; here it is averaged over the
images the attack succeeded on (``_all`` variants average over every image, unchanged ones counting 0).
The fooling rate (UAP) is the fraction of images whose predicted label changed.
"""
from __future__ import annotations

import torch


def _mean(t: torch.Tensor) -> float | None:
    return round(float(t.float().mean()), 6) if t.numel() else None


def attack_metrics(result) -> dict:
    ok = result.success
    inf = float("inf")
    m = {
        "n": len(ok),
        "success_rate": _mean(ok),
        "accuracy_clean": _mean(result.clean_pred == result.labels),
        "accuracy_adversarial": _mean(result.pred == result.labels),
        "fooling_rate": _mean(result.pred != result.clean_pred),
        "rho_adv_l2": _mean(result.rho(2)[ok]),
        "rho_adv_linf": _mean(result.rho(inf)[ok]),
        "rho_adv_l2_all": _mean(result.rho(2)),
        "mean_l2": _mean(result.norms(2)[ok]),
        "mean_linf": _mean(result.norms(inf)[ok]),
        "mean_iterations": _mean(result.iterations[ok]),
        "seconds": round(result.seconds, 4),
        "seconds_per_sample": round(result.seconds / max(1, len(ok)), 6),
    }
    if result.target is not None:
        m["target_match_rate"] = _mean(result.pred == result.target)
    for k, v in result.extras.items():
        if v.ndim == 1 and v.is_floating_point():
            m[f"mean_{k}"] = _mean(v[ok])
    return m


def fooling_rate(clean_pred: torch.Tensor, adv_pred: torch.Tensor) -> float:
    """UAP's fooling rate: the fraction of images whose predicted label changes."""
    return float((clean_pred != adv_pred).float().mean())
