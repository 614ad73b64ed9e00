"""Train the toxicity classifier on the Davidson et al. tweets and report held-out ROC AUC and accuracy.

Data: ../shared/data/toxicity/davidson-tweets-train.csv (19,827 tweets; label hate / offensive /
neither). Positive (toxic) = hate or offensive, negative = neither. A seeded, stratified 10% is
held out; the model is trained on the rest with the settings of scorers/toxicity.yaml.

    python bench/train_toxicity.py [--output bench/_work/toxicity.bin] [--seeds 0,1,2]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
DATA = os.path.join(os.path.dirname(ROOT), "shared", "data", "toxicity", "davidson-tweets-train.csv")

from curate.scorers.train import load_labeled, train_classifier  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--output", default=os.path.join(HERE, "_work", "toxicity.bin"))
    ap.add_argument("--seeds", default="0", help="comma-separated split/training seeds (one run each)")
    ap.add_argument("--epoch", type=int, default=5)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--word-ngrams", type=int, default=2)
    args = ap.parse_args()
    if not os.path.exists(args.data):
        print(f"missing {args.data}", file=sys.stderr)
        return 2
    texts, labels = load_labeled(args.data, "tweet", "label", "hate,offensive")
    print(f"{len(texts)} tweets, {sum(labels)} toxic (hate or offensive), {len(labels) - sum(labels)} neither")
    results = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        t0 = time.time()
        m = train_classifier(texts, labels, args.output, epoch=args.epoch, lr=args.lr, dim=args.dim,
                             word_ngrams=args.word_ngrams, seed=seed, valid_fraction=0.1, threads=1)
        results.append(m)
        print(f"seed {seed}: held-out ROC AUC {m['auc']:.4f}  accuracy {m['accuracy']:.4f}  "
              f"precision {m['precision']:.4f}  recall {m['recall']:.4f}  "
              f"(train {m['n_train']}, valid {m['n_valid']}, {time.time() - t0:.1f} s, model {m['model_bytes'] / 1e6:.1f} MB)")
    if len(results) > 1:
        import numpy as np

        auc = np.array([r["auc"] for r in results])
        acc = np.array([r["accuracy"] for r in results])
        print(f"mean over {len(results)} seeds: ROC AUC {auc.mean():.4f} (sd {auc.std():.4f})  accuracy {acc.mean():.4f} (sd {acc.std():.4f})")
    print(json.dumps(results[-1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
