"""SNAC encoder/decoder (Siuzdak et al. 2024, "SNAC: Multi-Scale Neural Audio Codec";
the `snac` package): DAC's snake residual stacks with three changes.

Facts carried over from the paper and the `snac` package (layers.py, attention.py):
  * depthwise (`groups = channels`) dilated convs in every residual unit, a depthwise k=7
    conv ending the encoder, and a depthwise k=7 + dense 1x1 pair starting the decoder;
  * optional local windowed attention (modules/window_attention.py) after the encoder's
    last downsampling and before the decoder's first upsampling (the 32/44 kHz music models,
    window 32; the 24 kHz speech model has none);
  * a noise block after every transposed conv of the decoder (modules/noise.py): decoding
    is stochastic, reproducible by seeding torch;
  * no snake before the encoder's last conv, and transposed convs that pad odd strides with
    `output_padding` so L frames give exactly L * stride samples.

The quantizer is the multi-scale RVQ (quantizers/multiscale_rvq.py). Windows and the
coarsest quantizer stride both group frames, so the codec pads the input to a multiple of
hop * lcm(window, strides) samples (SNAC's `preprocess`) and aligns chunks to that
(`frame_multiple`, codecs/base.py).

The module tree mirrors the package's (encoder.model[i].block[j], decoder.model[i].block[j])
so that its checkpoints map by position (codecs/published/snac.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from torch import Tensor, nn

from ..modules.conv import Conv1d, ConvTranspose1d, decoder_frame_reach, module_reach
from ..modules.noise import NoiseBlock
from ..modules.snake import Snake1d
from ..modules.window_attention import WindowAttention
from .components import DECODERS, ENCODERS, check_hop
from .contracts import Decoder, Encoder
from .dac import DILATIONS, DACResidualUnit


@dataclass
class SNACEncoderConfig:
    """Defaults: the released 24 kHz speech model (hubertsiuzdak/snac_24khz)."""

    d_model: int = 48                 # channels after the first conv; doubled per stride
    strides: list[int] = field(default_factory=lambda: [2, 4, 8, 8])
    depthwise: bool = True
    attn_window: int | None = None    # frames per attention window; None: no attention
    norm: str = "weight_norm"


@dataclass
class SNACDecoderConfig:
    channels: int = 1024              # after the input convs; halved per stride
    strides: list[int] = field(default_factory=lambda: [8, 8, 4, 2])
    depthwise: bool = True
    attn_window: int | None = None
    noise: bool = True
    norm: str = "weight_norm"


def _units(dim: int, depthwise: bool, norm: str) -> list[nn.Module]:
    groups = dim if depthwise else 1
    return [DACResidualUnit(dim, d, False, norm, groups) for d in DILATIONS]


class SNACEncoderBlock(nn.Module):
    """3 residual units at `dim`, snake, strided conv to 2 * dim: [B, dim, T] -> [B, 2 dim, T/s]."""

    def __init__(self, dim: int, stride: int, depthwise: bool, norm: str):
        super().__init__()
        self.block = nn.Sequential(*_units(dim, depthwise, norm), Snake1d(dim),
                                   Conv1d(dim, 2 * dim, 2 * stride, stride, norm=norm))

    def reach(self):
        return module_reach(self.block)

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


class SNACDecoderBlock(nn.Module):
    """Snake, transposed conv (dim -> out), [noise], 3 residual units: [B, dim, T] ->
    [B, out, T * s]."""

    def __init__(self, dim: int, out: int, stride: int, cfg: SNACDecoderConfig):
        super().__init__()
        layers = [Snake1d(dim), ConvTranspose1d(dim, out, 2 * stride, stride, norm=cfg.norm,
                                                trim=math.ceil(stride / 2),
                                                output_padding=stride % 2)]
        if cfg.noise:
            layers.append(NoiseBlock(out, cfg.norm))
        self.block = nn.Sequential(*layers, *_units(out, cfg.depthwise, cfg.norm))

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


@ENCODERS.register("snac", SNACEncoderConfig)
class SNACEncoder(Encoder):
    """wav [B, C, T] -> z [B, d_model * 2^len(strides), T / hop]; T a multiple of
    hop * attn_window."""

    def __init__(self, cfg: SNACEncoderConfig, channels: int, latent_dim: int):
        super().__init__()
        dim = cfg.d_model
        if dim * 2 ** len(cfg.strides) != latent_dim:
            raise ValueError(f"a snac encoder ends at d_model * 2^len(strides) = "
                             f"{dim * 2 ** len(cfg.strides)} channels, not latent_dim "
                             f"{latent_dim}")
        layers: list[nn.Module] = [Conv1d(channels, dim, 7, norm=cfg.norm)]
        for stride in cfg.strides:
            layers.append(SNACEncoderBlock(dim, stride, cfg.depthwise, cfg.norm))
            dim *= 2
        if cfg.attn_window:
            layers.append(WindowAttention(dim, cfg.attn_window))
        layers.append(Conv1d(dim, dim, 7, groups=dim if cfg.depthwise else 1, norm=cfg.norm))
        self.model = nn.Sequential(*layers)
        self.hop_length = math.prod(cfg.strides)
        self.frame_multiple = cfg.attn_window or 1

    def receptive_field(self):
        left, right, _ = module_reach(self.model)
        return left, right

    def forward(self, wav: Tensor) -> Tensor:
        return self.model(wav)


@DECODERS.register("snac", SNACDecoderConfig)
class SNACDecoder(Decoder):
    """z [B, D, T'] -> wav [B, C, T' * hop]; T' a multiple of attn_window."""

    def __init__(self, cfg: SNACDecoderConfig, channels: int, latent_dim: int, hop_length: int):
        super().__init__()
        check_hop(cfg.strides, hop_length)
        dim = cfg.channels
        if cfg.depthwise:
            layers: list[nn.Module] = [
                Conv1d(latent_dim, latent_dim, 7, groups=latent_dim, norm=cfg.norm),
                Conv1d(latent_dim, dim, 1, norm=cfg.norm)]
        else:
            layers = [Conv1d(latent_dim, dim, 7, norm=cfg.norm)]
        if cfg.attn_window:
            layers.append(WindowAttention(dim, cfg.attn_window))
        for stride in cfg.strides:
            layers.append(SNACDecoderBlock(dim, dim // 2, stride, cfg))
            dim //= 2
        layers += [Snake1d(dim), Conv1d(dim, channels, 7, norm=cfg.norm), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.frame_multiple = cfg.attn_window or 1

    def receptive_field(self):
        flat = [m for layer in self.model
                for m in (layer.block if isinstance(layer, SNACDecoderBlock) else [layer])]
        return decoder_frame_reach(flat)

    def forward(self, z: Tensor) -> Tensor:
        return self.model(z)
