"""Parallel streams: the latent's channels cut into consecutive slices, each quantized by its
own quantizer at its own rate (FreeCodec, Zheng et al. 2024: a prosody VQ at a long stride
beside a content VQ at the frame rate, sec. 2.2).

    quantizer:
      type: parallel
      streams:
        - {dim: 256, stride: 8, quantizer: {type: vq, codebook_size: 256}}   # prosody
        - {dim: 256, stride: 1, quantizer: {type: vq, codebook_size: 256}}   # content
      semantic: 1          # the stream distillation heads read (CodecOutput.semantic)

Codes are the streams' rows one after another, long [B, K, T] at the frame rate; a stream
of stride s average-pools s frames into one code and holds it s times in a row, as the
multi-scale RVQ does (quantizers/multiscale_rvq.py), so `level_strides` gives CodecSpec
the true token rate and `Tokens.level_codes()` each row at its own rate. `n_codebooks`
keeps the first rows; the streams left out decode as zeros. Losses of the same name add up
over the streams ("vq/commit"); per-level metrics are renumbered by row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..strict_config import from_dict, to_dict
from .base import QUANTIZERS, Quantizer, QuantizerOutput
from .codebook_usage import shift_levels
from .vq import check_code_rows


@dataclass
class StreamConfig:
    """One stream: `dim` latent channels, `stride` frames per code, any registered
    quantizer."""

    dim: int = 256
    stride: int = 1
    quantizer: dict = field(default_factory=lambda: {"type": "vq"})

    def __post_init__(self):
        if self.dim < 1 or self.stride < 1:
            raise ValueError(f"dim and stride must be positive, got {self.dim}, {self.stride}")


@dataclass
class ParallelConfig:
    streams: list = field(default_factory=list)
    semantic: int | None = None

    def __post_init__(self):
        if not self.streams:
            raise ValueError("streams must list at least one {dim, stride, quantizer}")
        parsed = []
        for i, s in enumerate(self.streams):
            stream = from_dict(StreamConfig, s, f"quantizer.streams[{i}]")
            if stream.quantizer.get("type") == "parallel":
                raise ConfigError(f"quantizer.streams[{i}].quantizer: a parallel quantizer "
                                  f"cannot nest another")
            stream.quantizer = QUANTIZERS.normalise(stream.quantizer,
                                                    f"quantizer.streams[{i}].quantizer")
            parsed.append(to_dict(stream))
        self.streams = parsed
        if self.semantic is not None and not 0 <= self.semantic < len(self.streams):
            raise ValueError(f"semantic must index one of the {len(self.streams)} streams, "
                             f"got {self.semantic}")


@QUANTIZERS.register("parallel", ParallelConfig)
class ParallelQuantizer(Quantizer):
    """z [B, D, T] -> codes long [B, K, T]: stream i quantizes channels
    [sum(dims[:i]), sum(dims[:i+1])) every strides[i] frames."""

    multi_rate = True

    def __init__(self, cfg: ParallelConfig, dim: int):
        super().__init__()
        dims = [s["dim"] for s in cfg.streams]
        if sum(dims) != dim:
            raise ConfigError(f"quantizer.streams dims {dims} add up to {sum(dims)}, but "
                              f"latent_dim is {dim}")
        self.cfg, self.dim = cfg, dim
        self.streams = nn.ModuleList(
            QUANTIZERS.build(s["quantizer"], f"quantizer.streams[{i}].quantizer", dim=s["dim"])
            for i, s in enumerate(cfg.streams))
        self.strides = [int(s["stride"]) for s in cfg.streams]
        self.rows = [q.n_codebooks for q in self.streams]
        self.codebook_sizes = [size for q in self.streams for size in q.codebook_sizes]
        self.level_strides = [s for s, r in zip(self.strides, self.rows) for _ in range(r)]
        inner = [int(q.frame_multiple) * s
                 for q, s in zip(self.streams, self.strides)]
        self.frame_multiple = math.lcm(*inner)

    def _split(self, n: int) -> list[int]:
        """Rows of each stream kept when the first `n` rows are."""
        kept = []
        for r in self.rows:
            kept.append(min(r, n))
            n -= kept[-1]
        return kept

    def _slices(self, z: Tensor) -> list[Tensor]:
        return list(torch.split(z, [s["dim"] for s in self.cfg.streams], dim=1))

    def forward(self, z: Tensor, n_codebooks: int | None = None) -> QuantizerOutput:
        n = self.check_n_codebooks(n_codebooks)
        t = z.shape[-1]
        parts, codes, losses, metrics, row = [], [], {}, {}, 0
        for q, s, x, k in zip(self.streams, self.strides, self._slices(z), self._split(n)):
            if k == 0:
                parts.append(torch.zeros_like(x))
                continue
            out = q(_pool(x, s), k if n_codebooks is not None else None)
            parts.append(_repeat(out.z_q, s, t))
            codes.append(_repeat(out.codes, s, t))
            for name, value in out.losses.items():
                losses[name] = losses[name] + value if name in losses else value
            metrics.update(shift_levels(out.metrics, row))
            row += k
        semantic = None
        if self.cfg.semantic is not None:
            semantic = torch.cat([p if i == self.cfg.semantic else torch.zeros_like(p)
                                  for i, p in enumerate(parts)], 1)
        return QuantizerOutput(torch.cat(parts, 1), torch.cat(codes, 1), losses, metrics,
                               semantic)

    @torch.no_grad()
    def encode(self, z: Tensor, n_codebooks: int | None = None) -> Tensor:
        n = self.check_n_codebooks(n_codebooks)
        t = z.shape[-1]
        return torch.cat([_repeat(q.encode(_pool(x, s), k), s, t)
                          for q, s, x, k in zip(self.streams, self.strides, self._slices(z),
                                                self._split(n)) if k], 1)

    def decode(self, codes: Tensor) -> Tensor:
        """codes long [B, k, T], k <= n_codebooks -> z_q [B, D, T]; a stream of stride s
        reads every s-th code from the first, so T need not be a multiple of s."""
        k = check_code_rows(codes, self.n_codebooks)
        b, t = codes.shape[0], codes.shape[-1]
        parts, row = [], 0
        for q, s, spec, keep in zip(self.streams, self.strides, self.cfg.streams,
                                    self._split(k)):
            if keep == 0:
                parts.append(q_zeros(b, spec["dim"], t, self, codes.device))
                continue
            parts.append(_repeat(q.decode(codes[:, row:row + keep, ::s]), s, t))
            row += keep
        return torch.cat(parts, 1)


def q_zeros(b: int, d: int, t: int, module: nn.Module, device) -> Tensor:
    dtype = next(module.parameters()).dtype
    return torch.zeros(b, d, t, dtype=dtype, device=device)


def _pool(x: Tensor, s: int) -> Tensor:
    if s == 1:
        return x
    if x.shape[-1] % s:
        raise ValueError(f"a stream of stride {s} needs a multiple of {s} frames, got "
                         f"{x.shape[-1]}")
    return F.avg_pool1d(x, s, s)


def _repeat(x: Tensor, s: int, t: int) -> Tensor:
    """[..., n] -> [..., t]: each value s times in a row, cut to t."""
    return x if s == 1 else x.repeat_interleave(s, -1)[..., :t]
