"""ECAPA-TDNN speaker encoder (Desplanques et al. 2020, "ECAPA-TDNN: Emphasized Channel
Attention, Propagation and Aggregation in TDNN Based Speaker Verification", sec. 2): one
vector per utterance, the timbre that FreeCodec's decoder is conditioned on (Zheng et al.
2024, sec. 2.1: a global vector from an ECAPA-TDNN speaker encoder).

    log mel (80 bands, 25 ms windows every 10 ms, mean removed per utterance)
    -> Conv1d k5 -> 3 SE-Res2Blocks (k3, dilations 2, 3, 4)
    -> concatenated block outputs -> Conv1d 1x1 -> attentive statistics pooling (with the
       utterance's mean and std as context) -> LayerNorm -> Linear -> [B, dim]

Departures: FreeCodec starts from a pre-trained ECAPA-TDNN; here it is trained with the codec
(no speaker-verification weights are bundled). The pooled vector is normalised with a
LayerNorm rather than ECAPA's BatchNorm, so a batch of one trains.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..modules.mel import CenteredLogMel as LogMel
from ..strict_config import check_ranges
from .components import GLOBAL_ENCODERS


@dataclass
class EcapaConfig:
    """ECAPA-TDNN's C = 512 model (the paper's small one; 1024 for the large), Res2Net scale
    8, SE bottleneck 128, attention 128, over 80-band log mels."""

    channels: int = 512
    scale: int = 8
    dilations: list[int] = field(default_factory=lambda: [2, 3, 4])
    se_dim: int = 128
    attention_dim: int = 128
    n_mels: int = 80
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160

    def __post_init__(self):
        check_ranges(self, positive=("channels", "scale", "se_dim", "attention_dim", "n_mels",
                                     "n_fft", "win_length", "hop_length"))
        if self.channels % self.scale:
            raise ValueError(f"channels ({self.channels}) must be a multiple of scale "
                             f"({self.scale})")
        if not self.dilations or min(self.dilations) < 1:
            raise ValueError(f"dilations must be positive integers, got {self.dilations}")


def _tdnn(c_in: int, c_out: int, kernel: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(c_in, c_out, kernel, dilation=dilation,
                                   padding=dilation * (kernel - 1) // 2),
                         nn.ReLU(), nn.BatchNorm1d(c_out))


class SEBlock(nn.Module):
    """Squeeze-excitation over channels: x [B, C, T] scaled by gates from its time mean."""

    def __init__(self, channels: int, bottleneck: int):
        super().__init__()
        self.gate = nn.Sequential(nn.Conv1d(channels, bottleneck, 1), nn.ReLU(),
                                  nn.Conv1d(bottleneck, channels, 1), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x.mean(-1, keepdim=True))


class SERes2Block(nn.Module):
    """1x1 TDNN -> Res2Net dilated convs (scale groups, each fed the previous group's output)
    -> 1x1 TDNN -> SE, plus the input."""

    def __init__(self, channels: int, scale: int, dilation: int, se_dim: int):
        super().__init__()
        width = channels // scale
        self.scale = scale
        self.pre = _tdnn(channels, channels)
        self.convs = nn.ModuleList(_tdnn(width, width, 3, dilation) for _ in range(scale - 1))
        self.post = _tdnn(channels, channels)
        self.se = SEBlock(channels, se_dim)

    def forward(self, x: Tensor) -> Tensor:
        parts = torch.chunk(self.pre(x), self.scale, dim=1)
        out, y = [parts[0]], None
        for conv, part in zip(self.convs, parts[1:]):
            y = conv(part if y is None else part + y)
            out.append(y)
        return x + self.se(self.post(torch.cat(out, 1)))


class AttentiveStatsPool(nn.Module):
    """h [B, C, T] -> [B, 2C]: attention-weighted mean and std over time, the attention
    reading each frame beside the utterance's plain mean and std (ECAPA sec. 2.3)."""

    def __init__(self, channels: int, attention_dim: int):
        super().__init__()
        self.attention = nn.Sequential(nn.Conv1d(3 * channels, attention_dim, 1), nn.Tanh(),
                                       nn.Conv1d(attention_dim, channels, 1))

    def forward(self, h: Tensor) -> Tensor:
        t = h.shape[-1]
        mean, std = h.mean(-1, keepdim=True), h.std(-1, keepdim=True, unbiased=False)
        context = torch.cat([h, mean.expand(-1, -1, t), std.expand(-1, -1, t)], 1)
        w = torch.softmax(self.attention(context), dim=-1)
        mu = (w * h).sum(-1)
        sigma = ((w * h * h).sum(-1) - mu * mu).clamp(min=1e-5).sqrt()
        return torch.cat([mu, sigma], 1)


@GLOBAL_ENCODERS.register("ecapa", EcapaConfig)
class EcapaTDNN(nn.Module):
    """wav [B, 1, T] -> speaker vector [B, dim]."""

    def __init__(self, cfg: EcapaConfig, sample_rate: int, dim: int, channels: int = 1):
        if channels != 1:
            raise ValueError(f"the ecapa speaker encoder reads mono audio, not {channels} "
                             f"channels")
        super().__init__()
        self.mel = LogMel(sample_rate, cfg.n_fft, cfg.hop_length, cfg.n_mels, cfg.win_length)
        c = cfg.channels
        self.stem = _tdnn(cfg.n_mels, c, 5)
        self.blocks = nn.ModuleList(SERes2Block(c, cfg.scale, d, cfg.se_dim)
                                    for d in cfg.dilations)
        agg = c * len(cfg.dilations)
        self.aggregate = _tdnn(agg, agg)
        self.pool = AttentiveStatsPool(agg, cfg.attention_dim)
        self.norm = nn.LayerNorm(2 * agg)
        self.out = nn.Linear(2 * agg, dim)

    def forward(self, wav: Tensor) -> Tensor:
        x = self.mel(wav)
        x = x - x.mean(-1, keepdim=True)  # per-utterance mean normalisation (SpeechBrain's)
        h = self.stem(x)
        outs = []
        for block in self.blocks:
            h = block(h)
            outs.append(h)
        pooled = self.pool(self.aggregate(torch.cat(outs, 1)))
        return self.out(self.norm(pooled))
