"""Every picture in docs/ and every number block in the README and docs/*.md, from one command: ``make docs``.

    .venv/bin/python docs/figures.py                     # every entry but the manual ones (the demo)
    .venv/bin/python docs/figures.py --only deepfool,spatial_landscape
    .venv/bin/python docs/figures.py --only demo         # manual entries run only when named
    .venv/bin/python docs/figures.py --list
    .venv/bin/python docs/figures.py --only transfer --collect runs/bench/transfer_physical   # a run already made

``FIGURES`` is the registry. An entry is a command (a ``physadv`` job or a benchmark script; ``{python}`` is this
interpreter, ``{out}`` a fresh run folder under ``runs/docs/``), the files it copies from that folder into docs/
(a source may be a glob; the last match in sorted order is taken) and, optionally, a block it rewrites from the
job's ``metrics.json``: the text between ``<!-- physadv:NAME -->`` and ``<!-- /physadv:NAME -->``, in the README or
in the one page of docs/ that holds it.
Nothing in docs/ or in those blocks is typed by hand.

Provenance: each copied file gets a row in ``docs/figures.md`` (figure, command, commit, date; the machine-readable
``docs/figures.json`` beside it), PNG files carry the same as text chunks (``physadv:command``,
``physadv:commit``, ``physadv:date``), and a rewritten block ends with a comment naming them. The commit
is ``git rev-parse --short HEAD``, with ``+dirty`` when tracked files had uncommitted changes.
"""
from __future__ import annotations

import argparse
import glob
import json
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Figure:
    name: str
    command: str  # shell words; {python} and {out} are filled in
    files: dict[str, str]  # docs-relative destination -> source inside the run folder (glob allowed)
    block: Callable[[dict], str] | None = None  # metrics.json -> the block named after the entry (README or docs/*.md)
    manual: bool = False  # run only when named with --only
    about: str = ""
    metrics: str = "metrics.json"
    extra: dict = field(default_factory=dict)


def demo_numbers(m: dict) -> str:
    """The README's demo results from ``physadv demo``'s metrics.json (its rewrite may change the keys: a missing
    one is a clear error naming it)."""
    def get(*keys):
        v = m
        for k in keys:
            if not isinstance(v, dict) or k not in v:
                raise KeyError(f"demo metrics.json has no {'.'.join(keys)}: update demo_numbers in docs/figures.py")
            v = v[k]
        return v

    df, c, r = get("digital", "deepfool"), get("capture"), get("rp2")
    rows = ["| model | role | clean print: \"stop\" | stickers: \"speed limit 80\" | stickers: not \"stop\" |", "|---|---|---|---|---|"]
    rows += [f"| {n} | {v['role']} | {v['clean_accuracy']:.1%} | {v['targeted_success']:.1%} | {v['untargeted_success']:.1%} |"
             for n, v in get("capture", "models").items()]
    return "\n".join([
        f"Stickers designed on the ensemble {' + '.join(r['victims'])} ("
        + ("the white-box victims' slightly robust copies; " if m["plan"].get("robust_eps_255") else "")
        + f"{r['mask_coverage']:.0%} of the face), printed, and "
        f"photographed in simulation: {c['adversarial_photos']} photos of the stickered print and {c['clean_photos']} of the "
        f"clean print (5-40 ft x 0-60 degrees, lights: {', '.join(get('plan', 'lights'))}); {c['not_found']} photos not "
        "located by their fiducials.", "",
        *rows, "",
        f"- Run time: {get('seconds'):.0f} s (`physadv demo`, {'quick' if get('quick') else 'full'} plan"
        + (f", {len(m['trained_models'])} zoo models trained in the run" if m.get("trained_models") else
           ", zoo already cached" if "trained_models" in m else "")
        + (", stages: " + ", ".join(f"{k} {v:.0f} s" for k, v in m["stage_seconds"].items()) if "stage_seconds" in m else "")
        + (f"; load average {m['load_average_15min']:.1f} on {m['cpus']} CPUs" if "load_average_15min" in m else "") + "); "
        f"RP2 (the mask search, then {r['steps']} steps) in {r['seconds']:.0f} s ({r['seconds_per_step']:.2f} s per step).",
        f"- DeepFool on LeNet/MNIST: success {df['success']:.0%}, rho_adv {df['rho_adv_l2']:.3f} over {df['images']} images."])


