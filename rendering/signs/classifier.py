"""The sign classifier: a GTSRB-CNN trained on the synthetic sign world, cached by ``core.train``,
and its accuracy on a grid of distances x angles (RP2's evaluation table).

    model = get_sign_classifier()                  # trains once (a few minutes on a CPU), then cached
    grid = evaluate_grid(model, SignsConfig())     # accuracy per (distance, angle) cell
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from physadv.core.config import config_hash, dump_config, from_dict, to_dict
from physadv.core.data import DataConfig, ImageSet
from physadv.core.io import atomic_write_text, cache_dir, load_checkpoint, save_checkpoint
from physadv.core.models import Classifier
from physadv.core.train import TrainConfig, evaluate, get_classifier, register_augmentation
from physadv.rendering.camera import feet
from physadv.rendering.signs.textures import sign_classes
from physadv.rendering.signs.world import WorldConfig, generate_signs, load_signs, one_thread, sample_poses, world_hash


@dataclass
class SignTrainConfig(TrainConfig):
    """``core.train.TrainConfig`` with the sign classifier's recipe as defaults (a half-width GTSRB-CNN)."""

    model: str = "gtsrb-cnn"
    data: DataConfig = field(default_factory=lambda: DataConfig(name="signs"))
    model_args: dict = field(default_factory=lambda: {"width": 0.5})
    epochs: int = 12
    lr: float = 2e-3
    augment_shift: int = 1


@dataclass
class GridConfig:
    """RP2's evaluation table: distances in feet (as the paper gives them) by angles in degrees."""

    distances_ft: list[float] = field(default_factory=lambda: [5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0])
    angles_deg: list[float] = field(default_factory=lambda: [0.0, 15.0, 30.0, 45.0, 60.0])
    per_class: int = 8  # renders of each sign in each cell
    seed: int = 1000  # never used for training data (those use 2 * world.seed and 2 * world.seed + 1)

    def validate(self) -> None:
        if not self.distances_ft or not self.angles_deg:
            raise ValueError("grid needs at least one distance and one angle")
        if any(d <= 0 for d in self.distances_ft):
            raise ValueError(f"grid.distances_ft must be positive, got {self.distances_ft}")
        if any(not 0 <= a <= 85 for a in self.angles_deg):
            raise ValueError(f"grid.angles_deg must be between 0 and 85, got {self.angles_deg}")
        if self.per_class < 1:
            raise ValueError(f"grid.per_class must be at least 1, got {self.per_class}")


@dataclass
class SignsConfig:
    """``physadv signs train``: the world, the classifier recipe and the evaluation grid."""

    world: WorldConfig = field(default_factory=WorldConfig)
    classifier: SignTrainConfig = field(default_factory=SignTrainConfig)
    grid: GridConfig = field(default_factory=GridConfig)

    def validate(self) -> None:
        if self.classifier.data.name != "signs":
            raise ValueError(f"classifier.data.name must be 'signs', got '{self.classifier.data.name}'")


