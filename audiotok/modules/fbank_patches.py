"""BEATs' input: a Kaldi log-mel filterbank cut into square patches.

Chen et al. 2022, "BEATs: Audio Pre-Training with Acoustic Tokenizers", sec. 4.2: 16 kHz audio,
128 mel bins from a 25 ms Povey window every 10 ms, normalised to N(0, 0.5^2), split into
16 x 16 patches. The filterbank call and the normalising statistics are those of the public
code (microsoft/unilm beats/BEATs.py `preprocess`: `ta_kaldi.fbank` on the waveform scaled by
2^15, then (x - 15.41663) / (2 * 6.55582)).

Patches are flattened in BEATs' order: time-major, frequency-minor (its Conv2d output reshaped
to [B, C, T' * F']), so patch index = t * (mel_bins / patch) + f. A patch covers
`patch` filterbank frames = patch * 10 ms; there are mel_bins / patch of them per stretch, so
one patch "frame" of the sequence is patch * 160 / (mel_bins / patch) samples (320 for the
paper's 16 x 16 patches of 128 bins: 50 patches a second).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SAMPLE_RATE = 16000
SHIFT = 160    # 10 ms at 16 kHz
WINDOW = 400   # 25 ms
FBANK_MEAN, FBANK_STD = 15.41663, 6.55582   # unilm beats/BEATs.py preprocess defaults


@dataclass
class PatchConfig:
    """mel_bins: filterbank channels (BEATs: 128); patch: square patch side (BEATs: 16)."""

    mel_bins: int = 128
    patch: int = 16

    def __post_init__(self):
        if self.patch < 1 or self.mel_bins < 1:
            raise ValueError(f"mel_bins and patch must be >= 1, got {self.mel_bins}, "
                             f"{self.patch}")
        if self.mel_bins % self.patch:
            raise ValueError(f"mel_bins ({self.mel_bins}) must be a multiple of patch "
                             f"({self.patch})")
        if (self.patch * SHIFT) % (self.mel_bins // self.patch):
            raise ValueError(f"patch {self.patch} x {SHIFT} samples must divide into "
                             f"{self.mel_bins // self.patch} patches per stretch")

    @property
    def per_stretch(self) -> int:
        """Patches side by side in frequency for each `patch` frames of time."""
        return self.mel_bins // self.patch

    @property
    def hop_length(self) -> int:
        """Samples per patch of the flattened sequence."""
        return self.patch * SHIFT // self.per_stretch


def check_rate(sample_rate: int) -> None:
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"sample_rate must be {SAMPLE_RATE}: BEATs' filterbank runs at 16 kHz, "
                         f"got {sample_rate}")


def fbank(wav: Tensor, mel_bins: int) -> Tensor:
    """wav [B, C, T] at 16 kHz (T a multiple of 160) -> normalised log-mel [B, T / 160, mel_bins].

    The waveform is padded by (400 - 160) / 2 samples on each side, so frame i is centred on
    samples [160 i, 160 (i + 1)) and T / 160 frames come out (BEATs itself does not pad and
    gives (T - 400) // 160 + 1). The whole batch at once, as `kaldi_fbank`."""
    pad = (WINDOW - SHIFT) // 2
    x = F.pad(wav.float().mean(1), (pad, pad)) * 2 ** 15
    return (kaldi_fbank(x, mel_bins) - FBANK_MEAN) / (2 * FBANK_STD)


def kaldi_fbank(x: Tensor, mel_bins: int) -> Tensor:
    """x [B, T] -> log-mel [B, frames, mel_bins]: `torchaudio.compliance.kaldi.fbank` with
    BEATs' arguments (its defaults otherwise: no dither, DC removed per frame, pre-emphasis
    0.97, Povey window, 512-point power spectrum, mel bins from 20 Hz to Nyquist, log floored
    at float eps), computed for a batch in one pass instead of one waveform per call."""
    from torchaudio.compliance.kaldi import get_mel_banks

    frames = x.unfold(-1, WINDOW, SHIFT)                         # snip_edges: whole windows
    frames = frames - frames.mean(-1, keepdim=True)
    previous = torch.cat([frames[..., :1], frames[..., :-1]], -1)
    frames = frames - 0.97 * previous
    window = torch.hann_window(WINDOW, periodic=False, dtype=x.dtype, device=x.device) ** 0.85
    power = torch.fft.rfft(frames * window, n=512).abs() ** 2     # [B, F, 257]
    banks, _ = get_mel_banks(mel_bins, 512, float(SAMPLE_RATE), 20.0, 0.0, 100.0, -500.0, 1.0)
    banks = F.pad(banks, (0, 1)).to(power)                        # [M, 257]
    return torch.clamp(power @ banks.T, min=torch.finfo(power.dtype).eps).log()


def patches(feats: Tensor, patch: int) -> Tensor:
    """fbank [B, T_f, M] (T_f a multiple of patch) -> flattened patches [B, N, patch * patch],
    N = (T_f / patch) * (M / patch), time-major as BEATs orders them."""
    b, t, m = feats.shape
    x = feats.reshape(b, t // patch, patch, m // patch, patch)
    return x.permute(0, 1, 3, 2, 4).reshape(b, (t // patch) * (m // patch), patch * patch)


class PatchEmbedding(nn.Module):
    """wav [B, C, T] -> patch embeddings [B, N, dim]: BEATs' Conv2d patch embedding (no bias),
    LayerNorm, and a linear map to the Transformer width (unilm beats/BEATs.py
    `extract_features`, up to the encoder)."""

    def __init__(self, cfg: PatchConfig, embed_dim: int, dim: int):
        super().__init__()
        self.cfg = cfg
        self.conv = nn.Conv2d(1, embed_dim, cfg.patch, stride=cfg.patch, bias=False)
        self.norm = nn.LayerNorm(embed_dim)
        self.proj = nn.Linear(embed_dim, dim) if embed_dim != dim else nn.Identity()

    def forward(self, wav: Tensor) -> Tensor:
        x = self.conv(fbank(wav, self.cfg.mel_bins)[:, None])      # [B, E, T', F']
        x = x.flatten(2).transpose(1, 2)                            # [B, T' F', E]
        return self.proj(self.norm(x))
