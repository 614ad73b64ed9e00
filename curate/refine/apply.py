"""``prox_apply``: execute given ProX programs on the documents they name, without a model.

Programs come from jsonl/parquet files of rows ``{"id": ..., "program": "..."}`` (a program is
what a refining model would emit for the whole document as one chunk: lines numbered from 0 over
the whole document; ``drop_doc()`` / ``keep_doc()`` allowed). They are joined to the documents by
id through the global-stage shuffle (hash partitions: no worker ever holds all programs), then
executed by :func:`curate.refine.execute.execute_batch`:

* a document whose program drops it (``drop_doc()``, or ProX's word rules) goes to ``rejected/``
  with the reason ``prox_<reason>`` (``prox_drop_doc``, ``prox_word_ratio``, ``prox_too_few_words``);
* a refined document gets its new text;
* a document without a program, or whose program changes nothing or is invalid, is kept as it is.

Columns added: ``prox_program`` (the canonical calls actually applied: empty when none) and
``prox_action`` (``refined`` / ``unchanged`` / ``kept`` / ``no_program``), plus
``prox_invalid`` (invalid calls in the program). A program row whose id matches no document is
counted (``<stage>_programs_unmatched``); two programs for one id are an error of that document.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.metrics import Metrics

from curate import schema as S
from curate.core import exchange
from curate.core.global_stage import MSG, STATES, Decision, GlobalStage, Outbox, StageContext, View
from curate.core.groups import groups
from curate.core.registry import register
from curate.core.stage import ERRORS, KEPT, REJECTED
from curate.refine.execute import Settings, execute_batch, outcome

PROGRAMS = "programs"  # marks the program side of a partition's payloads


class _ProgramKeys(beam.DoFn):
    """A batch of program rows -> (partition, (PROGRAMS, keys, ids, programs)) messages."""

    def __init__(self, partitions: int):
        self.partitions = partitions

    def process(self, batch: pa.RecordBatch):
        keys = S.hash_strings128(batch.column(S.ID))
        for part, idx in groups((keys[:, 1] % np.uint64(self.partitions)).astype(np.int64)):
            take = pa.array(idx)
            yield int(part), (PROGRAMS, keys[idx], batch.column(S.ID).take(take), batch.column(S.TEXT).take(take))


@register
@dataclass(kw_only=True)
class ProxApply(GlobalStage):
    """Execute given ProX programs (jsonl/parquet rows of id + program) on the documents they name."""

    stage: ClassVar[str] = "prox_apply"
    reason: ClassVar[str] = "prox_drop_doc"
    programs: list[str] | str  # jsonl/parquet files (or globs) of id + program rows
    id_key: str = "id"
    program_key: str = "program"
    drop_ratio: float = 0.05
    min_words: int = 10
    max_invalid: int = 2
    partitions: int | None = None
    mode: Literal["drop", "annotate"] = "drop"

    def __post_init__(self):
        if not self.programs:
            raise ValueError("programs: name the files of id + program rows")

    def settings(self) -> Settings:
        return Settings(drop_ratio=self.drop_ratio, min_words=self.min_words, max_invalid=self.max_invalid)

    # ---- the documents' side: their id keys, by partition
    def send(self, view: View, out: Outbox) -> None:
        keys = S.hash_strings128(view.batch.column(S.ID))
        for part, idx in groups((keys[:, 1] % np.uint64(self.ctx.partitions)).astype(np.int64)):
            out.send(int(part), (out.path, keys[idx], view.rows[idx]))

    def resolve(self, partition: int, payloads: list):
        docs = sorted((p for p in payloads if p[0] != PROGRAMS), key=lambda p: p[0])
        progs = [p for p in payloads if p[0] == PROGRAMS]
        n_prog = sum(len(p[1]) for p in progs)
        if not n_prog:
            return
        pkeys = np.concatenate([p[1] for p in progs])
        ptext = pa.concat_arrays([p[3] for p in progs]) if len(progs) > 1 else progs[0][3]
        order = np.lexsort([pkeys[:, 0], pkeys[:, 1]])
        pk = pkeys[order]
        # two programs for one id: the document becomes an error (which program is right is unknowable)
        same = np.zeros(len(pk), dtype=bool)
        same[1:] = (pk[1:, 0] == pk[:-1, 0]) & (pk[1:, 1] == pk[:-1, 1])
        twice = same.copy()
        twice[:-1] |= same[1:]
        matched = np.zeros(len(pk), dtype=bool)
        for path, keys, rows in docs:
            # binary search of each document key among the sorted program keys (by (hi, lo))
            pos = _find(pk, keys)
            hit = pos >= 0
            if not hit.any():
                continue
            matched[pos[hit]] = True
            dup = twice[pos[hit]]
            yield path, (rows[hit], ptext.take(pa.array(order[pos[hit]])), dup)
        unmatched = int((~same & ~matched).sum())  # distinct program ids that no document has
        if unmatched:
            Metrics.counter("curate.info", f"{self.ctx.name}_programs_unmatched").inc(unmatched)

    def decide(self, view: View, decisions: list, side=None) -> Decision:
        n = view.n
        programs = [None] * n
        dup = np.zeros(n, dtype=bool)
        for rows, texts, twice in decisions:
            pos = view.positions(rows)
            for p, t in zip(pos.tolist(), texts.to_pylist()):
                programs[p] = t
            dup[pos[twice]] = True
        for p in np.flatnonzero(dup):
            programs[p] = None
        res = execute_batch(view.batch.column(S.TEXT), programs, self.settings())
        text, reasons = outcome(res, view.batch.column(S.TEXT))
        action = np.asarray(res["action"].to_pylist(), dtype=object)
        has = np.array([p is not None for p in programs])
        action[~has] = "no_program"
        keep = action != "dropped"
        for a, c in zip(*np.unique(action.astype(str), return_counts=True)):
            Metrics.counter("curate.info", f"{self.ctx.name}_{a}").inc(int(c))
        columns = {"prox_program": res["applied"], "prox_action": pa.array(action.tolist(), type=pa.string()),
                   "prox_invalid": res["n_invalid"]}
        refined = action == "refined"
        errors = np.flatnonzero(dup) if dup.any() else None
        if self.mode == "annotate":
            return Decision(keep=keep, reasons=reasons, columns=columns, errors=errors, error_reason="two programs for one id")
        keep = keep & ~dup
        return Decision(keep=keep, reasons=reasons, columns=columns, errors=errors, error_reason="two programs for one id",
                        rewrite=True if refined.any() else None, text=text if refined.any() else None)

    def rewrite(self, batch: pa.RecordBatch, data) -> pa.Array:
        """The refined text again, from the applied calls kept in ``prox_program`` (deterministic)."""
        applied = batch.column("prox_program").to_pylist()
        progs = [a if a else None for a in applied]
        return outcome(execute_batch(batch.column(S.TEXT), progs, self.settings()), batch.column(S.TEXT))[0]

    def expand_step(self, states, ctx: StageContext):
        from curate.io.readers import InputSpec
        from curate.io.transforms import ReadInput
        from curate.core.global_stage import _Resolve, apply_step, send_step

        paths = [self.programs] if isinstance(self.programs, str) else list(self.programs)
        spec = InputSpec(path=paths, id_key=self.id_key, text_key=self.program_key)
        read = states.pipeline | f"{ctx.name}_programs" >> ReadInput(spec, stage=f"{ctx.name}_programs")
        prog_msgs = read[KEPT] | f"{ctx.name}_ProgramKeys" >> beam.ParDo(_ProgramKeys(ctx.partitions))
        sent = send_step(self, states, ctx)
        decisions = ((sent[MSG], prog_msgs) | "Messages" >> beam.Flatten()
                     | "Group" >> exchange.GroupByKey(ctx.spill("msg"))
                     | "Resolve" >> beam.ParDo(_Resolve(self, ctx)))
        applied = apply_step(self, sent[STATES], decisions, ctx)
        return {STATES: applied[STATES],
                ERRORS: (sent[ERRORS], applied[ERRORS], read[ERRORS]) | "Errors" >> beam.Flatten(),
                REJECTED: applied[REJECTED]}


def _find(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Index in ``sorted_keys`` (128-bit keys sorted by (column 1, column 0)) of the first entry equal
    to each key, or -1; vectorized (a short scan only where 64-bit halves collide)."""
    out = np.full(len(keys), -1, dtype=np.int64)
    if not len(sorted_keys) or not len(keys):
        return out
    hi, lo = sorted_keys[:, 1], sorted_keys[:, 0]
    pos = np.searchsorted(hi, keys[:, 1], "left")
    inside = pos < len(hi)
    p = np.minimum(pos, len(hi) - 1)
    same_hi = inside & (hi[p] == keys[:, 1])
    exact = same_hi & (lo[p] == keys[:, 0])
    out[exact] = p[exact]
    for i in np.flatnonzero(same_hi & ~exact):  # the high halves of two different keys agree: next ones
        j = int(p[i])
        while j < len(hi) and hi[j] == keys[i, 1]:
            if lo[j] == keys[i, 0]:
                out[i] = j
                break
            j += 1
    return out


