"""Corpus tokenization throughput on this machine: audio hours tokenized per hour.

    python benchmarks/tokenize_speed.py [--minutes 10] [--workers 1,2]
        [--codec recipes/tiny_speech_16k.yaml] [--format parquet]

Writes `--minutes` of speech-like 16 kHz clips (2-12 s, random lengths) to a temp folder,
then runs the real command, `python -m audiotok tokenize CORPUS --workers W`, once per
worker count and times it end to end (process start, listing, decoding, encoding, writing
shards and the index). The recipe's weights are untrained: speed does not depend on them.
Other load on the machine slows every figure; the load average is printed with them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


def speechlike(seconds: float, seed: int) -> np.ndarray:
    """Voiced harmonics with a syllable-rate envelope and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = rng.uniform(90, 220) + 25 * np.sin(2 * math.pi * 0.7 * t)
    phase = 2 * math.pi * np.cumsum(f0) / SR
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = 0.5 * (1 + np.sin(2 * math.pi * rng.uniform(2, 5) * t)) ** 2
    return (0.2 * voiced * env + 0.02 * rng.standard_normal(t.shape)).astype(np.float32)


def build_corpus(folder: Path, minutes: float) -> float:
    """Clips of 2-12 s until `minutes` of audio; returns the total seconds."""
    rng = np.random.default_rng(0)
    total, i = 0.0, 0
    while total < minutes * 60:
        seconds = float(rng.uniform(2, 12))
        sub = folder / f"spk{i % 7}"
        sub.mkdir(parents=True, exist_ok=True)
        sf.write(str(sub / f"utt{i:05d}.wav"), speechlike(seconds, i), SR)
        total, i = total + seconds, i + 1
    return total


def run(corpus: Path, out: Path, args, workers: str) -> float:
    """One fresh job (the output folder is emptied first: a finished one would resume as
    done); `workers` "N" or "Np" (N worker processes instead of threads)."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "audiotok", "tokenize", str(corpus), "-o", str(out),
           "--codec", args.codec, "--format", args.format, "--workers", workers.rstrip("p"),
           "--shard-size", str(args.shard_size), "--no-progress"]
    cmd += ["--worker-processes"] if workers.endswith("p") else []
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0, help="audio in the corpus")
    p.add_argument("--workers", default="1,2,2p",
                   help="worker counts to time, in turn, e.g. 1,2,4; 2p: 2 worker processes "
                   "instead of threads (--worker-processes)")
    p.add_argument("--codec", default="recipes/tiny_speech_16k.yaml")
    p.add_argument("--format", default="parquet", choices=["parquet", "webdataset", "npy"])
    p.add_argument("--shard-size", type=int, default=50)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        seconds = build_corpus(corpus, args.minutes)
        n_files = sum(1 for _ in corpus.rglob("*.wav"))
        print(f"corpus: {n_files} clips, {seconds / 60:.1f} min of 16 kHz audio; codec "
              f"{args.codec}; format {args.format}; {os.cpu_count()} CPU cores")
        print(f"{'workers':>7}  {'wall s':>7}  {'audio h per h':>13}  {'utt/s':>6}  "
              f"{'load avg':>8}")
        for workers in args.workers.split(","):
            out = Path(tmp) / "out"
            wall = run(corpus, out, args, workers)
            index = json.loads((out / "index.json").read_text())
            assert index["records"] == n_files, index
            print(f"{workers:>7}  {wall:>7.1f}  {seconds / wall:>13.0f}  "
                  f"{n_files / wall:>6.1f}  {os.getloadavg()[0]:>8.2f}")


if __name__ == "__main__":
    main()
