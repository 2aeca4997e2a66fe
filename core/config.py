"""Strict YAML configs loaded into typed dataclasses.

A config class is a plain ``@dataclass`` whose fields have defaults; nested dataclasses
become nested YAML mappings. Loading is strict: an unknown or misspelt key is an error
that names the key and the file, and a value of the wrong type names the field.

    cfg = load_config(TrainConfig, packaged("core/lenet_mnist.yaml"), ["epochs=3", "optim.lr=0.01"])  # core.resources
    save_config(cfg, run_dir / "config.yaml")
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from physadv.core.errors import PhysadvError

T = TypeVar("T")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check (and gently convert) ``value`` against the annotation ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arm in args:
            if arm is type(None):
                continue
            try:
                return _coerce(value, arm, where)
            except PhysadvError:
                pass
        raise PhysadvError(f"{where}: {value!r} is not a {_type_name(tp)}")
    if origin is typing.Literal:
        if value not in args:
            raise PhysadvError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise PhysadvError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return _build(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise PhysadvError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise PhysadvError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise PhysadvError(f"{where}: expected a mapping, got {value!r}")
        vt = args[1] if args else Any
        return {k: _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PhysadvError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise PhysadvError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise PhysadvError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise PhysadvError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def _join(where: str, key: str) -> str:
    """'config (f.yaml)' + 'optim' -> 'config (f.yaml): optim'; then '...: optim.lr'."""
    return f"{where}.{key}" if ": " in where else f"{where}: {key}"


def _build(cls: type[T], data: dict, where: str) -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise PhysadvError(f"{_join(where, str(key))}: unknown key{hint}; known keys here: {', '.join(fields)}")
        kwargs[key] = _coerce(value, hints[key], _join(where, key))
    try:
        obj = cls(**kwargs)
    except TypeError as exc:  # a required field was left out
        raise PhysadvError(f"{where}: {exc}") from None
    check = getattr(obj, "validate", None)
    if callable(check):
        try:
            check()
        except (ValueError, AssertionError) as exc:
            raise PhysadvError(f"{where}: {exc}") from None
    return obj


def parse_overrides(overrides: list[str] | None) -> dict:
    """Turn ``["a.b=3", "name=x"]`` into a nested mapping; values are parsed as YAML."""
    tree: dict = {}
    for item in overrides or []:
        if "=" not in item:
            raise PhysadvError(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = tree
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise PhysadvError(f"--set {item!r}: '{part}' is not a section")
        node[parts[-1]] = value
    return tree


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Load ``path`` (or the class defaults when None) into ``cls``, then apply ``--set`` overrides."""
    data: dict = {}
    source = "defaults"
    if path is not None:
        from physadv.core.resources import resolve_file

        path = resolve_file(path)  # configs/... from any working directory: the shipped copy
        source = str(path)
        if not path.is_file():
            raise PhysadvError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise PhysadvError(f"{path}: not valid YAML ({exc.__class__.__name__}: {str(exc).splitlines()[0]})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise PhysadvError(f"{path}: the top level must be a mapping of keys")
        data = loaded
    if overrides:
        data = _merge(data, parse_overrides(overrides))
        source += " + --set"
    return _build(cls, data, f"config ({source})")


def from_dict(cls: type[T], data: dict, source: str = "mapping") -> T:
    """Build a config object from an in-memory mapping, with the same strictness as files."""
    return _build(cls, data, f"config ({source})")


def added_later(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING) -> Any:
    """A config field for an option added after results were cached under ``config_hash``: at its default it is left
    out of the hash, so a config that does not use the option keeps its hash, and its caches and checkpoints."""
    return dataclasses.field(default=default, default_factory=factory, metadata={"added_later": True})


def _at_added_later_default(cfg: Any, f: dataclasses.Field) -> bool:
    if not f.metadata.get("added_later"):
        return False
    return getattr(cfg, f.name) == (f.default if f.default is not dataclasses.MISSING else f.default_factory())


def to_dict(cfg: Any, for_hash: bool = False) -> dict:
    """The config as plain YAML-able data (tuples become lists); ``for_hash``: without the ``added_later`` fields
    that are at their defaults."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)
                    if not (for_hash and _at_added_later_default(v, f))}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, Path):
            return str(v)
        return v

    return plain(cfg)


def dump_config(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def save_config(cfg: Any, path: str | Path) -> Path:
    """Write the resolved config beside a run's outputs (atomically)."""
    from physadv.core.io import atomic_write_text

    return atomic_write_text(path, dump_config(cfg))


def config_hash(cfg: Any, length: int = 12) -> str:
    """A stable short hash of a config's content, for caches (fields ``added_later`` count only when set)."""
    import hashlib
    import json

    blob = json.dumps(to_dict(cfg, for_hash=True), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]
