"""Word and character error rates of an ASR transcript, after Whisper's text normalisation.

    n = normalise("Mr. Smith's 2 cats!", "en")   # Whisper's English normaliser
    e = errors("the cat sat", "the cat sad")     # Errors(words=1, ref_words=3, chars=1, ...)

English goes through Whisper's English normaliser as transformers ships it
(`EnglishTextNormalizer`: lower case, numbers to digits, contractions and British spellings
unified, punctuation dropped); other languages through its basic normaliser (lower case,
bracketed asides and punctuation dropped, diacritics kept). The British-to-American spelling
table is a data file of the Whisper release; it is used when the ASR folder has one
(`normalizer.json`, as transformers' Whisper repositories do) and left out otherwise.

Rates are pooled as the field reports them: total edits over total reference words (or
characters, spaces excluded) across clips, not a mean of per-clip rates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=4)
def _normalisers(spelling_file: str | None):
    from transformers.models.whisper.english_normalizer import (
        BasicTextNormalizer,
        EnglishTextNormalizer,
    )

    spelling = {}
    if spelling_file:
        spelling = json.loads(Path(spelling_file).read_text(encoding="utf-8"))
    return EnglishTextNormalizer(spelling), BasicTextNormalizer()


def normalise(text: str, language: str | None, spelling_file: str | None = None) -> str:
    """`language` None or "en*": the English normaliser; any other code: the basic one."""
    english, basic = _normalisers(spelling_file)
    english_text = language is None or language.lower().startswith("en")
    return " ".join((english if english_text else basic)(text).split())


def edit_distance(ref: list, hyp: list) -> int:
    """Levenshtein distance (substitutions, deletions, insertions each cost 1)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


@dataclass
class Errors:
    """Edits and reference lengths of one transcript (already normalised)."""

    words: int
    ref_words: int
    chars: int
    ref_chars: int

    @property
    def wer(self) -> float | None:
        return self.words / self.ref_words if self.ref_words else None

    @property
    def cer(self) -> float | None:
        return self.chars / self.ref_chars if self.ref_chars else None


def errors(ref: str, hyp: str) -> Errors:
    """Word and character edits of `hyp` against `ref` (normalised strings); characters are
    compared without spaces, so CER suits languages written without them."""
    ref_chars, hyp_chars = list(ref.replace(" ", "")), list(hyp.replace(" ", ""))
    return Errors(edit_distance(ref.split(), hyp.split()), len(ref.split()),
                  edit_distance(ref_chars, hyp_chars), len(ref_chars))


def pooled_rates(items: list[Errors]) -> dict:
    """{"wer", "cer"} over clips: total edits / total reference length (None when empty)."""
    words, chars = sum(e.ref_words for e in items), sum(e.ref_chars for e in items)
    return {"wer": sum(e.words for e in items) / words if words else None,
            "cer": sum(e.chars for e in items) / chars if chars else None}
