#!/usr/bin/env python
"""Labelled speech for `audiotok probe`, from what Debian installs here (nothing downloaded):

  espeak-ng   one speaker per voice variant (en+m1, en+f2, ..., each a different pitch,
              formant set and breathiness):
                speaker_{train,test}.jsonl  four-word phrases, the same voices, disjoint
                                            phrases (speaker ID)
                word_{train,test}.jsonl     single words, the same words, disjoint voices
                                            (keywords: --label-key word; or CTC on "text")
  Asterisk    with --asterisk N: N English prompts of one talker (Allison Smith, the
              asterisk-core-sounds-en-g722 package; transcripts from core-sounds-en.txt) for
              CTC ASR, split by a hash of the prompt name:
                ctc_{train,test}.jsonl

Every line holds path, speaker, text, phrase or word, duration. espeak-ng is deterministic, so
the splits keep a voice from saying the same thing in both halves: disjoint phrases for
speakers, disjoint voices for words.

    python scripts/prepare_probe_data.py OUT_DIR [--voices 8] [--phrases 16] [--words 16]
        [--asterisk 300]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

VOICES = ["en+m1", "en+f1", "en+m2", "en+f2", "en+m3", "en+f3", "en+m4", "en+f4", "en+m5",
          "en+f5", "en+m6", "en+m7"]
WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "zero", "one",
         "two", "three", "four", "five", "six", "seven", "eight", "nine", "bed", "bird", "cat",
         "dog", "happy", "house", "marvin", "sheila", "tree", "wow", "forward", "backward"]


def speak(voice: str, text: str, path: Path) -> None:
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True)


def phrases(n: int, words_per_phrase: int = 4) -> list[str]:
    """n distinct phrases of WORDS (a fixed stride through the list, no randomness)."""
    return [" ".join(WORDS[(i * 7 + j * 5) % len(WORDS)] for j in range(words_per_phrase))
            for i in range(n)]


def espeak_set(out: Path, n_voices: int = 8, n_phrases: int = 16, n_words: int = 16,
               test_phrases: int | None = None, test_voices: int | None = None
               ) -> dict[str, list[dict]]:
    """Write the clips and the four manifests; return {manifest stem: entries}.

    speaker_*: every voice says `n_phrases` four-word phrases (a second or more of speech:
    single words are too short to tell espeak's variants apart), the last `test_phrases`
    (default a quarter) held out. word_*: every voice says `n_words` single words, the last
    `test_voices` voices (default a quarter) held out."""
    voices = VOICES[:n_voices]
    if len(voices) < n_voices or n_words > len(WORDS):
        sys.exit(f"prepare_probe_data: at most {len(VOICES)} voices and {len(WORDS)} words")
    test_phrases = test_phrases or max(1, n_phrases // 4)
    test_voices = test_voices or max(1, n_voices // 4)
    (out / "espeak").mkdir(parents=True, exist_ok=True)
    sets: dict[str, list[dict]] = {k: [] for k in ("speaker_train", "speaker_test",
                                                   "word_train", "word_test")}
    for v, voice in enumerate(voices):
        for i, phrase in enumerate(phrases(n_phrases)):
            split = "test" if i >= n_phrases - test_phrases else "train"
            sets[f"speaker_{split}"].append(_clip(out, voice, f"p{i}", phrase, phrase=i))
        for word in WORDS[:n_words]:
            split = "test" if v >= n_voices - test_voices else "train"
            sets[f"word_{split}"].append(_clip(out, voice, word, word, word=word))
    for name, lines in sets.items():
        write_manifest(out / f"{name}.jsonl", lines)
    return sets


def _clip(out: Path, voice: str, stem: str, text: str, **keys) -> dict:
    import soundfile as sf

    path = out / "espeak" / f"{voice.replace('+', '_')}_{stem}.wav"
    speak(voice, text, path)
    return {"path": f"espeak/{path.name}", "speaker": voice, "text": text, **keys,
            "duration": round(sf.info(str(path)).duration, 3)}


def asterisk_set(out: Path, n: int, test_fraction: float = 0.15) -> dict[str, list[dict]]:
    """n English prompts with transcripts (16 kHz FLAC) and the ctc manifests."""
    sys.path.insert(0, str(Path(__file__).parent))
    import soundfile as sf
    from prepare_running_speech import SOUNDS, decode_g722, transcripts

    folder, voice = out / "asterisk", SOUNDS / "en_US_f_Allison"
    folder.mkdir(parents=True, exist_ok=True)
    texts = transcripts("en")
    # bracketed, parenthesised and <angled> texts describe tones and silences, not words
    names = sorted((k for k, t in texts.items() if not set(t) & set("[(<")
                    and len(t.split()) >= 2
                    and (voice / f"{k}.g722").is_file()),
                   key=lambda k: hashlib.sha1(k.encode()).hexdigest())[:n]
    entries = []
    for name in names:
        wav = decode_g722(voice / f"{name}.g722")
        path = folder / f"{name.replace('/', '_')}.flac"
        sf.write(str(path), wav, 16000, subtype="PCM_16")
        entries.append({"path": f"asterisk/{path.name}", "text": texts[name], "language": "en",
                        "speaker": "allison", "duration": round(wav.size / 16000, 3)})
    cut = int(len(entries) * (1 - test_fraction))
    sets = {"ctc_train": entries[:cut], "ctc_test": entries[cut:]}
    for stem, lines in sets.items():
        write_manifest(out / f"{stem}.jsonl", lines)
    return sets


def write_manifest(path: Path, entries: list[dict]) -> None:
    path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries),
                    encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--voices", type=int, default=8)
    parser.add_argument("--phrases", type=int, default=16)
    parser.add_argument("--words", type=int, default=16)
    parser.add_argument("--asterisk", type=int, default=0, metavar="N",
                        help="also N Asterisk prompts for CTC (needs PyAV)")
    args = parser.parse_args()
    for name, lines in espeak_set(args.out, args.voices, args.phrases, args.words).items():
        print(f"{name}: {len(lines)} clips", file=sys.stderr)
    if args.asterisk:
        for name, lines in asterisk_set(args.out, args.asterisk).items():
            minutes = sum(e["duration"] for e in lines) / 60
            print(f"{name}: {len(lines)} clips, {minutes:.1f} min", file=sys.stderr)


if __name__ == "__main__":
    main()
