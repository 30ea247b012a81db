"""BEATs' fbank patches live in modules/fbank_patches.py (the codec family imports them from
there without this package); this name is kept for existing imports."""

from ..modules.fbank_patches import (
    SAMPLE_RATE,
    PatchConfig,
    PatchEmbedding,
    check_rate,
    fbank,
    kaldi_fbank,
    patches,
)

__all__ = ["SAMPLE_RATE", "PatchConfig", "PatchEmbedding", "check_rate", "fbank", "kaldi_fbank",
           "patches"]
