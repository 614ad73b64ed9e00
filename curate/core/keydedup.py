"""Keep one document per key across the whole corpus, at any scale.

Used by ``exact_dedup`` (key: hash of normalized text), ``url_dedup`` and the input id check.

1. ``Materialize``: each batch is written to a temporary Arrow file; its 128-bit keys are sent on,
   split into ``partitions`` hash buckets, as numpy arrays (one element per batch and bucket, never
   one per document).
2. ``Resolve``: per bucket, sort by (key, rank, batch, row) and mark every row but the first of
   each key as a duplicate; the drops are grouped by batch file.
3. ``ApplyDrops``: each materialized batch is read back and split into kept / dropped.

Documents themselves never go through a shuffle, only 16-byte keys with a rank and a row number,
and no worker holds more than one bucket: memory is bounded by batch size and bucket size.
"""
from __future__ import annotations

from typing import Callable

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate import schema as S
from curate.core import exchange, progress
from curate.core.groups import groups
from curate.core.stage import ERRORS, KEPT, REJECTED, Counts, emit_split
from curate.io.readers import read_ipc
from curate.io.writers import join, write_ipc

# keyer(batch) -> (keys: (n, 2) uint64, valid: bool mask or None, ranks: pa.Array of strings or None)
Keyer = Callable[[pa.RecordBatch], tuple]


class _Materialize(beam.DoFn):
    def __init__(self, folder: str, keyer: Keyer, partitions: int):
        self.folder, self.keyer, self.partitions = folder, keyer, partitions

    def process(self, batch: pa.RecordBatch):
        key = S.batch_key(batch)
        path = join(self.folder, f"{key}.arrow")
        write_ipc(batch, path)
        yield path, batch.num_rows
        keys, valid, ranks = self.keyer(batch)
        rows = np.arange(batch.num_rows, dtype=np.int64)
        if valid is not None:
            keys, rows = keys[valid], rows[valid]
            if ranks is not None:
                ranks = ranks.filter(pa.array(valid))
        if not len(rows):
            return
        for bucket, idx in groups((keys[:, 1] % np.uint64(self.partitions)).astype(np.int64)):
            r = None if ranks is None else ranks.take(pa.array(idx))
            yield beam.pvalue.TaggedOutput("keys", (int(bucket), (path, keys[idx], r, rows[idx])))


class _Resolve(beam.DoFn):
    """One bucket: all rows but the first per key (by rank, then input order) are duplicates."""

    def process(self, item):
        _, parts = item
        parts = sorted(parts, key=lambda p: p[0])  # deterministic order: by batch path
        paths = [p[0] for p in parts]
        keys = np.concatenate([p[1] for p in parts])
        rows = np.concatenate([p[3] for p in parts])
        batch_idx = np.concatenate([np.full(len(p[3]), i, dtype=np.int64) for i, p in enumerate(parts)])
        sort_cols = [rows, batch_idx]
        if parts[0][2] is not None:
            ranks = pa.concat_arrays([p[2] for p in parts])
            sort_cols.append(np.asarray(pc.rank(ranks, sort_keys="ascending", tiebreaker="dense")))
        sort_cols += [keys[:, 1], keys[:, 0]]
        order = np.lexsort(sort_cols)
        k = keys[order]
        first = np.ones(len(k), dtype=bool)
        first[1:] = (k[1:, 0] != k[:-1, 0]) | (k[1:, 1] != k[:-1, 1])
        dup = order[~first]
        if not len(dup):
            return
        dup_batches = batch_idx[dup]
        dup_rows = rows[dup]
        for b in np.unique(dup_batches):
            yield paths[int(b)], dup_rows[dup_batches == b]


class _ApplyDrops(beam.DoFn):
    def __init__(self, stage: str, reason: str, as_error: bool, write_rejected: bool, annotate: bool):
        self.stage, self.reason, self.as_error = stage, reason, as_error
        self.write_rejected, self.annotate = write_rejected, annotate

    def setup(self):
        self.counts = Counts(self.stage)

    def process(self, item):
        path, grouped = item
        batch = read_ipc(path)
        n = batch.num_rows
        self.counts.n_in.inc(n)
        mask = np.ones(n, dtype=bool)
        for rows in grouped["drops"]:
            mask[rows] = False
        n_drop = int((~mask).sum())
        progress.add(self.stage, n)
        if n_drop and self.annotate:
            self.counts.flagged(self.reason, n_drop)
            batch = S.set_column(batch, f"{self.stage}_reason", pa.array(np.where(mask, None, self.reason).tolist(), type=pa.string()))
            mask[:] = True
        elif n_drop and self.as_error:
            self.counts.errors.inc(n_drop)
            dropped = S.keep_rows(batch, ~mask)
            file = S.source_file(batch)
            errs = [dict(stage=self.stage, file=file, location=f"batch {S.batch_key(batch)}", id=i,
                         reason=self.reason, n_records=1)
                    for i in dropped.column(S.ID).to_pylist()]
            yield beam.pvalue.TaggedOutput(ERRORS, S.with_key(S.errors_batch(errs), f"{self.stage}-{S.batch_key(batch)}"))
            batch, mask = S.keep_rows(batch, mask), np.ones(n - n_drop, dtype=bool)
        yield from emit_split(batch, mask, self.reason, self.counts, self.stage, self.write_rejected)


class KeyDedup(beam.PTransform):
    """Keep the first document per key (lowest rank, then input order); {'kept','rejected','errors'}."""

    def __init__(self, stage: str, keyer: Keyer, reason: str, tmp_dir: str, partitions: int = 64,
                 as_error: bool = False, write_rejected: bool = False, annotate: bool = False,
                 spill_dir: str | None = None):
        super().__init__(label=stage)
        self.stage, self.keyer, self.reason, self.tmp_dir = stage, keyer, reason, tmp_dir
        self.partitions, self.as_error, self.write_rejected, self.annotate = partitions, as_error, write_rejected, annotate
        self.spill_dir = spill_dir

    def expand(self, pcoll):
        folder = join(self.tmp_dir, self.stage)
        mat = pcoll | "Materialize" >> beam.ParDo(_Materialize(folder, self.keyer, self.partitions)).with_outputs("keys", main="files")
        drops = (mat["keys"] | "GroupBuckets" >> exchange.GroupByKey(self.spill_dir and join(self.spill_dir, "keys"))
                 | "Resolve" >> beam.ParDo(_Resolve()))
        joined = {"n": mat["files"], "drops": drops} | "Join" >> exchange.CoGroupByKey(
            self.spill_dir and join(self.spill_dir, "drops"), ("drops",))
        res = joined | "ApplyDrops" >> beam.ParDo(
            _ApplyDrops(self.stage, self.reason, self.as_error, self.write_rejected, self.annotate)
        ).with_outputs(ERRORS, REJECTED, main=KEPT)
        return {KEPT: res[KEPT], REJECTED: res[REJECTED], ERRORS: res[ERRORS]}
