"""Connected components of a graph in Beam, without collecting the edges on one worker.

Edges travel as numpy arrays in ``partitions`` node-hash partitions (never one element per edge).
Each round applies *large-star* then *small-star* (Kiveris et al., "Connected Components in
MapReduce and Beyond", 2014) per partition, vectorized; both operations keep the components and
turn every component into a star around its smallest node in O(log n) rounds.

Beam graphs have no loops, so ``rounds`` rounds are unrolled; a converged graph passes through a
round unchanged. Then every node takes the label min(itself, its neighbours), and every edge is
checked: where the two ends disagree, the component has not converged yet. Only those label pairs
(normally none) go to a single worker, which finishes them with a union-find and broadcasts the
corrections as a side input. The result is exact for any graph; ``rounds`` only trades shuffles
for the size of that residual, which is reported as a metric.
"""
from __future__ import annotations

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from curate.core import exchange
from curate.core.groups import groups
from curate.io.writers import join


def _part(nodes: np.ndarray, partitions: int) -> np.ndarray:
    return ((nodes * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)) % np.uint64(partitions)


def split_by_partition(src: np.ndarray, dst: np.ndarray, partitions: int):
    """Yield (partition, (src, dst)) for edges keyed by their source node."""
    for p, idx in groups(_part(src, partitions).astype(np.int64)):
        yield int(p), (src[idx], dst[idx])


def both_directions(src: np.ndarray, dst: np.ndarray):
    keep = src != dst
    src, dst = src[keep], dst[keep]
    return np.concatenate([src, dst]), np.concatenate([dst, src])


def _gather(parts) -> tuple[np.ndarray, np.ndarray]:
    parts = list(parts)
    if not parts:
        return np.zeros(0, np.uint64), np.zeros(0, np.uint64)
    src = np.concatenate([p[0] for p in parts])
    dst = np.concatenate([p[1] for p in parts])
    pairs = np.unique(np.stack([src, dst], axis=1), axis=0)
    return pairs[:, 0], pairs[:, 1]


def _group_min(src: np.ndarray, dst: np.ndarray):
    """For edges sorted by src: per-edge min(src, min over the src's neighbours)."""
    starts = np.flatnonzero(np.concatenate([[True], src[1:] != src[:-1]]))
    mins = np.minimum.reduceat(dst, starts)
    sizes = np.diff(np.concatenate([starts, [len(src)]]))
    return np.minimum(np.repeat(mins, sizes), src)


def large_star(src: np.ndarray, dst: np.ndarray):
    m = _group_min(src, dst)
    sel = dst > src
    return both_directions(dst[sel], m[sel])


def small_star(src: np.ndarray, dst: np.ndarray):
    sel = dst < src
    s, d = src[sel], dst[sel]
    if not len(s):
        return np.zeros(0, np.uint64), np.zeros(0, np.uint64)
    m = _group_min(s, d)
    # every smaller neighbour, and the node itself, attaches to m
    nodes = np.concatenate([d, np.unique(s)])
    uniq_s, first = np.unique(s, return_index=True)
    roots = np.concatenate([m, m[first]])
    return both_directions(nodes, roots)


class _Star(beam.DoFn):
    def __init__(self, op: str, partitions: int):
        self.op, self.partitions = op, partitions

    def process(self, item):
        _, parts = item
        src, dst = _gather(parts)
        if not len(src):
            return
        new_src, new_dst = (large_star if self.op == "large" else small_star)(src, dst)
        yield from split_by_partition(new_src, new_dst, self.partitions)


class _Labels(beam.DoFn):
    """Per partition: label(u) = min(u, N(u)); claims (v, label(u)) sent to v's partition."""

    def __init__(self, partitions: int):
        self.partitions = partitions

    def process(self, item):
        partition, parts = item
        src, dst = _gather(parts)
        if not len(src):
            return
        m = _group_min(src, dst)
        starts = np.flatnonzero(np.concatenate([[True], src[1:] != src[:-1]]))
        yield beam.pvalue.TaggedOutput("labels", (partition, (src[starts], m[starts])))
        # claim to each neighbour: "my label is ..."
        yield from split_by_partition(dst, m, self.partitions)


class _Check(beam.DoFn):
    """Compare claims with local labels; mismatching label pairs are the unconverged residual."""

    def __init__(self):
        self.residual = Metrics.counter("curate.info", "components_residual_pairs")

    def process(self, item):
        _, grouped = item
        labels = list(grouped["labels"])
        claims = list(grouped["claims"])
        if not labels or not claims:
            return
        nodes = np.concatenate([l[0] for l in labels])
        lab = np.concatenate([l[1] for l in labels])
        order = np.argsort(nodes)
        nodes, lab = nodes[order], lab[order]
        c_nodes = np.concatenate([c[0] for c in claims])
        c_lab = np.concatenate([c[1] for c in claims])
        idx = np.searchsorted(nodes, c_nodes)
        mine = lab[idx]
        bad = mine != c_lab
        if bad.any():
            pairs = np.unique(np.stack([mine[bad], c_lab[bad]], axis=1), axis=0)
            self.residual.inc(len(pairs))
            yield pairs


def _union_find(pair_arrays) -> dict[int, int]:
    parent: dict[int, int] = {}

    def find(x):
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:
            parent[x], x = root, parent[x]
        return root

    for pairs in pair_arrays:
        for a, b in pairs.tolist():
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    return {x: find(x) for x in list(parent)}


class _Relabel(beam.DoFn):
    def process(self, item, fixes):
        _, parts = item
        for nodes, labels in parts:
            if fixes:
                labels = np.array([fixes.get(int(l), int(l)) for l in labels.tolist()], dtype=np.uint64)
            yield nodes, labels


class ConnectedComponents(beam.PTransform):
    """(partition, (src, dst)) undirected edge arrays -> (nodes, component label = smallest node) arrays."""

    def __init__(self, partitions: int = 64, rounds: int = 6, label: str = "components", spill_dir: str | None = None):
        super().__init__(label=label)
        self.partitions, self.rounds, self.spill_dir = partitions, rounds, spill_dir

    def _group(self, name: str):
        return exchange.GroupByKey(self.spill_dir and join(self.spill_dir, name))

    def expand(self, edges):
        for r in range(self.rounds):
            edges = (edges | f"GroupL{r}" >> self._group(f"l{r}")
                     | f"LargeStar{r}" >> beam.ParDo(_Star("large", self.partitions)))
            edges = (edges | f"GroupS{r}" >> self._group(f"s{r}")
                     | f"SmallStar{r}" >> beam.ParDo(_Star("small", self.partitions)))
        labelled = (edges | "GroupFinal" >> self._group("final")
                    | "Labels" >> beam.ParDo(_Labels(self.partitions)).with_outputs("labels", main="claims"))
        residual = ({"labels": labelled["labels"], "claims": labelled["claims"]}
                    | "JoinClaims" >> exchange.CoGroupByKey(self.spill_dir and join(self.spill_dir, "claims"), ("labels", "claims"))
                    | "Check" >> beam.ParDo(_Check()))
        fixes = residual | "Residual" >> beam.combiners.ToList() | "UnionFind" >> beam.Map(_union_find)
        return (labelled["labels"] | "GroupLabels" >> self._group("labels")
                | "Relabel" >> beam.ParDo(_Relabel(), beam.pvalue.AsSingleton(fixes)))
