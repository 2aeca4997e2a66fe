"""Attack names -> classes, and ``get_attack(name, model, **params)`` with strict parameter checking."""
from __future__ import annotations

import difflib
import inspect

from torch import nn

from physadv.attacks.base import Attack
from physadv.attacks.deepfool import DeepFool
from physadv.attacks.gradient import BIM, FGSM, PGD, MinimalFGSM
from physadv.attacks.spatial import SpatialAttack
from physadv.attacks.universal import UniversalPerturbation
from physadv.core.errors import PhysadvError

ATTACKS: dict[str, type[Attack]] = {
    "fgsm": FGSM,
    "fgsm-min": MinimalFGSM,
    "bim": BIM,
    "pgd": PGD,
    "deepfool": DeepFool,
    "uap": UniversalPerturbation,
    "spatial": SpatialAttack,
}


def register_attack(name: str, cls: type[Attack]) -> None:
    ATTACKS[name] = cls


def attack_names() -> list[str]:
    return sorted(ATTACKS)


def attack_class(name: str) -> type[Attack]:
    if name not in ATTACKS:
        close = difflib.get_close_matches(name, ATTACKS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise PhysadvError(f"unknown attack '{name}'{hint}; known: {', '.join(attack_names())}")
    return ATTACKS[name]


def attack_parameters(name: str) -> dict:
    """The keyword parameters of an attack and their defaults (without ``model``)."""
    sig = inspect.signature(attack_class(name).__init__)
    return {k: p.default for k, p in sig.parameters.items() if k not in ("self", "model")}


def get_attack(name: str, model: nn.Module, **params) -> Attack:
    """``get_attack("deepfool", model, overshoot=0.02)``; an unknown name or parameter is a PhysadvError."""
    cls = attack_class(name)
    known = attack_parameters(name)
    for key in params:
        if key not in known:
            raise PhysadvError(f"attack '{name}' has no parameter '{key}'; known: {', '.join(known)}")
    return cls(model, **params)
