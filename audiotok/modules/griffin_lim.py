"""Phase from magnitude alone: the fast Griffin-Lim algorithm.

Griffin & Lim (1984) alternate between the set of spectrograms with the wanted magnitude and
the set of consistent spectrograms (those that are the STFT of some signal); Perraudin, Balazs
& Sondergaard (2013, "A fast Griffin-Lim algorithm") add a momentum term (alpha 0.99 in their
experiments) that converges in far fewer iterations. Here both projections use the framing of
`stft_same` / `ISTFT` (modules/istft.py), so T' frames map to T' * hop samples exactly.

Iterations start from zero phase rather than a random one: the result is then a
deterministic, shift-equivariant function of the magnitudes, so a chunked decode (which only
sees a window around each chunk) reproduces the whole-signal decode, and the same tokens
always give the same audio. Information travels ceil(n_fft / hop) - 1 frames per iteration
in each direction (`reach`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .istft import ISTFT, stft_same


def griffin_lim_reach(n_fft: int, hop_length: int, iterations: int) -> int:
    """Frames on each side of a frame whose magnitudes can change its phase."""
    return iterations * (math.ceil(n_fft / hop_length) - 1)


def fast_griffin_lim(mag: Tensor, istft: ISTFT, iterations: int, momentum: float = 0.99,
                     eps: float = 1e-8) -> Tensor:
    """mag [N, n_fft//2+1, T'] (>= 0) -> complex spectrogram with that magnitude and a phase
    that makes it (nearly) consistent. Runs in the dtype of `mag` (float32 recommended)."""
    spec = mag.to(torch.complex64 if mag.dtype != torch.float64 else torch.complex128)
    previous = None
    for _ in range(iterations):
        projected = stft_same(istft(spec), istft.n_fft, istft.hop_length, istft.window)
        accelerated = projected if previous is None else projected + momentum * (
            projected - previous)
        previous = projected
        spec = mag * accelerated / (accelerated.abs() + eps)
    return spec
