"""Shared foundation of physadv: strict configs, safe I/O, datasets and victim classifiers.

Every other package may import `core`; `core` imports none of them (DESIGN.md §4).
"""
if __name__ != "physadv.core":  # the repository folder imported under a generic name: refuse, one module has one name
    raise ImportError("physadv's packages import as physadv.<package> (here physadv.core), never as a top-level 'core'")
from physadv.core.errors import PhysadvError

__all__ = ["PhysadvError"]
