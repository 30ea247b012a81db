"""Codebook storage and update rules: learned by gradient, or by exponential moving averages.

Both kinds expose the same small interface to `VectorQuantizer`:
    weight [K, C]                     the codewords
    learned: bool                     whether a codebook loss should train `weight`
    place(mask [K], vectors [K, C], counts [K])   overwrite chosen rows (k-means, restarts)
    update(x [N, C], codes [N], counts [K])       per-batch update after assignment
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LearnedCodebook(nn.Module):
    """Codewords trained by the gradient of the codebook loss ||sg(z_e) - e||^2.

    van den Oord et al. 2017, "Neural Discrete Representation Learning", eq. 3; DAC keeps
    this form. Initialised unit normal, as the `nn.Embedding` that holds DAC's codebook.
    """

    learned = True

    def __init__(self, size: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(size, dim))

    @torch.no_grad()
    def place(self, mask: Tensor, vectors: Tensor, counts: Tensor) -> None:
        # torch.where instead of boolean indexing: no host sync to count the rows.
        self.weight.copy_(torch.where(mask[:, None], vectors.to(self.weight), self.weight))

    def update(self, x: Tensor, codes: Tensor, counts: Tensor) -> None:
        """Nothing to do: the optimiser moves learned codewords."""


class EMACodebook(nn.Module):
    """Codewords as running means of the latents assigned to them; no codebook loss.

    van den Oord et al. 2017, appendix A.1, and VQ-VAE-2 (Razavi et al. 2019); EnCodec's
    `EuclideanCodebook` uses the same rule with decay 0.99 and epsilon 1e-5.
    `ema_count` [K] and `ema_sum` [K, C] are the running assignment count and latent sum;
    `weight` = ema_sum / smoothed ema_count.
    """

    learned = False

    def __init__(self, size: int, dim: int, decay: float, epsilon: float):
        super().__init__()
        self.decay = decay
        self.epsilon = epsilon
        weight = torch.randn(size, dim)
        self.register_buffer("weight", weight)
        # Start consistent (weight == ema_sum / ema_count) so an update before any
        # `place` cannot divide a codeword by a zero count.
        self.register_buffer("ema_count", torch.ones(size))
        self.register_buffer("ema_sum", weight.clone())

    @torch.no_grad()
    def place(self, mask: Tensor, vectors: Tensor, counts: Tensor) -> None:
        # A placed codeword counts as seen at least once, so an empty k-means cluster is not
        # dragged to the origin by the next update (its sum would be 0 over a ~0 count).
        counts = counts.to(self.ema_count).clamp(min=1.0)
        vectors = vectors.to(self.weight)
        self.weight.copy_(torch.where(mask[:, None], vectors, self.weight))
        self.ema_count.copy_(torch.where(mask, counts, self.ema_count))
        self.ema_sum.copy_(torch.where(mask[:, None], vectors * counts[:, None], self.ema_sum))

    @torch.no_grad()
    def update(self, x: Tensor, codes: Tensor, counts: Tensor) -> None:
        """x float [N, C] latents, codes long [N] their assignments, counts [K] histogram."""
        sums = torch.zeros_like(self.ema_sum).index_add_(0, codes, x.to(self.ema_sum))
        self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        # Laplace smoothing keeps every divisor positive while preserving the total count
        # (as in Sonnet's VectorQuantizerEMA and EnCodec).
        total = self.ema_count.sum()
        size = self.ema_count.shape[0]
        smoothed = (self.ema_count + self.epsilon) / (total + size * self.epsilon) * total
        self.weight.copy_(self.ema_sum / smoothed[:, None])
