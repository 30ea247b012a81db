"""Learned noise injection (SNAC, Siuzdak et al. 2024, sec. 3: "noise blocks" after each
upsampling layer of the decoder)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .conv import Conv1d


class NoiseBlock(nn.Module):
    """x [B, C, T] -> x + n * W x, with n ~ N(0, 1) of shape [B, 1, T] (one draw per sample,
    shared by the channels) and W a bias-free 1x1 conv, as the `snac` package does.

    Decoding is therefore stochastic, in inference too, as in the publisher's model: two
    decodes of the same codes differ. Each call draws exactly one `torch.randn((B, 1, T))`
    from the global generator, in the input's dtype and device, in the same order as `snac`'s
    decoder, so seeding torch identically before two decodes (ours and the publisher's)
    gives identical noise and matching audio. Chunked decoding draws per chunk and so gives
    other (equally distributed) noise than one whole decode.
    """

    def __init__(self, dim: int, norm: str = "weight_norm"):
        super().__init__()
        self.linear = Conv1d(dim, dim, 1, bias=False, norm=norm)

    def forward(self, x: Tensor) -> Tensor:
        b, _, t = x.shape
        noise = torch.randn((b, 1, t), device=x.device, dtype=x.dtype)
        return x + noise * self.linear(x)
