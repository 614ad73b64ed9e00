"""Loss-based sample reweighting (Sow et al., ICLR 2025) against plain averaging, on real text.

The same tiny Llama, data, seed and schedule, trained with `reweight.strategy` none, linupper,
quadratic and extremes; held-out loss per domain (general web text and Linux kernel
documentation, the domains of bench_mixture_law.py) and LAMBADA from ../shared/data/eval.

    python bench/bench_reweight.py                 # about 12 minutes on 2 cores
    python bench/bench_reweight.py --steps 200 --strategies none,linupper
"""
from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
WORK = os.path.join(HERE, "_work", "reweight")
SHARED = os.path.join(os.path.dirname(os.path.dirname(HERE)), "shared", "data")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--strategies", default="none,linupper,quadratic,extremes")
    ap.add_argument("--r", type=float, default=0.4)
    ap.add_argument("--warmup", type=int, default=50, help="steps of plain averaging before reweighting")
    ap.add_argument("--json")
    args = ap.parse_args()
    from bench_mixture_law import build_domains

    from curate.mix.pipeline import run_mix
    from curate.mix.spec import parse_spec
    from curate.tokenizer import train_tokenizer
    from curate.train.config import parse_config
    from curate.train.trainer import run_train

    dom = build_domains()
    tok = os.path.join(HERE, "_work", "law", "tok")
    if not os.path.exists(os.path.join(tok, "tokenizer.json")):
        train_tokenizer(list(dom.values()), tok, vocab_size=8192)
    seq, batch = 128, 16
    data = os.path.join(WORK, f"mix-{args.steps}")
    if not os.path.exists(os.path.join(data, "manifest.json")):
        spec = {"tokenizer": tok, "seq_length": seq, "total_tokens": args.steps * seq * batch + 8192, "seed": 0,
                "heldout_tokens": 32768, "weights": {"general": 0.8, "kernel": 0.2},
                "domains": {"general": {"path": dom["general"]}, "kernel": {"path": dom["kernel"]}}}
        run_mix(parse_spec(json.dumps(spec), "bench-reweight"), data)
    tasks = [p for p in (os.path.join(SHARED, "eval", "lambada_openai.jsonl"),) if os.path.exists(p)]
    rows = {}
    for strategy in args.strategies.split(","):
        out = os.path.join(WORK, f"run-{strategy}-{args.steps}")
        cfg = {"data": data, "output": out, "micro_batch_size": batch, "max_steps": args.steps, "lr": 3e-3,
               "warmup_steps": 20, "eval_every": 0, "eval_sequences": 256, "checkpoint_every": 0, "log_every": 50,
               "model": {"hidden_size": 128, "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 352},
               "reweight": {"strategy": strategy, "r": args.r, "warmup_steps": args.warmup},
               "eval_tasks": tasks, "eval_tasks_limit": 500}
        if os.path.exists(os.path.join(out, "results.json")):
            with open(os.path.join(out, "results.json")) as f:
                res = json.load(f)
        else:
            res = run_train(parse_config(json.dumps(cfg), strategy), quiet=True)
        rows[strategy] = res
        lam = res.get("tasks", {}).get("lambada_openai", {})
        print(f"{strategy:<10} held-out general {res['heldout']['general']:.4f}  kernel {res['heldout']['kernel']:.4f}"
              + (f"  lambada acc {lam['acc']:.3f} ppl {lam['ppl']:.0f}" if lam else ""), flush=True)
    base = rows.get("none")
    if base:
        print("\nchange against plain averaging (negative = better):")
        for s, res in rows.items():
            if s != "none":
                print(f"  {s:<10} general {res['heldout']['general'] - base['heldout']['general']:+.4f}  "
                      f"kernel {res['heldout']['kernel'] - base['heldout']['kernel']:+.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({s: {"heldout": r["heldout"], "tasks": r.get("tasks", {})} for s, r in rows.items()}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
