"""Multi-period discriminator (Kong et al. 2020, "HiFi-GAN", sec. 2.2).

The waveform is folded into [B, C, T/p, p] for a few prime periods p; convs of width 1 along
the period axis then only ever combine samples p apart, so each sub-discriminator judges one
periodic structure that a 1-D receptive field would blur. Layer sizes follow the public
HiFi-GAN code (jik876/hifi-gan, `DiscriminatorP`): kernel 5 stride 3 along time, channels
32-128-512-1024-1024, a 3x1 output conv, leaky ReLU 0.1, weight norm.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

from ..modules.conv import pad1d
from .base import DISCRIMINATORS, Discriminator, DiscriminatorOutput, run_conv_stack


@dataclass
class MPDConfig:
    """periods: fold lengths (primes, so sub-discriminators overlap little); channels: output
    channels of each conv (all strided by `stride` along time except the last)."""

    periods: list[int] = field(default_factory=lambda: [2, 3, 5, 7, 11])
    channels: list[int] = field(default_factory=lambda: [32, 128, 512, 1024, 1024])
    kernel_size: int = 5
    stride: int = 3
    lrelu_slope: float = 0.1
    use_spectral_norm: bool = False

    def __post_init__(self):
        if not self.periods or min(self.periods) < 1:
            raise ValueError(f"periods must be positive integers, got {self.periods}")
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"channels must be positive integers, got {self.channels}")
        if self.kernel_size < 1 or self.stride < 1:
            raise ValueError("kernel_size and stride must be >= 1")


class PeriodDiscriminator(nn.Module):
    """wav [B, C, T] -> logits [B, N], feature maps [B, ch, T'/p, p] (last = pre-flatten logits)."""

    def __init__(self, period: int, in_channels: int, cfg: MPDConfig):
        super().__init__()
        norm = spectral_norm if cfg.use_spectral_norm else weight_norm
        self.period = period
        self.slope = cfg.lrelu_slope
        k = cfg.kernel_size
        strides = [cfg.stride] * (len(cfg.channels) - 1) + [1]
        ins = [in_channels, *cfg.channels[:-1]]
        self.convs = nn.ModuleList(
            norm(nn.Conv2d(i, o, (k, 1), (s, 1), padding=(k // 2, 0)))
            for i, o, s in zip(ins, cfg.channels, strides)
        )
        self.post = norm(nn.Conv2d(cfg.channels[-1], 1, (3, 1), padding=(1, 0)))

    def forward(self, wav: Tensor) -> tuple[Tensor, list[Tensor]]:
        b, c, t = wav.shape
        # Reflect-pad to a whole number of periods, as HiFi-GAN does.
        x = pad1d(wav, 0, -t % self.period, "reflect")
        x = x.view(b, c, -1, self.period)
        return run_conv_stack(x, self.convs, self.post, self.slope)


@DISCRIMINATORS.register("mpd", MPDConfig)
class MultiPeriodDiscriminator(Discriminator):
    """wav [B, C, T] -> one (logits [B, N_p], feature maps) per period.

    The C channels are input channels of the first conv (a stereo pair is judged jointly).
    """

    def __init__(self, cfg: MPDConfig, channels: int):
        super().__init__()
        self.cfg = cfg
        self.discriminators = nn.ModuleList(
            PeriodDiscriminator(p, channels, cfg) for p in cfg.periods
        )

    def forward(self, wav: Tensor) -> DiscriminatorOutput:
        return [d(wav) for d in self.discriminators]
