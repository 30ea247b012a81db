"""Log-mel front end for encoders that read a spectrogram (FreeCodec's speaker and prosody
encoders): wav [B, 1, T] -> log mel [B, n_mels, frames].

Frames are centred on multiples of `hop_length` with the window zero-padded at the edges
(torch.stft center=True, pad_mode="constant"), so frame i sees samples around i * hop and
T samples give T // hop + 1 frames. The filterbank is a non-persistent buffer: it is rebuilt
from the config, never stored in (or fingerprinted with) the weights.
"""

from __future__ import annotations

import torch
import torchaudio
from torch import Tensor, nn


class LogMel(nn.Module):
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
