"""Global stages: the counterpart of ``Filter`` for stages that need the whole corpus.

A global stage says only what is its own:

* ``send(view, out)``: per batch, what to send where: ``out.send(partition, payload)`` (keys,
  signatures, counts, histograms) and ``out.column(name, values)`` (per-document values to keep,
  such as a model score). A document whose values cannot be computed goes to errors with its
  reason: the base bisects the batch to find it, as ``ApplyRule`` does for rules.
* ``resolve(partition, payloads)``: per partition, the decisions, as ``(batch path, decision)``.
* ``decide(view, decisions, side)``: per batch, a ``Decision`` (keep mask with reasons, its own
  columns, documents that are errors, an optional text rewrite).

The base owns the rest, once for every global stage:

* **Materializing, once per chain.** Consecutive global stages form a *chain* over one scratch
  copy of the corpus: each batch is written once, and each stage sees it through a ``View``: the
  rows still kept, the columns added so far, text rewrites replayed. What travels between stages
  is a small ``BatchState`` per batch (a keep mask, added columns, rewrite data), never the text.
* **The shuffle**, with a partition count derived from the input's size (``StageContext.partitions``)
  or set per stage (``partitions:``); locally, payloads spill to scratch files (``exchange``).
* **Applying**: counting (in = kept + dropped per reason + errors), ``mode: annotate``
  (``<stage>_reason`` plus the stage's own columns, the same for every stage), ``rejected/`` output,
  and error records naming the input file.
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Literal

import apache_beam as beam
import numpy as np
import pyarrow as pa

from curate import schema as S
from curate.core import exchange, progress
from curate.core.stage import ERRORS, KEPT, REJECTED, Counts, rejected_rows
from curate.io.readers import read_ipc
from curate.io.writers import join, write_ipc

MSG, STATES = "msg", "states"


@dataclass
class StageContext:
    name: str  # instance name (unique in the recipe)
    tmp_dir: str  # scratch folder for stages that materialize
    write_rejected: bool = False
    spill_dir: str | None = None  # local runs: shuffle payloads go to scratch files (see core/exchange.py)
    partitions: int = 64  # shuffle partitions, derived from the input's size by the runner
    index: int = 0  # position in the chain
    chain: tuple = ()  # the chain's stages, for replaying text rewrites
    folder: str = ""  # the chain's materialized batches: <folder>/<batch key>.arrow

    def spill(self, *parts: str) -> str | None:
        return None if self.spill_dir is None else join(self.spill_dir, "-".join((self.name,) + parts))


@dataclass
class BatchState:
    """What the chain knows about one materialized batch; small, it travels between the stages."""

    path: str
    key: str
    n: int
    keep: np.ndarray  # bool[n]: rows still in the corpus
    columns: dict[str, pa.Array] = field(default_factory=dict)  # added columns, full length n
    rewrites: list[tuple[int, Any]] = field(default_factory=list)  # (stage index, data): text rewrites


@dataclass
class View:
    """The rows of a batch still kept, as the next stage sees them."""

    batch: pa.RecordBatch
    rows: np.ndarray  # their row numbers in the materialized batch
    path: str

    @property
    def n(self) -> int:
        return self.batch.num_rows

    def positions(self, rows: np.ndarray) -> np.ndarray:
        """Positions in this view of materialized row numbers (which must be in the view)."""
        return np.searchsorted(self.rows, rows)

    def slice(self, start: int, stop: int) -> "View":
        return View(S.with_key(self.batch.slice(start, stop - start), S.batch_key(self.batch)), self.rows[start:stop], self.path)


@dataclass
class Decision:
    """A stage's verdict on the documents of one view (arrays are per view row)."""

    keep: np.ndarray | None = None  # None: keep all
    reasons: np.ndarray | str | None = None  # drop reason per row, or one for all; default: the stage's reason
    columns: dict[str, pa.Array] = field(default_factory=dict)  # the stage's own columns
    errors: np.ndarray | None = None  # rows that are errors (e.g. a duplicate id)
    error_reason: str = ""
    rewrite: Any = None  # data for ``GlobalStage.rewrite``; replayed whenever a later view is built
    text: pa.Array | None = None  # the rewritten text of this view (what ``rewrite`` gives), if any
    rejected_columns: dict[str, pa.Array] = field(default_factory=dict)  # extra columns for rejected/ only
    drop_columns: tuple[str, ...] = ()  # columns added earlier (e.g. by ``send``) that the output should not keep


