#!/usr/bin/env bash
# Set everything up, then run the main job on the built-in default: round-trip a held-out
# real speech clip through the bundled trained codec `audiotok/speech-16k` at 3 kbps
# (6 of its 8 codebooks), then score it and the other example clips against Opus and Codec2.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=${1:-runs/demo}
mkdir -p "$out"
sample=audiotok/assets/examples/heldout_klettres_en.flac
set -x
.venv/bin/audiotok info audiotok/speech-16k
.venv/bin/audiotok encode "$sample" -o "$out/sample.atok" --n-codebooks 6   # default codec
.venv/bin/audiotok info "$out/sample.atok"
.venv/bin/audiotok decode "$out/sample.atok" -o "$out/sample_decoded.wav"
.venv/bin/audiotok eval --codec audiotok/speech-16k --data audiotok/assets/examples \
    --n-codebooks 2,4,6,8 --baselines opus@6,codec2@3200 -o "$out/report"
