"""Safe file I/O: atomic writes, safetensors checkpoints with JSON metadata, images, run folders.

Nothing here unpickles a file. Weights are safetensors; ``load_torch_weights`` accepts a
``.pt``/``.pth`` state dict only through ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from physadv.core.errors import PhysadvError

META_KEY = "physadv"  # safetensors header metadata key holding our JSON


# --------------------------------------------------------------------------- atomic writes
@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the same folder; rename it over ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# --------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> Path:
    """Write tensors as safetensors with ``metadata`` as JSON in the header, atomically."""
    from safetensors.torch import save_file

    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    header = {META_KEY: json.dumps(metadata or {}, default=_json_default)}
    with atomic_path(path) as tmp:
        save_file(flat, str(tmp), metadata=header)
    return Path(path)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict]:
    """Read a safetensors checkpoint: (tensors, metadata). A bad file is a PhysadvError naming it."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise PhysadvError(f"checkpoint not found: {path}")
    try:
        tensors = {}
        with safe_open(str(path), framework="pt", device=str(device)) as fh:
            meta = fh.metadata() or {}
            for key in fh.keys():
                tensors[key] = fh.get_tensor(key)
    except Exception as exc:  # safetensors raises its own error types
        raise PhysadvError(f"{path}: not a readable safetensors file ({exc})") from None
    try:
        metadata = json.loads(meta.get(META_KEY, "{}"))
    except json.JSONDecodeError:
        metadata = {}
    return tensors, metadata


def cached_tensors(path: str | Path, make, classes: list[str]) -> tuple[dict[str, torch.Tensor], dict]:
    """A generated data set cached as one safetensors file: (tensors, metadata) from ``path``, or from ``make()``
    (which returns them, with ``classes`` in the metadata) saved there first. A cached file with other classes is
    a one-line error saying to delete it."""
    path = Path(path)
    if path.is_file():
        tensors, meta = load_checkpoint(path)
        if meta.get("classes") != classes:
            raise PhysadvError(f"{path}: cached set has other classes; delete it to regenerate")
        return tensors, meta
    tensors, meta = make()
    save_checkpoint(path, tensors, meta)
    return tensors, meta


def load_torch_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from safetensors, or from a .pt/.pth file without unpickling code."""
    path = Path(path)
    if not path.is_file():
        raise PhysadvError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        return load_checkpoint(path)[0]
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise PhysadvError(f"{path}: cannot be read as a weights-only state dict ({exc.__class__.__name__})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise PhysadvError(f"{path}: expected a state dict, found {type(state).__name__}")
    return state


def weights_fingerprint(model: torch.nn.Module) -> str:
    """A short SHA-256 of the model's parameters and buffers, in order: which weights a result was made against."""
    import hashlib

    h = hashlib.sha256()
    for t in model.state_dict().values():
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def load_state_into(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict`` whose failure is one line naming the file and the first mismatch."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            k = wrong[0]
            parts.append(f"'{k}' has shape {tuple(state[k].shape)}, the model wants {tuple(own[k].shape)}")
        if missing:
            parts.append(f"{len(missing)} missing tensors (e.g. '{missing[0]}')")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensors (e.g. '{unexpected[0]}')")
        raise PhysadvError(f"{source}: weights do not fit {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(state)


# --------------------------------------------------------------------------- images
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def read_image(path: str | Path, mode: str = "RGB") -> torch.Tensor:
    """Read an image file as a ``C x H x W`` float tensor in [0, 1], EXIF orientation applied.

    ``mode`` is a PIL mode ("RGB", "L", "RGBA"). A corrupt or truncated file raises a
    PhysadvError naming the file.
    """
    return torch.from_numpy(read_image_array(path, mode)).permute(2, 0, 1).contiguous()


def read_image_array(path: str | Path, mode: str = "RGB") -> np.ndarray:
    """Like ``read_image`` but an ``H x W x C`` float32 numpy array."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise PhysadvError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()  # forces full decoding so truncation is caught here
            im = ImageOps.exif_transpose(im)
            im = im.convert(mode)
            arr = np.asarray(im, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise PhysadvError(f"{path}: unreadable or corrupt image ({exc})") from None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return arr


def to_uint8(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """``C x H x W`` tensor or ``H x W x C`` array in [0, 1] -> ``H x W x C`` uint8."""
    if isinstance(image, torch.Tensor):
        t = image.detach().to("cpu", torch.float32)
        if t.ndim == 4:
            if t.shape[0] != 1:
                raise PhysadvError(f"expected one image, got a batch of {t.shape[0]}")
            t = t[0]
        arr = t.permute(1, 2, 0).numpy() if t.ndim == 3 else t.numpy()
    else:
        arr = np.asarray(image, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise PhysadvError("image contains NaN or inf values")
    return (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_image(path: str | Path, image: torch.Tensor | np.ndarray, dpi: float | None = None, quality: int = 95) -> Path:
    """Write a ``C x H x W`` tensor (or ``H x W x C`` array) in [0, 1] as PNG/JPEG/TIFF, atomically."""
    from PIL import Image

    path = Path(path)
    arr = to_uint8(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    im = Image.fromarray(arr)
    kwargs: dict[str, Any] = {}
    if dpi is not None:
        kwargs["dpi"] = (float(dpi), float(dpi))
    suffix = path.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        kwargs["quality"] = quality
        if im.mode == "RGBA":
            im = im.convert("RGB")
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP", ".webp": "WEBP"}.get(suffix)
    if fmt is None:
        raise PhysadvError(f"{path}: unknown image type '{suffix}' (use .png, .jpg or .tif)")
    with atomic_path(path) as tmp:
        im.save(tmp, format=fmt, **kwargs)
    return path


# --------------------------------------------------------------------------- run folders
def make_run_dir(job: str, root: str | Path = "runs", out: str | Path | None = None) -> Path:
    """``runs/<job>/<timestamp>/`` (or ``out`` when the user names it), created."""
    if out is not None:
        path = Path(out)
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = Path(root) / job / stamp
        n = 1
        while path.exists():
            path = Path(root) / job / f"{stamp}-{n}"
            n += 1
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir(*parts: str) -> Path:
    """Where trained weights and generated data are cached: ``$PHYSADV_CACHE`` or ``~/.cache/physadv``."""
    root = Path(os.environ.get("PHYSADV_CACHE") or Path.home() / ".cache" / "physadv")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
