"""Multi-scale waveform discriminator (Kumar et al. 2019, "MelGAN"; layer sizes of Kong et
al. 2020, "HiFi-GAN", sec. 2.3).

Identical 1-D conv stacks look at the raw waveform and at copies average-pooled x2 and x4,
so coarser scales judge smooth, long-range structure. Grouped convs keep the wide kernels
(41 taps) affordable. Defaults follow the public HiFi-GAN code (jik876/hifi-gan,
`DiscriminatorS` / `MultiScaleDiscriminator`): spectral norm on the raw-scale stack (it
stabilised training there), weight norm on the others, AvgPool1d(4, 2, padding=2) between
scales, leaky ReLU 0.1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

from ..errors import ConfigError
from .base import DISCRIMINATORS, Discriminator, DiscriminatorOutput, run_conv_stack


@dataclass
class MSDConfig:
    """n_scales: the raw waveform plus n_scales - 1 pooled copies. channels, kernel_sizes,
    strides, groups: one entry per conv of each scale's stack (a 3-tap output conv follows).
    """

    n_scales: int = 3
    channels: list[int] = field(default_factory=lambda: [128, 128, 256, 512, 1024, 1024, 1024])
    kernel_sizes: list[int] = field(default_factory=lambda: [15, 41, 41, 41, 41, 41, 5])
    strides: list[int] = field(default_factory=lambda: [1, 2, 2, 4, 4, 1, 1])
    groups: list[int] = field(default_factory=lambda: [1, 4, 16, 16, 16, 16, 1])
    lrelu_slope: float = 0.1
    spectral_norm_first: bool = True

    def __post_init__(self):
        if self.n_scales < 1:
            raise ValueError(f"n_scales must be >= 1, got {self.n_scales}")
        n = len(self.channels)
        if n == 0 or not len(self.kernel_sizes) == len(self.strides) == len(self.groups) == n:
            raise ValueError("channels, kernel_sizes, strides and groups need one entry per conv")
        for i, (o, g) in enumerate(zip(self.channels, self.groups)):
            prev = self.channels[i - 1] if i else None
            if g < 1 or o % g or (prev is not None and prev % g):
                raise ValueError(f"groups[{i}]={g} must divide the conv's in and out channels")


class ScaleDiscriminator(nn.Module):
    """wav [B, C, T] -> logits [B, N], feature maps [B, ch, T'] (last = pre-flatten logits)."""

    def __init__(self, in_channels: int, cfg: MSDConfig, spectral: bool):
        super().__init__()
        norm = spectral_norm if spectral else weight_norm
        self.slope = cfg.lrelu_slope
        ins = [in_channels, *cfg.channels[:-1]]
        self.convs = nn.ModuleList(
            norm(nn.Conv1d(i, o, k, s, padding=k // 2, groups=g))
            for i, o, k, s, g in zip(ins, cfg.channels, cfg.kernel_sizes, cfg.strides, cfg.groups)
        )
        self.post = norm(nn.Conv1d(cfg.channels[-1], 1, 3, padding=1))

    def forward(self, wav: Tensor) -> tuple[Tensor, list[Tensor]]:
        return run_conv_stack(wav, self.convs, self.post, self.slope)


@DISCRIMINATORS.register("msd", MSDConfig)
class MultiScaleDiscriminator(Discriminator):
    """wav [B, C, T] -> one (logits [B, N_s], feature maps) per scale, finest first.

    The C channels are input channels of the first conv (a stereo pair is judged jointly).
    """

    def __init__(self, cfg: MSDConfig, channels: int):
        super().__init__()
        if channels % cfg.groups[0]:
            raise ConfigError(
                f"msd: groups[0]={cfg.groups[0]} must divide the {channels} audio channels")
        self.cfg = cfg
        self.discriminators = nn.ModuleList(
            ScaleDiscriminator(channels, cfg, spectral=cfg.spectral_norm_first and i == 0)
            for i in range(cfg.n_scales)
        )

    def forward(self, wav: Tensor) -> DiscriminatorOutput:
        out = []
        for i, d in enumerate(self.discriminators):
            if i:
                wav = F.avg_pool1d(wav, 4, 2, padding=2)
            out.append(d(wav))
        return out
