"""Street scenes for detectors: whole camera frames holding 1-6 signs of the 15 classes, sign-like distractors
and posters, over photo or clutter backgrounds, with ground-truth boxes and labels.

Frame size: 512 x 384 pixels with a 60 degree horizontal field of view (f = 443 px). Two constraints fix it:
a sign 1 m away must fit the frame (a 0.9 m yield sign is 345 px tall there) and a 0.6 m sign 15 m away must
keep enough pixels to be read (18 px across); a smaller frame loses the far signs' markings, a larger one costs
detector training time on 2 CPU cores in proportion to its pixels.

Geometry: each object (sign, distractor, poster) is a plane seen by the one camera. Its pose is a
``rendering.camera.Pose`` (distance, azimuth = the off-axis angle either side, elevation, roll) around the
object, followed by a rotation of the camera about its own centre (``AimedPose``) that puts the object's
centre at a chosen pixel: a rotation about the centre is exact for a pinhole camera and leaves distance and
viewing angle unchanged, so ``render_planar`` renders every object exactly. Objects do not overlap; nearer
ones are drawn last.

Light and camera are the sign world's own functions (``rendering.signs.world``; colour spaces noted): object
texture (sRGB) -> linear light x (exposure gain x colour temperature x a linear shading gradient) -> sRGB
(``light_texture``); composited over the background (sRGB); camera defocus blur,
sensor noise, contrast/brightness and JPEG (``camera_effects``); each object gets its own light (``light_texture``:
signs in sun and in shade), seeded per object so a scene replays exactly. Blur and noise are per pixel of this
512-wide camera. Stored frames are JPEG (quality 95) of the camera's output, decoded on demand.

    cfg = ScenesConfig()
    scenes = load_scenes("train", cfg)                       # core.detection_data.DetectionSet, cached (safetensors)
    spec = sample_scene(cfg, torch.Generator().manual_seed(0))   # one scene's layout, light and camera
    shot = compose(spec, cfg)                                # image 3 x H x W, boxes M x 4 (xyxy), labels M
    spec, k = scene_with_sign(cfg, "stop", 12.0, 30.0, g)    # an attack's view: this sign, here, among others
    shot = compose(spec, cfg, textures={k: adv})             # its face replaced: differentiable in ``adv``
    views = Views(shot.image[None], shot.box_of(k)[None])    # for core.detection_victim.DetectorVictim
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
import torch

from physadv.core.colour import linear_to_srgb, srgb_to_linear
from physadv.core.config import config_hash, to_dict
from physadv.core.detection_data import DetectionSet
from physadv.core.errors import PhysadvError
from physadv.core.io import cache_dir, cached_tensors
from physadv.rendering.camera import Intrinsics, Pose, plane_homography
from physadv.rendering.planar import apply_homography, bbox_of, render_planar
from physadv.rendering.signs.textures import sign_classes, sign_spec
from physadv.rendering.signs.world import (CameraConfig, CameraEffects, LightConfig, Range, _check_range, _uniform,
                                           camera_effects, light_texture, linear_textures, one_thread)

BACKGROUND_KINDS = ("photo", "clutter", "solid", "noise", "paper")


# --------------------------------------------------------------------------- config
@dataclass
class SceneLayout:
    """How many objects a scene holds and where they stand (metres, degrees)."""

    signs: tuple[int, int] = (1, 6)
    distractors: tuple[int, int] = (0, 4)  # plain coloured discs, octagons, triangles, diamonds, rectangles
    posters: tuple[int, int] = (0, 1)  # rectangles of photo content
    distance_m: Range = (1.0, 15.0)
    angle_deg: Range = (0.0, 65.0)  # off-axis angle, either side
    elevation_deg: Range = (-8.0, 8.0)
    roll_deg: Range = (-5.0, 5.0)
    gap_px: float = 2.0  # boxes keep at least this far apart
    tries: int = 30  # placements tried per object before it is left out

    def validate(self) -> None:
        for name in ("signs", "distractors", "posters"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"layout.{name}: need 0 <= min <= max, got {[lo, hi]}")
        if self.signs[0] < 1:
            raise ValueError(f"layout.signs: a scene needs at least one sign, got {list(self.signs)}")
        _check_range("layout.distance_m", self.distance_m, lo=0.3)
        _check_range("layout.angle_deg", self.angle_deg, lo=0.0, hi=80.0)
        _check_range("layout.elevation_deg", self.elevation_deg, lo=-60.0, hi=60.0)
        _check_range("layout.roll_deg", self.roll_deg)


def _scene_effects() -> CameraEffects:
    return CameraEffects(blur_px=(0.0, 0.8), noise_std=(0.0, 0.03), contrast=(0.75, 1.15), brightness=(-0.08, 0.08),
                         jpeg_quality=(50.0, 95.0))


@dataclass
class ScenesConfig:
    """Everything that decides the street-scene sets (its hash names the cached data)."""

    camera: CameraConfig = field(default_factory=lambda: CameraConfig(512, 384, 60.0))  # see the module docstring
    layout: SceneLayout = field(default_factory=SceneLayout)
    light: LightConfig = field(default_factory=LightConfig)
    effects: CameraEffects = field(default_factory=_scene_effects)
    backgrounds: tuple[str, ...] = ("photo", "clutter")
    supersample: int = 2
    train_scenes: int = 2400
    test_scenes: int = 400
    seed: int = 0

    def validate(self) -> None:
        if self.camera.width < 64 or self.camera.height < 64:
            raise ValueError(f"camera frame must be at least 64 x 64, got {self.camera.width} x {self.camera.height}")
        for k in self.backgrounds:
            if k not in BACKGROUND_KINDS:
                raise ValueError(f"backgrounds: unknown kind '{k}' (use {', '.join(BACKGROUND_KINDS)})")
        if not self.backgrounds:
            raise ValueError("backgrounds: give at least one kind")
        if self.supersample < 1 or self.train_scenes < 1 or self.test_scenes < 1:
            raise ValueError("supersample, train_scenes and test_scenes must be at least 1")


# --------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class AimedPose(Pose):
    """A ``Pose`` whose camera is then turned about its own centre so that the object's centre (the look-at point)
    lands on the ray ``aim = ((u - cx) / fx, (v - cy) / fy)`` instead of the principal point. The turn is the
    shortest rotation taking the optical axis to that ray; distance and off-axis angle stay those of the pose."""

    aim: tuple[float, float] = (0.0, 0.0)

    def turn(self) -> np.ndarray:
        d = np.array([self.aim[0], self.aim[1], 1.0])
        d /= np.linalg.norm(d)
        z = np.array([0.0, 0.0, 1.0])
        axis, c = np.cross(z, d), float(z @ d)
        s = float(np.linalg.norm(axis))
        if s < 1e-12:
            return np.eye(3)
        k = axis / s
        K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        return np.eye(3) + s * K + (1 - c) * K @ K  # Rodrigues

    def extrinsics(self) -> tuple[np.ndarray, np.ndarray]:
        R, t = super().extrinsics()
        T = self.turn()
        return T @ R, T @ t


def aimed(pose: Pose, intr: Intrinsics, centre_px: tuple[float, float]) -> AimedPose:
    """``pose`` with the camera turned so the object's centre projects to ``centre_px`` (OpenCV pixel coordinates)."""
    u, v = centre_px
    return AimedPose(pose.distance, pose.azimuth, pose.elevation, pose.roll, pose.look_at,
                     aim=((u - intr.cx) / intr.fx, (v - intr.cy) / intr.fy))


