"""Quantizers: latents [B, D, T] <-> integer codes [B, K, T].

Every module here registers its type in QUANTIZERS (found on the first lookup, not through
the imports below, which are the public API); recipes name them by type:
"vq", "rvq", "msrvq", "fsq", "grvq", "split_rvq", "pitch_rvq", "prvq", "parallel", "lfq",
"bsq", "gsq".
"""

from __future__ import annotations

from .base import QUANTIZERS, Quantizer, QuantizerOutput
from .bsq import BinarySphericalQuantizer, BSQConfig
from .fsq import FiniteScalarQuantizer, FSQConfig
from .grvq import GroupedResidualVQ, GRVQConfig
from .gsq import GroupedSphericalQuantizer, GSQConfig
from .lfq import LFQConfig, LookupFreeQuantizer
from .multiscale_rvq import MultiScaleRVQ, MultiScaleRVQConfig
from .parallel import ParallelConfig, ParallelQuantizer
from .pitch_rvq import PitchRVQ, PitchRVQConfig
from .prvq import ProbabilisticResidualVQ, PRVQConfig
from .rvq import ResidualVQ, RVQConfig
from .split_rvq import SplitResidualVQ, SplitRVQConfig
from .vq import VectorQuantizer, VQConfig


def build_quantizer(spec: dict, dim: int) -> Quantizer:
    """{"type": name, **config} -> a quantizer over latents of `dim` channels."""
    return QUANTIZERS.build(spec, "quantizer", dim=dim)


__all__ = [
    "QUANTIZERS",
    "BSQConfig",
    "BinarySphericalQuantizer",
    "FSQConfig",
    "FiniteScalarQuantizer",
    "GRVQConfig",
    "GSQConfig",
    "GroupedResidualVQ",
    "GroupedSphericalQuantizer",
    "LFQConfig",
    "LookupFreeQuantizer",
    "MultiScaleRVQ",
    "MultiScaleRVQConfig",
    "PRVQConfig",
    "ParallelConfig",
    "ParallelQuantizer",
    "PitchRVQ",
    "PitchRVQConfig",
    "ProbabilisticResidualVQ",
    "Quantizer",
    "QuantizerOutput",
    "RVQConfig",
    "ResidualVQ",
    "SplitRVQConfig",
    "SplitResidualVQ",
    "VQConfig",
    "VectorQuantizer",
    "build_quantizer",
]
