"""Discriminators for codec GAN training: wav [B, C, T] -> list of (logits, feature maps).

Every module here registers its type in DISCRIMINATORS (found on the first lookup, not
through the imports below, which are the public API); recipes name them by type:
"mpd" (multi-period), "msd" (multi-scale waveform), "msstft" (EnCodec's multi-scale STFT),
"mrd" (multi-resolution magnitude spectrogram), "cqt" (multi-scale sub-band CQT). A recipe
usually combines several; `MultiDiscriminator` runs them all and concatenates their outputs,
so adversarial and feature-matching losses see one flat list of sub-discriminators.

Multi-channel audio: every discriminator takes the C channels as input channels of its first layer
(C waveform channels, or 2C real/imaginary spectrogram channels), so a stereo pair is judged
jointly and the logits keep batch size B. Logits come back flattened, [B, N].
"""

from __future__ import annotations

from torch import Tensor, nn

from ..errors import ConfigError
from .base import DISCRIMINATORS, Discriminator, DiscriminatorOutput
from .cqt import CQTDConfig, MultiScaleSubbandCQTDiscriminator
from .mpd import MPDConfig, MultiPeriodDiscriminator
from .mrd import MRDConfig, MultiResolutionDiscriminator
from .msd import MSDConfig, MultiScaleDiscriminator
from .msstft import MSSTFTConfig, MultiScaleSTFTDiscriminator


class MultiDiscriminator(Discriminator):
    """Several discriminators over the same wav [B, C, T].

    specs: ``[{"type": "mpd", ...}, {"type": "mrd", ...}]``; forward returns their
    outputs concatenated in spec order (same contract as one discriminator).
    """

    def __init__(self, specs: list[dict], channels: int, sample_rate: int):
        super().__init__()
        if not isinstance(specs, (list, tuple)) or not specs:
            raise ConfigError("discriminators: expected a non-empty list of {'type': ...} specs")
        self.discriminators = nn.ModuleList(
            DISCRIMINATORS.build(spec, f"discriminators[{i}]", channels=channels,
                                 sample_rate=sample_rate)
            for i, spec in enumerate(specs)
        )

    def forward(self, wav: Tensor) -> DiscriminatorOutput:
        return [out for d in self.discriminators for out in d(wav)]


def build_discriminator(spec: dict, channels: int, sample_rate: int) -> Discriminator:
    """{"type": name, **config} -> one discriminator."""
    return DISCRIMINATORS.build(spec, "discriminator", channels=channels, sample_rate=sample_rate)


def build_discriminators(specs: list[dict], channels: int, sample_rate: int) -> MultiDiscriminator:
    """A list of specs -> one MultiDiscriminator running them all."""
    return MultiDiscriminator(specs, channels, sample_rate)


__all__ = [
    "DISCRIMINATORS",
    "CQTDConfig",
    "Discriminator",
    "DiscriminatorOutput",
    "MPDConfig",
    "MRDConfig",
    "MSDConfig",
    "MSSTFTConfig",
    "MultiDiscriminator",
    "MultiPeriodDiscriminator",
    "MultiResolutionDiscriminator",
    "MultiScaleDiscriminator",
    "MultiScaleSTFTDiscriminator",
    "MultiScaleSubbandCQTDiscriminator",
    "build_discriminator",
    "build_discriminators",
]
