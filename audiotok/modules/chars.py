"""Character-level transcripts for decoders conditioned on text (TaDiCodec).

A transcript is its UTF-8 bytes (NFC-normalised, runs of white space made one space): one
id per byte, 1..256, with 0 for padding, so any language and script needs no vocabulary
file (ByT5's choice). TaDiCodec's authors tokenise with a 32k-entry subword tokenizer instead;
bytes keep this toolkit free of a tokenizer download.
"""

from __future__ import annotations

import math
import unicodedata

import torch
from torch import Tensor

PAD = 0
VOCAB_SIZE = 257


def normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


def text_ids(texts: list[str | None], max_len: int, device=None) -> tuple[Tensor, Tensor]:
    """texts (None or "" = no transcript) -> (ids long [B, L], mask bool [B, L], True on a
    character); each text cut to `max_len` bytes, L the longest kept (at least 1)."""
    rows = [list(normalise(t).encode("utf-8"))[:max_len] if t else [] for t in texts]
    width = max([len(r) for r in rows] + [1])
    ids = torch.full((len(rows), width), PAD, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long) + 1
    return ids.to(device), (ids != PAD).to(device)


def excerpt_text(text: str | None, start: float, seconds: float, duration: float
                 ) -> str | None:
    """The part of a file's transcript an excerpt of `seconds` from `start` speaks: all of it
    for an excerpt that holds the whole file, else the characters spread uniformly over the
    file's duration that fall inside the excerpt (an approximation, as distill/text.py's:
    speaking rate varies and pauses hold no characters; train on whole utterances, a
    `segment_seconds` above the longest file, where it matters)."""
    if not text:
        return None
    if start <= 0 and seconds >= duration:
        return text
    chars = normalise(text)
    n = len(chars)
    a = math.floor(max(start, 0.0) / max(duration, 1e-6) * n)
    b = math.ceil(min(start + seconds, duration) / max(duration, 1e-6) * n)
    return chars[a:b].strip() or None


def batch_texts(batch: dict, seconds: float) -> list[str | None]:
    """A loader batch (data/sampler.py `collate`: text, start, duration) -> the transcript of
    each excerpt of `seconds` seconds."""
    return [excerpt_text(t, float(s), seconds, float(d))
            for t, s, d in zip(batch["text"], batch["start"], batch["duration"])]