def refine_recipe(inputs: list[str], programs: list[str], output: str, *, write_rejected: bool = True,
                  **params) -> "Recipe":  # noqa: F821 - the recipe type, imported below
    """The recipe of ``curate refine apply``: read INPUT, ``prox_apply`` the programs, write."""
    import os

    from curate.core.recipe import OutputSpec, Recipe, RecipeError, _input_problems, configure
    from curate.core.safety import UserError, resolve_input
    from curate.io.readers import InputSpec

    problems = [f"input: {p}" for pattern in inputs for p in _input_problems(pattern, "auto")]
    problems += [f"--programs: {p}" for pattern in programs for p in _input_problems(pattern, "auto")]
    if problems:
        raise RecipeError(problems)
    absolute = [p if "://" in p else os.path.abspath(p) for p in programs]
    obj, problems = configure(ProxApply, dict(params, programs=absolute), "curate refine apply", {}, (), "prox_apply")
    if problems:
        raise RecipeError(problems)
    try:
        paths = [p if "://" in p else resolve_input(os.path.abspath(p)) for p in inputs]
    except UserError as e:
        raise RecipeError([str(e)]) from None
    out = OutputSpec(path=output if "://" in output else os.path.abspath(output), write_rejected=write_rejected)
    return Recipe("curate refine apply", InputSpec(path=paths), out, [("prox_apply", obj)])
