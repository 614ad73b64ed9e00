"""Peak memory of one huge document through every per-batch stage.

    python bench/bench_big_doc.py                       # 100 MB document, every stage
    python bench/bench_big_doc.py --mb 20 --stages gopher_quality lang_id
    python bench/bench_big_doc.py --global-stages      # also exact/url/line/fuzzy dedup through the runner

The document is real text: the texts of bench/corpus.py (the pages, article versions, Common Crawl
samples, eval sets and tweets of ../shared/data, then Debian's documentation) concatenated with
blank lines until it is ``--mb`` megabytes (cached in bench/_data/big_doc-<mb>.txt).

Each stage runs in a fresh process: the document is loaded as a one-row record batch (id, text,
source, url), the rule is set up and warmed up on a small batch (models, regexes, the word
splitter), the peak-RSS mark is reset (``/proc/self/clear_refs``), and the rule is applied once
through the stage machinery (``apply_rule``). Printed: the peak RSS growth over the RSS just
before the call, as a multiple of the document's size (target: below 5x), and the wall time.

Global stages (``--global-stages``): a one-stage recipe over a parquet file holding the document,
run in-process by the local runner; the peak RSS growth of the whole run over the process's RSS
before it, next to the same run without a stage (reading and writing the document).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.path.join(HERE, "_data")
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)
import curate  # noqa: E402,F401  (first, as the `curate` command does: it picks Arrow's allocator before pyarrow loads)

RULE_STAGES = [
    "gopher_quality", "gopher_repetition", "c4_quality", "c4_lines", "fineweb_quality", "web_quality",
    "lang_id", "length_filter", "toxic_words", "pii_redact", "sample", "quality_classifier", "toxicity_classifier",
]
GLOBAL_STAGES = ["exact_dedup", "url_dedup", "line_dedup", "fuzzy_dedup"]
doc_path_of_child = ""


def doc_path(mb: float) -> str:
    """The cached document of ``mb`` megabytes (built on first use)."""
    path = os.path.join(DATA, f"big_doc-{mb:g}.txt")
    if os.path.exists(path):
        return path
    from corpus import documents

    want = int(mb * 1e6)
    parts, size = [], 0
    for d in documents():
        t = d["text"].strip()
        if not t:
            continue
        b = t.encode()
        parts.append(b)
        size += len(b) + 2
        if size >= want:
            break
    blob = b"\n\n".join(parts)[:want]
    blob = blob.decode("utf-8", errors="ignore").encode()  # do not end inside a character
    os.makedirs(DATA, exist_ok=True)
    with open(path + ".tmp", "wb") as f:
        f.write(blob)
    os.replace(path + ".tmp", path)
    return path


# --------------------------------------------------------------------------------------- memory


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+)", f.read(), re.M).group(1)) * 1024


def reset_peak() -> int:
    """Reset the peak-RSS mark; the current RSS."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status("VmRSS")


def peak() -> int:
    return _status("VmHWM")


# ------------------------------------------------------------------------------------------ rules


def make_rule(stage: str, work: str):
    from curate.core.registry import all_stages

    cls = all_stages()[stage]
    if stage in ("quality_classifier", "toxicity_classifier"):
        return cls(model=_tiny_model(work, doc_path_of_child))
    if stage == "sample":
        return cls(fraction=0.5)
    if stage == "length_filter":
        return cls(min_words=50)
    return cls()


def _tiny_model(work: str, doc: str) -> str:
    """A small fastText classifier (the stages need one; its size does not depend on the document)."""
    from curate.scorers.fasttext_classifier import preprocess

    path = os.path.join(work, "tiny.bin")
    if os.path.exists(path):
        return path
    with open(doc, encoding="utf-8") as f:
        lines = [ln for ln in f.read(2_000_000).splitlines() if len(ln) > 40]
    texts = preprocess(lines).to_pylist()
    train = os.path.join(work, "tiny.train")
    with open(train, "w") as f:
        for i, t in enumerate(texts):
            f.write(f"__label__{'pos' if i % 2 else 'neg'} {t}\n")
    from curate.scorers.train import _train_subprocess

    _train_subprocess({"input": train, "epoch": 2, "dim": 16, "lr": 0.1, "verbose": 0, "thread": 1}, path, False)
    return path


