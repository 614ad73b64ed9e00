"""A rule teacher: ProX programs derived from curate's heuristic rules, with no model and no network.

ProX trains its refining models on programs that a large model wrote; this teacher writes programs
from rules instead, so a small refiner can be trained (``curate.refine.train``) and the whole
refinement path run offline:

* **document level**: ``drop_doc()`` when a document fails one of the document rules (by default
  the Gopher quality and FineWeb quality rule sets, with their default thresholds, on the raw
  text), or when the line rules would remove every non-blank line; ``keep_doc()`` otherwise;
* **chunk level**: ``remove_lines(line_start=a, line_end=b)`` for each run of lines that C4's line
  rules (``curate.stages.heuristics.c4``, DataTrove's ``C4QualityFilter`` definitions) remove:
  no terminal punctuation, fewer than 3 words, a word over 1,000 characters, "javascript",
  cookie/terms-of-use boilerplate, plus lines with "lorem ipsum" (C4 drops the whole document for
  those; here the line goes). Lines are the document's ``"\\n"``-separated lines, numbered from 0
  as in ProX's prompts; a line that holds other line breaks (``\\r``...) is removed when none of
  its parts passes. Blank lines take no side: a run of blank lines between two removed lines is
  removed with them, others stay. Runs of removed lines are merged into one range each.

A *program* here is ProX's text: one call per line. :func:`annotate` gives per document the
doc-level program (``level="doc"``), the whole-document chunk-level program (``level="chunk"``:
the ``remove_lines`` calls, empty when nothing goes), or both in one (``level="both"``: the doc
call first, then, for a kept document, the line calls). :func:`chunk_programs` cuts a
whole-document program into the targets of its chunks (``skip_chunk()`` for a chunk with no call).
:func:`annotate_files` (``main``: ``curate annotate-refiner INPUT... -o OUT.jsonl``) writes the
``{"text", "program"}`` records that :func:`curate.refine.train.train_refiner` reads.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from curate.refine.prompts import CHUNK_MAX_TOKENS, DROP_DOC, KEEP_DOC, SKIP_CHUNK, Chunk, chunk_lines, program_calls
from curate.stages.heuristics._text import TextStats
from curate.stages.heuristics.c4 import C4LineRules


def remove_call(start: int, end: int) -> str:
    return f"remove_lines(line_start={start}, line_end={end})"


def _default_doc_rules():
    from curate.stages.heuristics.fineweb import FineWebQuality
    from curate.stages.heuristics.gopher_quality import GopherQuality

    return [GopherQuality(), FineWebQuality()]


@dataclass
class RuleTeacher:
    """Writes ProX programs from rules. ``line_rules``: C4's line-rule parameters; ``doc_rules``:
    curate ``Filter`` rules whose failure means ``drop_doc()`` (an empty list: none)."""

    line_rules: C4LineRules = field(default_factory=C4LineRules)
    remove_lorem_ipsum: bool = True
    doc_rules: list = field(default_factory=_default_doc_rules)
    drop_when_no_line_kept: bool = True

    # ---- lines

    def removed_ranges(self, texts: list[str]) -> list[list[tuple[int, int]]]:
        """Per text, the (first, last) line ranges to remove, in order, merged."""
        texts = list(texts)
        split = [t.split("\n") for t in texts]
        flat = [line for lines in split for line in lines]
        if not flat:
            return [[] for _ in texts]
        st = TextStats(pa.array(flat, pa.string()))
        a = self.line_rules.line_analysis(st)  # one "document" per "\n"-line; parts per str.splitlines()
        part_of, kept = a["doc"], a["kept"].copy()
        if self.remove_lorem_ipsum and len(kept):
            kept &= ~a["line"].str.contains("(?i)lorem ipsum").to_numpy()
        n = len(flat)
        parts = np.bincount(part_of, minlength=n)
        kept_parts = np.bincount(part_of[kept], minlength=n)
        blank = np.fromiter((not line.strip() for line in flat), dtype=bool, count=n)
        remove = (parts > 0) & (kept_parts == 0) & ~blank
        out, pos = [], 0
        for lines in split:
            out.append(_ranges(remove[pos:pos + len(lines)], blank[pos:pos + len(lines)]))
            pos += len(lines)
        return out

    # ---- documents

    def doc_decisions(self, texts: list[str], ranges: list[list[tuple[int, int]]] | None = None) -> list[bool]:
        """Per text, True to keep it (``keep_doc()``), False to drop it."""
        from curate import schema as S
        from curate.core.stage import apply_rule

        texts = list(texts)
        keep = np.ones(len(texts), dtype=bool)
        if not texts:
            return []
        batch = S.with_key(pa.RecordBatch.from_pydict({"id": pa.array([str(i) for i in range(len(texts))], pa.string()),
                                                       "text": pa.array(texts, pa.string())}), "teacher")
        for rule in self.doc_rules:
            keep &= apply_rule(rule, batch)[1]
        if self.drop_when_no_line_kept:
            ranges = self.removed_ranges(texts) if ranges is None else ranges
            for i, (text, rs) in enumerate(zip(texts, ranges)):
                nonblank = sum(1 for line in text.split("\n") if line.strip())
                if nonblank == 0 or sum(b - a + 1 for a, b in rs) >= nonblank:
                    keep[i] = False
        return keep.tolist()

    def annotate(self, texts: list[str], level: str = "both") -> list[str]:
        """Per text, its program (see the module docstring for ``level``)."""
        if level not in ("doc", "chunk", "both"):
            raise ValueError(f"level must be doc, chunk or both, got {level!r}")
        texts = list(texts)
        ranges = self.removed_ranges(texts)
        if level == "chunk":
            return ["\n".join(remove_call(a, b) for a, b in rs) for rs in ranges]
        keep = self.doc_decisions(texts, ranges)
        if level == "doc":
            return [KEEP_DOC if k else DROP_DOC for k in keep]
        return ["\n".join([KEEP_DOC] + [remove_call(a, b) for a, b in rs]) if k else DROP_DOC
                for k, rs in zip(keep, ranges)]


def _ranges(remove: np.ndarray, blank: np.ndarray) -> list[tuple[int, int]]:
    """Runs of removed lines, a run going on over blank lines up to the next removed line."""
    out: list[tuple[int, int]] = []
    start = last = None
    for i in range(len(remove)):
        if remove[i]:
            if start is None:
                start = i
            last = i
        elif not blank[i] and start is not None:
            out.append((start, last))
            start = None
    if start is not None:
        out.append((start, last))
    return out


def annotate(texts: list[str], level: str = "both", teacher: RuleTeacher | None = None) -> list[str]:
    """Programs for ``texts`` from the default :class:`RuleTeacher` (or ``teacher``)."""
    return (teacher or RuleTeacher()).annotate(texts, level)


# ----------------------------------------------------------------------------- programs and chunks


def split_levels(program: str) -> tuple[str | None, list[str]]:
    """(the doc-level call or None, the other calls) of a program."""
    doc, rest = None, []
    for call in program_calls(program):
        name = call.replace(" ", "")
        if name in (DROP_DOC, KEEP_DOC):
            doc = doc or name
        else:
            rest.append(call)
    return doc, rest


def _call_args(call: str) -> tuple[str, dict] | None:
    try:
        node = ast.parse(call.strip(), mode="eval").body
    except SyntaxError:
        return None
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        return None
    args = {}
    for kw in node.keywords:
        try:
            args[kw.arg] = ast.literal_eval(kw.value)
        except ValueError:
            return None
    return node.func.id, args


def chunk_programs(chunks: list[Chunk], calls: list[str]) -> list[str]:
    """The target program of each chunk, from the chunk-level calls of the whole document:
    a ``remove_lines`` range goes to the chunks it overlaps, cut to each; a ``normalize`` goes to
    the first chunk whose text holds its ``source_str``; ``skip_chunk()`` for a chunk with no call.
    Calls that do not parse are left out."""
    per: list[list[str]] = [[] for _ in chunks]
    for call in calls:
        parsed = _call_args(call)
        if parsed is None:
            continue
        name, args = parsed
        if name == "remove_lines" and isinstance(args.get("line_start"), int) and isinstance(args.get("line_end"), int):
            a, b = args["line_start"], args["line_end"]
            for k, c in enumerate(chunks):
                lo, hi = max(a, c.first_line), min(b, c.last_line)
                if lo <= hi:
                    per[k].append(remove_call(lo, hi))
        elif name == "normalize" and isinstance(args.get("source_str"), str):
            k = next((k for k, c in enumerate(chunks) if args["source_str"] in c.text), 0 if chunks else None)
            if k is not None:
                per[k].append(call.strip())
    return ["\n".join(p) if p else SKIP_CHUNK for p in per]


def chunk_targets(text: str, program: str, tokenizer, max_tokens: int = CHUNK_MAX_TOKENS) -> list[tuple[Chunk, str]]:
    """(chunk, its target program) for each chunk of ``text``, from the whole-document ``program``."""
    chunks = chunk_lines(text, tokenizer, max_tokens)
    return list(zip(chunks, chunk_programs(chunks, split_levels(program)[1])))


# ------------------------------------------------------------------------------------------ files


def annotate_files(inputs: list[str], output: str, level: str = "both", text_key: str = "text",
                   limit_docs: int | None = None, batch: int = 256, teacher: RuleTeacher | None = None) -> dict:
    """Write ``{"text", "program"}`` JSON lines for the documents of ``inputs`` (jsonl, parquet,
    WARC files, globs or folders, read by curate's readers) to ``output``: the training records of
    :func:`curate.refine.train.train_refiner`. Returns counts: docs, dropped (``drop_doc()``), with
    removals (at least one ``remove_lines``)."""
    import json

    from curate.tokenizer import iter_texts

    teacher = teacher or RuleTeacher()
    counts = {"docs": 0, "drop_doc": 0, "with_removals": 0}

    def flush(texts, f):
        for text, program in zip(texts, teacher.annotate(texts, level)):
            f.write(json.dumps({"text": text, "program": program}, ensure_ascii=False) + "\n")
            counts["docs"] += 1
            counts["drop_doc"] += DROP_DOC in program
            counts["with_removals"] += "remove_lines(" in program

    with open(output, "w", encoding="utf-8") as f:
        pending: list[str] = []
        for text in iter_texts(list(inputs), text_key, limit_docs):
            pending.append(text)
            if len(pending) >= batch:
                flush(pending, f)
                pending = []
        if pending:
            flush(pending, f)
    return counts


def main(argv=None) -> int:
    """``curate annotate-refiner INPUT... -o OUT.jsonl [--level both]``: the rule teacher's programs."""
    import argparse
    import json

    p = argparse.ArgumentParser(prog="curate annotate-refiner",
                                description="Write ProX programs derived from curate's rules (training data for a refiner).")
    p.add_argument("inputs", nargs="+", help="jsonl / parquet / WARC files, globs or folders")
    p.add_argument("-o", "--output", required=True, help="JSON-lines file of {text, program} records")
    p.add_argument("--level", choices=("doc", "chunk", "both"), default="both")
    p.add_argument("--text-key", default="text")
    p.add_argument("--limit-docs", type=int, default=None)
    a = p.parse_args(argv)
    print(json.dumps(annotate_files(a.inputs, a.output, a.level, a.text_key, a.limit_docs)))
    return 0
