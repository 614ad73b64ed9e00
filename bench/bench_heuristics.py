"""Heuristic quality rule sets: curate vs DataTrove, faithfulness and speed.

    python bench/bench_heuristics.py              # agreement per rule set, then speed
    python bench/bench_heuristics.py agreement    # keep/drop agreement, disagreements per check
    python bench/bench_heuristics.py speed --repeat 3
    python bench/bench_heuristics.py agreement --more   # also the article extractions, CC and eval texts

Input: the real pages of ../shared/data/web/html-pages.parquet, text extracted with
``curate.io.html.extract_text`` (cached in bench/_data/heuristics_texts.parquet).

Agreement: each of DataTrove's ``GopherQualityFilter``, ``GopherRepetitionFilter``,
``C4QualityFilter`` and ``FineWebQualityFilter`` (default, published thresholds) is run on every
document, and so is the matching curate stage (``gopher_quality``, ``gopher_repetition``,
``c4_quality`` + ``c4_lines``, ``fineweb_quality``); the keep/drop decisions are compared, and so
are C4's rewritten texts for the documents both keep. Where decisions differ, each check is run on
its own on both sides (DataTrove's filter with every other check turned off; curate's decision of
that check from its score column) to name the checks that disagree. The word tokens are also
compared with DataTrove's (spaCy's) for every document.

Speed: the four rule sets together on the same documents, each side in its own process, CPU time
of the work measured in that process (time.process_time, all threads) after a warm-up on a
synthetic document (loading spaCy, building regexes). DataTrove: per document, the four filters in
a row, as in a pipeline (its word splitting is cached per text, so the Gopher and FineWeb filters
share it). curate: one record batch through the five stages in ``mode: annotate`` (nothing
dropped, every score column added) and then ``c4_lines`` (which rewrites the text), as in a
pipeline, with one polars thread (a worker process per core).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
TEXTS = os.path.join(HERE, "_data", "heuristics_texts.parquet")
sys.path.insert(0, ROOT)

RULE_SETS = ("gopher_quality", "gopher_repetition", "c4_quality", "fineweb_quality")
WARMUP = ("The quick brown fox jumps over the lazy dog. " * 12 + "\n- a list item\n- another one...\n") * 3


def texts() -> list[str]:
    """The extracted texts of the real pages (cached)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not os.path.exists(TEXTS):
        from curate.io.html import extract_text

        pages = pq.read_table(os.path.join(SHARED, "web", "html-pages.parquet"), columns=["id", "url", "html"]).to_pylist()
        rows = []
        for p in pages:
            try:
                t = extract_text(p["html"], p["url"])
            except Exception:  # a page trafilatura cannot parse is left out
                t = None
            if t and t.strip():
                rows.append({"id": p["id"], "url": p["url"], "text": t})
        os.makedirs(os.path.dirname(TEXTS), exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), TEXTS)
    return pq.read_table(TEXTS, columns=["text"]).column("text").to_pylist()


def more_texts() -> list[str]:
    """Other real texts of ../shared/data: article versions from 12 extractors, CC documents, eval sets."""
    import glob
    import gzip

    import pyarrow.parquet as pq

    out = pq.read_table(os.path.join(SHARED, "neardup", "extractions-dev.parquet"), columns=["text"]).column("text").to_pylist()
    for f in sorted(glob.glob(os.path.join(SHARED, "web", "cc", "*.jsonl.gz"))):
        out += [json.loads(line)["text"] for line in gzip.open(f, "rt")]
    for f in sorted(glob.glob(os.path.join(SHARED, "eval", "*.jsonl"))):
        for line in list(open(f))[:200]:
            out.append("\n".join(str(v) for v in json.loads(line).values() if isinstance(v, str)))
    return [t for t in out if t and t.strip()]


# ------------------------------------------------------------------------------------- the two sides


