"""ConvNeXt 1-D block: the residual unit of the Vocos backbone.

Vocos (Siuzdak 2023, arXiv:2306.00814, sec. 3.1) carries ConvNeXt (Liu et al. 2022) over to
sequences: a depthwise convolution of kernel 7 mixes time within each channel, then a per-frame
MLP (LayerNorm, Linear up, GELU, Linear down) mixes channels. A learned per-channel layer scale,
initialised small (Vocos uses 1/num_layers), keeps each residual branch near zero at the start so
deep stacks train stably. WavTokenizer (Ji et al. 2024, arXiv:2408.16532) reuses the block as is.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ConvNeXtBlock(nn.Module):
    """x [B, D, T] -> [B, D, T], same length (zero padding 3 on each side).

    Each output frame depends on at most 3 input frames on either side (`reach()`), so a stack
    of N blocks sees 3 * N frames each way.
    """

    def __init__(self, dim: int, intermediate_dim: int, layer_scale: float):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
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
