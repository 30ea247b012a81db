"""Validation metrics on waveforms, per item so they average over a dataset: ref, est [B, C, T]
(or [B, T]) -> [B]. Computed without gradients."""

from __future__ import annotations

import torch
from torch import Tensor

from .losses.spectral import MelLossConfig, MultiResolutionMelLoss

# Relative floor on the residual energy: caps SI-SDR at 10 * log10(1 / eps) = 100 dB, so an
# exact (or exactly scaled) copy gives a finite, scale-independent value.
_SI_SDR_EPS = 1e-10


@torch.no_grad()
def si_sdr(ref: Tensor, est: Tensor) -> Tensor:
    """Scale-invariant SDR in dB per item (Le Roux et al. 2019, "SDR - half-baked or well
    done?"): each channel is made zero-mean, then all channels of an item are treated as one
    signal. With unit-norm ref r and est e, the target is <e, r> r and

        SI-SDR = 10 log10(||target||^2 / (||e - target||^2 + eps))

    Normalising both first makes the result invariant to the scale of either input. A silent
    (or constant) estimate gives -inf."""
    if ref.shape != est.shape or ref.dim() < 2:
        raise ValueError(f"expected ref and est of one shape [B, C, T] or [B, T], got "
                         f"{tuple(ref.shape)} and {tuple(est.shape)}")
    # float64: the residual of a near-perfect estimate is below float32 resolution.
    ref = ref.double() - ref.double().mean(dim=-1, keepdim=True)
    est = est.double() - est.double().mean(dim=-1, keepdim=True)
    ref = ref.flatten(1)
    est = est.flatten(1)
    ref = ref / ref.norm(dim=1, keepdim=True).clamp(min=1e-30)
    est = est / est.norm(dim=1, keepdim=True).clamp(min=1e-30)
    target = (est * ref).sum(dim=1, keepdim=True) * ref
    residual = est - target
    ratio = target.pow(2).sum(dim=1) / (residual.pow(2).sum(dim=1) + _SI_SDR_EPS)
    return (10 * torch.log10(ratio)).float()


@torch.no_grad()
def mel_distance(ref: Tensor, est: Tensor, sample_rate: int,
                 cfg: MelLossConfig | None = None) -> Tensor:
    """DAC's multi-scale log-mel L1 (the `MultiResolutionMelLoss`, DAC's defaults) per item.

    Builds the filterbanks on each call (a few ms); for many batches keep a
    MultiResolutionMelLoss and call its `per_item`."""
    loss = MultiResolutionMelLoss(sample_rate, cfg).to(ref.device)
    return loss.per_item(ref, est)