def datatrove_filters(**overrides):
    from datatrove.pipeline.filters import C4QualityFilter, FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter

    classes = dict(gopher_quality=GopherQualityFilter, gopher_repetition=GopherRepetitionFilter,
                   c4_quality=C4QualityFilter, fineweb_quality=FineWebQualityFilter)
    return {name: cls(**overrides.get(name, {})) for name, cls in classes.items()}


def run_datatrove(docs: list[str], filters=None) -> dict[str, list]:
    """Per rule set: per document, None (kept) or the drop reason; plus C4's rewritten texts."""
    from datatrove.data import Document

    filters = filters or datatrove_filters()
    out = {name: [] for name in filters}
    out["c4_text"] = []
    for i, text in enumerate(docs):
        for name, f in filters.items():
            doc = Document(text=text, id=str(i))
            r = f.filter(doc)
            out[name].append(None if r is True else (r[1] if isinstance(r, tuple) else "dropped"))
            if name == "c4_quality":
                out["c4_text"].append(doc.text)
    return out


def curate_rules(**overrides):
    from curate.stages.heuristics.c4 import C4Lines, C4Quality
    from curate.stages.heuristics.fineweb import FineWebQuality
    from curate.stages.heuristics.gopher_quality import GopherQuality
    from curate.stages.heuristics.gopher_repetition import GopherRepetition

    return [GopherQuality(mode="annotate", **overrides.get("gopher_quality", {})),
            GopherRepetition(mode="annotate", **overrides.get("gopher_repetition", {})),
            C4Quality(mode="annotate", **overrides.get("c4_quality", {})),
            FineWebQuality(mode="annotate", **overrides.get("fineweb_quality", {})),
            C4Lines()]  # last: it rewrites the text


def run_curate(docs: list[str], batch_size: int = 4096):
    """(per rule set: keep mask, reasons; score columns; C4 texts), through the stage machinery."""
    import numpy as np
    import pyarrow as pa

    from curate import schema as S
    from curate.core.stage import Mapper, apply_rule

    rules = curate_rules()
    masks = {r.stage: [] for r in rules if not isinstance(r, Mapper)}
    reasons = {k: [] for k in masks}
    scores: dict[str, list] = {}
    c4_text = []
    for start in range(0, len(docs), batch_size):
        part = docs[start : start + batch_size]
        batch = S.with_key(pa.RecordBatch.from_pydict({"id": [str(start + i) for i in range(len(part))], "text": part}), "b")
        for rule in rules:
            out, mask, why = apply_rule(rule, batch)
            if isinstance(rule, Mapper):
                c4_text.extend(out.column("text").to_pylist())
                continue
            masks[rule.stage].append(mask)
            reasons[rule.stage].extend(why.tolist())
            for k, v in rule.score(batch).items():
                scores.setdefault(k, []).extend(v.to_pylist())
            batch = out  # annotate: the same text array flows on, so the analysis is shared
    return {k: np.concatenate(v) for k, v in masks.items()}, reasons, scores, c4_text


# ---------------------------------------------------------------------------------------- agreement


