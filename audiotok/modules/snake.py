"""Snake activation (Ziyin et al. 2020; used by BigVGAN and DAC): x + sin^2(a x) / a."""

import torch
from torch import Tensor, nn


class Snake1d(nn.Module):
    """Per-channel periodic activation; x [B, C, T] -> same shape."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        # 1e-9 keeps the division finite if a channel's alpha is driven to zero
        return x + torch.sin(self.alpha * x).pow(2) / (self.alpha + 1e-9)
