"""BEATs' two acoustic tokenizers' quantizers (Chen et al. 2022, sec. 3.2).

random_projection (iteration 1, the "cold start", sec. 3.2.1): a projection W and a codebook
    V, both drawn at random and frozen; a patch x gets the index of the codeword nearest to
    W x. As in BEST-RQ (Chiu et al. 2022), which BEATs follows, both sides are l2-normalised
    before the search, so "nearest" is largest cosine.
norm_ema_vq (iteration 2+, the self-distilled tokenizer, sec. 3.2.2, eq. 2): encoder outputs
    and codewords are l2-normalised; codewords are running means (EMA, decay 0.99) of the
    normalised latents assigned to them, re-normalised after each update, and start from
    cosine k-means on the first batch (unilm beats/quantizer.py NormEMAVectorQuantizer,
    built with beta 1, kmeans_init, decay 0.99 in beats/Tokenizers.py). The codebook term
    of eq. 2 is replaced by that EMA; the commitment term ||l2(e) - sg(l2(v))||^2 comes back
    as "vq/commit" (the public code's mean squared error, weight beta = 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import QUANTIZERS, Quantizer, QuantizerOutput
from .codebook_usage import code_metrics
from .kmeans import kmeans
from .vq import check_code_rows


@dataclass
class RandomProjectionConfig:
    """codebook_size / codebook_dim: BEATs uses 1024 codewords of 256 dims for every
    tokenizer (sec. 4.2); seed: draws W and V (a different seed is a different tokenizer)."""

    codebook_size: int = 1024
    codebook_dim: int = 256
    seed: int = 0

    def __post_init__(self):
        if self.codebook_size < 2 or self.codebook_dim < 1:
            raise ValueError(f"codebook_size must be >= 2 and codebook_dim >= 1, got "
                             f"{self.codebook_size}, {self.codebook_dim}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")


@QUANTIZERS.register("random_projection", RandomProjectionConfig)
class RandomProjectionQuantizer(Quantizer):
    """patches [B, D, T] -> codes long [B, 1, T]; nothing trains. `decode` gives the codeword
    mapped back through W's transpose: W has no inverse, and only the codes are used."""

    def __init__(self, cfg: RandomProjectionConfig, dim: int):
        super().__init__()
        self.dim = dim
        self.codebook_sizes = [cfg.codebook_size]
        g = torch.Generator().manual_seed(cfg.seed)
        # Xavier-uniform projection and unit-normal codewords, BEST-RQ's initialisation
        bound = (6.0 / (dim + cfg.codebook_dim)) ** 0.5
        w = (torch.rand(cfg.codebook_dim, dim, generator=g) * 2 - 1) * bound
        v = F.normalize(torch.randn(cfg.codebook_size, cfg.codebook_dim, generator=g), dim=-1)
        self.register_buffer("projection", w)
        self.register_buffer("codebook", v)

    def _codes(self, z: Tensor) -> Tensor:
        x = F.normalize(z.transpose(1, 2).float() @ self.projection.T, dim=-1)   # [B, T, C]
        return (x @ self.codebook.T).argmax(-1)[:, None]

    def forward(self, z: Tensor, n_codebooks: int | None = None) -> QuantizerOutput:
        self.check_n_codebooks(n_codebooks)
        codes = self._codes(z)
        return QuantizerOutput(self.decode(codes), codes, {},
                               code_metrics(codes[:, 0], self.codebook_sizes[0], 0))

    @torch.no_grad()
    def encode(self, z: Tensor, n_codebooks: int | None = None) -> Tensor:
        self.check_n_codebooks(n_codebooks)
        return self._codes(z)

    def decode(self, codes: Tensor) -> Tensor:
        check_code_rows(codes, 1)
        return (self.codebook[codes[:, 0]] @ self.projection).transpose(1, 2)


