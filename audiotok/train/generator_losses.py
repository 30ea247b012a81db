"""The generator's named losses for one batch, built from the recipe's `losses` section.

Names (bind weights to these in a recipe):
    mel          multi-resolution log-mel L1 (DAC)
    msstft       multi-scale mel L1 + log-mel L2 (EnCodec)
    stft         spectral convergence + log-magnitude L1 (Parallel WaveGAN)
    waveform     L1 on samples (EnCodec's time-domain term)
    phase        instantaneous-frequency and group-delay distance (losses/spectral.py)
    stoi         1 - STOI, differentiable (losses/intelligibility.py): band-envelope
                 correlation over 384 ms windows, the intelligibility metric `eval` reports
    vq/commit, vq/codebook   from the quantizer
    lfq/entropy, lfq/commit, bsq/entropy, bsq/commit, gsq/codebook, gsq/commit, gsq/entropy
                             from the lookup-free and spherical quantizers; weighted as their
                             papers train them unless the recipe names them
    decoder/magnitude, decoder/compressed   from the spectral decoder (codecs/spectral.py):
                             log-magnitude L1 and |X|^0.3 MSE of its predicted spectrogram
    adv/gen, feat            adversarial and feature matching, once the discriminator starts
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor, nn

from ..config import from_dict
from ..losses import (
    MelLossConfig,
    MultiResolutionMelLoss,
    MultiResolutionSTFTLoss,
    MultiScaleSTFTLoss,
    MultiScaleSTFTLossConfig,
    PhaseDerivativeLoss,
    PhaseLossConfig,
    STFTLossConfig,
    STOILoss,
    check_weights,
)
from .config import LossConfig, Recipe

RECONSTRUCTION = ("mel", "msstft", "stft", "waveform", "phase", "stoi")
ADVERSARIAL = ("adv/gen", "feat")


class ReconstructionLosses(nn.Module):
    """Computes the weighted reconstruction losses (and always `mel`, for logging)."""

    def __init__(self, cfg: LossConfig, sample_rate: int, quantizer_losses: list[str]):
        super().__init__()
        check_weights(cfg.weights, list(RECONSTRUCTION) + list(ADVERSARIAL) + quantizer_losses)
        self.weights = dict(cfg.weights)
        self.mel = MultiResolutionMelLoss(sample_rate, from_dict(MelLossConfig, cfg.mel, "mel"))
        self.msstft = self.stft = None
        if self.weights.get("msstft"):
            self.msstft = MultiScaleSTFTLoss(
                sample_rate, from_dict(MultiScaleSTFTLossConfig, cfg.stft, "losses.stft"))
        if self.weights.get("stft"):
            self.stft = MultiResolutionSTFTLoss(from_dict(STFTLossConfig, cfg.stft, "stft"))
        self.phase = None
        if self.weights.get("phase"):
            self.phase = PhaseDerivativeLoss(from_dict(PhaseLossConfig, cfg.phase, "losses.phase"))
        self.stoi = STOILoss(sample_rate) if self.weights.get("stoi") else None

    def forward(self, ref: Tensor, est: Tensor) -> dict[str, Tensor]:
        out = {"mel": self.mel(ref, est)}
        if self.msstft is not None:
            out["msstft"] = self.msstft(ref, est)
        if self.stft is not None:
            out["stft"] = self.stft(ref, est)
        if self.phase is not None:
            out["phase"] = self.phase(ref, est)
        if self.stoi is not None:
            out["stoi"] = self.stoi(ref, est)
        if self.weights.get("waveform"):
            out["waveform"] = (ref - est).abs().mean()
        return out


def total_loss(losses: dict[str, Tensor], weights: dict[str, float]) -> Tensor:
    """Weighted sum over the losses present this step (weights were checked at start-up)."""
    terms = [float(weights[n]) * v for n, v in losses.items() if weights.get(n)]
    if not terms:
        return torch.zeros((), device=next(iter(losses.values())).device, requires_grad=True)
    return torch.stack([t.float() for t in terms]).sum()


def with_quantizer_weights(recipe: Recipe, quantizer) -> Recipe:
    """`recipe` with its quantizer's own losses at the weights the quantizer's paper uses
    (`Quantizer.loss_weights`) wherever `losses.weights` does not name them."""
    defaults = dict(getattr(quantizer, "loss_weights", {}))
    if not defaults:
        return recipe
    weights = {**defaults, **recipe.losses.weights}
    return replace(recipe, losses=replace(recipe.losses, weights=weights))
