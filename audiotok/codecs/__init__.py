"""Codec families: one file per family here registers its encoder and decoder classes
(contracts: codecs/contracts.py). The registries find them by importing every module of this
package on their first lookup, so no import list here has to name a new family."""

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
