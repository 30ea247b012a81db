"""Probabilistic residual VQ: the quantizer of CLaM-TTS's Mel-VAE (Kim et al. 2024, "CLaM-TTS:
Improving Neural Codec Language Model for Zero-Shot Text-to-Speech", ICLR, sec. 3.1).

Codes are found as in any RVQ (greedy, level by level: the paper's eq. 1), so `encode`,
`decode` and bitrate lowering behave like `rvq`. What changes is how the codewords learn. The
codes of a frame are latent variables of a Gaussian model of the latent,

    p(z_t | c_t) = N(z_t; sum_d e(c_{t,d}; d), sigma^2 I),

with a uniform prior over codes. Mean-field variational inference gives each depth a posterior
q*(c_{t,d} | z_t) ~ exp(E_{q(c_{t,-d})}[log p(z_t | c_{t,d}, c_{t,-d})]); the paper replaces
the expectation over the other depths by their greedy codes c*_{t,-d} (sec. 3.1), so

    q*(c_{t,d} = k | z_t) = softmax_k(-||x_{t,d} - e(k; d)||^2 / (2 sigma^2)),
    x_{t,d} = z_t - sum_{d' != d} e(c*_{t,d'}; d')    (what depth d must explain),

and each depth's codebook minimises the expected negative log-likelihood under it,
L(psi_d) = E_{q*}[-log p(z_t | c_{t,d}, c*_{t,-d})], summed over depths. Every codeword gets a
gradient in proportion to its posterior weight, not only the one the search picked, which is
how the paper keeps all codewords in use without restarts. The encoder sees only the commitment
term ||z - sum_d e(c*_{t,d}; d)||^2 and the straight-through path (its eq. for L(omega, phi)).

Ours, where the paper leaves it open: "vq/codebook" is sigma^2-scaled, E_q ||x - e||^2 per
latent dimension; it has the paper's minimiser and gradient direction for every codeword, but
its scale does not move as sigma anneals, so a recipe weight keeps its meaning. sigma^2 is the
maximum-likelihood value under the same loss (the posterior-weighted squared error per
dimension, averaged over depths), tracked as a running mean as EMA codebooks track their
codewords; its first value is the greedy quantization error of the first training batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import QUANTIZERS, Quantizer, QuantizerOutput
from .codebook_usage import level_metrics
from .precision import full_precision
from .rvq import sample_active_levels
from .search import nearest
from .vq import check_code_rows

MIN_VARIANCE = 1e-8  # keeps the posterior finite once the quantization error reaches zero


@dataclass
class PRVQConfig:
    """n_codebooks:       depths D (CLaM-TTS: 32).
    codebook_size:     entries per depth (CLaM-TTS: 1024).
    sigma:             fixed standard deviation of p(z | c); None = the running
                       maximum-likelihood estimate (module docstring). Small values make the
                       posterior one-hot: training then trains only the picked codewords.
    sigma_decay:       decay of that running estimate.
    quantizer_dropout: in training, each item with this probability uses only its first n
                       depths, n uniform in 1..n_codebooks (as `rvq`); the model of that item
                       then has n depths, so its posteriors leave out the dropped ones. Not
                       in the paper, which always codes 32 depths.
    """

    n_codebooks: int = 8
    codebook_size: int = 1024
    sigma: float | None = None
    sigma_decay: float = 0.99
    quantizer_dropout: float = 0.0

    def __post_init__(self):
        if self.n_codebooks < 1:
            raise ValueError(f"n_codebooks must be >= 1, got {self.n_codebooks}")
        if self.codebook_size < 1:
            raise ValueError(f"codebook_size must be >= 1, got {self.codebook_size}")
        if self.sigma is not None and not self.sigma > 0:
            raise ValueError(f"sigma must be > 0 or null, got {self.sigma}")
        if not 0.0 < self.sigma_decay < 1.0:
            raise ValueError(f"sigma_decay must be in (0, 1), got {self.sigma_decay}")
        if not 0.0 <= self.quantizer_dropout <= 1.0:
            raise ValueError(f"quantizer_dropout must be in [0, 1], got {self.quantizer_dropout}")


@QUANTIZERS.register("prvq", PRVQConfig)
class ProbabilisticResidualVQ(Quantizer):
    """z [B, D, T] -> codes long [B, n, T], depth 0 coarsest.

    State: `codebooks` [n_codebooks, K, D] (trained by "vq/codebook"), `variance` [1] the
    running sigma^2, and `initialized` bool [] set by the first training forward.
    """

    def __init__(self, cfg: PRVQConfig, dim: int):
        super().__init__()
        self.cfg = cfg
        self.dim = dim
        self.codebook_sizes = [cfg.codebook_size] * cfg.n_codebooks
        # unit normal, as the learned codebooks of `vq` (nn.Embedding's init in DAC)
        self.codebooks = nn.Parameter(torch.randn(cfg.n_codebooks, cfg.codebook_size, dim))
        # shape [1], not []: a codec's fingerprint hashes buffers through a byte view
        self.register_buffer("variance", torch.ones(1))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.codebooks.dtype

    @full_precision
    def search(self, z: Tensor, n_levels: int) -> tuple[Tensor, Tensor]:
        """Greedy residual search (eq. 1): z [B, D, T] -> (codes long [n, N],
        picked codewords [n, N, D]) over the N = B * T frames, row = b * T + t."""
        residual = z.detach().transpose(1, 2).reshape(-1, self.dim)
        books = self.codebooks.detach()  # the codebook loss alone trains the codewords
        codes, picked = [], []
        for d in range(n_levels):
            code = nearest(residual, books[d])
            word = F.embedding(code, books[d])
            residual = residual - word
            codes.append(code)
            picked.append(word)
        return torch.stack(codes), torch.stack(picked)

    @full_precision
    def forward(self, z: Tensor, n_codebooks: int | None = None) -> QuantizerOutput:
        """z [B, D, T] -> z_q [B, D, T] (straight-through), codes long [B, n, T],
        losses "vq/commit" and "vq/codebook", metrics per depth and "vq/sigma".

        n_codebooks given: exactly the first n depths; None: all, with quantizer dropout in
        training."""
        n = self.check_n_codebooks(n_codebooks)
        b, _, t = z.shape
        codes, picked = self.search(z, n)                         # [n, N], [n, N, D]
        keep = self._active(b, t, n, n_codebooks)                 # [n, N] float or None
        if keep is not None:
            picked = picked * keep[..., None]
        x = z.transpose(1, 2).reshape(-1, self.dim)               # [N, D]
        z_hat = picked.sum(0)
        losses = {"vq/commit": F.mse_loss(x, z_hat.detach(), reduction="none").mean(1)
                  .view(b, t).mean()}
        codebook_loss, error = self._codebook_loss(x.detach(), z_hat.detach(), picked, n, keep)
        losses["vq/codebook"] = codebook_loss
        if self.updates_state and self.cfg.sigma is None:
            self._update_variance(error, x.detach() - z_hat.detach())
        z_q = (x + (z_hat - x).detach()).view(b, t, self.dim).transpose(1, 2)
        first = (x + (picked[0] - x).detach()).view(b, t, self.dim).transpose(1, 2)
        codes = codes.view(n, b, t).transpose(0, 1)
        metrics = level_metrics(codes, self.codebook_sizes)
        metrics["vq/sigma"] = self._variance().sqrt()
        return QuantizerOutput(z_q, codes, losses, metrics, semantic=first)

    def _active(self, b: int, t: int, n: int, n_codebooks: int | None) -> Tensor | None:
        """Quantizer dropout: float [n, B * T], 1 where a frame's item keeps that depth."""
        if not (self.training and n_codebooks is None and self.cfg.quantizer_dropout > 0):
            return None
        active = sample_active_levels(b, n, self.cfg.quantizer_dropout, self.codebooks.device)
        depth = torch.arange(n, device=active.device)[:, None]
        return (depth < active[None]).float().repeat_interleave(t, dim=1)

    def _codebook_loss(self, x: Tensor, z_hat: Tensor, picked: Tensor, n: int,
                       keep: Tensor | None) -> tuple[Tensor, Tensor]:
        """The expected NLL per depth under its posterior (module docstring), sigma^2-scaled;
        x, z_hat [N, D] detached, picked [n, N, D]. Returns (the loss summed over depths,
        the posterior-weighted squared error per dimension averaged over depths, detached)."""
        target = (x - z_hat)[None] + picked                       # x_{t,d}: [n, N, D]
        words = self.codebooks[:n]                                # [n, K, D]
        # ||x - e||^2 for every codeword at once: [n, N, K]
        dist = (target.square().sum(-1, keepdim=True) - 2 * target @ words.transpose(1, 2)
                + words.square().sum(-1)[:, None]).clamp(min=0)
        posterior = torch.softmax(-dist.detach() / (2 * self._variance()), dim=-1)
        expected = (posterior * dist).sum(-1) / self.dim          # [n, N]
        if keep is None:
            return expected.mean(1).sum(), expected.detach().mean()
        # a dropped depth is no part of its item's model: zero loss there (a masked mean over
        # the whole batch, as `rvq`), and sigma is estimated on the kept depths
        expected = expected * keep
        return expected.mean(1).sum(), expected.detach().sum() / keep.sum().clamp(min=1)

    def _variance(self) -> Tensor:
        if self.cfg.sigma is not None:
            return self.variance.new_tensor(self.cfg.sigma ** 2)
        return self.variance[0].clamp(min=MIN_VARIANCE)

    @torch.no_grad()
    def _update_variance(self, error: Tensor, residual: Tensor) -> None:
        """sigma^2 <- running mean of its maximum-likelihood value `error`; the first training
        batch sets it to the greedy error (residual [N, D]) instead, so the first posterior
        is neither flat nor one-hot whatever the scale of the latents."""
        if not bool(self.initialized):
            self.variance.copy_(residual.square().mean().clamp(min=MIN_VARIANCE))
            self.initialized.fill_(True)
            return
        decay = self.cfg.sigma_decay
        self.variance.mul_(decay).add_(error.clamp(min=MIN_VARIANCE), alpha=1 - decay)

    @torch.no_grad()
    def encode(self, z: Tensor, n_codebooks: int | None = None) -> Tensor:
        """z [B, D, T] -> codes long [B, n, T]; deterministic, never changes state."""
        n = self.check_n_codebooks(n_codebooks)
        b, _, t = z.shape
        return self.search(z, n)[0].view(n, b, t).transpose(0, 1)

    @full_precision
    def decode(self, codes: Tensor) -> Tensor:
        """codes long [B, k, T], k <= n_codebooks -> z_q [B, D, T], the sum of k codewords."""
        k = check_code_rows(codes, self.n_codebooks)
        words = [F.embedding(codes[:, d].long(), self.codebooks[d]) for d in range(k)]
        return sum(words).transpose(1, 2)
