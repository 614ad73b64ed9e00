"""Stage registry: recipe names -> rule or global-stage classes."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from curate.core.stage import Rule, RuleStage

STAGES: dict[str, type] = {}


@dataclass
class StageContext:
    name: str  # instance name (unique in the recipe)
    tmp_dir: str  # scratch folder for stages that materialize
    write_rejected: bool = False
    spill_dir: str | None = None  # local runs: shuffle payloads go to scratch files (see core/exchange.py)

    def spill(self, *parts: str) -> str | None:
        from curate.io.writers import join

        return None if self.spill_dir is None else join(self.spill_dir, "-".join((self.name,) + parts))


@dataclass(kw_only=True)
class GlobalStage:
    """A stage that needs the whole corpus (dedup): builds its own composite transform."""

    stage: ClassVar[str] = ""
    kind: ClassVar[str] = "global"

    def build(self, ctx: StageContext):
        raise NotImplementedError

    @classmethod
    def describe(cls) -> str:
        return (cls.__doc__ or "").strip().split("\n")[0]


def register(cls):
    if not cls.stage:
        raise ValueError(f"{cls.__name__} has no stage name")
    if cls.stage in STAGES:
        raise ValueError(f"stage {cls.stage!r} registered twice")
    STAGES[cls.stage] = cls
    return cls


def build_stage(obj, ctx: StageContext):
    """The composite PTransform for a configured rule or global stage."""
    if isinstance(obj, Rule):
        return RuleStage(obj, ctx.name, ctx.write_rejected)
    return obj.build(ctx)


def all_stages() -> dict[str, type]:
    import curate.stages  # noqa: F401  (registers the built-in stages)

    return STAGES


def params_of(cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.init]
