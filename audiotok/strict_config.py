"""Typed configs: dataclasses built strictly from dicts (recipes, config.json).

Unknown keys are errors that name the key and the closest valid one, so a typo in a recipe
never silently falls back to a default. Numbers must be finite (YAML's .inf and .nan are
refused). Every key of a mapping is checked before the first error is raised, and all the
errors found are reported together, so a recipe is fixed in one go, not one error per run.
The value "???" marks a key that must be set (`--set key=...`).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, TypeVar

from .errors import ConfigError, did_you_mean

T = TypeVar("T")
UNSET = "???"  # a recipe value the user must set


def check_ranges(obj, positive: tuple[str, ...] = (), at_least_0: tuple[str, ...] = ()) -> None:
    """In a config's __post_init__: ValueError naming the first field out of range (None
    passes: it means "use the default")."""
    for names, ok, what in ((positive, lambda v: v > 0, "> 0"),
                            (at_least_0, lambda v: v >= 0, ">= 0")):
        for name in names:
            value = getattr(obj, name)
            if value is not None and not ok(value):
                raise ValueError(f"{name} must be {what}, got {value}")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        item_tp = args[1] if len(args) == 2 else Any
        return {k: _coerce(v, item_tp, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # PyYAML reads 1e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: dict, where: str = "") -> T:
    """Build dataclass `cls` from `data`, validating keys and types recursively; raises one
    ConfigError listing every problem found ("; "-separated)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs, errors = {}, []
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in fields:
            errors.append(f"unknown key '{path}'{did_you_mean(key, fields)}")
        elif value == UNSET:
            errors.append(f"'{path}' must be set (e.g. --set {path}=...)")
        else:
            try:
                kwargs[key] = _coerce(value, hints[key], path)
            except ConfigError as e:
                errors.append(str(e))
    missing = [
        n for n, f in fields.items()
        if n not in data and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
    ]
    errors += [f"{where or cls.__name__}: missing required key '{n}'" for n in missing]
    if errors:
        raise ConfigError("; ".join(errors))
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where or cls.__name__}: {e}") from None


def to_dict(obj) -> dict:
    """Dataclass -> plain dict of JSON/YAML types (tuples become lists)."""
    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return plain(obj)
