"""Multi-scale residual VQ (SNAC, Siuzdak et al. 2024, sec. 3): level k quantizes the
residual average-pooled over `strides[k]` frames and spreads its codeword back over them, so
coarse levels tick at a fraction of the frame rate (SNAC 24 kHz: 12, 23 and 47 Hz).

Codes keep audiotok's one-rate layout, long [B, K, T] at the finest (frame) rate: a level of
stride s holds each of its codes s times in a row. That is lossless (decode reads every s-th
code), lets every tool that takes [B, K, T] (token files, chunking, the LM helpers) work
unchanged, and `level_strides` tells bitrate and token-rate figures (CodecSpec) the truth.
`Tokens.level_codes()` gives each level at its own rate, the list SNAC's `encode` returns.

T must be a multiple of every stride (the codec pads to `frame_multiple` frames, as SNAC's
`preprocess` does). Each level is a VectorQuantizer, so factorised l2-normalised codes,
commitment/codebook losses (taken at the pooled rate), straight-through gradients and
quantizer dropout work as in the RVQ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch.nn.functional as F
from torch import Tensor

from .base import QUANTIZERS
from .rvq import ResidualVQ, RVQConfig
from .vq import VQLevel, check_code_rows


@dataclass
class MultiScaleRVQConfig(RVQConfig):
    """The RVQ fields plus `strides`: frames pooled per code, one per level, coarsest first
    (SNAC 24 kHz: [4, 2, 1]; 32/44 kHz: [8, 4, 2, 1]). n_codebooks: 0 = len(strides)."""

    strides: list[int] = field(default_factory=lambda: [4, 2, 1])
    n_codebooks: int = 0

    def __post_init__(self):
        if not self.strides or any(int(s) < 1 for s in self.strides):
            raise ValueError(f"strides must be positive integers, got {self.strides}")
        if self.n_codebooks == 0:
            self.n_codebooks = len(self.strides)
        if self.n_codebooks != len(self.strides):
            raise ValueError(f"n_codebooks {self.n_codebooks} != {len(self.strides)} strides")
        super().__post_init__()


@QUANTIZERS.register("msrvq", MultiScaleRVQConfig)
class MultiScaleRVQ(ResidualVQ):
    """z [B, D, T] -> codes long [B, n, T], level k constant over runs of strides[k] frames."""

    multi_rate = True

    def __init__(self, cfg: MultiScaleRVQConfig, dim: int):
        super().__init__(cfg, dim)
        self.level_strides = [int(s) for s in cfg.strides]
        self.frame_multiple = math.lcm(*self.level_strides)

    def quantize_level(self, i: int, residual: Tensor, update: bool) -> VQLevel:
        s = self.level_strides[i]
        if residual.shape[-1] % s:
            raise ValueError(f"level {i} pools {s} frames; got {residual.shape[-1]} frames")
        if s == 1:
            return self.levels[i].quantize(residual, update)
        level = self.levels[i].quantize(F.avg_pool1d(residual, s, s), update)
        return VQLevel(_repeat(level.z_q, s), _repeat(level.codes, s), level.commit,
                       level.codebook)

    def decode(self, codes: Tensor) -> Tensor:
        """codes long [B, k, T], k <= n_codebooks -> z_q [B, D, T]; level j reads every
        strides[j]-th code (from the first), so T need not be a multiple of the strides."""
        k = check_code_rows(codes, self.n_codebooks)
        t = codes.shape[-1]
        out = 0
        for i in range(k):
            s = self.level_strides[i]
            z = self.levels[i].lookup(codes[:, i, ::s])
            out = out + (_repeat(z, s)[..., :t] if s > 1 else z)
        return out


def _repeat(x: Tensor, s: int) -> Tensor:
    """x [..., T] -> [..., T * s], each value s times in a row (repeat_interleave, which
    torch's ONNX exporter cannot write for a traced length)."""
    return x.unsqueeze(-1).expand(*x.shape, s).flatten(-2)