@dataclass
class NormEMAVQConfig:
    """codebook_size: 1024 in BEATs; decay: the EMA's (0.99); kmeans_iters: Lloyd iterations
    of the first-batch initialisation (10 in the public code)."""

    codebook_size: int = 1024
    decay: float = 0.99
    kmeans_iters: int = 10

    def __post_init__(self):
        if self.codebook_size < 2:
            raise ValueError(f"codebook_size must be >= 2, got {self.codebook_size}")
        if not 0 < self.decay < 1:
            raise ValueError(f"decay must be in (0, 1), got {self.decay}")
        if self.kmeans_iters < 0:
            raise ValueError(f"kmeans_iters must be >= 0, got {self.kmeans_iters}")


@QUANTIZERS.register("norm_ema_vq", NormEMAVQConfig)
class NormEMAQuantizer(Quantizer):
    """z [B, D, T] -> l2(z) quantized to the nearest unit codeword: z_q [B, D, T] (unit
    vectors, straight-through), codes long [B, 1, T], "vq/commit". Training mode updates the
    codebook (k-means on the first batch, then EMA); `encode` never does."""

    def __init__(self, cfg: NormEMAVQConfig, dim: int):
        super().__init__()
        self.cfg = cfg
        self.dim = dim
        self.codebook_sizes = [cfg.codebook_size]
        self.register_buffer("codebook", F.normalize(torch.randn(cfg.codebook_size, dim), dim=-1))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def _search(self, x: Tensor) -> Tensor:
        """x [N, D] unit rows -> codes [N]: for unit vectors the nearest is the most similar."""
        return (x @ self.codebook.T).argmax(-1)

    def forward(self, z: Tensor, n_codebooks: int | None = None) -> QuantizerOutput:
        self.check_n_codebooks(n_codebooks)
        b, d, t = z.shape
        x = F.normalize(z.transpose(1, 2).reshape(b * t, d).float(), dim=-1)
        if self.updates_state:
            self._initialise(x.detach())
        codes = self._search(x.detach())
        q = self.codebook[codes]
        if self.updates_state:
            self._update(x.detach(), codes)
        commit = F.mse_loss(x, q.detach())
        z_q = (x + (q - x).detach()).view(b, t, d).transpose(1, 2)
        codes = codes.view(b, 1, t)
        return QuantizerOutput(z_q, codes, {"vq/commit": commit},
                               code_metrics(codes[:, 0], self.cfg.codebook_size, 0))

    @torch.no_grad()
    def encode(self, z: Tensor, n_codebooks: int | None = None) -> Tensor:
        self.check_n_codebooks(n_codebooks)
        b, d, t = z.shape
        x = F.normalize(z.transpose(1, 2).reshape(b * t, d).float(), dim=-1)
        return self._search(x).view(b, 1, t)

    def decode(self, codes: Tensor) -> Tensor:
        check_code_rows(codes, 1)
        return self.codebook[codes[:, 0]].transpose(1, 2)

    @torch.no_grad()
    def _initialise(self, x: Tensor) -> None:
        if bool(self.initialized):
            return
        centroids, _ = kmeans(x, self.cfg.codebook_size, self.cfg.kmeans_iters, normalize=True)
        _broadcast(centroids)
        self.codebook.copy_(F.normalize(centroids, dim=-1))
        self.initialized.fill_(True)

    @torch.no_grad()
    def _update(self, x: Tensor, codes: Tensor) -> None:
        """NormEMAVectorQuantizer's rule: the batch mean of each used codeword's latents,
        l2-normalised, mixed in with weight 1 - decay, then re-normalised; unused codewords
        stay. Counts and sums are summed over processes first, as the public code does."""
        counts = torch.bincount(codes, minlength=self.cfg.codebook_size).to(x.dtype)
        sums = torch.zeros_like(self.codebook).index_add_(0, codes, x)
        _sync_sum(counts, sums)
        used = counts > 0
        means = F.normalize(sums / counts.clamp(min=1)[:, None], dim=-1)
        mixed = self.cfg.decay * self.codebook + (1 - self.cfg.decay) * means
        self.codebook.copy_(torch.where(used[:, None], F.normalize(mixed, dim=-1),
                                        self.codebook))


def _sync_sum(*tensors: Tensor) -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        for t in tensors:
            dist.all_reduce(t)


def _broadcast(t: Tensor) -> None:
    """Every process starts from the same codebook: rank 0's k-means."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.broadcast(t, 0)
