"""Codec families. Importing this registers every encoder/decoder family."""

from . import (  # noqa: F401  (register components)
    beats,
    dac,
    freecodec,
    mel_vae,
    mimi,
    seanet,
    snac,
    speaker_encoder,
    spectral,
    ssl_kmeans,
    stft_encoder,
    tadicodec,
    vocos,
    xcodec,
    xcodec2,
)
from .base import Codec, CodecConfig, CodecOutput
from .families import FAMILIES
from .loading import list_codecs, load_codec, load_pretrained
from .streaming import StreamingCodec

__all__ = [
    "FAMILIES",
    "Codec",
    "CodecConfig",
    "CodecOutput",
    "StreamingCodec",
    "list_codecs",
    "load_codec",
    "load_pretrained",
]
