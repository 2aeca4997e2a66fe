"""``physadv capture calibrate-camera|eval|video|simulate``: from photos of a print back to a verdict.

    physadv capture simulate --print runs/print-export/X/print.png --out runs/sim
    physadv capture calibrate-camera --images "board/*.jpg" --board 9x6 --square-mm 25 --out runs/cam
    physadv capture eval --photos runs/sim/photos --manifest runs/sim/manifest.csv \\
        --layout runs/print-export/X/layout.json --camera runs/sim/camera.json --weights clf.safetensors \\
        --set judge.true_class=stop --out runs/eval
    physadv capture video --source walk.avi --layout .../layout.json --weights clf.safetensors --every 5
"""
from __future__ import annotations

import argparse
import glob
from dataclasses import dataclass, field
from pathlib import Path

from physadv.capture.judge import JudgeConfig
from physadv.core.cli import add_config_args, finish_run, resolve_config, start_run
from physadv.core.detection_spec import DetectionConfig
from physadv.core.errors import PhysadvError


@dataclass
class CalibrateCameraConfig:
    images: str = ""  # a folder or a glob of checkerboard photos
    board: str = "9x6"  # inner corners across x down
    square_mm: float = 25.0
    max_pixels: int = 24_000_000

    def validate(self) -> None:
        parse_board(self.board)
        if not self.square_mm > 0:
            raise ValueError(f"square_mm must be positive, got {self.square_mm}")


@dataclass
class EvalConfig:
    photos: str = ""  # folder of the adversarial photos (default: beside the manifest)
    manifest: str = ""
    clean_photos: str = ""
    clean_manifest: str = ""  # optional clean set, judged the same way
    layout: str = ""  # layout.json of the print (fiducials); blank: manifest corners or full frames only
    camera: str = ""  # camera.json (calibrate-camera); blank: no solvePnP
    weights: str = ""  # a physadv classifier file (.safetensors)
    model: str = ""  # or "signs" (the sign world's GTSRB-CNN), a core registry name, or a torchvision arch with weights
    judges: list[str] = field(default_factory=list)  # more models (any --victim name) that judge the same photos
    device: str = "cpu"
    title: str = "Capture report"
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    detector: str = ""  # judge with a detector on whole photos instead (capture.detect): sign-detector, ARCH(=FILE), a file
    detection: DetectionConfig = field(default_factory=DetectionConfig)  # its thresholds, working size, matching


@dataclass
class VideoConfig:
    source: str = ""  # a video file or a camera index ("0")
    every: int = 5  # judge every k-th frame
    max_frames: int = 0  # stop after this many judged frames (0: all; set it for a live camera)
    layout: str = ""
    camera: str = ""
    weights: str = ""
    model: str = ""
    device: str = "cpu"
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    detector: str = ""  # judge with a detector on whole frames instead (capture.detect_video)
    detection: DetectionConfig = field(default_factory=DetectionConfig)

    def validate(self) -> None:
        if self.every < 1:
            raise ValueError(f"every must be >= 1, got {self.every}")


def parse_board(text: str) -> tuple[int, int]:
    try:
        cols, rows = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ValueError(f"board {text!r} must be COLSxROWS inner corners, e.g. 9x6") from None
    if cols < 2 or rows < 2:
        raise ValueError(f"board {text!r} needs at least 2x2 inner corners")
    return cols, rows


DETECTOR_HELP = ("judge with a detector on the whole frame (no crop): sign-detector, a torchvision detector "
                 "(fasterrcnn_resnet50_fpn with --weights F.pth, or ARCH=F.pth), or a physadv detector file")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("capture", help="judge photos or video of a print by distance and angle; simulate photos")
    jobs = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    c = jobs.add_parser("calibrate-camera", help="camera intrinsics from checkerboard photos (cv2.calibrateCamera)")
    add_config_args(c, "capture/calibrate_camera.yaml")
    c.add_argument("--images", default=None, help="folder or glob of checkerboard photos")
    c.add_argument("--board", default=None, help="inner corners, e.g. 9x6")
    c.add_argument("--square-mm", dest="square_mm", type=float, default=None)
    c.set_defaults(func=_calibrate_camera)

    e = jobs.add_parser("eval", help="judge a photo set (and its clean counterpart): CSV, JSON, Markdown, HTML")
    add_config_args(e, "capture/eval.yaml")
    helps = {"photos": "folder of the adversarial photos (default: the manifest's folder)",
             "manifest": "CSV: file, distance, distance_unit, angle, light, notes [, x0,y0..x3,y3]",
             "clean_photos": "folder of the clean photos", "clean_manifest": "manifest of the clean photos",
             "layout": "layout.json of the print (fiducials)", "camera": "camera.json (calibrate-camera) for solvePnP",
             "weights": "classifier file (.safetensors)"}
    for name, text in helps.items():
        e.add_argument("--" + name.replace("_", "-"), dest=name, default=None, help=text)
    e.add_argument("--model", default=None, help="'signs' (the sign world's GTSRB-CNN), a registry name, or the "
                   "architecture of --weights without physadv metadata")
    e.add_argument("--judge", action="append", default=None,
                   help="another model that judges the same photos (repeatable): a transfer matrix in the report")
    e.add_argument("--detector", default=None, help=DETECTOR_HELP)
    e.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    e.set_defaults(func=_eval)

    v = jobs.add_parser("video", help="judge a video file or camera frame by frame")
    add_config_args(v, "capture/video.yaml")
    for name in ("source", "layout", "camera", "weights", "model"):
        v.add_argument("--" + name, dest=name, default=None)
    v.add_argument("--detector", default=None, help=DETECTOR_HELP)
    v.add_argument("--every", type=int, default=None)
    v.add_argument("--max-frames", dest="max_frames", type=int, default=None)
    v.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    v.set_defaults(func=_video)

    s = jobs.add_parser("simulate", help="simulated photos of an exported print on a distance x angle grid")
    add_config_args(s, "capture/simulate.yaml")
    s.add_argument("--print", dest="print_file", default=None, help="exported PNG or PDF (layout.json beside it)")
    s.set_defaults(func=_simulate)


