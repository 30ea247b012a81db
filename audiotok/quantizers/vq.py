"""Single-codebook vector quantizer: k-means init, EMA or learned codewords, dead-code restart,
factorised low-dimensional codes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from .base import QUANTIZERS, Quantizer, QuantizerOutput
from .codebook import EMACodebook, LearnedCodebook
from .codebook_usage import code_metrics
from .kmeans import kmeans
from .precision import full_precision
from .search import SEARCHES


@dataclass
class VQConfig:
    """One codebook level.

    codebook_size:       entries K.
    codebook_dim:        search in this many dims through weight-normed 1x1 convs in and out
                         (DAC's factorised codes, Kumar et al. 2023, sec. 3.2); None = dim.
    l2_normalize:        search by cosine similarity (DAC, after ViT-VQGAN); the codewords
                         themselves are returned and trained unnormalised, as in DAC.
    ema:                 codewords are running means of their latents (VQ-VAE-2, EnCodec)
                         instead of being trained by the "vq/codebook" loss.
    ema_decay, ema_epsilon: the EMA decay and Laplace smoothing.
    kmeans_init:         on the first training forward, place the codewords by k-means on
                         that batch's latents (EnCodec, Defossez et al. 2022, sec. 3.2).
    kmeans_iters:        Lloyd iterations for that.
    dead_code_threshold: in training, codewords whose running usage (assignments per batch)
                         falls below this are moved onto random latents of the batch; 0 = off.
    usage_decay:         decay of that running usage.
    projection_norm:     weight-norm the in/out projections (DAC); false for checkpoints
                         stored with plain weights (transformers' DacModel), which weight
                         norm would reproduce only to rounding.
    search:              "euclidean" (quantizers/search.py), or for published checkpoints'
                         codes bit for bit: "transformers_dac", the expression transformers'
                         DacModel evaluates (-(|x|^2 - 2 x.c) + |c|^2, largest first), or
                         "cdist", torch.cdist as Mimi's codebooks search.
    eval_codeword:       outside training, hand on the codeword itself (EnCodec subtracts it
                         from the residual) rather than the straight-through z_e + (q - z_e),
                         equal in value but rounded differently (DAC computes that one).
    """

    codebook_size: int = 1024
    codebook_dim: int | None = None
    l2_normalize: bool = False
    ema: bool = False
    ema_decay: float = 0.99
    ema_epsilon: float = 1e-5
    kmeans_init: bool = False
    kmeans_iters: int = 10
    dead_code_threshold: float = 0.0
    usage_decay: float = 0.99
    projection_norm: bool = True
    search: str = "euclidean"
    eval_codeword: bool = False

    def __post_init__(self):
        if self.search not in SEARCHES:
            raise ValueError(f"search must be one of {', '.join(SEARCHES)}, got '{self.search}'")
        if self.codebook_size < 1:
            raise ValueError(f"codebook_size must be >= 1, got {self.codebook_size}")
        if self.codebook_dim is not None and self.codebook_dim < 1:
            raise ValueError(f"codebook_dim must be >= 1 or null, got {self.codebook_dim}")
        for name in ("ema_decay", "usage_decay"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {getattr(self, name)}")
        if self.ema_epsilon <= 0:
            raise ValueError(f"ema_epsilon must be > 0, got {self.ema_epsilon}")
        if self.kmeans_iters < 0:
            raise ValueError(f"kmeans_iters must be >= 0, got {self.kmeans_iters}")
        if self.dead_code_threshold < 0:
            raise ValueError(
                f"dead_code_threshold must be >= 0, got {self.dead_code_threshold}"
            )


@dataclass
class VQLevel:
    """One level's result before losses are reduced over the batch (reused by residual VQs).

    z_q:      float [B, D, T]  straight-through quantized latents, projected back to D
    codes:    long  [B, T]
    commit:   float [B]        mean ||z_e - sg(e)||^2 per item
    codebook: float [B]        mean ||sg(z_e) - e||^2 per item; None for EMA codebooks
    """

    z_q: Tensor
    codes: Tensor
    commit: Tensor
    codebook: Tensor | None


def projection(dim_in: int, dim_out: int, normed: bool = True, bias: bool = True
               ) -> nn.Module:
    """1x1 weight-normed conv [B, dim_in, T] -> [B, dim_out, T] (DAC's WNConv1d; a plain
    conv with `normed=False`), or identity."""
    if dim_in == dim_out:
        return nn.Identity()
    conv = nn.Conv1d(dim_in, dim_out, kernel_size=1, bias=bias)
    # zero bias: a random offset would outweigh the small latents of an untrained encoder
    # and send every frame to the same codeword (see modules/conv.py)
    if bias:
        nn.init.zeros_(conv.bias)
    return weight_norm(conv) if normed else conv


@QUANTIZERS.register("vq", VQConfig)
class VectorQuantizer(Quantizer):
    """z [B, D, T] -> one code per frame, codes long [B, 1, T].

    Persistent state besides the codewords: `usage` float [K], the running assignments per
    batch that dead-code restarts read, and `initialized` bool [], set by the first training
    forward so a loaded model never re-runs k-means.
    """

    def __init__(self, cfg: VQConfig, dim: int):
        super().__init__()
        self.cfg = cfg
        self.dim = dim
        self.codebook_sizes = [cfg.codebook_size]
        code_dim = cfg.codebook_dim or dim
        self.in_proj = projection(dim, code_dim, cfg.projection_norm)
        self.out_proj = projection(code_dim, dim, cfg.projection_norm)
        if cfg.ema:
            self.codebook = EMACodebook(cfg.codebook_size, code_dim, cfg.ema_decay, cfg.ema_epsilon)
        else:
            self.codebook = LearnedCodebook(cfg.codebook_size, code_dim)
        self.register_buffer("usage", torch.zeros(cfg.codebook_size))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.codebook.weight.dtype

    @full_precision
    def quantize(self, z: Tensor, update: bool = False) -> VQLevel:
        """z [B, D, T] -> VQLevel; `update` applies the training-time state updates."""
        z_e = self.in_proj(z)                                   # [B, C, T]
        b, c, t = z_e.shape
        x = z_e.transpose(1, 2).reshape(b * t, c)               # [N, C], row = b * T + t
        if update:
            self._prepare(x.detach())
        codes = SEARCHES[self.cfg.search](x.detach(), self.codebook.weight.detach(),
                                          self.cfg.l2_normalize)
        q = F.embedding(codes, self.codebook.weight)            # [N, C]
        if update:
            self._record(x.detach(), codes)
            # Restart dead codes only after this batch is quantized (as EnCodec's
            # expire_codes_): restarting before the search would place codewords exactly on
            # this batch's latents, making training quantization lossless but eval not.
            self._restart(x.detach())
        q = q.view(b, t, c).transpose(1, 2)                     # [B, C, T]
        commit = F.mse_loss(z_e, q.detach(), reduction="none").mean((1, 2))
        codebook_loss = None
        if self.codebook.learned:
            codebook_loss = F.mse_loss(q, z_e.detach(), reduction="none").mean((1, 2))
        # Straight-through estimator: forward uses the codeword, backward copies the
        # gradient of z_q onto z_e (van den Oord et al. 2017, sec. 3.1).
        if self.cfg.eval_codeword and not torch.is_grad_enabled():
            z_q = self.out_proj(q)
        else:
            z_q = self.out_proj(z_e + (q - z_e).detach())
        return VQLevel(z_q, codes.view(b, t), commit, codebook_loss)

    @full_precision
    def lookup(self, codes: Tensor) -> Tensor:
        """codes long [B, T] -> z_q [B, D, T]."""
        q = F.embedding(codes.long(), self.codebook.weight).transpose(1, 2)
        return self.out_proj(q)

    def forward(self, z: Tensor, n_codebooks: int | None = None) -> QuantizerOutput:
        """z [B, D, T] -> z_q [B, D, T], codes long [B, 1, T], "vq/commit" (+ "vq/codebook")."""
        self.check_n_codebooks(n_codebooks)
        level = self.quantize(z, update=self.updates_state)
        losses = {"vq/commit": level.commit.mean()}
        if level.codebook is not None:
            losses["vq/codebook"] = level.codebook.mean()
        metrics = code_metrics(level.codes, self.cfg.codebook_size, 0)
        return QuantizerOutput(level.z_q, level.codes[:, None], losses, metrics)

    @torch.no_grad()
    def encode(self, z: Tensor, n_codebooks: int | None = None) -> Tensor:
        """z [B, D, T] -> codes long [B, 1, T]; never changes state, even in training mode."""
        self.check_n_codebooks(n_codebooks)
        return self.quantize(z, update=False).codes[:, None]

    def decode(self, codes: Tensor) -> Tensor:
        """codes long [B, 1, T] -> z_q [B, D, T]."""
        check_code_rows(codes, self.n_codebooks)
        return self.lookup(codes[:, 0])

    def code_vectors(self) -> list[Tensor]:
        """[codeword [K, C]] as the search sees it (l2-normalised with `l2_normalize`)."""
        return [self.level_vectors()]

    def level_vectors(self) -> Tensor:
        weight = self.codebook.weight.detach()
        return F.normalize(weight.float(), dim=1) if self.cfg.l2_normalize else weight

    # -- training-time state updates ---------------------------------------------------------

    @torch.no_grad()
    def _prepare(self, x: Tensor) -> None:
        """Before search: first-batch initialisation (k-means or uniform counts). x [N, C]."""
        if not bool(self.initialized):
            self._initialise(x)

    @torch.no_grad()
    def _restart(self, x: Tensor) -> None:
        """After search: dead-code restarts for the batches to come. x [N, C]."""
        if self.cfg.dead_code_threshold > 0:
            self._restart_dead_codes(x)

    def _initialise(self, x: Tensor) -> None:
        size = self.cfg.codebook_size
        everything = torch.ones(size, dtype=torch.bool, device=x.device)
        if self.cfg.kmeans_init:
            centroids, counts = kmeans(x.float(), size, self.cfg.kmeans_iters,
                                       self.cfg.l2_normalize)
            self.codebook.place(everything, centroids, counts)
        else:
            # Without k-means, assume uniform use: every codeword gets the mean count, so
            # none is declared dead before it had a chance.
            counts = torch.full((size,), x.shape[0] / size, device=x.device)
            self.codebook.place(everything, self.codebook.weight.clone(), counts)
        self.usage.copy_(counts)
        self.initialized.fill_(True)

    def _restart_dead_codes(self, x: Tensor) -> None:
        # Replace rarely used codewords with random latents of the current batch
        # (Dhariwal et al. 2020, "Jukebox", sec. 3.2; EnCodec's expire_codes_). Drawing a
        # candidate for every row and selecting with torch.where avoids a host sync.
        threshold = self.cfg.dead_code_threshold
        dead = self.usage < threshold
        candidates = x[torch.randint(x.shape[0], (dead.shape[0],), device=x.device)]
        restart_count = torch.full_like(self.usage, threshold)
        self.codebook.place(dead, candidates, restart_count)
        # A restarted codeword sits just at the threshold: used in the next batch it
        # survives, unused it is moved again.
        self.usage.copy_(torch.where(dead, restart_count, self.usage))

    @torch.no_grad()
    def _record(self, x: Tensor, codes: Tensor) -> None:
        """After search: running usage and the EMA codebook update. x [N, C], codes [N]."""
        counts = torch.bincount(codes, minlength=self.cfg.codebook_size).float()
        self.usage.mul_(self.cfg.usage_decay).add_(counts, alpha=1 - self.cfg.usage_decay)
        self.codebook.update(x.float(), codes, counts)


def check_code_rows(codes: Tensor, n_codebooks: int) -> int:
    """Check codes long [B, K, T] has 1 <= K <= n_codebooks rows; return K."""
    if codes.dim() != 3:
        raise ValueError(f"codes must be [B, K, T], got shape {tuple(codes.shape)}")
    if codes.dtype.is_floating_point or codes.dtype.is_complex or codes.dtype == torch.bool:
        raise ValueError(f"codes must be integers, got {codes.dtype}")
    k = codes.shape[1]
    if not 1 <= k <= n_codebooks:
        raise ValueError(f"codes have {k} rows; this quantizer decodes 1 to {n_codebooks}")
    return k
