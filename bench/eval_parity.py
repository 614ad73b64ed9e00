"""Parity of curate's downstream evaluation (curate/train/evaluate.py) with lm-evaluation-harness.

Both score the same checkpoint on the same local task files (../shared/data/eval/*.jsonl: ARC, BoolQ,
COPA, LAMBADA, OpenBookQA, PIQA, WinoGrande, GSM8K) with the same context length. lm_eval reads the
files through custom task YAMLs (``dataset_path: json`` + ``data_files``; nothing from the hub)
written to a temporary folder, with the prompts exactly as curate builds them: ``doc_to_text`` is
the file's query (or context), the choices are the file's choices, and the target delimiter is the
one curate's joining rule gives (a space, or nothing when every query of the task ends in
whitespace, as PIQA's do). WinoGrande is lm_eval's "multiple input" form (``doc_to_text`` returns
the gold index, the choices are the contexts), LAMBADA a ``loglikelihood`` task with ``acc`` and
``perplexity``, GSM8K ``generate_until`` (curate reports it as unsupported: no generation).

Printed per task: the metric from each side, the difference, and why they differ when they do:
the largest per-request log-likelihood difference, how many requests lm_eval tokenizes
differently (it encodes ``context + continuation`` and splits at the context's token count; curate
encodes them separately), and how many predictions differ.

    python bench/eval_parity.py                      # out/model/final (bash samples/quickstart.sh), 200 per task
    python bench/eval_parity.py --limit 0 --json /tmp/parity.json     # every record

Needs ``lm_eval`` (pip install lm_eval --no-deps, plus datasets evaluate sacrebleu rouge-score
scikit-learn sqlitedict pytablewriter word2number jinja2; it must not replace the CPU torch).
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import sys
import tempfile
import time

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from curate.train import evaluate as ev  # noqa: E402

TASK_DIR = os.path.join(ROOT, "..", "shared", "data", "eval")
PREFIX = "curate_"  # lm_eval task names: curate_<file name>, so no built-in task is shadowed


def _yaml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a YAML string


def task_yaml(task: ev.Task, gsm8k_tokens: int) -> tuple[str, str]:
    """(lm_eval task name, YAML text) mirroring how curate prompts ``task``."""
    name = PREFIX + task.name
    head = [f"task: {name}", "dataset_path: json", "dataset_kwargs:", "  data_files:",
            f"    test: {_yaml_str(os.path.abspath(task.path))}", "test_split: test"]
    if task.shape == ev.MULTIPLE_CHOICE:
        ends_ws = [r["query"][-1:].isspace() for r in task.records]
        delim = "" if all(ends_ws) else " "
        body = ["output_type: multiple_choice", 'doc_to_text: "{{query}}"', 'doc_to_choice: "{{choices}}"',
                'doc_to_target: "{{gold}}"', f"target_delimiter: {_yaml_str(delim)}",
                "metric_list:", "  - metric: acc", "  - metric: acc_norm"]
    elif task.shape == ev.PARTIAL:
        body = ["output_type: multiple_choice", 'doc_to_text: "{{gold}}"', 'doc_to_choice: "{{context_options}}"',
                'doc_to_target: "{{continuation}}"', 'target_delimiter: " "', "metric_list:", "  - metric: acc"]
    elif task.shape == ev.LAMBADA:
        # loglikelihood tasks take doc_to_target as the continuation (no target_delimiter): the space is
        # added here, as lm_eval's own lambada_openai does, except before a continuation that starts with
        # whitespace (curate's join rule; one LAMBADA record)
        target = "{{ continuation if continuation[:1] in [' ', '\\n', '\\t'] else ' ' + continuation }}"
        body = ["output_type: loglikelihood", 'doc_to_text: "{{context}}"', f"doc_to_target: {_yaml_str(target)}",
                "metric_list:", "  - metric: perplexity", "  - metric: acc"]
    else:  # GSM8K: generation, exact match of the number after "####"
        body = ["output_type: generate_until", 'doc_to_text: "Question: {{context}}\\nAnswer:"',
                'doc_to_target: "{{answer}}"', "generation_kwargs:", '  until: ["\\n\\n", "Question:"]',
                "  do_sample: false", f"  max_gen_toks: {gsm8k_tokens}", "filter_list:", "  - name: strict",
                "    filter:", '      - function: "regex"', '        regex_pattern: "(-?[$0-9.,]{2,})|(-?[0-9]+)"',
                '        group_select: -1', '      - function: "take_first"', "metric_list:",
                "  - metric: exact_match", "    ignore_case: true", "    ignore_punctuation: false"]
    return name, "\n".join(head + body) + "\n"


def requests_of(task: ev.Task) -> list[tuple[str, str]]:
    if task.shape == ev.MULTIPLE_CHOICE:
        return [(r["query"], c) for r in task.records for c in r["choices"]]
    if task.shape == ev.PARTIAL:
        return [(o, r["continuation"]) for r in task.records for o in r["context_options"]]
    return [(r["context"], r["continuation"]) for r in task.records]


def lm_eval_pairs(task: ev.Task, delim: str) -> list[tuple[str, str]]:
    """The (context, continuation) strings lm_eval builds for ``task``."""
    if task.shape == ev.MULTIPLE_CHOICE:
        return [(r["query"], delim + c) for r in task.records for c in r["choices"]]
    if task.shape == ev.PARTIAL:
        return [(o, " " + r["continuation"]) for r in task.records for o in r["context_options"]]
    return [(r["context"], r["continuation"] if r["continuation"][:1] in " \n\t" else " " + r["continuation"])
            for r in task.records]


def split_differs(tok, pairs_curate, pairs_lm) -> int:
    """Requests whose scored tokens differ: curate (its join rule, then context and continuation encoded
    separately) vs lm_eval (trailing whitespace moved, ``context + continuation`` encoded whole and split
    at the context's token count)."""
    def enc(text):
        return tok(text, add_special_tokens=False)["input_ids"]

    n = 0
    for (c1, x1), (c2, x2) in zip(pairs_curate, pairs_lm):
        ctx, cont = ev.join_pair(c1, x1)
        mine_ctx, mine_cont = enc(ctx), enc(cont)
        k = len(c2) - len(c2.rstrip())
        ctx2, cont2 = (c2[:-k], c2[-k:] + x2) if k else (c2, x2)
        whole, n_ctx = enc(ctx2 + cont2), len(enc(ctx2))
        n += (mine_ctx + mine_cont != whole) or (mine_cont != whole[n_ctx:])
    return n


def load_model(path: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(path)
    return model, tok


def tiny_checkpoint(out: str) -> str:
    """Train a tiny model on out/mix (from the quickstart) when there is no out/model/final."""
    from curate.train.config import parse_config
    from curate.train.trainer import run_train

    mix = os.path.join(ROOT, "out", "mix")
    if not os.path.exists(os.path.join(mix, "manifest.json")):
        raise SystemExit("no checkpoint and no out/mix: run `bash samples/quickstart.sh` first, or pass --model DIR")
    cfg = parse_config(json.dumps({"data": mix, "output": out, "micro_batch_size": 8, "max_steps": 100, "lr": 3e-3,
                                   "warmup_steps": 10, "eval_every": 0, "checkpoint_every": 0}), "eval_parity")
    return run_train(cfg, quiet=True)["final"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "out", "model", "final"))
    ap.add_argument("--tasks", default=TASK_DIR, help="folder of task .jsonl files")
    ap.add_argument("--limit", type=int, default=200, help="records per task (0: all)")
    ap.add_argument("--gsm8k-limit", type=int, default=20, help="GSM8K records for lm_eval's generation (0: skip)")
    ap.add_argument("--gsm8k-tokens", type=int, default=32, help="max generated tokens per GSM8K answer")
    ap.add_argument("--max-length", type=int, default=512,
                    help="context length for both (0: the model's max_position_embeddings). 512 by default: the "
                         "quickstart model's is 128, and PIQA choices reach 396 tokens with its 2,048-token "
                         "vocabulary; both evaluators refuse a continuation longer than max_length")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--json", help="write the table as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1") or 1))
    import logging

    import transformers

    logging.getLogger("lm_eval").setLevel(logging.ERROR)  # one "Truncating ..." line per long BoolQ request
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError as e:
        raise SystemExit(f"lm_eval is not installed ({e}): pip install lm_eval --no-deps plus its light deps "
                         "(see this file's docstring)") from None

    model_dir = args.model
    if not os.path.exists(os.path.join(model_dir, "config.json")):
        model_dir = tiny_checkpoint(tempfile.mkdtemp(prefix="eval-parity-model-"))
    model, tok = load_model(model_dir)
    max_length = args.max_length or ev._model_max_length(model)
    limit = args.limit or None
    files = sorted(glob.glob(os.path.join(args.tasks, "*.jsonl")))
    if not files:
        raise SystemExit(f"no *.jsonl task files in {args.tasks}")
    print(f"model {model_dir} ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters), "
          f"max_length {max_length}, limit {limit or 'all'} per task, lm_eval {lm_eval.__version__}, "
          f"torch {torch.__version__}", flush=True)

    tasks = [ev.load_task(p, limit=(args.gsm8k_limit or None) if os.path.basename(p).startswith("gsm8k")
                          else limit) for p in files]
    tmp = tempfile.mkdtemp(prefix="eval-parity-tasks-")
    names = {}
    for t in tasks:
        if t.shape == ev.GENERATIVE and not args.gsm8k_limit:
            continue
        name, text = task_yaml(t, args.gsm8k_tokens)
        with open(os.path.join(tmp, name + ".yaml"), "w") as f:
            f.write(text)
        names[t.name] = name

    # curate
    ours, per_req, t_curate = {}, {}, 0.0
    for t in tasks:
        t0 = time.perf_counter()
        ours[t.name] = ev.evaluate_task(model, tok, t, batch_size=args.batch_size, max_length=max_length)
        t_curate += time.perf_counter() - t0
        if t.shape in ev.SUPPORTED_SHAPES:
            per_req[t.name] = [ll for ll, _, _ in ev.loglikelihoods(model, tok, requests_of(t),
                                                                    batch_size=args.batch_size, max_length=max_length)]

    # lm_eval
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=args.batch_size, max_length=max_length, device="cpu")
    tm = TaskManager(include_path=tmp, include_defaults=False)
    t0 = time.perf_counter()
    scored = [n for t, n in names.items() if next(x for x in tasks if x.name == t).shape != ev.GENERATIVE]
    out = lm_eval.simple_evaluate(model=lm, tasks=scored, task_manager=tm, limit=limit,
                                  log_samples=True, bootstrap_iters=0, num_fewshot=0)
    t_lm = time.perf_counter() - t0
    res, samples = out["results"], out["samples"]
    generated = [n for n in names.values() if n not in scored]
    if generated:  # GSM8K: lm_eval generates; curate does not score it
        gen = lm_eval.simple_evaluate(model=lm, tasks=generated, task_manager=tm, limit=args.gsm8k_limit,
                                      log_samples=True, bootstrap_iters=0, num_fewshot=0)
        res.update(gen["results"])
        samples.update(gen["samples"])

    rows = []
    for t in tasks:
        name = names.get(t.name)
        theirs = res.get(name, {}) if name else {}
        smp = sorted(samples.get(name, []), key=lambda s: s["doc_id"]) if name else []
        if t.shape == ev.GENERATIVE:
            rows.append({"task": t.name, "n": len(smp), "metric": "exact_match",
                         "curate": None, "lm_eval": theirs.get("exact_match,strict"),
                         "note": "curate: " + ours[t.name].get("skipped", "")[:40]})
            continue
        lm_ll = [float(r[0]) for s in smp for r in (s["filtered_resps"] if t.shape != ev.LAMBADA
                                                     else [s["filtered_resps"][0]])]
        mine = per_req[t.name]
        dll = float(np.max(np.abs(np.array(mine) - np.array(lm_ll)))) if len(lm_ll) == len(mine) else float("nan")
        delim = "" if t.shape == ev.MULTIPLE_CHOICE and all(r["query"][-1:].isspace() for r in t.records) else " "
        diff_tok = split_differs(tok, requests_of(t), lm_eval_pairs(t, delim))
        metrics = {ev.MULTIPLE_CHOICE: [("acc", "acc,none"), ("acc_norm", "acc_norm,none")],
                   ev.PARTIAL: [("acc", "acc,none")],
                   ev.LAMBADA: [("acc", "acc,none"), ("ppl", "perplexity,none")]}[t.shape]
        # predictions that differ (multiple choice / partial: argmax over the record's requests)
        pred_diff = 0
        if t.shape != ev.LAMBADA:
            k = 0
            for r in t.records:
                n_opt = len(r["choices"] if t.shape == ev.MULTIPLE_CHOICE else r["context_options"])
                pred_diff += int(np.argmax(mine[k:k + n_opt]) != np.argmax(lm_ll[k:k + n_opt]))
                k += n_opt
        else:
            greedy_lm = [bool(s["filtered_resps"][0][1]) for s in smp]
            greedy_me = [g for _, g, _ in ev.loglikelihoods(model, tok, requests_of(t), batch_size=args.batch_size,
                                                             max_length=max_length)]
            pred_diff = sum(a != b for a, b in zip(greedy_me, greedy_lm))
        for ours_key, their_key in metrics:
            rows.append({"task": t.name, "n": ours[t.name]["n"], "metric": ours_key, "curate": ours[t.name][ours_key],
                         "lm_eval": theirs.get(their_key), "max_abs_dll": dll, "split_differs": diff_tok,
                         "pred_differs": pred_diff, "requests": len(mine)})

    print(f"\ncurate {t_curate:.1f}s, lm_eval {t_lm:.1f}s (CPU)\n")
    head = f"{'task':<16}{'n':>6}  {'metric':<9}{'curate':>10}{'lm_eval':>10}{'diff':>10}  {'max|dLL|':>9}" \
           f"{'tok-split':>10}{'pred-diff':>10}"
    print(head)
    print("-" * len(head))  # diff: curate - lm_eval (for ppl: relative)
    for r in rows:
        c, l = r["curate"], r["lm_eval"]
        d = (c - l) if isinstance(c, float) and isinstance(l, float) else None
        def fmt(v):
            if not isinstance(v, float) or not math.isfinite(v):
                return f"{'-':>10}"
            return f"{v:10.4f}" if abs(v) < 1e4 else f"{v:10.4g}"
        if r["metric"] == "ppl" and d is not None:
            d = d / l  # relative: perplexities of a tiny model are huge
        extra = (f"  {r['max_abs_dll']:9.2e}{r['split_differs']:>6}/{r['requests']:<4}{r['pred_differs']:>7}"
                 if "max_abs_dll" in r else "  " + r.get("note", ""))
        print(f"{r['task']:<16}{r['n']:>6}  {r['metric']:<9}{fmt(c)}{fmt(l)}{fmt(d)}{extra}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": model_dir, "max_length": max_length, "limit": limit, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
