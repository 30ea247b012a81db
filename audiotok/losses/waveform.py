"""The time-domain reconstruction loss: L1 between the samples, EnCodec's l_t (Défossez et
al. 2022, Sec. 3.4)."""

from __future__ import annotations

from torch import Tensor

from .reconstruction import RECONSTRUCTION_LOSSES, NoOptions, ReconstructionLoss


@RECONSTRUCTION_LOSSES.register("waveform", NoOptions)
class WaveformL1Loss(ReconstructionLoss):
    """ref, est [B, C, T] -> mean |ref - est| over every sample."""

    def forward(self, ref: Tensor, est: Tensor) -> Tensor:
        return (ref - est).abs().mean()
