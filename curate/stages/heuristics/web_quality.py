"""The heuristic rule sets together, on one analysis of each batch (``web_quality``).

Each rule set is a stage of its own (``gopher_quality``, ``gopher_repetition``, ``c4_quality``,
``fineweb_quality``), and each of those splits the text into lines and words for itself.
``web_quality`` runs the rule sets of ``rule_sets`` in that order on one :class:`Analysis` of the
batch (lines, words and n-grams computed once), with the same score columns and the same drop
reasons (``gopher_short_doc``, ``c4_too_few_sentences``...): a document takes the reason of the
first rule set, in order, that drops it, so ``web_quality`` keeps the documents that the rule sets
in a row keep. Each rule set's parameters go under its name::

    - web_quality:
        rule_sets: [gopher_repetition, gopher_quality, c4_quality, fineweb_quality]
        gopher_quality: {min_doc_words: 30}
        fineweb_quality: {line_punct_thr: 0.1}

Every rule set's score columns are computed for every document (one pass); with ``add_scores``
or ``mode: annotate`` they are all added. Per rule set, the documents it receives and drops (or
flags) are counted in the run's info counters (``web_quality.<rule set>.in`` / ``.dropped`` /
``.flagged``). ``c4_lines`` rewrites text, so it stays a stage of its own (after this one).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import numpy as np
from apache_beam.metrics import Metrics

from curate.core.registry import register
from curate.core.stage import Filter
from curate.stages.heuristics._text import Analysis
from curate.stages.heuristics.c4 import C4Quality
from curate.stages.heuristics.fineweb import FineWebQuality
from curate.stages.heuristics.gopher_quality import GopherQuality
from curate.stages.heuristics.gopher_repetition import GopherRepetition

RULE_SETS = {cls.stage: cls for cls in (GopherRepetition, GopherQuality, C4Quality, FineWebQuality)}
DEFAULT_ORDER = ["gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality"]


@register
@dataclass(kw_only=True)
class WebQuality(Filter):
    """Gopher quality and repetition, C4 and FineWeb rules in one stage, on one analysis of each batch."""

    stage = "web_quality"
    reason = "web_quality"
    rule_sets: list[str] = field(default_factory=lambda: list(DEFAULT_ORDER))
    gopher_repetition: dict = field(default_factory=dict)
    gopher_quality: dict = field(default_factory=dict)
    c4_quality: dict = field(default_factory=dict)
    fineweb_quality: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.rule_sets:
            raise ValueError("rule_sets: list at least one of " + ", ".join(RULE_SETS))
        unknown = [s for s in self.rule_sets if s not in RULE_SETS]
        if unknown:
            hints = []
            for s in unknown:
                close = difflib.get_close_matches(str(s), list(RULE_SETS), n=1)
                hints.append(f"{s!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ValueError(f"rule_sets: unknown rule set {', '.join(hints)}; known: {', '.join(RULE_SETS)}")
        repeated = sorted({s for s in self.rule_sets if self.rule_sets.count(s) > 1})
        if repeated:
            raise ValueError(f"rule_sets: {', '.join(repeated)} listed twice")
        for name in RULE_SETS:
            params = getattr(self, name)
            if params and name not in self.rule_sets:
                raise ValueError(f"{name}: parameters given, but {name} is not in rule_sets")
        self._sets = [self._make(name, getattr(self, name) or {}) for name in self.rule_sets]

    @staticmethod
    def _make(name: str, params: dict):
        from curate.core.recipe import configure

        cls = RULE_SETS[name]
        bad = [k for k in params if k in ("mode", "add_scores")]
        if bad:
            raise ValueError(f"{name}: {', '.join(bad)} is set on web_quality itself, not per rule set")
        obj, problems = configure(cls, dict(params), "web_quality", {}, (), name)
        if problems:
            raise ValueError("; ".join(p.split(": ", 1)[-1] for p in problems))
        return obj

    def setup(self):
        self._info = {}

    def _count(self, name: str, n: int):
        if n:
            info = getattr(self, "_info", None)
            if info is None:
                info = self._info = {}
            c = info.get(name)
            if c is None:
                c = info[name] = Metrics.counter("curate.info", f"{self.stage}.{name}")
            c.inc(int(n))

    def score(self, batch, analysis: Analysis | None = None):
        a = analysis if analysis is not None else Analysis.of(batch)
        out = {}
        for columns in a.run(self._sets):
            out.update(columns)
        return out

    def filter(self, batch, scores):
        n = batch.num_rows
        reasons = np.full(n, None, dtype=object)
        open_ = np.ones(n, dtype=bool)  # not dropped by an earlier rule set
        verb = "flagged" if self.mode == "annotate" else "dropped"
        for rs in self._sets:
            mask, why = rs.filter(batch, scores)
            mask = np.asarray(mask, dtype=bool)
            hit = open_ & ~mask
            reasons[hit] = np.asarray(why, dtype=object)[hit]
            self._count(f"{rs.stage}.in", int(open_.sum()))
            self._count(f"{rs.stage}.{verb}", int(hit.sum()))
            open_ &= mask
        return open_, reasons

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_info", None)
        return state