# Every check, for the per-check comparison: (rule set, check name, DataTrove settings that keep only
# this check, curate's decision of this check from the score columns)
def _checks():
    g_off = dict(min_doc_words=None, max_doc_words=None, min_avg_word_length=None, max_avg_word_length=None,
                 max_symbol_word_ratio=None, max_bullet_lines_ratio=None, max_ellipsis_lines_ratio=None,
                 max_non_alpha_words_ratio=None, min_stop_words=None)
    r_off = dict(dup_line_frac=None, dup_para_frac=None, dup_line_char_frac=None, dup_para_char_frac=None,
                 top_n_grams=(), dup_n_grams=())
    c_off = dict(filter_lorem_ipsum=False, filter_curly_bracket=False, min_num_sentences=-1)
    f_off = dict(line_punct_thr=-1.0, short_line_thr=float("inf"), char_duplicates_ratio=float("inf"),
                 new_line_ratio=float("inf"))
    g = lambda **kw: ("gopher_quality", dict(g_off, **kw))  # noqa: E731
    r = lambda **kw: ("gopher_repetition", dict(r_off, **kw))  # noqa: E731
    c = lambda **kw: ("c4_quality", dict(c_off, **kw))  # noqa: E731
    f = lambda **kw: ("fineweb_quality", dict(f_off, **kw))  # noqa: E731
    out = [
        ("word count", g(min_doc_words=50, max_doc_words=100000), lambda s: (s["gopher_word_count"] < 50) | (s["gopher_word_count"] > 100000)),
        ("mean word length", g(min_avg_word_length=3, max_avg_word_length=10),
         lambda s: (s["gopher_mean_word_length"] < 3) | (s["gopher_mean_word_length"] > 10)),
        ("# and ... per word", g(max_symbol_word_ratio=0.1), lambda s: (s["gopher_hash_ratio"] > 0.1) | (s["gopher_ellipsis_ratio"] > 0.1)),
        ("bullet lines", g(max_bullet_lines_ratio=0.9), lambda s: s["gopher_bullet_lines_ratio"] > 0.9),
        ("ellipsis lines", g(max_ellipsis_lines_ratio=0.3), lambda s: s["gopher_ellipsis_lines_ratio"] > 0.3),
        ("alphabetic words", g(max_non_alpha_words_ratio=0.8), lambda s: s["gopher_alpha_words_ratio"] < 0.8),
        ("stop words", g(min_stop_words=2), lambda s: s["gopher_stop_words"] < 2),
        ("dup paragraphs", r(dup_para_frac=0.3, dup_para_char_frac=0.2),
         lambda s: (s["gopher_dup_para_frac"] > 0.3) | (s["gopher_dup_para_char_frac"] > 0.2)),
        ("dup lines", r(dup_line_frac=0.3, dup_line_char_frac=0.2),
         lambda s: (s["gopher_dup_line_frac"] > 0.3) | (s["gopher_dup_line_char_frac"] > 0.2)),
        ("top n-grams", r(top_n_grams=((2, 0.2), (3, 0.18), (4, 0.16))),
         lambda s: (s["gopher_top_2_gram_char_frac"] > 0.2) | (s["gopher_top_3_gram_char_frac"] > 0.18) | (s["gopher_top_4_gram_char_frac"] > 0.16)),
        ("dup n-grams", r(dup_n_grams=((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))),
         lambda s: sum((s[f"gopher_dup_{n}_gram_char_frac"] > t).astype(int) for n, t in zip(range(5, 11), (0.15, 0.14, 0.13, 0.12, 0.11, 0.10))) > 0),
        ("lorem ipsum", c(filter_lorem_ipsum=True), lambda s: s["c4_lorem_ipsum_lines"] > 0),
        ("curly bracket", c(filter_curly_bracket=True), lambda s: s["c4_curly_bracket_lines"] > 0),
        ("sentences", c(min_num_sentences=5), lambda s: s["c4_num_sentences"] < 5),
        ("line punctuation", f(line_punct_thr=0.12), lambda s: s["fineweb_line_punct_ratio"] < 0.12),
        ("short lines", f(short_line_thr=0.67), lambda s: s["fineweb_short_line_ratio"] > 0.67),
        ("dup line chars", f(char_duplicates_ratio=0.01), lambda s: s["fineweb_char_dup_ratio"] > 0.01),
        ("list ratio", f(new_line_ratio=0.3), lambda s: s["fineweb_list_ratio"] > 0.3),
    ]
    return out


