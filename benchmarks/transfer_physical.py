"""Physical designs against the sign-world model zoo: white-box strength, transfer to held-out models, the
coverage/strength trade-off, and what an ensemble step costs (issue 13's bars), in one run.

    python benchmarks/transfer_physical.py [--models NAME,...] [--config configs/physical/rp2_zoo.yaml]
        [--only white_box,leave_one_out,coverage_curve,step_cost,transfer_options,reference] [--coverages 5,10,15,25,35,50]
        [--option "loss=logit" ...] [--held-out NAME,...] [--out DIR]

For each zoo model i: RP2 white-box on i (stickers at most ``--white-box-coverage`` of the face), and RP2 on the
ensemble of all the others judged by i (``--loo-coverage``); every design is judged by every zoo model on RP2's
simulated grid (5-40 ft x 0-60 degrees, several lights), so the designs x models transfer matrix comes for free.
Designs are saved in ``--out`` and reused when the benchmark runs again with the same settings.

Prints JSON: ``white_box`` (``{"model", "targeted", "untargeted", "coverage", "clean"}``), ``leave_one_out``
(``{"held_out", "targeted", "untargeted", "read", "members_targeted_min", "coverage"}``; ``read``: the class the held-out
model reads most often, and its share; ``least_member`` and its targeted success at each grid distance,
``least_member_by_distance``; ``others_targeted_min``: the least-fooled plain zoo model but i, the members themselves
unless ``victim.robust_eps_255`` or ``victim.lgv`` makes the members their robust copies or LGV snapshots; with
``--held-out-seeds``, also ``held_out_seeds``: the held-out recipe trained from other seeds, judging the same design), with ``targeted_ci95`` (95% Wilson
interval over the grid's views: a 90% bar on 70 views is 81-95%), ``coverage_curve`` (per model, per
coverage: targeted and untargeted), ``step_cost`` (seconds per RP2 step on one model and on an ensemble of five,
the views rendered once) and the paths of the plots and of the transfer matrix. ``transfer_options`` (not run by
default) makes the leave-one-out design again with each ``--option`` (config keys on top of the recipe, e.g.
``victim.diversity=0.5``; the word ``+hardened`` makes the hardened zoo models members too, as robust surrogates:
Springer et al. 2021) for each ``--held-out`` model: ``{"held_out", "options", "targeted", "untargeted",
"members_targeted_min", "hardened_targeted", "coverage"}``, the recipe's own design first (options "").
``reference`` (not run by default): the control, the target sign itself at each of ``--coverages``, shrunk into the
middle of the face and in place (its own legend, full size, through a central disc), judged by every model:
``{"placement", "coverage", "targeted": {model: ...}, "untargeted": {model: ...}}``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import physadv.rendering.signs  # noqa: E402,F401  (registers the sign data and the built-in sign classifier)
from physadv.core.config import load_config, to_dict  # noqa: E402
from physadv.core.errors import PhysadvError  # noqa: E402
from physadv.core.io import weights_fingerprint  # noqa: E402
from physadv.core.gridreport import summary, transfer_table, write_transfer  # noqa: E402
from physadv.core.victims import ClassifierVictim, EnsembleVictim, Objective, load_model, victim_from  # noqa: E402
from physadv.core.zoo import zoo_names  # noqa: E402
from physadv.physical.attack import PhysicalResult  # noqa: E402
from physadv.physical.design_cli import RP2Job  # noqa: E402
from physadv.physical.detect import judge_grid_each_size  # noqa: E402
from physadv.physical.evaluate import design_extras  # noqa: E402
from physadv.physical.rp2 import RP2  # noqa: E402
from physadv.rendering.scene import build_scene  # noqa: E402


def design(job: RP2Job, members: list[str], zoo: dict, coverage: float, out: Path, name: str,
           cached_only: bool = False) -> PhysicalResult | None:
    """RP2 on ``members`` (one: white-box; ``victim.seeds`` adds each zoo member's copies from those seeds, which
    ``zoo`` must hold) with the mask search at ``coverage``; cached in ``out/name`` (None when it is not cached and ``--cached-only`` is on)."""
    from physadv.core.config import config_hash

    mask = replace(job.mask, coverage=coverage, max_coverage=max(coverage, job.mask.max_coverage))
    cfg = replace(job, mask=mask)
    key = config_hash({"cfg": cfg, "members": members})  # options added later count only when set
    path = out / f"{name}-{key}.safetensors"
    if path.is_file():
        result = PhysicalResult.load(path)
        # the key names the members, not their weights: a recipe changed since (e.g. how NAME+pgdEPS trains) trains
        # other weights under the same name, and a design made against the old ones is not judged as if made on these
        stale = [n for n, fp in result.victim.get("weights", {}).items() if n in zoo and weights_fingerprint(zoo[n]) != fp]
        if stale:
            raise PhysadvError(f"{path}: designed against other weights of {', '.join(stale)} than the zoo's now; "
                               "give another --designs folder")
        return result
    if cached_only:
        return None
    victim = victim_from(replace(job.victim, models=members, weights=None), zoo, name)  # victim.seeds: copies too
    scene = build_scene(job.scene, min_view_px=max(victim.input_size[1:]))
    t = time.perf_counter()
    result = RP2(victim, scene, cfg).run(out / f"{name}-{key}.checkpoint.safetensors", progress_bar=False)  # resumable
    result.timings["wall"] = round(time.perf_counter() - t, 1)
    result.save(path)
    return result


def judge(job: RP2Job, result: PhysicalResult, judges: dict, name: str) -> dict:
    """Every zoo model's verdicts of ``result`` on the grid: {model: {targeted, untargeted, read, clean}} (read: its
    most frequent top-1 class and share), each model seeing the grid at its own input size (``judge_grid_each_size``)."""
    objective = Objective("targeted", job.source, job.target)
    js, _ = judge_grid_each_size(lambda px: build_scene(job.scene, min_view_px=px), {name: result}, judges, objective,
                                 job.grid, progress_bar=False)
    s, row = summary(js), transfer_table(js)[0]  # the one design's row (the clean sign is no design)
    return {m: {"targeted": v[name]["targeted_success"], "untargeted": v[name]["untargeted_success"], "read": row[f"read:{m}"],
                "targeted_ci95": v[name]["targeted_success_ci95"], "clean": v["clean"]["accuracy"],
                "by_distance": {d: c["targeted_success"] for d, c in v[name]["by_distance"].items()}}
            for m, v in s.items()}, js


def reference_sticker(job: RP2Job, coverage: float, placement: str = "shrunk") -> PhysicalResult:
    """The control a physical attack has to beat: the target sign itself on ``coverage`` of the source's face, nothing
    optimised. ``shrunk``: the whole target sign, shrunk (area resampling) until its face covers that share and stuck
    in the middle, as Brown et al. (2017, "Adversarial Patch") set a picture of a toaster beside their patch. ``in
    place``: the target's face at full size, shown through the ``coverage`` share of the face nearest its centre (a
    sign's legend, e.g. the 80, sits in the middle), as a design's stickers paint it in place. It asks how much of each
    model's verdict a design owes to its optimisation, and how much to painting the target on the object."""
    from physadv.physical.masks import check_mask, full_mask
    from physadv.rendering.signs.textures import sign_texture

    obj = build_scene(job.scene).obj
    clean, alpha = obj.texture, obj.alpha
    h, w = clean.shape[-2:]
    face = full_mask(alpha)
    if placement == "in place":
        placed = sign_texture(job.target, max(h, w))[0][:, :h, :w]
        yy, xx = torch.meshgrid(torch.arange(h) - (h - 1) / 2, torch.arange(w) - (w - 1) / 2, indexing="ij")
        r = (yy ** 2 + xx ** 2).sqrt()
        on_face = r[face > 0]  # the share of the face nearest the centre: a disc
        mask = (r <= on_face.kthvalue(max(1, round(coverage * on_face.numel()))).values).float() * face
    else:
        n = round(max(h, w) * (coverage * float(face.sum()) / float(full_mask(sign_texture(job.target, max(h, w))[1]).sum())) ** 0.5)
        if not 8 <= n <= min(h, w):
            raise PhysadvError(f"reference sticker: {job.target} cannot cover {coverage:.0%} of the {job.source} face")
        rgb, a = sign_texture(job.target, n)  # the target's face, area-resampled to n x n
        y, x = (h - n) // 2, (w - n) // 2
        placed, mask = clean.clone(), torch.zeros(h, w)
        placed[:, y:y + n, x:x + n] = rgb
        mask[y:y + n, x:x + n] = full_mask(a)
        mask = mask * face
    return PhysicalResult("reference", clean * (1 - mask) + placed * mask, clean, alpha, mask,
                          metrics={"coverage": check_mask(mask, alpha), "mask": f"reference ({placement})"})


