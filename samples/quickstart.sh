#!/usr/bin/env bash
# Quickstart: set up a virtual environment, install curate, then the whole path on samples/:
# curate the raw sample corpus, train a tokenizer on the result, mix it into packed training
# shards (two domains, an upsampling phase), and train a tiny Llama on them.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# the trainer needs torch; a CPU build is enough here (install your CUDA build first on a GPU machine)
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install -q "torch==2.13.0" \
  || .venv/bin/python -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
.venv/bin/python -m pip install -q -e '.[train]'
.venv/bin/curate run pipelines/quickstart.yaml "$@"
.venv/bin/curate train-tokenizer out/quickstart/data --vocab-size 2048 --output out/tokenizer
.venv/bin/curate mix pipelines/mix-quickstart.yaml --output out/mix
.venv/bin/curate train samples/train-quickstart.yaml
