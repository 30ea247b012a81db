"""iSTFT head: predict a complex spectrogram per frame and invert it to a waveform.

Vocos (Siuzdak 2023, arXiv:2306.00814, sec. 3.2) predicts, for each frame, n_fft/2+1
log-magnitudes and as many phases; the waveform comes from an inverse STFT, so the network never
upsamples in time. Its "same" padding makes T' frames give exactly T' * hop samples: frames are
laid out as if the signal had been padded by (n_fft - hop)/2 on each side, overlap-added with a
Hann window, divided by the summed squared window, and the padding trimmed. torch.istft cannot
do this (its NOLA check fails at the untrimmed edges), hence our own irfft + fold below.

Published settings use n_fft = 4 * hop: Vocos 24 kHz n_fft 1024 / hop 256; WavTokenizer
(Ji et al. 2024) n_fft 1280 / hop 320 (75 frames/s) and n_fft 2400 / hop 600 (40 frames/s).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def same_padding(n_fft: int, hop_length: int) -> tuple[int, int]:
    """Samples trimmed (left, right) so that T' frames give T' * hop samples; the extra one of
    an odd (n_fft - hop) goes right."""
    total = n_fft - hop_length
    return total // 2, total - total // 2


def check_stft_sizes(n_fft: int, hop_length: int) -> None:
    """Raise ValueError for sizes whose overlap-add cannot be inverted stably."""
    if hop_length < 1 or n_fft % 2:
        raise ValueError(f"need hop_length >= 1 and an even n_fft, got {n_fft}, {hop_length}")
    if n_fft < 2 * hop_length:
        # with less than 50% overlap the Hann envelope reaches ~0 between frames
        raise ValueError(f"n_fft ({n_fft}) must be at least 2 * hop_length ({hop_length})")


def stft_same(wav: Tensor, n_fft: int, hop_length: int, window: Tensor) -> Tensor:
    """The analysis STFT that `ISTFT` inverts: wav [B, T] -> complex [B, n_fft//2+1, T//hop].

    T must be a multiple of hop_length. Frame s covers samples [s*hop - left, s*hop - left +
    n_fft) of the zero-padded signal, with (left, right) from `same_padding`.
    """
    if wav.shape[-1] % hop_length:
        raise ValueError(f"length {wav.shape[-1]} is not a multiple of hop {hop_length}")
    padded = F.pad(wav, same_padding(n_fft, hop_length))
    frames = padded.unfold(-1, n_fft, hop_length) * window  # [B, T', n_fft]
    return torch.fft.rfft(frames, dim=-1).transpose(1, 2)


def dft_basis(n_fft: int, window: Tensor) -> tuple[Tensor, Tensor]:
    """Windowed real DFT as two matrices [n_fft//2+1, n_fft]: window * cos(2 pi k n / N) and
    -window * sin(...), so that `stft_same`'s spectrum is (cos @ frame, sin @ frame). Angles
    are reduced mod N in integers and taken in float64, so the basis is exact to float32."""
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
    n = torch.arange(n_fft, dtype=torch.float64)[None, :]
    angle = 2 * torch.pi * torch.remainder(k * n, n_fft) / n_fft
    w = window.double()[None, :]
    return (w * angle.cos()).to(window.dtype), (-w * angle.sin()).to(window.dtype)


def stft_same_parts(wav: Tensor, n_fft: int, hop_length: int, window: Tensor
                    ) -> tuple[Tensor, Tensor]:
    """`stft_same` in real arithmetic, (real, imag) [B, n_fft//2+1, T//hop]: a strided conv
    with the DFT basis. ONNX export takes this path (the legacy exporter has no complex
    tensors); equal to `stft_same` to float32 rounding."""
    cos, sin = dft_basis(n_fft, window)
    kernel = torch.cat([cos, sin])[:, None, :].to(wav)  # [2F, 1, N]
    padded = F.pad(wav, same_padding(n_fft, hop_length))[:, None]
    parts = F.conv1d(padded, kernel, stride=hop_length)
    return parts[:, : n_fft // 2 + 1], parts[:, n_fft // 2 + 1:]


class ISTFT(nn.Module):
    """Inverse of `stft_same`: spec complex [B, n_fft//2+1, T'] -> wav [B, T' * hop]."""

    def __init__(self, n_fft: int, hop_length: int):
        super().__init__()
        check_stft_sizes(n_fft, hop_length)
        self.n_fft, self.hop_length = n_fft, hop_length
        # derived from n_fft alone, so kept out of checkpoints
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def reach(self) -> tuple[int, int]:
        """(left, right): spectral frames before/after a frame that overlap its hop samples.

        Frame s spans padded samples [s*hop, s*hop + n_fft); output frame u is padded samples
        [u*hop + left, (u+1)*hop + left). They overlap iff u - s < (n_fft - left) / hop and
        s - u < (hop + left) / hop. For n_fft = 4 * hop this is (2, 2).
        """
        left, _ = same_padding(self.n_fft, self.hop_length)
        hop = self.hop_length
        return -(-(self.n_fft - left) // hop) - 1, -(-(hop + left) // hop) - 1

    def _overlap_add(self, frames: Tensor) -> Tensor:
        """frames [B, n_fft, T'] -> [B, (T'-1)*hop + n_fft], summed where frames overlap."""
        length = (frames.shape[-1] - 1) * self.hop_length + frames.shape[1]
        out = F.fold(
            frames, output_size=(1, length), kernel_size=(1, self.n_fft),
            stride=(1, self.hop_length),
        )
        return out[:, 0, 0]

    def forward(self, spec: Tensor) -> Tensor:
        frames = torch.fft.irfft(spec, n=self.n_fft, dim=1) * self.window[:, None]
        wav = self._overlap_add(frames)
        squared = self.window.square()[None, :, None].expand(1, -1, spec.shape[-1])
        envelope = self._overlap_add(squared)[0]
        return self._trim(wav, envelope)

    def _trim(self, wav: Tensor, envelope: Tensor) -> Tensor:
        left, right = same_padding(self.n_fft, self.hop_length)
        end = wav.shape[-1] - right
        # check_stft_sizes keeps the trimmed envelope well above zero
        return wav[:, left:end] / envelope[left:end]

    def from_parts(self, real: Tensor, imag: Tensor) -> Tensor:
        """`forward` of complex(real, imag) [B, n_fft//2+1, T'] in real arithmetic: inverse
        DFT, window and overlap-add as one transposed conv. ONNX export takes this path (no
        complex tensors there); equal to `forward` to float32 rounding."""
        n = self.n_fft
        # irfft: DC and Nyquist once, the other bins twice (their mirror images); the
        # imaginary parts of DC and Nyquist are ignored, as irfft ignores them
        weight = torch.full((n // 2 + 1, 1), 2.0 / n, dtype=torch.float64)
        weight[0] = weight[-1] = 1.0 / n
        cos, sin = dft_basis(n, self.window)  # window * cos, -window * sin
        kernel = (torch.cat([cos.double(), sin.double()]) * torch.cat([weight, weight]))
        wav = F.conv_transpose1d(torch.cat([real, imag], 1), kernel[:, None, :].to(real),
                                 stride=self.hop_length)[:, 0]
        ones = torch.ones_like(real[:1, :1])  # [1, 1, T']
        squared = self.window.square()[None, None, :].to(real)
        envelope = F.conv_transpose1d(ones, squared, stride=self.hop_length)[0, 0]
        return self._trim(wav, envelope)


class ISTFTHead(nn.Module):
    """Features x [B, T', dim] -> wav [B, C, T' * hop_length] through a predicted spectrogram.

    One Linear maps each frame to C * (n_fft + 2) numbers: per channel, n_fft/2+1
    log-magnitudes then n_fft/2+1 phases (Vocos' layout, so published weights map directly
    for C = 1).
    """

    def __init__(self, dim: int, n_fft: int, hop_length: int, channels: int = 1):
        super().__init__()
        self.channels = channels
        self.n_bins = n_fft // 2 + 1
        self.proj = nn.Linear(dim, channels * 2 * self.n_bins)
        self.istft = ISTFT(n_fft, hop_length)

    def forward(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        h = self.proj(x).view(b, t, self.channels, 2, self.n_bins)
        h = h.permute(3, 0, 2, 4, 1)  # [2, B, C, F, T']
        return self.synthesize(h[0], h[1])

    def synthesize(self, log_mag: Tensor, phase: Tensor) -> Tensor:
        """log_mag, phase [B, C, F, T'] -> wav [B, C, T' * hop]."""
        # Vocos clips the magnitude at 1e2: an unbounded exp overflows early in GAN training
        mag = log_mag.exp().clamp(max=1e2)
        # cos/sin rather than predicting real/imag: the phase may wrap freely
        real, imag = mag * torch.cos(phase), mag * torch.sin(phase)
        b, c, f, t = real.shape
        if torch.jit.is_tracing():  # ONNX export: no complex tensors (ISTFT.from_parts)
            wav = self.istft.from_parts(real.reshape(b * c, f, t), imag.reshape(b * c, f, t))
            return wav.view(b, c, -1)
        spec = torch.complex(real, imag)
        return self.istft(spec.reshape(b * c, f, t)).view(b, c, -1)
