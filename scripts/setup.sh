#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install the project into it.
# Usage: source-free; run as `bash scripts/setup.sh`. VENV overrides the folder (default .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
# Pin torch first: on the project's CPU machines this takes the CPU build that lies on disk;
# elsewhere it takes the registry's build (CUDA on Linux x86-64). A bare `torch` requirement
# resolved by the project's own install would pull a multi-GB CUDA build here.
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
    "$VENV/bin/python" -m pip install -q "torch==2.13.0"
fi
"$VENV/bin/python" -m pip install -q -e '.[dev]'
