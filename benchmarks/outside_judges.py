"""A design judged from outside the project: classifiers it did not train, in photos it did not simulate.

    .venv/bin/python benchmarks/outside_judges.py --out runs/bench/outside_judges           # the demo's designs
    .venv/bin/python benchmarks/outside_judges.py --design RUN/design/texture.safetensors   # any design

The guide's warning: a design will be judged by models and photos the project never sees. This script stands in for
that judge with nothing of the project's own but its sign-world training images and the design's texture:

- **Judges** of timm families that are not in the zoo (RegNetX-200MF, Radosavovic et al. 2020; GhostNet x0.5, Han
  et al. 2020; LeViT-128S, Graham et al. 2021, and EfficientViT-M0, Liu et al. 2023: convolution-attention hybrids),
  fed the 32 px crop upsampled to 64 px and trained here by a plain PyTorch loop the zoo does not use: Kornia
  augmentation drawn per image (affine, perspective, colour jitter, blur), AdamW with a one-cycle schedule, label
  smoothing 0.1. Trained once and cached in ``$PHYSADV_CACHE/outside`` (safetensors), two at a time on two cores.
  ``--archs`` takes any timm or torchvision name.
- **Photos** rendered by OpenCV alone: the texture's plane posed by a pinhole camera (``cv2.projectPoints``; 1280 x
  960 px, 60 degree field of view; the angle measured from the line of sight, either side, with a little pitch and
  roll), warped with ``cv2.warpPerspective`` at twice the size and area-averaged down in linear light (IEC 61966-2-1
  sRGB decoding), over procedural street-like backgrounds; light as an illuminant gain (normal, dim 0.3, bright
  1.8), a colour cast and a gradient; then defocus, sensor noise and JPEG. Each adversarial photo has a clean twin
  with the same pose, background, light and noise.
- **Crops** both ways a pipeline may hand a classifier the sign, from its box grown by a 4-12% margin (a detector's
  box is off by a few percent): GTSRB-style, the box stretched to the square (what the zoo and the design see), and
  the square around the box, the sign keeping its aspect (an oblique sign: narrow).

Without ``--design`` the designs are the demo's (its design stage, models and designs cached), for each of
``--demo-radii`` (``robust_eps_255``: 0 designs on the victims, 1 on their robust copies) and ``--demo-seeds``.
Prints JSON: per design and judge its held-out accuracy on the sign test set and, per crop, its clean accuracy on the
clean photos and the targeted and untargeted success on the adversarial ones (by distance and angle too);
``result.json`` and per design ``photos.png`` (sample photos over the crops the judges see) in ``--out``.
``--zoo NAME,...`` adds zoo members as judges of the same photos.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

ARCHS = ["regnetx_002", "ghostnet_050", "levit_128s", "efficientvit_m0"]
LIGHTS = {"normal": 1.0, "dim": 0.3, "bright": 1.8}  # illuminant gain in linear light
FT = 0.3048


# --------------------------------------------------------------------------- judges trained outside the project
def build(arch: str, classes: int) -> torch.nn.Module:
    """A timm (or torchvision) ImageNet-style architecture, fed the 32 px crop upsampled to 64 px (as such nets are
    commonly trained on CIFAR-sized images: their stride-32 stems leave 2 x 2 features instead of 1 x 1)."""
    import timm
    import torchvision

    if arch in torchvision.models.list_models(torchvision.models):
        net = torchvision.models.get_model(arch, num_classes=classes)
    else:
        net = timm.create_model(arch, num_classes=classes, pretrained=False,
                                **({"img_size": 64} if arch.startswith(("levit", "efficientvit_m")) else {}))
    return torch.nn.Sequential(torch.nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), net)


def known_arch(arch: str) -> bool:
    import timm
    import torchvision

    return arch in timm.list_models() or arch in torchvision.models.list_models(torchvision.models)


def train_judge(arch: str, seed: int, epochs: int, images: torch.Tensor, labels: torch.Tensor) -> torch.nn.Module:
    """A plain loop (none of ``physadv.core.train``): Kornia augmentation drawn per image (affine, perspective, colour
    jitter, blur), AdamW with a one-cycle schedule, label smoothing 0.1."""
    import kornia.augmentation as K

    torch.manual_seed(seed)
    net = build(arch, int(labels.max()) + 1)
    aug = torch.nn.Sequential(K.RandomAffine(12, translate=(0.08, 0.08), scale=(0.85, 1.1), p=1.0),
                              K.RandomPerspective(0.25, p=0.5), K.ColorJitter(0.5, 0.4, 0.4, 0.03, p=1.0),
                              K.RandomGaussianBlur((3, 3), (0.1, 1.2), p=0.3))
    batch = 64
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=5e-4)
    steps = epochs * math.ceil(len(images) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=g)
        for i in range(0, len(images), batch):
            idx = order[i:i + batch]
            loss = torch.nn.functional.cross_entropy(net((aug(images[idx]) - 0.5) / 0.25), labels[idx], label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


@dataclass
class Judge:
    name: str
    net: torch.nn.Module
    size: int  # input side in pixels
    normalise: bool  # an outside judge takes (x - 0.5) / 0.25; a physadv classifier normalises itself
    accuracy: float | None  # on the sign test set

    @torch.no_grad()
    def predict(self, crops: np.ndarray) -> np.ndarray:
        """``crops``: N x S x S x 3 uint8 sRGB, area-resized to this judge's input."""
        x = np.stack([cv2.resize(c, (self.size, self.size), interpolation=cv2.INTER_AREA) for c in crops])
        x = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255
        return self.net((x - 0.5) / 0.25 if self.normalise else x).argmax(1).numpy()


