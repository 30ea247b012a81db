"""Lookup-free quantization: each latent dim is quantized to its sign, so d dims are d bits
and the codebook {-1, +1}^d is implicit (MAGVIT-v2, Yu et al. 2024, "Language Model Beats
Diffusion: Tokenizer is Key to Visual Generation", sec. 3.1). No codewords to learn or to
collapse; an entropy penalty keeps the bits confident and the codes spread."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .base import QUANTIZERS, Quantizer, QuantizerOutput, check_every_codebook
from .binary import bit_entropy_terms, codes_to_signs, signs_to_codes
from .codebook_usage import level_metrics
from .precision import full_precision
from .vq import check_code_rows, projection

# The entropy groups enumerate 2^group_bits codes per frame; past this the [frames, 2^g]
# matrices stop fitting comfortably (BSQ's factorised groups are the way to larger codes).
MAX_ENTROPY_GROUP_BITS = 16


@dataclass
class LFQConfig:
    """d = n_codebooks * codebook_bits latent dims, one bit each.

    codebook_bits:      bits per codebook: each codebook has 2^codebook_bits codes. Splitting
                        d bits into several codebooks (codes [B, n_codebooks, T]) keeps the
                        vocabulary an LM sees usable; MAGVIT-v2 uses one codebook of 2^18.
    n_codebooks:        codebooks; all are needed to decode (they are parallel bit groups).
    inv_temperature:    sharpness of the soft assignment the entropy penalty is taken over:
                        the bit logit is 4 * inv_temperature * x (MAGVIT-v2's temperature
                        0.01, vector-quantize-pytorch's inv_temperature 100).
    diversity_gamma:    weight of the codebook entropy against the per-sample entropy
                        inside the entropy loss (vector-quantize-pytorch's diversity_gamma,
                        Open-MAGVIT2's batch_maximization_weight; both 1).
    entropy_group_bits: take the codebook entropy over groups of this many bits and sum
                        (BSQ's factorised approximation); null = over each whole codebook,
                        exact (needs codebook_bits <= 16).
    """

    codebook_bits: int = 10
    n_codebooks: int = 1
    inv_temperature: float = 100.0
    diversity_gamma: float = 1.0
    entropy_group_bits: int | None = None

    def __post_init__(self):
        if not 1 <= self.codebook_bits <= 30:
            raise ValueError(f"codebook_bits must be between 1 and 30, got {self.codebook_bits}")
        if self.n_codebooks < 1:
            raise ValueError(f"n_codebooks must be >= 1, got {self.n_codebooks}")
        if not self.inv_temperature > 0:
            raise ValueError(f"inv_temperature must be > 0, got {self.inv_temperature}")
        if self.diversity_gamma < 0:
            raise ValueError(f"diversity_gamma must be >= 0, got {self.diversity_gamma}")
        group = self.entropy_group_bits
        if group is None and self.codebook_bits > MAX_ENTROPY_GROUP_BITS:
            raise ValueError(f"entropy_group_bits must be set (a divisor of codebook_bits, at "
                             f"most {MAX_ENTROPY_GROUP_BITS}) when codebook_bits is "
                             f"{self.codebook_bits}: the exact entropy would enumerate "
                             f"2^{self.codebook_bits} codes per frame")
        if group is not None and not (1 <= group <= MAX_ENTROPY_GROUP_BITS
                                      and self.codebook_bits % group == 0):
            raise ValueError(f"entropy_group_bits must divide codebook_bits "
                             f"({self.codebook_bits}) and be at most "
                             f"{MAX_ENTROPY_GROUP_BITS}, got {group}")

    @property
    def group_bits(self) -> int:
        return self.entropy_group_bits or self.codebook_bits


@QUANTIZERS.register("lfq", LFQConfig)
class LookupFreeQuantizer(Quantizer):
    """z [B, D, T] -> codes long [B, K, T] in [0, 2^b), K = n_codebooks, b = codebook_bits.

    A 1x1 conv maps D to d = K * b dims (none when D == d); dim k * b + i is bit i of
    codebook k. The forward pass uses the sign (+-`scale`), the backward pass copies the
    gradient straight through to the unquantized dims. Losses, named by `type_name`:
    "<type_name>/entropy" (entropy.py) and "<type_name>/commit" (pulls the dims to their signs).
    """

    type_name = "lfq"

    def __init__(self, cfg: LFQConfig, dim: int):
        super().__init__()
        self.cfg = cfg
        self.dim = dim
        self.bits = cfg.n_codebooks * cfg.codebook_bits
        self.codebook_sizes = [2 ** cfg.codebook_bits] * cfg.n_codebooks
        self.in_proj = projection(dim, self.bits, normed=False)
        self.out_proj = projection(self.bits, dim, normed=False)

    @property
    def loss_weights(self) -> dict[str, float]:
        # MAGVIT-v2 and vector-quantize-pytorch's defaults: entropy 0.1, commitment 0.25
        return {f"{self.type_name}/entropy": 0.1, f"{self.type_name}/commit": 0.25}

    @property
    def scale(self) -> float:
        """The magnitude of a quantized dim: LFQ's codewords are +-1."""
        return 1.0

    @property
    def compute_dtype(self) -> torch.dtype:
        weight = getattr(self.in_proj, "weight", None)
        return torch.float32 if weight is None else weight.dtype

    def check_n_codebooks(self, n_codebooks: int | None) -> int:
        return check_every_codebook(n_codebooks, self.n_codebooks, self.type_name)

    def latent(self, z: Tensor) -> Tensor:
        """z [B, D, T] -> the dims to quantize, [B, K, b, T]."""
        x = self.in_proj(z)
        return x.unflatten(1, (self.cfg.n_codebooks, self.cfg.codebook_bits))

    def commitment(self, x: Tensor, q: Tensor) -> Tensor:
        """Mean squared distance of the dims to their (fixed) signs, as vector-quantize-
        pytorch's and Open-MAGVIT2's F.mse_loss(x, quantized.detach())."""
        return (x - q.detach()).pow(2).mean()

    @full_precision
    def forward(self, z: Tensor, n_codebooks: int | None = None) -> QuantizerOutput:
        """z [B, D, T] -> z_q [B, D, T], codes long [B, K, T], entropy and commitment losses."""
        self.check_n_codebooks(n_codebooks)
        x = self.latent(z)
        positive = x > 0
        q = torch.where(positive, self.scale, -self.scale).to(x.dtype)
        # straight-through estimator (MAGVIT-v2 sec. 3.1, as in vector-quantize-pytorch)
        z_q = self.out_proj((x + (q - x).detach()).flatten(1, 2))
        codes = signs_to_codes(positive)
        logits = 4 * self.cfg.inv_temperature * self.scale * x
        sample, codebook = bit_entropy_terms(logits, self.cfg.group_bits)
        losses = {f"{self.type_name}/entropy": sample - self.cfg.diversity_gamma * codebook,
                  f"{self.type_name}/commit": self.commitment(x, q)}
        metrics = {**level_metrics(codes, self.codebook_sizes),
                   f"{self.type_name}/sample_entropy": sample.detach(),
                   f"{self.type_name}/codebook_entropy": codebook.detach()}
        return QuantizerOutput(z_q, codes, losses, metrics)

    @torch.no_grad()
    @full_precision
    def encode(self, z: Tensor, n_codebooks: int | None = None) -> Tensor:
        """z [B, D, T] -> codes long [B, K, T]."""
        self.check_n_codebooks(n_codebooks)
        return signs_to_codes(self.latent(z) > 0)

    @full_precision
    def decode(self, codes: Tensor) -> Tensor:
        """codes long [B, K, T] (all K codebooks) -> z_q [B, D, T]."""
        self.check_n_codebooks(check_code_rows(codes, self.n_codebooks))
        signs = codes_to_signs(codes, self.cfg.codebook_bits, self.compute_dtype)
        return self.out_proj(signs.flatten(1, 2) * self.scale)
