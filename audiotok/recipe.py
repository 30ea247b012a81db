"""Recipe files: YAML with an optional `extends:` base and dotted `key=value` overrides."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from .errors import ConfigError

# recipes/ was one flat folder until it split into designs/, speech_16k/ (the bundled model's
# stages) and finetune/: a path of the flat layout gets an error naming the file's new place
_STAGES = ("gla", "pitch", "env", "hnm", "hnm_noise", "stoi", "stoi2", "stoi3")
_RENAMED = {"finetune_mimi.yaml": "finetune/mimi.yaml",
            **{f"speech_16k_{s}.yaml": f"speech_16k/{i}_{s}.yaml"
               for i, s in enumerate(_STAGES, 1)}}
_RETIRED = ("speech_16k.yaml", "speech_16k_stft.yaml", "speech_16k_voiced.yaml")


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
        raise ConfigError(f"{path}: no such recipe file{_moved(path)}")
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


def _moved(path: Path) -> str:
    """Where a recipe of the flat recipes/ layout went, as the end of an error message."""
    if path.parent.name != "recipes":
        return ""
    if path.name in _RETIRED:
        return (f" (the {path.stem} experiment was retired; the history in audiotok/assets/"
                f"models/speech-16k/README.md says where git keeps it)")
    new = _RENAMED.get(path.name, f"designs/{path.name}")
    return f" (it moved to recipes/{new})" if (path.parent / new).is_file() else ""


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