@torch.no_grad()
def test_accuracy(net: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 500) -> float:
    """The share of ``images`` (N x 3 x 32 x 32 in [0, 1]) an outside judge classifies right."""
    right = sum(int((net((images[i:i + batch] - 0.5) / 0.25).argmax(1) == labels[i:i + batch]).sum())
                for i in range(0, len(images), batch))
    return right / len(images)


def _train_cached(job: tuple) -> tuple[str, float]:
    arch, seed, epochs, path = job
    from safetensors.torch import save_file

    from physadv.core.data import DataConfig

    torch.set_num_threads(1)
    data = DataConfig(name="signs")
    tr, te = data.load("train"), data.load("test")
    net = train_judge(arch, seed, epochs, tr.images, tr.labels)
    tmp = path.with_suffix(".tmp")
    save_file(net.state_dict(), str(tmp), {"arch": arch, "seed": str(seed), "epochs": str(epochs)})
    tmp.replace(path)  # atomic: a cached judge is whole
    return arch, test_accuracy(net, te.images, te.labels)


def outside_judges(archs: list[str], seed: int, epochs: int, workers: int = 2) -> list[Judge]:
    """The judges, trained once (``workers`` at a time, forked) and then read from the cache."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from safetensors.torch import load_file

    import physadv.rendering.signs  # noqa: F401  (registers the sign world's data set)
    from physadv.core.data import DataConfig
    from physadv.core.errors import PhysadvError
    from physadv.core.io import cache_dir

    data = DataConfig(name="signs")
    classes = data.load("train").classes
    jobs = [(a, seed, epochs, cache_dir("outside") / f"{a}-seed{seed}-e{epochs}.safetensors") for a in archs]
    todo = [j for j in jobs if not j[3].is_file()]
    if todo:
        data.load("test")  # rendered once before the workers fork
        print(f"outside judges: training {', '.join(j[0] for j in todo)} ({epochs} epochs, {workers} at a time)",
              file=sys.stderr)
        with ProcessPoolExecutor(min(workers, len(todo)), mp_context=multiprocessing.get_context("fork")) as pool:
            for arch, acc in pool.map(_train_cached, todo):
                print(f"  {arch}: {acc:.1%} on the sign test set", file=sys.stderr)
    test = data.load("test")
    judges = []
    for arch, _, _, path in jobs:
        net = build(arch, len(classes))
        try:
            net.load_state_dict(load_file(str(path)))
        except (RuntimeError, OSError, ValueError) as err:  # another architecture's or a damaged file
            raise PhysadvError(f"{path}: not a {arch} judge ({str(err).splitlines()[0]}); delete it to train it again") from None
        judges.append(Judge(arch, net.eval(), 32, True, test_accuracy(net.eval(), test.images, test.labels)))
    return judges


def zoo_judges(names: list[str]) -> list[Judge]:
    from physadv.core.victims import load_model
    from physadv.core.zoo import zoo_training_metrics

    out = []
    for n in names:
        clf = load_model(n)
        out.append(Judge(n, clf, clf.input_size[-1], False, (zoo_training_metrics(n) or {}).get("accuracy")))
    return out


# --------------------------------------------------------------------------- photos rendered by OpenCV alone
def to_linear(s: np.ndarray) -> np.ndarray:
    return np.where(s <= 0.04045, s / 12.92, ((s + 0.055) / 1.055) ** 2.4)


def to_srgb(v: np.ndarray) -> np.ndarray:
    v = np.clip(v, 0, 1)
    return np.where(v <= 0.0031308, 12.92 * v, 1.055 * v ** (1 / 2.4) - 0.055)


def background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A street-like scene in sRGB: a sky gradient over a low-frequency colour field, with blocks and poles."""
    field = cv2.resize(rng.uniform(0.1, 0.8, (4, 6, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    sky = np.linspace(0.9, 0.5, h, dtype=np.float32)[:, None, None] * rng.uniform(0.6, 1.0, 3).astype(np.float32)
    horizon = int(h * rng.uniform(0.25, 0.6))
    img = np.concatenate([sky[:horizon] * np.ones((1, w, 1), np.float32), field[horizon:]], 0)
    for _ in range(rng.integers(6, 20)):
        x0, y0 = int(rng.uniform(0, w)), int(rng.uniform(0, h))
        x1, y1 = x0 + int(rng.uniform(0.02, 0.3) * w), y0 + int(rng.uniform(0.05, 0.6) * h)
        cv2.rectangle(img, (x0, y0), (x1, y1), tuple(float(c) for c in rng.uniform(0.05, 0.85, 3)), -1)
    return np.clip(img + rng.normal(0, 0.02, img.shape).astype(np.float32), 0, 1)


def camera(w: int = 1280, h: int = 960, hfov: float = 60.0) -> np.ndarray:
    f = (w / 2) / math.tan(math.radians(hfov / 2))
    return np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]], np.float64)


