"""Stage machinery: rules stay small, counting, drop reasons and error routing live here once.

A *rule* is a small dataclass whose fields are its recipe parameters:

* ``Filter``  -- ``filter(batch, scores)`` returns a keep mask (or ``(mask, reasons)``);
  optional ``score(batch)`` adds statistic columns that the filter decides on.
* ``Scorer``  -- ``score(batch)`` returns new columns; drops nothing.
* ``Mapper``  -- ``map(batch)`` returns the rewritten ``text`` array, or ``(text, drop reasons, columns)``:
  a reason (or None) per document for the ones it drops, and new columns.

``RuleStage`` wraps any rule into a composite ``beam.PTransform`` whose output is a dict of
PCollections: ``kept`` (record batches), ``rejected`` (dropped rows with ``drop_stage`` and
``drop_reason``) and ``errors`` (error records). Every document a stage sees is counted through
Beam metrics as exactly one of kept / dropped(reason) / error, so the ledger balances.
"""
from __future__ import annotations

import dataclasses
import traceback
from dataclasses import dataclass
from typing import ClassVar, Literal

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.metrics import Metrics

from curate import schema as S
from curate.core import progress

NAMESPACE = "curate"
KEPT, REJECTED, ERRORS = "kept", "rejected", "errors"


def counter(stage: str, kind: str, reason: str | None = None):
    name = f"{stage}|{kind}" if reason is None else f"{stage}|{kind}|{reason}"
    return Metrics.counter(NAMESPACE, name)


class Counts:
    """Per-stage counters, created once per DoFn instance."""

    def __init__(self, stage: str):
        self.stage = stage
        self.n_in = counter(stage, "in")
        self.kept = counter(stage, "kept")
        self.errors = counter(stage, "errors")
        self._dropped: dict[str, object] = {}
        self._flagged: dict[str, object] = {}

    def dropped(self, reason: str, n: int):
        if n:
            c = self._dropped.get(reason)
            if c is None:
                c = self._dropped[reason] = counter(self.stage, "dropped", reason)
            c.inc(int(n))

    def flagged(self, reason: str, n: int):
        if n:
            c = self._flagged.get(reason)
            if c is None:
                c = self._flagged[reason] = counter(self.stage, "flagged", reason)
            c.inc(int(n))


@dataclass(kw_only=True)
class Rule:
    """Base of all rules. Subclasses are dataclasses: their fields are the recipe parameters."""

    stage: ClassVar[str] = ""  # the name used in recipes
    kind: ClassVar[str] = "rule"

    def setup(self) -> None:
        """Load models or build tables; called once per worker before the first batch."""

    @classmethod
    def describe(cls) -> str:
        return (cls.__doc__ or "").strip().split("\n")[0]


@dataclass(kw_only=True)
class Filter(Rule):
    """Keeps or drops documents. ``mode: annotate`` drops nothing and adds ``<stage>_reason``."""

    kind: ClassVar[str] = "filter"
    reason: ClassVar[str] = "filtered"
    mode: Literal["drop", "annotate"] = "drop"
    add_scores: bool = False

    def score(self, batch: pa.RecordBatch) -> dict[str, pa.Array]:
        return {}

    def filter(self, batch: pa.RecordBatch, scores: dict[str, pa.Array]):
        raise NotImplementedError


@dataclass(kw_only=True)
class Scorer(Rule):
    """Adds score columns; drops nothing."""

    kind: ClassVar[str] = "scorer"

    def score(self, batch: pa.RecordBatch) -> dict[str, pa.Array]:
        raise NotImplementedError


@dataclass(kw_only=True)
class Mapper(Rule):
    """Rewrites ``text``. A document whose text becomes empty is dropped as ``empty_after_<stage>``;
    ``map`` may also return ``(text, reasons, columns)`` to drop documents with reasons of its own."""

    kind: ClassVar[str] = "mapper"

    def map(self, batch: pa.RecordBatch) -> pa.Array:
        raise NotImplementedError


