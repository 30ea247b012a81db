"""Pitch + residual VQ: latent channel 0 carries a coded F0 (modules/f0.py), scalar-
quantized into token level 0; the other channels go through a residual VQ into levels 1..K.

Level 0 is never dropped: quantizer dropout and `n_codebooks` act on the RVQ levels, so the
first n levels of the token stream are the pitch plus n - 1 RVQ levels. Index 0 of level 0
is "unvoiced"; indices 1..pitch_levels-1 are uniform in log F0 over [F0_MIN, F0_MAX] (with
1024 levels, steps of 0.24 % of F0, 1/24 of a semitone). The pitch channel has no gradient
(the encoder computes it from the signal), so it needs no straight-through estimator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import ConfigError
from ..modules.f0 import UNVOICED
from .base import QUANTIZERS, Quantizer, QuantizerOutput
from .codebook_usage import code_metrics, shift_levels
from .rvq import ResidualVQ, RVQConfig, subconfig
from .vq import check_code_rows


@dataclass
class PitchRVQConfig(RVQConfig):
    """RVQConfig for the levels after the pitch (n_codebooks counts those), plus
    pitch_levels: entries of the pitch level, unvoiced included."""

    pitch_levels: int = 1024

    def __post_init__(self):
        super().__post_init__()
        if self.pitch_levels < 2:
            raise ValueError(f"pitch_levels must be >= 2, got {self.pitch_levels}")


def check_pitch_coding(codec) -> None:
    """Pitch coding is three parts that need each other: an encoder that estimates F0 into
    latent channel 0 (stft `pitch`), this pitch_rvq quantizer that codes it, a decoder that
    draws its harmonics (spectral `pitch`); and one F0 per frame only means something for
    mono audio. Each of the three runs this from its `check_codec` hook, on the codec's
    config (`CodecConfig`) before anything is built."""
    flags = {"encoder": bool(codec.encoder.get("pitch", False)),
             "decoder": bool(codec.decoder.get("pitch", False)),
             "quantizer": codec.quantizer.get("type") == "pitch_rvq"}
    if not any(flags.values()):
        return
    if not all(flags.values()):
        missing = ", ".join(k for k, v in flags.items() if not v)
        raise ConfigError(f"pitch coding needs encoder pitch: true, quantizer type "
                          f"pitch_rvq and decoder pitch: true together; not set: {missing}")
    if codec.channels != 1 or codec.latent_dim < 2:
        raise ConfigError(f"pitch coding needs mono audio and latent_dim >= 2 (F0 + content), "
                          f"got {codec.channels} channels, latent_dim {codec.latent_dim}")


@QUANTIZERS.register("pitch_rvq", PitchRVQConfig)
class PitchRVQ(Quantizer):
    @classmethod
    def check_codec(cls, codec) -> None:
        check_pitch_coding(codec)

    def __init__(self, cfg: PitchRVQConfig, dim: int):
        super().__init__()
        if dim < 2:
            raise ValueError(f"pitch_rvq needs latent_dim >= 2 (pitch + content), got {dim}")
        self.cfg, self.dim = cfg, dim
        self.rvq = ResidualVQ(subconfig(RVQConfig, cfg), dim - 1)
        self.codebook_sizes = [cfg.pitch_levels] + self.rvq.codebook_sizes

    def quantize_pitch(self, p: Tensor) -> Tensor:
        """pitch channel [B, T] -> codes long [B, T]."""
        steps = self.cfg.pitch_levels - 2
        voiced = 1 + (p.float().clamp(0, 1) * steps).round().long()
        return torch.where(p >= 0, voiced, torch.zeros_like(voiced))

    def dequantize_pitch(self, codes: Tensor, dtype=torch.float32) -> Tensor:
        steps = max(self.cfg.pitch_levels - 2, 1)
        value = (codes.to(dtype) - 1) / steps
        return torch.where(codes > 0, value, torch.full_like(value, UNVOICED))

    def _content(self, z: Tensor, n: int, training_dropout: bool) -> QuantizerOutput | None:
        if n == 1:
            return None
        return self.rvq(z[:, 1:], None if training_dropout else n - 1)

    def forward(self, z: Tensor, n_codebooks: int | None = None) -> QuantizerOutput:
        n = self.check_n_codebooks(n_codebooks)
        pitch = self.quantize_pitch(z[:, 0])
        content = self._content(z, n, n_codebooks is None)
        p = self.dequantize_pitch(pitch, z.dtype)[:, None]
        metrics = code_metrics(pitch, self.cfg.pitch_levels, 0)
        active = None
        if content is None:
            z_q = torch.cat([p, torch.zeros_like(z[:, 1:])], 1)
            codes, losses, semantic = pitch[:, None], {}, None
        else:
            active = None if content.active is None else content.active + 1
            z_q = torch.cat([p, content.z_q], 1)
            codes = torch.cat([pitch[:, None], content.codes], 1)
            losses = content.losses
            semantic = torch.cat([p, content.semantic], 1)
            metrics.update(shift_levels(content.metrics, 1))  # RVQ level i is level i + 1
        return QuantizerOutput(z_q, codes, losses, metrics, semantic=semantic, active=active)

    @torch.no_grad()
    def encode(self, z: Tensor, n_codebooks: int | None = None) -> Tensor:
        n = self.check_n_codebooks(n_codebooks)
        pitch = self.quantize_pitch(z[:, 0])[:, None]
        if n == 1:
            return pitch
        return torch.cat([pitch, self.rvq.encode(z[:, 1:], n - 1)], 1)

    def decode(self, codes: Tensor) -> Tensor:
        k = check_code_rows(codes, self.n_codebooks)
        p = self.dequantize_pitch(codes[:, 0])[:, None]
        if k == 1:
            rest = p.new_zeros(p.shape[0], self.dim - 1, p.shape[-1])
        else:
            rest = self.rvq.decode(codes[:, 1:k])
        return torch.cat([p.to(rest.dtype), rest], 1)

    def code_vectors(self) -> list[Tensor]:
        """The pitch level's latent values [pitch_levels, 1] (unvoiced below the voiced
        range, so its neighbours are the lowest pitches), then the RVQ levels'."""
        codes = torch.arange(self.cfg.pitch_levels, device=self.rvq.levels[0].usage.device)
        return [self.dequantize_pitch(codes)[:, None]] + self.rvq.code_vectors()
