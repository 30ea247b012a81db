"""ConvNeXt 1-D block: the residual unit of the Vocos backbone.

Vocos (Siuzdak 2023, arXiv:2306.00814, sec. 3.1) carries ConvNeXt (Liu et al. 2022) over to
sequences: a depthwise convolution of kernel 7 mixes time within each channel, then a per-frame
MLP (LayerNorm, Linear up, GELU, Linear down) mixes channels. A learned per-channel layer scale,
initialised small (Vocos uses 1/num_layers), keeps each residual branch near zero at the start so
deep stacks train stably. WavTokenizer (Ji et al. 2024, arXiv:2408.16532) reuses the block with
Vocos' adaptive LayerNorm (`AdaLayerNorm`, `adanorm_embeddings` > 0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class AdaLayerNorm(nn.Module):
    """Vocos' adaptive LayerNorm (vocos/modules.py `AdaLayerNorm`): LayerNorm without affine,
    then a scale and shift looked up per condition id. x [..., D] -> same.

    Vocos and WavTokenizer condition on a bandwidth id; WavTokenizer trains with 4 ids (one
    per entry of its `bandwidths`, all 6.6) and decodes with id 0 (its infer.py passes
    `bandwidth_id=0`), so audiotok uses row `condition` (0) and keeps every row so that
    published weights load and fine-tune whole. The arithmetic is the publisher's:
    layer_norm(x) * scale + shift, which rounds differently from nn.LayerNorm's fused affine.
    """

    def __init__(self, num_embeddings: int, dim: int, eps: float = 1e-6, condition: int = 0):
        super().__init__()
        if not 0 <= condition < num_embeddings:
            raise ValueError(f"condition {condition} is not one of {num_embeddings} embeddings")
        self.dim, self.eps, self.condition = dim, eps, condition
        self.scale = nn.Embedding(num_embeddings, dim)
        self.shift = nn.Embedding(num_embeddings, dim)
        nn.init.ones_(self.scale.weight)  # Vocos' init: the plain LayerNorm at the start
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: Tensor) -> Tensor:
        scale = self.scale.weight[self.condition]
        shift = self.shift.weight[self.condition]
        return F.layer_norm(x, (self.dim,), eps=self.eps) * scale + shift


def layer_norm(dim: int, adanorm_embeddings: int = 0, eps: float = 1e-6) -> nn.Module:
    """nn.LayerNorm, or Vocos' AdaLayerNorm with `adanorm_embeddings` condition rows."""
    return AdaLayerNorm(adanorm_embeddings, dim, eps) if adanorm_embeddings else \
        nn.LayerNorm(dim, eps=eps)


class ConvNeXtBlock(nn.Module):
    """x [B, D, T] -> [B, D, T], same length (zero padding 3 on each side).

    Each output frame depends on at most 3 input frames on either side (`reach()`), so a stack
    of N blocks sees 3 * N frames each way.
    """

    def __init__(self, dim: int, intermediate_dim: int, layer_scale: float,
                 adanorm_embeddings: int = 0):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = layer_norm(dim, adanorm_embeddings)
        self.up = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.down = nn.Linear(intermediate_dim, dim)
        self.scale = nn.Parameter(torch.full((dim,), float(layer_scale)))

    @staticmethod
    def reach() -> tuple[int, int]:
        """(left, right): input frames on each side that can change an output frame."""
        return 3, 3

    def forward(self, x: Tensor) -> Tensor:
        h = self.dwconv(x).transpose(1, 2)  # [B, T, D]: the MLP acts on each frame alone
        h = self.down(self.act(self.up(self.norm(h))))
        return x + (self.scale * h).transpose(1, 2)