# ------------------------------------------------------------------------------------ applying rules


def _reasons_for(result, n: int, default: str):
    """Normalize a filter result to (keep mask, reasons array or None)."""
    if isinstance(result, tuple):
        mask, reasons = result
    else:
        mask, reasons = result, None
    mask = np.asarray(mask.to_numpy(zero_copy_only=False) if isinstance(mask, (pa.Array, pa.ChunkedArray)) else mask, dtype=bool)
    if mask.shape != (n,):
        raise ValueError(f"filter returned a mask of shape {mask.shape} for {n} documents")
    if reasons is None:
        reasons = np.where(mask, None, default).astype(object)
    else:
        reasons = np.asarray(reasons.to_pylist() if isinstance(reasons, (pa.Array, pa.ChunkedArray)) else reasons, dtype=object)
        reasons = np.where(mask, None, np.where(reasons == None, default, reasons))  # noqa: E711
    return mask, reasons


def apply_rule(rule: Rule, batch: pa.RecordBatch):
    """Run a rule on one batch. Returns (output batch with new columns, keep mask, reasons)."""
    n = batch.num_rows
    if isinstance(rule, Filter):
        scores = rule.score(batch)
        mask, reasons = _reasons_for(rule.filter(batch, scores), n, rule.reason)
        out = batch
        if rule.add_scores or rule.mode == "annotate":
            for k, v in scores.items():
                out = S.set_column(out, k, v)
        return out, mask, reasons
    if isinstance(rule, Scorer):
        out = batch
        for k, v in rule.score(batch).items():
            if len(v) != n:
                raise ValueError(f"scorer returned {len(v)} values for {n} documents in column {k!r}")
            out = S.set_column(out, k, v)
        return out, np.ones(n, dtype=bool), np.full(n, None, dtype=object)
    if isinstance(rule, Mapper):
        result = rule.map(batch)
        drops, columns = None, {}
        if isinstance(result, tuple):  # (text, drop reason per document or None, new columns)
            result, drops, columns = result
        text = result
        if len(text) != n:
            raise ValueError(f"mapper returned {len(text)} texts for {n} documents")
        out = S.set_column(batch, S.TEXT, text)
        for k, v in columns.items():
            if len(v) != n:
                raise ValueError(f"mapper returned {len(v)} values for {n} documents in column {k!r}")
            out = S.set_column(out, k, v)
        mask = ~S.blank_mask(out.column(S.TEXT))
        reasons = np.where(mask, None, f"empty_after_{rule.stage}").astype(object)
        if drops is not None:
            drops = np.asarray(drops, dtype=object)
            chosen = drops != None  # noqa: E711 - element-wise
            reasons = np.where(chosen, drops, reasons)
            mask = mask & ~chosen
        return out, mask, reasons
    raise TypeError(f"{type(rule).__name__} is not a Filter, Scorer or Mapper")


def apply_isolating_errors(rule: Rule, batch: pa.RecordBatch, stage: str):
    """Apply ``rule``; if it raises, bisect the batch to isolate the documents that fail.

    Returns (list of (part, mask, reasons), list of error dicts). The good parts keep their order.
    """
    try:
        return [apply_rule(rule, batch)], []
    except Exception as e:
        if batch.num_rows <= 1:
            rid = batch.column(S.ID)[0].as_py() if batch.num_rows else None
            text = batch.column(S.TEXT)[0].as_py() if batch.num_rows else None
            tb = traceback.format_exception_only(type(e), e)[-1].strip()
            return [], [dict(stage=stage, file=None, location=S.batch_key(batch), id=rid, reason=f"{tb}", n_records=1, snippet=text)]
        half = batch.num_rows // 2
        left = S.with_key(batch.slice(0, half), S.batch_key(batch))
        right = S.with_key(batch.slice(half), S.batch_key(batch))
        lp, le = apply_isolating_errors(rule, left, stage)
        rp, re_ = apply_isolating_errors(rule, right, stage)
        return lp + rp, le + re_