def project(width_m: float, aspect: float, distance_m: float, angle: float, rng: np.random.Generator, K: np.ndarray,
            size: tuple[int, int]) -> np.ndarray:
    """The texture's four corners (top-left, clockwise) in the photo: the plane's centre ``distance_m`` from the
    camera, somewhere in the frame, and its normal turned by ``angle`` from the line of sight about the plane's
    vertical axis (either way), with a little pitch and roll."""
    hw, hh = width_m / 2, width_m * aspect / 2
    obj = np.array([[-hw, -hh, 0], [hw, -hh, 0], [hw, hh, 0], [-hw, hh, 0]], np.float64)
    reach = np.array(size, np.float64) / 2 / K[0, 0] * distance_m  # half the field at that depth, in metres
    t = np.array([*(rng.uniform(-0.45, 0.45, 2) * np.maximum(reach - width_m, 0)), distance_m])
    t *= distance_m / np.linalg.norm(t)
    sight = t / distance_m  # facing the camera: the plane's normal along the line of sight, turned the least
    axis = np.cross([0.0, 0.0, 1.0], sight)
    facing = cv2.Rodrigues(axis / max(np.linalg.norm(axis), 1e-12) * math.acos(min(1.0, sight[2])))[0]
    pitch, yaw, roll = np.radians([rng.uniform(-8, 8), angle * rng.choice([-1, 1]), rng.uniform(-4, 4)])
    R = facing @ cv2.Rodrigues(np.array([pitch, 0, 0]))[0] @ cv2.Rodrigues(np.array([0, yaw, 0]))[0] \
        @ cv2.Rodrigues(np.array([0, 0, roll]))[0]
    pts, _ = cv2.projectPoints(obj, cv2.Rodrigues(R)[0], t, K, None)
    return pts.reshape(4, 2)


