"""Capture bar: simulated photos of an exported print at 5-40 ft and 0-60 degrees on photo backgrounds.

Exports a 20 cm sign (printing's defaults: 300 DPI, 30 mm markers) through ``printing.export``,
renders RP2's grid with ``capture.simulate`` (12 MP phone, 30 degree tele lens, camera effects),
then locates the object in every photo and solves the pose. Prints JSON: share of photos where the
object is found (bar: >= 95%), and |solvePnP angle - truth| where markers are found (bar: <= 5 deg),
with the distance error as well. The reference for the pose is the simulation's own ``Pose``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/capture_locate.py [--width 20cm] [--repeats 1]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def sign_texture(size: int = 400) -> np.ndarray:
    import cv2

    t = np.full((size, size, 3), (200, 25, 25), np.uint8)
    cv2.circle(t, (size // 2, size // 2), size // 3, (255, 255, 255), -1)
    cv2.putText(t, "STOP", (size // 5, size // 2 + size // 14), cv2.FONT_HERSHEY_SIMPLEX, size / 160, (200, 25, 25),
                max(1, size // 60))
    return t.astype(np.float32) / 255


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", default="20cm")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    from physadv.capture.calibrate import CameraModel
    from physadv.capture.locate import locate
    from physadv.capture.photos import load_photo, read_manifest
    from physadv.capture.simulate import SimulateConfig, simulate
    from physadv.core.config import from_dict
    from physadv.printing.export import ExportConfig, export_print

    out = Path(args.out or tempfile.mkdtemp(prefix="capture-bar-"))
    layout = export_print(sign_texture(), out / "print", from_dict(ExportConfig, {"width": args.width, "formats": ["png"]}))
    cfg = from_dict(SimulateConfig, {"print_file": str(out / "print" / "print.png"), "repeats": args.repeats,
                                     "seed": args.seed})
    t0 = time.time()
    simulate(cfg, out / "sim")
    t_sim = time.time() - t0
    truth = {p["file"]: p for p in json.loads((out / "sim" / "truth.json").read_text())["photos"]}
    cam = CameraModel.load(out / "sim" / "camera.json")
    found, angle_err, dist_err, misses, per = 0, [], [], [], []
    t0 = time.time()
    for row in read_manifest(out / "sim" / "manifest.csv"):
        img = load_photo(out / "sim" / row.file).image
        loc = locate(img, layout, cam.for_image(img.shape[1], img.shape[0]))
        tr = truth[row.file]
        if loc.method == "markers":
            found += 1
            angle_err.append(abs(loc.angle - tr["angle"]))
            dist_err.append(abs(loc.distance_m - tr["distance_m"]) / tr["distance_m"])
            per.append({"file": row.file, "markers": len(loc.markers), "angle_err": round(angle_err[-1], 3),
                        "distance_err_pct": round(100 * dist_err[-1], 3)})
        else:
            misses.append(row.file)
    t_loc = time.time() - t0
    n = len(truth)
    print(json.dumps({
        "object": args.width, "marker_mm": layout.markers[0].size_mm, "photos": n, "photo_size": [cfg.width, cfg.height],
        "fov_deg": cfg.fov_deg, "found_rate": found / n, "bar_found_rate": 0.95, "not_found": misses,
        "angle_err_deg": {"max": max(angle_err), "mean": float(np.mean(angle_err)), "p95": float(np.percentile(angle_err, 95))},
        "bar_angle_err_deg": 5.0, "angle_within_5deg": float(np.mean(np.array(angle_err) <= 5.0)),
        "distance_err_pct": {"max": 100 * max(dist_err), "mean": 100 * float(np.mean(dist_err))},
        "seconds": {"simulate_per_photo": t_sim / n, "locate_per_photo": t_loc / n}, "worst": sorted(per, key=lambda p: -p["angle_err"])[:5],
        "out": str(out)}, indent=2))


if __name__ == "__main__":
    main()