def _prepare(args: argparse.Namespace, names: list[str]) -> None:
    """Explicit flags become overrides (``--set`` still wins)."""
    flags = [f"{n}={getattr(args, n)}" for n in names if getattr(args, n, None) is not None]
    args.overrides = flags + list(args.overrides)


def _model(cfg):
    """The judging classifier: ``model`` (sign, a zoo member, a registry name, or an ImageNet architecture) with
    ``weights`` when given, or the physadv classifier file ``weights`` (``core.victims.load_model``)."""
    from physadv.core.train import resolve_device
    from physadv.core.victims import load_model

    if not cfg.weights and not cfg.model:
        raise PhysadvError("no classifier: give --weights FILE (a physadv .safetensors) or --model NAME")
    spec = f"{cfg.model}={cfg.weights}" if cfg.model and cfg.weights else (cfg.weights or cfg.model)
    return load_model(spec, resolve_device(cfg.device)).eval()


def _layout_camera(cfg):
    from physadv.capture.calibrate import CameraModel
    from physadv.printing.layout import PrintLayout

    layout = PrintLayout.from_json(cfg.layout) if cfg.layout else None
    camera = CameraModel.load(cfg.camera) if cfg.camera else None
    return layout, camera


def _calibrate_camera(args: argparse.Namespace) -> int:
    from physadv.capture.calibrate import calibrate_camera
    from physadv.core.io import IMAGE_SUFFIXES

    _prepare(args, ["images", "board", "square_mm"])
    cfg = resolve_config(CalibrateCameraConfig, args)
    if not cfg.images:
        raise PhysadvError("calibrate-camera needs --images (a folder or a glob of checkerboard photos)")
    p = Path(cfg.images)
    files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES) if p.is_dir() else sorted(
        Path(f) for f in glob.glob(cfg.images))
    if not files:
        raise PhysadvError(f"--images {cfg.images}: no photos found")
    cam, rep = calibrate_camera(files, parse_board(cfg.board), cfg.square_mm, cfg.max_pixels)
    run = start_run("capture-calibrate-camera", cfg, args)
    cam.save(run / "camera.json", {"rms_px": rep.rms_px, "views": len(rep.used)})
    for f, st in rep.status.items():
        print(f"  {f}: {st}")
    i = cam.intrinsics
    print(f"fx={i.fx:.1f} fy={i.fy:.1f} cx={i.cx:.1f} cy={i.cy:.1f} at {i.width}x{i.height}; RMS reprojection "
          f"{rep.rms_px:.3f} px from {len(rep.used)} of {len(files)} photos -> {run / 'camera.json'}")
    finish_run(run, {"rms_px": rep.rms_px, "used": rep.used, "status": rep.status, **cam.to_dict()})
    return 0


def _eval(args: argparse.Namespace) -> int:
    from physadv.capture.judge import evaluate_photos
    from physadv.capture.report import write_reports
    from physadv.core.gridreport import transfer_line

    _prepare(args, ["photos", "manifest", "clean_photos", "clean_manifest", "layout", "camera", "weights", "model",
                    "device", "detector"])
    if args.judge:
        args.overrides.insert(0, "judges=[" + ",".join(args.judge) + "]")
    cfg = resolve_config(EvalConfig, args)
    if not cfg.manifest and not cfg.clean_manifest:
        raise PhysadvError("eval needs --manifest photos.csv (adversarial set) and/or --clean-manifest (clean set); "
                           "--photos DIR when the photos are not beside the manifest")
    if cfg.detector:
        return _eval_detector(cfg, args)
    model = _model(cfg)
    from physadv.core.train import resolve_device
    from physadv.core.victims import load_model

    judges = {name: load_model(name, resolve_device(cfg.device)).eval() for name in cfg.judges}
    layout, camera = _layout_camera(cfg)
    run = start_run("capture-eval", cfg, args)
    results, report = evaluate_photos(model, cfg.judge, cfg.photos or None, cfg.manifest or None, layout, camera,
                                      cfg.clean_photos or None, cfg.clean_manifest or None, judges)
    files = write_reports(run, results, report, cfg.title)
    s = report["summary"]
    print(f"{s['photos']} photos: " + ", ".join(f"{k} {v}" for k, v in s["by_status"].items()))
    for k in ("untargeted_success", "targeted_success", "clean_accuracy", "rp2_success"):
        if s.get(k) is not None:
            print(f"  {k.replace('_', ' ')}: {s[k]:.1%}")
    for row in report.get("transfer", []):
        print(f"  {transfer_line(row)}")
    print(f"report: {files['html']}")
    finish_run(run, s | ({"transfer": report["transfer"]} if report.get("transfer") else {}))
    return 0


