"""Residual vector quantization: each level quantizes what the previous levels left over, so
the first k levels alone give a coarser code (SoundStream, Zeghidour et al. 2021, alg. 1)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import QUANTIZERS, Quantizer, QuantizerOutput
from .codebook_usage import level_metrics
from .vq import VectorQuantizer, VQConfig, VQLevel, check_code_rows, projection


@dataclass
class RVQConfig(VQConfig):
    """The VQ fields (applied to every level) plus:

    n_codebooks:       levels.
    quantizer_dropout: in training, each batch item with this probability uses only the first
                       n levels, n uniform in 1..n_codebooks, so one model serves several
                       bitrates (DAC, Kumar et al. 2023, sec. 3.3; DAC picks a fixed fraction
                       of the batch, here each item is drawn independently).
    dropout_choices:   if set, the dropped items draw their level count from this list
                       instead (EnCodec trains at fixed bandwidths: 2/4/8/16/32 levels of a
                       75 Hz, 10-bit RVQ = 1.5/3/6/12/24 kbps, Défossez et al. 2022 sec. 3.2).
    shared_projection: one bias-free 1x1 projection into codebook_dim before the first level
                       and one back after the levels' sum, instead of a projection per level;
                       the residuals live in codebook_dim (Mimi's ResidualVectorQuantizer,
                       moshi/quantization/vq.py).
    """

    n_codebooks: int = 8
    quantizer_dropout: float = 0.0
    dropout_choices: list[int] = dataclasses.field(default_factory=list)
    shared_projection: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.n_codebooks < 1:
            raise ValueError(f"n_codebooks must be >= 1, got {self.n_codebooks}")
        if not 0.0 <= self.quantizer_dropout <= 1.0:
            raise ValueError(f"quantizer_dropout must be in [0, 1], got {self.quantizer_dropout}")
        bad = [c for c in self.dropout_choices if not 1 <= c <= self.n_codebooks]
        if bad:
            raise ValueError(f"dropout_choices must be level counts in 1..{self.n_codebooks}, "
                             f"got {bad}")


def subconfig(cls: type, cfg, **changes):
    """Build config dataclass `cls` from the fields of `cfg` it shares, with `changes`."""
    values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls)}
    return cls(**{**values, **changes})


def sample_active_levels(batch: int, n_levels: int, p: float, device,
                         choices: list[int] | None = None) -> Tensor:
    """Quantizer dropout: long [B] levels each item keeps (n_levels, or with probability p
    a count drawn uniformly from `choices`, default 1..n_levels)."""
    keep_all = torch.full((batch,), n_levels, dtype=torch.long, device=device)
    options = [c for c in (choices or []) if c <= n_levels] or list(range(1, n_levels + 1))
    pick = torch.randint(0, len(options), (batch,), device=device)
    sampled = torch.tensor(options, dtype=torch.long, device=device)[pick]
    dropped = torch.rand(batch, device=device) < p
    return torch.where(dropped, sampled, keep_all)


@dataclass
class ResidualResult:
    """z_q float [B, D, T], codes long [B, n, T], losses already reduced and summed over levels
    (codebook None for EMA codebooks); first: level 0's z_q [B, D, T] (straight-through)."""

    z_q: Tensor
    codes: Tensor
    commit: Tensor
    codebook: Tensor | None
    first: Tensor

    def losses(self) -> dict[str, Tensor]:
        losses = {"vq/commit": self.commit}
        if self.codebook is not None:
            losses["vq/codebook"] = self.codebook
        return losses


