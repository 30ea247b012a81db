"""Token layouts for language models over codec codes, each with its exact inverse.

Codes are integer arrays [..., K, T] (K codebook levels, T frames; torch or numpy, any
leading batch shape); results are int64 of the same kind. Every inverse checks its input and
raises ValueError on tokens the forward map cannot produce, so a model's bad sample is an
error, not silently wrong audio.

    tokens = flatten(codes, sizes)               # [..., T*K]: t0k0 t0k1 ... t1k0 ...
    codes = unflatten(tokens, sizes)
    delayed = delay(codes, pad=PAD)              # MusicGen: level k starts k steps late
    codes = undelay(delayed, pad=PAD)
    semantic, acoustic = group(codes, [1, 7], sizes)   # one stream per group of levels
    vocab = TextAudioVocab(len(text_tokenizer), sizes) # audio ids after the text ids
    ids = vocab.encode(codes); codes = vocab.decode(ids)
    tokens = flatten_tree(codes, sizes, strides)   # multi-rate codecs (SNAC): each code once
    codes = unflatten_tree(tokens, sizes, strides)
    ids = prepend_global(global_codes, tokens, global_sizes, offset=sum(sizes))
    global_codes, tokens = split_global(ids, global_sizes, offset=sum(sizes))

Per-utterance codes (Tokens.global_codes, FreeCodec's timbre) go first, as a prefix the LM
reads before the frames (a speaker prompt), in ids of their own after the frame levels':
`offset` is the first free id, sum(codebook_sizes) (+ the text vocabulary, if any) for
streams made by flatten / flatten_tree / TextAudioVocab.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch
from torch import Tensor


def level_offsets(codebook_sizes: Sequence[int], offset: int = 0) -> list[int]:
    """First id of each level when the levels' vocabularies are laid end to end."""
    starts = [offset]
    for size in codebook_sizes[:-1]:
        starts.append(starts[-1] + int(size))
    return starts


def flatten(codes, codebook_sizes: Sequence[int], offset: int = 0):
    """codes [..., K, T] -> tokens [..., T*K], frame-major, level k shifted by
    `offset` + sizes[0] + ... + sizes[k-1] so that every (level, code) has its own id."""
    x, to_numpy = _tensor(codes)
    _check_levels(x, codebook_sizes)
    _check_range(x, codebook_sizes, "codes")
    shifted = x + torch.tensor(level_offsets(codebook_sizes, offset))[:, None]
    out = shifted.transpose(-1, -2).reshape(*x.shape[:-2], x.shape[-2] * x.shape[-1])
    return _back(out, to_numpy)