def eot_training_augment(args: dict):
    """``TrainConfig.augment: eot``: ``rendering.augment.EOTAugment`` (the Kornia camera-effects stack) on each training
    batch, with ``augment_args`` as its ``AugmentConfig`` (empty: the defaults). No gradient is needed through it."""
    from physadv.rendering.augment import AugmentConfig, EOTAugment

    aug = EOTAugment(from_dict(AugmentConfig, args, "augment_args"))

    def apply(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return aug(images)

    return apply


register_augmentation("eot", eot_training_augment)


def world_file(world: WorldConfig) -> str:
    """A YAML file of ``world`` in the cache whose name carries the world's hash (and the generator's
    version), so a classifier trained on another world, or on another generator, gets another cache entry."""
    path = cache_dir("signs") / f"world-{world_hash(world)}.yaml"
    if not path.is_file():
        atomic_write_text(path, dump_config(world))
    return str(path)


def train_config(cfg: SignsConfig) -> TrainConfig:
    """The ``core.train`` config of the sign classifier (``data.root`` is the world's YAML file)."""
    plain = from_dict(TrainConfig, to_dict(cfg.classifier), "sign classifier")
    return replace(plain, data=replace(plain.data, name="signs", root=world_file(cfg.world)))


def get_sign_classifier(cfg: SignsConfig | None = None, retrain: bool = False, progress: bool = True) -> Classifier:
    """The GTSRB-CNN sign classifier for ``cfg`` (default: the built-in world), trained when not cached."""
    cfg = cfg or SignsConfig()
    tc = train_config(cfg)
    from physadv.core.train import cached_classifier_path

    if cached_classifier_path(tc).is_file() and not retrain:
        return get_classifier(tc, progress=progress)
    train = load_signs("train", cfg.world, progress=progress)
    test = load_signs("test", cfg.world, progress=progress)
    with one_thread():
        return get_classifier(tc, retrain=retrain, progress=progress, train_set=train, test_set=test)


# --------------------------------------------------------------------------- distance x angle grid
def world_at(world: WorldConfig, size: int) -> WorldConfig:
    """The world rendering ``size`` px crops (as ``load_dataset("signs", size=...)`` does: a working grid of at least 2x)."""
    if size == world.crop_px:
        return world
    return replace(world, crop_px=int(size), work_px=max(world.work_px, 2 * int(size)))


def grid_set(cfg: SignsConfig, distance_m: float, angle_deg: float, progress: bool = False) -> ImageSet:
    """Renders of every sign at one grid cell: distance and angle (azimuth, either side) fixed; elevation,
    roll, aim, light, camera effects and background random as in training. Seeded per cell, never a training seed."""
    cfg.grid.validate()
    k = len(sign_classes())
    n = cfg.grid.per_class * k
    cell_seed = cfg.grid.seed * 1_000_003 + int(round(distance_m * 1000)) * 101 + int(round(angle_deg * 10))
    g = torch.Generator().manual_seed(cell_seed)
    ranges = replace(cfg.world.pose, distance_m=(distance_m, distance_m), angle_deg=(angle_deg, angle_deg))
    poses = sample_poses(n, ranges, g)
    labels = torch.arange(n) % k
    return generate_signs(cfg.world, cfg.grid.per_class, cell_seed + 1, poses=poses, labels=labels, progress=progress)


@dataclass
class GridResult:
    distances_ft: list[float]
    angles_deg: list[float]
    accuracy: np.ndarray  # len(distances) x len(angles)
    n: np.ndarray
    footprint_px: np.ndarray  # mean width of the sign in camera pixels per cell

    def rows(self) -> list[dict]:
        return [{"distance_ft": d, "distance_m": round(feet(d), 3), "angle_deg": a,
                 "accuracy": round(float(self.accuracy[i, j]), 4), "n": int(self.n[i, j]),
                 "footprint_px": round(float(self.footprint_px[i, j]), 1)}
                for i, d in enumerate(self.distances_ft) for j, a in enumerate(self.angles_deg)]

    @property
    def worst(self) -> float:
        return float(self.accuracy.min())


def grid_sets(cfg: SignsConfig, size: int | None = None, progress: bool = True) -> list[ImageSet]:
    """The renders of every grid cell (distance-major) at ``size`` px (default the world's crop), rendered once and
    cached as uint8 safetensors like the training sets (several classifiers are graded on the same renders)."""
    from physadv.core.progress import progress as bar

    cfg = replace(cfg, world=world_at(cfg.world, size or cfg.world.crop_px))
    cfg.grid.validate()
    path = cache_dir("signs") / f"grid-{config_hash({'world': world_hash(cfg.world), 'grid': to_dict(cfg.grid)})}.safetensors"
    cells = [(d, a) for d in cfg.grid.distances_ft for a in cfg.grid.angles_deg]
    if path.is_file():
        t, _ = load_checkpoint(path)
        return [ImageSet(t["images"][c].float() / 255, t["labels"][c].long(), sign_classes(), f"signs-grid-{d:g}ft-{a:g}deg",
                         {"footprint_px": t["footprint_px"][c]}) for c, (d, a) in enumerate(cells)]
    sets = [grid_set(cfg, feet(d), a) for d, a in bar(cells, desc="render the distance x angle grid", disable=not progress)]
    q = torch.stack([(s.images * 255).round().to(torch.uint8) for s in sets])
    save_checkpoint(path, {"images": q, "labels": torch.stack([s.labels for s in sets]),
                           "footprint_px": torch.stack([s.info["footprint_px"].float() for s in sets])},
                    {"grid": to_dict(cfg.grid), "world": to_dict(cfg.world)})
    return [ImageSet(q[c].float() / 255, s.labels, s.classes, s.name, {"footprint_px": s.info["footprint_px"].float()})
            for c, s in enumerate(sets)]


def evaluate_grid(model: Classifier, cfg: SignsConfig, progress: bool = True) -> GridResult:
    """Accuracy of ``model`` in every distance x angle cell, on renders at the model's input size."""
    D, A = cfg.grid.distances_ft, cfg.grid.angles_deg
    acc, n, foot = (np.zeros((len(D), len(A))) for _ in range(3))
    sets = iter(grid_sets(cfg, model.input_size[-1], progress=progress))
    for i in range(len(D)):
        for j in range(len(A)):
            data = next(sets)
            acc[i, j] = evaluate(model, data, progress=False)["accuracy"]
            n[i, j] = len(data)
            foot[i, j] = float(data.info["footprint_px"].mean())
    return GridResult(list(D), list(A), acc, n, foot)


def write_grid(result: GridResult, folder: Path, name: str = "") -> dict[str, Path]:
    """``grid.csv``, ``grid.md`` and ``grid.png`` in ``folder``: the accuracy per distance x angle cell in the
    project's one distance x angle report (``core.gridreport``)."""
    from physadv.core import gridreport
    from physadv.core.io import atomic_path

    folder = Path(folder)
    cells = [{"victim": name, "set": "clean", "distance": r["distance_ft"], "unit": "ft", "angle": r["angle_deg"], "light": "",
              "n": r["n"], "accuracy": r["accuracy"], "distance_m": r["distance_m"], "footprint_px": r["footprint_px"]}
             for r in result.rows()]
    csv_path = gridreport.write_csv(folder / "grid.csv", cells)
    md_path = atomic_write_text(folder / "grid.md", gridreport.rate_markdown(cells, "accuracy"))
    png = gridreport.heatmap_png(cells, "clean", "accuracy", f"{name + ': ' if name else ''}sign classifier accuracy")
    with atomic_path(folder / "grid.png") as tmp:
        tmp.write_bytes(png)
    return {"csv": csv_path, "md": md_path, "png": folder / "grid.png"}