def projected_box(pose: Pose, intr: Intrinsics, outline_m: np.ndarray) -> np.ndarray:
    """``(x0, y0, x1, y1)`` of an outline (plane metres) in torchvision's convention (an image of width W spans
    [0, W]; OpenCV's pixel centres are at integers, so its coordinates shift by half a pixel)."""
    return bbox_of(apply_homography(plane_homography(pose, intr), outline_m)) + 0.5


# --------------------------------------------------------------------------- object faces
SHAPES = ("circle", "octagon", "triangle", "triangle_down", "diamond", "rectangle")
PALETTE = [(0.80, 0.08, 0.10), (0.96, 0.96, 0.95), (0.05, 0.30, 0.62), (0.98, 0.76, 0.05), (0.05, 0.05, 0.05),
           (0.10, 0.55, 0.25), (0.90, 0.45, 0.10)]


def _polygon(shape: str, n_circle: int = 48) -> np.ndarray:
    """Unit outline (+y up) of a distractor shape, inscribed in [-1, 1]^2."""
    if shape == "circle":
        a = np.linspace(0, 2 * np.pi, n_circle, endpoint=False)
        return np.column_stack([np.cos(a), np.sin(a)])
    if shape == "octagon":
        a = np.deg2rad(22.5 + 45 * np.arange(8))
        return np.column_stack([np.cos(a), np.sin(a)]) / math.cos(math.pi / 8)
    if shape in ("triangle", "triangle_down"):
        h = math.sqrt(3)
        pts = np.array([[-1, 1 - h], [1, 1 - h], [0, 1.0]]) - np.array([0, 1 - h / 2])
        return pts * np.array([1, -1]) if shape == "triangle_down" else pts
    if shape == "diamond":
        return np.array([[1.0, 0], [0, 1], [-1, 0], [0, -1]])
    return np.array([[1.0, -1], [1, 1], [-1, 1], [-1, -1]])


