"""Name -> (config dataclass, builder) registries for components chosen in recipes."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .config import from_dict, nearest, to_dict
from .errors import ConfigError


@dataclass(frozen=True)
class Entry:
    config_cls: type
    build: Callable[..., Any]


class Registry:
    """A table of components of one kind (encoder, quantizer, ...), each with a typed config.

    A component spec is a dict ``{"type": name, **config}``; `build` validates the config
    against the registered dataclass and calls the builder with it plus any extra arguments
    the caller wires in (such as the latent dimension shared by encoder and quantizer).
    Wiring a builder does not name in its signature is left out, so a component takes only
    what it uses (the codec offers every encoder and decoder its sample rate; the F0
    estimator and the harmonic comb take it).
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, config_cls: type):
        def deco(fn):
            if name in self._entries:
                raise KeyError(f"{self.kind} '{name}' registered twice")
            self._entries[name] = Entry(config_cls, fn)
            return fn
        return deco

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entry(self, name: str) -> Entry:
        if name not in self._entries:
            raise ConfigError(
                f"unknown {self.kind} type '{name}'{nearest(name, self._entries)}; "
                f"choose from {', '.join(self.names())}"
            )
        return self._entries[name]

    def parse(self, spec: dict, where: str):
        """Validate a ``{"type": ..., **cfg}`` dict; return (name, config dataclass)."""
        if not isinstance(spec, dict) or "type" not in spec:
            raise ConfigError(f"{where}: needs a 'type' key naming the {self.kind}")
        name = spec["type"]
        cfg = {k: v for k, v in spec.items() if k != "type"}
        return name, from_dict(self.entry(name).config_cls, cfg, where)

    def build(self, spec: dict, where: str, **wiring):
        name, cfg = self.parse(spec, where)
        builder = self.entry(name).build
        params = inspect.signature(builder).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            wiring = {k: v for k, v in wiring.items() if k in params}
        return builder(cfg, **wiring)

    def normalise(self, spec: dict, where: str) -> dict:
        """The spec with every default filled in, as saved into config.json."""
        name, cfg = self.parse(spec, where)
        return {"type": name, **to_dict(cfg)}
