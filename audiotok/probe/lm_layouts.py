"""The token layouts of `audiotok.lm` as language-model training streams: for each step, the
ids that are embedded and summed as its input, and the code each level's output head must
predict there.

    ids = InputIds(codebook_sizes)
    stream = layout_streams("delay", codes, ids)[0]    # codes long [K, T]
    stream.inputs    # long [S, J]: ids of the embedding table, summed per step
    stream.targets   # long [S, K]: level k's code predicted at each step, -1 where none

    flatten  one stream of T*K steps through `lm.flatten` (frame-major, t0k0 t0k1 ...); each
             step sees the previous token and which level it predicts.
    delay    MusicGen's pattern through `lm.delay`: T + K - 1 steps, each predicting every
             level at once (level k of frame s - k), seeing the previous step's K codes.
    group    `lm.group`: one stream per group of levels, each its own model (AudioLM-style
             stages); group g also sees the codes of the earlier groups' levels at the frame
             of each step, so the stages' bits add up to the joint code length by the chain
             rule: -log p(c) = sum_g -log p(c_g | c_<g).

Every code of the utterance is predicted exactly once in each layout, so the cross-entropy
summed over a stream's steps is the code length of the whole utterance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .. import lm

LAYOUTS = ("flatten", "delay", "group")


@dataclass(frozen=True)
class InputIds:
    """One embedding table for every kind of input id, laid end to end:
    [0, V) previous tokens (lm.flatten's global ids), V BOS, K slots (the level a step
    predicts), K delay pads (one per level), V conditioning codes (earlier groups), NONE."""

    codebook_sizes: tuple[int, ...]

    @property
    def vocab(self) -> int:
        return sum(self.codebook_sizes)

    @property
    def bos(self) -> int:
        return self.vocab

    def slot(self, level: int) -> int:
        return self.vocab + 1 + level

    def pad(self, level: int) -> int:
        return self.vocab + 1 + len(self.codebook_sizes) + level

    @property
    def cond(self) -> int:
        return self.vocab + 1 + 2 * len(self.codebook_sizes)

    @property
    def none(self) -> int:
        return 2 * self.vocab + 1 + 2 * len(self.codebook_sizes)

    @property
    def size(self) -> int:
        return self.none + 1


@dataclass
class Stream:
    inputs: Tensor    # long [S, J]
    targets: Tensor   # long [S, K], -1 where a level is not predicted


def layout_streams(layout: str, codes: Tensor, ids: InputIds, groups: list[int] | None = None
                   ) -> list[Stream]:
    """codes long [K, T] -> the layout's streams (one, or one per group)."""
    sizes = list(ids.codebook_sizes)
    if layout == "flatten":
        return [_flat_stream(lm.flatten(codes, sizes), 0, len(sizes), codes, ids)]
    if layout == "delay":
        return [_delay_stream(codes, ids)]
    if layout == "group":
        groups = groups or default_groups(len(sizes))
        streams, start = [], 0
        for stream, g in zip(lm.group(codes, groups, sizes), groups):
            streams.append(_flat_stream(stream, start, g, codes, ids))
            start += g
        return streams
    raise ValueError(f"unknown layout {layout!r} (use {', '.join(LAYOUTS)})")


def default_groups(k: int) -> list[int]:
    """The first level, then the rest (semantic then acoustic, as `lm.group`'s example)."""
    return [1, k - 1] if k > 1 else [1]


def _flat_stream(tokens: Tensor, first: int, n: int, codes: Tensor, ids: InputIds) -> Stream:
    """tokens [T*n]: levels first..first+n-1 interleaved frame-major with global ids; the
    levels before `first` condition each step through their codes at the step's frame."""
    k_total, t = codes.shape
    steps = tokens.numel()
    level = torch.arange(steps) % n + first
    prev = torch.cat([torch.tensor([ids.bos]), tokens[:-1]])
    cols = [prev, torch.tensor([ids.slot(int(k)) for k in range(first, first + n)]).repeat(t)]
    if first:
        earlier = lm.flatten(codes[:first], ids.codebook_sizes[:first]).view(t, first)
        cols += list((earlier + ids.cond).repeat_interleave(n, 0).T)
    targets = torch.full((steps, k_total), -1, dtype=torch.long)
    starts = torch.tensor(lm.level_offsets(ids.codebook_sizes))
    targets[torch.arange(steps), level] = tokens - starts[level]
    return Stream(torch.stack(cols, -1), targets)


def _delay_stream(codes: Tensor, ids: InputIds) -> Stream:
    k = codes.shape[0]
    delayed = lm.delay(codes, pad=-1)                                  # [K, T + K - 1]
    starts = torch.tensor(lm.level_offsets(ids.codebook_sizes))[:, None]
    pads = torch.tensor([ids.pad(j) for j in range(k)])[:, None]
    as_input = torch.where(delayed >= 0, delayed + starts, pads)       # [K, S]
    bos = torch.full((k, 1), ids.bos, dtype=torch.long)
    inputs = torch.cat([bos, as_input[:, :-1]], 1).T                   # [S, K]
    return Stream(inputs.contiguous(), delayed.T.contiguous())
