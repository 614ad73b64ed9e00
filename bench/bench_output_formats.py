"""Writing output files: Parquet (zstd) against jsonl (none / gzip / zstd), and jsonl's two encoders.

    python bench/bench_output_formats.py            # the sample corpus repeated to --docs documents
    python bench/bench_output_formats.py --docs 50000 --repeat 3

Prints, per format, seconds (best of --repeat), MB/s of Arrow input and the file size as a share of
the Arrow size; then ``jsonl_lines`` (polars for plain column types) against rows through orjson,
which it replaces for those types, with the speed-up and a check that both give the same bytes.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import orjson  # noqa: E402
import pyarrow as pa  # noqa: E402

from curate.io.readers import InputSpec, read_shard, split_file  # noqa: E402
from curate.io.writers import file_suffix, jsonl_lines, write_file  # noqa: E402


def corpus(n: int) -> pa.Table:
    spec = InputSpec(path=[])
    parts = []
    for i, path in enumerate(sorted(glob.glob(os.path.join(ROOT, "samples", "corpus", "*.jsonl*")))):
        for shard in split_file(i, path, os.path.getsize(path), spec):
            parts += [pa.Table.from_batches([b.replace_schema_metadata(None)]) for k, b in read_shard(shard, spec)
                      if k == "batch"]
    t = pa.concat_tables(parts, promote_options="default")
    return pa.concat_tables([t] * (n // t.num_rows + 1)).slice(0, n).combine_chunks()


def best(fn, repeat: int) -> float:
    out = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out = min(out, time.perf_counter() - t)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    t = corpus(args.docs)
    mb = t.nbytes / 1e6
    print(f"{t.num_rows:,} documents, {mb:.1f} MB of Arrow data; columns {t.column_names}")
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, comp in (("parquet", "zstd"), ("jsonl", "none"), ("jsonl", "gzip"), ("jsonl", "zstd")):
            path = os.path.join(tmp, "out" + file_suffix(fmt, comp))
            s = best(lambda: write_file(t, path, fmt, comp), args.repeat)
            print(f"  {fmt:8} {comp:5} {s:6.2f} s  {mb / s:7.1f} MB/s  size {os.path.getsize(path) / t.nbytes:6.1%} of Arrow")
    opt = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS
    rows = best(lambda: b"".join(orjson.dumps(r, option=opt) for r in t.to_pylist()), args.repeat)
    ours = best(lambda: jsonl_lines(t), args.repeat)
    same = jsonl_lines(t) == b"".join(orjson.dumps(r, option=opt) for r in t.to_pylist())
    print(f"jsonl encoding: orjson rows {rows:.2f} s, jsonl_lines (polars) {ours:.2f} s: {rows / ours:.1f}x; same bytes: {same}")


if __name__ == "__main__":
    main()
