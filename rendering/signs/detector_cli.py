"""``physadv signs-detector``: render the street scenes, train (or reuse) the sign-world detector, and grade it by
AP50 per class on held-out scenes, with a picture of its detections on a few test scenes.

    physadv signs-detector                                  # configs/signs/detector.yaml
    physadv signs-detector --retrain --set detector.epochs=6
    physadv signs-detector --set scenes.test_scenes=100      # a quicker grade (the detector is reused)
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from physadv.core.cli import add_config_args, finish_run, resolve_config, start_run
from physadv.core.detection_train import DetectorTrainConfig
from physadv.core.resources import packaged
from physadv.rendering.signs.scenes import ScenesConfig

DEFAULT_CONFIG = "signs/detector.yaml"  # a shipped config (core.resources.packaged)


@dataclass
class SignDetectorJob:
    """``physadv signs-detector``: the scenes, the detector's recipe, and the pictures."""

    scenes: ScenesConfig = field(default_factory=ScenesConfig)
    detector: DetectorTrainConfig = field(default_factory=DetectorTrainConfig)
    pictures: int = 8
    score_thresh: float = 0.5

    def validate(self) -> None:
        if self.pictures < 0:
            raise ValueError(f"pictures must be >= 0, got {self.pictures}")
        if not 0 <= self.score_thresh <= 1:
            raise ValueError(f"score_thresh must be in [0, 1], got {self.score_thresh}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("signs-detector", help="street scenes and the sign-world detector: train or reuse it, AP50 per class")
    add_config_args(p, DEFAULT_CONFIG)
    p.add_argument("--retrain", action="store_true", help="ignore the cached detector and train again")
    p.set_defaults(func=_run)


def scenes_key(cfg: ScenesConfig) -> str:
    """The name of the training data in the detector's cache key."""
    from physadv.rendering.signs.scenes import scenes_hash

    return f"scenes-{scenes_hash(cfg, 'train')}"


def sign_detector(job: SignDetectorJob | None = None, retrain: bool = False, progress: bool = True):
    """The sign-world detector of ``job`` (default: the shipped recipe): from the cache, or trained on its scenes."""
    from physadv.core.config import load_config
    from physadv.core.detection_train import cached_detector_path, get_sign_detector
    from physadv.rendering.signs.scenes import load_scenes

    job = job or load_config(SignDetectorJob, packaged(DEFAULT_CONFIG))
    key = scenes_key(job.scenes)
    cached = cached_detector_path(job.detector, key).is_file() and not retrain
    train = None if cached else load_scenes("train", job.scenes, progress=progress)
    return get_sign_detector(job.detector, train, key, retrain=retrain, progress=progress)


def _run(args: argparse.Namespace) -> int:
    from physadv.core.detection_train import cached_detector_metrics, cached_detector_path, evaluate_detector
    from physadv.rendering.signs.scenes import load_scenes

    cfg = resolve_config(SignDetectorJob, args)
    run = start_run("signs-detector", cfg, args)
    key = scenes_key(cfg.scenes)
    reused = cached_detector_path(cfg.detector, key).is_file() and not args.retrain
    det = sign_detector(cfg, retrain=args.retrain)
    test = load_scenes("test", cfg.scenes)
    result = evaluate_detector(det, test)
    picture = draw_detections(run / "detections.png", test, result["detections"], cfg.pictures, cfg.score_thresh, det.classes)
    print(f"AP50 {result['ap50']:.4f} on {len(test)} held-out scenes ({sum(result['ground_truth'].values())} signs)"
          + (" (cached detector)" if reused else ""))
    for name, ap in result["per_class"].items():
        print(f"  {name:22s} {ap:.4f}  ({result['ground_truth'][name]} signs)")
    metrics = {"ap50": result["ap50"], "per_class_ap50": result["per_class"], "ground_truth": result["ground_truth"],
               "test_scenes": len(test), "reused_cache": reused, "training": cached_detector_metrics(cfg.detector, key),
               "weights": str(cached_detector_path(cfg.detector, key)), "picture": str(picture) if picture else None}
    finish_run(run, metrics)
    return 0


def draw_detections(path, data, detections: list[dict], n: int, score_thresh: float, classes: list[str]):
    """The first ``n`` scenes with ground truth (green) and detections above ``score_thresh`` (label and score)."""
    if n == 0:
        return None
    import torch
    from torchvision.utils import draw_bounding_boxes, make_grid

    from physadv.core.io import write_image

    tiles = []
    for i in range(min(n, len(data))):
        image, target = data[i]
        pic = draw_bounding_boxes((image * 255).to(torch.uint8), target["boxes"], colors="lime", width=1)
        d = detections[i]
        keep = d["scores"] >= score_thresh
        if not bool(keep.any()):
            tiles.append(pic.float() / 255)
            continue
        names = [f"{classes[int(lab)]} {float(s):.2f}" for lab, s in zip(d["labels"][keep], d["scores"][keep])]
        pic = draw_bounding_boxes(pic, d["boxes"][keep], names, colors="yellow", width=2)
        tiles.append(pic.float() / 255)
    return write_image(path, make_grid(torch.stack(tiles), nrow=2, padding=4, pad_value=1.0))


__all__ = ["SignDetectorJob", "draw_detections", "register", "scenes_key", "sign_detector"]
