#!/usr/bin/env bash
# Set up the environment, then run the test suite. Extra arguments go to pytest.
# Default: everything but the tests marked slow. `-m slow` runs only those, `-m ''` every test
# (.ci/run runs both parts).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${VENV:-.venv}
if [ $# -eq 0 ]; then
    set -- -m "not slow"
fi
# pytest exits 5 when it collects no test: with `set -e` that fails this script too.
exec "$VENV/bin/python" -m pytest "$@"