def agreement(docs: list[str]):
    import numpy as np

    from curate.stages.heuristics import _text as T
    from curate.stages.heuristics._text import tokenize

    print(f"{len(docs)} documents, {sum(map(len, docs)) / 1e6:.1f} M characters")
    t0 = time.perf_counter()
    dt = run_datatrove(docs)
    t_dt = time.perf_counter() - t0
    t0 = time.perf_counter()
    masks, reasons, scores, c4_text = run_curate(docs)
    t_cu = time.perf_counter() - t0
    s = {k: np.array(v, dtype=float) for k, v in scores.items()}
    print(f"(DataTrove {t_dt:.1f} s, curate {t_cu:.1f} s wall)\n")
    print(f"{'rule set':18s} {'agree':>12s} {'rate':>7s} {'dt drops':>9s} {'curate drops':>12s}  disagreements (DataTrove reason -> curate reason)")
    disagreeing = {}
    for name in RULE_SETS:
        ref = np.array([r is None for r in dt[name]])
        ours = masks[name]
        agree = int((ref == ours).sum())
        pairs = Counter((dt[name][i], reasons[name][i]) for i in np.flatnonzero(ref != ours))
        disagreeing[name] = np.flatnonzero(ref != ours)
        print(f"{name:18s} {agree:5d}/{len(docs):<6d} {agree / len(docs):7.2%} {int((~ref).sum()):9d} {int((~ours).sum()):12d}  "
              + (", ".join(f"{a or 'kept'} -> {b or 'kept'}: {n}" for (a, b), n in pairs.most_common(6)) or "none"))
    both = [i for i in range(len(docs)) if masks["c4_quality"][i] and dt["c4_quality"][i] is None]
    same = sum(c4_text[i] == dt["c4_text"][i] for i in both)
    print(f"\nC4 rewritten text (c4_quality + c4_lines vs C4QualityFilter): identical for {same}/{len(both)} documents both keep")

    # per check, on the documents whose decision differs somewhere
    rows = sorted(set(np.concatenate(list(disagreeing.values())).tolist()))
    if rows:
        print(f"\nper-check comparison on the {len(rows)} documents with a disagreement:")
        sub = [docs[i] for i in rows]
        differ = 0
        for label, (rule, settings), ours_fails in _checks():
            ref = run_datatrove(sub, {rule: datatrove_filters(**{rule: settings})[rule]})[rule]
            ref_fail = np.array([r is not None for r in ref])
            our_fail = np.asarray(ours_fails({k: v[rows] for k, v in s.items()}), dtype=bool)
            n = int((ref_fail != our_fail).sum())
            differ += n
            if n:
                print(f"  {rule:18s} {label:20s} {n} documents differ")
        if not differ:
            print("  no single check differs at the published thresholds")

    # the words themselves
    from datatrove.utils.text import split_into_words
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    import polars as pl

    words = tokenize(pl.Series(docs))
    ours_w = words.vocab.gather(words.ref).to_list()
    spacy_tok = load_word_tokenizer("eng")
    same_docs, missing, diff_chunks = 0, 0, Counter()
    for i, text in enumerate(docs):
        ref = split_into_words(text)
        mine = ours_w[words.start[i] : words.start[i + 1]]
        if ref == mine:
            same_docs += 1
            continue
        missing += sum(((Counter(ref) - Counter(mine)) + (Counter(mine) - Counter(ref))).values())
        for chunk in text.split():
            theirs = spacy_tok.word_tokenize(chunk)
            if list(T.splitter()(chunk)) != theirs:
                diff_chunks[(chunk, tuple(theirs), T.splitter()(chunk))] += 1
    print(f"\nword tokens identical to DataTrove's (spaCy's) for {same_docs}/{len(docs)} documents; "
          f"{missing} of {len(ours_w):,} words differ (multiset difference)")
    if diff_chunks:
        print("  chunks split differently (spaCy -> curate):")
        for (chunk, theirs, mine), n in diff_chunks.most_common(8):
            show = chunk if len(chunk) <= 40 else chunk[:37] + "..."
            print(f"    {n:3d}x {show!r}: {list(theirs)[:6]} -> {list(mine)[:6]}")


# -------------------------------------------------------------------------------------------- speed


