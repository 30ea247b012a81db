"""The quantizer contract shared by every quantizer family."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..registry import Registry

QUANTIZERS = Registry("quantizer")


@dataclass
class QuantizerOutput:
    """Result of `Quantizer.forward`.

    z_q:     float [B, D, T]  quantized latents (straight-through: gradients reach the input)
    codes:   long  [B, K, T]  integer codes, one row per codebook level
    losses:  named scalar losses to be weighted by a recipe ("vq/commit", "vq/codebook", ...)
    metrics: named scalars for logging only ("vq/usage/0", "vq/perplexity/0", ...)
    semantic: float [B, D, T] the part of z_q that distillation heads read: the semantic
              levels of a split RVQ, level 0 of a residual VQ; None for the others
    """

    z_q: Tensor
    codes: Tensor
    losses: dict[str, Tensor] = field(default_factory=dict)
    metrics: dict[str, Tensor] = field(default_factory=dict)
    semantic: Tensor | None = None


class Quantizer(nn.Module):
    """Maps latents [B, D, T] to codes [B, K, T] and back.

    Subclasses set `dim` (input/output latent channels) and `codebook_sizes` (one entry per
    level K; levels may differ in size). `n_codebooks` may be lowered at encode time to trade
    bitrate for quality where the family supports it (residual quantizers).
    """

    dim: int
    codebook_sizes: list[int]

    @property
    def n_codebooks(self) -> int:
        return len(self.codebook_sizes)

    def check_n_codebooks(self, n_codebooks: int | None) -> int:
        """Resolve `n_codebooks` (None = all) and check it against what this quantizer has."""
        n = self.n_codebooks if n_codebooks is None else int(n_codebooks)
        if not 1 <= n <= self.n_codebooks:
            raise ValueError(
                f"n_codebooks must be between 1 and {self.n_codebooks}, got {n_codebooks}"
            )
        return n

    def forward(self, z: Tensor, n_codebooks: int | None = None) -> QuantizerOutput:
        raise NotImplementedError

    @torch.no_grad()
    def encode(self, z: Tensor, n_codebooks: int | None = None) -> Tensor:
        """z [B, D, T] -> codes long [B, K, T] (deterministic, no state updates)."""
        raise NotImplementedError

    def decode(self, codes: Tensor) -> Tensor:
        """codes long [B, K, T] with K <= n_codebooks -> z_q [B, D, T]."""
        raise NotImplementedError