class Outbox:
    """What ``send`` produces for one view: messages and per-row columns."""

    def __init__(self, view: View):
        self.view = view
        self.messages: list[tuple[int, Any]] = []
        self.columns: dict[str, list[tuple[np.ndarray, pa.Array]]] = {}

    @property
    def path(self) -> str:
        return self.view.path

    def send(self, partition: int, payload) -> None:
        self.messages.append((int(partition), payload))

    def column(self, name: str, values: pa.Array) -> None:
        self.columns.setdefault(name, []).append((self.view.rows, values))


@dataclass(kw_only=True)
class GlobalStage:
    """A stage that needs the whole corpus; subclasses implement send / resolve / decide (see above)."""

    stage: ClassVar[str] = ""
    kind: ClassVar[str] = "global"
    reason: ClassVar[str] = "filtered"
    mode: Literal["drop", "annotate"] = "drop"

    @classmethod
    def describe(cls) -> str:
        return (cls.__doc__ or "").strip().split("\n")[0]

    def setup(self) -> None:
        """Load models; called once per worker before the first batch."""

    def bind(self, ctx: StageContext) -> None:
        """The stage's context (instance name, partitions ...) for the hooks, as ``self.ctx``."""
        self.ctx = ctx

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("ctx", None)
        return state

    # ---- hooks
    def send(self, view: View, out: Outbox) -> None:
        raise NotImplementedError

    def resolve(self, partition: int, payloads: list) -> Iterable[tuple[str, Any]]:
        return ()

    def decide(self, view: View, decisions: list, side=None) -> Decision:
        raise NotImplementedError

    def rewrite(self, batch: pa.RecordBatch, data) -> pa.Array:
        """The text of ``batch`` after this stage's rewrite (for stages whose Decision has ``rewrite``)."""
        raise NotImplementedError

    def side_input(self, messages, ctx: StageContext):
        """A PCollection to pass to ``decide`` as a singleton, computed from the messages (default: none)."""
        return None

    # ---- the composite transform of one stage in a chain: states -> states
    def expand_step(self, states, ctx: StageContext):
        sent = send_step(self, states, ctx)
        side = self.side_input(sent[MSG], ctx)
        if side is None:
            decisions = (sent[MSG] | "Group" >> exchange.GroupByKey(ctx.spill("msg"))
                         | "Resolve" >> beam.ParDo(_Resolve(self, ctx)))
        else:
            decisions = None
        applied = apply_step(self, sent[STATES], decisions, ctx, side)
        return {STATES: applied[STATES], ERRORS: (sent[ERRORS], applied[ERRORS]) | "Errors" >> beam.Flatten(),
                REJECTED: applied[REJECTED]}


# --------------------------------------------------------------------------------------- views


def build_view(state: BatchState, chain: tuple, batch: pa.RecordBatch | None = None) -> View:
    """The materialized batch with the chain's decisions so far applied."""
    batch = read_ipc(state.path) if batch is None else batch
    md = batch.schema.metadata
    rows = np.flatnonzero(state.keep)
    if len(rows) < state.n:
        batch = batch.take(pa.array(rows))
    take = None if len(rows) == state.n else pa.array(rows)
    for name, values in state.columns.items():
        batch = S.set_column(batch, name, values if take is None else values.take(take))
    for index, data in state.rewrites:
        batch = S.set_column(batch, S.TEXT, chain[index].rewrite(batch, data))
    return View(batch.replace_schema_metadata(md), rows, state.path)


def _full(values: pa.Array, rows: np.ndarray, n: int, old: pa.Array | None = None) -> pa.Array:
    """A length-``n`` column with ``values`` at ``rows`` (and ``old``, or nulls, elsewhere)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.chunk(0) if values.num_chunks == 1 else values.combine_chunks()  # one chunk: no copy
    if old is None and len(rows) == n:
        return values
    idx = np.full(n, -1, dtype=np.int64)
    idx[rows] = np.arange(len(rows))
    if old is None:
        return _scatter(values, idx)
    if old.type != values.type:
        old = old.cast(values.type)
    merged = pa.concat_arrays([old, values])
    return merged.take(pa.array(np.where(idx >= 0, n + idx, np.arange(n))))


def _scatter(values: pa.Array, idx: np.ndarray) -> pa.Array:
    """values[idx] where idx >= 0, null where idx < 0."""
    with_null = pa.concat_arrays([values, pa.nulls(1, type=values.type)])
    return with_null.take(pa.array(np.where(idx >= 0, idx, len(values))))


# -------------------------------------------------------------------------------------- DoFns


def _materialize(batch: pa.RecordBatch, folder: str, counter) -> tuple[str, BatchState]:
    """The batch written once to the chain's scratch folder; its state starts with every row kept."""
    key = S.batch_key(batch)
    path = join(folder, f"{key}.arrow")
    write_ipc(batch, path)
    counter.inc(batch.nbytes)
    return path, BatchState(path, key, batch.num_rows, np.ones(batch.num_rows, dtype=bool))