def unflatten(tokens, codebook_sizes: Sequence[int], offset: int = 0):
    """Inverse of `flatten`: tokens [..., T*K] -> codes [..., K, T]."""
    x, to_numpy = _tensor(tokens)
    k = len(codebook_sizes)
    if x.dim() < 1 or x.shape[-1] % k:
        raise ValueError(f"token sequence length {tuple(x.shape)[-1:]} is not a multiple of "
                         f"{k} codebook levels")
    frames = x.reshape(*x.shape[:-1], x.shape[-1] // k, k).transpose(-1, -2)
    codes = frames - torch.tensor(level_offsets(codebook_sizes, offset))[:, None]
    _check_range(codes, codebook_sizes, "tokens (after removing level offsets)")
    return _back(codes, to_numpy)


def delay(codes, pad: int, delays: Sequence[int] | None = None):
    """MusicGen's delay pattern: codes [..., K, T] -> [..., K, T + max(delays)], level k
    shifted right by delays[k] (default k) and the gaps filled with `pad`, so that one LM
    step predicts level k of frame t - delays[k] knowing the coarser levels of that frame."""
    x, to_numpy = _tensor(codes)
    shifts = _delays(delays, x)
    t = x.shape[-1]
    out = torch.full((*x.shape[:-1], t + max(shifts)), pad, dtype=torch.long)
    for k, d in enumerate(shifts):
        out[..., k, d:d + t] = x[..., k, :]
    return _back(out, to_numpy)


def undelay(delayed, pad: int | None = None, delays: Sequence[int] | None = None):
    """Inverse of `delay`: [..., K, T + max(delays)] -> codes [..., K, T]. With `pad`,
    also checks that every position outside the pattern holds it."""
    x, to_numpy = _tensor(delayed)
    shifts = _delays(delays, x)
    t = x.shape[-1] - max(shifts)
    if t < 0:
        raise ValueError(f"{x.shape[-1]} steps are fewer than the largest delay {max(shifts)}")
    out = torch.stack([x[..., k, d:d + t] for k, d in enumerate(shifts)], -2)
    if pad is not None and not torch.equal(delay(out, pad, shifts), x):
        raise ValueError("positions outside the delay pattern do not hold the pad token")
    return _back(out, to_numpy)


def group(codes, groups: Sequence[int], codebook_sizes: Sequence[int], offset: int = 0
          ) -> list:
    """Split the K levels into consecutive groups (sizes summing to K) and flatten each into
    its own stream [..., T * group_size] with ids global over all levels, e.g. [1, 7]: the
    first (semantic) level for an autoregressive model, the rest interleaved for a second."""
    x, to_numpy = _tensor(codes)
    _check_groups(groups, codebook_sizes)
    starts = level_offsets(codebook_sizes, offset)
    streams, a = [], 0
    for g in groups:
        streams.append(flatten(x[..., a:a + g, :], codebook_sizes[a:a + g], starts[a]))
        a += g
    return [_back(s, to_numpy) for s in streams]


def ungroup(streams: Sequence, groups: Sequence[int], codebook_sizes: Sequence[int],
            offset: int = 0):
    """Inverse of `group`: the streams -> codes [..., K, T]."""
    _check_groups(groups, codebook_sizes)
    if len(streams) != len(groups):
        raise ValueError(f"{len(streams)} streams for {len(groups)} groups")
    starts = level_offsets(codebook_sizes, offset)
    parts, a, to_numpy = [], 0, False
    for s, g in zip(streams, groups):
        x, to_numpy = _tensor(s)
        parts.append(unflatten(x, codebook_sizes[a:a + g], starts[a]))
        a += g
    if len({p.shape[-1] for p in parts}) > 1:
        raise ValueError(f"streams hold different frame counts: {[p.shape[-1] for p in parts]}")
    return _back(torch.cat(parts, -2), to_numpy)


def tree_order(strides: Sequence[int]) -> list[tuple[int, int]]:
    """(level, offset in frames) of each code of one group of max(strides) frames, depth
    first: a coarse code, then the finer codes under it (the order SNAC-based TTS models such
    as Orpheus feed an LM: for strides 4, 2, 1 the 7 codes l0, l1, l2, l2, l1, l2, l2)."""
    strides = [int(s) for s in strides]
    if not strides or min(strides) < 1 or any(a % b for a, b in pairwise(strides)):
        raise ValueError(f"level strides {strides} must be positive, each a multiple of the "
                         f"next (coarsest first)")

    def visit(level: int, start: int) -> list[tuple[int, int]]:
        out = [(level, start)]
        if level + 1 < len(strides):
            for child in range(start, start + strides[level], strides[level + 1]):
                out += visit(level + 1, child)
        return out

    top = max(strides)
    return [pair for start in range(0, top, strides[0]) for pair in visit(0, start)]


def flatten_tree(codes, codebook_sizes: Sequence[int], level_strides: Sequence[int],
                 offset: int = 0):
    """A multi-rate codec's codes (Tokens.codes: level k holds each code level_strides[k]
    times) [..., K, T] -> tokens [..., T / max(strides) * codes per group], each code once, in
    `tree_order`, with the level offsets of `flatten`. T must be whole groups (SNAC pads its
    input to them); a level whose repeats disagree is a ValueError."""
    x, to_numpy = _tensor(codes)
    _check_levels(x, codebook_sizes)
    _check_range(x, codebook_sizes, "codes")
    order, top = tree_order(level_strides), max(int(s) for s in level_strides)
    if x.shape[-1] % top:
        raise ValueError(f"{x.shape[-1]} frames are not whole groups of {top}")
    for k, s in enumerate(level_strides):
        row = x[..., k, :]
        if not torch.equal(row, row[..., ::int(s)].repeat_interleave(int(s), -1)):
            raise ValueError(f"level {k} does not repeat each code {s} times")
    starts = level_offsets(codebook_sizes, offset)
    groups = x.reshape(*x.shape[:-1], x.shape[-1] // top, top)        # [..., K, G, top]
    picked = torch.stack([groups[..., k, :, j] + starts[k] for k, j in order], -1)
    return _back(picked.reshape(*picked.shape[:-2], -1), to_numpy)


def unflatten_tree(tokens, codebook_sizes: Sequence[int], level_strides: Sequence[int],
                   offset: int = 0):
    """Inverse of `flatten_tree`: tokens -> codes [..., K, T] with each code repeated."""
    x, to_numpy = _tensor(tokens)
    order, top = tree_order(level_strides), max(int(s) for s in level_strides)
    if len(codebook_sizes) != len(level_strides):
        raise ValueError(f"{len(codebook_sizes)} codebook sizes for {len(level_strides)} "
                         f"level strides")
    if x.dim() < 1 or x.shape[-1] % len(order):
        raise ValueError(f"token sequence length {tuple(x.shape)[-1:]} is not a multiple of "
                         f"{len(order)} codes per group")
    groups = x.reshape(*x.shape[:-1], x.shape[-1] // len(order), len(order))
    starts = level_offsets(codebook_sizes, offset)
    out = torch.zeros(*x.shape[:-1], len(codebook_sizes), groups.shape[-2], top,
                      dtype=torch.long)
    for p, (k, j) in enumerate(order):
        s = int(level_strides[k])
        out[..., k, :, j:j + s] = (groups[..., p] - starts[k])[..., None]
    codes = out.reshape(*out.shape[:-2], -1)
    _check_range(codes, codebook_sizes, "tokens (after removing level offsets)")
    return _back(codes, to_numpy)


def prepend_global(global_codes, stream, global_sizes: Sequence[int], offset: int):
    """Per-utterance codes [..., G] and a flattened frame stream [..., N] -> [..., G + N]:
    global code g shifted to `offset` + global_sizes[0] + ... + global_sizes[g-1], so each
    (position, code) has its own id after the frame ids, then the stream as it is."""
    g, to_numpy = _tensor(global_codes)
    x, _ = _tensor(stream)
    if g.dim() < 1 or g.shape[-1] != len(global_sizes):
        raise ValueError(f"global codes must be [..., G={len(global_sizes)}], got shape "
                         f"{tuple(g.shape)}")
    if g.shape[:-1] != x.shape[:-1]:
        raise ValueError(f"global codes {tuple(g.shape)} and stream {tuple(x.shape)} differ "
                         f"in their leading dimensions")
    _check_range(g[..., None], global_sizes, "global codes")
    shifted = g + torch.tensor(level_offsets(global_sizes, offset))
    return _back(torch.cat([shifted, x], -1), to_numpy)


def split_global(ids, global_sizes: Sequence[int], offset: int) -> tuple:
    """Inverse of `prepend_global`: ids [..., G + N] -> (global codes [..., G], stream
    [..., N]); ValueError if the first G ids are not global codes of their positions."""
    x, to_numpy = _tensor(ids)
    k = len(global_sizes)
    if x.dim() < 1 or x.shape[-1] < k:
        raise ValueError(f"{tuple(x.shape)[-1:]} ids cannot hold {k} global codes")
    g = x[..., :k] - torch.tensor(level_offsets(global_sizes, offset))
    _check_range(g[..., None], global_sizes, "global ids (after removing their offsets)")
    return _back(g, to_numpy), _back(x[..., k:], to_numpy)


@dataclass(frozen=True)
class TextAudioVocab:
    """One vocabulary for text and audio: ids [0, text_size) are the text tokenizer's, then
    each codebook level's codes in turn. Register `token_names()` with the tokenizer
    (`tokenizer.add_tokens(vocab.token_names())` when `text_size == len(tokenizer)`) so its
    ids line up, then resize the LM's embeddings to `size`."""

    text_size: int
    codebook_sizes: tuple[int, ...]

    def __post_init__(self):
        object.__setattr__(self, "codebook_sizes", tuple(int(s) for s in self.codebook_sizes))
        if self.text_size < 0 or not self.codebook_sizes or min(self.codebook_sizes) < 1:
            raise ValueError("text_size must be >= 0 and every codebook size >= 1")

    @property
    def size(self) -> int:
        return self.text_size + sum(self.codebook_sizes)

    def encode(self, codes):
        """codes [..., K, T] -> ids [..., T*K] in the joint vocabulary."""
        return flatten(codes, self.codebook_sizes, self.text_size)

    def decode(self, ids):
        """ids [..., T*K] (audio ids only) -> codes [..., K, T]."""
        return unflatten(ids, self.codebook_sizes, self.text_size)

    def is_audio(self, ids):
        """Boolean mask of the ids that are audio tokens (to split a mixed sequence)."""
        x, to_numpy = _tensor(ids)
        mask = (x >= self.text_size) & (x < self.size)
        return mask.numpy() if to_numpy else mask

    def token_names(self) -> list[str]:
        """Names of the audio ids in id order: "<|a{level}_{code}|>"."""
        return [f"<|a{k}_{c}|>" for k, size in enumerate(self.codebook_sizes)
                for c in range(size)]


# ---------------------------------------------------------------------- helpers
def _tensor(x) -> tuple[Tensor, bool]:
    """int64 tensor view of a torch or numpy integer array, and whether it was numpy."""
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "iu":
            raise ValueError(f"expected integer codes, got dtype {x.dtype}")
        return torch.from_numpy(x.astype(np.int64)), True
    if isinstance(x, Tensor):
        if x.is_floating_point() or x.is_complex():
            raise ValueError(f"expected integer codes, got dtype {x.dtype}")
        return x.long().cpu(), False
    raise ValueError(f"expected a torch tensor or numpy array, got {type(x).__name__}")


def _back(x: Tensor, to_numpy: bool):
    return x.numpy() if to_numpy else x


def _check_levels(x: Tensor, codebook_sizes: Sequence[int]) -> None:
    if x.dim() < 2 or x.shape[-2] != len(codebook_sizes):
        raise ValueError(f"codes must be [..., K={len(codebook_sizes)}, T], got shape "
                         f"{tuple(x.shape)}")


def _check_range(codes: Tensor, codebook_sizes: Sequence[int], what: str) -> None:
    for k, size in enumerate(codebook_sizes):
        row = codes[..., k, :]
        if row.numel() and (int(row.min()) < 0 or int(row.max()) >= size):
            bad = int(row.min()) if int(row.min()) < 0 else int(row.max())
            raise ValueError(f"{what}: value {bad} at level {k} is outside [0, {size})")


def _delays(delays: Sequence[int] | None, x: Tensor) -> list[int]:
    if x.dim() < 2:
        raise ValueError(f"expected [..., K, T], got shape {tuple(x.shape)}")
    k = x.shape[-2]
    shifts = list(range(k)) if delays is None else [int(d) for d in delays]
    if len(shifts) != k or min(shifts) < 0:
        raise ValueError(f"need {k} non-negative delays, got {list(delays or [])}")
    return shifts


def _check_groups(groups: Sequence[int], codebook_sizes: Sequence[int]) -> None:
    if not groups or min(groups) < 1 or sum(groups) != len(codebook_sizes):
        raise ValueError(f"group sizes {list(groups)} must be positive and sum to "
                         f"{len(codebook_sizes)} levels")
