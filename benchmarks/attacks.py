"""Digital attacks against torchattacks, foolbox and ART, in one run, on the same model and images.

    .venv/bin/pip install torchattacks foolbox adversarial-robustness-toolbox   # the `bench` extra
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/attacks.py --model lenet-mnist --n 200 --only deepfool,fgsm,pgd
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/attacks.py --only uap --uap-train 1000

Prints JSON: per attack and tool, seconds per sample, success rate and rho_adv (||r||_2 / ||x||_2, averaged
over the images every tool succeeded on, and each tool's own mean), plus speed ratios and, per peer,
``rho_ratio_vs_<peer>``: physadv's mean rho over the peer's mean rho on the images both succeeded on (a peer
that fails on many images, as torchattacks' DeepFool does, does not shrink the set the other peer is judged on).
DeepFool runs in the project's default box setting (each iterate clipped to [0, 1]), the one foolbox uses. UAP: fit time and the
held-out fooling rate of physadv's and ART's UniversalPerturbation (DeepFool inner attack, same model, training
images, xi, delta, max passes and DeepFool settings); ART usually ends at a lower fooling rate, so the JSON also
gives the time physadv needs to first reach ART's final training fooling rate (at pass granularity).
Every attack attacks the model's own predictions.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from physadv.attacks import PGD, DeepFool, FGSM, UniversalPerturbation  # noqa: E402
from physadv.attacks.base import predict  # noqa: E402
from physadv.core.data import load_dataset  # noqa: E402
from physadv.core.train import get_classifier  # noqa: E402


def rho(x: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    return (adv - x).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def compare(model, x, y, runs: dict) -> dict:
    """Run each tool, then compare rho over the images all tools succeeded on."""
    advs, out = {}, {}
    for tool, fn in runs.items():
        try:
            adv, sec = timed(fn)
        except Exception as exc:  # a peer that fails is reported, not fatal
            out[tool] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            continue
        adv = adv.detach().cpu().clamp(0, 1)
        ok = predict(model, adv) != y
        advs[tool] = (adv, ok)
        r = rho(x, adv)
        out[tool] = {"seconds_per_sample": round(sec / len(x), 6), "success_rate": round(float(ok.float().mean()), 4),
                     "rho_adv": round(float(r[ok].mean()), 4) if ok.any() else None}
    if advs:
        both = torch.stack([ok for _, ok in advs.values()]).all(0)
        for tool, (adv, _) in advs.items():
            out[tool]["rho_adv_common"] = round(float(rho(x, adv)[both].mean()), 4) if both.any() else None
        out["common_images"] = int(both.sum())
    if "physadv" in advs:
        mine, ok_mine = advs["physadv"]
        for tool, (adv, ok) in advs.items():
            if tool == "physadv":
                continue
            out[f"speedup_vs_{tool}"] = round(out[tool]["seconds_per_sample"] / out["physadv"]["seconds_per_sample"], 2)
            pair = ok_mine & ok
            if pair.any():
                out[f"rho_ratio_vs_{tool}"] = round(float(rho(x, mine)[pair].mean() / rho(x, adv)[pair].mean()), 4)
                out[f"images_both_succeeded_vs_{tool}"] = int(pair.sum())
    return out


def bench_gradient(model, x, y, which: str, args) -> dict:
    import foolbox as fb
    import torchattacks as ta

    fmodel = fb.PyTorchModel(model, bounds=(0, 1))
    if which == "deepfool":
        runs = {
            "physadv": lambda: DeepFool(model, overshoot=0.02, max_iter=50, candidates=10)(x, y),
            "torchattacks": lambda: ta.DeepFool(model, steps=50, overshoot=0.02)(x, y),
            "foolbox": lambda: fb.attacks.L2DeepFoolAttack(steps=50, candidates=10, overshoot=0.02)(fmodel, x, y, epsilons=None)[1],
        }
    elif which == "fgsm":
        e = args.fgsm_eps
        runs = {
            "physadv": lambda: FGSM(model, eps=e)(x, y),
            "torchattacks": lambda: ta.FGSM(model, eps=e)(x, y),
            "foolbox": lambda: fb.attacks.LinfFastGradientAttack(random_start=False)(fmodel, x, y, epsilons=e)[1],
        }
    else:
        e, a, s = args.pgd_eps, args.pgd_alpha, args.pgd_steps
        runs = {
            "physadv": lambda: PGD(model, eps=e, alpha=a, steps=s, norm="linf")(x, y),
            "torchattacks": lambda: ta.PGD(model, eps=e, alpha=a, steps=s, random_start=True)(x, y),
            "foolbox": lambda: fb.attacks.LinfPGD(abs_stepsize=a, steps=s, random_start=True)(fmodel, x, y, epsilons=e)[1],
        }
    return compare(model, x, y, runs)


def bench_uap(model, args) -> dict:
    import numpy as np
    from art.attacks.evasion import UniversalPerturbation as ARTUAP
    from art.estimators.classification import PyTorchClassifier

    train = load_dataset("mnist", "train").subset(args.uap_train, seed=0).images
    test = load_dataset("mnist", "test").images
    clean = predict(model, test)
    out: dict = {"xi": args.uap_xi, "norm": "l2", "delta": 0.2, "max_passes": args.uap_passes, "train_images": len(train)}

    uap = UniversalPerturbation(model, xi=args.uap_xi, norm="l2", delta=0.2, max_passes=args.uap_passes, max_iter_df=10)
    fit, sec = timed(lambda: uap.fit(train, show_progress=False))
    v = fit.perturbation
    out["physadv"] = {"seconds": round(sec, 2), "fooling_rate_train": round(fit.fooling_rate_train, 4), "passes": fit.passes,
                      "fooling_rate_test": round(float((predict(model, (test + v).clamp(0, 1)) != clean).float().mean()), 4),
                      "norm_l2": round(float(v.norm()), 4), "history_train": fit.history, "pass_seconds": fit.pass_seconds,
                      "deepfool_calls": fit.deepfool_calls, "updates": fit.updates}
    from physadv.attacks.universal import random_noise_like

    noise = random_noise_like(v, len(test), "l2", torch.Generator().manual_seed(0))
    out["random_noise_fooling_rate"] = round(float((predict(model, (test + noise).clamp(0, 1)) != clean).float().mean()), 4)

    import random

    random.seed(0)  # ART shuffles with Python's random
    clf = PyTorchClassifier(model=model, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(train.shape[1:]),
                            nb_classes=10, clip_values=(0.0, 1.0))
    art = ARTUAP(clf, attacker="deepfool", attacker_params={"max_iter": 10, "epsilon": 0.02, "nb_grads": 10, "verbose": False},
                 delta=0.2, max_iter=args.uap_passes, eps=args.uap_xi, norm=2, verbose=False)
    _, sec = timed(lambda: art.generate(train.numpy().astype(np.float32)))
    va = torch.from_numpy(np.asarray(art.noise)).float()
    out["art"] = {"seconds": round(sec, 2), "fooling_rate_train": round(float(art.fooling_rate), 4),
                  "fooling_rate_test": round(float((predict(model, (test + va).clamp(0, 1)) != clean).float().mean()), 4),
                  "norm_l2": round(float(va.norm()), 4)}
    out["speedup_vs_art"] = round(out["art"]["seconds"] / out["physadv"]["seconds"], 2)
    out["art_differs"] = ("ART sets v = clip(x + v + dv) - x for the current image (what clipping removed from v is lost) "
                          "and keeps an update when the label changed; its DeepFool clips without box-feasible steps")
    # ART ends at a different fooling rate: also time physadv until its training fooling rate first reaches ART's final one
    reach = [t for t, f in zip(fit.pass_seconds, fit.history) if f >= out["art"]["fooling_rate_train"]]
    if reach:
        out["physadv_seconds_to_art_fooling_rate"] = reach[0]
        out["speedup_vs_art_at_art_fooling_rate"] = round(out["art"]["seconds"] / reach[0], 2)
    out["fooling_vs_noise"] = round(out["physadv"]["fooling_rate_test"] / max(out["random_noise_fooling_rate"], 1e-3), 2)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="lenet-mnist")
    p.add_argument("--n", type=int, default=200, help="test images (a fixed class-balanced subset)")
    p.add_argument("--only", default="deepfool,fgsm,pgd,uap")
    p.add_argument("--fgsm-eps", type=float, default=0.1)
    p.add_argument("--pgd-eps", type=float, default=0.3)
    p.add_argument("--pgd-alpha", type=float, default=0.01)
    p.add_argument("--pgd-steps", type=int, default=40)
    p.add_argument("--uap-xi", type=float, default=4.0)
    p.add_argument("--uap-train", type=int, default=1000)
    p.add_argument("--uap-passes", type=int, default=5)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    model = get_classifier(args.model, progress=False)
    for q in model.parameters():
        q.requires_grad_(False)
    data = load_dataset("mnist", "test").subset(args.n, seed=0)
    x = data.images
    y = predict(model, x)
    report = {"model": args.model, "n": len(x), "torch_threads": torch.get_num_threads(),
              "note": "timings on a shared 2-core CPU under load from other jobs; ratios are from the same run"}
    for which in args.only.split(","):
        report[which] = bench_uap(model, args) if which == "uap" else bench_gradient(model, x, y, which, args)
        print(json.dumps({which: report[which]}), file=sys.stderr, flush=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
