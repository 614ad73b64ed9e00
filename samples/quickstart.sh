#!/usr/bin/env bash
# Quickstart: set up a virtual environment, install curate, run the quickstart recipe on samples/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
.venv/bin/curate run pipelines/quickstart.yaml "$@"
