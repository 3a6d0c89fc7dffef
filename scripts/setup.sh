#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install the project into it.
# Usage: source-free; run as `bash scripts/setup.sh`. VENV overrides the folder (default .venv).
# Prints one line per step; the installers' full output goes to $VENV/setup.log (on a failure,
# its last lines are printed too).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
mkdir -p "$VENV"
LOG="$VENV/setup.log"
: >"$LOG"

# step "what" command...: run the command with its output in $LOG, and say how it went.
step() {
    local what=$1 start=$SECONDS
    shift
    printf 'setup: %s ... ' "$what"
    if "$@" >>"$LOG" 2>&1; then
        echo "done ($((SECONDS - start)) s)"
    else
        local rc=$?
        echo "failed (exit $rc); full output in $LOG, its last lines:"
        tail -n 25 "$LOG" >&2
        exit "$rc"
    fi
}

if [ ! -x "$VENV/bin/python" ]; then
    step "virtual environment $VENV" python3 -m venv "$VENV"
    touch "$VENV/.bytecode"  # the installers below write the bytecode of all they install
else
    echo "setup: virtual environment $VENV ... reused"
fi
# uv installs the same packages as pip in a fraction of the time (about 30 s against 110 s from
# nothing here); where it cannot be installed, pip does the work. uv does not read pip's
# configuration, so the wheel folders pip is told about (find-links) are passed on.
if "$VENV/bin/python" -m pip install -q uv >>"$LOG" 2>&1 && [ -x "$VENV/bin/uv" ]; then
    echo "setup: installer uv"
    links=()
    for folder in $("$VENV/bin/python" -m pip config get global.find-links 2>/dev/null || true) \
                  ${PIP_FIND_LINKS:-}; do
        links+=(--find-links "$folder")
    done
    # --compile-bytecode: pip writes every module's bytecode when it installs; uv does not, and
    # where Python may not write it either (PYTHONDONTWRITEBYTECODE, set on the project's CI
    # machines), every process compiled torch, Ray and MLflow from source at each import: a
    # two-fit survey of 10 steps took 68 s here, 30 s with the bytecode written.
    install() {
        "$VENV/bin/uv" pip install --compile-bytecode --python "$VENV/bin/python" "${links[@]}" "$@"
    }
else
    echo "setup: installer pip (uv could not be installed; see $LOG)"
    step "pip up to date" "$VENV/bin/python" -m pip install --upgrade pip
    install() { "$VENV/bin/python" -m pip install "$@"; }
fi
# Pin torch first: on the project's CPU machines this takes the CPU build that lies on disk;
# elsewhere it takes the registry's build (CUDA on Linux x86-64). A bare `torch` requirement
# resolved by the project's own install would pull a multi-GB CUDA build here.
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
    step "torch==2.13.0" install "torch==2.13.0"
else
    echo "setup: torch ... already installed"
fi
step "this project and its dev tools (-e '.[dev]')" install -e '.[dev]'
# A virtual environment set up before set-up wrote bytecode: compile what it holds, once.
# compileall exits 1 on the few files written for newer Pythons (torch's py312 test helpers).
compile_installed() {
    "$VENV/bin/python" -m compileall -q -j 0 \
        "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" || true
}
if [ ! -e "$VENV/.bytecode" ]; then
    step "bytecode of the packages installed before" compile_installed
    touch "$VENV/.bytecode"
fi
# The project's own modules too (an editable install leaves them where they are): half a second
# of every process's start otherwise. A module edited later is compiled afresh when imported.
step "bytecode of mflow and pipelines" "$VENV/bin/python" -m compileall -q mflow pipelines
echo "setup: ready; installer output in $LOG"
