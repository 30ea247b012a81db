"""Snake activation (Ziyin et al. 2020; used by BigVGAN and DAC): x + sin^2(a x) / a."""

import torch
from torch import Tensor, nn


class Snake1d(nn.Module):
    """Per-channel periodic activation; x [B, C, T] -> same shape."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        # 1e-9 keeps the division finite if a channel's alpha is driven to zero. Both paths
        # round exactly as descript-audio-codec's `snake` does (x + (1/a) * sin(a x)^2, each
        # product and sum rounded on its own: no fused multiply-add), so DAC's releases give
        # its latents bit for bit.
        inv_alpha = (self.alpha + 1e-9).reciprocal()
        if torch.is_grad_enabled() and (x.requires_grad or self.alpha.requires_grad):
            return x + inv_alpha * torch.sin(self.alpha * x).pow(2)
        # inference: the same arithmetic in place, two fewer full-size temporaries
        return (self.alpha * x).sin_().square_().mul_(inv_alpha).add_(x)


class SnakeBeta(nn.Module):
    """Snake with separate frequency and magnitude per channel (BigVGAN, Lee et al. 2023):
    x + sin^2(e^alpha x) / e^beta; alpha and beta are stored as logarithms, [C] each (the
    layout of BigVGAN's and X-Codec-2's checkpoints). x [B, C, T] -> same shape."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        alpha = self.alpha[None, :, None].exp()
        beta = self.beta[None, :, None].exp()
        # 1e-9 as BigVGAN: keeps the division finite; the order of the products is theirs,
        # so published encoders give their latents bit for bit
        return x + (1.0 / (beta + 1e-9)) * torch.sin(x * alpha).pow(2)