def apply_routing_errors(rule: Rule, batch: pa.RecordBatch, stage: str, counts: "Counts"):
    """``apply_isolating_errors`` plus counting: (good parts, TaggedOutput of error records or None)."""
    parts, errors = apply_isolating_errors(rule, batch, stage)
    if not errors:
        return parts, None
    counts.errors.inc(sum(e["n_records"] for e in errors))
    return parts, beam.pvalue.TaggedOutput(ERRORS, S.with_key(S.errors_batch(errors), f"{stage}-{S.batch_key(batch)}"))


def concat(batches: list[pa.RecordBatch], key: str) -> pa.RecordBatch:
    if len(batches) == 1:
        return batches[0]
    table = pa.Table.from_batches(batches, schema=batches[0].schema).combine_chunks()
    merged = table.to_batches()[0] if table.num_rows else pa.RecordBatch.from_pylist([], schema=table.schema)
    return S.with_key(merged, key)


def rejected_rows(batch: pa.RecordBatch, mask: np.ndarray, reasons: np.ndarray, stage: str) -> pa.RecordBatch:
    drop = ~mask
    out = S.keep_rows(batch, drop)
    out = S.set_column(out, "drop_stage", pa.array([stage] * out.num_rows, type=pa.string()))
    return S.set_column(out, "drop_reason", pa.array(reasons[drop].tolist(), type=pa.string()))


class ApplyRule(beam.DoFn):
    """The one DoFn that wraps every per-batch rule: apply, count, route drops and errors."""

    def __init__(self, rule: Rule, stage: str, write_rejected: bool):
        self.rule, self.stage, self.write_rejected = rule, stage, write_rejected

    def setup(self):
        self.rule.setup()
        self.counts = Counts(self.stage)

    def process(self, batch: pa.RecordBatch):
        key = S.batch_key(batch)
        n = batch.num_rows
        self.counts.n_in.inc(n)
        parts, errors = apply_routing_errors(self.rule, batch, self.stage, self.counts)
        if errors is not None:
            yield errors
        if not parts:
            return
        out = concat([p[0] for p in parts], key)
        mask = np.concatenate([p[1] for p in parts])
        reasons = np.concatenate([p[2] for p in parts])
        dropped = ~mask
        if dropped.any():
            uniq, cnt = np.unique(reasons[dropped].astype(str), return_counts=True)
            annotate = isinstance(self.rule, Filter) and self.rule.mode == "annotate"
            for r, c in zip(uniq, cnt):
                (self.counts.flagged if annotate else self.counts.dropped)(r, c)
            if annotate:
                out = S.set_column(out, f"{self.stage}_reason", pa.array(reasons.tolist(), type=pa.string()))
                mask = np.ones(len(mask), dtype=bool)
            elif self.write_rejected:
                yield beam.pvalue.TaggedOutput(REJECTED, S.with_key(rejected_rows(out, mask, reasons, self.stage), f"{self.stage}-{key}"))
        kept = S.keep_rows(out, mask)
        self.counts.kept.inc(kept.num_rows)
        progress.add(self.stage, n)
        if kept.num_rows:
            yield kept


class RuleStage(beam.PTransform):
    """Composite transform for one per-batch rule: {'kept', 'rejected', 'errors'}."""

    def __init__(self, rule: Rule, stage: str, write_rejected: bool = False):
        super().__init__(label=stage)
        self.rule, self.stage, self.write_rejected = rule, stage, write_rejected

    def expand(self, pcoll):
        res = pcoll | "Apply" >> beam.ParDo(ApplyRule(self.rule, self.stage, self.write_rejected)).with_outputs(
            ERRORS, REJECTED, main=KEPT
        )
        return {KEPT: res[KEPT], REJECTED: res[REJECTED], ERRORS: res[ERRORS]}


def rule_params(cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.init]
