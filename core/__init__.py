"""Shared foundation of physadv: strict configs, safe I/O, datasets and victim classifiers.

Every other package may import `core`; `core` imports none of them (DESIGN.md §4).
"""
from core.errors import PhysadvError

__all__ = ["PhysadvError"]
