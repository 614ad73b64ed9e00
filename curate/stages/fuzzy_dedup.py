"""MinHash-LSH near-duplicate detection with distributed connected components.

Steps (each a Beam transform; documents never go through a shuffle, only 64-bit keys and ids):

1. ``_Signatures``: every batch is materialized to a scratch Arrow file; its MinHash signatures
   (vectorized, see ``curate.core.minhash``) are cut into ``bands`` x ``rows`` band keys, sent on
   in key-hash partitions as numpy arrays together with 64-bit document uids.
2. ``_Buckets``: per partition, documents sharing a band key form a bucket; each bucket becomes a
   star of candidate edges around its smallest uid (enough for connectivity).
3. ``ConnectedComponents``: clusters = connected components of all candidate edges, so A~B and
   B~C put A, B and C together even if A and C share no bucket.
4. ``_Ranks`` / ``_Survivors``: the members' ids (and optional score) are fetched from their
   batches; per cluster the survivor is the highest score, then the smallest id.
5. ``_Apply``: each batch is read back once; ``drop`` keeps survivors and documents in no
   cluster, ``annotate`` keeps all and adds ``dup_cluster`` (the survivor's id) and
   ``dup_cluster_size``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import apache_beam as beam
import numpy as np
import pyarrow as pa

from curate import schema as S
from curate.core import minhash
from curate.core import exchange
from curate.core.groups import groups
from curate.core.components import ConnectedComponents, both_directions, split_by_partition
from curate.core.global_stage import MSG, STATES, Decision, GlobalStage, StageContext, apply_step, build_view, send_step
from curate.core.registry import register
from curate.core.stage import ERRORS, REJECTED
from curate.io.writers import join

# uid = file (20 bits) | shard (14) | batch (14) | row (16)
_LIMITS = (1 << 20, 1 << 14, 1 << 14, 1 << 16)


def uid_base(batch_key: str) -> int:
    try:
        f, s, b = (int(x) for x in batch_key.split("-"))
    except ValueError:
        raise ValueError(f"fuzzy_dedup: unexpected batch key {batch_key!r}") from None
    if f >= _LIMITS[0] or s >= _LIMITS[1] or b >= _LIMITS[2]:
        raise ValueError(f"fuzzy_dedup: batch {batch_key} is beyond {_LIMITS[:3]} files/shards/batches; "
                         "raise input.batch_size or input.split_bytes")
    return (f << 44) | (s << 30) | (b << 16)


def key_of_uid(uid: int) -> str:
    return f"{uid >> 44:05d}-{(uid >> 30) & 0x3FFF:05d}-{(uid >> 16) & 0x3FFF:05d}"


def _split_uids(uids: np.ndarray, folder: str):
    """Group uids by batch: yields (batch path, rows, index into uids)."""
    for base, idx in groups(uids >> np.uint64(16)):
        key = key_of_uid(int(base) << 16)
        yield join(folder, f"{key}.arrow"), (uids[idx] & np.uint64(0xFFFF)).astype(np.int64), idx


class _Buckets(beam.DoFn):
    """Documents sharing a band key: star edges (smallest uid, member).

    Without verification the edges go straight to the components (both directions, partitioned);
    with it, the raw (head, member) pairs go to the verification joins.
    """

    def __init__(self, partitions: int, raw_pairs: bool = False):
        self.partitions, self.raw_pairs = partitions, raw_pairs

    def process(self, item):
        _, parts = item
        keys = np.concatenate([p[0] for p in parts])
        uids = np.concatenate([p[1] for p in parts])
        order = np.lexsort([uids, keys])
        keys, uids = keys[order], uids[order]
        first = np.concatenate([[True], keys[1:] != keys[:-1]])
        group = np.cumsum(first) - 1
        head = uids[first][group]
        member = ~first & (uids != head)
        if not member.any():
            return
        if self.raw_pairs:
            yield head[member], uids[member]
            return
        src, dst = both_directions(head[member], uids[member])
        yield from split_by_partition(src, dst, self.partitions)


def _shingle_sets(batch: pa.RecordBatch, rows: np.ndarray, ngram: int, seed: int) -> list[np.ndarray]:
    """Distinct shingle hashes of the given rows, one sorted array per row."""
    sh, counts = minhash.shingles(batch.column(S.TEXT).take(pa.array(rows)), ngram, seed)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return [np.unique(sh[bounds[i] : bounds[i + 1]]) for i in range(len(rows))]


class _PairsByHead(beam.DoFn):
    def __init__(self, folder: str):
        self.folder = folder

    def process(self, pairs):
        heads, members = pairs
        for path, rows, idx in _split_uids(heads, self.folder):
            yield path, (rows, heads[idx], members[idx])


class _HeadShingles(beam.DoFn):
    """Shingle sets of the pair heads, sent to the members' batches."""

    def __init__(self, folder: str, ngram: int, seed: int, chain: tuple):
        self.folder, self.ngram, self.seed, self.chain = folder, ngram, seed, chain

    def process(self, item):
        path, grouped = item
        pairs, states = list(grouped["pairs"]), list(grouped[STATES])
        if not pairs or not states:
            return
        rows = np.concatenate([p[0] for p in pairs])
        heads = np.concatenate([p[1] for p in pairs])
        members = np.concatenate([p[2] for p in pairs])
        uniq_rows, inverse = np.unique(rows, return_inverse=True)
        view = build_view(states[0], self.chain)
        sets = _shingle_sets(view.batch, view.positions(uniq_rows), self.ngram, self.seed)
        for mpath, _, idx in _split_uids(members, self.folder):
            yield mpath, (heads[idx], members[idx], [sets[inverse[i]] for i in idx])