def demo_surrogates_table(m: dict) -> str:
    """benchmarks/demo_surrogates.py's result: each model's targeted / untargeted success per run (designed on the
    victims or on their robust copies, per design seed), and the unseen models' mean targeted success."""
    runs = m["runs"]
    head = [(f"their copies at {r['robust_eps_255']:g}/255" if r["robust_eps_255"] else "the victims") + f", seed {r['seed']}"
            for r in runs]
    first = runs[0]["models"]
    names = [n for n in first if first[n]["role"] == "white-box"] + list(m["unseen"])
    out = ["| judged by | role | " + " | ".join(head) + " |", "|---|---|" + "---|" * len(runs)]
    for n in names:
        role = "white-box" if first[n]["role"] == "white-box" else "never seen"
        out.append(f"| {n} | {role} | " + " | ".join(f"{r['models'][n]['targeted']:.0%} / {r['models'][n]['untargeted']:.0%}"
                                                 for r in runs) + " |")
    out.append(f"| mean of the {len(m['unseen'])} never seen, targeted | | "
               + " | ".join(f"**{r['unseen_targeted_mean']:.1%}**" for r in runs) + " |")
    return "\n".join(out + ["", "Cells: \"speed limit 80\" / not \"stop\", over the simulated photos of the print."])


def outside_judges_table(m: dict) -> str:
    """benchmarks/outside_judges.py's result: per judge its accuracy, its clean accuracy on the OpenCV photos and, per
    design, its targeted success with either crop."""
    designs, kinds = m["designs"], list(m["designs"][0]["crops"])
    out = [f"| judge | trained by | sign test set | clean photos read \"stop\" ({' / '.join(kinds)}) | "
           + " | ".join(d["label"] for d in designs) + " |", "|---|---|---|---|" + "---|" * len(designs)]
    for k, j in enumerate(designs[0]["judges"]):
        by = "outside" if j["judge"] in m["outside"] else "physadv zoo"
        acc = "" if j["test_accuracy"] is None else f"{j['test_accuracy']:.1%}"
        clean = " / ".join(f"{j[c]['clean_accuracy']:.0%}" for c in kinds)
        out.append(f"| {j['judge']} | {by} | {acc} | {clean} | "
                   + " | ".join(" / ".join(f"{d['judges'][k][c]['targeted']:.0%}" for c in kinds) for d in designs) + " |")
    for c in kinds:
        means = [sum(j[c]["targeted"] for j in d["judges"] if j["judge"] in m["outside"]) / len(m["outside"]) for d in designs]
        out.append(f"| mean of the {len(m['outside'])} outside judges, {c} crops | | | | "
                   + " | ".join(f"**{x:.1%}**" for x in means) + " |")
    return "\n".join(out + ["", f"Cells: \"speed limit 80\" with {' / '.join(kinds)} crops, over {designs[0]['photos']} OpenCV "
                            "photos per design (the same poses, backgrounds and lights for every design and judge)."])


def zoo_table(m: dict) -> str:
    """The README's zoo table from ``physadv signs zoo``'s metrics.json."""
    pgd = m["pgd"]
    rows = ["| member | family | input | parameters | held-out accuracy | clean grid (mean / worst cell) | "
            f"PGD-{pgd['steps']} eps {pgd['eps_255']:g}/255 robust accuracy |", "|---|---|---|---|---|---|---|"]
    for r in m["members"]:
        rows.append(f"| {r['name']}{' (hardened)' if r['hardened'] else ''} | {r['family']} | {r['input_px']} px | "
                    f"{r['params'] / 1e3:.0f}k | {r['held_out_accuracy']:.1%} | {r['grid_mean']:.1%} / {r['grid_worst']:.1%} | "
                    f"{r['pgd_robust_accuracy']:.1%} |")
    return "\n".join(rows)


def cached_only_note(m: dict, what: str) -> list[str]:
    """A blank line and the note that a ``--cached-only`` run judged only the designs already made (or nothing)."""
    if not m.get("cached_only"):
        return []
    return ["", f"Judged with `--cached-only`: {what} are the designs finished when the run was collected."]


def _with_ci(row: dict) -> str:
    """A row's targeted success, with its 95% interval when the run recorded one."""
    ci = row.get("targeted_ci95")
    return f"{row['targeted']:.1%}" + (f" [{ci[0]:.0%}, {ci[1]:.0%}]" if ci else "")


def _seeds_cell(row: dict) -> str:
    """A leave-one-out row's verdicts by the held-out recipe from other seeds: ``seed: targeted / untargeted, ...``."""
    return ", ".join(f"{t['model'].split('@')[1]}: {t['targeted']:.0%} / {t['untargeted']:.0%}" for t in row.get("held_out_seeds", []))


