"""Encoding many utterances per codec call with codes identical to encoding each alone.

Batching pads the shorter items, and in a padded batch a layer sees its neighbours'
activations past an item's end where a lone item sees the layer's own padding: frames within
the encoder's right reach of the end come out different (a few frames of the tiny codec).
`encode_exact` therefore takes the body of each item from the batch and re-encodes only the
tail, with enough left context, as a second batch of equal-length windows that need no
padding (the same argument that makes chunked encoding exact, codecs/chunking.py). Encoders
without a bounded reach (LSTM, full attention) are run one item at a time.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..codecs.base import Codec


def group_by_length(lengths: list[int], budget: int, max_padding: float) -> list[list[int]]:
    """Indices grouped into batches of similar length, shortest first.

    A batch holds at most `budget` samples once padded to its longest item, and pads no item
    by more than `max_padding` of the longest; an item over the budget goes alone (chunked
    encoding bounds its memory).
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    groups: list[list[int]] = []
    for i in order:
        if groups:
            group = groups[-1]
            longest, shortest = lengths[i], lengths[group[0]]
            if ((len(group) + 1) * longest <= budget
                    and longest - shortest <= max_padding * longest):
                group.append(i)
                continue
        groups.append([i])
    return groups


def encode_exact(codec: Codec, wavs: list[Tensor], n_codebooks: int | None,
                 chunk_seconds: float | None) -> list[Tensor]:
    """wavs: [C, T_i] at the codec's rate -> codes long [K, ceil(T_i / hop)] each (rounded up
    to whole groups for codecs with a frame_multiple), equal to
    `codec.encode(wav[None], n_codebooks, chunk_seconds=chunk_seconds).codes` of each item alone.
    Frame codes only: a global branch's per-utterance codes are the caller's (run.py)."""
    reach = codec.encoder.receptive_field()
    if reach is None or len(wavs) == 1:
        return [_frames(codec, w[None], n_codebooks, chunk_seconds=chunk_seconds)[0]
                for w in wavs]
    hop = codec.hop_length
    if codec.frame_multiple > 1:
        return _encode_by_groups(codec, wavs, n_codebooks, chunk_seconds)
    frames = [max(1, math.ceil(w.shape[-1] / hop)) for w in wavs]
    lengths = torch.tensor([w.shape[-1] for w in wavs])
    batch = _stack([w for w in wavs], max(frames) * hop)
    body = _frames(codec, batch, n_codebooks, lengths=lengths,
                   chunk_seconds=chunk_seconds)
    out = [body[i, :, :f] for i, f in enumerate(frames)]

    right = math.ceil(reach[1] / hop) + 1  # tail frames the padding may have touched
    window = right + math.ceil(reach[0] / hop) + 1  # ... plus the left context they need
    long = [i for i, f in enumerate(frames) if f > window]
    if long:
        # each item zero-padded to whole frames, as encode does alone, then its last frames
        tails = torch.stack([_stack([wavs[i]], frames[i] * hop)[0, :, -window * hop:]
                             for i in long])
        codes = _frames(codec, tails, n_codebooks, chunk_seconds=None)
        for j, i in enumerate(long):
            out[i] = torch.cat([out[i][:, :-right], codes[j, :, -right:]], -1)
    for f in sorted({frames[i] for i in range(len(wavs)) if frames[i] <= window}):
        short = [i for i in range(len(wavs)) if frames[i] == f]  # equal frames: no padding
        lens = torch.tensor([wavs[i].shape[-1] for i in short])
        codes = _frames(codec, _stack([wavs[i] for i in short], f * hop), n_codebooks,
                        lengths=lens, chunk_seconds=chunk_seconds)
        for j, i in enumerate(short):
            out[i] = codes[j]
    return out


def _encode_by_groups(codec: Codec, wavs: list[Tensor], n_codebooks: int | None,
                      chunk_seconds: float | None) -> list[Tensor]:
    """Codecs that pad to whole groups of frames (SNAC): an item's codes cover all of its
    padded groups, and a tail cut at an arbitrary frame would regroup them, so items are
    batched only with items of as many groups (each then padded as it is alone)."""
    step = codec.hop_length * codec.frame_multiple
    padded = [max(1, math.ceil(w.shape[-1] / step)) * step for w in wavs]
    out: list[Tensor] = [None] * len(wavs)  # type: ignore[list-item]
    for length in sorted(set(padded)):
        same = [i for i in range(len(wavs)) if padded[i] == length]
        lens = torch.tensor([wavs[i].shape[-1] for i in same])
        codes = _frames(codec, _stack([wavs[i] for i in same], length), n_codebooks,
                        lengths=lens, chunk_seconds=chunk_seconds)
        for j, i in enumerate(same):
            out[i] = codes[j]
    return out


def _frames(codec: Codec, wav: Tensor, n_codebooks: int | None, **kwargs) -> Tensor:
    """`codec.encode(...).codes` without a global branch's per-utterance codes, which the
    corpus tokenizer takes from each item alone (run.py); codecs without one (an OnnxCodec
    among them) encode as they always do."""
    encode = getattr(codec, "_encode_frames", codec.encode)
    return encode(wav, n_codebooks, **kwargs).codes


def _stack(wavs: list[Tensor], length: int) -> Tensor:
    """[C, T_i] items -> [B, C, length], zero-padded at the end."""
    return torch.stack([torch.nn.functional.pad(w, (0, length - w.shape[-1])) for w in wavs])
