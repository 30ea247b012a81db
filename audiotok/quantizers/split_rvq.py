"""Split RVQ: a semantic VQ and an acoustic RVQ side by side on the same latent (Mimi).

Mimi (Défossez et al. 2024, "Moshi", sec. 3.3) distills WavLM into the first codebook only.
Distilling into the first level of a plain RVQ hurt reconstruction, so it quantizes the latent
twice in parallel: a semantic VQ (one level, the distillation target) and an acoustic RVQ of 7
(Moshi) to 31 levels, each starting from the same latent; the two quantized latents are summed.
Quantizer dropout acts on the acoustic levels only, so the semantic code is always there.

    codes [B, n_semantic + n_acoustic, T]: semantic rows first, then acoustic levels coarse to
    fine. Lowering n_codebooks keeps the semantic rows and the first acoustic levels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .base import QUANTIZERS, Quantizer, QuantizerOutput
from .codebook_usage import level_metrics
from .rvq import ResidualVQ, RVQConfig, sample_active_levels, subconfig
from .vq import check_code_rows


@dataclass
class SplitRVQConfig(RVQConfig):
    """The RVQ fields (applied to both parts) plus `n_semantic`.

    n_codebooks:       levels in total, semantic included (Mimi: 8 in Moshi, up to 32).
    n_semantic:        levels of the semantic part (Mimi: 1), a residual VQ of their own.
    quantizer_dropout: in training, each item with this probability keeps only the first
                       n acoustic levels, n uniform in 0..n_acoustic (so every bitrate from
                       semantic-only up is trained); the semantic levels are always kept.
    """

    n_semantic: int = 1

    def __post_init__(self):
        super().__post_init__()
        if not 1 <= self.n_semantic < self.n_codebooks:
            raise ValueError(f"n_semantic must be in [1, n_codebooks - 1] = "
                             f"[1, {self.n_codebooks - 1}], got {self.n_semantic}")


@QUANTIZERS.register("split_rvq", SplitRVQConfig)
class SplitResidualVQ(Quantizer):
    """z [B, D, T] -> codes long [B, K, T]: rows [0, n_semantic) from the semantic RVQ, the rest
    from the acoustic RVQ; z_q = semantic z_q + acoustic z_q.

    `forward` also fills `QuantizerOutput.semantic` with the semantic part's z_q [B, D, T]
    (straight-through, so a distillation loss on it trains the encoder); `semantic_latent(z)`
    computes the same without touching the acoustic part or any state.
    """

    def __init__(self, cfg: SplitRVQConfig, dim: int):
        super().__init__()
        self.cfg = cfg
        self.dim = dim
        self.n_semantic = cfg.n_semantic
        self.n_acoustic = cfg.n_codebooks - cfg.n_semantic
        self.semantic_vq = ResidualVQ(subconfig(RVQConfig, cfg, n_codebooks=self.n_semantic,
                                             quantizer_dropout=0.0), dim)
        self.acoustic_rvq = ResidualVQ(subconfig(RVQConfig, cfg, n_codebooks=self.n_acoustic), dim)
        self.codebook_sizes = [cfg.codebook_size] * cfg.n_codebooks

    def split(self, n_codebooks: int | None) -> tuple[int, int]:
        """(semantic, acoustic) levels used for `n_codebooks` in total (None = all)."""
        n = self.check_n_codebooks(n_codebooks)
        return min(n, self.n_semantic), max(n - self.n_semantic, 0)

    def forward(self, z: Tensor, n_codebooks: int | None = None) -> QuantizerOutput:
        """z [B, D, T] -> z_q [B, D, T], codes long [B, n, T], semantic [B, D, T].

        n_codebooks given: exactly the first n levels. None: all levels, with quantizer dropout
        on the acoustic part in training (codes then hold every level)."""
        n_sem, n_ac = self.split(n_codebooks)
        sem = self.semantic_vq.quantize(z, n_sem, update=self.updates_state)
        z_q, codes = sem.z_q, [sem.codes]
        losses = sem.losses()
        active = None
        if n_ac:
            if self.training and n_codebooks is None and self.cfg.quantizer_dropout > 0:
                active = sample_active_levels(z.shape[0], n_ac + 1, self.cfg.quantizer_dropout,
                                              z.device) - 1
            ac = self.acoustic_rvq.quantize(z, n_ac, active, update=self.updates_state)
            z_q, codes = z_q + ac.z_q, codes + [ac.codes]
            losses = {k: v + ac.losses()[k] for k, v in losses.items()}
        codes = torch.cat(codes, 1)
        return QuantizerOutput(z_q, codes, losses, level_metrics(codes, self.codebook_sizes),
                               semantic=sem.z_q,
                               active=None if active is None else active + n_sem)

    def semantic_latent(self, z: Tensor) -> Tensor:
        """z [B, D, T] -> the semantic levels' z_q [B, D, T] (straight-through, no updates)."""
        return self.semantic_vq.quantize(z, self.n_semantic).z_q

    @torch.no_grad()
    def encode(self, z: Tensor, n_codebooks: int | None = None) -> Tensor:
        """z [B, D, T] -> codes long [B, n, T]; never changes state."""
        n_sem, n_ac = self.split(n_codebooks)
        codes = [self.semantic_vq.quantize(z, n_sem).codes]
        if n_ac:
            codes.append(self.acoustic_rvq.quantize(z, n_ac).codes)
        return torch.cat(codes, 1)

    def decode(self, codes: Tensor) -> Tensor:
        """codes long [B, k, T], k <= n_codebooks -> z_q [B, D, T]."""
        k = check_code_rows(codes, self.n_codebooks)
        z_q = self.semantic_vq.decode(codes[:, : min(k, self.n_semantic)])
        if k > self.n_semantic:
            z_q = z_q + self.acoustic_rvq.decode(codes[:, self.n_semantic:])
        return z_q

    def code_vectors(self) -> list[Tensor]:
        """Semantic rows first, then the acoustic levels, as in the codes."""
        return self.semantic_vq.code_vectors() + self.acoustic_rvq.code_vectors()