@QUANTIZERS.register("rvq", RVQConfig)
class ResidualVQ(Quantizer):
    """z [B, D, T] -> codes long [B, n, T], level 0 coarsest; each level is a VectorQuantizer
    with its own codebook and projections."""

    def __init__(self, cfg: RVQConfig, dim: int):
        super().__init__()
        self.cfg = cfg
        self.dim = dim
        level_cfg, level_dim = subconfig(VQConfig, cfg), dim
        self.in_proj, self.out_proj = nn.Identity(), nn.Identity()
        if cfg.shared_projection:
            level_dim = cfg.codebook_dim or dim
            level_cfg = subconfig(VQConfig, cfg, codebook_dim=None)
            self.in_proj = projection(dim, level_dim, cfg.projection_norm, bias=False)
            self.out_proj = projection(level_dim, dim, cfg.projection_norm, bias=False)
        self.levels = nn.ModuleList(VectorQuantizer(level_cfg, level_dim)
                                    for _ in range(cfg.n_codebooks))
        self.codebook_sizes = [cfg.codebook_size] * cfg.n_codebooks

    def quantize(
        self, z: Tensor, n_levels: int, active: Tensor | None = None, update: bool = False
    ) -> ResidualResult:
        """Run the first `n_levels` levels on z [B, D, T].

        active long [B] (quantizer dropout): item b sums only its first active[b] levels into
        z_q and its losses at deeper levels are zeroed. The residual chain itself is the same
        for every item, so deeper codebooks still learn from all of them (as in DAC).
        """
        residual = self.in_proj(z)
        z_q = torch.zeros_like(residual)
        codes, commit, codebook = [], z.new_zeros(()), z.new_zeros(())
        for i in range(n_levels):
            level = self.quantize_level(i, residual, update)
            if i == 0:
                first = level.z_q  # every item keeps level 0, even under quantizer dropout
            keep = torch.ones_like(level.commit) if active is None else (active > i).float()
            z_q = z_q + level.z_q * keep[:, None, None].to(level.z_q.dtype)
            residual = residual - level.z_q
            codes.append(level.codes)
            # Masked mean over the whole batch, as DAC: dropped items count as zero loss.
            commit = commit + (level.commit * keep).mean()
            if level.codebook is not None:
                codebook = codebook + (level.codebook * keep).mean()
        learned = self.levels[0].codebook.learned
        return ResidualResult(self.out_proj(z_q), torch.stack(codes, 1), commit,
                              codebook if learned else None, self.out_proj(first))

    def quantize_level(self, i: int, residual: Tensor, update: bool) -> VQLevel:
        """Level i on the residual [B, D, T] -> its VQLevel (z_q [B, D, T], codes [B, T])."""
        return self.levels[i].quantize(residual, update)

    def forward(self, z: Tensor, n_codebooks: int | None = None) -> QuantizerOutput:
        """z [B, D, T] -> z_q [B, D, T], codes long [B, n, T].

        n_codebooks given: exactly the first n levels. None: all levels, with quantizer dropout
        in training (codes then hold every level, also those an item did not use). `semantic`
        is level 0's z_q: SpeechTokenizer's RVQ-1, the level distillation heads pull toward a
        teacher (Zhang et al. 2024, sec. 3.2).
        """
        n = self.check_n_codebooks(n_codebooks)
        active = None
        if self.training and n_codebooks is None and self.cfg.quantizer_dropout > 0:
            active = sample_active_levels(z.shape[0], n, self.cfg.quantizer_dropout, z.device,
                                          self.cfg.dropout_choices)
        result = self.quantize(z, n, active, update=self.updates_state)
        metrics = level_metrics(result.codes, self.codebook_sizes)
        return QuantizerOutput(result.z_q, result.codes, result.losses(), metrics,
                               semantic=result.first, active=active)

    @torch.no_grad()
    def encode(self, z: Tensor, n_codebooks: int | None = None) -> Tensor:
        """z [B, D, T] -> codes long [B, n, T]; never changes state."""
        return self.quantize(z, self.check_n_codebooks(n_codebooks)).codes

    def decode(self, codes: Tensor) -> Tensor:
        """codes long [B, k, T], k <= n_codebooks -> z_q [B, D, T], summing the first k levels."""
        k = check_code_rows(codes, self.n_codebooks)
        return self.out_proj(sum(self.levels[i].lookup(codes[:, i]) for i in range(k)))

    def code_vectors(self) -> list[Tensor]:
        """Each level's codewords [K, C] as its search sees them, level 0 first."""
        return [level.level_vectors() for level in self.levels]
