#!/usr/bin/env bash
# Set everything up, then run the main job on the built-in default: round-trip the bundled
# speech sample through a codec built from recipes/tiny_speech_16k.yaml.
# (Untrained weights until a trained model ships: the pipeline is real, the audio is noise.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=${1:-runs/demo}
mkdir -p "$out"
codec=recipes/tiny_speech_16k.yaml
sample=audiotok/assets/sample_speech.flac
set -x
.venv/bin/audiotok info "$codec"
.venv/bin/audiotok encode "$sample" -o "$out/sample.atok" --codec "$codec"
.venv/bin/audiotok info "$out/sample.atok"
.venv/bin/audiotok decode "$out/sample.atok" -o "$out/sample_decoded.wav"