def step_cost(job: RP2Job, zoo: dict, names: list[str], steps: int) -> dict:
    """Seconds per RP2 step on one model and on an ensemble of five, alternating so load hits both alike."""
    five = names[:5]
    cfg = replace(job, steps=steps, val_every=10_000, val_views=4, mask=replace(job.mask, kind="bars"))
    single = ClassifierVictim(zoo[five[0]], five[0])
    ensemble = EnsembleVictim([ClassifierVictim(zoo[m], m) for m in five])
    scene = build_scene(job.scene, min_view_px=max(ensemble.input_size[1:]))
    times: dict[str, list[float]] = {"single": [], "ensemble": []}
    for _ in range(2):
        for key, victim in (("single", single), ("ensemble", ensemble)):
            times[key].append(RP2(victim, scene, cfg).run(progress_bar=False).timings["seconds_per_step"])
    s, e = min(times["single"]), min(times["ensemble"])
    return {"single_model": five[0], "ensemble": five, "seconds_per_step_single": s, "seconds_per_step_ensemble": e,
            "ratio": round(e / s, 2), "bar_at_most_3x": e / s <= 3}


def curve_png(curve: dict, path: Path) -> None:
    from physadv.core.plots import pyplot, save_figure

    fig, axes = pyplot().subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for model, points in curve.items():
        xs = [p["coverage"] * 100 for p in points]
        for ax, key in zip(axes, ("targeted", "untargeted")):
            ax.plot(xs, [p[key] for p in points], marker="o", label=model)
    for ax, key in zip(axes, ("targeted", "untargeted")):
        ax.set_xlabel("stickers: % of the face")
        ax.set_title(f"white-box {key} success on the grid")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("share of grid views")
    axes[1].legend(fontsize=7)
    save_figure(fig, path)


