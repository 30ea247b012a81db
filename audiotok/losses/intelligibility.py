"""A differentiable STOI, to train for intelligibility: ref, est [B, C, T] (or [B, T]) -> scalar.

STOI (Taal et al. 2011, "An algorithm for intelligibility prediction of time-frequency
weighted noisy speech") correlates the clean and processed temporal envelopes of 15 one-third
octave bands over 384 ms windows. Every step below is differentiable in `est`, so `1 - STOI`
is a training loss, as Kolbæk et al. (2020, "On loss functions for supervised monaural
time-domain speech enhancement") used it. The constants are the paper's, as pystoi ships them:
10 kHz, 256-sample Hann frames with hop 128 and a 512-point FFT, bands from 150 Hz, 30-frame
windows, clipping at -15 dB SDR, and frames more than 40 dB below the loudest reference frame
treated as silence.

One difference from the metric: STOI cuts silent frames out and joins the rest, which is not
a fixed-shape operation. Here silent frames are masked instead: each window's means and
norms run over its speech frames only, and a window counts in proportion to how many of its
frames are speech. On speech without pauses the two agree to within resampling (the test
checks against pystoi); across pauses the windows differ, as STOI's joined windows span them.

Why not torch-stoi's NegSTOILoss (installed with descript-audiotools): it joins speech frames
as pystoi does, so on whole sentences it is closer to the metric, but it cannot see a
training excerpt. `benchmarks/stoi_loss.py` on the running-speech set (24 sentences, noise
and low-pass): |STOI - pystoi| mean 0.0076 here, 0.0007 for torch-stoi; on random 0.5 s
excerpts torch-stoi gives no gradient on 37 of 200 (a row with under 30 speech frames scores
0), this loss on none; excerpts under 31 frames (the default 0.38 s segments, DAC's) make it raise.
Forward + backward times are alike (8 x 1 s, 2 threads: within the run-to-run spread).
"""

from __future__ import annotations

import functools
import math

import torch
import torchaudio
from torch import Tensor

from .reconstruction import RECONSTRUCTION_LOSSES, NoOptions, ReconstructionLoss
from .spectral import _fp32, _rows

STOI_RATE = 10_000
FRAME = 256
HOP = 128
N_FFT = 512
N_BANDS = 15
MIN_FREQ = 150.0
WINDOW_FRAMES = 30
CLIP = 10 ** (15 / 20)          # the -15 dB lower SDR bound, as 1 + CLIP on the clean envelope
DYN_RANGE_DB = 40.0
EPS = 1e-8


@functools.cache
def third_octave_bands() -> Tensor:
    """[15, 257] 0/1 matrix: bin k is in band i when it lies in [f_low, f_high) of band i,
    both edges snapped to the nearest bin, as in Taal's reference code."""
    freqs = torch.arange(N_FFT // 2 + 1, dtype=torch.float64) * STOI_RATE / N_FFT
    bands = torch.zeros(N_BANDS, freqs.numel())
    for i in range(N_BANDS):
        lo = int(torch.argmin((freqs - MIN_FREQ * 2 ** ((2 * i - 1) / 6)).abs()))
        hi = int(torch.argmin((freqs - MIN_FREQ * 2 ** ((2 * i + 1) / 6)).abs()))
        bands[i, lo:hi] = 1.0
    return bands


@RECONSTRUCTION_LOSSES.register("stoi", NoOptions)
class STOILoss(ReconstructionLoss):
    """1 - STOI of `est` against `ref`, averaged over the batch and channels.

    `sample_rate` is the input's; the signals are resampled to STOI's 10 kHz inside. Inputs
    shorter than one 384 ms window are zero-padded (the padding is silence, so it is masked).
    """

    def __init__(self, sample_rate: int):
        super().__init__()
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        self.sample_rate = int(sample_rate)
        # the reference code's window: a Hann of FRAME + 2 points without its two zeros
        self.register_buffer("window", torch.hann_window(FRAME + 2, periodic=False)[1:-1],
                             persistent=False)
        self.register_buffer("bands", third_octave_bands().clone(), persistent=False)

    def _resample(self, x: Tensor) -> Tensor:
        if self.sample_rate == STOI_RATE:
            return x
        g = math.gcd(self.sample_rate, STOI_RATE)
        return torchaudio.functional.resample(x, self.sample_rate // g, STOI_RATE // g)

    def per_item(self, ref: Tensor, est: Tensor) -> Tensor:
        """STOI per row ([B * C]); rows whose reference is all silence score 1."""
        min_length = math.ceil((FRAME + (WINDOW_FRAMES - 1) * HOP) * self.sample_rate / STOI_RATE)
        x, n = _rows(ref, est, min_length + 1)
        rows = x.shape[0] // 2
        with _fp32(x):
            x = self._resample(x)
            frames = x.unfold(-1, FRAME, HOP) * self.window               # [2R, F, 256]
            power = torch.fft.rfft(frames, n=N_FFT).abs().square()        # [2R, F, 257]
            env = (power @ self.bands.T).clamp_min(0).add(EPS).sqrt()    # [2R, F, 15]
            env = env.transpose(1, 2)                                     # [2R, 15, F]
            clean, proc = env[:rows], env[rows:]
            # speech frames: within 40 dB of the loudest reference frame, and not digital zero
            norm = frames[:rows].norm(dim=-1)                              # [R, F]
            level = 20 * torch.log10(norm + EPS)
            speech = ((level > level.amax(-1, keepdim=True) - DYN_RANGE_DB)
                      & (norm > EPS)).to(x.dtype)

            xs = clean.unfold(-1, WINDOW_FRAMES, 1)                       # [R, 15, W, 30]
            ys = proc.unfold(-1, WINDOW_FRAMES, 1)
            m = speech.unfold(-1, WINDOW_FRAMES, 1).unsqueeze(1)          # [R, 1, W, 30]
            count = m.sum(-1, keepdim=True)
            xs, ys = xs * m, ys * m
            scale = xs.norm(dim=-1, keepdim=True) / (ys.norm(dim=-1, keepdim=True) + EPS)
            ys = torch.minimum(ys * scale, xs * (1 + CLIP))
            safe = count.clamp_min(1)
            xs = (xs - xs.sum(-1, keepdim=True) / safe) * m
            ys = (ys - ys.sum(-1, keepdim=True) / safe) * m
            corr = (xs * ys).sum(-1) / (xs.norm(dim=-1) * ys.norm(dim=-1) + EPS)  # [R, 15, W]
            weight = count.squeeze(-1) / WINDOW_FRAMES                     # [R, 1, W]
            total = weight.sum((-2, -1))
            score = (corr * weight).mean(1).sum(-1) / total.clamp_min(EPS)
        silent = total <= 0
        score = torch.where(silent, torch.ones_like(score), score)
        return score.reshape(n, -1).mean(-1)

    def forward(self, ref: Tensor, est: Tensor) -> Tensor:
        return 1.0 - self.per_item(ref, est).mean()
