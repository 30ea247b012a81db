"""Registries and contracts for the encoder and decoder halves of a codec.

Encoder contract (registered in ENCODERS, built as ``build(cfg, channels=C, latent_dim=D)``,
plus ``sample_rate=SR`` for builders that name it):
    attribute ``hop_length: int``       samples per output frame (product of strides)
    ``forward(wav [B, C, T]) -> z [B, D, T // hop_length]``; T is a multiple of hop_length
    ``receptive_field() -> (left, right) | None``: input samples before/after a frame's
        window that can change that frame (an upper bound is fine); None = unbounded (LSTM,
        full attention).

Decoder contract (registered in DECODERS, built as
``build(cfg, channels=C, latent_dim=D, hop_length=H)``, plus ``sample_rate=SR`` for builders
that name it):
    ``forward(z [B, D, T']) -> wav [B, C, T' * H]``
    ``receptive_field() -> (left, right) | None`` in frames: how many neighbouring frames on
        each side can change the samples of a frame; None = unbounded.

Global encoder contract (registered in GLOBAL_ENCODERS, built as
``build(cfg, channels=C, sample_rate=SR, dim=D)``; codecs/global_branch.py):
    ``forward(wav [B, C, T]) -> [B, D]``: one vector per item over all of its samples (the
        caller passes each item's valid samples alone, so no padding reaches it).
"""

from __future__ import annotations

from ..registry import Registry

ENCODERS = Registry("encoder")
DECODERS = Registry("decoder")
GLOBAL_ENCODERS = Registry("global encoder")


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