def photograph(faces: list[np.ndarray], width_m: float, distance_ft: float, angle: float, light: str,
               rng: np.random.Generator, size: tuple[int, int] = (1280, 960), ss: int = 2) -> tuple[list[np.ndarray], np.ndarray]:
    """One photo per face (RGBA float sRGB; the same pose, background, light, blur, noise and JPEG quality for each)
    and the face's corners in it. Only the sign's surroundings are rendered (its box and as much again on every
    side), at ``ss`` times the resolution and area-averaged down; the corners are in that window's pixels."""
    w, h = size
    K = camera(w, h)
    th, tw = faces[0].shape[:2]
    corners = project(width_m, th / tw, distance_ft * FT, angle, rng, K, size)
    bg = background(rng, w, h)
    (x0, y0), (x1, y1) = corners.min(0), corners.max(0)
    m = max(x1 - x0, y1 - y0)
    left, top = int(max(0, x0 - m)), int(max(0, y0 - m))
    right, bottom = int(min(w, x1 + m + 1)), int(min(h, y1 + m + 1))
    ww, wh = right - left, bottom - top
    corners = corners - [left, top]
    bg = to_linear(cv2.resize(bg[top:bottom, left:right], (ww * ss, wh * ss), interpolation=cv2.INTER_LINEAR))
    H = cv2.getPerspectiveTransform(np.float32([[0, 0], [tw, 0], [tw, th], [0, th]]), np.float32(corners * ss))
    tint = rng.normal(1, 0.06, 3).astype(np.float32)
    a = rng.uniform(-1, 1, 2)
    yy, xx = np.mgrid[top * ss:bottom * ss, left * ss:right * ss].astype(np.float32)
    shade = 1 + 0.15 * (a[0] * (xx / (w * ss) - 0.5) + a[1] * (yy / (h * ss) - 0.5))
    gain = LIGHTS[light] * rng.uniform(0.85, 1.15) * tint[None, None] * shade[..., None]
    sigma, noise_seed, quality = rng.uniform(0.0, 1.0), int(rng.integers(2 ** 31)), int(rng.integers(70, 96))
    photos = []
    for face in faces:
        lin = np.dstack([to_linear(face[..., :3]), face[..., 3:]]).astype(np.float32)
        warped = cv2.warpPerspective(lin, H, (ww * ss, wh * ss), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        alpha = warped[..., 3:]
        img = cv2.resize(((alpha * warped[..., :3] + (1 - alpha) * bg) * gain).astype(np.float32), (ww, wh),
                         interpolation=cv2.INTER_AREA)  # the sensor integrates light: average in linear light
        img = to_srgb(img)
        if sigma > 0.05:
            img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), sigma)
        img = img + np.random.default_rng(noise_seed).normal(0, 0.01 / math.sqrt(LIGHTS[light]), img.shape)
        img = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
        ok, jpg = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        photos.append(cv2.imdecode(jpg, cv2.IMREAD_COLOR)[..., ::-1].copy())
    return photos, corners


CROPS = {"box": "GTSRB-style: the sign's box and margin stretched to the square",
         "square": "the square around the box: the sign keeps its aspect (narrow when oblique)"}


