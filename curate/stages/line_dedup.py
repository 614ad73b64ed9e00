"""Cross-document line (or paragraph) dedup: boilerplate that recurs across the corpus is removed.

In the spirit of RefinedWeb's and dolma's line-level dedup: a line that occurs in more than
``max_doc_frequency`` documents is removed from every document; a document left with fewer than
``min_chars`` characters is dropped as ``too_short_after_line_dedup``.

Exact counting, vectorized and sharded:

1. ``_Count``: each batch is materialized to scratch; every line is normalized (trimmed,
   whitespace folded, optionally lower-cased), hashed (xxh3, only the batch's distinct lines),
   counted once per document, and the per-batch (hash, document count) arrays are sent on in
   hash partitions.
2. ``_Frequent``: per partition the counts are summed; hashes above the threshold are the
   frequent set, which is usually small (boilerplate) and is broadcast as a sorted numpy array.
3. ``_Strip``: each batch is read back and its frequent lines are removed with Arrow list kernels.

Memory: one partition of line counts per worker, and the frequent set.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics

from curate import schema as S
from curate.core import exchange, progress
from curate.core.groups import groups
from curate.core.registry import GlobalStage, StageContext, register
from curate.core.stage import ERRORS, KEPT, REJECTED, Counts, emit_split
from curate.io.readers import read_ipc
from curate.io.writers import join, write_ipc

SEPARATORS = {"line": ("\n", "\n"), "paragraph": (r"\n[ \t\r]*\n", "\n\n")}


def split_units(text: pa.Array, unit: str, lowercase: bool):
    """(flat units, offsets per doc, normalized-unit hashes, blank mask)."""
    pattern, _ = SEPARATORS[unit]
    parts = pc.split_pattern(text, pattern) if unit == "line" else pc.split_pattern_regex(text, pattern)
    if isinstance(parts, pa.ChunkedArray):
        parts = parts.combine_chunks()
    offsets = parts.offsets.to_numpy().astype(np.int64)
    flat = parts.flatten()
    norm = pc.utf8_trim_whitespace(pc.replace_substring_regex(flat, r"\s+", " "))
    if lowercase:
        norm = pc.utf8_lower(norm)
    enc = pc.dictionary_encode(norm)
    hashes = S.hash_strings(enc.dictionary)[enc.indices.to_numpy()] if len(flat) else np.zeros(0, np.uint64)
    blank = S.blank_mask(flat) if len(flat) else np.zeros(0, bool)
    return flat, offsets, hashes, blank


class _Count(beam.DoFn):
    def __init__(self, folder: str, cfg: "LineDedup"):
        self.folder, self.cfg = folder, cfg

    def process(self, batch: pa.RecordBatch):
        path = join(self.folder, f"{S.batch_key(batch)}.arrow")
        write_ipc(batch, path)
        yield path
        _, offsets, h, blank = split_units(batch.column(S.TEXT), self.cfg.unit, self.cfg.lowercase)
        doc = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
        doc, h = doc[~blank], h[~blank]
        if not len(h):
            return
        order = np.lexsort([h, doc])
        doc, h = doc[order], h[order]
        first = np.concatenate([[True], (doc[1:] != doc[:-1]) | (h[1:] != h[:-1])])  # once per document
        uniq, counts = np.unique(h[first], return_counts=True)
        for p, idx in groups((uniq % np.uint64(self.cfg.partitions)).astype(np.int64)):
            yield beam.pvalue.TaggedOutput("counts", (int(p), (uniq[idx], counts[idx])))


class _Frequent(beam.DoFn):
    def __init__(self, threshold: int):
        self.threshold = threshold

    def process(self, item):
        _, parts = item
        h = np.concatenate([p[0] for p in parts])
        c = np.concatenate([p[1] for p in parts])
        order = np.argsort(h, kind="stable")
        h, c = h[order], c[order]
        starts = np.flatnonzero(np.concatenate([[True], h[1:] != h[:-1]]))
        totals = np.add.reduceat(c, starts)
        frequent = h[starts][totals > self.threshold]
        if len(frequent):
            yield frequent


def _merge(arrays) -> np.ndarray:
    arrays = list(arrays)
    return np.sort(np.concatenate(arrays)) if arrays else np.zeros(0, np.uint64)


class _Strip(beam.DoFn):
    def __init__(self, stage: str, cfg: "LineDedup", write_rejected: bool):
        self.stage, self.cfg, self.write_rejected = stage, cfg, write_rejected

    def setup(self):
        self.counts = Counts(self.stage)
        self.removed = Metrics.counter("curate.info", f"{self.stage}_units_removed")

    def process(self, path, frequent):
        batch = read_ipc(path)
        n = batch.num_rows
        self.counts.n_in.inc(n)
        progress.add(self.stage, n)
        flat, offsets, h, blank = split_units(batch.column(S.TEXT), self.cfg.unit, self.cfg.lowercase)
        if len(frequent) and len(h):
            idx = np.minimum(np.searchsorted(frequent, h), len(frequent) - 1)
            remove = (frequent[idx] == h) & ~blank
        else:
            remove = np.zeros(len(h), dtype=bool)
        n_removed = int(remove.sum())
        self.removed.inc(n_removed)
        if self.cfg.mode == "annotate":  # count what would go; text and documents stay
            per_doc = np.zeros(n, dtype=np.int64)
            np.add.at(per_doc, np.repeat(np.arange(n), np.diff(offsets)), remove.astype(np.int64))
            batch = S.set_column(batch, f"{self.stage}_removed", pa.array(per_doc))
            self.counts.kept.inc(n)
            yield batch
            return
        if n_removed:
            keep_before = np.concatenate([[0], np.cumsum(~remove)])
            lists = pa.ListArray.from_arrays(pa.array(keep_before[offsets], type=pa.int32()), flat.filter(pa.array(~remove)))
            batch = S.set_column(batch, S.TEXT, pc.binary_join(lists, SEPARATORS[self.cfg.unit][1]))
        chars = pc.utf8_length(pc.utf8_trim_whitespace(batch.column(S.TEXT))).to_numpy(zero_copy_only=False)
        keep = chars >= self.cfg.min_chars
        yield from emit_split(batch, keep, "too_short_after_line_dedup", self.counts, self.stage, self.write_rejected)


@register
@dataclass(kw_only=True)
class LineDedup(GlobalStage):
    """Remove lines (or paragraphs) found in more than max_doc_frequency documents of the corpus."""

    stage = "line_dedup"
    unit: Literal["line", "paragraph"] = "line"
    max_doc_frequency: int = 10
    lowercase: bool = False
    min_chars: int = 1
    partitions: int = 64
    mode: Literal["drop", "annotate"] = "drop"

    def __post_init__(self):
        if self.max_doc_frequency < 1:
            raise ValueError("max_doc_frequency must be >= 1")

    def build(self, ctx: StageContext):
        return _LineDedupTransform(self, ctx)


class _LineDedupTransform(beam.PTransform):
    def __init__(self, cfg: LineDedup, ctx: StageContext):
        super().__init__(label=ctx.name)
        self.cfg, self.ctx = cfg, ctx

    def expand(self, pcoll):
        cfg, ctx = self.cfg, self.ctx
        res = pcoll | "Count" >> beam.ParDo(_Count(join(ctx.tmp_dir, ctx.name), cfg)).with_outputs("counts", main="files")
        frequent = (res["counts"] | "GroupCounts" >> exchange.GroupByKey(ctx.spill("counts")) | "Frequent" >> beam.ParDo(_Frequent(cfg.max_doc_frequency))
                    | "Merge" >> beam.CombineGlobally(_merge))
        out = (res["files"] | "Strip" >> beam.ParDo(_Strip(ctx.name, cfg, ctx.write_rejected), beam.pvalue.AsSingleton(frequent))
               .with_outputs(ERRORS, REJECTED, main=KEPT))
        return {KEPT: out[KEPT], REJECTED: out[REJECTED], ERRORS: out[ERRORS]}
