"""Finite scalar quantization: round each of a few bounded dimensions to a handful of levels;
the implied product grid is the codebook (Mentzer et al. 2023, "Finite Scalar Quantization:
VQ-VAE Made Simple"). No codebook to learn, so no codebook losses and no collapse."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .base import QUANTIZERS, Quantizer, QuantizerOutput
from .codebook_usage import code_metrics
from .precision import full_precision
from .vq import check_code_rows

# Shrinks the tanh range a little so a saturated value cannot round past the outer level
# (the paper's reference code, appendix A.1, uses the same 1e-3).
_BOUND_EPS = 1e-3


@dataclass
class FSQConfig:
    """levels: values per dimension; the codebook has prod(levels) entries. The paper's
    recommended sets include [8, 5, 5, 5] (2^10 codes) and [8, 8, 8, 5, 5, 5] (2^16)."""

    levels: list[int] = field(default_factory=lambda: [8, 5, 5, 5])
    # Compatibility with X-Codec-2 (Ye et al. 2025), trained with vector-quantize-pytorch's
    # FSQ, as transformers' Xcodec2Model computes it:
    #   projection "linear": the in/out projections are nn.Linear over channels-last frames
    #       (its project_in / project_out), rather than 1x1 convs; the same maps, but their
    #       products round like the publisher's, so codes match bit for bit.
    #   bound "atanh": the tanh range is widened by eps, (L - 1) (1 + eps) / 2, and centred
    #       with the exact atanh shift (vector-quantize-pytorch's `bound`); "tan" is the
    #       paper's appendix code (range narrowed by eps, tan shift).
    #   bound_passes 2: Xcodec2Quantizer bounds the projection, then its FSQ bounds again.
    projection: str = "conv"
    bound: str = "tan"
    bound_passes: int = 1

    def __post_init__(self):
        if self.projection not in ("conv", "linear"):
            raise ValueError(f"projection must be 'conv' or 'linear', got {self.projection!r}")
        if self.bound not in ("tan", "atanh"):
            raise ValueError(f"bound must be 'tan' or 'atanh', got {self.bound!r}")
        if self.bound_passes < 1:
            raise ValueError(f"bound_passes must be >= 1, got {self.bound_passes}")
        if not self.levels:
            raise ValueError("levels must name at least one dimension")
        bad = [n for n in self.levels if n < 2]
        if bad:
            raise ValueError(f"every entry of levels must be >= 2, got {bad[0]}")


@QUANTIZERS.register("fsq", FSQConfig)
class FiniteScalarQuantizer(Quantizer):
    """z [B, D, T] -> codes long [B, 1, T] in [0, prod(levels)).

    A 1x1 conv maps D to d = len(levels) dims; each is bounded with tanh to just under
    [-(L - 1) / 2, (L - 1) / 2] (shifted by half a step for even L, so it spans L integers)
    and rounded with a straight-through gradient. The code is the mixed-radix number whose
    digit i is the rounded value of dim i plus L_i // 2.
    """

    def __init__(self, cfg: FSQConfig, dim: int):
        super().__init__()
        self.cfg = cfg
        self.dim = dim
        levels = torch.tensor(cfg.levels, dtype=torch.long)
        basis = torch.cumprod(torch.cat([levels.new_ones(1), levels[:-1]]), 0)
        self.codebook_sizes = [math.prod(cfg.levels)]
        if cfg.projection == "linear":
            self.in_proj = nn.Linear(dim, len(cfg.levels))
            self.out_proj = nn.Linear(len(cfg.levels), dim)
        else:
            self.in_proj = nn.Conv1d(dim, len(cfg.levels), kernel_size=1)
            self.out_proj = nn.Conv1d(len(cfg.levels), dim, kernel_size=1)
        # Derived from the config, so not saved: [d, 1] to broadcast over [B, d, T].
        self.register_buffer("levels", levels[:, None], persistent=False)
        self.register_buffer("basis", basis[:, None], persistent=False)

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.in_proj.weight.dtype

    def project_in(self, z: Tensor) -> Tensor:
        """z [B, D, T] -> [B, d, T]."""
        if self.cfg.projection == "linear":
            return self.in_proj(z.transpose(1, 2)).transpose(1, 2)
        return self.in_proj(z)

    def project_out(self, grid: Tensor) -> Tensor:
        """grid [B, d, T] -> z_q [B, D, T]."""
        if self.cfg.projection == "linear":
            return self.out_proj(grid.transpose(1, 2)).transpose(1, 2)
        return self.out_proj(grid)

    def bound(self, h: Tensor) -> Tensor:
        """h [B, d, T] -> values in (-L/2, L/2) per dim whose rounding has exactly L values
        (applied `bound_passes` times)."""
        for _ in range(self.cfg.bound_passes):
            h = self._bound_once(h)
        return h

    def _bound_once(self, h: Tensor) -> Tensor:
        levels = self.levels.float()
        offset = torch.where(self.levels % 2 == 0, 0.5, 0.0)
        if self.cfg.bound == "atanh":
            half = (levels - 1) * (1 + _BOUND_EPS) / 2
            shift = (offset / half).atanh()
        else:
            half = (levels - 1) * (1 - _BOUND_EPS) / 2
            # The shift centres the range so bound(0) ~ 0 (it rounds to 0). Taken from the
            # paper's code: tan agrees with the exact inverse atanh to third order for the
            # usual level counts, and unlike atanh stays finite for L = 2, where
            # offset / half > 1.
            shift = torch.tan(offset / half)
        return torch.tanh(h + shift) * half - offset

    def digits_to_codes(self, rounded: Tensor) -> Tensor:
        """rounded [B, d, T] integers in [-(L // 2), (L - 1) // 2] -> codes long [B, 1, T]."""
        digits = rounded.long() + self.levels // 2
        return (digits * self.basis).sum(1, keepdim=True)

    def codes_to_latent(self, codes: Tensor) -> Tensor:
        """codes long [B, 1, T] -> grid point [B, d, T] scaled to about [-1, 1]."""
        digits = (codes.long() // self.basis) % self.levels
        return (digits - self.levels // 2).float() / (self.levels // 2)

    @full_precision
    def forward(self, z: Tensor, n_codebooks: int | None = None) -> QuantizerOutput:
        """z [B, D, T] -> z_q [B, D, T], codes long [B, 1, T]; no losses."""
        self.check_n_codebooks(n_codebooks)
        bounded = self.bound(self.project_in(z))
        rounded = torch.round(bounded)
        # Straight-through rounding (paper, sec. 3): the forward pass uses the grid point.
        grid = bounded + (rounded - bounded).detach()
        z_q = self.project_out(grid / (self.levels // 2))
        codes = self.digits_to_codes(rounded)
        metrics = code_metrics(codes, self.codebook_sizes[0], 0)
        return QuantizerOutput(z_q, codes, {}, metrics)

    @torch.no_grad()
    @full_precision
    def encode(self, z: Tensor, n_codebooks: int | None = None) -> Tensor:
        """z [B, D, T] -> codes long [B, 1, T]."""
        self.check_n_codebooks(n_codebooks)
        return self.digits_to_codes(torch.round(self.bound(self.project_in(z))))

    @full_precision
    def decode(self, codes: Tensor) -> Tensor:
        """codes long [B, 1, T] -> z_q [B, D, T]."""
        check_code_rows(codes, self.n_codebooks)
        return self.project_out(self.codes_to_latent(codes))

    def code_vectors(self) -> list[Tensor]:
        """The grid points [prod(levels), d] the codes index (before the out projection)."""
        codes = torch.arange(self.codebook_sizes[0], device=self.basis.device)
        return [self.codes_to_latent(codes[None, None])[0].T]
