#!/usr/bin/env bash
# Create .venv inside the repo and install audiotok with its dev tools, pinned by
# constraints.txt so every fresh install resolves the same way. Safe to run repeatedly:
# it reinstalls only when pyproject.toml or constraints.txt changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv with $($PY --version)"
    "$PY" -m venv .venv
fi
# Classic-codec baselines (audiotok.eval.baselines) and their tests call the Debian tools
# opusenc/opusdec (opus-tools) and c2enc/c2dec (codec2), tests speak with espeak-ng, and the
# demo is tested in chromium; install them once when missing.
need=()
command -v opusenc >/dev/null && command -v opusdec >/dev/null || need+=(opus-tools)
command -v c2enc >/dev/null && command -v c2dec >/dev/null || need+=(codec2)
command -v espeak-ng >/dev/null || need+=(espeak-ng)   # speech for tests and examples
command -v chromium >/dev/null || need+=(chromium)     # the demo's browser tests (Playwright)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "[setup] installing ${need[*]} (apt-get)"
        apt-get install -y -qq "${need[@]}" >/dev/null \
            || { apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; }
    else
        echo "[setup] warning: ${need[*]} missing and not root with apt-get; baseline codecs" \
             "and the tests that need these tools will be skipped (apt-get install -y ${need[*]})" >&2
    fi
fi

stamp=.venv/.audiotok-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && .venv/bin/python -c "import audiotok" 2>/dev/null; then
    echo "[setup] .venv is up to date"
    exit 0
fi
echo "[setup] installing audiotok and its dependencies (first run downloads torch, ~3 GB)"
.venv/bin/python -m pip install --quiet --upgrade "pip>=24"
.venv/bin/python -m pip install --quiet -c constraints.txt -e '.[dev,published,eval]'
# moshi, Kyutai's reference for Mimi, which tests/test_mimi.py compares against: its declared
# caps (numpy, safetensors, torch) conflict with ours, though its Mimi code runs on ours, so it
# goes in without dependencies, beside the one it imports that we lack
.venv/bin/python -m pip install --quiet --no-deps -c constraints.txt moshi sentencepiece
echo "$want" > "$stamp"
echo "[setup] done: $(.venv/bin/audiotok --version)"
