"""A small lossless PDF writer: one RGB raster per page, the page exactly the raster's size at ``dpi``.

Pillow's PDF writer stores RGB as JPEG; an adversarial texture must not pass through JPEG, so pages
are written here as Flate-compressed images (PDF 1.4), one page at a time (tiles of a large print
never sit in memory together).
"""
from __future__ import annotations

import zlib
from pathlib import Path
from typing import Iterable

import numpy as np

from physadv.core.io import atomic_path


def write_pdf(path: str | Path, pages: Iterable[np.ndarray], n_pages: int, dpi: float, title: str = "") -> Path:
    """Write ``n_pages`` uint8 ``H x W x 3`` rasters as a PDF whose MediaBox is ``W x H`` pixels at ``dpi``."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        offsets: dict[int, int] = {}

        def put(num: int, head: str, stream: bytes | None = None) -> None:
            offsets[num] = f.tell()
            f.write(f"{num} 0 obj\n".encode() + head.encode())
            if stream is not None:
                f.write(b"\nstream\n" + stream + b"\nendstream")
            f.write(b"\nendobj\n")

        f.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
        kids = " ".join(f"{4 + 3 * i} 0 R" for i in range(n_pages))
        put(1, "<< /Type /Catalog /Pages 2 0 R >>")
        put(2, f"<< /Type /Pages /Kids [{kids}] /Count {n_pages} >>")
        safe_title = title.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        put(3, f"<< /Title ({safe_title}) /Producer (physadv) >>")
        written = 0
        for i, page in enumerate(pages):
            arr = np.ascontiguousarray(page, dtype=np.uint8)
            h, w = arr.shape[:2]
            pw, ph = w * 72.0 / dpi, h * 72.0 / dpi
            p, c, im = 4 + 3 * i, 5 + 3 * i, 6 + 3 * i
            put(p, f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {pw:.6f} {ph:.6f}] "
                   f"/Resources << /XObject << /Im0 {im} 0 R >> >> /Contents {c} 0 R >>")
            content = f"q {pw:.6f} 0 0 {ph:.6f} 0 0 cm /Im0 Do Q".encode()
            put(c, f"<< /Length {len(content)} >>", content)
            data = zlib.compress(arr.tobytes(), 6)
            put(im, f"<< /Type /XObject /Subtype /Image /Width {w} /Height {h} /ColorSpace /DeviceRGB "
                    f"/BitsPerComponent 8 /Interpolate false /Filter /FlateDecode /Length {len(data)} >>", data)
            written += 1
        if written != n_pages:
            raise ValueError(f"write_pdf: promised {n_pages} pages, got {written}")
        xref = f.tell()
        count = 3 + 3 * n_pages + 1
        f.write(f"xref\n0 {count}\n0000000000 65535 f \n".encode())
        for num in range(1, count):
            f.write(f"{offsets[num]:010d} 00000 n \n".encode())
        f.write(f"trailer\n<< /Size {count} /Root 1 0 R /Info 3 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return path


__all__ = ["write_pdf"]
