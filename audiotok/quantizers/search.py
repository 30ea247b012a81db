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

    ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2 needs one [rows, K] matmul per chunk instead of an
    [N, K, C] difference. The sum is formed in the order and with the roundings of
    descript-audio-codec's and EnCodec's codebooks ((||x||^2 - 2 x.c) + ||c||^2, first
    minimum on ties), so their releases give the same codes even on near-ties; the ||x||^2
    term, the same for every codeword, matters only to that rounding. Distances are taken in
    float32 even under autocast: bf16 matmuls flip near-ties, and codes from training and
    from `encode` must agree.
    """
    with torch.autocast(device_type=x.device.type, enabled=False):
        x, codebook = _prepare(x, codebook, normalize)
        if x.shape[0] == 0:
            return torch.zeros(0, dtype=torch.long, device=x.device)
        c_sq = codebook.pow(2).sum(1)
        return torch.cat([(part.pow(2).sum(1, keepdim=True) - 2 * part @ codebook.T + c_sq)
                          .argmin(1) for part in _row_chunks(x, codebook, chunk_elements)])


def _row_chunks(x: Tensor, codebook: Tensor, chunk_elements: int):
    """x [N, C] in pieces of rows whose distance matrices hold about `chunk_elements`. Whole
    while an ONNX export traces it: the trace would fix the number of pieces, and so N (the
    exported graphs are run on bounded chunks of audio; export/onnx.py)."""
    if torch.jit.is_tracing():
        return [x]
    return x.split(max(1, chunk_elements // codebook.shape[0]))


def _prepare(x: Tensor, codebook: Tensor, normalize: bool) -> tuple[Tensor, Tensor]:
    x, codebook = x.float(), codebook.float()
    if normalize:
        x, codebook = F.normalize(x, dim=1), F.normalize(codebook, dim=1)
    return x, codebook


def nearest_transformers_dac(x: Tensor, codebook: Tensor, normalize: bool = True) -> Tensor:
    """transformers' DacModel search, kept bit for bit for its checkpoints:
    argmax(-(|x|^2 - 2 x.c) + |c|^2). (Its last term has the opposite sign of a distance;
    with l2-normalised codewords |c|^2 is 1 to rounding, so it picks the nearest codeword
    but for near-ties.)"""
    with torch.autocast(device_type=x.device.type, enabled=False):
        x, codebook = _prepare(x, codebook, normalize)
        if x.shape[0] == 0:
            return torch.zeros(0, dtype=torch.long, device=x.device)
        score = -(x.pow(2).sum(1, keepdim=True) - 2 * x @ codebook.t()) \
            + codebook.pow(2).sum(1, keepdim=True).t()
        return score.max(1)[1]


def nearest_cdist(x: Tensor, codebook: Tensor, normalize: bool = False,
                  chunk_elements: int = CHUNK_ELEMENTS) -> Tensor:
    """torch.cdist's nearest codeword, the search of Mimi's codebooks (moshi's and
    transformers' EuclideanCodebook), for their checkpoints' codes bit for bit. (cdist forms
    the distance as one matmul of [-2x, |x|^2, 1] by [c, 1, |c|^2]: rounded differently
    from `nearest`.)"""
    with torch.autocast(device_type=x.device.type, enabled=False):
        x, codebook = _prepare(x, codebook, normalize)
        if x.shape[0] == 0:
            return torch.zeros(0, dtype=torch.long, device=x.device)
        if torch.jit.is_tracing():  # ONNX export: its cdist needs a fixed row count
            return _cdist_squared(x, codebook).argmin(-1)
        return torch.cat([torch.cdist(part[None], codebook[None], p=2)[0].argmin(-1)
                          for part in _row_chunks(x, codebook, chunk_elements)])


def _cdist_squared(x: Tensor, codebook: Tensor) -> Tensor:
    """[N, K] squared distances formed as torch.cdist forms them (one matmul of
    [-2x, |x|^2, 1] by [c, 1, |c|^2]), for a traced graph; the square root cdist takes after
    does not move the minimum."""
    ones_x, ones_c = x.new_ones(x.shape[0], 1), codebook.new_ones(codebook.shape[0], 1)
    left = torch.cat([-2 * x, x.square().sum(1, keepdim=True), ones_x], 1)
    right = torch.cat([codebook, ones_c, codebook.square().sum(1, keepdim=True)], 1)
    return (left @ right.T).clamp(min=0)


SEARCHES = {"euclidean": nearest, "transformers_dac": nearest_transformers_dac,
            "cdist": nearest_cdist}
