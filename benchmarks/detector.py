"""The sign-world detector as a victim, end to end: its AP50 on held-out street scenes; RP2 designs against it
(disappearance: Eykholt et al. 2018's detector attack; targeted: Chen et al. 2018's ShapeShifter) exported as print
files, photographed in simulation (``capture simulate``: RP2's 5-40 ft x 0-60 degrees x three lights) and judged by
the detector on the whole photo (``capture.detect``); the cost of a design step and of judging a 12 MP photo.

    python benchmarks/detector.py                                     # designs with the shipped configs (cached)
    python benchmarks/detector.py --disappearance runs/a/design.safetensors --targeted runs/b/design.safetensors
    python benchmarks/detector.py --sets clean --ap-scenes 100         # a quicker partial run

Prints JSON: ``ap50``; ``clean_detected`` (the clean print detected as "stop"), ``disappearance`` (the design's
print not detected as "stop"), ``targeted`` (detected as "speed_limit_80" and not as "stop"; ``targeted_as_target``:
detected as "speed_limit_80" at all), each over the photos of the grid, with per-distance and per-angle rates;
``seconds_per_step`` and ``share_outside_detector`` of an RP2 step against the detector; ``photos_per_second`` of
detection judging (decode, fiducials, resize, detect, match) at 12 MP. Photos default to the demo's 2560 x 1920 at a
60 degree field of view (the detector's own); each photo is resized to the detector's 512 x 384 frames (area filter,
the aspect kept) as a deployed pipeline would. Work files (prints, photos, designs) are cached under ``--work``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

SOURCE, TARGET = "stop", "speed_limit_80"
DISTANCES_FT = [5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0]
ANGLES = [0.0, 15.0, 30.0, 45.0, 60.0]
LIGHTS = ["normal", "bright", "dim"]
CONFIGS = {"disappearance": "configs/physical/rp2_detector_disappear.yaml",
           "targeted": "configs/physical/rp2_detector_targeted.yaml"}


def ap50(det, scenes: int) -> dict:
    from physadv.core.detection_train import evaluate_detector
    from physadv.rendering.signs.detector_cli import DEFAULT_CONFIG, SignDetectorJob
    from physadv.core.config import load_config
    from physadv.core.resources import packaged
    from physadv.rendering.signs.scenes import load_scenes

    job = load_config(SignDetectorJob, packaged(DEFAULT_CONFIG))
    test = load_scenes("test", job.scenes, progress=False)
    test = test if scenes >= len(test) else test.subset(list(range(scenes)))
    return {"ap50": round(evaluate_detector(det, test, progress=False)["ap50"], 4), "ap_scenes": len(test)}


def design(kind: str, work: Path, overrides: list[str]):
    """The design of ``kind`` by the shipped config (``overrides`` as --set), cached by config."""
    from physadv.core.config import config_hash, load_config
    from physadv.core.detection_spec import load_any_victim
    from physadv.physical.attack import PhysicalResult
    from physadv.physical.design_cli import RP2Job
    from physadv.physical.rp2 import RP2
    from physadv.rendering.scene import build_scene

    job = load_config(RP2Job, CONFIGS[kind], overrides)
    path = work / f"design-{kind}-{config_hash(job)}.safetensors"
    if path.is_file():
        return PhysicalResult.load(path)
    victim = load_any_victim(job.victim, job.detection)
    result = RP2(victim, build_scene(job.scene), job).run(checkpoint=work / f"checkpoint-{kind}.safetensors")
    result.save(path)
    return result


def step_timing(steps: int) -> dict:
    """Seconds per RP2 step against the detector (the disappearance config: its batch of whole frames; render, print
    model, loss, backward) and the share of it spent outside the detector (the detector's own forward and backward
    timed on the same views, a leaf image tensor standing in for the render)."""
    from physadv.core.config import load_config
    from physadv.core.detection_spec import load_any_victim
    from physadv.core.victims import Views
    from physadv.physical.design_cli import RP2Job
    from physadv.physical.rp2 import RP2
    from physadv.rendering.scene import build_scene

    job = load_config(RP2Job, CONFIGS["disappearance"], ["mask.kind=poster", "mask.max_coverage=1.0"])
    victim, scene = load_any_victim(job.victim, job.detection), build_scene(job.scene)
    attack = RP2(victim, scene, job)
    w = attack.start().requires_grad_(True)
    step = detector = 0.0
    for _ in range(steps):
        draw = scene.sample(job.batch)
        t0 = time.perf_counter()
        total, _ = attack.loss(w, draw)
        total.backward()
        t1 = time.perf_counter()
        with torch.no_grad():
            views = attack.views(attack.design(w.detach()), draw)
        x = views.images.detach().requires_grad_(True)
        t2 = time.perf_counter()
        victim.loss(Views(x, views.boxes, views.seed), attack.objective).mean().backward()
        step, detector = step + t1 - t0, detector + time.perf_counter() - t2
    return {"seconds_per_step": round(step / steps, 3), "share_outside_detector": round(max(0.0, 1 - detector / step), 3),
            "detector_seconds_per_step": round(detector / steps, 3), "views_per_step": job.batch,
            "frame": f"{job.scene.world.camera.width}x{job.scene.world.camera.height}"}


def content_key(texture: torch.Tensor, alpha: torch.Tensor) -> str:
    """A short digest of a design's pixels: its print files and photos are cached under it."""
    import hashlib

    return hashlib.sha256(torch.cat([texture, alpha]).float().contiguous().numpy().tobytes()).hexdigest()[:10]


