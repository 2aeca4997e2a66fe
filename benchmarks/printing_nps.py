"""Non-printability score: time and peak memory of physadv's NPS (chunked forward, recomputing backward)
against the peer, the paper's formula written with plain torch broadcasting and autograd, on the same input.

Each variant runs forward + backward in its own process; peak memory is the process's max RSS above a
baseline process that only imports torch and makes the input. Prints JSON.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/printing_nps.py [--size 512] [--colours 30]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import resource, sys, time, json, torch
sys.path.insert(0, {root!r})
torch.manual_seed(0)
x = torch.rand(1, 3, {size}, {size}, requires_grad=True)
pal = torch.rand({colours}, 3)
variant = {variant!r}
t = time.perf_counter()
if variant == "physadv":
    from physadv.printing.printability import non_printability_score
    loss = non_printability_score(x, pal).sum()
elif variant == "peer":
    d = torch.sqrt(((x.permute(0, 2, 3, 1)[..., None, :] - pal) ** 2).sum(-1))
    loss = d.prod(-1).sum()
if variant != "baseline":
    loss.backward()
    value, grad = float(loss), float(x.grad.abs().sum())
else:
    value = grad = 0.0
print(json.dumps(dict(seconds=time.perf_counter() - t, maxrss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      value=value, grad_l1=grad)))
"""


def run(variant: str, size: int, colours: int) -> dict:
    code = CHILD.format(root=str(ROOT), size=size, colours=colours, variant=variant)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--colours", type=int, default=30)
    a = ap.parse_args()
    base = run("baseline", a.size, a.colours)
    res = {v: run(v, a.size, a.colours) for v in ("physadv", "peer")}
    for r in res.values():
        r["peak_mb_above_baseline"] = round(r["maxrss_mb"] - base["maxrss_mb"], 1)
    print(json.dumps({"input": f"1x3x{a.size}x{a.size}", "palette": a.colours, **res,
                      "same_value": abs(res["physadv"]["value"] - res["peer"]["value"]) <= 1e-4 * abs(res["peer"]["value"]) + 1e-30,
                      "grad_rel_diff": abs(res["physadv"]["grad_l1"] - res["peer"]["grad_l1"]) / max(res["peer"]["grad_l1"], 1e-30)},
                     indent=2))


if __name__ == "__main__":
    main()
