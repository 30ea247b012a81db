"""audiotok: neural audio codec tokenizers.

    import audiotok
    codec = audiotok.load_codec("path/to/checkpoint")   # or a recipe .yaml, or a name
    tokens = codec.encode(wav)                           # wav [B, C, T] at codec.sample_rate
    wav_hat = codec.decode(tokens)
"""

from ._version import __version__
from .codecs import Codec, CodecConfig, CodecOutput, list_codecs, load_codec
from .errors import AudiotokError
from .tokens import CodecSpec, Tokens

__all__ = [
    "AudiotokError", "Codec", "CodecConfig", "CodecOutput", "CodecSpec", "Tokens",
    "__version__", "list_codecs", "load_codec",
]
