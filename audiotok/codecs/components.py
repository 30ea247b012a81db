"""Registries of the encoder and decoder halves of a codec (contracts: codecs/contracts.py)
and of the global encoders (codecs/global_branch.py).

Every module of this package is imported on the first lookup, so a family registers by
being a file here; encoders and decoders register their classes, which must subclass
`Encoder` / `Decoder`.
"""

from __future__ import annotations

from ..errors import ConfigError
from ..registry import Registry
from .contracts import Decoder, Encoder

ENCODERS = Registry("encoder", packages=("audiotok.codecs",), contract=Encoder,
                    classes_only=True)
DECODERS = Registry("decoder", packages=("audiotok.codecs",), contract=Decoder,
                    classes_only=True)
GLOBAL_ENCODERS = Registry("global encoder", packages=("audiotok.codecs",))


def frame_hop(upsample: int, hop_length: int) -> int:
    """Hop of a decoder that works at `upsample` frames per code frame: hop_length / upsample,
    which must be whole."""
    if hop_length % upsample:
        raise ConfigError(f"decoder upsample ({upsample}) must divide the encoder's "
                          f"hop length ({hop_length})")
    return hop_length // upsample


def check_hop(strides, hop_length: int) -> None:
    """A decoder must upsample by exactly the encoder's hop length."""
    total = 1
    for s in strides:
        total *= int(s)
    if total != hop_length:
        raise ValueError(
            f"decoder strides {list(strides)} multiply to {total}, "
            f"but the encoder's hop length is {hop_length}"
        )
