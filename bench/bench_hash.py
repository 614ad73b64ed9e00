"""Hashing ids and keys: the options for ``curate.schema.hash_strings`` / ``hash_strings128``.

    python bench/bench_hash.py            # 1M short ids, 1M URLs, 100k long documents
    python bench/bench_hash.py --repeat 5

Inputs (real text): ids of the shape the readers derive (16 hex digits) and UUIDs, the URLs of
../shared/data/web/html-pages.parquet (repeated to 1M), and 100k documents cut from the texts of
bench/corpus.py (the big-document text of bench_big_doc.py; 200 B to 20 kB each).

Options:

* ``loop`` -- the previous code: ``xxhash`` called per string on a memoryview slice of the Arrow
  data buffer, offsets read from numpy one by one.
* ``loop-tolist`` -- the same calls, offsets converted to Python ints once.
* ``numpy-xxh3`` -- the current code: XXH3's short-input paths (<= 240 bytes) in numpy over the
  offsets/data buffers, the C code per string above that. Same values as ``loop``.
* ``polars`` -- ``pl.Series.hash``: fastest, but polars documents its hash as not stable across
  versions (and it is 64-bit only), so outputs (ids, samples, mixes) could change with a polars
  upgrade. Shown for reference only.

Prints the seconds (best of --repeat) and the speed-up over ``loop``; checks that ``numpy-xxh3``
equals ``loop`` on every input.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import pyarrow as pa  # noqa: E402
import xxhash  # noqa: E402

from curate import schema as S  # noqa: E402


def loop64(arr, seed=0):
    offsets, data = S.string_offsets(arr)
    h = xxhash.xxh3_64_intdigest
    return np.fromiter((h(data[offsets[i]: offsets[i + 1]], seed) for i in range(len(arr))), dtype=np.uint64, count=len(arr))


def loop128(arr, seed=0):
    offsets, data = S.string_offsets(arr)
    h = xxhash.xxh3_128_digest
    raw = b"".join(h(data[offsets[i]: offsets[i + 1]], seed) for i in range(len(arr)))
    return np.frombuffer(raw, dtype=">u8").reshape(len(arr), 2).astype(np.uint64)


def tolist64(arr, seed=0):
    offsets, data = S.string_offsets(arr)
    o = offsets.tolist()
    h = xxhash.xxh3_64_intdigest
    return np.array([h(data[a:b], seed) for a, b in zip(o, o[1:])], dtype=np.uint64)


def tolist128(arr, seed=0):
    offsets, data = S.string_offsets(arr)
    o = offsets.tolist()
    h = xxhash.xxh3_128_digest
    raw = b"".join([h(data[a:b], seed) for a, b in zip(o, o[1:])])
    return np.frombuffer(raw, dtype=">u8").reshape(len(arr), 2).astype(np.uint64)


def polars64(arr, seed=0):
    return pl.from_arrow(arr).hash(seed=seed).to_numpy()


OPTIONS = {
    "hash_strings (64-bit)": [("loop", loop64), ("loop-tolist", tolist64), ("numpy-xxh3", S.hash_strings), ("polars", polars64)],
    "hash_strings128": [("loop", loop128), ("loop-tolist", tolist128), ("numpy-xxh3", S.hash_strings128)],
}


def inputs(n_ids: int, n_docs: int) -> dict[str, pa.Array]:
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    hexes = pa.array([f"{int(v):016x}" for v in rng.integers(0, 2**63, n_ids)])
    uuids = pa.array([f"{a:08x}-{b:04x}-4{c:03x}-a{d:03x}-{e:012x}" for a, b, c, d, e in zip(
        *(rng.integers(0, 2**k, n_ids).tolist() for k in (32, 16, 12, 12, 48)))])
    urls = pq.read_table(os.path.join(SHARED, "web", "html-pages.parquet"), columns=["url"]).column("url").drop_null()
    urls = pa.array([f"{u}?p={i}" for i, u in zip(range(n_ids), (urls.to_pylist() * (n_ids // len(urls) + 1)))])
    out = {"1M hex ids (16 B)": hexes, "1M UUIDs (36 B)": uuids, "1M URLs": urls}
    docs = sorted(glob.glob(os.path.join(HERE, "_data", "big_doc-*.txt")))
    if docs:
        text = open(docs[-1], encoding="utf-8").read()
        sizes = np.minimum(200 + rng.exponential(3000, n_docs).astype(np.int64), 20000)
        starts = rng.integers(0, len(text) - 20001, n_docs)
        out[f"{n_docs // 1000}k documents (200 B - 20 kB)"] = pa.array([text[s: s + k] for s, k in zip(starts, sizes)])
    else:
        print("(no bench/_data/big_doc-*.txt: run bench/bench_big_doc.py once for the document input)")
    return out


def best(fn, arr, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn(arr)
        times.append(time.perf_counter() - t)
    return min(times), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ids", type=int, default=1_000_000)
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    data = inputs(a.ids, a.docs)
    for what, options in OPTIONS.items():
        print(f"\n{what}")
        print(f"{'input':<34}" + "".join(f"{name:>22}" for name, _ in options))
        for name, arr in data.items():
            row, ref = [], None
            for opt, fn in options:
                t, out = best(fn, arr, a.repeat)
                if opt == "loop":
                    ref, t_ref = out, t
                    row.append(f"{t:>9.3f} s          ")
                else:
                    if opt == "numpy-xxh3":
                        assert np.array_equal(out, ref), f"{what} {name}: numpy-xxh3 differs from xxhash"
                    row.append(f"{t:>9.3f} s ({t_ref / t:>5.1f}x)")
            print(f"{name:<34}" + "".join(f"{c:>22}" for c in row), flush=True)


if __name__ == "__main__":
    main()
