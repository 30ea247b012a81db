"""The reconstruction-loss contract and registry: losses comparing the decoded audio with its
reference, which a recipe weights by name.

A loss registers its class where it is defined, with its name and config dataclass:

    @RECONSTRUCTION_LOSSES.register("mel", MelLossConfig)
    class MultiResolutionMelLoss(ReconstructionLoss): ...

A recipe then weights it by that name (`losses.weights.mel: 15`) and sets its options in the
section `losses.<name>` (`losses.mel: {n_mels: [...]}`), or in the section the class names
(`section`). The trainer builds each weighted loss as ``cls(cfg=..., sample_rate=SR)``, giving
only the arguments its constructor names, and calls it ``loss(ref, est) -> scalar`` on
wav [B, C, T] at the codec's output rate. Nothing else changes for a new loss: the recipe's
`losses` section takes one key per registered loss with options (train/recipe_config.py).
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import ClassVar

from torch import Tensor, nn

from ..registry import Component, Registry
from ..strict_config import from_dict

WIRING = ("cfg", "sample_rate")  # what a loss's constructor may take


@dataclasses.dataclass
class NoOptions:
    """The config of a loss without options: it has no `losses.<section>`."""


class ReconstructionLoss(nn.Module, Component):
    """ref, est [B, C, T] (or [B, T]) -> scalar tensor; reference first, like every loss and
    metric in audiotok."""

    # the `losses.<section>` holding its options, where not its own name (EnCodec's and
    # Parallel WaveGAN's STFT losses both read `losses.stft`, as recipes have written them)
    section: ClassVar[str | None] = None
    # computed every step whatever its weight, for the logs (DAC's mel distance)
    always_logged: ClassVar[bool] = False

    def forward(self, ref: Tensor, est: Tensor) -> Tensor:
        raise NotImplementedError

    @classmethod
    def check_declarations(cls, config_cls: type) -> None:
        params = inspect.signature(cls).parameters
        unknown = [n for n, p in params.items() if n not in WIRING and p.default is p.empty
                   and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if unknown:
            raise TypeError(f"{cls.__qualname__}: its constructor may take {' and '.join(WIRING)}"
                            f", not {', '.join(unknown)}")
        if dataclasses.fields(config_cls) and "cfg" not in params:
            raise TypeError(f"{cls.__qualname__} registers options ({config_cls.__qualname__}) "
                            f"but its constructor takes no cfg")


# every module of the package is imported on the first lookup: a loss registers by being defined
RECONSTRUCTION_LOSSES = Registry("reconstruction loss", packages=("audiotok.losses",),
                                 contract=ReconstructionLoss, classes_only=True)


def reconstruction_losses() -> list[str]:
    """The registered names in the order they registered: spectral.py's four in file order,
    then stoi and waveform, as losses/__init__.py imports them. The trainer computes and sums
    the weighted losses in this order, the order it used before the registry, so its float
    sums are unchanged (tests/test_losses.py pins it)."""
    return RECONSTRUCTION_LOSSES.names(sort=False)


def options_section(name: str) -> str | None:
    """The `losses.<section>` holding the options of loss `name`; None for a loss without."""
    entry = RECONSTRUCTION_LOSSES.entry(name)
    if not dataclasses.fields(entry.config_cls):
        return None
    return entry.component.section or name


def options_sections() -> list[str]:
    """Every options section a recipe's `losses` may hold (a shared one once)."""
    return sorted({s for n in reconstruction_losses() if (s := options_section(n))})


def build_reconstruction_loss(name: str, options: dict, sample_rate: int
                              ) -> ReconstructionLoss:
    """Loss `name` with `options` (its `losses.<section>`, validated against its config)."""
    entry = RECONSTRUCTION_LOSSES.entry(name)
    section = options_section(name)
    cfg = from_dict(entry.config_cls, options if section else {}, f"losses.{section or name}")
    params = inspect.signature(entry.build).parameters
    wiring = {"cfg": cfg, "sample_rate": sample_rate}
    return entry.build(**{k: v for k, v in wiring.items() if k in params})
