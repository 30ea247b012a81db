"""Multi-scale STFT discriminator (Défossez et al. 2022, "High Fidelity Neural Audio
Compression" (EnCodec), sec. 3.4).

Each scale takes the complex STFT as real and imaginary channels, so phase errors are
visible, and runs 2-D convs over [time, frequency]: a first conv, convs dilated 1, 2, 4 in
time and strided 2 in frequency, a square conv and a square output conv. Defaults follow the
public code (facebookresearch/encodec and audiocraft `msstftd.py`, EnCodec's `filters: 32`):
n_fft 1024/2048/512 with hop n_fft/4 and a Hann window of n_fft, `center=False`, spectra
divided by the window's L2 norm, kernels (3, 9), leaky ReLU 0.2, weight norm on every conv but
the first (audiocraft's `NormConv2d` defaults to no norm and the first conv names none).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from .base import DISCRIMINATORS, Discriminator, DiscriminatorOutput


def same_padding(kernel: tuple[int, int], dilation: tuple[int, int] = (1, 1)) -> tuple[int, int]:
    return (kernel[0] - 1) * dilation[0] // 2, (kernel[1] - 1) * dilation[1] // 2


class DilatedConvStack(nn.Module):
    """EnCodec's 2-D spectrogram stack, shared with the CQT discriminator.

    z [B, in_ch, T', F] -> logits [B, N], feature maps (one per conv, before the output conv).
    Channels grow as filters * filters_scale**i, capped at max_filters.
    """

    def __init__(self, in_ch: int, filters: int, max_filters: int, filters_scale: int,
                 kernel: tuple[int, int], stride: tuple[int, int], dilations: list[int],
                 slope: float):
        super().__init__()
        width = [min(filters * filters_scale ** i, max_filters) for i in range(len(dilations) + 2)]
        square = (kernel[0], kernel[0])
        convs = [nn.Conv2d(in_ch, width[0], kernel, padding=same_padding(kernel))]
        for i, d in enumerate(dilations):
            convs.append(weight_norm(nn.Conv2d(
                width[i], width[i + 1], kernel, stride, dilation=(d, 1),
                padding=same_padding(kernel, (d, 1)))))
        convs.append(weight_norm(nn.Conv2d(width[-2], width[-1], square,
                                           padding=same_padding(square))))
        self.convs = nn.ModuleList(convs)
        self.post = weight_norm(nn.Conv2d(width[-1], 1, square, padding=same_padding(square)))
        self.slope = slope

    def forward(self, z: Tensor) -> tuple[Tensor, list[Tensor]]:
        fmap = []
        for conv in self.convs:
            z = F.leaky_relu(conv(z), self.slope)
            fmap.append(z)
        return self.post(z).flatten(1), fmap


@dataclass
class MSSTFTConfig:
    """One scale per entry of n_ffts / hop_lengths / win_lengths. filters: width of the first
    conv (and of all convs while filters_scale is 1)."""

    filters: int = 32
    max_filters: int = 1024
    filters_scale: int = 1
    n_ffts: list[int] = field(default_factory=lambda: [1024, 2048, 512])
    hop_lengths: list[int] = field(default_factory=lambda: [256, 512, 128])
    win_lengths: list[int] = field(default_factory=lambda: [1024, 2048, 512])
    kernel_size: list[int] = field(default_factory=lambda: [3, 9])
    stride: list[int] = field(default_factory=lambda: [1, 2])
    dilations: list[int] = field(default_factory=lambda: [1, 2, 4])
    normalized: bool = True
    lrelu_slope: float = 0.2

    def __post_init__(self):
        sizes = {len(self.n_ffts), len(self.hop_lengths), len(self.win_lengths)}
        if not self.n_ffts or len(sizes) > 1:
            raise ValueError("n_ffts, hop_lengths and win_lengths need one entry per scale")
        if any(w > n for w, n in zip(self.win_lengths, self.n_ffts)):
            raise ValueError("each win_length must be <= its n_fft")
        if len(self.kernel_size) != 2 or len(self.stride) != 2:
            raise ValueError("kernel_size and stride are [time, frequency] pairs")
        if min(self.filters, self.max_filters, self.filters_scale) < 1:
            raise ValueError("filters, max_filters and filters_scale must be >= 1")


class STFTDiscriminator(nn.Module):
    """wav [B, C, T] -> complex STFT as [B, 2C, frames, n_fft/2 + 1] (real parts of the C
    channels, then imaginary parts) -> DilatedConvStack."""

    def __init__(self, in_channels: int, n_fft: int, hop: int, win: int, cfg: MSSTFTConfig):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        window = torch.hann_window(win)
        if cfg.normalized:  # torchaudio's Spectrogram(normalized=True)
            window = window / window.pow(2).sum().sqrt()
        self.register_buffer("window", window, persistent=False)
        self.stack = DilatedConvStack(
            2 * in_channels, cfg.filters, cfg.max_filters, cfg.filters_scale,
            tuple(cfg.kernel_size), tuple(cfg.stride), cfg.dilations, cfg.lrelu_slope)

    def spectrogram(self, wav: Tensor) -> Tensor:
        b, c, t = wav.shape
        # center=False as in EnCodec; pad clips shorter than one window so every T works.
        x = F.pad(wav.reshape(b * c, t), (0, max(0, self.n_fft - t)))
        spec = torch.stft(x, self.n_fft, self.hop, self.window.shape[0], self.window,
                          center=False, return_complex=True)
        spec = spec.view(b, c, *spec.shape[-2:])
        return torch.cat([spec.real, spec.imag], 1).transpose(2, 3)

    def forward(self, wav: Tensor) -> tuple[Tensor, list[Tensor]]:
        return self.stack(self.spectrogram(wav))


@DISCRIMINATORS.register("msstft", MSSTFTConfig)
class MultiScaleSTFTDiscriminator(Discriminator):
    """wav [B, C, T] -> one (logits [B, N], feature maps [B, ch, frames, F']) per STFT scale.

    The C channels are input channels (2C spectrogram channels), i.e. EnCodec's
    `sep_channels=False`: a stereo pair is judged jointly.
    """

    def __init__(self, cfg: MSSTFTConfig, channels: int):
        super().__init__()
        self.cfg = cfg
        self.discriminators = nn.ModuleList(
            STFTDiscriminator(channels, n, h, w, cfg)
            for n, h, w in zip(cfg.n_ffts, cfg.hop_lengths, cfg.win_lengths)
        )

    def forward(self, wav: Tensor) -> DiscriminatorOutput:
        return [d(wav) for d in self.discriminators]
