"""decontaminate: throughput on real text against all the eval sets of ../shared/data/eval, documents
flagged, and datatrove's NGramsDecontFilter side by side on the same documents.

Text: the 20 real Common Crawl documents of ../shared/data/web/cc (repeated to --cc-mb), and the
real-text corpus of bench/corpus.py (web pages, article extractions, CC, tweets, Debian docs, and
the eval records themselves, one document each: those are the documents that must be flagged).
References: every ../shared/data/eval/*.jsonl, fields query, choices, context, continuation,
context_options, chain_of_thought; 13-grams.

datatrove's filter gets an index of the same reference texts built with its own tokenizer (spaCy
English), normalization and hash (xxh64; see ``_dt_hash``), written in its ``<task>.index.hashes`` format (its indexer needs
lighteval to run at all), and runs one document at a time, as in a datatrove pipeline. It stops at
a document's first matching n-gram; curate counts all of them.

    python bench/bench_decontaminate.py [--mb 20] [--cc-mb 10] [--no-datatrove]

Speeds are MB of text per CPU-second of the process (the machine may be shared), one thread.
"""
from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
EVAL = os.path.join(SHARED, "eval", "*.jsonl")
FIELDS = ["query", "choices", "context", "continuation", "context_options", "chain_of_thought"]


def cc_docs(mb: float) -> list[dict]:
    base = []
    for f in sorted(glob.glob(os.path.join(SHARED, "web", "cc", "*.jsonl.gz"))):
        for i, line in enumerate(gzip.open(f, "rt")):
            base.append({"id": f"cc-{os.path.basename(f)}-{i}", "text": json.loads(line)["text"]})
    size = sum(len(d["text"].encode()) for d in base)
    reps = max(1, int(mb * 1e6 / max(size, 1)))
    return [{"id": f"{d['id']}#{r}", "text": d["text"]} for r in range(reps) for d in base]


def corpus_docs(mb: float) -> list[dict]:
    from corpus import build

    docs, total = [], 0
    for path in build(mb):
        for line in open(path, encoding="utf-8"):
            d = json.loads(line)
            docs.append({"id": d["id"], "text": d["text"]})
            total += len(d["text"].encode())
            if total >= mb * 1e6:
                return docs
    return docs


def run_curate(docs: list[dict], batch_docs: int = 4096):
    import numpy as np
    import pyarrow as pa

    from curate import schema as S
    from curate.core.stage import apply_rule
    from curate.stages.decontaminate import Decontaminate

    rule = Decontaminate(references=[EVAL], reference_fields=FIELDS)
    t0 = time.perf_counter()
    rule.setup()
    build_s = time.perf_counter() - t0
    flagged, bench = [], {}
    t0, c0 = time.perf_counter(), time.process_time()
    for a in range(0, len(docs), batch_docs):
        part = docs[a: a + batch_docs]
        batch = S.with_key(pa.RecordBatch.from_pydict({"id": [d["id"] for d in part], "text": [d["text"] for d in part]}), "b")
        out, mask, _ = apply_rule(rule, batch)
        flagged += [part[i]["id"] for i in np.flatnonzero(~mask)]
        for v in out.column("decontaminate_benchmarks").to_pylist():
            for b in (v.split(",") if v else ()):
                bench[b] = bench.get(b, 0) + 1
    return (time.perf_counter() - t0, time.process_time() - c0), build_s, rule.index, set(flagged), bench


def _dt_hash(s: str) -> int:
    """datatrove's default n-gram hash (xxh64 of the n-gram's words joined by spaces); its own wrapper
    passes a str, which the installed xxhash (4.x) refuses, so the UTF-8 bytes are passed here."""
    import xxhash

    return xxhash.xxh64_intdigest(s.encode("utf-8"))