class _Verify(beam.DoFn):
    """Exact Jaccard of each candidate pair's shingle sets; pairs below the threshold are dropped."""

    def __init__(self, partitions: int, ngram: int, seed: int, threshold: float, chain: tuple):
        self.partitions, self.ngram, self.seed, self.threshold, self.chain = partitions, ngram, seed, threshold, chain

    def setup(self):
        from apache_beam.metrics import Metrics

        self.checked = Metrics.counter("curate.info", "fuzzy_pairs_checked")
        self.rejected = Metrics.counter("curate.info", "fuzzy_pairs_below_threshold")

    def process(self, item):
        path, grouped = item
        heads_in, states = list(grouped["heads"]), list(grouped[STATES])
        if not heads_in or not states:
            return
        view = build_view(states[0], self.chain)
        base = uid_base(states[0].key)
        heads = np.concatenate([h[0] for h in heads_in])
        members = np.concatenate([h[1] for h in heads_in])
        head_sets = [s for h in heads_in for s in h[2]]
        rows = (members - np.uint64(base)).astype(np.int64)
        uniq_rows, inverse = np.unique(rows, return_inverse=True)
        member_sets = _shingle_sets(view.batch, view.positions(uniq_rows), self.ngram, self.seed)
        keep = np.zeros(len(heads), dtype=bool)
        for i, (hs, mi) in enumerate(zip(head_sets, inverse)):
            ms = member_sets[mi]
            inter = len(np.intersect1d(hs, ms, assume_unique=True))
            union = len(hs) + len(ms) - inter
            keep[i] = union > 0 and inter / union >= self.threshold
        self.checked.inc(len(keep))
        self.rejected.inc(int((~keep).sum()))
        if keep.any():
            src, dst = both_directions(heads[keep], members[keep])
            yield from split_by_partition(src, dst, self.partitions)


class _ByBatch(beam.DoFn):
    """(nodes, labels) -> (batch path, (rows, labels))."""

    def __init__(self, folder: str):
        self.folder = folder

    def process(self, item):
        nodes, labels = item
        for path, rows, idx in _split_uids(nodes, self.folder):
            yield path, (rows, labels[idx])


