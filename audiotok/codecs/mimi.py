"""Mimi-style causal streaming encoder/decoder: SEANet + windowed causal transformer.

Architecture facts from Défossez et al. 2024 ("Moshi", sec. 3.3, the Mimi codec) and its public
code: a causal SEANet (strides 4, 5, 6, 8 at 24 kHz -> 25 Hz, 64 filters, last kernel 3, no
LSTM, no weight norm, zero padding) whose 512-dim output passes through an 8-layer causal
transformer (context 250 frames, RoPE, layer scale 0.01), then a learnt causal strided conv
(kernel 2 * stride) down to 12.5 Hz. The decoder mirrors it: a causal transposed conv up to
25 Hz, a transformer, a causal SEANet decoder. Everything is causal, so every frame is final as
soon as its own samples have arrived and the codec streams with 80 ms latency at 12.5 Hz.

    wav [B, C, T] -> SEANet (T / prod(strides) frames, transformer.dim channels)
                  -> CausalTransformer -> downsample conv -> z [B, latent_dim, T / hop]
    hop = prod(strides) * downsample

By default the upsampling conv is a full transposed conv and the downsampling conv pads with
zeros like every other layer here. Mimi's released weights need three options: its upsampling
conv is depthwise and bias-free (`upsample_groups` = width, `upsample_bias` false; a
"channel-wise bug" its code keeps for compatibility), its downsampling conv pads by replicating
the first sample (`resample_pad_mode: replicate`), and its transformer's RoPE angles are
rounded as its publisher's code rounds them (transformer `rope_style`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn

from ..modules.conv import Conv1d, ConvTranspose1d, chain_reach, decoder_frame_reach
from ..modules.transformer import CausalTransformer, TransformerConfig
from .components import DECODERS, ENCODERS, check_hop
from .contracts import Decoder, Encoder
from .seanet import SEANetConfig, SEANetDecoder, SEANetEncoder
from .streaming import TransformerStage, sequential_stages


@dataclass
class MimiEncoderConfig(SEANetConfig):
    """SEANet fields (Mimi's values as defaults) + `transformer` + `downsample`.

    The SEANet outputs `transformer.dim` channels; `downsample` is the stride of the causal
    conv after the transformer (Mimi: 2, from 25 Hz to 12.5 Hz; 1 = none, then a 1x1 conv
    maps to latent_dim if the widths differ). `causal` applies to the convolutions; the
    transformer is always causal. Reflect padding looks ahead at the start of a signal and so
    cannot stream exactly: keep pad_mode "constant" for streaming.
    """

    n_filters: int = 64
    strides: list[int] = field(default_factory=lambda: [4, 5, 6, 8])
    last_kernel_size: int = 3
    lstm_layers: int = 0
    causal: bool = True
    pad_mode: str = "constant"
    norm: str = "none"
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    downsample: int = 2
    # Mimi's released weights (see the module docstring); pad mode None = pad_mode
    resample_pad_mode: str | None = None
    upsample_groups: int = 1
    upsample_bias: bool = True

    def __post_init__(self):
        super().__post_init__()
        if self.downsample < 1:
            raise ValueError(f"downsample must be >= 1, got {self.downsample}")
        if self.upsample_groups < 1:
            raise ValueError(f"upsample_groups must be >= 1, got {self.upsample_groups}")


@dataclass
class MimiDecoderConfig(MimiEncoderConfig):
    strides: list[int] = field(default_factory=lambda: [8, 6, 5, 4])


def _resample(cfg: MimiEncoderConfig, dim_in: int, dim_out: int, up: bool) -> nn.Module:
    """Mimi's learnt resampling conv (kernel 2 * stride), or a 1x1 conv / identity at 1."""
    s = cfg.downsample
    if s == 1:
        return nn.Identity() if dim_in == dim_out else Conv1d(dim_in, dim_out, 1, norm=cfg.norm)
    if up:
        if dim_in % cfg.upsample_groups or dim_out % cfg.upsample_groups:
            raise ValueError(f"upsample_groups {cfg.upsample_groups} does not divide the "
                             f"widths {dim_in} -> {dim_out}")
        return ConvTranspose1d(dim_in, dim_out, 2 * s, s, causal=cfg.causal, norm=cfg.norm,
                               groups=cfg.upsample_groups, bias=cfg.upsample_bias)
    return Conv1d(dim_in, dim_out, 2 * s, stride=s, causal=cfg.causal,
                  pad_mode=cfg.resample_pad_mode or cfg.pad_mode, norm=cfg.norm, bias=False,
                  extra_padding=cfg.publisher_padding)


@ENCODERS.register("mimi", MimiEncoderConfig)
class MimiEncoder(Encoder):
    """wav [B, C, T] -> z [B, latent_dim, T / hop_length]."""

    streams_in_stages = True

    def __init__(self, cfg: MimiEncoderConfig, channels: int, latent_dim: int):
        super().__init__()
        width = cfg.transformer.dim
        self.seanet = SEANetEncoder(cfg, channels, width)
        self.transformer = CausalTransformer(cfg.transformer)
        self.downsample = _resample(cfg, width, latent_dim, up=False)
        self.pads_itself = cfg.publisher_padding
        self.frame_hop = self.seanet.hop_length  # samples per transformer frame
        self.hop_length = self.frame_hop * cfg.downsample

    def receptive_field(self) -> tuple[int, int] | None:
        """(left, right) samples around a frame's window start; right = hop - 1 when causal."""
        seanet = self.seanet.receptive_field()
        if seanet is None:
            return None
        t_left, _ = self.transformer.reach()
        d_left, d_right, stride = _reach(self.downsample)
        left, right, _ = chain_reach([(*seanet, self.frame_hop), (t_left, 0, 1),
                                      (d_left, d_right, stride)])
        return left, right

    def stream_stages(self) -> list:
        """Convolutions recompute their own short reach; the transformer caches keys/values."""
        return [*self.seanet.stream_stages(), TransformerStage(self.transformer),
                *sequential_stages([self.downsample])]

    def forward(self, wav: Tensor) -> Tensor:
        return self.downsample(self.transformer(self.seanet(wav)))


@DECODERS.register("mimi", MimiDecoderConfig)
class MimiDecoder(Decoder):
    """z [B, latent_dim, T'] -> wav [B, C, T' * hop_length]."""

    streams_in_stages = True

    def __init__(self, cfg: MimiDecoderConfig, channels: int, latent_dim: int, hop_length: int):
        super().__init__()
        if hop_length % cfg.downsample:
            raise ValueError(f"hop length {hop_length} is not divisible by "
                             f"downsample {cfg.downsample}")
        self.frame_hop = hop_length // cfg.downsample
        check_hop(cfg.strides, self.frame_hop)
        width = cfg.transformer.dim
        self.upsample = _resample(cfg, latent_dim, width, up=True)
        self.transformer = CausalTransformer(cfg.transformer)
        self.seanet = SEANetDecoder(cfg, channels, width, self.frame_hop)
        self.factor = cfg.downsample

    def receptive_field(self) -> tuple[int, int] | None:
        """(left, right) latent frames that can change a frame's samples; right 0 when causal."""
        if self.seanet.receptive_field() is None:
            return None
        t_left, _ = self.transformer.reach()
        return decoder_frame_reach([self.upsample, (t_left, 0, 1), *self.seanet.model])

    def stream_stages(self) -> list:
        """Convolutions recompute their own short reach; the transformer caches keys/values."""
        return [*sequential_stages([self.upsample]), TransformerStage(self.transformer),
                *self.seanet.stream_stages()]

    def forward(self, z: Tensor) -> Tensor:
        return self.seanet(self.transformer(self.upsample(z)))


def _reach(module: nn.Module) -> tuple[int, int, int]:
    return module.reach() if hasattr(module, "reach") else (0, 0, 1)
