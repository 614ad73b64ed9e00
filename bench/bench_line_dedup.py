"""line_dedup on >= 50 MB of real text: what exact counting costs (bench/corpus.py corpus).

    python bench/bench_line_dedup.py

Prints the number of lines, distinct lines (what the exact count shuffles), the frequent set that
is broadcast, lines removed, wall/CPU time and peak RSS, for two thresholds.
"""
from __future__ import annotations

import os
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def main():
    import json

    import numpy as np
    import pyarrow as pa

    from corpus import build
    from curate.core.recipe import parse_recipe
    from curate.core.runner import run_recipe
    from curate.stages.line_dedup import split_units

    paths = build(50)
    mb = sum(os.path.getsize(p) for p in paths) / 1e6
    # what the exact count has to shuffle: distinct (normalized) lines
    seen, total = set(), 0
    for p in paths:
        texts = [json.loads(line)["text"] for line in open(p)]
        for s in range(0, len(texts), 4096):
            _, _, h, blank = split_units(pa.array(texts[s : s + 4096]), "line", False)
            h = h[~blank]
            total += len(h)
            seen.update(np.unique(h).tolist())
    print(f"corpus {mb:.1f} MB: {total:,} non-blank lines, {len(seen):,} distinct "
          f"(exact counting shuffles at most {len(seen) * 16 / 1e6:.1f} MB of (hash, count) pairs)")
    src = os.path.join(os.path.dirname(paths[0]), "*.jsonl")
    for threshold in (10, 100):
        out = os.path.join(HERE, "_work", f"line{threshold}")
        r = parse_recipe(f"input: {{path: '{src}', unique_ids: false}}\noutput: {out}\n"
                         f"stages:\n  - line_dedup: {{max_doc_frequency: {threshold}, min_chars: 100}}\n", "<bench>")
        t0, c0 = time.perf_counter(), time.process_time()
        res = run_recipe(r)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        removed = [(k, v) for k, v in res.info.items() if k.endswith("units_removed")]
        st = res.stats["line_dedup"]
        print(f"max_doc_frequency {threshold:4d}: {removed[0][1] if removed else 0:,} lines removed, "
              f"{st.n_dropped:,} documents dropped as too short, {wall:.1f} s wall, {cpu:.1f} CPU-s, "
              f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