def crop(photo: np.ndarray, corners: np.ndarray, margin: float, kind: str = "square", size: int = 64) -> np.ndarray:
    """The sign's box grown by ``margin`` of its size on every side, ``kind`` "box" (GTSRB: resized to the square,
    aspect not kept) or "square" (the square around it, aspect kept); edge pixels repeated outside the photo;
    area-resized to ``size``."""
    (x0, y0), (x1, y1) = corners.min(0), corners.max(0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    hw, hh = (x1 - x0) * (0.5 + margin), (y1 - y0) * (0.5 + margin)
    if kind == "square":
        hw = hh = max(hw, hh)
    left, top = int(round(cx - hw)), int(round(cy - hh))
    w, h = max(int(round(2 * hw)), 1), max(int(round(2 * hh)), 1)
    pad = max(0, -left, -top, left + w - photo.shape[1], top + h - photo.shape[0])
    padded = cv2.copyMakeBorder(photo, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else photo
    region = padded[top + pad:top + pad + h, left + pad:left + pad + w]
    return cv2.resize(region, (size, size), interpolation=cv2.INTER_AREA if max(w, h) > size else cv2.INTER_LINEAR)


# --------------------------------------------------------------------------- the judging
def read_design(path: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """The stickered face and the clean face (RGBA, H x W x 4 float sRGB) and the object's record, from a design's
    ``texture.safetensors`` (it holds ``texture``, ``alpha`` and ``clean``)."""
    from physadv.core.errors import PhysadvError
    from physadv.core.io import load_checkpoint

    if not path.is_file():
        raise PhysadvError(f"--design {path}: no such file")
    tensors, meta = load_checkpoint(path)
    missing = [k for k in ("texture", "alpha", "clean") if k not in tensors]
    if missing:
        raise PhysadvError(f"--design {path}: no {', '.join(missing)} tensor (a design's texture.safetensors has them)")
    alpha = tensors["alpha"]
    faces = [torch.cat([tensors[k], alpha], 0).permute(1, 2, 0).clamp(0, 1).numpy() for k in ("texture", "clean")]
    return faces[0], faces[1], meta.get("object") or {}


def judge(faces: tuple[np.ndarray, np.ndarray], width: float, judges: list[Judge], distances: list[float],
          angles: list[float], lights: list[str], repeats: int, source: int, target: int, seed: int, out: Path) -> dict:
    """Photograph the adversarial and the clean face at every distance x angle x light (``repeats`` times each), crop
    each photo both ways (``CROPS``) and let every judge classify the crops."""
    adv, clean = faces
    rng = np.random.default_rng(seed)
    crops = {(k, s): [] for k in CROPS for s in ("adversarial", "clean")}
    cells, samples = [], []
    for d in distances:
        for a in angles:
            for light in lights:
                for r in range(repeats):
                    photos, corners = photograph([adv, clean], width, d, a, light, rng)
                    margin = rng.uniform(0.04, 0.12)  # a detector's box is off by a few percent
                    for kind in CROPS:
                        for name, photo in zip(("adversarial", "clean"), photos):
                            crops[kind, name].append(crop(photo, corners, margin, kind))
                    cells.append((d, a, light))
                    if light == lights[0] and r == 0 and a in (angles[0], angles[-1]) and len(samples) < 8:
                        samples.append((photos[0], corners, [crops[k, "adversarial"][-1] for k in CROPS]))
    distance, angle = np.array([c[0] for c in cells]), np.array([c[1] for c in cells])
    rows = []
    for j in judges:
        row = {"judge": j.name, "test_accuracy": j.accuracy}
        for kind in CROPS:
            pa, pc = j.predict(np.stack(crops[kind, "adversarial"])), j.predict(np.stack(crops[kind, "clean"]))
            row[kind] = {"clean_accuracy": float(np.mean(pc == source)), "targeted": float(np.mean(pa == target)),
                         "untargeted": float(np.mean(pa != source)),
                         "targeted_by_distance_ft": {f"{d:g}": float(np.mean(pa[distance == d] == target)) for d in distances},
                         "targeted_by_angle": {f"{a:g}": float(np.mean(pa[angle == a] == target)) for a in angles}}
        rows.append(row)
    _contact_sheet(samples, out / "photos.png")
    return {"photos": len(cells), "distances_ft": distances, "angles": angles, "lights": lights, "crops": CROPS,
            "judges": rows}


def _contact_sheet(samples: list, path: Path, tile: int = 240) -> None:
    """Sample photos (the sign's surroundings, its box drawn) over the crops the judges see, one row per kind."""
    def fit(img: np.ndarray, side: int) -> np.ndarray:
        k = side / max(img.shape[:2])
        img = cv2.resize(img, (max(1, round(img.shape[1] * k)), max(1, round(img.shape[0] * k))),
                         interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_NEAREST)
        dy, dx = tile - img.shape[0], tile - img.shape[1]
        return np.pad(img, ((dy // 2, dy - dy // 2), (dx // 2, dx - dx // 2), (0, 0)), constant_values=255)

    rows = [[] for _ in range(1 + len(samples[0][2]))] if samples else []
    for photo, corners, cs in samples:
        p = photo.copy()
        cv2.polylines(p, [np.int32(corners)], True, (255, 255, 0), max(1, photo.shape[1] // 150))
        rows[0].append(fit(p, tile))
        for k, c in enumerate(cs):
            rows[1 + k].append(fit(c, tile * 2 // 3))
    if samples:
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.concatenate([np.concatenate(r, 1) for r in rows], 0)[..., ::-1])


def _floats(text: str, name: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x]
    except ValueError:
        raise ValueError(f"--{name} takes numbers, comma-separated, got '{text}'") from None


def demo_designs(out: Path, radii: list[float], seeds: list[int]) -> list[tuple[str, Path]]:
    """The demo's design stage (``physadv demo``'s plan, its models and RP2 design, both cached once made) for each
    ``robust_eps_255`` and design seed: each design's texture file, labelled."""
    from physadv.physical.demo import demo_models, demo_plan, design_rp2

    designs = []
    for seed in seeds:
        for eps in radii:
            plan = demo_plan(False, [f"robust_eps_255={eps:g}", f"seed={seed}"])
            folder = out / f"demo_eps{eps:g}_seed{seed}"
            design_rp2(demo_models(plan, "cpu"), plan, folder, "cpu")
            on = f"their copies at {eps:g}/255" if eps else "the victims"
            designs.append((f"demo on {on}, seed {seed}", folder / "texture.safetensors"))
    return designs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--design", action="append", default=[],
                   help="a design's texture.safetensors (e.g. a run's design/); repeat for several. Default: the demo's "
                        "own, run with each of --demo-radii")
    p.add_argument("--demo-radii", default="1,0", help="without --design: the demo's robust_eps_255 values")
    p.add_argument("--demo-seeds", default="0,1", help="without --design: the demo's design seeds")
    p.add_argument("--out", default="runs/bench/outside_judges")
    p.add_argument("--archs", default=",".join(ARCHS), help="judges' architectures: timm or torchvision names")
    p.add_argument("--zoo", default="", help="zoo members that judge the same photos, comma-separated")
    p.add_argument("--seed", type=int, default=0, help="the judges' training seed, and the photos' seed")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--distances", default="5,10,15,20,25,30,40", help="feet")
    p.add_argument("--angles", default="0,15,30,45,60", help="degrees")
    p.add_argument("--lights", default="normal,dim,bright")
    p.add_argument("--repeats", type=int, default=2, help="photos per cell (other pose, background, noise)")
    p.add_argument("--source", default="stop")
    p.add_argument("--target", default="speed_limit_80")
    a = p.parse_args(argv)
    from physadv.core.errors import PhysadvError

    archs, lights = [x for x in a.archs.split(",") if x], [x for x in a.lights.split(",") if x]
    try:
        distances, angles = _floats(a.distances, "distances"), _floats(a.angles, "angles")
        radii = _floats(a.demo_radii, "demo-radii")
        if not all(x.strip().isdigit() for x in a.demo_seeds.split(",") if x):
            raise ValueError(f"--demo-seeds takes whole numbers, comma-separated, got '{a.demo_seeds}'")
        seeds = [int(x) for x in a.demo_seeds.split(",") if x]
        bad, bad_light = [x for x in archs if not known_arch(x)], [x for x in lights if x not in LIGHTS]
        if bad or bad_light:
            raise ValueError(f"--archs: {', '.join(bad)} is neither a timm nor a torchvision architecture" if bad else
                             f"--lights: unknown {', '.join(bad_light)} (known: {', '.join(LIGHTS)})")
        if a.repeats < 1 or a.epochs < 1 or not (distances and angles and lights and (a.design or (radii and seeds))):
            raise ValueError("--repeats and --epochs must be at least 1; --distances, --angles, --lights and "
                             "--demo-radii and --demo-seeds not empty")
    except ValueError as err:
        print(f"outside_judges: {err}", file=sys.stderr)
        return 2
    out = Path(a.out)
    try:
        given = [(Path(d).parent.parent.name or d, Path(d), read_design(Path(d))) for d in a.design]  # before training
        import physadv.rendering.signs  # noqa: F401  (registers the sign world's data set)
        from physadv.core.data import DataConfig

        classes = DataConfig(name="signs").load("test").classes
        for c in (a.source, a.target):
            if c not in classes:
                raise PhysadvError(f"--source/--target: unknown class '{c}' (known: {', '.join(classes)})")
        start = time.time()
        zoo = zoo_judges([x for x in a.zoo.split(",") if x])
        judges = outside_judges(archs, a.seed, a.epochs) + zoo
        designs = given or [(label, path, read_design(path)) for label, path in demo_designs(out, radii, seeds)]
        runs = []
        for k, (label, path, (adv, clean, obj)) in enumerate(designs):
            width = float(obj.get("width_m") or 0.75)  # the object's real width, as the design recorded it
            runs.append({"label": label, "design": str(path), "width_m": width,
                         **judge((adv, clean), width, judges, distances, angles, lights, a.repeats,
                                 classes.index(a.source), classes.index(a.target), a.seed, out / f"design{k}")})
    except PhysadvError as err:
        print(f"outside_judges: {err}", file=sys.stderr)
        return 2
    result = {"source": a.source, "target": a.target, "outside": archs, "zoo": [j.name for j in zoo], "designs": runs,
              "seconds": round(time.time() - start, 1)}
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
