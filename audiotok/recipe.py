"""Recipe files: YAML with an optional `extends:` base and dotted `key=value` overrides."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from .errors import ConfigError


def deep_merge(base: dict, override: dict) -> dict:
    """Return `base` updated by `override`; nested mappings merge, everything else replaces.
    A component mapping whose `type` the override changes is replaced whole: the options of
    the old type mean nothing to the new one (an overlay swapping `model.quantizer`)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) \
                and value.get("type", out[key].get("type")) == out[key].get("type"):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_recipe(path, _seen: tuple = ()) -> dict:
    """Read a recipe, resolving `extends: other.yaml` (relative to the file) recursively."""
    path = Path(path).resolve()
    if path in _seen:
        raise ConfigError(f"{path}: recipe extends itself through {' -> '.join(map(str, _seen))}")
    if not path.is_file():
        raise ConfigError(f"{path}: no such recipe file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping at the top level")
    base = data.pop("extends", None)
    if base is None:
        return data
    return deep_merge(load_recipe(path.parent / base, _seen + (path,)), data)


def apply_overrides(recipe: dict, overrides: list[str]) -> dict:
    """Apply `a.b.c=value` strings (value parsed as YAML) to a recipe dict."""
    out = copy.deepcopy(recipe)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key.path=value")
        key, raw = item.split("=", 1)
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{key}': '{part}' is not a mapping")
        node[parts[-1]] = yaml.safe_load(raw)
    return out
