"""SEANet conv(+LSTM) encoder/decoder, the EnCodec / SpeechTokenizer backbone.

Architecture facts from Défossez et al. 2022 ("High Fidelity Neural Audio Compression") and
the public EnCodec code: ELU residual units with a 2x channel bottleneck ("compress"),
dilations growing by `dilation_base`, downsampling convs of kernel 2*stride doubling the
channels, a 2-layer LSTM with skip after the last downsampling, reflect padding, weight norm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from torch import Tensor, nn

from ..modules.conv import (
    Conv1d,
    ConvTranspose1d,
    decoder_frame_reach,
    fan_in_init,
    module_reach,
    steady_decoder_frame_reach,
)
from ..modules.lstm import SLSTM
from .components import DECODERS, ENCODERS, check_hop
from .contracts import Decoder, Encoder
from .streaming import sequential_stages


@dataclass
class SEANetConfig:
    n_filters: int = 32
    strides: list[int] = field(default_factory=lambda: [2, 4, 5, 8])  # order applied
    n_residual_layers: int = 1
    residual_kernel_size: int = 3
    dilation_base: int = 2
    compress: int = 2
    kernel_size: int = 7
    last_kernel_size: int = 7
    lstm_layers: int = 2
    causal: bool = False
    pad_mode: str = "reflect"
    norm: str = "weight_norm"
    true_skip: bool = True  # identity shortcut in residual blocks; False: a 1x1 conv (EnCodec)
    weight_init: str = "default"  # default (PyTorch) | fan_in: N(0, 1/fan_in), see fan_in_init
    # EnCodec's per-layer padding: the encoder takes any input length, each strided conv
    # padding its input on the right up to a whole frame (modules/conv.py), instead of the
    # codec zero-padding the waveform to whole frames; on for EnCodec's checkpoints, whose
    # last frame depends on it
    publisher_padding: bool = False
    # encoder only: a bidirectional LSTM (SpeechTokenizer), whose 2x wider output the last
    # conv takes; not causal
    bidirectional_lstm: bool = False

    def __post_init__(self):
        if self.weight_init not in ("default", "fan_in"):
            raise ValueError(f"weight_init must be default or fan_in, got '{self.weight_init}'")
        if self.bidirectional_lstm and self.causal:
            raise ValueError("bidirectional_lstm reads the future: it cannot be causal")


@dataclass
class SEANetDecoderConfig(SEANetConfig):
    strides: list[int] = field(default_factory=lambda: [8, 5, 4, 2])


class SEANetResBlock(nn.Module):
    """ELU -> conv(k, dilation) -> ELU -> conv(1), plus identity skip. [B, C, T] -> same."""

    def __init__(self, dim: int, dilation: int, cfg: SEANetConfig):
        super().__init__()
        hidden = dim // cfg.compress
        conv = {"causal": cfg.causal, "pad_mode": cfg.pad_mode, "norm": cfg.norm,
                "extra_padding": cfg.publisher_padding}
        self.block = nn.Sequential(
            nn.ELU(), Conv1d(dim, hidden, cfg.residual_kernel_size, dilation=dilation, **conv),
            nn.ELU(), Conv1d(hidden, dim, 1, **conv),
        )
        self.shortcut = nn.Identity() if cfg.true_skip else Conv1d(dim, dim, 1, **conv)

    def reach(self, steady: bool = False):
        return module_reach(self.block, steady)

    def forward(self, x: Tensor) -> Tensor:
        return self.shortcut(x) + self.block(x)


def _res_stack(dim: int, cfg: SEANetConfig) -> list[nn.Module]:
    return [SEANetResBlock(dim, cfg.dilation_base ** j, cfg) for j in range(cfg.n_residual_layers)]


@ENCODERS.register("seanet", SEANetConfig)
class SEANetEncoder(Encoder):
    """wav [B, C, T] -> z [B, D, T / hop]."""

    streams_in_stages = True

    def __init__(self, cfg: SEANetConfig, channels: int, latent_dim: int):
        super().__init__()
        conv = {"causal": cfg.causal, "pad_mode": cfg.pad_mode, "norm": cfg.norm,
                "extra_padding": cfg.publisher_padding}
        self.pads_itself = cfg.publisher_padding
        dim = cfg.n_filters
        layers: list[nn.Module] = [Conv1d(channels, dim, cfg.kernel_size, **conv)]
        for stride in cfg.strides:
            layers += _res_stack(dim, cfg)
            layers += [nn.ELU(), Conv1d(dim, dim * 2, 2 * stride, stride=stride, **conv)]
            dim *= 2
        if cfg.lstm_layers:
            layers.append(SLSTM(dim, cfg.lstm_layers, bidirectional=cfg.bidirectional_lstm))
            dim *= 2 if cfg.bidirectional_lstm else 1
        layers += [nn.ELU(), Conv1d(dim, latent_dim, cfg.last_kernel_size, **conv)]
        self.model = nn.Sequential(*layers)
        if cfg.weight_init == "fan_in":
            fan_in_init(self.model)
        self.hop_length = math.prod(cfg.strides)
        self.unbounded = cfg.lstm_layers > 0
        self.bidirectional = cfg.lstm_layers > 0 and cfg.bidirectional_lstm

    def receptive_field(self):
        if self.unbounded:
            return None
        left, right, _ = module_reach(self.model)
        return left, right

    def lookahead(self) -> int | None:
        """Samples past a frame's window start that can change it, away from the signal's
        start (where reflect padding reads ahead; streaming holds the first frames back for
        it), also with an LSTM (its unbounded reach is all in the past when unidirectional);
        None if bidirectional."""
        return None if self.bidirectional else module_reach(self.model, steady=True)[1]

    def stream_stages(self) -> list:
        """Layer-by-layer streaming (codecs/streaming.py); only for causal configurations.
        An LSTM streams by carrying its state."""
        return sequential_stages(self.model)

    def forward(self, wav: Tensor) -> Tensor:
        return self.model(wav)


@DECODERS.register("seanet", SEANetDecoderConfig)
class SEANetDecoder(Decoder):
    """z [B, D, T'] -> wav [B, C, T' * hop]."""

    streams_in_stages = True

    def __init__(self, cfg: SEANetConfig, channels: int, latent_dim: int, hop_length: int):
        super().__init__()
        check_hop(cfg.strides, hop_length)
        conv = {"causal": cfg.causal, "pad_mode": cfg.pad_mode, "norm": cfg.norm}
        dim = cfg.n_filters * 2 ** len(cfg.strides)
        layers: list[nn.Module] = [Conv1d(latent_dim, dim, cfg.kernel_size, **conv)]
        if cfg.lstm_layers:
            layers.append(SLSTM(dim, cfg.lstm_layers))
        for stride in cfg.strides:
            layers += [nn.ELU(), ConvTranspose1d(dim, dim // 2, 2 * stride, stride,
                                                 causal=cfg.causal, norm=cfg.norm)]
            dim //= 2
            layers += _res_stack(dim, cfg)
        layers += [nn.ELU(), Conv1d(dim, channels, cfg.last_kernel_size, **conv)]
        self.model = nn.Sequential(*layers)
        self.unbounded = cfg.lstm_layers > 0

    def receptive_field(self):
        return None if self.unbounded else decoder_frame_reach(self.model)

    def lookahead(self) -> int:
        """Later frames that can change a frame's samples, also with an LSTM (which only
        looks back), away from the signal's start."""
        return steady_decoder_frame_reach(self.model)[1]

    def stream_stages(self) -> list:
        """Layer-by-layer streaming (codecs/streaming.py); only for causal configurations."""
        return sequential_stages(self.model)

    def forward(self, z: Tensor) -> Tensor:
        return self.model(z)