def transfer_tables(m: dict) -> str:
    """The white-box and leave-one-out tables from benchmarks/transfer_physical.py's result.json."""
    out = []
    if m.get("white_box"):
        out += ["| white-box victim | targeted | untargeted | stickers (share of the face) | clean accuracy |", "|---|---|---|---|---|"]
        out += [f"| {r['model']} | {_with_ci(r)} | {r['untargeted']:.1%} | {r['coverage']:.1%} | {r['clean']:.1%} |"
                for r in m["white_box"]]
    if m.get("leave_one_out"):
        seeds = any(r.get("held_out_seeds") for r in m["leave_one_out"])
        read = all("read" in r for r in m["leave_one_out"])
        # robust copies as members (victim.robust_eps_255): the plain models but the held-out one get their own column
        others = any(r.get("others_targeted_min", r["members_targeted_min"]) != r["members_targeted_min"]
                     for r in m["leave_one_out"])
        extra = ((" the other plain models targeted, at least |" if others else "") + (" it reads most often |" if read else "")
                 + (" the held-out recipe from other seeds: targeted / untargeted |" if seeds else ""))
        out += ["", "| held-out model (design on all the others) | targeted | untargeted | every member targeted, at least | "
                    f"stickers |{extra}", "|---|---|---|---|---|" + "---|" * (others + read + seeds)]
        out += [f"| {r['held_out']} | {_with_ci(r)} | {r['untargeted']:.1%} | {r['members_targeted_min']:.1%} | "
                f"{r['coverage']:.1%} |" + (f" {r.get('others_targeted_min', r['members_targeted_min']):.1%} |" if others else "")
                + (f" {r['read']} |" if read else "") + (f" {_seeds_cell(r)} |" if seeds else "")
                for r in m["leave_one_out"]]
        if seeds:
            out += ["", "Last column: the same design judged by the held-out model's recipe trained from other seeds "
                        "(`NAME@SEED`; seed: targeted / untargeted), models the design never saw either."]
        out += least_member_table(m["leave_one_out"])
    if any("targeted_ci95" in r for r in m.get("white_box", []) + m.get("leave_one_out", [])):
        out += ["", "In brackets: the 95% Wilson interval of the targeted success over the grid's views."]
    out += cached_only_note(m, "the rows above")
    if m.get("step_cost"):
        c = m["step_cost"]
        out += ["", f"One RP2 step on an ensemble of five: {c['seconds_per_step_ensemble']:.3f} s against "
                    f"{c['seconds_per_step_single']:.3f} s on one of them ({c['ratio']:.2f}x)."]
    return "\n".join(out)


def least_member_table(rows: list[dict]) -> list[str]:
    """Where each leave-one-out design's least-fooled member misses: its targeted success at each grid distance."""
    rows = [r for r in rows if r.get("least_member_by_distance")]
    if not rows:
        return []
    dists = list(rows[0]["least_member_by_distance"])
    out = ["", "| held-out model | least-fooled member | " + " | ".join(f"{d} ft" for d in dists) + " |",
           "|---|---|" + "---|" * len(dists)]
    out += [f"| {r['held_out']} | {r['least_member']} | " + " | ".join(f"{r['least_member_by_distance'][d]:.0%}" for d in dists)
            + " |" for r in rows]
    return out + ["", "The least-fooled member's targeted success at each distance of the grid (every angle and light)."]


def options_table(m: dict) -> str:
    """The transfer-options table from benchmarks/transfer_physical.py's ``transfer_options``."""
    rows = m["transfer_options"]
    hard = sorted({n for r in rows for n in r["hardened_targeted"]})
    out = ["| held-out model | options on top of the recipe | targeted | untargeted | every member targeted, at least | "
           + " | ".join(f"{n} targeted" for n in hard) + " |", "|---|---|---|---|---|" + "---|" * len(hard)]
    out += [f"| {r['held_out']} | {'`' + r['options'] + '`' if r['options'] else 'none (the table above)'} | {r['targeted']:.1%} | "
            f"{r['untargeted']:.1%} | {r['members_targeted_min']:.1%} | "
            + " | ".join(f"{r['hardened_targeted'][n]:.1%}" for n in hard) + " |" for r in rows]
    out += cached_only_note(m, "the rows above")
    return "\n".join(out)


def coverage_table(m: dict) -> str:
    """The README's coverage/strength table from benchmarks/transfer_physical.py's ``coverage_curve``."""
    curve = m["coverage_curve"]
    shares = sorted({p["coverage"] for points in curve.values() for p in points})
    out = ["| white-box victim | " + " | ".join(f"{c:.0%}" for c in shares) + " |", "|---|" + "---|" * len(shares)]
    for model, points in curve.items():
        at = {p["coverage"]: p for p in points}
        out.append(f"| {model} | " + " | ".join(f"{at[c]['targeted']:.0%} / {at[c]['untargeted']:.0%}" if c in at else "not run"
                                                for c in shares) + " |")
    out += ["", "Cells: targeted / untargeted success over the grid, stickers on that share of the face."]
    out += cached_only_note(m, "the cells above")[1:]
    return "\n".join(out)


