"""The generator's named losses for one batch, built from the recipe's `losses` section.

Names (bind weights to these in a recipe):
    mel, msstft, stft, waveform, phase, stoi
                 the reconstruction losses (losses/reconstruction.py lists where each is
                 defined); `mel` is computed every step, for the logs, whatever its weight
    vq/commit, vq/codebook   from the quantizer
    lfq/entropy, lfq/commit, bsq/entropy, bsq/commit, gsq/codebook, gsq/commit, gsq/entropy
                             from the lookup-free and spherical quantizers; weighted as their
                             papers train them unless the recipe names them
    decoder/magnitude, decoder/compressed   from the spectral decoder (codecs/spectral_decoder.py):
                             log-magnitude L1 and |X|^0.3 MSE of its predicted spectrogram
    adv/gen, feat            adversarial and feature matching, once the discriminator starts
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor, nn

from ..losses import check_weights
from ..losses.reconstruction import (
    RECONSTRUCTION_LOSSES,
    build_reconstruction_loss,
    options_section,
    reconstruction_losses,
)
from .recipe_config import LossConfig, Recipe

ADVERSARIAL = ("adv/gen", "feat")


class ReconstructionLosses(nn.Module):
    """Computes the weighted reconstruction losses (and those logged always, such as `mel`),
    in registration order; each is a submodule named after its loss (`.mel`)."""

    def __init__(self, cfg: LossConfig, sample_rate: int, quantizer_losses: list[str]):
        super().__init__()
        names = reconstruction_losses()
        check_weights(cfg.weights, names + list(ADVERSARIAL) + quantizer_losses)
        self.weights = dict(cfg.weights)
        self.names: list[str] = []
        for name in names:
            if not (self.weights.get(name)
                    or RECONSTRUCTION_LOSSES.entry(name).component.always_logged):
                continue
            section = options_section(name)
            # LossConfig has the sections of the losses audiotok/losses/ defines; one
            # registered from elsewhere takes its defaults (a recipe cannot name its section)
            options = getattr(cfg, section, {}) if section else {}
            self.add_module(name, build_reconstruction_loss(name, options, sample_rate))
            self.names.append(name)

    def forward(self, ref: Tensor, est: Tensor) -> dict[str, Tensor]:
        return {name: getattr(self, name)(ref, est) for name in self.names}


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