def datatrove_index(folder: str, n: int = 13):
    """datatrove's index of the same reference texts: its tokenizer, normalization and hash."""
    import numpy as np
    from datatrove.pipeline.decont import NGramsDecontConfig
    from datatrove.utils.text import ngrams, simplify_text
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    cfg = NGramsDecontConfig(n_grams=n, find_query_ngrams=True)
    tok, h = load_word_tokenizer("en"), _dt_hash
    for path in sorted(glob.glob(EVAL)):
        hashes = set()
        for line in open(path, encoding="utf-8"):
            rec = json.loads(line)
            for f in FIELDS:
                v = rec.get(f)
                for t in ([v] if isinstance(v, str) else v if isinstance(v, list) else []):
                    words = tok.word_tokenize(simplify_text(t, cfg.norm_config))
                    hashes.update(h(" ".join(g)) for g in ngrams(words, n))
        name = os.path.basename(path).removesuffix(".jsonl")
        np.array(sorted(hashes), dtype=cfg.hash_config.np_descr).tofile(os.path.join(folder, f"{name}.index.hashes"))
    return cfg


def run_datatrove(docs: list[dict]):
    from datatrove.data import Document
    from datatrove.pipeline.decont import NGramsDecontFilter

    with tempfile.TemporaryDirectory() as folder:
        t0 = time.perf_counter()
        cfg = datatrove_index(folder)
        f = NGramsDecontFilter(index_folder=folder, config=cfg)
        f.hash_func = _dt_hash
        f.load_index_hashes()
        build_s = time.perf_counter() - t0
        flagged = set()
        t0, c0 = time.perf_counter(), time.process_time()
        for d in docs:
            r = f.filter(Document(text=d["text"], id=d["id"]))
            if r is not True:
                flagged.add(d["id"])
        return (time.perf_counter() - t0, time.process_time() - c0), build_s, flagged


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=float, default=20, help="MB of the bench/corpus.py text")
    ap.add_argument("--cc-mb", type=float, default=10, help="MB of the Common Crawl documents (repeated)")
    ap.add_argument("--no-datatrove", action="store_true")
    a = ap.parse_args()
    try:
        from loguru import logger

        logger.disable("datatrove")  # one INFO line per index file otherwise
    except ImportError:
        pass
    try:
        import datatrove  # noqa: F401
        have_dt = not a.no_datatrove
    except ImportError:
        have_dt = False
        print("datatrove is not installed: curate only (pip install datatrove for the side-by-side)")
    for name, docs in (("common crawl (20 docs, repeated)", cc_docs(a.cc_mb)), ("bench corpus", corpus_docs(a.mb))):
        mb = sum(len(d["text"].encode()) for d in docs) / 1e6
        secs, build_s, index, flagged, bench = run_curate(docs)
        print(f"\n== {name}: {len(docs):,} documents, {mb:.1f} MB")
        built = f"built in {build_s:.2f}s" if build_s > 0.01 else "built above (cached in the process)"
        print(f"curate      index {len(index.hashes):,} 13-grams of {len(index.names)} eval sets, {index.nbytes / 1e6:.1f} MB, "
              f"{built}; match {secs[0]:.2f}s wall, {secs[1]:.2f}s CPU = {mb / secs[1]:.1f} MB/s per core; "
              f"flagged {len(flagged):,}")
        by_source = {}
        for i in flagged:
            src = i.split("-")[0]
            by_source[src] = by_source.get(src, 0) + 1
        print("            flagged by source:", dict(sorted(by_source.items())), " by benchmark:", dict(sorted(bench.items())))
        if have_dt:
            dsecs, dbuild, dflag = run_datatrove(docs)
            inter = len(flagged & dflag)
            union = len(flagged | dflag)
            print(f"datatrove   index built in {dbuild:.2f}s; match {dsecs[0]:.2f}s wall, {dsecs[1]:.2f}s CPU = "
                  f"{mb / dsecs[1]:.2f} MB/s per core; flagged {len(dflag):,}")
            jac = f" (Jaccard {inter / union:.3f})" if union else ""
            print(f"            curate / datatrove speed (CPU time): {dsecs[1] / secs[1]:.1f}x; flagged by both {inter:,}, "
                  f"curate only {len(flagged - dflag):,}, datatrove only {len(dflag - flagged):,}{jac}")


if __name__ == "__main__":
    main()
