"""DAC-style snake encoder/decoder (Kumar et al. 2023, "High-Fidelity Audio Compression with
Improved RVQGAN"; descript-audio-codec).

Facts carried over: residual units of Snake -> conv(k=7, dilation 1/3/9) -> Snake -> conv(1);
downsampling convs of kernel 2*stride that double the channels; a decoder that starts wide
(1536 channels) and halves at every transposed conv; zero padding; weight norm; tanh output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from torch import Tensor, nn

from ..modules.antialias import AntiAliased
from ..modules.conv import Conv1d, ConvTranspose1d, decoder_frame_reach, module_reach
from ..modules.snake import Snake1d, SnakeBeta
from .components import DECODERS, ENCODERS, check_hop
from .contracts import Decoder, Encoder

DILATIONS = (1, 3, 9)
ACTIVATIONS = ("snake", "snake_beta_aa")


def activation(kind: str, dim: int) -> nn.Module:
    """DAC's Snake, or "snake_beta_aa": BigVGAN's SnakeBeta run anti-aliased at twice the rate
    (modules/antialias.py), as in BigCodec's and X-Codec-2's encoders."""
    if kind == "snake_beta_aa":
        return AntiAliased(SnakeBeta(dim))
    return Snake1d(dim)


@dataclass
class DACEncoderConfig:
    d_model: int = 64
    strides: list[int] = field(default_factory=lambda: [2, 4, 5, 8])
    causal: bool = False
    # weight_norm (DAC's layers), or none for checkpoints stored with plain weights
    # (transformers' DacModel): weight norm would give those back only to rounding
    norm: str = "weight_norm"
    # snake (DAC) or snake_beta_aa (X-Codec-2's acoustic encoder: see `activation`)
    activation: str = "snake"

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got "
                             f"{self.activation!r}")


@dataclass
class DACDecoderConfig:
    channels: int = 1536
    strides: list[int] = field(default_factory=lambda: [8, 5, 4, 2])
    causal: bool = False
    tanh: bool = True
    # descript-audio-codec pads its transposed convs by ceil(stride / 2) on both sides, so
    # each odd stride drops one output sample (its 16/24 kHz releases decode 8 samples short
    # per call); on for checkpoints converted from it, where outputs must match bit for bit
    publisher_padding: bool = False
    norm: str = "weight_norm"         # as DACEncoderConfig.norm

    def __post_init__(self):
        if self.publisher_padding and self.causal:
            raise ValueError("publisher_padding is descript-audio-codec's non-causal layout")


class DACResidualUnit(nn.Module):
    """Snake -> conv(7, dilation) -> Snake -> conv(1), identity skip. [B, C, T] -> same."""

    def __init__(self, dim: int, dilation: int, causal: bool, norm: str = "weight_norm",
                 groups: int = 1, act: str = "snake"):
        super().__init__()
        # groups=dim: SNAC's depthwise variant of the dilated conv (its 1x1 conv stays dense)
        self.block = nn.Sequential(
            activation(act, dim), Conv1d(dim, dim, 7, dilation=dilation, groups=groups,
                                         causal=causal, norm=norm),
            activation(act, dim), Conv1d(dim, dim, 1, causal=causal, norm=norm),
        )

    def reach(self):
        return module_reach(self.block)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)


def _units(dim: int, causal: bool, norm: str, act: str = "snake") -> list[nn.Module]:
    return [DACResidualUnit(dim, d, causal, norm, act=act) for d in DILATIONS]


@ENCODERS.register("dac", DACEncoderConfig)
class DACEncoder(Encoder):
    """wav [B, C, T] -> z [B, D, T / hop]."""

    def __init__(self, cfg: DACEncoderConfig, channels: int, latent_dim: int):
        super().__init__()
        dim = cfg.d_model
        conv = {"causal": cfg.causal, "norm": cfg.norm}
        layers: list[nn.Module] = [Conv1d(channels, dim, 7, **conv)]
        act = cfg.activation
        for stride in cfg.strides:
            layers += _units(dim, cfg.causal, cfg.norm, act)
            layers += [activation(act, dim), Conv1d(dim, dim * 2, 2 * stride, stride, **conv)]
            dim *= 2
        layers += [activation(act, dim), Conv1d(dim, latent_dim, 3, **conv)]
        self.model = nn.Sequential(*layers)
        self.hop_length = math.prod(cfg.strides)

    def receptive_field(self):
        left, right, _ = module_reach(self.model)
        return left, right

    def forward(self, wav: Tensor) -> Tensor:
        return self.model(wav)


@DECODERS.register("dac", DACDecoderConfig)
class DACDecoder(Decoder):
    """z [B, D, T'] -> wav [B, C, T' * hop]."""

    def __init__(self, cfg: DACDecoderConfig, channels: int, latent_dim: int, hop_length: int):
        super().__init__()
        check_hop(cfg.strides, hop_length)
        dim = cfg.channels
        conv = {"causal": cfg.causal, "norm": cfg.norm}
        layers: list[nn.Module] = [Conv1d(latent_dim, dim, 7, **conv)]
        for stride in cfg.strides:
            trim = math.ceil(stride / 2) if cfg.publisher_padding else None
            layers += [Snake1d(dim), ConvTranspose1d(dim, dim // 2, 2 * stride, stride,
                                                     trim=trim, **conv)]
            dim //= 2
            layers += _units(dim, cfg.causal, cfg.norm)
        layers += [Snake1d(dim), Conv1d(dim, channels, 7, **conv)]
        if cfg.tanh:
            layers.append(nn.Tanh())
        self.model = nn.Sequential(*layers)

    def receptive_field(self):
        return decoder_frame_reach(self.model)

    def forward(self, z: Tensor) -> Tensor:
        return self.model(z)
