"""One self-contained HTML report per run: headings, text, tables and pictures inlined as ``data:`` URIs, so the
page can be mailed or archived as a single file and a browser shows it without a server.

    page = Page("RP2 stop -> speed_limit_80")
    page.text("Targeted success 97.1% over 140 views.")
    page.image(png_bytes_or_path_or_array, "the stickers")
    page.table([{"model": "a", "accuracy": 0.98}], table_id="models")
    page.write(run / "report.html")
"""
from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np

CSS = ("body{font-family:sans-serif;max-width:1150px;margin:2em auto;color:#222}"
       "figure{display:inline-block;margin:.4em;text-align:center;vertical-align:top}"
       "figcaption{font-size:.8em;color:#555;max-width:360px}table{border-collapse:collapse;font-size:.85em;margin:1em 0}"
       "td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}th{background:#f0f0f0}"
       ".good{background:#cfc}.bad{background:#fcc}.num{font-size:1.4em;font-weight:bold}code{font-size:.9em}")


def png_uri(image) -> str:
    """A ``data:`` URI of PNG bytes, a PNG file, or an image (``C x H x W`` tensor / ``H x W x C`` array in [0, 1] or
    uint8; RGBA is shown over light grey)."""
    if isinstance(image, (bytes, bytearray)):
        data = bytes(image)
    elif isinstance(image, (str, Path)):
        p = Path(image)
        if not p.is_file():
            return ""
        data = p.read_bytes()
    else:
        import cv2

        from physadv.core.io import to_uint8

        arr = image if isinstance(image, np.ndarray) and image.dtype == np.uint8 else to_uint8(image)
        if arr.ndim == 3 and arr.shape[2] == 4:
            rgb, a = arr[..., :3].astype(np.float32), arr[..., 3:].astype(np.float32) / 255
            arr = (rgb * a + 235 * (1 - a)).astype(np.uint8)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[..., 0]
        ok, buf = cv2.imencode(".png", cv2.cvtColor(arr, cv2.COLOR_RGB2BGR) if arr.ndim == 3 else arr)
        data = buf.tobytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


class Page:
    """A report page built in order; ``write`` saves it atomically."""

    def __init__(self, title: str):
        self.title = title
        self.parts: list[str] = [f"<h1>{html.escape(title)}</h1>"]

    def heading(self, text: str, level: int = 2) -> "Page":
        self.parts.append(f"<h{level}>{html.escape(text)}</h{level}>")
        return self

    def text(self, text: str) -> "Page":
        self.parts.append(f"<p>{html.escape(text)}</p>")
        return self

    def raw(self, fragment: str) -> "Page":
        """Trusted HTML made by the project (e.g. ``core.gridreport.html_table``)."""
        self.parts.append(fragment)
        return self

    def image(self, image, caption: str = "", width: int = 240) -> "Page":
        uri = png_uri(image)
        if uri:
            self.parts.append(f"<figure><img src='{uri}' width='{width}' alt='{html.escape(caption)}'>"
                              f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        return self

    def table(self, rows: list[dict], columns: list[str] | None = None, table_id: str = "", digits: int = 3) -> "Page":
        if not rows:
            return self
        columns = columns or list(rows[0])
        e = html.escape

        def fmt(v) -> str:
            if v is None:
                return ""
            if isinstance(v, float):
                return f"{v:.{digits}g}" if abs(v) >= 1 or v == 0 else f"{v:.{digits}f}"
            return str(v)

        out = [f"<table{f' id={chr(39)}{e(table_id)}{chr(39)}' if table_id else ''}><tr>"
               + "".join(f"<th>{e(c)}</th>" for c in columns) + "</tr>"]
        out += ["<tr>" + "".join(f"<td>{e(fmt(r.get(c)))}</td>" for c in columns) + "</tr>" for r in rows]
        self.parts.append("\n".join(out + ["</table>"]))
        return self

    def html(self) -> str:
        return ("<!doctype html><html><head><meta charset='utf-8'>"
                f"<title>{html.escape(self.title)}</title><style>{CSS}</style></head><body>\n"
                + "\n".join(self.parts) + "\n</body></html>\n")

    def write(self, path: str | Path) -> Path:
        from physadv.core.io import atomic_write_text

        return atomic_write_text(path, self.html())


__all__ = ["Page", "png_uri", "CSS"]
