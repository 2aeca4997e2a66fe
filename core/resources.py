"""Files that ship with physadv (default configs, the printable palette), found from any working directory.

A relative path such as ``configs/printing/palette.yaml`` names a file of the installed package data
(``physadv.configs``) when no such file exists where the job runs; a path that exists is taken as it is.
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path

PACKAGED_PREFIX = "configs/"


def packaged(relative: str) -> Path:
    """The shipped file ``configs/<relative>`` (``relative`` with or without the ``configs/`` prefix)."""
    rel = relative[len(PACKAGED_PREFIX):] if relative.startswith(PACKAGED_PREFIX) else relative
    return Path(str(files("physadv.configs").joinpath(rel)))


def resolve_file(path: str | Path) -> Path:
    """``path`` if it exists; else, for ``configs/...``, the shipped copy; else ``path`` unchanged (the caller says it is missing)."""
    p = Path(path)
    if p.exists() or p.is_absolute() or not str(path).startswith(PACKAGED_PREFIX):
        return p
    shipped = packaged(str(path))
    return shipped if shipped.exists() else p
