"""Training losses for GAN audio codecs; each returns a scalar tensor.

    spectral     MultiResolutionMelLoss (DAC), MultiScaleSTFTLoss (EnCodec),
                 MultiResolutionSTFTLoss (Parallel WaveGAN), PhaseDerivativeLoss (after APNet)
    intelligibility  STOILoss: 1 - STOI (Taal et al. 2011), differentiable
    waveform     WaveformL1Loss: L1 on samples (EnCodec's time-domain term)
    reconstruction   the contract and registry (RECONSTRUCTION_LOSSES) of the losses above,
                 which recipes weight by name: mel, msstft, stft, phase, stoi, waveform
    adversarial  generator_adversarial_loss, discriminator_loss, feature_matching_loss
    balancer     LossBalancer (EnCodec) for the losses that depend on the model output
    weighting    weighted_sum for the rest, and the rule binding recipe weights to loss names
"""

from .adversarial import (
    ADVERSARIAL_KINDS,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from .balancer import BalancerConfig, BalancerOutput, LossBalancer
from .intelligibility import STOILoss
from .reconstruction import RECONSTRUCTION_LOSSES, ReconstructionLoss
from .spectral import (
    MelLossConfig,
    MultiResolutionMelLoss,
    MultiResolutionSTFTLoss,
    MultiScaleSTFTLoss,
    MultiScaleSTFTLossConfig,
    PhaseDerivativeLoss,
    PhaseLossConfig,
    STFTLossConfig,
)
from .waveform import WaveformL1Loss
from .weighting import check_weights, weighted_sum

__all__ = [
    "ADVERSARIAL_KINDS",
    "RECONSTRUCTION_LOSSES",
    "BalancerConfig",
    "BalancerOutput",
    "LossBalancer",
    "MelLossConfig",
    "MultiResolutionMelLoss",
    "MultiResolutionSTFTLoss",
    "MultiScaleSTFTLoss",
    "MultiScaleSTFTLossConfig",
    "PhaseDerivativeLoss",
    "PhaseLossConfig",
    "ReconstructionLoss",
    "STFTLossConfig",
    "STOILoss",
    "WaveformL1Loss",
    "check_weights",
    "discriminator_loss",
    "feature_matching_loss",
    "generator_adversarial_loss",
    "weighted_sum",
]
