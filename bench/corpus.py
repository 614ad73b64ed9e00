"""Assemble a real-text benchmark corpus (jsonl shards) from ../shared and Debian documentation.

Sources (all real text): the HTML pages of ../shared/data/web (text extracted with curate's
extractor), the near-duplicate article versions, the Common Crawl samples, the eval sets, the
labeled tweets, and Debian's linux-doc, python3-doc and debian-handbook packages (installed with
apt-get when missing). Each source file or record becomes one document.

    python bench/corpus.py --min-mb 50        # writes bench/_data/corpus/*.jsonl, prints its size
"""
from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
OUT = os.path.join(HERE, "_data", "corpus")
DEBIAN = ["linux-doc-6.1", "python3.11-doc", "debian-handbook"]
DOC_DIRS = ["/usr/share/doc/linux-doc-6.1", "/usr/share/doc/python3.11", "/usr/share/debian-handbook",
            "/usr/share/doc/debian-handbook"]
TAG = re.compile(r"<[^>]+>")
SPACE = re.compile(r"[ \t]+")


def _ensure_debian_docs():
    if all(os.path.isdir(d) for d in DOC_DIRS[:2]):
        return
    print("installing Debian documentation packages:", " ".join(DEBIAN), file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", *DEBIAN], check=False, env=env, capture_output=True)


def _html_to_text(raw: str) -> str:
    import html

    raw = re.sub(r"(?is)<(script|style)[^>]*>.*?</\1>", " ", raw)
    text = html.unescape(TAG.sub(" ", raw))
    lines = [SPACE.sub(" ", ln).strip() for ln in text.splitlines()]
    return "\n".join(ln for ln in lines if ln)


def _read(path: str) -> str | None:
    try:
        data = gzip.open(path).read() if path.endswith(".gz") else open(path, "rb").read()
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError):
        return None


def documents():
    import pyarrow.parquet as pq

    # shared: HTML pages (extracted), near-duplicate article versions, cc samples, eval sets, tweets
    pages = pq.read_table(os.path.join(SHARED, "web", "html-pages.parquet"), columns=["id", "url", "html"]).to_pylist()
    from curate.io.html import extract_text

    for p in pages:
        text = extract_text(p["html"], p["url"])
        if text:
            yield {"id": f"page-{p['id']}", "text": text, "url": p["url"], "source": "web"}
    nd = pq.read_table(os.path.join(SHARED, "neardup", "extractions-dev.parquet")).to_pylist()
    text_col = "text" if "text" in nd[0] else next(k for k, v in nd[0].items() if isinstance(v, str) and len(v) > 200)
    for i, r in enumerate(nd):
        if r.get(text_col):
            yield {"id": f"neardup-{i}", "text": r[text_col], "source": "articles"}
    for f in sorted(glob.glob(os.path.join(SHARED, "web", "cc", "*.jsonl.gz"))):
        for i, line in enumerate(gzip.open(f, "rt")):
            r = json.loads(line)
            yield {"id": f"cc-{os.path.basename(f)}-{i}", "text": r["text"], "source": "cc"}
    for f in sorted(glob.glob(os.path.join(SHARED, "eval", "*.jsonl"))):
        for i, line in enumerate(open(f)):
            r = json.loads(line)
            text = " ".join(str(v) for v in r.values() if isinstance(v, (str, list)))
            yield {"id": f"eval-{os.path.basename(f)}-{i}", "text": text, "source": "eval"}
    import csv

    with open(os.path.join(SHARED, "toxicity", "davidson-tweets-train.csv"), newline="") as fh:
        for i, r in enumerate(csv.DictReader(fh)):
            yield {"id": f"tweet-{i}", "text": r["tweet"], "source": "tweets"}
    # Debian documentation
    _ensure_debian_docs()
    for d in DOC_DIRS:
        for path in sorted(glob.glob(os.path.join(d, "**", "*"), recursive=True)):
            if not os.path.isfile(path) or os.path.islink(path):
                continue
            name = path.lower()
            if name.endswith((".html", ".htm", ".html.gz")):
                raw = _read(path)
                text = _html_to_text(raw) if raw else None
            elif name.endswith((".txt", ".rst", ".rst.gz", ".txt.gz")):
                text = _read(path)
            else:
                continue
            if text and len(text) > 200:
                yield {"id": f"deb-{path}", "text": text, "source": "debian-docs"}


def build(min_mb: float, shards: int = 8, max_mb: float | None = None) -> list[str]:
    os.makedirs(OUT, exist_ok=True)
    marker = os.path.join(OUT, "_SUCCESS")
    if os.path.exists(marker):
        with open(marker) as f:
            info = json.load(f)
        if info["bytes"] >= min_mb * 1e6:
            return sorted(glob.glob(os.path.join(OUT, "*.jsonl")))
    max_mb = max_mb or min_mb * 1.25
    files = [open(os.path.join(OUT, f"corpus-{i:02d}.jsonl"), "w") for i in range(shards)]
    total = n = 0
    for doc in documents():
        if total >= max_mb * 1e6:
            break
        line = json.dumps(doc, ensure_ascii=False) + "\n"
        files[n % shards].write(line)
        total += len(line.encode())
        n += 1
    for f in files:
        f.close()
    with open(marker, "w") as f:
        json.dump({"bytes": total, "documents": n}, f)
    if total < min_mb * 1e6:
        print(f"warning: only {total / 1e6:.1f} MB of text assembled (wanted {min_mb} MB)", file=sys.stderr)
    return sorted(glob.glob(os.path.join(OUT, "*.jsonl")))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--min-mb", type=float, default=50)
    a = ap.parse_args()
    paths = build(a.min_mb)
    size = sum(os.path.getsize(p) for p in paths)
    print(f"{len(paths)} files, {size / 1e6:.1f} MB in {OUT}")