def job(side: str) -> dict:
    docs = texts()
    if side == "datatrove":
        from datatrove.data import Document

        filters = list(datatrove_filters().values())
        for f in filters:  # warm-up: load spaCy, compile
            f.filter(Document(text=WARMUP, id="w"))
        t0 = time.process_time()
        kept = 0
        for i, text in enumerate(docs):
            for f in filters:
                kept += f.filter(Document(text=text, id=str(i))) is True
        return {"cpu_s": time.process_time() - t0, "docs": len(docs), "kept": kept}
    if side in ("curate", "curate-web"):
        import pyarrow as pa

        from curate import schema as S
        from curate.core.stage import apply_rule

        if side == "curate":
            rules = curate_rules()
        else:  # the four rule sets on one analysis per batch, then c4_lines
            from curate.stages.heuristics.c4 import C4Lines
            from curate.stages.heuristics.web_quality import WebQuality

            rules = [WebQuality(mode="annotate", rule_sets=["gopher_quality", "gopher_repetition", "c4_quality",
                                                              "fineweb_quality"]), C4Lines()]

        def run(part: list[str]):
            batch = S.with_key(pa.RecordBatch.from_pydict({"id": [str(i) for i in range(len(part))], "text": part}), "b")
            n = 0
            for rule in rules:
                out, mask, _ = apply_rule(rule, batch)
                n += int(mask.sum())
                batch = out
            return n

        run([WARMUP])  # warm-up: compile regexes, build the word splitter
        t0 = time.process_time()
        kept = sum(run(docs[s : s + 4096]) for s in range(0, len(docs), 4096))
        return {"cpu_s": time.process_time() - t0, "docs": len(docs), "kept": kept}
    raise ValueError(side)


def _child(side: str) -> dict:
    env = dict(os.environ, POLARS_MAX_THREADS="1") if side == "curate" else dict(os.environ)
    proc = subprocess.run([sys.executable, __file__, "--job", side], capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{side} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def speed(repeat: int):
    docs = texts()
    mb = sum(len(t.encode()) for t in docs) / 1e6
    print(f"speed: the four rule sets on {len(docs)} documents ({mb:.1f} MB), CPU time of each side in its own process, "
          f"best of {repeat}")
    best = {}
    sides = ("datatrove", "curate", "curate-web")
    for _ in range(repeat):
        for side in sides:  # alternate, so that all see the same machine state
            r = _child(side)
            if side not in best or r["cpu_s"] < best[side]["cpu_s"]:
                best[side] = r
    print(f"  {'side':42s} {'CPU s':>8s} {'docs/s per core':>16s} {'MB/s':>7s}")
    labels = {"datatrove": "DataTrove: the 4 filters, per document",
              "curate": "curate, 5 stages: gopher_quality, gopher_repetition,",
              "curate-web": "curate, web_quality (one analysis) + c4_lines"}
    for side in sides:
        r = best[side]
        print(f"  {labels[side]:52s} {r['cpu_s']:8.2f} {r['docs'] / r['cpu_s']:16,.0f} {mb / r['cpu_s']:7.2f}")
        if side == "curate":
            print("  " + " " * 19 + "c4_quality, fineweb_quality, c4_lines")
    for side in ("curate", "curate-web"):
        ratio = best["datatrove"]["cpu_s"] / best[side]["cpu_s"]
        print(f"  {labels[side].split(':')[0]}: curate / DataTrove throughput per core = {ratio:.1f}x  (target >= 20x)")



def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", nargs="?", default="all", choices=("all", "agreement", "speed"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--more", action="store_true", help="agreement also on ../shared/data/neardup, web/cc and eval texts")
    ap.add_argument("--job", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.job:
        print(json.dumps(job(a.job)))
        return
    docs = texts()
    if a.what in ("all", "agreement"):
        agreement(docs + (more_texts() if a.more else []))
        print()
    if a.what in ("all", "speed"):
        speed(a.repeat)


if __name__ == "__main__":
    main()
