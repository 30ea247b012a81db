"""Adversarial and feature-matching losses over the discriminator contract
(audiotok.discriminators.base): `out` is a list of (logits [B, ...], feature_maps), one entry per
sub-discriminator. Every function averages over sub-discriminators and returns a scalar.

    kind="hinge"  EnCodec (Défossez et al. 2022, Sec. 3.3), after MelGAN:
                  G: max(0, 1 - D(x_hat))          D: max(0, 1 - D(x)) + max(0, 1 + D(x_hat))
    kind="lsgan"  least squares (Mao et al. 2017), as HiFi-GAN and DAC:
                  G: (1 - D(x_hat))^2              D: (1 - D(x))^2 + D(x_hat)^2
Each term is a mean over its logits. The hinge generator term is EnCodec's clipped form
(AudioCraft calls it "hinge2"), not the unclipped -D(x_hat).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..discriminators.base import DiscriminatorOutput
from ..errors import did_you_mean

ADVERSARIAL_KINDS = ("hinge", "lsgan")

# Guards the feature-matching normaliser against an all-zero (dead) real feature map.
_FEAT_EPS = 1e-6


def _check_kind(kind: str) -> None:
    if kind not in ADVERSARIAL_KINDS:
        raise ValueError(f"unknown adversarial loss kind '{kind}'"
                         f"{did_you_mean(kind, ADVERSARIAL_KINDS)}"
                         f"; choose one of {', '.join(ADVERSARIAL_KINDS)}")


def _check_outputs(*outs: DiscriminatorOutput) -> None:
    if not outs[0]:
        raise ValueError("the discriminator output has no sub-discriminators")
    if any(len(o) != len(outs[0]) for o in outs):
        raise ValueError(f"real and fake outputs differ in sub-discriminators: "
                         f"{[len(o) for o in outs]}")


def generator_adversarial_loss(fake_out: DiscriminatorOutput, kind: str = "hinge") -> Tensor:
    """Generator's loss on D(x_hat): mean over sub-discriminators."""
    _check_kind(kind)
    _check_outputs(fake_out)
    terms = []
    for logits, _ in fake_out:
        if kind == "hinge":
            terms.append(F.relu(1 - logits).mean())
        else:
            terms.append((1 - logits).pow(2).mean())
    return torch.stack(terms).mean()


def discriminator_loss(real_out: DiscriminatorOutput, fake_out: DiscriminatorOutput,
                       kind: str = "hinge") -> Tensor:
    """Discriminator's loss: real term + fake term per sub-discriminator, averaged over them.
    Run the discriminator on x_hat.detach() so this does not reach the generator."""
    _check_kind(kind)
    _check_outputs(real_out, fake_out)
    terms = []
    for (real, _), (fake, _) in zip(real_out, fake_out):
        if kind == "hinge":
            terms.append(F.relu(1 - real).mean() + F.relu(1 + fake).mean())
        else:
            terms.append((1 - real).pow(2).mean() + fake.pow(2).mean())
    return torch.stack(terms).mean()


def feature_matching_loss(real_out: DiscriminatorOutput, fake_out: DiscriminatorOutput) -> Tensor:
    """EnCodec's relative feature matching (Défossez et al. 2022, eq. 3):
        mean over sub-discriminators k and layers l of
            mean|D_k^l(x) - D_k^l(x_hat)| / mean|D_k^l(x)|
    Real features are detached. Dividing by the real feature's scale (rather than MelGAN's
    plain L1) keeps layers of very different magnitude from dominating. AudioCraft's public
    FeatureMatchingLoss computes this scale but does not apply it; we follow the paper."""
    _check_outputs(real_out, fake_out)
    terms = []
    for k, ((_, real_feats), (_, fake_feats)) in enumerate(zip(real_out, fake_out)):
        if len(real_feats) != len(fake_feats):
            raise ValueError(f"sub-discriminator {k}: {len(real_feats)} real feature maps but "
                             f"{len(fake_feats)} fake ones")
        for real, fake in zip(real_feats, fake_feats):
            real = real.detach()
            scale = real.abs().mean().clamp(min=_FEAT_EPS)
            terms.append((fake - real).abs().mean() / scale)
    if not terms:
        raise ValueError("the discriminator output has no feature maps")
    return torch.stack(terms).mean()