class _Ranks(beam.DoFn):
    """For batches with cluster members: (label partition, (labels, uids, ids, scores))."""

    def __init__(self, partitions: int, score_column: str | None, chain: tuple):
        self.partitions, self.score_column, self.chain = partitions, score_column, chain

    def process(self, item):
        path, grouped = item
        members, states = list(grouped["members"]), list(grouped[STATES])
        if not members or not states:
            return
        rows = np.concatenate([m[0] for m in members])
        labels = np.concatenate([m[1] for m in members])
        view = build_view(states[0], self.chain)
        batch, at = view.batch, pa.array(view.positions(rows))
        ids = batch.column(S.ID).take(at)
        if self.score_column and self.score_column in batch.schema.names:
            scores = batch.column(self.score_column).take(at).cast(pa.float64()).fill_null(float("-inf"))
            scores = scores.to_numpy(zero_copy_only=False)
        else:
            scores = np.zeros(len(rows))
        base = uid_base(states[0].key)
        uids = np.uint64(base) + rows.astype(np.uint64)
        for p, idx in groups((labels % np.uint64(self.partitions)).astype(np.int64)):
            yield int(p), (labels[idx], uids[idx], ids.take(pa.array(idx)), scores[idx])


class _Survivors(beam.DoFn):
    """Per cluster: survivor = highest score, then smallest id. Marks per batch."""

    def __init__(self, folder: str):
        self.folder = folder

    def process(self, item):
        _, parts = item
        labels = np.concatenate([p[0] for p in parts])
        uids = np.concatenate([p[1] for p in parts])
        ids = pa.concat_arrays([p[2] for p in parts])
        scores = np.concatenate([p[3] for p in parts])
        id_rank = np.asarray(pa.compute.rank(ids, sort_keys="ascending", tiebreaker="dense"))
        order = np.lexsort([uids, id_rank, -scores, labels])
        labels, uids, scores = labels[order], uids[order], scores[order]
        ids = ids.take(pa.array(order))
        first = np.concatenate([[True], labels[1:] != labels[:-1]])
        group = np.cumsum(first) - 1
        sizes = np.bincount(group)
        survivor_pos = np.flatnonzero(first)[group]
        cluster = ids.take(pa.array(survivor_pos))
        for path, rows, idx in _split_uids(uids, self.folder):
            yield path, (rows, first[idx], cluster.take(pa.array(idx)), sizes[group[idx]])