def _error_rows(view: View, positions: np.ndarray, stage: str, reason) -> list[dict]:
    ids = view.batch.column(S.ID).take(pa.array(positions)).to_pylist()
    texts = view.batch.column(S.TEXT).take(pa.array(positions)).to_pylist()
    reasons = [reason] * len(ids) if isinstance(reason, str) else list(reason)
    file = S.source_file(view.batch)
    return [dict(stage=stage, file=file, location=f"batch {S.batch_key(view.batch)} row {int(r)}", id=i, reason=why,
                 n_records=1, snippet=t) for i, t, r, why in zip(ids, texts, view.rows[positions], reasons)]


def _send_isolating(stage: GlobalStage, view: View) -> tuple[list[Outbox], list[tuple[int, str]]]:
    """``stage.send`` on the view; when it raises, bisect to isolate the failing documents.

    Returns (outboxes of the parts that worked, [(position in view, reason)] of the failing documents).
    """
    out = Outbox(view)
    try:
        stage.send(view, out)
        return [out], []
    except Exception as e:  # noqa: BLE001 - any failure of one document must not end the run
        if view.n <= 1:
            return [], [(0, traceback.format_exception_only(type(e), e)[-1].strip())] if view.n else []
        half = view.n // 2
        lo, le = _send_isolating(stage, view.slice(0, half))
        hi, he = _send_isolating(stage, view.slice(half, view.n))
        return lo + hi, le + [(p + half, r) for p, r in he]


class _StageFn(beam.DoFn):
    """A DoFn of one stage of a chain: the stage bound to its context, set up once per worker, and its counters."""

    def __init__(self, stage: GlobalStage, ctx: StageContext):
        self.stage, self.ctx = stage, ctx

    def setup(self):
        self.stage.bind(self.ctx)
        self.stage.setup()
        self.counts = Counts(self.ctx.name)


class _Send(_StageFn):
    """The first stage of a chain receives the batches themselves: it materializes each one and
    sends from the batch in hand (no read-back); later stages receive (path, state)."""

    def setup(self):
        super().setup()
        from apache_beam.metrics import Metrics

        self.written = Metrics.counter("curate.info", "scratch_bytes_materialized")

    def process(self, item):
        if isinstance(item, pa.RecordBatch):
            path, state = _materialize(item, self.ctx.folder, self.written)
            view = build_view(state, self.ctx.chain, item)
        else:
            path, state = item
            view = build_view(state, self.ctx.chain)
        if view.n == 0:
            yield path, state
            return
        self.counts.n_in.inc(view.n)
        outs, failed = _send_isolating(self.stage, view)
        if failed:
            pos = np.array([p for p, _ in failed], dtype=np.int64)
            self.counts.errors.inc(len(pos))
            errs = _error_rows(view, pos, self.ctx.name, [r for _, r in failed])
            yield beam.pvalue.TaggedOutput(ERRORS, S.with_key(S.errors_batch(errs), f"{self.ctx.name}-{state.key}"))
            state.keep[view.rows[pos]] = False
        for out in outs:
            for name, parts in out.columns.items():
                for rows, values in parts:
                    state.columns[name] = _full(values, rows, state.n, state.columns.get(name))
            for partition, payload in out.messages:
                yield beam.pvalue.TaggedOutput(MSG, (partition, payload))
        yield path, state


class _Resolve(_StageFn):

    def process(self, item):
        partition, payloads = item
        yield from self.stage.resolve(partition, list(payloads))


