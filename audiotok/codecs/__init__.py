"""Codec families: a family is a codec design (seanet, dac, mimi, beats, ...), and one file per
family here registers its encoder and decoder classes (contracts: codecs/contracts.py). The
registries find them by importing every module of this package on their first lookup, so no
import list here has to name a new family. A codec's `CodecConfig.family` names its family
(saved as "family" in config.json and in token files' spec); presets.py holds a default size
per family, by name."""

from .base import Codec, CodecConfig, CodecOutput
from .loading import list_codecs, load_codec, load_pretrained
from .presets import PRESETS
from .streaming import StreamingCodec

__all__ = [
    "PRESETS",
    "Codec",
    "CodecConfig",
    "CodecOutput",
    "StreamingCodec",
    "list_codecs",
    "load_codec",
    "load_pretrained",
]
