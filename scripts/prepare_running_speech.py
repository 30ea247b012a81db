#!/usr/bin/env python
"""Build a held-out set of running speech with transcripts, in five languages, from the
Asterisk telephony prompts that Debian packages carry (recorded by professional voice
talent, CC-BY-SA 3.0; the transcripts are the packages' core-sounds-LANG.txt):

  en  en_US_f_Allison     (Allison Smith)        asterisk-core-sounds-en-g722 + -en
  es  es_MX_f_Allison     (Allison Smith)        asterisk-core-sounds-es-g722 + -es
  fr  fr_CA_f_June        (June Wallack)         asterisk-core-sounds-fr-g722 + -fr
  it  it_IT_m_Carlo       (Carlo)                asterisk-core-sounds-it-g722 + -it
  ru  ru_RU_f_IvrvoiceRU  (IvrvoiceRU)           asterisk-core-sounds-ru-g722 + -ru

The G.722 versions are used: 16 kHz wideband (the others are 8 kHz). Only sentences are
kept (at least MIN_WORDS words, MIN_SECONDS to MAX_SECONDS long, no bracketed tone
descriptions), PER_LANGUAGE of each language chosen by a hash of the prompt name, so the set is
the same on every machine. None of these voices is in the bundled model's training data
(scripts/prepare_speech_data.py: klettres letters, hedgewars voices, espeak-ng).

    sudo apt-get install asterisk-core-sounds-{en,es,fr,it,ru} \\
        asterisk-core-sounds-{en,es,fr,it,ru}-g722
    python scripts/prepare_running_speech.py OUT_DIR

writes OUT_DIR/clips/*.flac (16 kHz mono), OUT_DIR/running_speech.jsonl (path, text,
language, speaker, duration) and OUT_DIR/README.txt. Decoding needs PyAV (`av`, which
faster-whisper installs).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

SOUNDS = Path("/usr/share/asterisk/sounds")
DOCS = Path("/usr/share/doc")
VOICES = {"en": "en_US_f_Allison", "es": "es_MX_f_Allison", "fr": "fr_CA_f_June",
          "it": "it_IT_m_Carlo", "ru": "ru_RU_f_IvrvoiceRU"}
SPEAKERS = {"en_US_f_Allison": "allison", "es_MX_f_Allison": "allison",
            "fr_CA_f_June": "june", "it_IT_m_Carlo": "carlo",
            "ru_RU_f_IvrvoiceRU": "ivrvoice_ru"}
# clips per language; more English, the language of the ASR that works offline (tiny.en)
PER_LANGUAGE = {"en": 24, "es": 8, "fr": 8, "it": 8, "ru": 8}
MIN_WORDS, MIN_SECONDS, MAX_SECONDS = 6, 2.0, 15.0
SR = 16000


def transcripts(language: str) -> dict[str, str]:
    """{prompt name: text} from the package's core-sounds-LANG.txt ("name: text" lines)."""
    path = DOCS / f"asterisk-core-sounds-{language}" / f"core-sounds-{language}.txt.gz"
    if not path.is_file():
        sys.exit(f"prepare_running_speech: {path} is missing: apt-get install "
                 f"asterisk-core-sounds-{language}")
    out = {}
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            name, sep, text = line.partition(":")
            if sep and not line.startswith(";") and text.strip():
                out[name.strip()] = " ".join(text.split())
    return out


def eligible(text: str) -> bool:
    return (len(text.split()) >= MIN_WORDS and "[" not in text and "..." not in text
            and "…" not in text)


def decode_g722(path: Path) -> np.ndarray:
    import av

    with av.open(str(path), format="g722") as container:
        frames = [f.to_ndarray() for f in container.decode(audio=0)]
    return (np.concatenate(frames, axis=-1)[0].astype(np.float32) / 32768.0)


def build(out: Path) -> list[dict]:
    (out / "clips").mkdir(parents=True, exist_ok=True)
    entries = []
    for language, voice in VOICES.items():
        folder = SOUNDS / voice
        if not folder.is_dir():
            sys.exit(f"prepare_running_speech: {folder} is missing: apt-get install "
                     f"asterisk-core-sounds-{language}-g722")
        texts = transcripts(language)
        names = sorted((n for n, t in texts.items()
                        if eligible(t) and (folder / f"{n}.g722").is_file()),
                       key=lambda n: hashlib.sha1(n.encode()).hexdigest())
        kept = 0
        for name in names:
            wav = decode_g722(folder / f"{name}.g722")
            seconds = wav.size / SR
            if not MIN_SECONDS <= seconds <= MAX_SECONDS:
                continue
            target = out / "clips" / f"{language}_{name.replace('/', '_')}.flac"
            sf.write(str(target), wav, SR, subtype="PCM_16")
            entries.append({"path": f"clips/{target.name}", "text": texts[name],
                            "language": language, "speaker": SPEAKERS[voice],
                            "duration": round(seconds, 3)})
            kept += 1
            if kept == PER_LANGUAGE[language]:
                break
        print(f"{language}: {kept} clips from {voice}", file=sys.stderr)
    return entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    entries = build(args.out)
    with open(args.out / "running_speech.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(e, ensure_ascii=False) + "\n" for e in entries)
    minutes = sum(e["duration"] for e in entries) / 60
    (args.out / "README.txt").write_text(
        f"{len(entries)} clips, {minutes:.1f} min of running speech in "
        f"{len(VOICES)} languages ({', '.join(VOICES)}), from Debian's Asterisk prompt "
        f"packages (CC-BY-SA 3.0; voices: {', '.join(sorted(set(SPEAKERS.values())))}).\n"
        f"Built by scripts/prepare_running_speech.py.\n", encoding="utf-8")
    print(f"wrote {len(entries)} clips ({minutes:.1f} min) to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
