#!/usr/bin/env bash
# Set up the environment, then run the quickstart survey on the embedded defaults
# (a local Ray, a local SQLite MLflow store at ./mlflow.db, results under ./results).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${VENV:-.venv}
exec "$VENV/bin/survey" run jobs/quickstart.yaml "$@"