# The literature's transfer options measured against the recipe (each a config key; docs/fidelity.md)
TRANSFER_OPTIONS = ["victim.diversity=0.5", "optimizer=momentum lr=0.02", "victim.subset=3", "loss=margin kappa=30", "loss=logit",
                    "loss=logit victim.balance=1.0", "loss=logit victim.balance=5.0", "loss=margin kappa=30 victim.diversity=0.5",
                    "grad_sigma=4", "grad_sigma=4 victim.diversity=0.5", "victim.balance=1.0",
                    "victim.balance=1.0 victim.diversity=0.5", "+hardened"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="", help="zoo members (default: every member)")
    ap.add_argument("--config", default="configs/physical/rp2_zoo.yaml", help="the RP2 design config")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a key of the design config, e.g. --set restarts=1 (repeatable)")
    ap.add_argument("--only", default="white_box,leave_one_out,coverage_curve,step_cost")
    ap.add_argument("--coverages", default="5,10,15,25,35,50")
    ap.add_argument("--white-box-coverage", type=float, default=0.15)
    ap.add_argument("--loo-coverage", type=float, default=0.30)
    ap.add_argument("--option", dest="options", action="append", default=None, metavar="'KEY=VALUE ...'",
                    help="transfer_options: one variant of the leave-one-out design, config keys and '+hardened' (the hardened "
                         "models join as members; repeatable; default: "
                         + "; ".join(TRANSFER_OPTIONS) + ")")
    ap.add_argument("--held-out", default="", help="leave_one_out, transfer_options: the held-out models (default: every plain member)")
    ap.add_argument("--held-out-seeds", default="", metavar="SEED,...",
                    help="leave_one_out: also judge each design by the held-out model's recipe trained from these seeds "
                         "(zoo NAME@SEED): does the transfer hold for the architecture, or for one set of weights?")
    ap.add_argument("--judge-lights", type=int, default=0, metavar="N",
                    help="judge each grid cell under N lights (default: the config's grid.lights_per_cell); the designs and "
                         "their cache keys stay the same, the intervals narrow (8 lights: 280 views)")
    ap.add_argument("--step-steps", type=int, default=8)
    ap.add_argument("--out", default="runs/bench/transfer_physical")
    ap.add_argument("--designs", default=None, help="where designs are cached by config and members (default: --out)")
    ap.add_argument("--cached-only", action="store_true", help="judge the designs already cached; make no new one")
    args = ap.parse_args()
    if args.judge_lights < 0:
        ap.error(f"--judge-lights {args.judge_lights}: a number of lights per cell, at least 1 (0: the config's)")
    only = set(args.only.split(","))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    designs = Path(args.designs) if args.designs else out
    designs.mkdir(parents=True, exist_ok=True)
    job = load_config(RP2Job, args.config, args.overrides)
    judged = replace(job, grid=replace(job.grid, lights_per_cell=args.judge_lights or job.grid.lights_per_cell))
    alone = replace(job, victim=replace(job.victim, seeds=[]))  # white-box: the model itself, not its other seeds
    names = [n for n in (args.models.split(",") if args.models else zoo_names()) if n]
    plain = [n for n in names if not _hardened(n)]
    held_out = [n for n in args.held_out.split(",") if n] or plain
    if set(held_out) - set(plain):
        ap.error(f"--held-out {','.join(sorted(set(held_out) - set(plain)))}: not a plain zoo model ({', '.join(plain)})")
    variants = {"": (job, False)}  # leave-one-out variant -> (its config, whether the hardened models join)
    for opt in args.options or TRANSFER_OPTIONS:  # a mistyped option is a usage error before any work
        try:
            variants[opt] = (load_config(RP2Job, args.config, [*args.overrides, *(w for w in opt.split() if w != "+hardened")]),
                             "+hardened" in opt.split())
        except PhysadvError as e:
            ap.error(f"--option {opt!r}: {e}")
    try:
        seeds = [int(x) for x in args.held_out_seeds.split(",") if x]
    except ValueError:
        ap.error(f"--held-out-seeds {args.held_out_seeds}: comma-separated integer seeds")
    reseeded = {m: [f"{m}@{s}" for s in seeds] for m in held_out} if "leave_one_out" in only else {}  # only theirs
    zoo = {n: load_model(n).eval() for n in names + [t for ts in reseeded.values() for t in ts]}
    judges = {n: ClassifierVictim(zoo[n], n) for n in zoo}
    result: dict = {"benchmark": "transfer_physical", "models": names, "config": args.config, "overrides": args.overrides,
                    "cached_only": args.cached_only,
                    "threads": torch.get_num_threads(), "grid": to_dict(judged.grid)}
    js_all, extras = [], {}

    def record(res, name):
        verdicts, js = judge(judged, res, judges, name)
        js_all.extend(j for j in js if j.set != "clean")
        extras[name] = design_extras(res)
        return verdicts

    if "white_box" in only:
        result["white_box"] = []
        for m in names:
            res = design(alone, [m], zoo, args.white_box_coverage, designs, f"wb-{m}", args.cached_only)
            if res is None:
                continue
            v = record(res, f"white-box {m}")
            result["white_box"].append({"model": m, "targeted": v[m]["targeted"], "targeted_ci95": v[m]["targeted_ci95"],
                                        "untargeted": v[m]["untargeted"], "clean": v[m]["clean"], "coverage": round(res.coverage, 4),
                                        "seconds": res.timings.get("wall")})
    hardened, loo_rows = [n for n in names if _hardened(n)], {}

    def leave_one_out(m: str, opt: str = "") -> dict | None:
        """The design on every plain model but ``m`` (``opt``: config keys on top of the recipe; the word
        ``+hardened``: the hardened models join as members), judged by every model: its row, made once per run."""
        if (m, opt) not in loo_rows:
            variant, with_hardened = variants[opt]
            team = [n for n in plain if n != m] + (hardened if with_hardened else [])
            members = replace(variant.victim, models=team, weights=None).specs()
            for n in [n for n in members if n not in judges]:  # victim.seeds: the members' copies are judged too
                zoo[n] = load_model(n).eval()
                judges[n] = ClassifierVictim(zoo[n], n)
            slug = "".join(c if c.isalnum() or c in ".-" else "_" for c in opt.replace("=", "-"))
            res = design(variant, team, zoo, args.loo_coverage, designs, f"loo-{m}" + (f"-{slug}" if opt else ""),
                         args.cached_only)
            v = None if res is None else record(res, f"all but {m}" + (f", {opt}" if opt else ""))
            loo_rows[m, opt] = None if v is None else {
                "held_out": m, "targeted": v[m]["targeted"], "targeted_ci95": v[m]["targeted_ci95"], "untargeted": v[m]["untargeted"],
                "read": v[m]["read"],
                "members_targeted_min": min(v[n]["targeted"] for n in members),
                "least_member": (least := min(members, key=lambda n: v[n]["targeted"])),
                "least_member_by_distance": v[least]["by_distance"],
                # the plain zoo models but m (members themselves unless victim.robust_eps_255 or lgv swaps in copies)
                "others_targeted_min": min(v[n]["targeted"] for n in plain if n != m),
                "hardened_targeted": {n: v[n]["targeted"] for n in hardened},
                "held_out_seeds": [{"model": t, "targeted": v[t]["targeted"], "untargeted": v[t]["untargeted"]}
                                   for t in reseeded.get(m, [])], "coverage": round(res.coverage, 4),
                "seconds": res.timings.get("wall")}
        return loo_rows[m, opt]

    if "leave_one_out" in only and len(plain) > 2:
        result["leave_one_out"] = [row for row in map(leave_one_out, held_out) if row]
    if "transfer_options" in only and len(plain) > 2:
        result["transfer_options"] = [{"options": opt, **row} for m in held_out
                                      for opt in variants if (row := leave_one_out(m, opt))]
    if "coverage_curve" in only:
        result["coverage_curve"] = {}
        for m in names:
            points = []
            for c in (float(x) / 100 for x in args.coverages.split(",")):
                res = design(alone, [m], zoo, c, designs, f"wb-{m}", args.cached_only)
                if res is None:
                    continue
                v, _ = judge(judged, res, {m: judges[m]}, "design")
                points.append({"coverage": round(res.coverage, 4), "targeted": v[m]["targeted"], "untargeted": v[m]["untargeted"]})
            result["coverage_curve"][m] = points
        curve_png(result["coverage_curve"], out / "coverage_curve.png")
        result["coverage_curve_png"] = str(out / "coverage_curve.png")
    if "reference" in only:  # the target sign as a sticker, judged by every model: the control the designs beat
        result["reference"] = []
        for placement in ("shrunk", "in place"):
            for c in (float(x) / 100 for x in args.coverages.split(",")):
                res = reference_sticker(job, c, placement)
                v = record(res, f"reference {placement} {round(100 * c)}%")
                result["reference"].append({"placement": placement, "coverage": round(res.coverage, 4), **{
                    k: {m: v[m][k] for m in names} for k in ("targeted", "untargeted")}})
    if "step_cost" in only and len(names) >= 5:
        result["step_cost"] = step_cost(job, zoo, names, args.step_steps)
    if js_all:
        rows = transfer_table(js_all, extras)
        write_transfer(out, rows)
        result["transfer_matrix"] = str(out / "transfer.csv")
    (out / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def _hardened(name: str) -> bool:
    from physadv.core.zoo import zoo_member

    return zoo_member(name).hardened


if __name__ == "__main__":
    main()