def export(name: str, texture, alpha, width_m: float, work: Path) -> Path:
    """The print file with fiducials at true size (100 dpi, 150 mm markers: the demo's settings)."""
    from physadv.printing.export import ExportConfig, export_print

    prints = work / "prints" / name
    if not (prints / f"{name}.pdf").is_file():
        export_print(torch.cat([texture, alpha], 0), prints, ExportConfig(width=f"{width_m * 100:g}cm", dpi=100.0,
                     label=f"physadv detector benchmark: {name}", basename=name, formats=["png", "pdf"], marker_mm=150.0))
    return prints / f"{name}.pdf"


def photograph(name: str, texture, alpha, width_m: float, work: Path, px: tuple[int, int], fov: float) -> Path:
    """Export the print and simulate the grid's photos of it (resumable: photos already made are kept)."""
    from physadv.capture.simulate import SimulateConfig, simulate

    pdf = export(name, texture, alpha, width_m, work)
    photos = work / "photos" / f"{name}-{px[0]}x{px[1]}-fov{fov:g}"
    simulate(SimulateConfig(print_file=str(pdf), distances=DISTANCES_FT, distance_unit="ft", angles=ANGLES, lights=LIGHTS,
                            width=px[0], height=px[1], fov_deg=fov, seed=7), photos)
    return photos


def judge(victim, photos: Path, layout, set_name: str) -> tuple[dict, float]:
    """The detector on every photo of a set: (rates over the set with per-distance/angle rates, photos per second)."""
    from physadv.capture.detect import judge_set_detector
    from physadv.capture.judge import JudgeConfig
    from physadv.capture.photos import read_manifest
    from physadv.core.detection_report import detection_summary
    from physadv.core.detection_spec import DetectionConfig

    rows = read_manifest(photos / "manifest.csv")
    t = time.perf_counter()
    results = judge_set_detector(rows, photos, victim, JudgeConfig(true_class=SOURCE, target_class=TARGET), DetectionConfig(),
                                 layout, None, set_name, "ft")
    seconds = time.perf_counter() - t
    records = [r.record for r in results if r.record is not None]
    entry = detection_summary(records)[victim.name][set_name]
    entry["statuses"] = {s: sum(r.photo.status == s for r in results) for s in {r.photo.status for r in results}}
    entry["matched_by_box"] = sum(r.matched_by == "box" for r in results)
    entry["shapeshifter_success"] = sum(r.as_target and not r.as_source for r in records) / max(1, len(records))
    return entry, len(rows) / seconds


