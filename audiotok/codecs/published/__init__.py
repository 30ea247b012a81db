"""Published codecs: checkpoints in their publishers' own formats, opened as audiotok codecs.

A published checkpoint is one more way to *make* an audiotok `Codec`: each format module
recognises its files, builds the matching audiotok config (with the compatibility options
that reproduce the publisher's arithmetic), maps the publisher's weight names onto audiotok's
modules and records where the weights came from. The result is an ordinary codec: tokens,
chunking, streaming, eval, demo and fine-tuning all work on it.

    codec = audiotok.load_codec("weights_16khz.pth")        # descript-audio-codec's release

Nothing here runs a pickle's code: `.pth` files load with torch.load(weights_only=True).
"""

from __future__ import annotations

from pathlib import Path

from .common import PublishedFormat
from .dac import DAC_PTH
from .encodec import ENCODEC_TH
from .mimi import MIMI_MOSHI
from .snac import SNAC_RELEASE
from .speechtokenizer import SPEECHTOKENIZER
from .transformers_dac import DAC_TRANSFORMERS
from .transformers_encodec import ENCODEC_TRANSFORMERS
from .transformers_mimi import MIMI_TRANSFORMERS
from .transformers_wavtokenizer import WAVTOKENIZER_TRANSFORMERS
from .transformers_xcodec import XCODEC_TRANSFORMERS
from .transformers_xcodec2 import NEUCODEC_TRANSFORMERS, XCODEC2_TRANSFORMERS
from .wavtokenizer import WAVTOKENIZER_CKPT

FORMATS: list[PublishedFormat] = [DAC_PTH, DAC_TRANSFORMERS, ENCODEC_TH, ENCODEC_TRANSFORMERS,
                                  SNAC_RELEASE, SPEECHTOKENIZER, MIMI_MOSHI, MIMI_TRANSFORMERS,
                                  WAVTOKENIZER_CKPT, WAVTOKENIZER_TRANSFORMERS,
                                  XCODEC_TRANSFORMERS, XCODEC2_TRANSFORMERS,
                                  NEUCODEC_TRANSFORMERS]


def find_format(path) -> PublishedFormat | None:
    """The format that claims `path` (a file or folder), or None."""
    path = Path(path)
    return next((f for f in FORMATS if f.recognise(path)), None)


__all__ = ["FORMATS", "PublishedFormat", "find_format"]
