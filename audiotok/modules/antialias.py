"""Anti-aliased activations: upsample 2x, apply the nonlinearity, low-pass and downsample 2x.

BigVGAN (Lee et al. 2023, "BigVGAN: A Universal Neural Vocoder with Large-Scale Training",
sec. 3.2) runs its periodic activations at twice the sample rate, between Kaiser-windowed sinc
filters, so the harmonics they create above the Nyquist frequency are filtered out instead of
folding back. BigCodec and X-Codec-2 (Ye et al. 2025) use the same block in their encoders.
Facts kept from those releases: 12-tap filters with cutoff 0.5 / ratio and transition half
width 0.6 / ratio, replicate padding at the edges, a gain of `ratio` after the transposed conv.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def kaiser_sinc(cutoff: float, half_width: float, taps: int) -> Tensor:
    """Low-pass FIR filter [1, 1, taps] (cutoff and half width in cycles per sample), summing
    to 1. The Kaiser beta follows Kaiser's empirical formula for the attenuation that the
    transition width allows (as in scipy.signal.kaiser_beta / BigVGAN's filter)."""
    half = taps // 2
    attenuation = 2.285 * (half - 1) * math.pi * (4 * half_width) + 7.95
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    window = torch.kaiser_window(taps, beta=beta, periodic=False, dtype=torch.float32)
    # tap times centred on the filter's middle (between two taps for an even count)
    t = torch.arange(-half, half) + 0.5 if taps % 2 == 0 else torch.arange(taps) - half
    taps_ = 2 * cutoff * window * torch.sinc(2 * cutoff * t)
    return (taps_ / taps_.sum()).view(1, 1, taps)


class Upsample(nn.Module):
    """x [B, C, T] -> [B, C, ratio * T]: zero-stuffing and low-pass, as one transposed conv."""

    def __init__(self, ratio: int = 2, taps: int = 12):
        super().__init__()
        self.ratio, self.taps = ratio, taps
        self.pad = taps // ratio - 1
        self.crop_left = self.pad * ratio + (taps - ratio) // 2
        self.crop_right = self.pad * ratio + (taps - ratio + 1) // 2
        self.register_buffer("filter", kaiser_sinc(0.5 / ratio, 0.6 / ratio, taps),
                             persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        y = F.conv_transpose1d(F.pad(x, (self.pad, self.pad), mode="replicate"),
                               self.filter.to(x.dtype).expand(c, -1, -1), stride=self.ratio,
                               groups=c)
        return (self.ratio * y)[..., self.crop_left: y.shape[-1] - self.crop_right]


class Downsample(nn.Module):
    """x [B, C, ratio * T] -> [B, C, T]: low-pass then keep every `ratio`-th sample."""

    def __init__(self, ratio: int = 2, taps: int = 12):
        super().__init__()
        self.ratio = ratio
        self.pad_left, self.pad_right = taps // 2 - (taps % 2 == 0), taps // 2
        self.register_buffer("filter", kaiser_sinc(0.5 / ratio, 0.6 / ratio, taps),
                             persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        return F.conv1d(F.pad(x, (self.pad_left, self.pad_right), mode="replicate"),
                        self.filter.to(x.dtype).expand(c, -1, -1), stride=self.ratio, groups=c)


class AntiAliased(nn.Module):
    """act applied at `ratio` times the rate: x [B, C, T] -> [B, C, T]. The activation's
    parameters sit under `.act` (BigVGAN's and transformers' Xcodec2 layout)."""

    def __init__(self, act: nn.Module, ratio: int = 2, taps: int = 12):
        super().__init__()
        self.act = act
        self.upsample = Upsample(ratio, taps)
        self.downsample = Downsample(ratio, taps)

    def reach(self) -> tuple[int, int, int]:
        """(left, right, 1) input samples an output sample reads: the upsampling filter spans
        about taps / ratio input samples each side, the downsampling one taps / (2 ratio)."""
        span = -(-self.upsample.taps // self.upsample.ratio)
        return span, span, 1

    def forward(self, x: Tensor) -> Tensor:
        return self.downsample(self.act(self.upsample(x)))