def photos_per_second_12mp(victim, clean_pdf: Path, work: Path, n: int) -> float:
    """Detection judging of ``n`` 12 MP photos (4032 x 3024) of the clean print: decode, fiducials, resize, detect,
    match (the clean print is exported first by the clean set)."""
    from physadv.capture.simulate import SimulateConfig, simulate
    from physadv.printing.layout import PrintLayout

    photos = work / "photos" / f"clean-12mp-{n}"
    angles = [0.0, 45.0]
    simulate(SimulateConfig(print_file=str(clean_pdf), distances=DISTANCES_FT[: max(1, n // 2)],
                            distance_unit="ft", angles=angles, lights=["normal"], width=4032, height=3024, fov_deg=60.0,
                            seed=7), photos)
    layout = PrintLayout.from_json(clean_pdf.with_name("layout.json"))
    return judge(victim, photos, layout, "clean")[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--disappearance", default="", help="a design.safetensors (default: design with the shipped config)")
    ap.add_argument("--targeted", default="", help="a design.safetensors (default: design with the shipped config)")
    ap.add_argument("--sets", default="clean,disappearance,targeted", help="which photo sets to make and judge")
    ap.add_argument("--work", default="", help="prints, photos and designs (default $PHYSADV_CACHE/bench-detector)")
    ap.add_argument("--photo-px", default="2560x1920", help="simulated photo size (the demo's; 4032x3024 for 12 MP)")
    ap.add_argument("--fov", type=float, default=60.0, help="the simulated camera's horizontal field of view (degrees)")
    ap.add_argument("--ap-scenes", type=int, default=400, help="held-out street scenes for AP50 (0: skip)")
    ap.add_argument("--timing-steps", type=int, default=3, help="RP2 steps timed (0: skip)")
    ap.add_argument("--rate-photos", type=int, default=8, help="12 MP photos timed for photos_per_second (0: skip)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import physadv.rendering.signs  # noqa: F401  (registers sign-detector)
    from physadv.core.detection_spec import load_detector_victim
    from physadv.core.io import cache_dir
    from physadv.physical.attack import PhysicalResult
    from physadv.printing.layout import PrintLayout
    from physadv.rendering.objects import sign_object

    work = Path(args.work) if args.work else cache_dir("bench-detector")
    work.mkdir(parents=True, exist_ok=True)
    victim = load_detector_victim("sign-detector")
    px = tuple(int(v) for v in args.photo_px.lower().split("x"))
    out: dict = {"threads": torch.get_num_threads(), "photos": f"{px[0]}x{px[1]}, {args.fov:g} degrees, 5-40 ft x 0-60 deg x "
                 f"{len(LIGHTS)} lights", "detector_frame": "512x384"}
    if args.ap_scenes:
        out.update(ap50(victim.detector, args.ap_scenes))
    sign = sign_object(SOURCE)
    width = sign.size_m[0]
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    for name in sets:
        t0 = time.perf_counter()
        if name == "clean":
            texture, alpha, meta = sign.texture, sign.alpha, {}
        else:
            r = PhysicalResult.load(getattr(args, name)) if getattr(args, name) else design(name, work, [])
            texture, alpha = r.texture, r.alpha
            meta = {"coverage": round(r.coverage, 4), "val_success": r.metrics.get("val_success"),
                    "design_seconds": r.timings.get("seconds"), "design_seconds_per_step": r.timings.get("seconds_per_step")}
        key = f"{name}-{content_key(texture, alpha)}"  # prints and photos of this very design, never a stale one
        photos = photograph(key, texture, alpha, width, work, px, args.fov)
        layout = PrintLayout.from_json(work / "prints" / key / "layout.json")
        entry, rate = judge(victim, photos, layout, "clean" if name == "clean" else "adversarial")
        out[f"{name}_set"] = entry | meta | {"photos_per_second_at_this_size": round(rate, 3),
                                             "seconds": round(time.perf_counter() - t0, 1)}
        if name == "clean":
            out["clean_detected"] = entry["as_source"]
        elif name == "disappearance":
            out["disappearance"] = round(1 - entry["as_source"], 4)
        else:
            out["targeted"] = round(entry["shapeshifter_success"], 4)
            out["targeted_as_target"] = entry["as_target"]
    if args.timing_steps:
        out.update(step_timing(args.timing_steps))
    if args.rate_photos:
        clean = export(f"clean-{content_key(sign.texture, sign.alpha)}", sign.texture, sign.alpha, width, work)
        out["photos_per_second"] = round(photos_per_second_12mp(victim, clean, work, args.rate_photos), 3)
    print(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
