"""The offline graphs: encoder + quantizer as one module, quantizer decode + decoder as one.

    EncodeGraph:  wav float [B, C, T] (T a multiple of hop * frame_multiple)
                  -> codes long [B, K, T / hop]    (all K levels)
    DecodeGraph:  codes long [B, K, T'] (rows of levels left out: -1)
                  -> wav float [B, C, T' * output_hop]

One encoder graph serves every codebook count: a residual quantizer's level i is computed
from what levels < i left over, never from deeper levels, so the codes of the first k levels
are the first k rows of the codes of all K (rvq, split_rvq, grvq's level-major rows,
msrvq, pitch_rvq; vq and fsq have one level). export/onnx.py checks this per codec.

One decoder graph serves every count too: rows of -1 mark levels that are absent. Every
multi-level quantizer decodes by summing one codeword lookup per level (through projections
that map zero to zero where they follow the sum), so an absent level contributing exactly zero
gives what decoding the first k rows alone gives (`absent_levels_as_zero`).

The streaming step graphs (causal codecs) take one piece of m whole frames and every state
tensor (export/step_layers.py), and return the piece's result and the new states:

    EncodeStepGraph:  wav [B, C, m * hop], states...  -> codes long [B, K, m], states...
    DecodeStepGraph:  codes [B, K, m], states...      -> wav [B, C, m * output_hop], states...

A first call must hold `first_frames` frames (more than one where reflect padding mirrors
samples ahead at the start of a signal, EnCodec's layout); later calls any number.
"""

from __future__ import annotations

import contextlib
from fractions import Fraction

from torch import Tensor, nn

from ..codecs.streaming import check_streamable, decoder_stages, encoder_stages
from ..errors import AudiotokError
from ..quantizers.vq import VectorQuantizer
from .step_layers import SequenceStep, stage_module, step_layer


@contextlib.contextmanager
def absent_levels_as_zero(quantizer: nn.Module):
    """While active, every codebook level of `quantizer` maps code -1 to a zero vector (after
    its output projection), so decoding K rows of which the last K - k are -1 equals
    decoding the first k rows. For tracing the decoder graph only."""
    levels = [m for m in quantizer.modules() if isinstance(m, VectorQuantizer)]

    def masked(level: VectorQuantizer):
        lookup = level.lookup  # the bound method, before the instance attribute shadows it

        def run(codes: Tensor) -> Tensor:
            present = (codes >= 0)[:, None, :]
            z = lookup(codes.clamp(min=0))
            return z * present.to(z.dtype)
        return run

    for level in levels:
        level.lookup = masked(level)
    try:
        yield
    finally:
        for level in levels:
            del level.lookup


class EncodeGraph(nn.Module):
    """wav [B, C, T] -> codes long [B, K, T / hop]: the codec's encoder and quantizer."""

    def __init__(self, codec):
        super().__init__()
        self.encoder, self.quantizer = codec.encoder, codec.quantizer

    def forward(self, wav: Tensor) -> Tensor:
        return self.quantizer.encode(self.encoder(wav), None)


class DecodeGraph(nn.Module):
    """codes long [B, K, T'] (-1 rows: absent levels) -> wav [B, C, T' * output_hop]. Trace
    it inside `absent_levels_as_zero(codec.quantizer)`."""

    def __init__(self, codec):
        super().__init__()
        self.quantizer, self.decoder = codec.quantizer, codec.decoder

    def forward(self, codes: Tensor) -> Tensor:
        return self.decoder(self.quantizer.decode(codes))


def step_layers(codec, side: str) -> SequenceStep:
    """The step form of the codec's encoder or decoder ("encoder" / "decoder"), layer by layer
    as codecs/streaming.py streams it; AudiotokError saying what cannot stream."""
    try:
        check_streamable(codec)
    except ValueError as e:
        raise AudiotokError(str(e)) from None
    stages = encoder_stages(codec.encoder, codec.hop_length) if side == "encoder" \
        else decoder_stages(codec.decoder, codec.hop_length)
    try:
        return SequenceStep([step_layer(stage_module(s)) for s in stages])
    except AudiotokError as e:
        raise AudiotokError(f"cannot build a streaming graph for codec "
                            f"'{codec.config.family}': its {side} has {e}") from None


class EncodeStepGraph(nn.Module):
    """wav [B, C, m * hop], *states -> (codes long [B, K, m], *new states)."""

    def __init__(self, codec):
        super().__init__()
        self.layers, self.quantizer = step_layers(codec, "encoder"), codec.quantizer
        self.states = self.layers.states
        # frames the first call must hold (reflect padding mirrors samples ahead)
        self.first_frames = self.layers.first_frames(Fraction(codec.hop_length))[0]

    def forward(self, wav: Tensor, *states: Tensor):
        z, new = self.layers(wav, list(states))
        return (self.quantizer.encode(z, None), *new)


class DecodeStepGraph(nn.Module):
    """codes long [B, K, m] (-1 rows: absent levels), *states -> (wav [B, C, m * output_hop],
    *new states). Trace inside `absent_levels_as_zero(codec.quantizer)`."""

    def __init__(self, codec):
        super().__init__()
        self.quantizer, self.layers = codec.quantizer, step_layers(codec, "decoder")
        self.states = self.layers.states
        self.first_frames = self.layers.first_frames(Fraction(1))[0]

    def forward(self, codes: Tensor, *states: Tensor):
        wav, new = self.layers(self.quantizer.decode(codes), list(states))
        return (wav, *new)
