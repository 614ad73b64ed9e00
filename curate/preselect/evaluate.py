"""Predictive strength of a PreSelect scorer's selection on held-out documents.

``python -m curate.preselect.evaluate LABELS_DIR MODEL [--fraction 0.1] [--draws 1000]``: scores the
held-out documents of a ``curate preselect label`` output (``heldout.parquet``, never used for
the labels) with the fastText model and compares the mean predictive strength S(d) of its top
``fraction`` of documents with that of random ``fraction``s of the same documents.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import pyarrow.parquet as pq


def evaluate(labels_dir: str, model: str, fraction: float = 0.1, draws: int = 1000, seed: int = 0) -> dict:
    from curate.scorers.fasttext_classifier import load_model, predict_positive, preprocess

    table = pq.read_table(os.path.join(labels_dir, "heldout.parquet"))
    strength = table.column("strength").to_numpy(zero_copy_only=False)
    ok = np.isfinite(strength)
    texts = [t for t, k in zip(table.column("text").to_pylist(), ok) if k]
    strength = strength[ok]
    n = len(strength)
    k = max(1, int(round(fraction * n)))
    scores = predict_positive(load_model(model), preprocess(texts).to_pylist())
    order = np.argsort(-scores, kind="stable")
    rng = np.random.default_rng(seed)
    rand = np.array([strength[rng.choice(n, k, replace=False)].mean() for _ in range(draws)])
    return {"heldout_documents": n, "selected": k, "fraction": fraction,
            "top_mean_strength": float(strength[order[:k]].mean()),
            "bottom_mean_strength": float(strength[order[-k:]].mean()),
            "random_mean_strength": float(rand.mean()),
            "random_p05": float(np.quantile(rand, 0.05)), "random_p95": float(np.quantile(rand, 0.95)),
            "top_share_s1": float((strength[order[:k]] == 1).mean()), "all_share_s1": float((strength == 1).mean()),
            "p_random_at_least_top": float((rand >= strength[order[:k]].mean()).mean())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m curate.preselect.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("labels_dir")
    ap.add_argument("model")
    ap.add_argument("--fraction", type=float, default=0.1)
    ap.add_argument("--draws", type=int, default=1000)
    args = ap.parse_args(argv)
    r = evaluate(args.labels_dir, args.model, args.fraction, args.draws)
    print(f"held-out documents {r['heldout_documents']}: mean predictive strength of PreSelect's top "
          f"{r['fraction']:.0%} ({r['selected']} documents) {r['top_mean_strength']:.3f} vs a random {r['fraction']:.0%} "
          f"{r['random_mean_strength']:.3f} (5-95%: {r['random_p05']:.3f}-{r['random_p95']:.3f}; "
          f"P(random >= top) = {r['p_random_at_least_top']:.3f}); bottom {r['fraction']:.0%} {r['bottom_mean_strength']:.3f}; "
          f"S=1 share: top {r['top_share_s1']:.1%}, all {r['all_share_s1']:.1%}")
    with open(os.path.join(args.labels_dir, "evaluate.json"), "w") as f:
        json.dump(r, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
