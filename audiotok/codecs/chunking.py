"""Bounded-memory encoding and decoding of long signals by overlapping chunks.

Why the result is exact for convolutional stacks: every layer maps frame-aligned positions
to frame-aligned positions (see modules/conv.py), so if a chunk starts on a frame boundary
its frames line up with the whole-signal frames. A frame differs from the whole-signal
frame only if its receptive field reaches past the chunk's cut edges, where the layers see
padding instead of signal. We therefore run each chunk with enough context on both sides to
cover the receptive field and keep only the frames whose field lies inside. At the true
ends of the signal the chunk sees the same padding the whole signal sees.

For stacks whose receptive field is unbounded (LSTM, full attention) the same scheme runs
with a fixed context; the result is then close to, not equal to, whole-signal processing.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

UNBOUNDED_CONTEXT_SECONDS = 1.0


def plan_chunks(n_frames: int, chunk_frames: int, left: int, right: int, align: int = 1):
    """Yield (start, end, keep_start, keep_end) in frames: run [start, end), keep [ks, ke).

    `align` > 1 (codecs that group frames: SNAC's attention windows and pooled quantizer
    levels; n_frames is then a multiple of it): chunk sizes and contexts are rounded up to
    multiples of `align`, so every cut falls on a group boundary, as in the whole signal."""
    def up(n: int) -> int:
        return -(-n // align) * align

    chunk_frames, left, right = up(chunk_frames), up(left), up(right)
    for a in range(0, n_frames, chunk_frames):
        b = min(a + chunk_frames, n_frames)
        yield max(a - left, 0), min(b + right, n_frames), a, b


def encode_chunked(encode_fn: Callable[[Tensor], Tensor], wav: Tensor, hop: int,
                   reach: tuple[int, int], chunk_frames: int, align: int = 1) -> Tensor:
    """wav [B, C, T] (T a multiple of hop * align) -> encode_fn's [B, K, T/hop] output,
    chunk-wise.

    `reach` = (left, right) input samples around a frame's own window that affect it;
    `align`: frames per group that chunks must not cut (see plan_chunks).
    """
    n_frames = wav.shape[-1] // hop
    left = math.ceil(reach[0] / hop) + 1
    right = math.ceil(reach[1] / hop) + 1
    pieces = []
    for s, e, a, b in plan_chunks(n_frames, chunk_frames, left, right, align):
        out = encode_fn(wav[..., s * hop: e * hop])
        pieces.append(out[..., a - s: b - s])
    return torch.cat(pieces, dim=-1)


def decode_chunked(decode_fn: Callable[[Tensor, int], Tensor], codes: Tensor, hop: int,
                   reach: tuple[int, int], chunk_frames: int, align: int = 1) -> Tensor:
    """codes [B, K, T'] -> decode_fn's [B, C, T' * hop] output, chunk-wise.

    `reach` = (left, right) frames around a frame that affect its samples. decode_fn gets
    (the chunk's codes with their context, the index in `codes` of their first frame).
    """
    n_frames = codes.shape[-1]
    pieces = []
    for s, e, a, b in plan_chunks(n_frames, chunk_frames, reach[0] + 1, reach[1] + 1, align):
        out = decode_fn(codes[..., s:e], s)
        pieces.append(out[..., (a - s) * hop: (b - s) * hop])
    return torch.cat(pieces, dim=-1)