def distractor_face(shape: str, g: torch.Generator, px: int = 96) -> tuple[torch.Tensor, np.ndarray]:
    """A sign-like face with no markings: a shape filled with one colour and maybe a border of another.
    Returns ``(rgba 4 x px x px sRGB, unit outline)``."""
    unit = _polygon(shape)
    pick = torch.randperm(len(PALETTE), generator=g)[:2].tolist()
    fill, ring = np.array(PALETTE[pick[0]]), np.array(PALETTE[pick[1]])
    border = float(torch.rand(1, generator=g)) < 0.6
    pts = lambda s: np.round((unit * np.array([1, -1]) * s * 0.5 + 0.5) * (px * 4)).astype(np.int32)  # noqa: E731
    canvas = np.zeros((px * 4, px * 4, 4), np.float32)
    cv2.fillPoly(canvas, [pts(1.0)], (*(ring if border else fill), 1.0), lineType=cv2.LINE_AA)
    if border:
        cv2.fillPoly(canvas, [pts(0.8)], (*fill, 1.0), lineType=cv2.LINE_AA)
    canvas = cv2.resize(canvas, (px, px), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(canvas).permute(2, 0, 1).clamp(0, 1).contiguous(), unit


def poster_face(g: torch.Generator, px: int = 96) -> torch.Tensor:
    """A poster: a random photo crop (scikit-image's bundled photos), opaque, ``4 x px x px``."""
    from physadv.rendering.backgrounds import sample_backgrounds

    seed = int(torch.randint(2**31 - 1, (1,), generator=g))
    rgb = sample_backgrounds(1, px, px, ("photo",), generator=torch.Generator().manual_seed(seed))[0]
    return torch.cat([rgb, torch.ones(1, px, px)])


# --------------------------------------------------------------------------- backgrounds
def clutter(background: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Street clutter over a background (``3 x H x W``): poles, windows, blocks, wires, blobs of random colour."""
    img = np.ascontiguousarray(background.permute(1, 2, 0).numpy().copy())
    H, W = img.shape[:2]
    r = lambda n: torch.rand(n, generator=g).numpy()  # noqa: E731
    for _ in range(int(torch.randint(6, 20, (1,), generator=g))):
        colour = tuple(float(c) for c in r(3))
        kind = int(torch.randint(4, (1,), generator=g))
        x, y = int(r(1)[0] * W), int(r(1)[0] * H)
        if kind == 0:  # pole
            cv2.rectangle(img, (x, 0), (x + 2 + int(r(1)[0] * 10), H), colour, -1)
        elif kind == 1:  # block / window
            cv2.rectangle(img, (x, y), (x + 10 + int(r(1)[0] * W / 3), y + 10 + int(r(1)[0] * H / 3)), colour, -1)
        elif kind == 2:  # wire / road marking
            cv2.line(img, (x, y), (int(r(1)[0] * W), int(r(1)[0] * H)), colour, 1 + int(r(1)[0] * 4), cv2.LINE_AA)
        else:  # blob
            cv2.ellipse(img, (x, y), (4 + int(r(1)[0] * 40), 4 + int(r(1)[0] * 40)), float(r(1)[0] * 180), 0, 360,
                        colour, -1, cv2.LINE_AA)
    return torch.from_numpy(img).permute(2, 0, 1).clamp(0, 1).contiguous()


def scene_background(kind: str, H: int, W: int, g: torch.Generator) -> torch.Tensor:
    """One ``3 x H x W`` background: a kind of ``rendering.backgrounds`` or ``clutter`` (a photo with clutter)."""
    from physadv.rendering.backgrounds import sample_backgrounds

    seed = int(torch.randint(2**31 - 1, (1,), generator=g))
    base = sample_backgrounds(1, H, W, ("photo",) if kind == "clutter" else (kind,), torch.Generator().manual_seed(seed))[0]
    return clutter(base, g) if kind == "clutter" else base


# --------------------------------------------------------------------------- a scene
@dataclass
class SceneObject:
    """One planar object in a scene: ``label`` is its sign class index, or -1 for distractors and posters
    (``face`` then holds its RGBA texture); ``outline_m`` is its outline in plane metres."""

    label: int
    pose: AimedPose
    size_m: float
    outline_m: np.ndarray
    light_seed: int  # seeds world.light_texture: gain, colour temperature and shading of this object
    face: torch.Tensor | None = None


@dataclass
class SceneSpec:
    """Everything random about one scene: background, objects, light, camera effects."""

    background: torch.Tensor  # 3 x H x W sRGB
    objects: list[SceneObject]
    effects_seed: int  # seeds world.camera_effects: blur, noise, contrast, brightness, JPEG quality

    @property
    def signs(self) -> list[int]:
        """Indices (in ``objects``) of the labelled signs."""
        return [i for i, o in enumerate(self.objects) if o.label >= 0]


def _sample_object(label: int, size_m: float, outline: np.ndarray, cfg: ScenesConfig, g: torch.Generator,
                   taken: list[np.ndarray]) -> SceneObject | None:
    """Pose and place one object so its box lies in the frame, clear of the boxes in ``taken``."""
    lay, intr = cfg.layout, cfg.camera.intrinsics()
    W, H = intr.width, intr.height
    for _ in range(lay.tries):
        d, a, e, r = (float(_uniform(rg, 1, g)) for rg in (lay.distance_m, lay.angle_deg, lay.elevation_deg, lay.roll_deg))
        a = a if float(torch.rand(1, generator=g)) < 0.5 else -a
        pose = Pose(d, a, e, r)
        box = projected_box(pose, intr, outline)
        w, h = box[2] - box[0], box[3] - box[1]
        if w >= W - 2 or h >= H - 2:
            continue
        u = float(torch.rand(1, generator=g)) * (W - 2 - w) + 1 + w / 2 - 0.5
        v = float(torch.rand(1, generator=g)) * (H - 2 - h) + 1 + h / 2 - 0.5
        placed = aimed(pose, intr, (u, v))
        box = projected_box(placed, intr, outline)
        if box[0] < 0.5 or box[1] < 0.5 or box[2] > W - 0.5 or box[3] > H - 0.5:
            continue
        gap = lay.gap_px
        if any(box[0] < t[2] + gap and t[0] < box[2] + gap and box[1] < t[3] + gap and t[1] < box[3] + gap for t in taken):
            continue
        taken.append(box)
        return SceneObject(label, placed, size_m, outline, int(torch.randint(2**31 - 1, (1,), generator=g)))
    return None


def _count(r: tuple[int, int], g: torch.Generator) -> int:
    return int(torch.randint(r[0], r[1] + 1, (1,), generator=g))


def sample_scene(cfg: ScenesConfig, g: torch.Generator, placed: list[SceneObject] | None = None,
                 taken: list[np.ndarray] | None = None) -> SceneSpec:
    """One random scene: signs placed first, then distractors and posters where room is left. ``placed``: objects
    already in the scene (their boxes in ``taken``), counted among its signs."""
    classes, taken, objects = sign_classes(), list(taken or []), list(placed or [])
    for _ in range(_count(cfg.layout.signs, g) - len(objects)):
        k = int(torch.randint(len(classes), (1,), generator=g))
        spec = sign_spec(classes[k])
        obj = _sample_object(k, spec.size_m, spec.outline(), cfg, g, taken)
        objects += [obj] if obj else []
    for _ in range(_count(cfg.layout.distractors, g)):
        shape = SHAPES[int(torch.randint(len(SHAPES), (1,), generator=g))]
        face, unit = distractor_face(shape, g)
        size = 0.4 + 0.6 * float(torch.rand(1, generator=g))
        obj = _sample_object(-1, size, unit * size / 2, cfg, g, taken)
        objects += [replace(obj, face=face)] if obj else []
    for _ in range(_count(cfg.layout.posters, g)):
        size = 0.5 + 1.0 * float(torch.rand(1, generator=g))
        obj = _sample_object(-1, size, _polygon("rectangle") * size / 2, cfg, g, taken)
        objects += [replace(obj, face=poster_face(g))] if obj else []
    if not any(o.label >= 0 for o in objects):
        raise PhysadvError("no sign fitted the frame: widen layout.distance_m or enlarge the camera frame")
    kind = cfg.backgrounds[int(torch.randint(len(cfg.backgrounds), (1,), generator=g))]
    background = scene_background(kind, cfg.camera.height, cfg.camera.width, g)
    return SceneSpec(background, objects, int(torch.randint(2**31 - 1, (1,), generator=g)))


def scene_with_sign(cfg: ScenesConfig, sign: str, distance_m: float, angle_deg: float, g: torch.Generator,
                    others: bool = True) -> tuple[SceneSpec, int]:
    """A scene around one given sign at ``distance_m`` and ``angle_deg`` off-axis (side, elevation, roll, place in
    the frame, light and camera random), with random other signs, distractors and posters unless ``others`` is
    False. Returns the scene and the sign's index in ``spec.objects`` (for ``compose(..., textures={index: face})``)."""
    lay = replace(cfg.layout, distance_m=(distance_m, distance_m), angle_deg=(angle_deg, angle_deg))
    spec = sign_spec(sign)
    taken: list[np.ndarray] = []
    obj = _sample_object(sign_classes().index(spec.name), spec.size_m, spec.outline(), replace(cfg, layout=lay), g, taken)
    if obj is None:
        raise PhysadvError(f"sign '{sign}' at {distance_m} m does not fit the {cfg.camera.width} x {cfg.camera.height} frame")
    if not others:
        cfg = replace(cfg, layout=replace(cfg.layout, signs=(1, 1), distractors=(0, 0), posters=(0, 0)))
    return sample_scene(cfg, g, placed=[obj], taken=taken), 0


# --------------------------------------------------------------------------- composing a frame
@dataclass
class Shot:
    """One composed frame: ``image`` 3 x H x W sRGB in [0, 1]; per labelled sign ``boxes`` M x 4 (xyxy,
    torchvision convention), ``labels`` M (sign class index), ``objects`` M (its index in the spec),
    ``distance_m`` and ``angle_deg``; ``encoded``: the JPEG bytes when asked for."""

    image: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor
    objects: list[int]
    distance_m: torch.Tensor
    angle_deg: torch.Tensor
    encoded: bytes | None = None

    def box_of(self, index: int) -> torch.Tensor:
        """The box (``4``, xyxy) of object ``index`` of the scene (a labelled sign)."""
        return self.boxes[self.objects.index(index)]


def _face(obj: SceneObject, override: torch.Tensor | None, px: int) -> torch.Tensor:
    """The object's RGBA face: the override (3 x S x S sRGB, alpha of the sign), its own face, or its sign's."""
    if obj.label < 0 and override is None:
        return obj.face
    lin, alpha = linear_textures(px if override is None else int(override.shape[-1]))
    if override is not None:
        if override.ndim != 3 or override.shape[0] not in (3, 4) or override.shape[1] != override.shape[2]:
            raise PhysadvError(f"a replacement face must be 3|4 x S x S (sRGB), got {tuple(override.shape)}")
        a = override[3:] if override.shape[0] == 4 else (alpha[obj.label] if obj.label >= 0 else torch.ones_like(override[:1]))
        return torch.cat([override[:3], a.to(override)])
    return torch.cat([linear_to_srgb(lin[obj.label]), alpha[obj.label]])


def _window(box: np.ndarray, W: int, H: int) -> tuple[int, int, int, int]:
    """Whole pixels covering a torchvision-convention box, clipped to the frame."""
    c0, r0 = max(0, int(math.floor(box[0])) - 1), max(0, int(math.floor(box[1])) - 1)
    c1, r1 = min(W, int(math.ceil(box[2])) + 1), min(H, int(math.ceil(box[3])) + 1)
    return c0, r0, c1, r1


def place_objects(spec: SceneSpec, cfg: ScenesConfig, textures: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
    """The background with every object composited (far first), before camera effects. Differentiable with
    respect to ``textures`` (object index -> replacement face, e.g. a sign with adversarial stickers)."""
    intr = cfg.camera.intrinsics()
    textures = textures or {}
    dtype = next(iter(textures.values())).dtype if textures else torch.float32
    frame = spec.background.to(dtype)
    for i in sorted(range(len(spec.objects)), key=lambda j: -spec.objects[j].pose.distance):
        obj = spec.objects[i]
        box = projected_box(obj.pose, intr, obj.outline_m)
        c0, r0, c1, r1 = _window(box, intr.width, intr.height)
        px = 128 if max(box[2] - box[0], box[3] - box[1]) <= 128 else 256
        rgba = _face(obj, textures.get(i), px)
        lit = light_texture(srgb_to_linear(rgba[None, :3].clamp(0, 1)), cfg.light, torch.Generator().manual_seed(obj.light_seed))
        face = torch.cat([lit[0], rgba[3:]])
        out = render_planar(face, [obj.pose], intr, obj.size_m, supersample=cfg.supersample,
                            windows=[(c0 - 0.5, r0 - 0.5, c1 - 0.5, r1 - 0.5)], out_hw=(r1 - r0, c1 - c0), outline_m=obj.outline_m)
        under = frame[:, r0:r1, c0:c1]
        patch = out.image[0] + (1 - out.alpha[0]) * under
        frame = torch.cat([frame[:, :r0], torch.cat([frame[:, r0:r1, :c0], patch, frame[:, r0:r1, c1:]], 2), frame[:, r1:]], 1)
    return frame


def compose(spec: SceneSpec, cfg: ScenesConfig, textures: dict[int, torch.Tensor] | None = None,
            encode: bool = False) -> Shot:
    """The camera frame of ``spec`` with its ground truth. Differentiable with respect to ``textures`` (JPEG
    passes the gradient straight through). ``encode``: also return the frame's bytes as stored (JPEG quality 95
    of the camera's output)."""
    frame = place_objects(spec, cfg, textures)
    image = camera_effects(frame[None], torch.ones(1), cfg.effects, None, torch.Generator().manual_seed(spec.effects_seed))[0]
    encoded = None
    if encode:
        bgr = (image.detach().flip(0).permute(1, 2, 0) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
        encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, STORE_QUALITY])[1].tobytes()
    intr = cfg.camera.intrinsics()
    idx = spec.signs
    boxes = [projected_box(spec.objects[i].pose, intr, spec.objects[i].outline_m) for i in idx]
    return Shot(image, torch.tensor(np.array(boxes), dtype=torch.float32).reshape(-1, 4),
                torch.tensor([spec.objects[i].label for i in idx], dtype=torch.long), idx,
                torch.tensor([spec.objects[i].pose.distance for i in idx]), torch.tensor([spec.objects[i].pose.off_axis for i in idx]),
                encoded)


# --------------------------------------------------------------------------- data sets
STORE_QUALITY = 95  # JPEG quality of the stored frames (the camera's own JPEG comes before)
GENERATOR_VERSION = 1  # bump when the generator's output changes, so caches are rebuilt


def scenes_hash(cfg: ScenesConfig, split: str = "train") -> str:
    """The hash naming one split's cached set: the config less the other split's size (a bigger test set neither
    renders the training set again nor, through the detector's cache key, retrains the detector)."""
    d = to_dict(cfg)
    d.pop("test_scenes" if split == "train" else "train_scenes")
    return config_hash({"scenes": d, "generator": GENERATOR_VERSION})


def generate_scenes(cfg: ScenesConfig, n: int, seed: int, progress: bool = True) -> DetectionSet:
    """``n`` scenes, deterministic in ``seed``, as a ``DetectionSet`` of JPEG frames with boxes and labels."""
    from physadv.core.progress import progress as bar

    cfg.validate()
    g = torch.Generator().manual_seed(seed)
    encoded, boxes, labels, distance, angle = [], [], [], [], []
    with one_thread(), torch.no_grad():
        for _ in bar(range(n), desc="render scenes", disable=not progress):
            shot = compose(sample_scene(cfg, g), cfg, encode=True)
            # plain lists: thousands of small long-lived tensors pin the allocator's freed frames (GBs of RSS)
            encoded.append(shot.encoded)
            boxes.append(shot.boxes.tolist())
            labels.append(shot.labels.tolist())
            distance.append(shot.distance_m.tolist())
            angle.append(shot.angle_deg.tolist())
    t = lambda rows, **kw: [torch.tensor(r, **kw) for r in rows]  # noqa: E731
    return DetectionSet.from_encoded(encoded, t(boxes, dtype=torch.float32), t(labels, dtype=torch.long),
                                     ["__background__", *sign_classes()], f"sign-scenes-seed{seed}",
                                     {"distance_m": t(distance), "angle_deg": t(angle)}, label_offset=1)


def load_scenes(split: str, cfg: ScenesConfig | None = None, progress: bool = True) -> DetectionSet:
    """The train or test split, generated once and cached as safetensors (JPEG bytes, boxes, labels).
    Labels count from 1 (0 is the background, as torchvision detectors have it)."""
    if split not in ("train", "test"):
        raise PhysadvError(f"scene split must be 'train' or 'test', got '{split}'")
    cfg = cfg or ScenesConfig()
    cfg.validate()
    n = cfg.train_scenes if split == "train" else cfg.test_scenes
    seed = 2 * cfg.seed + (0 if split == "train" else 1)  # the test split never shares a seed with training
    path = cache_dir("scenes") / f"{split}-{scenes_hash(cfg, split)}.safetensors"

    def make():
        tensors, meta = generate_scenes(cfg, n, seed, progress=progress).to_tensors()
        return tensors, {**meta, "scenes": to_dict(cfg), "split": split}

    return DetectionSet.from_tensors(*cached_tensors(path, make, ["__background__", *sign_classes()]), str(path))


__all__ = ["AimedPose", "ScenesConfig", "SceneSpec", "Shot", "aimed", "compose", "generate_scenes", "load_scenes",
           "place_objects", "projected_box", "sample_scene", "scene_with_sign", "scenes_hash"]
