"""Mix, train and fit a mixture law on real text: the whole `curate mix` -> `curate train` ->
`curate fit-mixture` loop, in the continual pre-training setting of the CMR scaling law.

1. Two domains from the benchmark corpus (bench/corpus.py): *general* = web pages, news articles
   and Common Crawl text; *kernel* = the Linux kernel documentation (Debian's linux-doc).
2. A byte-level BPE on both; a base model pretrained on general text only.
3. Continual pre-training from that base for T tokens with a domain ratio r (a one-phase mix per
   ratio), for every (r, T) on a grid; held-out loss on both domains after each run.
4. Fit L(T, r) = E + A T^-alpha exp(c r) to the general and the domain loss, on all runs and on
   the smaller budgets only (predicting the largest), and print the critical mixture ratio.

    python bench/bench_mixture_law.py                # about 10 minutes on 2 cores
    python bench/bench_mixture_law.py --json out.json --ratios 0,0.1,0.25,0.5 --tokens 131072,262144,524288
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
WORK = os.path.join(HERE, "_work", "law")


def build_domains() -> dict[str, str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    import corpus

    out = {"general": os.path.join(WORK, "general"), "kernel": os.path.join(WORK, "kernel")}
    if all(os.path.exists(os.path.join(p, "data.parquet")) for p in out.values()):
        return out
    rows = {"general": [], "kernel": []}
    for path in corpus.build(50):
        with open(path) as f:
            for line in f:
                doc = json.loads(line)
                if doc["source"] in ("web", "articles", "cc"):
                    rows["general"].append(doc)
                elif doc["id"].startswith("deb-/usr/share/doc/linux-doc"):
                    rows["kernel"].append(doc)
    for name, docs in rows.items():
        os.makedirs(out[name], exist_ok=True)
        pq.write_table(pa.table({"id": [d["id"] for d in docs], "text": [d["text"] for d in docs]}),
                       os.path.join(out[name], "data.parquet"))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ratios", default="0,0.1,0.25,0.5")
    ap.add_argument("--tokens", default="131072,262144,524288", help="continual pre-training budgets T")
    ap.add_argument("--base-tokens", type=int, default=1_048_576)
    ap.add_argument("--tolerance", type=float, default=0.01)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json")
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from curate.mix.pipeline import run_mix
    from curate.mix.spec import parse_spec
    from curate.tokenizer import train_tokenizer
    from curate.train.config import parse_config
    from curate.train.mixfit import Run, critical_mixture_ratio, fit_cmr
    from curate.train.trainer import run_train

    t0 = time.time()
    dom = build_domains()
    tok_dir = os.path.join(WORK, "tok")
    if not os.path.exists(os.path.join(tok_dir, "tokenizer.json")):
        train_tokenizer(list(dom.values()), tok_dir, vocab_size=8192)
    ratios = [float(x) for x in args.ratios.split(",")]
    budgets = [int(x) for x in args.tokens.split(",")]
    seq, batch = 128, 16
    model = {"hidden_size": 128, "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 352}

    def mix(name: str, weights: dict, total: int) -> str:
        out = os.path.join(WORK, "mix", name)
        if not os.path.exists(os.path.join(out, "manifest.json")):
            spec = {"tokenizer": tok_dir, "seq_length": seq, "total_tokens": total, "seed": 0, "heldout_tokens": 32768,
                    "domains": {"general": {"path": dom["general"], "max_epochs": 4},
                                "kernel": {"path": dom["kernel"], "max_epochs": 8}},
                    "weights": weights}
            run_mix(parse_spec(json.dumps(spec), name), out)
        return out

    def train(name: str, data: str, steps: int, init: str | None, lr: float) -> dict:
        out = os.path.join(WORK, "runs", name)
        if os.path.exists(os.path.join(out, "results.json")):
            with open(os.path.join(out, "results.json")) as f:
                return json.load(f)
        cfg = {"data": data, "output": out, "model": model, "micro_batch_size": batch, "max_steps": steps, "lr": lr,
               "warmup_steps": max(5, steps // 20), "eval_every": 0, "eval_sequences": 256, "checkpoint_every": 0,
               "log_every": 50}
        if init:
            cfg["init_from"] = init
        return run_train(parse_config(json.dumps(cfg), name), quiet=True)

    # the base model: general text only
    base_data = mix("base", {"general": 1.0, "kernel": 0.0}, args.base_tokens)
    base = train("base", base_data, args.base_tokens // (seq * batch), None, 3e-3)
    print(f"base model: {args.base_tokens:,} general tokens; held-out general {base['heldout']['general']:.4f}, "
          f"kernel {base['heldout']['kernel']:.4f}")
    runs = []
    print(f"{'ratio':>6} {'tokens':>9} {'general':>8} {'kernel':>8}")
    for r in ratios:
        data = mix(f"r{r:g}", {"general": 1 - r, "kernel": r}, max(budgets))
        for T in budgets:
            res = train(f"r{r:g}-T{T}", data, T // (seq * batch), base["final"], 1e-3)
            runs.append(Run(ratio=r, tokens=float(T), general_loss=res["heldout"]["general"],
                            domain_loss=res["heldout"]["kernel"]))
            print(f"{r:>6g} {T:>9,} {runs[-1].general_loss:>8.4f} {runs[-1].domain_loss:>8.4f}", flush=True)
    fit = fit_cmr(runs)
    print(f"\nfit on all {len(runs)} runs: L(T, r) = E + A T^-alpha exp(c r)")
    for name, law in (("general", fit.general), ("kernel", fit.domain)):
        print(f"  {name:<8} " + "  ".join(f"{k}={v:.4g}" for k, v in law.params().items()) + f"  R^2={law.r2:.4f}")
    small = [x for x in runs if x.tokens < max(budgets)]
    held = [x for x in runs if x.tokens == max(budgets)]
    result = {"runs": [x.__dict__ for x in runs], "base": base["heldout"],
              "fit": {"general": fit.general.params() | {"r2": fit.general.r2},
                      "kernel": fit.domain.params() | {"r2": fit.domain.r2}}}
    if len({x.tokens for x in small}) >= 2 and len(small) >= 5:
        part = fit_cmr(small)
        errs = [(abs(part.predict_general(x.ratio, x.tokens) - x.general_loss),
                 abs(part.predict_domain(x.ratio, x.tokens) - x.domain_loss)) for x in held]
        print(f"fit on T < {max(budgets):,} only, predicting T = {max(budgets):,}: mean abs error general "
              f"{sum(e[0] for e in errs) / len(errs):.4f}, kernel {sum(e[1] for e in errs) / len(errs):.4f} (nats)")
        result["extrapolation_mae"] = {"general": sum(e[0] for e in errs) / len(errs),
                                       "kernel": sum(e[1] for e in errs) / len(errs)}
    for T in sorted({max(budgets), 4 * max(budgets)}):
        cmr = critical_mixture_ratio(fit, T, args.tolerance)
        print(f"critical mixture ratio at T = {T:,} tokens (general loss within {args.tolerance:.0%} of r = 0): {cmr:.3f}")
        result.setdefault("cmr", {})[str(T)] = cmr
    print(f"total {time.time() - t0:.0f}s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
