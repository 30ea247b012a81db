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
set +x
# running speech of voices the model never heard, in five languages, with transcripts:
# WER (Whisper tiny.en, English clips), speaker similarity and DNSMOS next to Opus and Codec2
pkgs=()
for l in en es fr it ru; do
    [ -f "/usr/share/doc/asterisk-core-sounds-$l/core-sounds-$l.txt.gz" ] \
        && [ -d "/usr/share/doc/asterisk-core-sounds-$l-g722" ] \
        || pkgs+=("asterisk-core-sounds-$l" "asterisk-core-sounds-$l-g722")
done
if [ ${#pkgs[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get install -y -qq "${pkgs[@]}" >/dev/null \
            || { apt-get update -qq && apt-get install -y -qq "${pkgs[@]}" >/dev/null; }
    else
        echo "run.sh: the running-speech eval needs: apt-get install ${pkgs[*]}" >&2
        exit 1
    fi
fi
set -x
.venv/bin/python scripts/prepare_running_speech.py "$out/running_speech"
.venv/bin/audiotok eval --codec audiotok/speech-16k --data "$out/running_speech/running_speech.jsonl" \
    --n-codebooks 4,6 --baselines opus@6,codec2@3200 \
    --asr tiny.en --speaker-model resemblyzer --mos dnsmos -o "$out/report_running_speech"
