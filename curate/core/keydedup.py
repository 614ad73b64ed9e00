"""Keep one document per key across the whole corpus, at any scale: a ``GlobalStage``.

Used by ``exact_dedup`` (key: hash of normalized text), ``url_dedup`` and the input id check.

1. ``send``: each view's 128-bit keys, split into hash partitions, as numpy arrays (one message per
   batch and partition, never one per document), with the rank that picks the survivor.
2. ``resolve``: per partition, sort by (key, rank, batch, row) and mark every row but the first of
   each key as a duplicate; the duplicates are grouped by batch in one pass (linear).
3. ``decide``: a batch's duplicates are dropped (or, for the id check, sent to errors).

Only 16-byte keys with a rank and a row number are shuffled; memory is bounded by one partition.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate import schema as S
from curate.core.global_stage import Decision, GlobalStage, Outbox, View
from curate.core.groups import groups


class KeyDedupStage(GlobalStage):
    """Base of key dedups: a subclass gives ``keys(batch)`` -> (keys (n, 2) uint64, valid mask or None,
    ranks: pa.Array to order duplicates by (smallest first) or None for input order)."""

    as_error: ClassVar[bool] = False  # duplicates are errors (the id check), not drops

    def keys(self, batch: pa.RecordBatch) -> tuple:
        raise NotImplementedError

    def send(self, view: View, out: Outbox) -> None:
        keys, valid, ranks = self.keys(view.batch)
        rows = view.rows
        if valid is not None:
            keys, rows = keys[valid], rows[valid]
            if ranks is not None:
                ranks = ranks.filter(pa.array(valid))
        if not len(rows):
            return
        partitions = self.ctx.partitions
        for part, idx in groups((keys[:, 1] % np.uint64(partitions)).astype(np.int64)):
            r = None if ranks is None else ranks.take(pa.array(idx))
            out.send(part, (out.path, keys[idx], r, rows[idx]))

    def resolve(self, partition: int, payloads: list):
        parts = sorted(payloads, key=lambda p: p[0])  # deterministic order: by batch path
        paths = [p[0] for p in parts]
        keys = np.concatenate([p[1] for p in parts])
        rows = np.concatenate([p[3] for p in parts])
        batch_idx = np.repeat(np.arange(len(parts), dtype=np.int64), [len(p[3]) for p in parts])
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
        for b, idx in groups(batch_idx[dup]):  # one pass over the duplicates, whatever the number of batches
            yield paths[int(b)], rows[dup[idx]]

    def decide(self, view: View, decisions: list, side=None) -> Decision:
        if not decisions:
            return Decision()
        pos = view.positions(np.concatenate(decisions))
        if self.as_error:
            return Decision(errors=pos, error_reason=self.reason)
        keep = np.ones(view.n, dtype=bool)
        keep[pos] = False
        return Decision(keep=keep)


class UniqueIds(KeyDedupStage):
    """The input id check: the first document of each id (in input order) is kept, the others are errors."""

    stage = "input_ids"
    reason = "duplicate id"
    as_error = True

    def keys(self, batch):
        return S.hash_strings128(batch.column(S.ID)), None, None
