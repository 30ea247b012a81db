"""What each probed system feeds its head: frozen codec tokens (one system per codec and
codebook count) or the continuous baseline, log-mel filterbanks.

    systems = [*codec_systems(codec, "speech-16k", [2, 8]), mel_system()]
    inputs = [s.features(clip.path) for clip in clips]   # codes long [K, T] / mel [80, T]

Each codebook count is its own `encode(wav, n_codebooks=k)` call rather than a slice of the
deepest one, so a quantizer whose first k levels depend on k is probed as it really runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from ..audio import load_audio

# The usual ASR front end (10 ms hop, 25 ms window, 80 bands at 16 kHz), the continuous
# baseline that DASB's comparisons put beside tokens (DASB, Mousavi et al. 2024, sec. 4)
MEL_RATE, MEL_FFT, MEL_HOP, MEL_BANDS = 16000, 400, 160, 80


@dataclass
class System:
    """One row of the probe report.

    kind: "tokens" (features are codes long [K, T]) or "continuous" (float [F, T]).
    """

    name: str
    kind: str
    features: Callable[[str], Tensor]
    frame_rate: float
    codec: str | None = None
    n_codebooks: int | None = None
    codebook_sizes: list[int] = field(default_factory=list)
    kbps: float | None = None
    tokens_per_second: float | None = None

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "codec": self.codec,
                "n_codebooks": self.n_codebooks, "kbps": self.kbps,
                "tokens_per_second": self.tokens_per_second, "frame_rate": self.frame_rate}


def codec_systems(codec, label: str, counts: list[int] | None, device: str = "cpu"
                  ) -> list[System]:
    """One system per codebook count (None: the codec's full depth only)."""
    if codec.spec.level_strides and len(set(codec.spec.level_strides)) > 1:
        raise ValueError(f"{label}: a multi-rate codec (level strides "
                         f"{list(codec.spec.level_strides)}) is not supported by the probes")
    counts = counts or [codec.n_codebooks]
    for k in counts:
        codec.quantizer.check_n_codebooks(k)  # a clear error before any clip is encoded
    return [System(f"{label}@{k}", "tokens", _encoder(codec, k, device), codec.spec.frame_rate,
                   codec=label, n_codebooks=k, codebook_sizes=list(codec.codebook_sizes[:k]),
                   kbps=codec.spec.bitrate(k) / 1000,
                   tokens_per_second=codec.spec.tokens_per_second(k))
            for k in counts]


def _encoder(codec, k: int, device: str) -> Callable[[str], Tensor]:
    def features(path: str) -> Tensor:
        wav, _ = load_audio(path, codec.sample_rate, codec.channels)
        with torch.inference_mode():
            tokens = codec.encode(wav[None].to(device), k)
        return tokens.codes[0, :, :int(tokens.lengths[0])].cpu().clone()

    return features


def mel_system() -> System:
    """log-mel [80, T] at 100 frames/s; no bitrate (a continuous feature)."""
    from ..modules.mel import LogMel

    mel = LogMel(MEL_RATE, MEL_FFT, MEL_HOP, MEL_BANDS)

    def features(path: str) -> Tensor:
        wav, _ = load_audio(path, MEL_RATE, 1)
        pad = -wav.shape[-1] % MEL_HOP
        with torch.inference_mode():
            return mel(F.pad(wav, (0, pad)))[0].clone()

    return System("log-mel", "continuous", features, MEL_RATE / MEL_HOP)
