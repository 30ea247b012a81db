"""Binary codes: the sign of each of b latent dims is one bit, the bits of a codebook make its
integer code, and the soft bit probabilities give the entropy penalty (LFQ and BSQ).

Bit i of a code is the sign of dim i of its group (least significant first), so
code = sum_i [x_i > 0] 2^i, as Open-MAGVIT2's lookup_free_quantize.py orders them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .entropy import entropy_terms, frames_first


def bit_weights(bits: int, device=None) -> Tensor:
    """long [bits]: 2^i, the value of bit i."""
    return 2 ** torch.arange(bits, device=device)


def signs_to_codes(positive: Tensor) -> Tensor:
    """positive bool [B, K, b, T] (x > 0 per dim) -> codes long [B, K, T] in [0, 2^b)."""
    weights = bit_weights(positive.shape[2], positive.device)
    return (positive.long() * weights[:, None]).sum(2)


def codes_to_signs(codes: Tensor, bits: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """codes long [B, K, T] -> signs [B, K, bits, T] in {-1, +1} (bit i set -> +1)."""
    weights = bit_weights(bits, codes.device)
    set_bits = (codes.long()[:, :, None, :] // weights[:, None]) % 2
    return (set_bits * 2 - 1).to(dtype)


def bit_patterns(bits: int, device=None) -> Tensor:
    """float [2^bits, bits]: row j holds the bits of code j (0 or 1)."""
    codes = torch.arange(2 ** bits, device=device)
    return ((codes[:, None] // bit_weights(bits, device)) % 2).float()


def group_log_probs(logits: Tensor) -> Tensor:
    """logits [N, K, g], p(bit = 1) = sigmoid(logit) independently per bit -> log q [N, K, 2^g]
    over the 2^g codes of the g bits.

    A softmax over the products of {-s, +s} codewords with logits a * <x, c> factorises into
    independent bits with logit 2 a s x_i, so the softmax over all 2^g codes is exactly this
    product (what vector-quantize-pytorch forms as a [N, 2^g] matmul against its codebook).
    """
    patterns = bit_patterns(logits.shape[-1], logits.device).to(logits.dtype)
    return F.logsigmoid(logits) @ patterns.T + F.logsigmoid(-logits) @ (1 - patterns).T


def bit_entropy_terms(logits: Tensor, group_bits: int) -> tuple[Tensor, Tensor]:
    """logits [B, K, b, T] of the bits of K codebooks -> (per-sample, codebook) entropy in nats
    per codebook, averaged over the codebooks.

    Each codebook's b bits are taken `group_bits` at a time and the entropies of the groups
    summed (BSQ, Zhao et al. 2024, sec. 3.3 and bsq-vit's soft_entropy_loss: the codebook
    entropy of 2^b codes is approximated by the sum over sub-codes, an upper bound that is
    exact when the groups are independent). The per-sample sum is exact whatever the groups
    (the bits of one frame are independent); with group_bits == b both are exact (MAGVIT-v2).
    """
    rows = frames_first(logits)                               # [N, K, b]
    sample = codebook = rows.new_zeros(())
    for group in rows.split(group_bits, dim=2):
        s, c = entropy_terms(group_log_probs(group))
        sample, codebook = sample + s, codebook + c
    return sample, codebook
