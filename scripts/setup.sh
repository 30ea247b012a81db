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
stamp=.venv/.audiotok-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && .venv/bin/python -c "import audiotok" 2>/dev/null; then
    echo "[setup] .venv is up to date"
    exit 0
fi
echo "[setup] installing audiotok and its dependencies (first run downloads torch, ~3 GB)"
.venv/bin/python -m pip install --quiet --upgrade "pip>=24"
.venv/bin/python -m pip install --quiet -c constraints.txt -e '.[dev]'
echo "$want" > "$stamp"
echo "[setup] done: $(.venv/bin/audiotok --version)"
