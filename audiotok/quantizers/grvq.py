"""Grouped residual VQ: split the channels into groups, each with its own residual quantizer
(HiFi-Codec, Yang et al. 2023, "HiFi-Codec: Group-residual Vector quantization for High
Fidelity Audio Codec", sec. 2.2)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import QUANTIZERS, Quantizer, QuantizerOutput
from .codebook_usage import level_metrics
from .rvq import ResidualVQ, RVQConfig, sample_active_levels, subconfig
from .vq import check_code_rows


@dataclass
class GRVQConfig(RVQConfig):
    """The RVQ fields plus `groups`; `n_codebooks` counts levels over all groups and must be a
    multiple of `groups` (each group gets n_codebooks / groups levels)."""

    groups: int = 2

    def __post_init__(self):
        super().__post_init__()
        if self.groups < 1:
            raise ValueError(f"groups must be >= 1, got {self.groups}")
        if self.n_codebooks % self.groups:
            raise ValueError(
                f"n_codebooks ({self.n_codebooks}) must be a multiple of groups ({self.groups})"
            )


def interleave(group_codes: list[Tensor]) -> Tensor:
    """G tensors long [B, L, T] -> [B, L * G, T], row l * G + g = level l of group g."""
    stacked = torch.stack(group_codes, 2)                     # [B, L, G, T]
    b, levels, groups, t = stacked.shape
    return stacked.reshape(b, levels * groups, t)


@QUANTIZERS.register("grvq", GRVQConfig)
class GroupedResidualVQ(Quantizer):
    """z [B, D, T] -> codes long [B, K, T] ordered level-major:
    [g0 level0, g1 level0, g0 level1, g1 level1, ...], so the first k rows (k a multiple of
    `groups`) hold the coarsest k / groups levels of every group."""

    def __init__(self, cfg: GRVQConfig, dim: int):
        super().__init__()
        if dim % cfg.groups:
            raise ValueError(f"latent dim {dim} is not divisible by groups={cfg.groups}")
        self.cfg = cfg
        self.dim = dim
        self.codebook_sizes = [cfg.codebook_size] * cfg.n_codebooks
        group_cfg = subconfig(RVQConfig, cfg, n_codebooks=cfg.n_codebooks // cfg.groups)
        self.groups = nn.ModuleList(
            ResidualVQ(group_cfg, dim // cfg.groups) for _ in range(cfg.groups)
        )

    def levels_per_group(self, n_codebooks: int | None) -> int:
        n = self.check_n_codebooks(n_codebooks)
        if n % self.cfg.groups:
            raise ValueError(
                f"n_codebooks must be a multiple of groups={self.cfg.groups} "
                f"(codes keep whole levels across groups), got {n}"
            )
        return n // self.cfg.groups

    def forward(self, z: Tensor, n_codebooks: int | None = None) -> QuantizerOutput:
        """z [B, D, T] -> z_q [B, D, T], codes long [B, n, T]; losses summed over groups.

        Quantizer dropout draws one level count per item shared by all groups, so a dropped
        item looks like a shorter level-major prefix."""
        n_levels = self.levels_per_group(n_codebooks)
        active = None
        if self.training and n_codebooks is None and self.cfg.quantizer_dropout > 0:
            active = sample_active_levels(
                z.shape[0], n_levels, self.cfg.quantizer_dropout, z.device
            )
        parts = z.chunk(self.cfg.groups, dim=1)
        results = [rvq.quantize(part, n_levels, active, self.updates_state)
                   for rvq, part in zip(self.groups, parts)]
        losses: dict[str, Tensor] = {}
        for result in results:
            for name, value in result.losses().items():
                losses[name] = losses.get(name, 0) + value
        codes = interleave([r.codes for r in results])
        z_q = torch.cat([r.z_q for r in results], 1)
        return QuantizerOutput(z_q, codes, losses, level_metrics(codes, self.codebook_sizes),
                               active=None if active is None else active * self.cfg.groups)

    @torch.no_grad()
    def encode(self, z: Tensor, n_codebooks: int | None = None) -> Tensor:
        """z [B, D, T] -> codes long [B, n, T], n a multiple of groups; never changes state."""
        n_levels = self.levels_per_group(n_codebooks)
        parts = z.chunk(self.cfg.groups, dim=1)
        return interleave([rvq.encode(part, n_levels) for rvq, part in zip(self.groups, parts)])

    def decode(self, codes: Tensor) -> Tensor:
        """codes long [B, k, T], k a multiple of groups -> z_q [B, D, T]."""
        self.levels_per_group(check_code_rows(codes, self.n_codebooks))
        g = self.cfg.groups
        return torch.cat([rvq.decode(codes[:, i::g]) for i, rvq in enumerate(self.groups)], 1)

    def code_vectors(self) -> list[Tensor]:
        """Level-major like the codes: row l * groups + g is level l of group g."""
        per_group = [rvq.code_vectors() for rvq in self.groups]
        return [vectors for level in zip(*per_group) for vectors in level]
