"""Codecs that code fixed-length overlapping segments, each at its own loudness (EnCodec 48 kHz).

EnCodec's 48 kHz model (Défossez et al. 2022, sec. 3; `EncodecModel.encodec_model_48khz`)
is not run over a whole signal: it cuts it into 1 s segments that advance by 99% of their
length, divides each segment by its RMS (of the channels' mean, plus 1e-8) so that the
encoder always sees unit loudness, codes each segment on its own, and when decoding
multiplies each decoded segment by its scale and cross-fades the 1% overlaps with triangular
weights. The scales are side information: one float per segment and item, carried by
`Tokens.scales`; codes without them (an LM's output) decode at unit loudness.

    segment:  {seconds: 1.0, overlap: 0.01, normalize: true}   (CodecConfig.segment)

Codes of successive segments are concatenated along time: a full segment gives
segment_samples / hop frames, the last (shorter) one ceil(its samples / hop)
(`frames_for`). Segments are coded one after another, so memory is bounded by a segment
however long the signal is (they replace chunking for these codecs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class SegmentConfig:
    """seconds: segment length; overlap: fraction of it shared with the next segment;
    normalize: scale each segment to unit RMS and keep the scale (EnCodec's audio_normalize)."""

    seconds: float = 1.0
    overlap: float = 0.01
    normalize: bool = True

    def __post_init__(self):
        if not (math.isfinite(self.seconds) and self.seconds > 0):
            raise ValueError(f"segment seconds must be > 0, got {self.seconds}")
        if not 0 <= self.overlap < 1:
            raise ValueError(f"segment overlap must be in [0, 1), got {self.overlap}")


def layout(cfg: SegmentConfig, sample_rate: int) -> tuple[int, int]:
    """(samples per segment, samples between segment starts), as EnCodec rounds them."""
    length = int(cfg.seconds * sample_rate)
    return length, max(1, int((1 - cfg.overlap) * length))


def segment_frames(samples: int, hop: int, segment: int, stride: int) -> list[int]:
    """Frames of each segment of `samples` input samples: ceil(its length / hop)."""
    return [-(-min(segment, samples - start) // hop) for start in range(0, samples, stride)]


def frames_for(samples: int, hop: int, segment: int, stride: int) -> int:
    """Frames that `samples` input samples take (at least one)."""
    return sum(segment_frames(samples, hop, segment, stride)) if samples > 0 else 1


def unit_loudness(x: Tensor) -> tuple[Tensor, Tensor]:
    """x [B, C, T] -> (x / scale, scale [B, 1, 1]): scale = RMS of the channels' mean + 1e-8,
    as EnCodec's audio_normalize computes it."""
    scale = x.mean(dim=1, keepdim=True).pow(2).mean(dim=2, keepdim=True).sqrt() + 1e-8
    return x / scale, scale


def encode(codec, wav: Tensor, n_codebooks: int, segment: int, stride: int,
           normalize: bool) -> tuple[Tensor, Tensor | None]:
    """wav [B, C, T] -> (codes long [B, K, frames_for(T)], scales float [B, S] or None)."""
    codes, scales = [], []
    for start in range(0, wav.shape[-1], stride):
        x = wav[..., start: start + segment]
        if normalize:
            x, scale = unit_loudness(x)
            scales.append(scale.view(-1))
        codes.append(codec.quantizer.encode(codec.encoder(x), n_codebooks))
    return torch.cat(codes, -1), (torch.stack(scales, 1) if normalize else None)


def decode(codec, codes: Tensor, scales: Tensor | None, num_samples: int, segment: int,
           stride: int) -> Tensor:
    """codes [B, K, F] (+ scales [B, S]) -> wav [B, C, num_samples]: each segment decoded,
    rescaled, and the overlaps cross-faded with triangular weights that peak mid-segment."""
    starts = range(0, num_samples, stride)
    pieces, frame = [], 0
    for i, n in enumerate(segment_frames(num_samples, codec.hop_length, segment, stride)):
        audio = codec.decoder(codec.quantizer.decode(codes[..., frame: frame + n]))
        if scales is not None:
            audio = audio * scales[:, i].view(-1, 1, 1).to(audio)
        pieces.append(audio)
        frame += n
    if len(pieces) == 1:
        return pieces[0][..., :num_samples]
    full = pieces[0].shape[-1]
    t = torch.linspace(0, 1, full + 2, dtype=pieces[0].dtype, device=pieces[0].device)[1:-1]
    weight = 0.5 - (t - 0.5).abs()  # EnCodec's _linear_overlap_add weights
    total = stride * (len(pieces) - 1) + pieces[-1].shape[-1]
    out = pieces[0].new_zeros(*pieces[0].shape[:-1], total)
    weights = pieces[0].new_zeros(total)
    for start, audio in zip(starts, pieces):
        n = audio.shape[-1]
        out[..., start: start + n] += weight[:n] * audio
        weights[start: start + n] += weight[:n]
    return (out / weights)[..., :num_samples]
