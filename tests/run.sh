#!/usr/bin/env bash
# Set up a virtual environment with the test and gcp extras, then run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,gcp]'
.venv/bin/python -m pytest tests "$@"
