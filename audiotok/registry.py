"""Name -> (config dataclass, builder) registries for components chosen in recipes.

A component registers itself where it is defined, with a decorator on its class (or on a
builder function):

    @ENCODERS.register("seanet", SEANetConfig)
    class SEANetEncoder(Encoder): ...

No package `__init__` has to import it for that: a registry imports every module of the
packages it names (`packages`) the first time anything is looked up in it, so a new component
type is a new file and nothing else.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError, did_you_mean
from .strict_config import from_dict, to_dict


class Component:
    """What a registered component class offers its registry and the codec that holds it.

    Both hooks are class methods: they run before anything is built."""

    @classmethod
    def check_declarations(cls, config_cls: type) -> None:
        """TypeError, naming the class, unless its capability flags and hooks agree; run once,
        when the class is registered (codecs/contracts.py checks encoders and decoders)."""

    @classmethod
    def check_codec(cls, codec) -> None:
        """ConfigError unless the whole codec config (`CodecConfig`: every part's spec, the
        channels, the latent width) suits this component; run before the codec builds its
        parts. Most components need nothing of the others (the default)."""


@dataclass(frozen=True)
class Entry:
    config_cls: type
    build: Callable[..., Any]
    component: type | None = None  # the class, where a class (not a function) registered


class Registry:
    """A table of components of one kind (encoder, quantizer, ...), each with a typed config.

    A component spec is a dict ``{"type": name, **config}``; `build` validates the config
    against the registered dataclass and calls the builder with it plus any extra arguments
    the caller wires in (such as the latent dimension shared by encoder and quantizer).
    Wiring a builder does not name in its signature is left out, so a component takes only
    what it uses (the codec offers every encoder and decoder its sample rate; the F0
    estimator and the harmonic comb take it).

    `packages`: dotted names of the packages whose modules register here, imported on the
    first lookup. `contract`: a `Component` subclass every registered class must subclass
    (its `check_declarations` runs at registration); with `classes_only`, builder functions
    are refused, so every entry's class is known before it is built.
    """

    def __init__(self, kind: str, packages: tuple[str, ...] = (),
                 contract: type[Component] | None = None, classes_only: bool = False):
        self.kind = kind
        self.packages = tuple(packages)
        self.contract = contract
        self.classes_only = classes_only
        self._entries: dict[str, Entry] = {}
        self._discovered = not self.packages

    def register(self, name: str, config_cls: type):
        def deco(obj):
            if name in self._entries:
                raise KeyError(f"{self.kind} '{name}' registered twice")
            self._entries[name] = Entry(config_cls, obj, self._check_component(name, obj,
                                                                               config_cls))
            return obj
        return deco

    def _check_component(self, name: str, obj, config_cls: type) -> type | None:
        where = f"{self.kind} '{name}'"
        if not inspect.isclass(obj):
            if self.classes_only:
                raise TypeError(f"{where}: register the {self.kind} class itself (a subclass "
                                f"of {self.contract.__qualname__}), not a builder function")
            return None
        if self.contract is not None:
            if not issubclass(obj, self.contract):
                raise TypeError(f"{where}: {obj.__qualname__} must subclass "
                                f"{self.contract.__module__}.{self.contract.__qualname__}")
            obj.check_declarations(config_cls)
        return obj

    def discover(self) -> None:
        """Import every module of `packages` (once), registering what they define."""
        if self._discovered:
            return
        self._discovered = True  # first: a module imported below may look something up
        try:
            for package in self.packages:
                pkg = importlib.import_module(package)
                for info in pkgutil.iter_modules(pkg.__path__):
                    importlib.import_module(f"{package}.{info.name}")
        except BaseException:
            self._discovered = False  # the next lookup tries again, and fails the same way
            raise

    def names(self, sort: bool = True) -> list[str]:
        """The registered names, sorted; with sort=False, in the order they registered."""
        self.discover()
        return sorted(self._entries) if sort else list(self._entries)

    def entry(self, name: str) -> Entry:
        self.discover()
        if name not in self._entries:
            raise ConfigError(
                f"unknown {self.kind} type '{name}'{did_you_mean(name, self._entries)}; "
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

    def check_codec(self, spec: dict, codec) -> None:
        """The `check_codec` hook of the class `spec` names (nothing for builder functions)."""
        component = self.entry(spec["type"]).component
        if component is not None and self.contract is not None:
            component.check_codec(codec)

    def normalise(self, spec: dict, where: str) -> dict:
        """The spec with every default filled in, as saved into config.json."""
        name, cfg = self.parse(spec, where)
        return {"type": name, **to_dict(cfg)}
