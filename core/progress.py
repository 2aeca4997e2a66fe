"""Progress bars for long work: shown on a terminal, quiet in logs and CI unless PHYSADV_PROGRESS=1."""
from __future__ import annotations

import os
from typing import Any, Iterable


def progress(iterable: Iterable | None = None, **kwargs: Any):
    """``tqdm`` with the project's defaults (same arguments as tqdm)."""
    from tqdm import tqdm

    forced = os.environ.get("PHYSADV_PROGRESS")
    if "disable" not in kwargs or kwargs["disable"] is False:
        kwargs["disable"] = None if forced is None else forced == "0"  # None: only on a terminal
    kwargs.setdefault("mininterval", 0.5)
    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