def _video(args: argparse.Namespace) -> int:
    from physadv.capture.video import judge_video, write_video_report

    _prepare(args, ["source", "layout", "camera", "weights", "model", "every", "max_frames", "device", "detector"])
    cfg = resolve_config(VideoConfig, args)
    if cfg.source == "":
        raise PhysadvError("video needs --source FILE or a camera index such as 0")
    if cfg.detector:
        return _video_detector(cfg, args)
    model = _model(cfg)
    layout, camera = _layout_camera(cfg)
    run = start_run("capture-video", cfg, args)
    results, summary = judge_video(cfg.source, model, cfg.judge, layout, camera, cfg.every, cfg.max_frames)
    write_video_report(run, results, summary)
    print(f"{summary['frames_read']} frames read, {summary['frames_judged']} judged, object found in "
          f"{summary['object_found']}; top classes {summary['top1_counts']}")
    finish_run(run, summary)
    return 0


def _detector_victim(cfg):
    """The judging detector: ``detector`` (a name, ARCH=FILE, or a file) with ``weights`` for an architecture."""
    from physadv.core.detection_spec import load_detector_victim
    from physadv.core.train import resolve_device

    if cfg.model:
        raise PhysadvError(f"--detector {cfg.detector} judges alone: drop --model {cfg.model} (a classifier's)")
    return load_detector_victim(cfg.detector, cfg.weights, resolve_device(cfg.device), cfg.detection)


def _eval_detector(cfg: EvalConfig, args: argparse.Namespace) -> int:
    """``capture eval --detector``: whole photos, detections matched to the located object (capture.detect)."""
    from physadv.capture.detect import evaluate_photos_detector, write_detection_reports
    from physadv.core.detection_report import headline

    if cfg.judges:
        raise PhysadvError("--judge models classify crops; with --detector judge by one detector per run")
    victim = _detector_victim(cfg)
    layout, camera = _layout_camera(cfg)
    run = start_run("capture-eval", cfg, args)
    results, report = evaluate_photos_detector(victim, cfg.judge, cfg.detection, cfg.photos or None, cfg.manifest or None,
                                               layout, camera, cfg.clean_photos or None, cfg.clean_manifest or None)
    files, _ = write_detection_reports(run, results, report, cfg.title)
    s = report["summary"]
    print(f"{s['photos']} photos: " + ", ".join(f"{k} {v}" for k, v in s["by_status"].items()))
    for name, sets in s["detection"].items():
        for set_name, entry in sets.items():
            print(f"  {name}, {set_name}: {headline(entry)}")
    print(f"report: {files['html']}")
    finish_run(run, s)
    return 0


def _video_detector(cfg: VideoConfig, args: argparse.Namespace) -> int:
    """``capture video --detector``: the per-frame rates of the detector paper (capture.detect_video)."""
    from physadv.capture.detect_video import judge_video_detector, write_video_detector_report

    victim = _detector_victim(cfg)
    layout, camera = _layout_camera(cfg)
    run = start_run("capture-video", cfg, args)
    frames, summary = judge_video_detector(cfg.source, victim, cfg.judge, cfg.detection, layout, camera, cfg.every,
                                           cfg.max_frames)
    write_video_detector_report(run, frames, summary)
    r = summary["rates"]
    pct = lambda v: "-" if v is None else f"{v:.1%}"  # noqa: E731
    target = f", as {summary['target']} {pct(r['as_target'])}" if summary["target"] else ""
    print(f"{summary['frames_read']} frames read, {summary['frames_judged']} judged; per frame: detected as "
          f"{summary['source']} {pct(r['as_source'])}{target}, nothing matched {pct(r['not_detected'])}")
    finish_run(run, summary)
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from physadv.capture.simulate import SimulateConfig, simulate

    _prepare(args, ["print_file"])
    cfg = resolve_config(SimulateConfig, args)
    run = start_run("capture-simulate", cfg, args)
    rows = simulate(cfg, run)
    print(f"{len(rows)} photos in {run / 'photos'}, manifest {run / 'manifest.csv'}, camera {run / 'camera.json'}")
    finish_run(run, {"photos": len(rows), "manifest": str(run / "manifest.csv"), "camera": str(run / "camera.json")})
    return 0


__all__ = ["register", "EvalConfig", "VideoConfig", "CalibrateCameraConfig", "parse_board"]
