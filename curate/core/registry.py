"""Stage registry: recipe names -> rule or global-stage classes."""
from __future__ import annotations

import dataclasses
import importlib
import re
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
    "decontaminate": "curate.stages.decontaminate",
    "pii_redact": "curate.scorers.pii",
    "prox_apply": "curate.refine.apply",
    "prox_doc": "curate.refine.stages",
    "prox_chunk": "curate.refine.stages",
    "mates": "curate.scorers.mates",
}


ENTRY_POINT_GROUP = "curate.stages"
_BASES = ("Rule", "Filter", "Scorer", "Mapper", "GlobalStage")


class StageLoadError(ValueError):
    """A stage named by reference (``pkg.module:Class``) or by a plugin's entry point could not be loaded;
    the message says which name, what was looked for and why it failed."""


def is_reference(name) -> bool:
    """``pkg.module:Class``: a stage class named by its import path instead of a registered name."""
    return isinstance(name, str) and re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", name) is not None


def stage_class_problem(cls) -> str | None:
    """Why ``cls`` cannot be a stage (None when it can): a dataclass subclass of Filter, Scorer, Mapper or
    GlobalStage that defines the hook its kind needs."""
    from curate.core.stage import Filter, Mapper, Scorer

    if not isinstance(cls, type):
        return f"{cls!r} is not a class"
    if not issubclass(cls, (Rule, GlobalStage)):
        return (f"{cls.__module__}.{cls.__qualname__} is not a stage class: subclass curate.core.stage.Filter, "
                "Scorer or Mapper, or curate.core.global_stage.GlobalStage")
    if cls.__module__ in ("curate.core.stage", "curate.core.global_stage") and cls.__name__ in _BASES:
        return f"{cls.__name__} is a base class; name a subclass of it"
    hooks = [(Filter, "filter"), (Scorer, "score"), (Mapper, "map"), (GlobalStage, "send"), (GlobalStage, "decide")]
    for base, hook in hooks:
        if not issubclass(cls, base) or (base is GlobalStage and cls.expand_step is not GlobalStage.expand_step):
            continue  # another kind, or a global stage that builds its own steps
        if getattr(cls, hook) is getattr(base, hook):
            return f"{cls.__qualname__} is a {base.__name__} but does not define {hook}()"
    fields = {f.name for f in dataclasses.fields(cls)}
    own = [k for k, v in vars(cls).get("__annotations__", {}).items()
           if k not in fields and "ClassVar" not in str(v) and k not in ("stage", "kind", "reason")]
    if own:
        return (f"{cls.__qualname__} declares {', '.join(own)} but these are not parameters: decorate the class with "
                "@dataclass(kw_only=True)")
    return None


def load_reference(ref: str) -> type:
    """The stage class named ``pkg.module:Class``, imported and checked; StageLoadError says what is wrong.

    A module that is not importable is also looked for in the current folder (as uvicorn and gunicorn do
    for ``module:app``), so a recipe can name a stage in a ``.py`` file beside it without installing it."""
    import os
    import sys

    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if not _missing_is(e, module_name):
            raise StageLoadError(f"stage {ref!r}: importing module {module_name!r} failed: {e}") from None
        cwd = os.getcwd()
        if cwd in sys.path or "" in sys.path:
            raise StageLoadError(f"stage {ref!r}: no module named {module_name!r} (install the package that provides it, "
                                 "or add its folder to PYTHONPATH)") from None
        sys.path.append(cwd)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e2:
            sys.path.remove(cwd)
            if _missing_is(e2, module_name):
                raise StageLoadError(f"stage {ref!r}: no module named {module_name!r} (install the package that provides "
                                     "it, or add its folder to PYTHONPATH)") from None
            raise StageLoadError(f"stage {ref!r}: importing module {module_name!r} failed: {e2}") from None
        except Exception as e2:  # noqa: BLE001 - the plugin's own import-time error, reported with the name
            sys.path.remove(cwd)
            raise StageLoadError(f"stage {ref!r}: importing module {module_name!r} failed: {type(e2).__name__}: {e2}") from None
    except Exception as e:  # noqa: BLE001 - the plugin's own import-time error, reported with the name
        raise StageLoadError(f"stage {ref!r}: importing module {module_name!r} failed: {type(e).__name__}: {e}") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = sorted(n for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, (Rule, GlobalStage))
                           and v.__module__ == module.__name__)
            hint = f" (its stage classes: {', '.join(names)})" if names else " (it defines no stage class)"
            raise StageLoadError(f"stage {ref!r}: module {module_name!r} has no {attr!r}{hint}")
        obj = getattr(obj, part)
    problem = stage_class_problem(obj)
    if problem:
        raise StageLoadError(f"stage {ref!r}: {problem}")
    return obj


