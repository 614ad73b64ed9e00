"""Stage registry: recipe names -> rule or global-stage classes."""
from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping

from curate.core.global_stage import GlobalStage, StageContext  # noqa: F401 - re-exported for stage modules
from curate.core.stage import Rule, RuleStage

STAGES: dict[str, type] = {}


def register(cls):
    if not cls.stage:
        raise ValueError(f"{cls.__name__} has no stage name")
    if cls.stage in STAGES:
        raise ValueError(f"stage {cls.stage!r} registered twice")
    STAGES[cls.stage] = cls
    return cls


def build_stage(obj, ctx: StageContext):
    """The composite PTransform for a configured per-batch rule (global stages run in a ``Chain``)."""
    if isinstance(obj, Rule):
        return RuleStage(obj, ctx.name, ctx.write_rejected)
    raise TypeError(f"{type(obj).__name__} is not a per-batch rule; global stages are built by curate.core.global_stage.Chain")


# built-in stage -> module that registers it; imported on first use, so a run loads only what its
# recipe needs (the heuristics pull in polars, the classifiers fastText)
MODULES = {
    "exact_dedup": "curate.stages.exact_dedup",
    "url_dedup": "curate.stages.url_dedup",
    "fuzzy_dedup": "curate.stages.fuzzy_dedup",
    "line_dedup": "curate.stages.line_dedup",
    "lang_id": "curate.stages.lang_id",
    "length_filter": "curate.stages.length",
    "sample": "curate.stages.sample",
    "gopher_quality": "curate.stages.heuristics.gopher_quality",
    "gopher_repetition": "curate.stages.heuristics.gopher_repetition",
    "c4_quality": "curate.stages.heuristics.c4",
    "c4_lines": "curate.stages.heuristics.c4",
    "fineweb_quality": "curate.stages.heuristics.fineweb",
    "web_quality": "curate.stages.heuristics.web_quality",
    "quality_classifier": "curate.scorers.fasttext_classifier",
    "toxicity_classifier": "curate.scorers.fasttext_classifier",
    "quality_select": "curate.scorers.fasttext_classifier",
    "preselect": "curate.scorers.preselect",
    "toxic_words": "curate.scorers.toxic_words",
    "pii_redact": "curate.scorers.pii",
    "prox_apply": "curate.refine.apply",
    "prox_doc": "curate.refine.stages",
    "prox_chunk": "curate.refine.stages",
}


class _Registry(Mapping):
    """Stage name -> class; built-in stages are imported when first looked up."""

    def __getitem__(self, name: str) -> type:
        if name not in STAGES and name in MODULES:
            importlib.import_module(MODULES[name])
        return STAGES[name]

    def __contains__(self, name) -> bool:
        return name in STAGES or name in MODULES

    def __iter__(self):
        return iter(sorted(set(STAGES) | set(MODULES)))

    def __len__(self) -> int:
        return len(set(STAGES) | set(MODULES))


def all_stages() -> Mapping[str, type]:
    return _Registry()


def params_of(cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.init]
