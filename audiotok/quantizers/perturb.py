"""Token perturbation: replace a fraction of codes by near or random codes, to train and to
measure a tokenizer's robustness to the tokens a language model gets wrong.

Qiu et al. 2025, "Image Tokenizer Needs Post-Training" (RobusTok, arXiv 2509.12474), sec. 3.2:
an LM's sampling errors are simulated by replacing a token with one of the delta codewords
nearest to it (their `add_perturbation`, tokenizer/tokenizer_image/latent_perturbation.py:
top-delta of the codebook distances, one picked uniformly with probability alpha, on a
fraction beta of the batch). Their pFID scores decoded images under this perturbation;
`audiotok eval --perturb` is the audio analogue.

Here, unlike their code, a replaced token never keeps its own code (their top-delta list
starts with the code itself, so a fraction alpha / delta of the "replaced" tokens stays), so
`rate` is the fraction of tokens that change. Neighbours are those of the token's codeword in
the space its level's search compares codes (`Quantizer.code_vectors`), so eval, which sees
only codes, perturbs as training does. A multi-rate level (SNAC's stride-s levels) is
perturbed at its own rate and its codes repeated back over their frames.

    p = Perturbation(rate=0.1, mode="near", neighbours=16)
    new = perturb_codes(codec.quantizer, tokens.codes, p, generator=torch.Generator())
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .base import Quantizer
from .search import CHUNK_ELEMENTS

MODES = ("near", "random")


@dataclass(frozen=True)
class Perturbation:
    """rate:       fraction of the eligible tokens replaced (each independently, RobusTok's
                   alpha; their per-token Bernoulli draw)
    mode:       "near": a codeword among the `neighbours` nearest the token's own;
                "random": any other code of the level, uniformly
    neighbours: RobusTok's delta (capped at the codebook size - 1)
    items:      fraction of the batch's items perturbed at all (RobusTok's beta; each item
                independently here, where they take the first beta * B)
    levels:     code rows that may be perturbed (0-based); () = every row
    """

    rate: float
    mode: str = "near"
    neighbours: int = 16
    items: float = 1.0
    levels: tuple[int, ...] = ()

    def __post_init__(self):
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"rate must be in [0, 1], got {self.rate}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got '{self.mode}'")
        if self.neighbours < 1:
            raise ValueError(f"neighbours must be >= 1, got {self.neighbours}")
        if not 0.0 <= self.items <= 1.0:
            raise ValueError(f"items must be in [0, 1], got {self.items}")
        if any(level < 0 for level in self.levels):
            raise ValueError(f"levels must be row indices >= 0, got {list(self.levels)}")


def perturb_codes(quantizer: Quantizer, codes: Tensor, p: Perturbation,
                  active: Tensor | None = None, generator: torch.Generator | None = None
                  ) -> Tensor:
    """codes long [B, K, T] -> a perturbed copy (never in place).

    active long [B]: rows each item uses (quantizer dropout; `QuantizerOutput.active`), so
    a row an item did not decode is left alone. Random numbers come from `generator` (a CPU
    generator: eval seeds one per clip) or torch's global generator (training, where the
    trainer seeds each step). Every token draws its two numbers whatever the rate, so with one
    seed the tokens changed at a rate include those changed at any lower rate, replaced alike.
    """
    b, k, _ = codes.shape
    sizes = quantizer.codebook_sizes
    vectors = quantizer.code_vectors() if p.mode == "near" else None
    strides = list(quantizer.level_strides) if quantizer.multi_rate else []
    strides = strides or [1] * len(sizes)
    chosen = _uniform((b,), generator, codes.device) < p.items
    out = codes.clone()
    for row in range(k):
        s = strides[row]
        level = codes[:, row, ::s]                               # [B, T_row]
        u = _uniform(level.shape, generator, codes.device)
        pick = _uniform(level.shape, generator, codes.device)
        if (p.levels and row not in p.levels) or sizes[row] < 2:
            continue
        mask = (u < p.rate) & chosen[:, None]
        if active is not None:
            mask &= (active > row)[:, None].to(mask.device)
        if vectors is None:
            other = _random_other(level, pick, sizes[row])
        else:
            other = _near_other(level, pick, vectors[row].to(codes.device),
                                min(p.neighbours, sizes[row] - 1))
        new = torch.where(mask, other, level)
        out[:, row] = new.repeat_interleave(s, dim=-1)[:, :codes.shape[-1]] if s > 1 else new
    return out


def _uniform(shape, generator: torch.Generator | None, device) -> Tensor:
    """Uniform [0, 1) numbers drawn from `generator`'s device (CPU for eval), moved to
    `device`; torch's global generator on `device` when None."""
    if generator is None:
        return torch.rand(shape, device=device)
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def _random_other(codes: Tensor, pick: Tensor, size: int) -> Tensor:
    """A code other than each of `codes`, uniform over the size - 1 others."""
    r = (pick * (size - 1)).long().clamp(max=size - 2)
    return r + (r >= codes).long()


def _near_other(codes: Tensor, pick: Tensor, vectors: Tensor, delta: int) -> Tensor:
    """One of the `delta` codewords nearest each code's own (itself excluded), uniformly.

    codes long [B, T], vectors [K, C] -> long [B, T]. Distances are taken for every token,
    not only the replaced ones, so no host sync picks them out; rows go in chunks whose
    [rows, K] distance matrix stays bounded, as the codebook search does (search.py)."""
    flat = codes.reshape(-1)
    vectors = vectors.float()
    sq = vectors.pow(2).sum(1)
    rank = (pick.reshape(-1) * delta).long().clamp(max=delta - 1)
    out = []
    step = max(1, CHUNK_ELEMENTS // vectors.shape[0])
    for start in range(0, flat.shape[0], step):
        c = flat[start:start + step]
        x = vectors[c]
        d = sq[c, None] - 2 * x @ vectors.T + sq[None]          # [n, K] squared distances
        d.scatter_(1, c[:, None], float("inf"))                 # never the code itself
        nearest = d.topk(delta, dim=1, largest=False).indices   # [n, delta], nearest first
        out.append(nearest.gather(1, rank[start:start + step, None])[:, 0])
    return torch.cat(out).view_as(codes)