class _Apply(_StageFn):

    def process(self, item, side=None):
        path, grouped = item
        states = list(grouped[STATES])
        if not states:
            return
        (state,) = states
        decisions = list(grouped.get("decisions", ()))
        raw = read_ipc(state.path)
        view = build_view(state, self.ctx.chain, raw)
        n = view.n
        if n == 0:  # nothing of this batch is left for later stages
            return
        progress.add(self.ctx.name, n)
        stage, name = self.stage, self.ctx.name
        d = stage.decide(view, decisions, side)
        keep = np.ones(n, dtype=bool) if d.keep is None else np.asarray(d.keep, dtype=bool)
        if d.errors is not None and len(d.errors):
            err = np.asarray(d.errors, dtype=np.int64)
            self.counts.errors.inc(len(err))
            errs = _error_rows(view, err, name, d.error_reason)
            yield beam.pvalue.TaggedOutput(ERRORS, S.with_key(S.errors_batch(errs), f"{name}-{state.key}"))
            keep[err] = False
            state.keep[view.rows[err]] = False
            ok = np.ones(n, dtype=bool)
            ok[err] = False
        else:
            ok = np.ones(n, dtype=bool)
        reasons = d.reasons if d.reasons is not None else stage.reason
        reasons = np.where(keep, None, reasons).astype(object)
        dropped = ok & ~keep
        if dropped.any():
            uniq, cnt = np.unique(reasons[dropped].astype(str), return_counts=True)
        else:
            uniq, cnt = [], []
        columns = dict(d.columns)
        if stage.mode == "annotate":
            for r, c in zip(uniq, cnt):
                self.counts.flagged(r, int(c))
            columns[f"{name}_reason"] = pa.array(np.where(ok, reasons, None).tolist(), type=pa.string())
            keep = ok
        else:
            for r, c in zip(uniq, cnt):
                self.counts.dropped(r, int(c))
            if dropped.any() and self.ctx.write_rejected:
                rej = view.batch
                for k, v in {**columns, **d.rejected_columns}.items():
                    rej = S.set_column(rej, k, v)
                if d.text is not None:
                    rej = S.set_column(rej, S.TEXT, d.text)
                yield beam.pvalue.TaggedOutput(REJECTED, S.with_key(rejected_rows(rej, ~dropped, reasons, name),
                                                                    f"{name}-{state.key}"))
                del rej
        for k, v in columns.items():
            state.columns[k] = _full(v, view.rows, state.n, state.columns.get(k))
        for k in d.drop_columns:
            state.columns.pop(k, None)
        if d.rewrite is not None:
            state.rewrites.append((self.ctx.index, d.rewrite))
        state.keep[view.rows[~keep]] = False
        self.counts.kept.inc(int(keep.sum()))
        if self.ctx.index < len(self.ctx.chain) - 1:
            yield path, state
        elif state.keep.any():  # the chain's last stage emits the batch as the chain leaves it: no read-back
            del view, d, columns  # this stage's copies (a rewritten text ...) go before the final batch is built
            yield S.with_key(build_view(state, self.ctx.chain, raw).batch, state.key)


# -------------------------------------------------------------------------------- the steps


def send_step(stage: GlobalStage, states, ctx: StageContext):
    """states -> {STATES, MSG: (partition, payload), ERRORS}."""
    return states | "Send" >> beam.ParDo(_Send(stage, ctx)).with_outputs(MSG, ERRORS, main=STATES)


def apply_step(stage: GlobalStage, states, decisions, ctx: StageContext, side=None):
    """states + (path, decision) -> {STATES, ERRORS, REJECTED}; ``side`` (a singleton) goes to ``decide``."""
    inputs = {STATES: states}
    if decisions is not None:
        inputs["decisions"] = decisions
    joined = inputs | "Join" >> exchange.CoGroupByKey(ctx.spill("join"), tuple(inputs))
    args = () if side is None else (beam.pvalue.AsSingleton(side),)
    return joined | "Apply" >> beam.ParDo(_Apply(stage, ctx), *args).with_outputs(ERRORS, REJECTED, main=STATES)


class _Step(beam.PTransform):
    def __init__(self, stage: GlobalStage, ctx: StageContext):
        super().__init__(label=ctx.name)
        self.stage, self.ctx = stage, ctx

    def expand(self, states):
        return self.stage.expand_step(states, self.ctx)


class Chain(beam.PTransform):
    """Consecutive global stages over one materialization: batches -> {KEPT, ERRORS: [...], REJECTED: [...]}."""

    def __init__(self, stages: list[tuple[str, GlobalStage]], tmp_dir: str, write_rejected: bool,
                 spill_dir: str | None, partitions: int, label: str):
        super().__init__(label=label)
        self.stages, self.tmp_dir, self.write_rejected = stages, tmp_dir, write_rejected
        self.spill_dir, self.partitions = spill_dir, partitions

    def expand(self, batches):
        chain = tuple(obj for _, obj in self.stages)
        folder = join(self.tmp_dir, self.label)
        states = batches  # the first stage's send materializes them; the last stage's apply emits batches
        errors, rejected = [], []
        for i, (name, obj) in enumerate(self.stages):
            ctx = StageContext(name=name, tmp_dir=self.tmp_dir, write_rejected=self.write_rejected,
                               spill_dir=self.spill_dir, partitions=getattr(obj, "partitions", None) or self.partitions,
                               index=i, chain=chain, folder=folder)
            res = states | name >> _Step(obj, ctx)
            states = res[STATES]
            errors.append(res[ERRORS])
            rejected.append(res[REJECTED])
        kept = states
        # lists, not Flattens: each stage's rejected/errors are written where they are produced (a Flatten of
        # outputs of different steps is buffered whole by the local runner)
        return {KEPT: kept, ERRORS: errors, REJECTED: rejected}
