"""Binary spherical quantization: lookup-free quantization on the unit sphere. The projected
latent u is l2-normalised and each dim quantized to sign(u_i) / sqrt(d), so every codeword
lies on the sphere too and the quantization error is bounded (Zhao et al. 2024, "Image and
Video Tokenization with Binary Spherical Quantization", sec. 3.2; public code:
zhaoyue-zephyrus/bsq-vit, transcoder/models/quantizer/bsq.py and models/bsqvit.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from .base import QUANTIZERS
from .lfq import LFQConfig, LookupFreeQuantizer


@dataclass
class BSQConfig(LFQConfig):
    """The LFQ fields with BSQ's defaults: the paper's 18 bits in one codebook (2^18 codes),
    its soft entropy at inv_temperature 1 (bsq-vit's default) over groups of 9 bits
    (bsq-vit's embed_group_size default; the b18g2 configuration). bsq-vit weighs
    gamma0 * H(sample) - gamma * H(codebook) with gamma0 = gamma = 1: diversity_gamma is
    gamma / gamma0, and the recipe weight of "bsq/entropy" carries gamma0 times its
    codebook_weight 0.1."""

    codebook_bits: int = 18
    inv_temperature: float = 1.0
    entropy_group_bits: int | None = 9


@QUANTIZERS.register("bsq", BSQConfig)
class BinarySphericalQuantizer(LookupFreeQuantizer):
    """z [B, D, T] -> codes long [B, K, T]: LFQ's layout and codes, with u = l2(proj(z)) over
    all d = K * b dims and codewords sign(u) / sqrt(d).

    The straight-through estimator passes the gradient of the codeword to u unscaled
    (bsq-vit applies it before the 1 / sqrt(d) scaling, which scales that gradient by
    1 / sqrt(d): a constant factor on the encoder's gradient, left out here)."""

    type_name = "bsq"

    @property
    def loss_weights(self) -> dict[str, float]:
        # bsq-vit's released configs: the quantizer loss at codebook_weight 0.1 with zeta 1,
        # the commitment term at beta 0 (logged, not trained)
        return {"bsq/entropy": 0.1, "bsq/commit": 0.0}

    @property
    def scale(self) -> float:
        return 1.0 / math.sqrt(self.bits)

    def latent(self, z: Tensor) -> Tensor:
        u = F.normalize(self.in_proj(z), dim=1)
        return u.unflatten(1, (self.cfg.n_codebooks, self.cfg.codebook_bits))

    def commitment(self, x: Tensor, q: Tensor) -> Tensor:
        """||u - sg(u_hat)||^2 over all d dims, averaged over frames (bsq-vit's commit loss,
        mean over tokens of the sum over dims)."""
        return (x - q.detach()).pow(2).sum((1, 2)).mean()
