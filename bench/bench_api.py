"""The Python API's two ways to run stages: ``curate.apply`` on an in-memory ``pyarrow.Table`` against
``Pipeline.run`` over the same rows as a Parquet file (a local Beam job writing data/ and stats.json).

    python bench/bench_api.py                    # the sample corpus x 30 (10,260 documents)
    python bench/bench_api.py --repeat 100 --stages length_filter exact_dedup

Each stage is warmed up once on 20 rows first (imports, model loads), then timed once each way; the
kept counts of both ways must agree. Printed: seconds, documents per second and the ratio
run / apply (above 1: the in-memory call is faster). Per-batch rules run in the calling process;
a global stage runs a local Beam job either way, so its ratio is about 1.
"""
from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=30, help="copies of the sample corpus (342 documents each)")
    ap.add_argument("--stages", nargs="+", default=["length_filter", "gopher_quality", "exact_dedup"])
    args = ap.parse_args()

    import pyarrow as pa
    import pyarrow.parquet as pq

    import curate

    rows = []
    for f in sorted(glob.glob(os.path.join(ROOT, "samples", "corpus", "*.jsonl*"))):
        with (gzip.open if f.endswith(".gz") else open)(f, "rt") as fh:
            rows += [json.loads(line) for line in fh]
    texts = [r["text"] for r in rows] * args.repeat
    table = pa.table({"id": [f"d{i}" for i in range(len(texts))], "text": texts})
    print(f"table: {table.num_rows:,} documents, {sum(map(len, texts)) / 1e6:.1f} MB of text")
    tmp = tempfile.mkdtemp(prefix="bench-api-")
    try:
        src = os.path.join(tmp, "in", "t.parquet")
        os.makedirs(os.path.dirname(src))
        pq.write_table(table, src)
        print(f"{'stage':<16} {'apply(table)':>22} {'Pipeline.run(parquet)':>26} {'run/apply':>10}")
        for name in args.stages:
            curate.apply(name, table.slice(0, 20))
            t0 = time.perf_counter()
            res = curate.apply(name, table)
            a = time.perf_counter() - t0
            out = os.path.join(tmp, "out")
            shutil.rmtree(out, ignore_errors=True)
            t0 = time.perf_counter()
            run = curate.Pipeline([name]).run(src, out)
            b = time.perf_counter() - t0
            assert res.kept.num_rows == run.documents_out, (name, res.kept.num_rows, run.documents_out)
            print(f"{name:<16} {a:7.2f}s {table.num_rows / a:9,.0f} docs/s {b:9.2f}s {table.num_rows / b:9,.0f} docs/s "
                  f"{b / a:9.2f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
