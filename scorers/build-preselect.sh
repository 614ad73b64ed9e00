#!/usr/bin/env bash
# Build a PreSelect scorer end to end from ../shared/data (about 20 minutes on 2 busy CPU cores):
#   bash scorers/build-preselect.sh OUTDIR        -> OUTDIR/preselect.bin (+ .json)
# 1. a 2,048-token BPE on the three training domains;
# 2. the family: six 0.66M-parameter Llamas (`curate train`), three domains x two budgets --
#    news (neardup article extractions), web (samples/corpus), wiki (BoolQ passages), 60 and 300 steps;
# 3. abilities: -bits per character on LAMBADA (context + continuation, 300 passages), measured by
#    `curate preselect label` (the models are too small for the multiple-choice benchmarks to separate them);
# 4. labels: the family's bits per character on the 1,172 real web pages (HTML extracted), S(d), balanced labels;
# 5. fastText (3 epochs, lr 0.1, word bigrams) -> OUTDIR/preselect.bin;
# 6. predictive strength on the held-out pages: PreSelect's top 10% vs random 10%s.
# Steps whose output exists (tokenizer, mixes, trained models) are skipped, so a rerun reuses them.
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
ability:
  measure: bpc
  target: [$DATA/eval/lambada_openai.jsonl]
  text_keys: [context, continuation]
  max_docs: 300
heldout_fraction: 0.3
max_chars: 1500
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