def child(stage: str, path: str, work: str) -> dict:
    import numpy as np  # noqa: F401
    import polars as pl  # noqa: F401  (imported before the baseline)
    import pyarrow as pa

    from curate import schema as S
    from curate.core.stage import apply_rule

    global doc_path_of_child
    doc_path_of_child = path
    rule = make_rule(stage, work)
    rule.setup()
    small = S.with_key(pa.RecordBatch.from_pydict({
        "id": ["w0", "w1"], "text": [open(os.path.join(ROOT, "README.md")).read(), "Hello world. " * 40],
        "source": ["s", "s"], "url": ["https://example.com/a", None]}), "warm")
    apply_rule(rule, small)
    with open(path, "rb") as f:
        raw = f.read()
    n = len(raw)
    text = pa.Array.from_buffers(pa.string(), 1, [None, pa.array([0, n], pa.int32()).buffers()[1], pa.py_buffer(raw)])
    del raw
    batch = S.with_key(pa.RecordBatch.from_arrays(
        [pa.array(["big"]), text, pa.array(["bench"]), pa.array(["https://example.com/big"])],
        names=[S.ID, S.TEXT, S.SOURCE, S.URL]), "big")
    base = reset_peak()
    t0 = time.time()
    out, mask, reasons = apply_rule(rule, batch)
    seconds = time.time() - t0
    top = peak()
    return {"stage": stage, "doc_bytes": n, "growth": top - base, "ratio": (top - base) / n, "seconds": seconds,
            "kept": bool(mask[0]), "reason": reasons[0]}


# --------------------------------------------------------------------------------- global stages


def child_global(stage: str | None, path: str, work: str) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curate.core.recipe import parse_recipe
    from curate.core.runner import run_recipe

    src = os.path.join(work, "in", "big-v2.parquet")
    if not os.path.exists(src):
        os.makedirs(os.path.dirname(src), exist_ok=True)
        with open(path, encoding="utf-8") as f:
            t = f.read()
        # written as curate writes Parquet (no dictionary, no statistics on text): a dictionary-encoded
        # input costs 2x the document more inside Arrow's Parquet decoder (the dictionary page and the
        # decoded values), before any of curate's code runs
        from curate.io.writers import write_parquet

        write_parquet(pa.table({"id": ["big", "small"], "text": [t, "A small document of a few words."],
                                "url": ["https://example.com/big", "https://example.com/small"]}), src)
        del t
    out = os.path.join(work, f"out-{stage or 'none'}")
    stages = f"  - {stage}: {{}}\n" if stage else ""
    recipe = parse_recipe(f"input: {{path: {src}, format: parquet}}\noutput: {{path: {out}}}\nstages:\n{stages or '  []'}",
                          "<bench>")
    if not stages:
        recipe = parse_recipe(f"input: {{path: {src}, format: parquet}}\noutput: {{path: {out}}}\nstages: []\n", "<bench>")
    base = reset_peak()
    t0 = time.time()
    run_recipe(recipe)
    seconds = time.time() - t0
    top = peak()
    n = os.path.getsize(path)
    return {"stage": stage or "(read+write only)", "doc_bytes": n, "growth": top - base, "ratio": (top - base) / n,
            "seconds": seconds}


# ------------------------------------------------------------------------------------------ main


def run_child(args: list[str], timeout: float) -> dict:
    env = dict(os.environ, POLARS_MAX_THREADS=os.environ.get("POLARS_MAX_THREADS", "2"))
    try:
        p = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode or not lines:
        return {"error": (p.stderr.strip().splitlines() or ["exit %d" % p.returncode])[-1][:200]}
    return json.loads(lines[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=100)
    ap.add_argument("--stages", nargs="*", default=None)
    ap.add_argument("--global-stages", action="store_true")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-global", help=argparse.SUPPRESS)
    a = ap.parse_args()
    work = os.path.join(DATA, "big_doc_work")
    os.makedirs(work, exist_ok=True)
    path = doc_path(a.mb)
    if a.child:
        print(json.dumps(child(a.child, path, work)))
        return
    if a.child_global is not None:
        print(json.dumps(child_global(a.child_global or None, path, work)))
        return
    size = os.path.getsize(path)
    print(f"document: {size / 1e6:.1f} MB of real text ({path})")
    print(f"{'stage':<22} {'peak growth':>12} {'x doc':>7} {'seconds':>8}  result")
    results = []
    for stage in a.stages or RULE_STAGES:
        r = run_child(["--mb", str(a.mb), "--child", stage], a.timeout)
        r.setdefault("stage", stage)
        results.append(r)
        if "error" in r:
            print(f"{stage:<22} error: {r['error']}")
        else:
            flag = "" if r["ratio"] < 5 else "  <-- over 5x"
            print(f"{stage:<22} {r['growth'] / 1e6:>9.0f} MB {r['ratio']:>6.2f}x {r['seconds']:>8.1f}  "
                  f"{'kept' if r['kept'] else 'dropped: ' + str(r['reason'])}{flag}", flush=True)
    if a.global_stages:
        print("\nglobal stages (whole local run, in-process):")
        for stage in [""] + GLOBAL_STAGES:
            r = run_child(["--mb", str(a.mb), "--child-global", stage], a.timeout)
            r.setdefault("stage", stage or "(read+write only)")
            results.append(r)
            if "error" in r:
                print(f"{r['stage']:<22} error: {r['error']}")
            else:
                print(f"{r['stage']:<22} {r['growth'] / 1e6:>9.0f} MB {r['ratio']:>6.2f}x {r['seconds']:>8.1f}", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
