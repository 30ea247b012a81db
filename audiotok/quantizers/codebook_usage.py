"""Codebook usage metrics for logging: how much of each codebook a batch uses."""

from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def code_metrics(codes: Tensor, size: int, level: int) -> dict[str, Tensor]:
    """codes long [...] of one level with `size` entries -> named scalars.

    "vq/usage/{level}": fraction of entries used at least once in the batch.
    "vq/perplexity/{level}": exp of the entropy of the batch's code histogram, i.e. the number
    of equally used entries that would give the same entropy (1 = collapsed, `size` = uniform).
    """
    counts = torch.bincount(codes.flatten(), minlength=size).float()
    p = counts / counts.sum().clamp(min=1)
    entropy = -torch.special.xlogy(p, p).sum()
    return {
        f"vq/usage/{level}": (counts > 0).float().mean(),
        f"vq/perplexity/{level}": entropy.exp(),
    }


def level_metrics(codes: Tensor, sizes: list[int]) -> dict[str, Tensor]:
    """codes long [B, K, T] -> usage and perplexity of every row, named by level index."""
    metrics: dict[str, Tensor] = {}
    for i in range(codes.shape[1]):
        metrics.update(code_metrics(codes[:, i], sizes[i], i))
    return metrics


def shift_levels(metrics: dict[str, Tensor], offset: int) -> dict[str, Tensor]:
    """Rename per-level metrics ("vq/usage/3") for levels that sit `offset` rows further down
    an outer quantizer's token stream; metrics without a level index are kept as they are."""
    shifted: dict[str, Tensor] = {}
    for name, value in metrics.items():
        head, _, level = name.rpartition("/")
        shifted[f"{head}/{int(level) + offset}" if head and level.isdigit() else name] = value
    return shifted
