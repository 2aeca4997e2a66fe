"""``physadv print export|chart|calibrate``: print files at physical size, colour charts, colour calibration.

    physadv print export --texture sign.png --width 75cm --tile A4 --out runs/stop-print
    physadv print chart --out runs/chart
    physadv print calibrate --photo chart.jpg --layout runs/chart/layout.json --out runs/calib
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from physadv.core.cli import add_config_args, finish_run, resolve_config, start_run
from physadv.core.errors import PhysadvError


@dataclass
class CalibrateConfig:
    kinds: list[str] = field(default_factory=lambda: ["affine", "poly2"])
    inner: float = 0.5  # central fraction of each patch that is sampled
    palette_size: int = 30  # palette.json for the non-printability score (k-means of the captured patches);
    # gamut.json keeps every captured patch, for PrintModel's gamut "hull"
    seed: int = 0

    def validate(self) -> None:
        from physadv.printing.colour import KINDS

        bad = [k for k in self.kinds if k not in KINDS]
        if bad or not self.kinds:
            raise ValueError(f"kinds: unknown {bad or 'empty list'} (use {sorted(KINDS)})")
        if not 0.1 <= self.inner <= 0.9:
            raise ValueError(f"inner must be within [0.1, 0.9], got {self.inner}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("print", help="print files at real size, colour charts and colour calibration")
    jobs = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    e = jobs.add_parser("export", help="a texture or sticker sheet as PNG/TIFF/PDF at its physical size")
    add_config_args(e, "printing/export.yaml")
    e.add_argument("--texture", required=True, help="image file (PNG with alpha: transparent = white paper), or a .safetensors "
                   "holding a 3|4 x H x W 'texture' tensor in [0, 1]")
    e.add_argument("--mask", default=None, help="sticker mask image (white = sticker); implies cut lines")
    e.add_argument("--width", default=None, help="physical width, e.g. 75cm, 300mm, 8.5in")
    e.add_argument("--height", default=None, help="physical height (default: from the texture's aspect ratio)")
    e.add_argument("--dpi", type=float, default=None)
    e.add_argument("--fiducials", dest="fiducials", action="store_true", default=None, help="ArUco markers around the object")
    e.add_argument("--no-fiducials", dest="fiducials", action="store_false")
    e.add_argument("--tile", default=None, help="split across paper pages: A4, A3, Letter or Legal")
    e.add_argument("--label", default=None, help="label printed under the object (default: the run folder's name)")
    e.set_defaults(func=_export)

    c = jobs.add_parser("chart", help="a colour calibration chart with fiducials")
    add_config_args(c, "printing/chart.yaml")
    c.set_defaults(func=_chart)

    k = jobs.add_parser("calibrate", help="fit the print-and-capture colour transform from a photo of a printed chart")
    add_config_args(k, "printing/calibrate.yaml")
    k.add_argument("--photo", required=True, help="photo of the printed chart")
    k.add_argument("--layout", required=True, help="the chart's layout.json (from `physadv print chart`)")
    k.set_defaults(func=_calibrate)


def _flag_overrides(args: argparse.Namespace, names: list[str]) -> None:
    """Turn explicit command-line flags into config overrides (``--set`` still wins)."""
    flags = [f"{n}={getattr(args, n)}" for n in names if getattr(args, n, None) is not None]
    args.overrides = flags + list(args.overrides)


def _design_width(path: Path) -> str | None:
    """The real width a design run recorded for its object (``texture.safetensors``, ``design.safetensors``)."""
    from physadv.core.io import load_checkpoint

    if not path.is_file():
        return None
    width = (load_checkpoint(path)[1].get("object") or {}).get("width_m")
    return f"{width * 1000:.1f}mm" if width else None


def _export(args: argparse.Namespace) -> int:
    from PIL import Image

    from physadv.core.io import read_image_array
    from physadv.printing.export import ExportConfig, export_print

    if args.width is None and str(args.texture).endswith(".safetensors"):  # a design knows its object's real width
        args.width = _design_width(Path(args.texture))
    _flag_overrides(args, ["width", "height", "dpi", "fiducials", "tile", "label"])
    if args.mask:
        args.overrides.insert(0, "cut_lines=true")
    cfg = resolve_config(ExportConfig, args)
    path = Path(args.texture)
    if not path.is_file():
        raise PhysadvError(f"--texture: file not found: {path}")
    if path.suffix == ".safetensors":  # a texture tensor saved by an attack: key "texture" or the only tensor
        from physadv.core.io import load_checkpoint

        tensors, _ = load_checkpoint(path)
        if "texture" not in tensors and len(tensors) != 1:
            raise PhysadvError(f"--texture {path}: holds {sorted(tensors)}; expected a 'texture' tensor")
        texture = tensors.get("texture", next(iter(tensors.values())))
    else:
        try:
            with Image.open(path) as im:
                has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
        except OSError as exc:
            raise PhysadvError(f"--texture {path}: unreadable image ({exc})") from None
        texture = read_image_array(path, "RGBA" if has_alpha else "RGB")
    mask = read_image_array(args.mask, "L")[:, :, 0] if args.mask else None
    run = start_run("print-export", cfg, args)
    if not cfg.label:
        cfg.label = f"physadv {run.name}"
    layout = export_print(texture, run, cfg, mask=mask)
    r = layout.object_rect
    print(f"object {r.width:.1f} x {r.height:.1f} mm on a {layout.page_width_mm:.1f} x {layout.page_height_mm:.1f} mm sheet"
          f" at {cfg.dpi:g} dpi" + (f", {len(layout.tiles)} {cfg.tile} pages" if layout.tiles else ""))
    finish_run(run, {"object_mm": [r.width, r.height], "page_mm": [layout.page_width_mm, layout.page_height_mm],
                     "dpi": cfg.dpi, "markers": len(layout.markers), "tiles": len(layout.tiles), "files": layout.files,
                     "texture": str(path)})
    return 0


def _chart(args: argparse.Namespace) -> int:
    from physadv.printing.chart import ChartConfig, write_chart

    cfg = resolve_config(ChartConfig, args)
    run = start_run("print-chart", cfg, args)
    layout = write_chart(run, cfg)
    print(f"{len(layout.patches)} patches, markers {[m.id for m in layout.markers]} ({layout.dictionary}); print at 100% "
          f"(no 'fit to page'), photograph it flat and evenly lit, then run `physadv print calibrate --photo PHOTO "
          f"--layout {run / 'layout.json'}`")
    finish_run(run, {"patches": len(layout.patches), "page_mm": [layout.page_width_mm, layout.page_height_mm],
                     "files": layout.files})
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from physadv.core.io import read_image_array, write_image
    from physadv.printing.chart import calibrate, patch_comparison_image, read_chart
    from physadv.printing.colour import save_colour_transform
    from physadv.printing.layout import PrintLayout
    from physadv.printing.printability import palette_from_colours, save_palette

    cfg = resolve_config(CalibrateConfig, args)
    layout = PrintLayout.from_json(args.layout)
    photo = read_image_array(args.photo, "RGB")
    reading = read_chart(photo, layout, inner=cfg.inner, source=str(args.photo))
    run = start_run("print-calibrate", cfg, args)
    results = calibrate(reading, tuple(cfg.kinds))
    metrics: dict = {"photo": str(args.photo), "layout": str(args.layout), "patches": len(reading.intended),
                     "markers_used": reading.markers_used, "reprojection_px": reading.reprojection_px,
                     "colour_space": "sRGB [0, 1] -> sRGB [0, 1]"}
    print(f"{'kind':8s} {'fit dE76':>9s} {'fit dE00':>9s} {'max dE00':>9s} {'corr dE00':>10s}")
    for kind, c in results.items():
        meta = {"photo": str(args.photo), "layout": str(args.layout)}
        save_colour_transform(run / f"colour_{kind}.safetensors", c.forward,
                              {**meta, "direction": "intended -> captured", "fit": c.forward_error})
        save_colour_transform(run / f"colour_{kind}_inverse.safetensors", c.inverse,
                              {**meta, "direction": "captured -> intended", "fit": c.inverse_error})
        metrics[kind] = {"forward": c.forward_error, "inverse": c.inverse_error}
        f = c.forward_error
        print(f"{kind:8s} {f['mean_delta_e76']:9.2f} {f['mean_delta_e2000']:9.2f} {f['max_delta_e2000']:9.2f} "
              f"{c.inverse_error['mean_delta_e2000']:10.2f}")
    best = min(results.values(), key=lambda c: c.forward_error["mean_delta_e2000"])
    metrics["best"] = best.kind
    save_palette(run / "palette.json", palette_from_colours(reading.captured, cfg.palette_size, cfg.seed),
                 source=f"captured chart patches of {args.photo}, k-means to {cfg.palette_size}")
    save_palette(run / "gamut.json", reading.captured,
                 source=f"all captured chart patches of {args.photo} (PrintModel gamut 'hull')")
    write_image(run / "chart_rectified.png", reading.rectified / 255.0)
    write_image(run / f"patches_{best.kind}.png", patch_comparison_image(reading, best) / 255.0)
    np.savetxt(run / "patches.csv", np.concatenate([reading.intended.numpy(), reading.captured.numpy()], 1),
               delimiter=",", header="intended_r,intended_g,intended_b,captured_r,captured_g,captured_b", comments="",
               fmt="%.5f")
    print(f"best: {best.kind} (use colour_{best.kind}.safetensors in PrintModel; patches_{best.kind}.png shows "
          f"intended | captured | corrected per patch)")
    finish_run(run, metrics)
    return 0


__all__ = ["register", "CalibrateConfig"]
