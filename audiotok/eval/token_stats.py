"""Token-stream statistics of codes [K, T] (K codebook levels, T frames; concatenate clips along
T): how many bits per token a language model would need at best without context (entropy) and
with one frame of context (bigram conditional entropy), and how much of each codebook is used.
All entropies are in bits, estimated from empirical counts (plug-in estimates, biased low when
T is small compared with the number of symbols or pairs)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def _codes(codes, sizes: int | Sequence[int]) -> tuple[np.ndarray, list[int]]:
    """codes [K, T] (numpy or torch, integer) -> int64 numpy [K, T] and one size per level."""
    if isinstance(codes, torch.Tensor):
        codes = codes.detach().cpu().numpy()
    codes = np.asarray(codes)
    if codes.ndim != 2 or not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"expected integer codes [K, T], got {codes.dtype} {codes.shape}")
    sizes = [int(sizes)] * codes.shape[0] if np.isscalar(sizes) else [int(s) for s in sizes]
    if len(sizes) != codes.shape[0]:
        raise ValueError(f"{len(sizes)} codebook sizes for {codes.shape[0]} levels")
    for k, size in enumerate(sizes):
        if codes[k].size and (codes[k].min() < 0 or codes[k].max() >= size):
            raise ValueError(f"level {k}: codes outside [0, {size})")
    return codes.astype(np.int64), sizes


def _entropy(counts: np.ndarray) -> float:
    """Shannon entropy H = -sum p log2 p (Shannon 1948; Cover & Thomas eq. 2.1) of a histogram."""
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum()) if p.size else 0.0


def code_entropy(codes, sizes: int | Sequence[int]) -> list[float]:
    """Unigram entropy H(X) in bits per level: log2(size) for uniform use, 0 for one code.
    codes [K, T], sizes: one codebook size for all levels or one per level -> [K]."""
    codes, sizes = _codes(codes, sizes)
    return [_entropy(np.bincount(c, minlength=s)) for c, s in zip(codes, sizes)]


def bigram_conditional_entropy(codes, sizes: int | Sequence[int]) -> list[float]:
    """H(X_t | X_{t-1}) in bits per level, by the chain rule
    H(X_t | X_{t-1}) = H(X_{t-1}, X_t) - H(X_{t-1}) (Cover & Thomas eq. 2.21) over the T - 1
    consecutive pairs: 0 when each code determines the next. codes [K, T] -> [K]."""
    codes, sizes = _codes(codes, sizes)
    out = []
    for c, s in zip(codes, sizes):
        if c.size < 2:
            out.append(0.0)
            continue
        # Pairs as one index; np.unique rather than bincount so size**2 bins are never allocated.
        _, pair_counts = np.unique(c[:-1] * s + c[1:], return_counts=True)
        _, prev_counts = np.unique(c[:-1], return_counts=True)
        out.append(max(_entropy(pair_counts) - _entropy(prev_counts), 0.0))
    return out


def codebook_usage(codes, sizes: int | Sequence[int]) -> list[float]:
    """Fraction of each level's codebook used at least once, in [0, 1]. codes [K, T] -> [K]."""
    codes, sizes = _codes(codes, sizes)
    return [np.unique(c).size / s for c, s in zip(codes, sizes)]
