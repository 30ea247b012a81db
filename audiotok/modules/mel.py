"""Log-mel spectrograms, two framings:

LogMel         frames that `stft_same` cuts (T samples give T / hop frames, and an `ISTFT` of
               the same sizes lines up with them): the mel the Mel-VAE codec predicts. The
               filterbank is librosa's default (Slaney mel scale, Slaney area normalisation)
               and the log is natural with a 1e-5 floor: the mel that HiFi-GAN and BigVGAN
               vocoders take, the vocoder CLaM-TTS decodes its Mel-VAE's output with (Kim et
               al. 2024, sec. 4).
CenteredLogMel torch.stft's centred frames (T samples give T // hop + 1 frames), same
               filterbank: FreeCodec's speaker and prosody encoders read it.

Filterbanks and windows are non-persistent buffers: rebuilt from the config, never stored in
(or fingerprinted with) the weights.
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


class CenteredLogMel(nn.Module):
    """wav [B, 1, T] -> log mel [B, n_mels, T // hop + 1]: frame i is centred on sample
    i * hop, the window zero-padded at the edges (center=True, pad_mode="constant")."""

    def __init__(self, sample_rate: int, n_fft: int, hop_length: int, n_mels: int,
                 win_length: int | None = None, floor: float = 1e-5):
        super().__init__()
        if hop_length < 1 or n_mels < 1 or (win_length or n_fft) > n_fft:
            raise ValueError(f"bad mel settings: n_fft {n_fft}, hop {hop_length}, "
                             f"n_mels {n_mels}, win {win_length}")
        self.n_fft, self.hop_length = n_fft, hop_length
        self.win_length = win_length or n_fft
        self.floor = floor
        fb = torchaudio.functional.melscale_fbanks(n_fft // 2 + 1, 0.0, sample_rate / 2,
                                                   n_mels, sample_rate, norm="slaney",
                                                   mel_scale="slaney")
        self.register_buffer("fbank", fb.T.contiguous(), persistent=False)
        self.register_buffer("window", torch.hann_window(self.win_length), persistent=False)

    def forward(self, wav: Tensor) -> Tensor:
        """wav [B, 1, T] -> [B, n_mels, T // hop + 1] (float32 whatever the autocast)."""
        with torch.autocast(wav.device.type, enabled=False):
            spec = torch.stft(wav[:, 0].float(), self.n_fft, self.hop_length, self.win_length,
                              self.window, center=True, pad_mode="constant",
                              return_complex=True).abs()
            return torch.log(torch.clamp(self.fbank @ spec, min=self.floor))
