"""Detection data sets: whole images with boxes and labels per image, held compactly as the JPEG bytes a camera
wrote (a street scene of 512 x 384 pixels is ~40 kB as JPEG, 590 kB as raw bytes), decoded on demand.

Boxes are ``x0, y0, x1, y1`` in torchvision's pixel convention (an image of width W spans [0, W]); labels are
indices into ``classes`` where index 0 is the background, as torchvision detectors count them.

    data = DetectionSet.from_encoded(jpegs, boxes, labels, ["__background__", "stop", ...])
    image, target = data[3]            # 3 x H x W in [0, 1], {"boxes": M x 4, "labels": M}
    tensors, meta = data.to_tensors()  # for save_checkpoint; DetectionSet.from_tensors(tensors, meta) back
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from physadv.core.errors import PhysadvError


def _offsets(sizes: list[int]) -> torch.Tensor:
    return torch.tensor([0, *sizes], dtype=torch.long).cumsum(0)


@dataclass
class DetectionSet:
    """``encoded``: every image's JPEG/PNG bytes back to back (uint8), ``image_offsets`` (N + 1); ``boxes`` M x 4
    and ``labels`` M of all images back to back, ``box_offsets`` (N + 1); ``info``: per-object extras
    (e.g. distance_m, angle_deg), each a tensor of M values."""

    encoded: torch.Tensor
    image_offsets: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor
    box_offsets: torch.Tensor
    classes: list[str]
    name: str = ""
    info: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.image_offsets) - 1
        if len(self.box_offsets) != n + 1 or int(self.box_offsets[-1]) != len(self.boxes) or len(self.boxes) != len(self.labels):
            raise PhysadvError(f"detection set {self.name}: {n} images, {len(self.box_offsets) - 1} box lists, "
                               f"{len(self.boxes)} boxes and {len(self.labels)} labels do not agree")
        if len(self.labels) and (int(self.labels.min()) < 1 or int(self.labels.max()) >= len(self.classes)):
            raise PhysadvError(f"detection set {self.name}: labels must be 1..{len(self.classes) - 1} (0 is the background)")

    @staticmethod
    def from_encoded(encoded: list[bytes], boxes: list[torch.Tensor], labels: list[torch.Tensor], classes: list[str],
                     name: str = "", info: dict[str, list[torch.Tensor]] | None = None, label_offset: int = 0) -> "DetectionSet":
        """From per-image encoded bytes, ``M_i x 4`` boxes and ``M_i`` labels (plus ``label_offset``)."""
        if not (len(encoded) == len(boxes) == len(labels)):
            raise PhysadvError(f"detection set {name}: {len(encoded)} images, {len(boxes)} box lists, {len(labels)} label lists")
        blob = torch.frombuffer(bytearray(b"".join(encoded)), dtype=torch.uint8) if encoded else torch.zeros(0, dtype=torch.uint8)
        return DetectionSet(blob.clone(), _offsets([len(e) for e in encoded]),
                            torch.cat([b.reshape(-1, 4).float() for b in boxes]) if boxes else torch.zeros(0, 4),
                            torch.cat([lb.long() + label_offset for lb in labels]) if labels else torch.zeros(0, dtype=torch.long),
                            _offsets([len(lb) for lb in labels]), list(classes), name,
                            {k: torch.cat([torch.as_tensor(v).float().reshape(-1) for v in vals]) for k, vals in (info or {}).items()})

    def __len__(self) -> int:
        return len(self.image_offsets) - 1

    def image(self, i: int) -> torch.Tensor:
        """Image ``i`` decoded: ``3 x H x W`` float in [0, 1]."""
        from torchvision.io import ImageReadMode, decode_image

        a, b = int(self.image_offsets[i]), int(self.image_offsets[i + 1])
        return decode_image(self.encoded[a:b], mode=ImageReadMode.RGB).float() / 255

    def target(self, i: int) -> dict[str, torch.Tensor]:
        a, b = int(self.box_offsets[i]), int(self.box_offsets[i + 1])
        return {"boxes": self.boxes[a:b], "labels": self.labels[a:b]}

    def object_info(self, i: int) -> dict[str, torch.Tensor]:
        a, b = int(self.box_offsets[i]), int(self.box_offsets[i + 1])
        return {k: v[a:b] for k, v in self.info.items()}

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.image(i), self.target(i)

    def subset(self, indices: list[int]) -> "DetectionSet":
        """The images at ``indices`` (in that order)."""
        enc = [self.encoded[int(self.image_offsets[i]):int(self.image_offsets[i + 1])] for i in indices]
        spans = [(int(self.box_offsets[i]), int(self.box_offsets[i + 1])) for i in indices]
        pick = torch.cat([torch.arange(a, b) for a, b in spans]) if spans else torch.zeros(0, dtype=torch.long)
        return DetectionSet(torch.cat(enc) if enc else self.encoded[:0], _offsets([len(e) for e in enc]), self.boxes[pick],
                            self.labels[pick], _offsets([b - a for a, b in spans]), self.classes, self.name,
                            {k: v[pick] for k, v in self.info.items()})

    def to_tensors(self) -> tuple[dict[str, torch.Tensor], dict]:
        """Tensors and JSON metadata for ``core.io.save_checkpoint``."""
        t = {"encoded": self.encoded, "image_offsets": self.image_offsets, "boxes": self.boxes, "labels": self.labels,
             "box_offsets": self.box_offsets, **{f"info.{k}": v for k, v in self.info.items()}}
        return t, {"classes": self.classes, "name": self.name}

    @staticmethod
    def from_tensors(tensors: dict[str, torch.Tensor], meta: dict, source: str = "tensors") -> "DetectionSet":
        need = ("encoded", "image_offsets", "boxes", "labels", "box_offsets")
        missing = [k for k in need if k not in tensors]
        if missing or "classes" not in meta:
            raise PhysadvError(f"{source}: not a detection set (missing {', '.join(missing) or 'classes'})")
        info = {k[5:]: v for k, v in tensors.items() if k.startswith("info.")}
        return DetectionSet(*(tensors[k] for k in need), list(meta["classes"]), meta.get("name", ""), info)


__all__ = ["DetectionSet"]
