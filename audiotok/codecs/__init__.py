"""Codec families. Importing this registers every encoder/decoder family."""

from . import (  # noqa: F401  (register components)
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