@register
@dataclass(kw_only=True)
class FuzzyDedup(GlobalStage):
    """MinHash-LSH near-duplicate clusters (word n-grams), connected components, one survivor per cluster."""

    stage = "fuzzy_dedup"
    reason = "near_duplicate"
    ngram: int = 5
    bands: int = 14
    rows: int = 8
    threshold: float | None = None  # when set, bands/rows are chosen for it within num_perm hashes
    num_perm: int = 112
    seed: int = 1
    partitions: int | None = None  # default: derived from the input's size
    rounds: int = 6
    score_column: str | None = None
    verify: bool = False  # check candidate pairs by exact Jaccard of their shingle sets
    verify_threshold: float | None = None  # default: `threshold`, else the LSH curve's midpoint
    mode: Literal["drop", "annotate"] = "drop"

    def __post_init__(self):
        if self.threshold is not None:
            if not 0 < self.threshold < 1:
                raise ValueError(f"threshold must be between 0 and 1, got {self.threshold}")
            self.bands, self.rows = minhash.optimal_bands(self.threshold, self.num_perm)
        if self.ngram < 1 or self.bands < 1 or self.rows < 1:
            raise ValueError("ngram, bands and rows must be >= 1")

    def send(self, view, out):
        """MinHash signatures cut into band keys, sent by key partition with 64-bit document uids."""
        base = uid_base(S.batch_key(view.batch))
        if view.n and int(view.rows[-1]) >= _LIMITS[3]:
            raise ValueError(f"fuzzy_dedup: batches of {view.rows[-1] + 1} documents; input.batch_size must be < 65536")
        sig, valid = minhash.signatures(view.batch.column(S.TEXT), self.ngram, self.bands * self.rows, self.seed)
        pos = np.flatnonzero(valid)
        if not len(pos):
            return
        keys = minhash.band_keys(sig[pos], self.bands, self.rows).reshape(-1)
        uids = np.repeat(np.uint64(base) + view.rows[pos].astype(np.uint64), self.bands)
        for part, idx in groups((keys % np.uint64(self.ctx.partitions)).astype(np.int64)):
            out.send(part, (keys[idx], uids[idx]))

    def decide(self, view, decisions, side=None):
        """``drop`` keeps survivors and documents in no cluster; ``annotate`` adds the cluster columns."""
        n = view.n
        keep = np.ones(n, dtype=bool)
        cluster = np.full(n, None, dtype=object)
        size = np.zeros(n, dtype=np.int64)
        for rows, is_survivor, cl, sz in decisions:
            pos = view.positions(rows)
            keep[pos[~is_survivor]] = False
            cluster[pos] = cl.to_pylist()
            size[pos] = sz
        columns = {"dup_cluster": pa.array(cluster.tolist(), type=pa.string()),
                   "dup_cluster_size": pa.array(np.where(size > 0, size, None).tolist(), type=pa.int64())}
        if self.mode == "annotate":
            return Decision(keep=keep, columns=columns)
        return Decision(keep=keep, rejected_columns={"dup_cluster": columns["dup_cluster"]})

    def expand_step(self, states, ctx: StageContext):
        folder = ctx.folder
        sent = send_step(self, states, ctx)
        states = sent[STATES]
        edges = (sent[MSG] | "GroupBands" >> exchange.GroupByKey(ctx.spill("bands"))
                 | "Buckets" >> beam.ParDo(_Buckets(ctx.partitions, raw_pairs=self.verify)))
        if self.verify:
            threshold = self.verify_threshold or self.threshold or minhash.jaccard_threshold(self.bands, self.rows)
            pairs = edges | "PairsByHead" >> beam.ParDo(_PairsByHead(folder))
            heads = ({STATES: states, "pairs": pairs} | "JoinHeads" >> exchange.CoGroupByKey(ctx.spill("pairs"), (STATES, "pairs"))
                     | "HeadShingles" >> beam.ParDo(_HeadShingles(folder, self.ngram, self.seed, ctx.chain)))
            edges = ({STATES: states, "heads": heads} | "JoinPairs" >> exchange.CoGroupByKey(ctx.spill("heads"), (STATES, "heads"))
                     | "Verify" >> beam.ParDo(_Verify(ctx.partitions, self.ngram, self.seed, threshold, ctx.chain)))
        comps = edges | "Components" >> ConnectedComponents(ctx.partitions, self.rounds, spill_dir=ctx.spill("cc"))
        members = comps | "ByBatch" >> beam.ParDo(_ByBatch(folder))
        ranks = ({STATES: states, "members": members}
                 | "JoinMembers" >> exchange.CoGroupByKey(ctx.spill("members"), (STATES, "members"))
                 | "Ranks" >> beam.ParDo(_Ranks(ctx.partitions, self.score_column, ctx.chain)))
        marks = (ranks | "GroupClusters" >> exchange.GroupByKey(ctx.spill("ranks"))
                 | "Survivors" >> beam.ParDo(_Survivors(folder)))
        applied = apply_step(self, states, marks, ctx)
        return {STATES: applied[STATES], ERRORS: (sent[ERRORS], applied[ERRORS]) | "Errors" >> beam.Flatten(),
                REJECTED: applied[REJECTED]}
