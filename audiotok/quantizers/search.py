"""Nearest-codeword search by matrix products, in bounded memory."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# Rows per chunk are chosen so one chunk's [rows, K] distance matrix holds about this many
# floats (64 MiB in float32): enough to keep a GPU busy, small enough for any batch size.
CHUNK_ELEMENTS = 1 << 24


def nearest(
    x: Tensor, codebook: Tensor, normalize: bool = False, chunk_elements: int = CHUNK_ELEMENTS
) -> Tensor:
    """Index of the nearest codeword for each row.

    x [N, C], codebook [K, C] -> long [N]. With `normalize`, both sides are l2-normalised
    first, so the search is by cosine similarity (ViT-VQGAN, Yu et al. 2021; DAC).

    ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2 and the first term is the same for every codeword,
    so the argmin needs one [rows, K] matmul per chunk instead of an [N, K, C] difference.
    Distances are taken in float32 even under autocast: bf16 matmuls flip near-ties, and codes
    from training and from `encode` must agree.
    """
    with torch.autocast(device_type=x.device.type, enabled=False):
        x, codebook = x.float(), codebook.float()
        if normalize:
            x, codebook = F.normalize(x, dim=1), F.normalize(codebook, dim=1)
        if x.shape[0] == 0:
            return torch.zeros(0, dtype=torch.long, device=x.device)
        c_sq = codebook.square().sum(1)
        rows = max(1, chunk_elements // codebook.shape[0])
        return torch.cat([(c_sq - 2 * part @ codebook.T).argmin(1) for part in x.split(rows)])
