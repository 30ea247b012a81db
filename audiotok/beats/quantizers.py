"""BEATs' tokenizer quantizers live in quantizers/beats.py (registered there as
"random_projection" and "norm_ema_vq"); this name is kept for existing imports."""

from ..quantizers.beats import (
    NormEMAQuantizer,
    NormEMAVQConfig,
    RandomProjectionConfig,
    RandomProjectionQuantizer,
)

__all__ = ["NormEMAQuantizer", "NormEMAVQConfig", "RandomProjectionConfig",
           "RandomProjectionQuantizer"]