def reference_table(m: dict) -> str:
    """The control table from benchmarks/transfer_physical.py's ``reference``: the target sign as a sticker."""
    models = list(m["reference"][0]["targeted"])
    out = ["| the 80 sign | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for row in m["reference"]:
        how = "in place, through the middle" if row.get("placement") == "in place" else "shrunk, on"
        out.append(f"| {how} {row['coverage']:.0%} of the face | " + " | ".join(
            f"{row['targeted'][k]:.0%} / {row['untargeted'][k]:.0%}" for k in models) + " |")
    return "\n".join(out + ["", "Cells: targeted / untargeted success over the grid; nothing optimised."])


def leave_one_out(name: str, options: str, plot: str, about: str) -> Figure:
    """A leave-one-out run of ``benchmarks/transfer_physical.py`` with ``options``: its tables, and its targeted
    heatmap as ``docs/physical/<plot>_targeted.png``."""
    return Figure(name, f"{{python}} benchmarks/transfer_physical.py --only leave_one_out {options} --held-out-seeds 101,102 "
                  "--out {out}", {f"physical/{plot}_targeted.png": "transfer_targeted.png"},
                  block=transfer_tables, manual=True, metrics="result.json", about=about)


# the leave-one-out recipes' shared options: one run per design, and the balanced recipe (ensembles over weights,
# the activation term, per-member balancing) that most later variants add one option to
ONE_RUN = "--set restarts=1 --set restart_until=1.0"


def balanced(seeds: str = "[101]", balance: str = "1.0", feature: str = "1.0") -> str:
    """The balanced recipe's options, with the member seeds, the balancing temperature or the activation term's
    weight changed."""
    return (f"{ONE_RUN} --set feature_weight={feature} --set victim.seeds={seeds} --set victim.subset=5 "
            f"--set victim.balance={balance}")


def signs_plain(feature: str = "1.0", seeds: str = "[101]") -> str:
    """Temperature 0.1, clean feature mixup from the other signs, members weighed on the plain views."""
    return (f"{balanced(seeds=seeds, balance='0.1', feature=feature)} --set victim.mixup=0.75 "
            "--set victim.mixup_images=signs --set victim.balance_plain=true")


BALANCED = balanced()
SHARP = balanced(balance="0.25")  # the sharper balancing temperature
SIGNS_PLAIN = signs_plain()
LOG_DISTANCE = "--set scene.world.pose.distance_scale=log"  # the views' distances uniform in log distance
LOG = f"{SIGNS_PLAIN} {LOG_DISTANCE}"
LOG_PLAIN = f"{signs_plain(feature='0.0')} {LOG_DISTANCE}"  # without the activation term
ROBUST = "--set victim.robust_eps_255=1.0"  # the members' slightly robust copies (NAME+pgd1)
# the plain members and their robust copies (no seed copies: ten members, as with the seeds)
LOG_JOIN = f"{signs_plain(seeds='[]')} {LOG_DISTANCE} {ROBUST} --set victim.robust_join=true"


FIGURES = [
    Figure("deepfool", "physadv attack deepfool --limit 200 --set params.box=true --set show=10 --out {out}",
           {"attacks/deepfool.png": "grid.png"},
           about="DeepFool on LeNet/MNIST (each iterate clipped to [0, 1]): clean / perturbation / adversarial"),
    Figure("spatial_landscape", "physadv attack spatial --limit 20 --set landscape=5 --out {out}",
           {"attacks/spatial_landscape.png": "landscape.png"},
           about="Engstrom et al. Figure 3: the loss of one MNIST example over left-right translation x rotation"),
    Figure("wgan_gp_figure3", "{python} benchmarks/wgan_gp_figure3.py --steps 800 --every 100 --out {out}",
           {"gans/wgan_gp_figure3.png": "figure3.png", "gans/wgan_gp_figure3.json": "figure3.json"},
           about="Gulrajani et al. Figure 3: LeNet-MNIST FID over generator iterations and wall-clock time", metrics="figure3.json"),
    Figure("dcgan_samples", "{python} benchmarks/gans.py dcgan --out {out}",
           {"gans/dcgan_samples.png": "dcgan-*/samples.png"},
           about="DCGAN CPU recipe (configs/gans/dcgan_cpu.yaml), 1000 samples scored, the first 64 shown", metrics="dcgan-*/metrics.json"),
    Figure("wgan_gp_samples", "{python} benchmarks/gans.py wgan_gp --out {out}",
           {"gans/wgan_gp_samples.png": "wgan_gp-*/samples.png"},
           about="WGAN-GP CPU recipe (configs/gans/wgan_gp_cpu.yaml)", metrics="wgan_gp-*/metrics.json"),
    Figure("progressive", "physadv gan train --config configs/gans/progressive.yaml --set device=cpu --set threads=1 --out {out}",
           {"gans/progressive_losses.png": "losses.png", "gans/progressive_samples_32px.png": "samples/step_*.png"},
           about="Progressive growing to 32x32: loss curves with stage changes, and the last sample grid"),
    Figure("zoo", "physadv signs zoo --out {out}", {"signs/zoo.png": "zoo.png"}, block=zoo_table,
           about="the sign-world model zoo: held-out and clean-grid accuracy, digital PGD robustness"),
    Figure("transfer", "{python} benchmarks/transfer_physical.py --only white_box,step_cost --out {out}",
           {"physical/transfer_targeted.png": "transfer_targeted.png", "physical/transfer_untargeted.png": "transfer_untargeted.png"},
           block=transfer_tables, manual=True, metrics="result.json",
           about="RP2 (rp2_zoo.yaml) white-box on every zoo model at 15% of the face: each design judged by every model"),
    leave_one_out("transfer_loo", ONE_RUN, "leave_one_out",
                  "RP2 (rp2_zoo.yaml without restarts) on all-but-one ensembles at 30% of the face, judged by every model"),
    leave_one_out("transfer_loo_seeds", f"{ONE_RUN} --set victim.seeds=[101] --set victim.subset=5",
                  "leave_one_out_seeds",
                  "the leave-one-out designs on ensembles over weights too: each member also from seed 101, five members a step"),
    leave_one_out("transfer_loo_features", f"{ONE_RUN} --set feature_weight=1.0",
                  "leave_one_out_features",
                  "the leave-one-out designs with the activation attack: members' activations pulled towards the target sign's"),
    leave_one_out("transfer_loo_half", f"--loo-coverage 0.5 {ONE_RUN} --set feature_weight=1.0",
                  "leave_one_out_half",
                  "the activation attack's leave-one-out designs with stickers on half the face: the coverage the bar needs"),
    leave_one_out("transfer_loo_seeds_features", f"{ONE_RUN} --set feature_weight=1.0 "
                  "--set victim.seeds=[101] --set victim.subset=5", "leave_one_out_seeds_features",
                  "the leave-one-out designs with both: ensembles over weights and the activation attack, at 30% of the face"),
    leave_one_out("transfer_loo_least_member", "--set restarts=2 --set restart_until=0.9 --set val_by=least_member "
                  "--set feature_weight=1.0 --set victim.seeds=[101] --set victim.subset=5", "leave_one_out_least_member",
                  "both transfer options, the best design and a second restart chosen by the least-fooled member, at 30% of the face"),
    leave_one_out("transfer_loo_balance", BALANCED, "leave_one_out_balance",
                  "both transfer options with per-member loss balancing (temperature 1), at 30% of the face"),
    leave_one_out("transfer_loo_ghost", f"{BALANCED} --set victim.ghost=0.05", "leave_one_out_ghost",
                  "the balanced recipe with ghost networks (dropout erosion 0.05), at 30% of the face"),
    leave_one_out("transfer_loo_long", f"{BALANCED} --set steps=1200", "leave_one_out_long",
                  "the balanced recipe with three times the sticker steps (1,200), at 30% of the face"),
    leave_one_out("transfer_loo_init", f"{BALANCED} --set init=reference --set mask.warm_start=false",
                  "leave_one_out_init",
                  "the balanced recipe with the stickers started from the target sign (init: reference), at 30% of the face"),
    leave_one_out("transfer_loo_seeds2", balanced(seeds="[101,103]"), "leave_one_out_seeds2",
                  "the balanced recipe with every member from two more seeds (101 and 103), at 30% of the face"),
    leave_one_out("transfer_loo_margin", f"{BALANCED} --set loss=margin --set kappa=30", "leave_one_out_margin",
                  "the balanced recipe with the high-confidence margin loss (kappa 30), at 30% of the face"),
    leave_one_out("transfer_loo_margin_members", f"{BALANCED} --set loss=margin --set kappa=30 --set victim.fusion=sum_losses",
                  "leave_one_out_margin_members",
                  "the balanced recipe with the margin loss taken per member (sum_losses), at 30% of the face"),
    leave_one_out("transfer_loo_margin_capped", f"{BALANCED} --set loss=margin --set kappa=5 --set victim.fusion=sum_losses",
                  "leave_one_out_margin_capped",
                  "the balanced recipe with each member's margin capped at kappa 5 (sum_losses), at 30% of the face"),
    leave_one_out("transfer_loo_balance_zoo2", BALANCED, "leave_one_out_balance_zoo2",
                  "the balanced recipe again, on the zoo retrained from the same configs on another machine (other weights)"),
    leave_one_out("transfer_loo_balance_sharp", SHARP, "leave_one_out_balance_sharp",
                  "the balanced recipe with a sharper balancing temperature (0.25), on the retrained zoo, at 30% of the face"),
    leave_one_out("transfer_loo_cfm", f"{SHARP} --set victim.mixup=0.75", "leave_one_out_cfm",
                  "the temperature-0.25 recipe with clean feature mixup (Byun et al. 2023; upper share 0.75), at 30% of the face"),
    leave_one_out("transfer_loo_cfm_mild", f"{SHARP} --set victim.mixup=0.25", "leave_one_out_cfm_mild",
                  "the temperature-0.25 recipe with a milder clean feature mixup (upper share 0.25), at 30% of the face"),
    leave_one_out("transfer_loo_cfm_signs", f"{SHARP} --set victim.mixup=0.75 --set victim.mixup_images=signs",
                  "leave_one_out_cfm_signs", "the temperature-0.25 recipe with clean feature mixup from the other sign "
                  "classes (upper share 0.75), at 30% of the face"),
    leave_one_out("transfer_loo_cfm_signs_half", f"{SHARP} --set victim.mixup=0.5 --set victim.mixup_images=signs",
                  "leave_one_out_cfm_signs_half", "the temperature-0.25 recipe with clean feature mixup from the other "
                  "sign classes (upper share 0.5), at 30% of the face"),
    leave_one_out("transfer_loo_cfm_signs_plain",
                  f"{SHARP} --set victim.mixup=0.75 --set victim.mixup_images=signs --set victim.balance_plain=true",
                  "leave_one_out_cfm_signs_plain", "the temperature-0.25 recipe with clean feature mixup from the other "
                  "sign classes (0.75), the members balanced by their loss on the plain views, at 30% of the face"),
    leave_one_out("transfer_loo_cfm_signs_plain_sharp", SIGNS_PLAIN, "leave_one_out_cfm_signs_plain_sharp",
                  "the same at balancing temperature 0.1, at 30% of the face"),
    leave_one_out("transfer_loo_cfm_signs_plain_log", LOG, "leave_one_out_cfm_signs_plain_log",
                  "the same with the views' distances uniform in log distance, at 30% of the face"),
    leave_one_out("transfer_loo_view_balance", f"{LOG} --set view_balance=1.0", "leave_one_out_view_balance",
                  "the log-distance recipe with each step's views weighted by softmax(loss / 1), at 30% of the face"),
    leave_one_out("transfer_loo_log_40", f"{LOG} --loo-coverage 0.4", "leave_one_out_log_40",
                  "the log-distance recipe with stickers on 40% of the face"),
    leave_one_out("transfer_loo_balance_by_view", f"{LOG} --set victim.balance_by=view", "leave_one_out_balance_by_view",
                  "the log-distance recipe with each view weighing its own members (balance_by: view), at 30% of the face"),
    leave_one_out("transfer_loo_log_zoo3", LOG, "leave_one_out_log_zoo3",
                  "the log-distance recipe again, on a third draw of the zoo (retrained from the same configs on another machine)"),
    leave_one_out("transfer_loo_log_long", f"{LOG} --set steps=1200", "leave_one_out_log_long",
                  "the log-distance recipe with 1,200 sticker steps instead of 400, on the third zoo, at 30% of the face"),
    leave_one_out("transfer_loo_log_grad", f"{LOG} --set mask.score=gradient", "leave_one_out_log_grad",
                  "the log-distance recipe with the mask search keeping the texels that lower the loss most, on the third zoo"),
    leave_one_out("transfer_loo_log_40_zoo3", f"{LOG} --loo-coverage 0.4", "leave_one_out_log_40_zoo3",
                  "the log-distance recipe with stickers on 40% of the face, on the third zoo"),
    leave_one_out("transfer_loo_log_no_features", LOG_PLAIN, "leave_one_out_log_no_features",
                  "the log-distance recipe without the activation term (feature_weight 0), on the third zoo"),
    Figure("zoo_robust_copies", "physadv signs zoo --only " + ",".join(
               f"{m}{s}{r}" for m in ("gtsrb-cnn", "lisa-cnn", "resnet-8", "mobilenet-v2", "vgg-bn", "convnext-64")
               for s in ("", "@101") for r in ("", "+pgd1")) + " --set pgd.eps_255=4 --set pgd.step_255=1 --set pgd.steps=10 "
           "--set pgd_limit=300 --out {out}", {"signs/zoo_robust_copies.png": "zoo.png"}, block=zoo_table,
           about="the zoo's members, their seed-101 copies and the slightly robust copies of both (+pgd1)"),
    leave_one_out("transfer_loo_log_robust", f"{LOG} {ROBUST}", "leave_one_out_log_robust",
                  "the log-distance recipe on the members' slightly robust copies (PGD at 1/255), on the third zoo"),
    leave_one_out("transfer_loo_log_robust_join", LOG_JOIN, "leave_one_out_log_robust_join",
                  "the log-distance recipe on the plain members and their slightly robust copies, on the third zoo"),
    leave_one_out("transfer_loo_log_robust_tuned", f"{LOG} {ROBUST}", "leave_one_out_log_robust_tuned",
                  "the log-distance recipe on the members' robust copies fine-tuned at 1/255, on the third zoo"),
    leave_one_out("transfer_loo_log_robust_half", f"{LOG} --set victim.robust_eps_255=0.5", "leave_one_out_log_robust_half",
                  "the log-distance recipe on the members' robust copies fine-tuned at 0.5/255, on the third zoo"),
    leave_one_out("transfer_loo_log_robust_double", f"{LOG} --set victim.robust_eps_255=2.0", "leave_one_out_log_robust_double",
                  "the log-distance recipe on the members' robust copies fine-tuned at 2/255, on the third zoo"),
    leave_one_out("transfer_loo_log_lgv", f"{LOG} --set victim.lgv=4", "leave_one_out_log_lgv",
                  "the log-distance recipe on each member's first four LGV snapshots (Gubri et al. 2022), on the third zoo"),
    Figure("reference_sticker", "{python} benchmarks/transfer_physical.py --only reference --coverages 15,30,50 --out {out}",
           {"physical/reference_sticker_targeted.png": "transfer_targeted.png"}, block=reference_table, metrics="result.json",
           about="the control: the target sign itself as a sticker on 15, 30 and 50% of the face, judged by every zoo model"),
    Figure("transfer_options", "{python} benchmarks/transfer_physical.py --only transfer_options --held-out gtsrb-cnn,resnet-8 "
           "--set restarts=1 --set restart_until=1.0 --out {out}", {"physical/transfer_options_targeted.png": "transfer_targeted.png"},
           block=options_table, manual=True, metrics="result.json",
           about="the leave-one-out designs of the two models transfer reaches least, remade with each of the literature's transfer options"),
    Figure("coverage_curve", "{python} benchmarks/transfer_physical.py --only coverage_curve --set restarts=1 --out {out}",
           {"physical/coverage_curve.png": "coverage_curve.png"}, block=coverage_table, manual=True, metrics="result.json",
           about="RP2 (rp2_zoo.yaml, one run per point) white-box on every zoo model at 5-50% of the face"),
    Figure("demo_surrogates", "{python} benchmarks/demo_surrogates.py --out {out}", {}, block=demo_surrogates_table,
           manual=True, metrics="result.json",
           about="the demo designed on its victims or on their slightly robust copies, judged by nine models it never saw"),
    Figure("outside_judges", "{python} benchmarks/outside_judges.py --zoo vgg-bn,resnet-8,lisa-cnn,mobilenet-v2,gtsrb-cnn,"
           "convnext-64 --out {out}",
           {"physical/outside_photos.png": "design0/photos.png"}, block=outside_judges_table, manual=True,
           metrics="result.json",
           about="the demo's design judged by classifiers trained outside the project, in photos rendered by OpenCV"),
    Figure("demo", "physadv demo --out {out}",
           {"demo/texture.png": "design/texture.png", "demo/stickers.png": "design/stickers.png",
            "demo/photo_20ft_30deg.jpg": "capture/adversarial/photos/d20ft_a30_normal.jpg",
            "demo/targeted_by_distance_angle.png": "capture/report/heatmap.png",
            "demo/transfer_targeted.png": "capture/report/transfer_targeted.png",
            "demo/deepfool.png": "digital/deepfool.png", "demo/dcgan_samples.png": "digital/gan/samples/step_*.png"},
           block=demo_numbers, manual=True, about="the end-to-end demo: an ensemble design, printed, photographed in simulation, judged by white-box and held-out models"),
]


def git_commit(root: Path) -> str:
    def git(*args) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def stamp_png(path: Path, info: dict) -> None:
    """Write ``info`` into the PNG's text chunks (``physadv:<key>``), in place."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    meta = PngInfo()
    with Image.open(path) as im:
        for k, v in getattr(im, "text", {}).items():
            if not k.startswith("physadv:"):
                meta.add_text(k, v)
        for k, v in info.items():
            meta.add_text(f"physadv:{k}", str(v))
        im.load()
        im.save(path, pnginfo=meta)


def find(run: Path, pattern: str) -> Path:
    matches = sorted(glob.glob(str(run / pattern), recursive=True))
    if not matches:
        raise FileNotFoundError(f"the job wrote no {pattern} in {run}")
    return Path(matches[-1])


def rewrite_block(pages: list[Path], name: str, text: str, provenance: str) -> Path:
    """Rewrite the block ``name`` in the one page of ``pages`` (the README, docs/*.md) that holds it; returns that page."""
    start, end = f"<!-- physadv:{name} -->", f"<!-- /physadv:{name} -->"
    holding = [p for p in pages if p.is_file() and start in p.read_text()]
    if len(holding) != 1:
        found = ", ".join(map(str, holding)) or ", ".join(map(str, pages))
        raise ValueError(f"{found}: {'no' if not holding else 'more than one'} block {start} ... {end} to rewrite")
    page = holding[0]
    src = page.read_text()
    if end not in src or src.index(start) > src.index(end):
        raise ValueError(f"{page}: block {start} has no {end} after it")
    head, rest = src.split(start, 1)
    _, tail = rest.split(end, 1)
    page.write_text(f"{head}{start}\n{text}\n<!-- {provenance} -->\n{end}{tail}")
    return page


def render_index(docs: Path, records: dict) -> None:
    lines = ["# Figures and where they come from", "",
             "Written by `make docs` (`docs/figures.py`); every file below was made by the command beside it at the "
             "commit beside it (or, for long runs, collected with `--collect` from a folder that command wrote). "
             "Do not edit by hand.", "",
             "| figure | what | command | commit | date |", "|---|---|---|---|---|"]
    for dest in sorted(records):
        r = records[dest]
        made = f" (collected from {r['collected_from']})" if r.get("collected_from") else ""
        lines.append(f"| [{dest}]({dest}) | {r['about']} | `{r['command']}`{made} | {r['commit']} | {r['date']} |")
    (docs / "figures.md").write_text("\n".join(lines) + "\n")


def run_command(fig: Figure, runs: Path, root: Path) -> Path:
    """Run the entry's command into a fresh folder under ``runs``; returns the folder."""
    out = runs / f"{fig.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    words = [w.replace("{python}", sys.executable).replace("{out}", str(out)) for w in shlex.split(fig.command)]
    if words[0] == "physadv":
        words = [sys.executable, "-m", "physadv.physical", *words[1:]]
    done = subprocess.run(words, cwd=root)
    if done.returncode != 0:
        raise RuntimeError(f"{fig.name}: `{fig.command}` exited with {done.returncode}")
    return out


def run_entry(fig: Figure, docs: Path, readme: Path, runs: Path, root: Path = ROOT, collect: Path | None = None,
              ran: dict[str, Path] | None = None) -> dict:
    """Run one entry's command, copy its files into ``docs`` with their provenance, rewrite its block.
    ``collect``: a folder the same command already wrote (an hour-long benchmark, a demo run): its files are taken
    as they are, and the provenance says so (the commit is the one at collection). ``ran``: command -> folder of the
    commands this invocation has run, so entries sharing a command (one recipe on two draws of the zoo) run it once."""
    commit = git_commit(root)
    if collect is not None and not collect.is_dir():
        raise FileNotFoundError(f"--collect {collect}: no such folder")
    ran = {} if ran is None else ran
    if collect is None and fig.command not in ran:
        ran[fig.command] = run_command(fig, runs, root)
    out = collect if collect is not None else ran[fig.command]
    info = {"command": fig.command.replace("{python} ", "python ").replace("{out}", "DIR"), "commit": commit,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "about": fig.about}
    if collect is not None:
        info["collected_from"] = str(collect)
    index = docs / "figures.json"
    records = json.loads(index.read_text()) if index.is_file() else {}
    for dest, pattern in fig.files.items():
        target = docs / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(find(out, pattern), target)
        if target.suffix == ".png":
            stamp_png(target, info)
        records[dest] = info
    index.write_text(json.dumps(records, indent=1, sort_keys=True) + "\n")
    render_index(docs, records)
    if fig.block is not None:
        metrics = json.loads(find(out, fig.metrics).read_text())
        pages = [readme, *sorted(docs.glob("*.md"))]
        rewrite_block(pages, fig.name, fig.block(metrics), f"written by docs/figures.py: {info['command']} at {commit}, {info['date']}")
    return info


def main(argv=None, figures: list[Figure] | None = None) -> int:
    figures = FIGURES if figures is None else figures
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=None, help="comma-separated entry names (manual entries run only when named)")
    p.add_argument("--list", action="store_true", help="list the entries and exit")
    p.add_argument("--docs", default=str(ROOT / "docs"), help="where the files go (default: docs/)")
    p.add_argument("--readme", default=str(ROOT / "README.md"))
    p.add_argument("--runs", default=str(ROOT / "runs" / "docs"), help="where the jobs write their run folders")
    p.add_argument("--collect", default=None, metavar="DIR",
                   help="with one --only entry: take its files from DIR, a folder its command already wrote")
    a = p.parse_args(argv)
    if a.list:
        for f in figures:
            print(f"{f.name:20s} {'(manual) ' if f.manual else ''}{f.command}")
        return 0
    names = {f.name for f in figures}
    chosen = a.only.split(",") if a.only else [f.name for f in figures if not f.manual]
    unknown = [n for n in chosen if n not in names]
    if unknown:
        print(f"docs/figures.py: unknown entry {', '.join(unknown)}; known: {', '.join(sorted(names))}", file=sys.stderr)
        return 2
    if a.collect and len(chosen) != 1:
        print("docs/figures.py: --collect needs exactly one entry in --only", file=sys.stderr)
        return 2
    ran: dict[str, Path] = {}
    for f in figures:
        if f.name in chosen:
            info = run_entry(f, Path(a.docs), Path(a.readme), Path(a.runs), collect=Path(a.collect) if a.collect else None,
                             ran=ran)
            print(f"{f.name}: {', '.join(f.files)} <- {info['command']} at {info['commit']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
