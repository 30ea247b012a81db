"""Log-mel spectrogram on the frames that `stft_same` cuts (so T samples give T / hop frames
and an `ISTFT` of the same sizes lines up with them).

The filterbank is librosa's default (Slaney mel scale, Slaney area normalisation) and the log
is natural with a 1e-5 floor: the mel that HiFi-GAN and BigVGAN vocoders take, the vocoder
CLaM-TTS decodes its Mel-VAE's output with (Kim et al. 2024, sec. 4).
"""

from __future__ import annotations

import warnings

import torch
import torchaudio
from torch import Tensor, nn

from .istft import check_stft_sizes, stft_same, stft_same_parts

LOG_FLOOR = 1e-5


class LogMel(nn.Module):
    """wav [B, T] (T a multiple of hop_length) -> log-mel [B, n_mels, T / hop_length]."""

    def __init__(self, sample_rate: int, n_fft: int, hop_length: int, n_mels: int):
        super().__init__()
        check_stft_sizes(n_fft, hop_length)
        self.n_fft, self.hop_length, self.n_mels = n_fft, hop_length, n_mels
        with warnings.catch_warnings():  # many bands over few bins leave some empty: allowed
            warnings.filterwarnings("ignore", message=".*mel filterbank has all zero values.*")
            fbank = torchaudio.functional.melscale_fbanks(
                n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate, norm="slaney",
                mel_scale="slaney")
        # derived from the sizes alone, so kept out of checkpoints
        self.register_buffer("fbank", fbank.T.contiguous(), persistent=False)  # [M, F]
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, wav: Tensor) -> Tensor:
        x = wav if wav.dtype == torch.float64 else wav.float()  # the STFT in float32 at least
        window = self.window.to(x.dtype)
        if torch.jit.is_tracing():  # ONNX export: no complex tensors
            real, imag = stft_same_parts(x, self.n_fft, self.hop_length, window)
            mag = (real.square() + imag.square()).sqrt()
        else:
            mag = stft_same(x, self.n_fft, self.hop_length, window).abs()
        return (self.fbank.to(x.dtype) @ mag).clamp(min=LOG_FLOOR).log()
