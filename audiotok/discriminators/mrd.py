"""Multi-resolution spectrogram discriminator (Jang et al. 2021, "UnivNet", sec. 3.2; the
variant of Siuzdak 2023, "Vocos").

Each resolution judges a single-band linear magnitude spectrogram, so the three window
lengths trade time against frequency resolution. This is the UnivNet / Vocos single-band
magnitude version, not DAC's band-split complex one. Defaults follow the public Vocos code
(gemelo-ai/vocos, `DiscriminatorR`): windows of 2048/1024/512 samples with hop = window/4,
`center=True` (reflect padding), no analysis window (rectangular; UnivNet's code also passes
none), 64 channels, kernels (7,5) (5,3) (5,3) 3 3 strided over [frequency, time], leaky
ReLU 0.1, weight norm.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

from ..modules.conv import pad1d
from .base import DISCRIMINATORS, Discriminator, DiscriminatorOutput, run_conv_stack

# (kernel, stride, padding) over [frequency, time] per conv, from Vocos' DiscriminatorR.
_LAYERS = [
    ((7, 5), (2, 2), (3, 2)),
    ((5, 3), (2, 1), (2, 1)),
    ((5, 3), (2, 2), (2, 1)),
    ((3, 3), (2, 1), (1, 1)),
    ((3, 3), (2, 2), (1, 1)),
]
_WINDOWS = {"rect": torch.ones, "hann": torch.hann_window}


@dataclass
class MRDConfig:
    """window_lengths: n_fft = win_length per resolution; hop = window * hop_factor.
    window: "rect" (published) or "hann"."""

    window_lengths: list[int] = field(default_factory=lambda: [2048, 1024, 512])
    hop_factor: float = 0.25
    channels: int = 64
    window: str = "rect"
    lrelu_slope: float = 0.1
    use_spectral_norm: bool = False

    def __post_init__(self):
        if not self.window_lengths or min(self.window_lengths) < 2:
            raise ValueError(f"window_lengths must be >= 2, got {self.window_lengths}")
        if not 0 < self.hop_factor <= 1:
            raise ValueError(f"hop_factor must be in (0, 1], got {self.hop_factor}")
        if self.channels < 1:
            raise ValueError(f"channels must be >= 1, got {self.channels}")
        if self.window not in _WINDOWS:
            raise ValueError(f"window must be one of {sorted(_WINDOWS)}, got '{self.window}'")


class ResolutionDiscriminator(nn.Module):
    """wav [B, C, T] -> |STFT| [B, C, n_fft/2 + 1, frames] -> logits [B, N], feature maps."""

    def __init__(self, in_channels: int, window_length: int, cfg: MRDConfig):
        super().__init__()
        norm = spectral_norm if cfg.use_spectral_norm else weight_norm
        self.n_fft = window_length
        self.hop = max(1, int(window_length * cfg.hop_factor))
        self.register_buffer("window", _WINDOWS[cfg.window](window_length), persistent=False)
        self.slope = cfg.lrelu_slope
        ins = [in_channels] + [cfg.channels] * (len(_LAYERS) - 1)
        self.convs = nn.ModuleList(
            norm(nn.Conv2d(i, cfg.channels, k, s, padding=p)) for i, (k, s, p) in zip(ins, _LAYERS)
        )
        self.post = norm(nn.Conv2d(cfg.channels, 1, 3, padding=1))

    def spectrogram(self, wav: Tensor) -> Tensor:
        b, c, t = wav.shape
        # center=True by hand: pad1d reflects even clips shorter than half a window.
        x = pad1d(wav.reshape(b * c, 1, t), self.n_fft // 2, self.n_fft // 2, "reflect")
        mag = torch.stft(x[:, 0], self.n_fft, self.hop, window=self.window, center=False,
                         return_complex=True).abs()
        return mag.view(b, c, *mag.shape[-2:])

    def forward(self, wav: Tensor) -> tuple[Tensor, list[Tensor]]:
        return run_conv_stack(self.spectrogram(wav), self.convs, self.post, self.slope)


@DISCRIMINATORS.register("mrd", MRDConfig)
class MultiResolutionDiscriminator(Discriminator):
    """wav [B, C, T] -> one (logits [B, N], feature maps) per window length.

    The C channels are input channels of the first conv (a stereo pair is judged jointly).
    """

    def __init__(self, cfg: MRDConfig, channels: int):
        super().__init__()
        self.cfg = cfg
        self.discriminators = nn.ModuleList(
            ResolutionDiscriminator(channels, w, cfg) for w in cfg.window_lengths
        )

    def forward(self, wav: Tensor) -> DiscriminatorOutput:
        return [d(wav) for d in self.discriminators]