def _missing_is(e: ModuleNotFoundError, module_name: str) -> bool:
    """The module itself (or a parent package of it) is missing, not something it imports."""
    missing = getattr(e, "name", None) or ""
    return missing == module_name or module_name.startswith(missing + ".")


_EP_CACHE: dict = {}


def plugin_entry_points() -> dict[str, object]:
    """Stage name -> ``importlib.metadata.EntryPoint`` of group ``curate.stages`` of the installed packages
    (the first one of each name; names of built-in stages are skipped, see ``plugin_clashes``). Nothing is
    imported. Rescanned when ``sys.path`` changes."""
    import sys
    from importlib.metadata import entry_points

    key = tuple(sys.path)
    if key not in _EP_CACHE:
        found: dict[str, object] = {}
        clashes: list[str] = []
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(getattr(ep, "dist", None), "name", None) or "?"
            if ep.name in MODULES or (ep.name in STAGES and not _is_plugin_class(STAGES[ep.name], ep)):
                clashes.append(f"{ep.name} (from {dist}): a built-in stage has that name; the plugin's is ignored")
            elif ep.name in found:
                if found[ep.name].value != ep.value:
                    clashes.append(f"{ep.name} (from {dist}, {ep.value}): already provided by "
                                   f"{getattr(found[ep.name].dist, 'name', '?')} ({found[ep.name].value}); ignored")
            else:
                found[ep.name] = ep
        _EP_CACHE.clear()
        _EP_CACHE[key] = (found, clashes)
    return _EP_CACHE[key][0]


def plugin_clashes() -> list[str]:
    """Entry points that were ignored because their name was taken, in words (``curate stages`` prints them)."""
    import sys

    plugin_entry_points()
    return list(_EP_CACHE[tuple(sys.path)][1])


def _is_plugin_class(cls, ep) -> bool:
    return ep.value.split(":")[0] == cls.__module__


def load_entry_point(name: str) -> type:
    ep = plugin_entry_points()[name]
    dist = getattr(getattr(ep, "dist", None), "name", None) or "?"
    try:
        cls = ep.load()
    except Exception as e:  # noqa: BLE001 - a broken plugin is reported with its name and package
        raise StageLoadError(f"stage {name!r} (plugin {dist}, {ep.value}): cannot load it: {type(e).__name__}: {e}") from None
    problem = stage_class_problem(cls)
    if problem:
        raise StageLoadError(f"stage {name!r} (plugin {dist}, {ep.value}): {problem}")
    if STAGES.get(name, cls) is not cls:
        raise StageLoadError(f"stage {name!r} (plugin {dist}): another class is registered under that name "
                             f"({STAGES[name].__module__}.{STAGES[name].__qualname__})")
    STAGES[name] = cls
    return cls


def origin(name: str) -> str:
    """Where a stage comes from, in words: "built-in", "plugin <dist> (<module:Class>)", or the reference."""
    if name in MODULES:
        return "built-in"
    if is_reference(name):
        return name
    ep = plugin_entry_points().get(name)
    if ep is not None:
        return f"plugin {getattr(getattr(ep, 'dist', None), 'name', None) or '?'} ({ep.value})"
    cls = STAGES.get(name)
    return "built-in" if cls is not None and cls.__module__.startswith("curate.") else f"registered by {cls.__module__}"


class _Registry(Mapping):
    """Stage name -> class: built-in stages (imported when first looked up), stages of installed plugins
    (entry point group ``curate.stages``, loaded when first looked up) and ``pkg.module:Class`` references.

    A lookup that fails to load raises ``StageLoadError`` (a ValueError) saying why; an unknown name, KeyError."""

    def __getitem__(self, name: str) -> type:
        if name in STAGES:
            return STAGES[name]
        if name in MODULES:
            importlib.import_module(MODULES[name])
            return STAGES[name]
        if is_reference(name):
            return load_reference(name)
        if name in plugin_entry_points():
            return load_entry_point(name)
        raise KeyError(name)

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and (name in STAGES or name in MODULES or is_reference(name)
                                          or name in plugin_entry_points())

    def __iter__(self):
        return iter(sorted(set(STAGES) | set(MODULES) | set(plugin_entry_points())))

    def __len__(self) -> int:
        return len(set(STAGES) | set(MODULES) | set(plugin_entry_points()))


def all_stages() -> Mapping[str, type]:
    return _Registry()


def params_of(cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.init]
