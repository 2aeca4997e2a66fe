"""The zoo's robust accuracy against torchattacks' PGD, on the same models, images and attack settings.

    .venv/bin/pip install torchattacks          # the `bench` extra
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/zoo.py --only lisa-cnn,vgg-bn --n 300

Prints JSON per zoo member: robust accuracy under core.robust's L-inf PGD (Madry et al. 2018; eps 8/255, 20 steps
of 2/255, random start) and under torchattacks.PGD with the same settings, each tool's seconds per image, and the
same number with the CW margin loss in place of cross-entropy (a check that a high robust accuracy is not masked
gradients from saturated softmax outputs). Members are trained first when not cached.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

import physadv.rendering.signs  # noqa: F401  (registers the sign data set)
from physadv.core.robust import pgd_linf
from physadv.core.zoo import get_zoo_classifier, zoo_member, zoo_names


def margin_pgd(model, x0, y, eps, step, steps, gen):
    """PGD on Carlini and Wagner's margin max_{j != y} z_j - z_y (their f_6) instead of the cross-entropy."""
    x = (x0 + (2 * torch.rand(x0.shape, generator=gen) - 1) * eps).clamp(0, 1)
    rows = torch.arange(len(y))
    for _ in range(steps):
        x.requires_grad_(True)
        z = model(x)
        other = z.detach().clone()
        other[rows, y] = -torch.inf
        loss = (z[rows, other.argmax(1)] - z[rows, y]).sum()
        (g,) = torch.autograd.grad(loss, x)
        x = torch.min(torch.max(x.detach() + step * g.sign(), x0 - eps), x0 + eps).clamp(0, 1)
    return x.detach()


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def bench(name: str, n: int) -> dict:
    import torchattacks

    model = get_zoo_classifier(name, progress=False).eval()
    test = zoo_member(name).train.data.load("test").subset(n)
    x, y = test.images, test.labels
    eps, step, steps = 8 / 255, 2 / 255, 20
    out = {"member": name, "n": len(y), "clean": accuracy(model, x, y)}
    t = time.perf_counter()
    adv = pgd_linf(model, x, y, eps, step, steps, True, torch.Generator().manual_seed(0))
    out.update(physadv_robust=accuracy(model, adv, y), physadv_s_per_image=(time.perf_counter() - t) / len(y))
    t = time.perf_counter()
    adv = torchattacks.PGD(model, eps=eps, alpha=step, steps=steps, random_start=True)(x, y)
    out.update(torchattacks_robust=accuracy(model, adv, y), torchattacks_s_per_image=(time.perf_counter() - t) / len(y))
    adv = margin_pgd(model, x, y, eps, step, steps, torch.Generator().manual_seed(0))
    out.update(margin_loss_robust=accuracy(model, adv, y))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default="lisa-cnn,vgg-bn", help="zoo members, comma-separated ('all': every member)")
    p.add_argument("--n", type=int, default=300, help="held-out images per member (class-balanced subset)")
    args = p.parse_args()
    torch.set_num_threads(1)
    names = zoo_names() if args.only == "all" else args.only.split(",")
    print(json.dumps([bench(name, args.n) for name in names], indent=2))


if __name__ == "__main__":
    main()
