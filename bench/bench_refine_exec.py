"""ProX program execution speed on real documents: programs parsed and executed per second.

    python bench/bench_refine_exec.py [--docs 5000]

Documents: bench/_data/corpus/corpus-00.jsonl (bench/corpus.py) when present, else
samples/corpus/web-0.jsonl. Each gets a program like the ones a refining model writes, made with a
seeded random generator: 10% ``drop_doc()``, 20% ``keep_doc()``, else one chunk program per 30
lines (``skip_chunk()`` (always for chunks under 5 lines), or a ``remove_lines`` of a few lines and a ``normalize`` of a string
from the document), with one invalid line in 5% of the programs. Prints parse-only and
parse+execute rates, the batch API's rate, the outcomes, and the time a hostile 1 MB program takes.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import random
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def load(n: int) -> list[str]:
    for path in (os.path.join(HERE, "_data", "corpus", "corpus-00.jsonl"), os.path.join(ROOT, "samples", "corpus", "web-0.jsonl")):
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                return [json.loads(line)["text"] for _, line in zip(range(n), f)]
    raise SystemExit("no corpus: run bench/corpus.py")


def program_for(text: str, rng: random.Random) -> str:
    from curate.refine.program import quote

    k = rng.random()
    if k < 0.1:
        return "drop_doc()"
    if k < 0.3:
        return "keep_doc()"
    lines = text.split("\n")
    out = []
    for start in range(0, len(lines), 30):
        end = min(start + 30, len(lines)) - 1
        if end - start < 4 or rng.random() < 0.5:  # short chunks are left alone
            out.append("skip_chunk()")
            continue
        a = rng.randint(start, end)
        out.append(f"remove_lines(line_start={a}, line_end={min(end, a + rng.randint(0, 3))})")
        words = lines[rng.randint(start, end)].split()
        if words:
            out.append(f"normalize(source_str={quote(rng.choice(words))}, target_str=\"\")")
    if rng.random() < 0.05:
        out.append("remove_lines(line_start=x, line_end=3)")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=5000)
    args = ap.parse_args()
    from curate.refine.execute import execute, execute_batch
    from curate.refine.program import parse_program

    texts = load(args.docs)
    rng = random.Random(0)
    programs = [program_for(t, rng) for t in texts]
    mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    prog_kb = sum(len(p) for p in programs) / 1e3
    print(f"{len(texts)} documents, {mb:.1f} MB of text, {prog_kb:.0f} KB of programs")

    t = time.perf_counter()
    n_calls = sum(len(parse_program(p, n_lines=tx.count("\n") + 1).calls) for tx, p in zip(texts, programs))
    dt = time.perf_counter() - t
    print(f"parse only:        {len(texts) / dt:9.0f} programs/s  ({n_calls / dt:.0f} calls/s)")

    t = time.perf_counter()
    actions = collections.Counter((r.action, r.reason) for r in (execute(tx, p) for tx, p in zip(texts, programs)))
    dt = time.perf_counter() - t
    print(f"parse + execute:   {len(texts) / dt:9.0f} programs/s  ({mb / dt:.1f} MB/s of text)")

    t = time.perf_counter()
    execute_batch(texts, programs)
    dt = time.perf_counter() - t
    print(f"execute_batch:     {len(texts) / dt:9.0f} programs/s")
    print("outcomes:", ", ".join(f"{a}/{r}: {n}" for (a, r), n in sorted(actions.items(), key=str)))

    for name, hostile in [("1 MB of '('", "(" * 999_999), ("1 MB of 'a.'", "a." * 499_999),
                          ("1 MB of junk lines", "bad(\n" * 199_999), ("1 MB of valid calls", "skip_chunk()\n" * 76_922)]:
        t = time.perf_counter()
        r = execute(texts[0], hostile)
        print(f"hostile {name:20s} {time.perf_counter() - t:6.3f} s  -> {r.action}/{r.reason}, {r.n_invalid} invalid")


if __name__ == "__main__":
    main()
