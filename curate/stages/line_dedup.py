"""Cross-document line (or paragraph) dedup: boilerplate that recurs across the corpus is removed.

In the spirit of RefinedWeb's and dolma's line-level dedup: a line that occurs in more than
``max_doc_frequency`` documents is removed from every document; a document left with fewer than
``min_chars`` characters is dropped as ``too_short_after_line_dedup``.

Exact counting, vectorized and sharded:

1. ``send``: every line is normalized (trimmed, whitespace folded, optionally lower-cased), hashed
   (only the batch's distinct lines), counted once per document, and the per-batch (hash, document
   count) arrays are sent on in hash partitions.
2. ``resolve``: per partition the counts are summed; each batch gets back the frequent hashes among
   its own lines (a join by partition: the frequent set is never broadcast to every worker).
3. ``decide``: the batch's frequent lines are removed with Arrow list kernels; a later stage of the
   chain sees the rewritten text (the removal is replayed from the batch's frequent hashes).

Memory: one partition of line counts per worker.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics

from curate import schema as S
from curate.core.global_stage import Decision, GlobalStage
from curate.core.groups import groups
from curate.core.registry import register

SEPARATORS = {"line": ("\n", "\n"), "paragraph": (r"\n[ \t\r]*\n", "\n\n")}


def split_units(text: pa.Array, unit: str, lowercase: bool, keep_flat: bool = True):
    """(flat units or None, offsets per doc, normalized-unit hashes, blank mask).

    A unit is normalized (whitespace runs folded, trimmed, optionally lower-cased) only to be hashed;
    each intermediate is dropped as soon as the next exists, so a huge document costs about 3x its
    size here, not one copy per step."""
    pattern, _ = SEPARATORS[unit]
    parts = pc.split_pattern(text, pattern) if unit == "line" else pc.split_pattern_regex(text, pattern)
    if isinstance(parts, pa.ChunkedArray):
        parts = parts.chunk(0) if parts.num_chunks == 1 else parts.combine_chunks()  # one chunk: no copy
    offsets = parts.offsets.to_numpy().astype(np.int64)
    flat = parts.flatten()
    del parts
    if not len(flat):
        return (flat if keep_flat else None), offsets, np.zeros(0, np.uint64), np.zeros(0, bool)
    norm = S.fold_whitespace(flat)
    if not keep_flat:
        del flat
        flat = None
    norm = pc.utf8_trim_whitespace(norm)
    if lowercase:
        norm = pc.utf8_lower(norm)
    blank = np.asarray(pc.equal(pc.binary_length(norm), 0).fill_null(True))  # blank: nothing but whitespace
    hashes = S.hash_strings(norm)
    return flat, offsets, hashes, blank


def remove_units(text: pa.Array, frequent: np.ndarray, unit: str, lowercase: bool):
    """(text without the units whose hash is in ``frequent`` (sorted), units removed per document)."""
    lines = unit == "line"
    flat, offsets, h, blank = split_units(text, unit, lowercase, keep_flat=not lines)
    n = len(offsets) - 1
    if len(frequent) and len(h):
        idx = np.minimum(np.searchsorted(frequent, h), len(frequent) - 1)
        remove = (frequent[idx] == h) & ~blank
    else:
        remove = np.zeros(len(h), dtype=bool)
    per_doc = np.zeros(n, dtype=np.int64)
    np.add.at(per_doc, np.repeat(np.arange(n), np.diff(offsets)), remove.astype(np.int64))
    if not remove.any():
        return text, per_doc
    if lines:
        return _keep_lines(S.flat(text), offsets, ~remove), per_doc
    keep_before = np.concatenate([[0], np.cumsum(~remove)])
    kept = flat.filter(pa.array(~remove))
    del flat
    lists = pa.ListArray.from_arrays(pa.array(keep_before[offsets], type=pa.int32()), kept)
    del kept
    return pc.binary_join(lists, SEPARATORS[unit][1]), per_doc


def _keep_lines(text: pa.Array, offsets: np.ndarray, keep: np.ndarray) -> pa.Array:
    """``text`` with only the kept lines (``"\\n"``-separated, in order), rebuilt by copying runs of
    consecutive kept lines as byte ranges of the original buffer: one output buffer, no per-line
    strings (a huge document costs 1x its size here, not three copies)."""
    n = len(text)
    toff, data = S.string_buffers(text)
    n_lines = np.diff(offsets)
    doc = np.repeat(np.arange(n), n_lines)
    # byte positions of the "\\n"s of every document, in order
    nl = np.flatnonzero(data[toff[0]: toff[-1]] == 10) + toff[0] if len(data) else np.zeros(0, np.int64)
    nl_doc = np.searchsorted(toff, nl, "right") - 1
    # line j of document d starts after the (j-1)-th newline of d (or at the document's start)
    first_nl = np.searchsorted(nl_doc, np.arange(n), "left")
    j = np.arange(len(keep)) - offsets[doc]  # line number within its document
    prev_nl = first_nl[doc] + j - 1
    starts = np.where(j == 0, toff[doc], nl[np.maximum(prev_nl, 0)] + 1 if len(nl) else toff[doc])
    ends = np.where(j == n_lines[doc] - 1, toff[doc + 1], nl[np.minimum(first_nl[doc] + j, max(len(nl) - 1, 0))] if len(nl) else toff[doc + 1])
    lengths = np.zeros(n, np.int64)
    np.add.at(lengths, doc[keep], (ends - starts)[keep])
    kept_per_doc = np.bincount(doc[keep], minlength=n)
    lengths += np.maximum(kept_per_doc - 1, 0)  # the newlines between kept lines
    out = np.empty(int(lengths.sum()), np.uint8)
    # runs of consecutive kept lines of one document are one byte range of the original
    new_run = np.ones(len(keep), dtype=bool)
    new_run[1:] = ~keep[:-1] | (doc[1:] != doc[:-1])
    run_start = np.flatnonzero(keep & new_run)
    run_end = np.flatnonzero(keep & np.append(~keep[1:] | (doc[1:] != doc[:-1]), True))
    w, last_doc = 0, -1
    for a, b in zip(run_start.tolist(), run_end.tolist()):
        d = int(doc[a])
        if d == last_doc:
            out[w] = 10
            w += 1
        lo, hi = int(starts[a]), int(ends[b])
        out[w: w + hi - lo] = data[lo:hi]
        w += hi - lo
        last_doc = d
    return S.strings_like(text, lengths, out)


@register
@dataclass(kw_only=True)
class LineDedup(GlobalStage):
    """Remove lines (or paragraphs) found in more than max_doc_frequency documents of the corpus."""

    stage = "line_dedup"
    reason = "too_short_after_line_dedup"
    unit: Literal["line", "paragraph"] = "line"
    max_doc_frequency: int = 10
    lowercase: bool = False
    min_chars: int = 1
    partitions: int | None = None  # default: derived from the input's size
    mode: Literal["drop", "annotate"] = "drop"

    def send(self, view, out):
        """Per partition of line hashes: this batch's distinct lines and in how many of its documents each occurs."""
        _, offsets, h, blank = split_units(view.batch.column(S.TEXT), self.unit, self.lowercase, keep_flat=False)
        doc = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
        doc, h = doc[~blank], h[~blank]
        if not len(h):
            return
        order = np.lexsort([h, doc])
        doc, h = doc[order], h[order]
        first = np.concatenate([[True], (doc[1:] != doc[:-1]) | (h[1:] != h[:-1])])  # once per document
        uniq, counts = np.unique(h[first], return_counts=True)
        for p, idx in groups((uniq % np.uint64(self.ctx.partitions)).astype(np.int64)):
            out.send(p, (out.path, uniq[idx], counts[idx]))

    def resolve(self, partition, payloads):
        """Sum the counts of the partition; each batch gets back those of its lines that are frequent."""
        h = np.concatenate([p[1] for p in payloads])
        c = np.concatenate([p[2] for p in payloads])
        order = np.argsort(h, kind="stable")
        hs, cs = h[order], c[order]
        starts = np.flatnonzero(np.concatenate([[True], hs[1:] != hs[:-1]]))
        frequent = hs[starts][np.add.reduceat(cs, starts) > self.max_doc_frequency]
        if not len(frequent):
            return
        for path, uniq, _ in sorted(payloads, key=lambda p: p[0]):
            mine = uniq[np.isin(uniq, frequent, assume_unique=True)]
            if len(mine):
                yield path, mine

    def decide(self, view, decisions, side=None):
        frequent = np.unique(np.concatenate(decisions)) if decisions else np.zeros(0, np.uint64)
        text, removed = remove_units(view.batch.column(S.TEXT), frequent, self.unit, self.lowercase)
        Metrics.counter("curate.info", f"{self.ctx.name}_units_removed").inc(int(removed.sum()))
        chars = pc.utf8_length(pc.utf8_trim_whitespace(text)).to_numpy(zero_copy_only=False)
        keep = chars >= self.min_chars
        if self.mode == "annotate":  # count and mark what would go; text and documents stay
            return Decision(keep=keep, columns={f"{self.ctx.name}_removed": pa.array(removed)})
        return Decision(keep=keep, rewrite=frequent if len(frequent) else None, text=text)

    def rewrite(self, batch, data):
        return remove_units(batch.column(S.TEXT), data, self.unit, self.lowercase)[0]
