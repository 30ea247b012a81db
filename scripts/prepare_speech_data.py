#!/usr/bin/env python
"""Build the speech corpus the bundled `audiotok/speech-16k` model is trained and scored on,
from recorded voices that Debian packages carry, plus espeak-ng speech:

  klettres-data   letters and syllables read by one speaker per language (~51 min, 20+ languages)
  hedgewars-data  game character voices, one actor/character per folder (~15 min)
  espeak-ng       sentences of the GPL text read by several synthetic voices (training only)

Speakers are split before anything is written: the held-out speakers (HELDOUT_* below) never
appear in train.jsonl. Their clips are joined into 3-5 s utterances (short pauses between
recordings) for evaluation, since PESQ/STOI on 0.5 s single words are unstable.

    sudo apt-get install klettres-data hedgewars-data espeak-ng
    python scripts/prepare_speech_data.py OUT_DIR

writes OUT_DIR/{train,heldout}/*.flac (16 kHz mono), OUT_DIR/train.jsonl and
OUT_DIR/heldout.jsonl (path, speaker, duration), OUT_DIR/heldout_eval.jsonl (the first 6
utterances of each held-out speaker: the clips the model card scores) and OUT_DIR/README.txt
with the counts.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SR = 16000
KLETTRES = Path("/usr/share/klettres")
HEDGEWARS = Path("/usr/share/games/hedgewars/Data/Sounds/voices")
# Held-out speakers: five klettres languages (one reader each) and three hedgewars voices.
HELDOUT_KLETTRES = {"en", "fr", "it", "hu", "cs"}
HELDOUT_HEDGEWARS = {"British", "Mobster", "Classic"}
ESPEAK_VOICES = ["en-us", "en-us+f3", "en+m3", "en+f2", "en-gb-x-rp", "en+m7", "de", "fr-fr",
                 "es", "it+f4", "nl", "pl+m2"]
EVAL_PER_SPEAKER = 6
ESPEAK_TEXT = Path("/usr/share/common-licenses/GPL-3")


def load_16k_mono(path: Path) -> np.ndarray:
    wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
    wav = wav.mean(axis=1)
    if sr != SR:
        wav = soxr.resample(wav, sr, SR, quality="HQ").astype(np.float32)
    return trim_silence(wav)


def trim_silence(wav: np.ndarray, threshold_db: float = -45.0, pad: int = 800) -> np.ndarray:
    """Cut leading/trailing stretches more than `threshold_db` below the clip's peak."""
    if wav.size == 0:
        return wav
    frame = 160
    n = len(wav) // frame
    if n == 0:
        return wav
    rms = np.sqrt(np.mean(wav[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-12)
    loud = np.nonzero(20 * np.log10(rms / (rms.max() + 1e-12)) > threshold_db)[0]
    if loud.size == 0:
        return wav[:0]
    start = max(0, loud[0] * frame - pad)
    stop = min(len(wav), (loud[-1] + 1) * frame + pad)
    return wav[start:stop]


def recorded_speakers() -> dict[str, list[Path]]:
    """speaker id -> recordings. A klettres language folder is one reader; a hedgewars voice
    folder is one character."""
    speakers: dict[str, list[Path]] = {}
    if KLETTRES.is_dir():
        for lang in sorted(p for p in KLETTRES.iterdir() if p.is_dir()):
            files = sorted(f for f in lang.rglob("*") if f.suffix in (".ogg", ".wav"))
            if files:
                speakers[f"klettres-{lang.name}"] = files
    if HEDGEWARS.is_dir():
        for voice in sorted(p for p in HEDGEWARS.iterdir() if p.is_dir()):
            files = sorted(f for f in voice.rglob("*") if f.suffix in (".ogg", ".wav"))
            if files:
                speakers[f"hedgewars-{voice.name}"] = files
    return speakers


def is_heldout(speaker: str) -> bool:
    kind, name = speaker.split("-", 1)
    return name in (HELDOUT_KLETTRES if kind == "klettres" else HELDOUT_HEDGEWARS)


def convert_train(job):
    src, dst = job
    wav = load_16k_mono(Path(src))
    if len(wav) < SR // 5:
        return None
    sf.write(dst, wav, SR, subtype="PCM_16")
    return len(wav) / SR


def build_heldout(speaker: str, files: list[Path], out: Path, rng: random.Random):
    """Join one speaker's recordings into 3-5 s utterances with 0.1-0.25 s pauses."""
    rows, buf, target = [], [], rng.uniform(3.0, 5.0)
    files = list(files)
    rng.shuffle(files)

    def flush():
        nonlocal buf, target
        if not buf:
            return
        parts = []
        for w in buf:
            parts += [w, np.zeros(int(rng.uniform(0.1, 0.25) * SR), np.float32)]
        wav = np.concatenate(parts[:-1])
        name = f"{speaker}_{len(rows):03d}.flac"
        sf.write(out / name, wav, SR, subtype="PCM_16")
        rows.append({"path": f"heldout/{name}", "speaker": speaker,
                     "duration": round(len(wav) / SR, 3)})
        buf, target = [], rng.uniform(3.0, 5.0)

    for f in files:
        wav = load_16k_mono(f)
        if len(wav) < SR // 5:
            continue
        buf.append(wav)
        if sum(map(len, buf)) / SR >= target:
            flush()
    if sum(map(len, buf)) / SR >= 2.0:
        flush()
    return rows


def espeak_sentences(n: int, rng: random.Random) -> list[str]:
    text = ESPEAK_TEXT.read_text(errors="ignore") if ESPEAK_TEXT.exists() else ""
    text = re.sub(r"\s+", " ", text)
    sentences = [s.strip() for s in re.split(r"(?<=[.;:])\s", text) if 40 <= len(s.strip()) <= 220]
    rng.shuffle(sentences)
    return sentences[:n]


def speak(job):
    text, voice, speed, pitch, dst = job
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch),
                        "-w", tmp.name, text], check=True, capture_output=True)
        wav = load_16k_mono(Path(tmp.name))
    if len(wav) < SR // 2:
        return None
    sf.write(dst, wav, SR, subtype="PCM_16")
    return len(wav) / SR


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--espeak-utterances", type=int, default=240,
                    help="synthetic training utterances (0 = none)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    speakers = recorded_speakers()
    if not speakers:
        print("no klettres-data / hedgewars-data recordings found; "
              "apt-get install klettres-data hedgewars-data", file=sys.stderr)
        return 1
    rng = random.Random(args.seed)
    (args.out / "train").mkdir(parents=True, exist_ok=True)
    (args.out / "heldout").mkdir(parents=True, exist_ok=True)

    jobs, meta = [], []
    for spk, files in speakers.items():
        if is_heldout(spk):
            continue
        for i, f in enumerate(files):
            name = f"{spk}_{i:04d}.flac"
            jobs.append((str(f), str(args.out / "train" / name)))
            meta.append({"path": f"train/{name}", "speaker": spk})
    if args.espeak_utterances:
        for i, text in enumerate(espeak_sentences(args.espeak_utterances, rng)):
            voice = ESPEAK_VOICES[i % len(ESPEAK_VOICES)]
            name = f"espeak-{voice.replace('+', '_')}_{i:04d}.flac"
            jobs.append((text, voice, rng.randint(130, 190), rng.randint(30, 70),
                         str(args.out / "train" / name)))
            meta.append({"path": f"train/{name}", "speaker": f"espeak-{voice}"})

    rows = []
    with ProcessPoolExecutor(args.workers) as pool:
        durations = pool.map(lambda_job, jobs, chunksize=16)
        for m, d in zip(meta, durations):
            if d is not None:
                rows.append({**m, "duration": round(d, 3)})
    write_jsonl(args.out / "train.jsonl", rows)

    held = []
    for spk, files in speakers.items():
        if is_heldout(spk):
            held += build_heldout(spk, files, args.out / "heldout", rng)
    write_jsonl(args.out / "heldout.jsonl", held)
    # the clips the model card's scores use: the first EVAL_PER_SPEAKER of each held-out speaker
    per: dict[str, int] = {}
    scored = []
    for r in held:
        if per.get(r["speaker"], 0) < EVAL_PER_SPEAKER:
            per[r["speaker"]] = per.get(r["speaker"], 0) + 1
            scored.append(r)
    write_jsonl(args.out / "heldout_eval.jsonl", scored)

    summary = summarize(rows, held)
    (args.out / "README.txt").write_text(summary)
    print(summary, end="")
    return 0


def lambda_job(job):
    return speak(job) if len(job) == 5 else convert_train(job)


def write_jsonl(path: Path, rows):
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(path)


def summarize(train, held) -> str:
    def block(rows):
        by = {}
        for r in rows:
            by.setdefault(r["speaker"].split("-")[0], []).append(r["duration"])
        return "".join(f"  {k}: {len(v)} files, {sum(v) / 60:.1f} min\n" for k, v in sorted(by.items()))
    n_spk = len({r["speaker"] for r in train}), len({r["speaker"] for r in held})
    return (f"train: {len(train)} files, {sum(r['duration'] for r in train) / 60:.1f} min, "
            f"{n_spk[0]} speakers\n{block(train)}"
            f"heldout: {len(held)} utterances, {sum(r['duration'] for r in held) / 60:.1f} min, "
            f"{n_spk[1]} speakers ({', '.join(sorted({r['speaker'] for r in held}))})\n{block(held)}")


if __name__ == "__main__":
    sys.exit(main())
