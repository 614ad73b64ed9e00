"""The Python API: build and run pipelines, and call any stage on a ``pyarrow.Table``, without YAML.

```python
import curate
from curate.stages.length import LengthFilter

pipe = curate.Pipeline([LengthFilter(min_words=50), "exact_dedup", {"gopher_quality": {}}])
res = pipe.run("samples/corpus/*.jsonl*", "out/py", write_rejected=True)   # the same run as `curate run`
print(res.summary())
kept = res.data()                        # pyarrow.Table of the written documents (res.rejected(), res.errors())

t = curate.apply("length_filter", kept, min_words=80)   # any stage on a table: in memory, nothing written
t.kept, t.rejected, t.errors, t.stats   # kept rows; dropped rows with drop_stage/drop_reason; errors; counts
```

A stage is given as a configured object (``LengthFilter(min_words=50)``), a registered name, a
``{name: {params}}`` mapping as in a recipe, ``"pkg.module:Class"``, a stage class, or ``(name, stage)``
to set its instance name. Whatever the form, its parameters are checked as a recipe's are, and a
mistake raises ``RecipeError`` (a ``ValueError``) listing every problem.

``Pipeline.run`` builds the same ``Recipe`` that ``curate run`` loads from YAML and runs it with the
same runner (``curate run`` itself goes through ``run_recipe`` below), so everything the CLI does
(ledger, ``stats.json``, ``_SUCCESS``, error routing, the local multi-process and Dataflow runners) holds.

``Pipeline.apply`` / ``apply`` take a ``pyarrow.Table`` (or RecordBatch, or anything ``pyarrow.table()``
accepts, such as a pandas DataFrame). The table is mapped onto the document schema as the readers map
a Parquet file (``text_key``, ``id_key``, ...: ids derived when there are none; a null text is an error,
an empty one dropped as ``empty_text``; a repeated id an error of ``input_ids``). Per-batch rules
(filters, scorers, mappers) then run in this process through the same ``ApplyRule`` that a Beam run
uses; a pipeline with a global stage (dedup, ...) runs on the embedded Beam runner over a scratch copy.
Either way the result accounts for every row: in = kept + dropped per reason + errors, per stage.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

__all__ = ["Pipeline", "Result", "TableResult", "apply", "list_stages", "read_output", "run", "run_recipe", "stage"]

TABLE_FILE = "table"  # the "file" of a table's rows: their default source, and the file of their error records


# ------------------------------------------------------------------------------------ stages


def list_stages() -> Mapping[str, type]:
    """Every stage name a recipe or ``stage()`` accepts -> its class: built-in ones and those of installed
    plugins (entry point group ``curate.stages``). Classes are imported when looked up."""
    from curate.core.registry import all_stages

    return all_stages()


def _strip_lines(problems: list[str], where: str) -> list[str]:
    """Recipe problems without the ``where:line:`` prefix (meaningless for Python arguments)."""
    return [re.sub(rf"^{re.escape(where)}:\d+: ", "", p) for p in problems]


def _stage_class(spec) -> type:
    from curate.core.recipe import RecipeError
    from curate.core.registry import StageLoadError, all_stages, stage_class_problem

    if isinstance(spec, type):
        problem = stage_class_problem(spec)
        if problem:
            raise RecipeError([problem])
        return spec
    if not isinstance(spec, str):
        raise RecipeError([f"a stage is a configured stage object, a name, 'package.module:Class', a class, "
                           f"{{name: params}} or (name, stage); got {spec!r}"])
    registry = all_stages()
    try:
        return registry[spec]
    except StageLoadError as e:
        raise RecipeError([str(e)]) from None
    except KeyError:
        import difflib

        close = difflib.get_close_matches(spec, list(registry), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else " (see curate.list_stages() or `curate stages`)"
        raise RecipeError([f"unknown stage {spec!r}{hint}"]) from None


def stage(spec, /, **params):
    """A configured stage: ``spec`` is a registered name, ``"pkg.module:Class"`` or a stage class, and
    ``params`` its parameters, checked (types, ranges, required ones) exactly as a recipe's are."""
    from curate.core.recipe import RecipeError, configure

    cls = _stage_class(spec)
    what = f"stage {spec if isinstance(spec, str) else cls.__name__!r}"
    obj, problems = configure(cls, dict(params), "<python>", {}, (), what)
    if problems:
        raise RecipeError(_strip_lines(problems, "<python>"))
    return obj


def _check_object(obj) -> None:
    """A stage object built directly (``LengthFilter(min_words=-1)``): its non-default parameters get the
    recipe's checks, so Python and YAML accept the same values."""
    from curate.core.recipe import RecipeError, configure
    from curate.core.registry import params_of, stage_class_problem

    problem = stage_class_problem(type(obj))
    if problem:
        raise RecipeError([problem])
    params = {}
    for f in params_of(type(obj)):
        value = getattr(obj, f.name)
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        if default is dataclasses.MISSING or value != default:
            params[f.name] = value
    _, problems = configure(type(obj), params, "<python>", {}, (), f"stage {type(obj).__name__!r}")
    if problems:
        raise RecipeError(_strip_lines(problems, "<python>"))


def _resolve(item) -> tuple[str | None, str, Any]:
    """(explicit instance name or None, default name, configured stage) for one item of a stage list."""
    from curate.core.global_stage import GlobalStage
    from curate.core.recipe import RecipeError
    from curate.core.stage import Rule

    if isinstance(item, tuple):
        if len(item) != 2 or not isinstance(item[0], str):
            raise RecipeError([f"a (name, stage) pair names an instance of a stage; got {item!r}"])
        _, default, obj = _resolve(item[1])
        return item[0], default, obj
    if isinstance(item, (Rule, GlobalStage)):
        _check_object(item)
        return None, type(item).stage or type(item).__name__, item
    if isinstance(item, Mapping):
        if len(item) != 1:
            raise RecipeError([f"a stage mapping is {{name: params}} with one name; got {dict(item)!r}"])
        (spec, params), = item.items()
        params = dict(params or {})
        name = params.pop("name", None)
        obj = stage(spec, **params)
        return name, _default_name(spec, type(obj)), obj
    if isinstance(item, (str, type)):
        obj = stage(item)
        return None, _default_name(item, type(obj)), obj
    raise RecipeError([f"a stage is a configured stage object, a name, 'package.module:Class', a class, "
                       f"{{name: params}} or (name, stage); got {item!r}"])


def _default_name(spec, cls) -> str:
    from curate.core.registry import is_reference

    if isinstance(spec, str) and not is_reference(spec):
        return spec
    return cls.stage or cls.__name__


def _named(items: Iterable) -> list[tuple[str, Any]]:
    """The stage list as (unique instance name, configured stage), named as a recipe names them."""
    from curate.core.recipe import RecipeError
    from curate.core.safety import check_name

    out, seen, problems = [], {}, []
    for item in items:
        name, default, obj = _resolve(item)
        if name is None:
            seen[default] = seen.get(default, 0) + 1
            name = default if seen[default] == 1 else f"{default}_{seen[default]}"
        bad = check_name(name, "stage name")
        if bad:
            problems.append(bad)
            continue
        out.append((name, obj))
    names = [n for n, _ in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        problems.append(f"stage names must be unique; repeated: {dup} (give one of them as (name, stage))")
    if problems:
        raise RecipeError(problems)
    return out


# ----------------------------------------------------------------------------------- pipeline


class Pipeline:
    """An ordered list of stages; ``run`` it over files (a Beam job) or ``apply`` it to a table (in memory)."""

    def __init__(self, stages: Iterable = (), *, name: str = "Pipeline"):
        if isinstance(stages, (str, Mapping)) or not isinstance(stages, Iterable):
            stages = [stages]
        self.stages: list[tuple[str, Any]] = _named(stages)
        self.name = name
        self._recipe_file: str | None = None

    @classmethod
    def from_recipe(cls, path: str | os.PathLike) -> "Pipeline":
        """The stages of a YAML recipe; ``run()`` without input/output uses the recipe's."""
        from curate.core.recipe import load_recipe

        recipe = load_recipe(os.fspath(path), check_inputs=False)
        pipe = cls.__new__(cls)
        pipe.stages, pipe.name, pipe._recipe_file = list(recipe.stages), os.fspath(path), os.fspath(path)
        return pipe

    def __repr__(self) -> str:
        return f"Pipeline([{', '.join(n for n, _ in self.stages)}])"

    def __len__(self) -> int:
        return len(self.stages)

    def recipe(self, input=None, output=None, *, write_rejected: bool | None = None, compression: str | None = None,
               output_options: dict | None = None, **input_options):
        """The ``Recipe`` that ``run`` runs: input and output checked as ``curate run`` checks them."""
        import yaml

        from curate.core.recipe import RecipeError, load_recipe, parse_recipe

        inputs = None if input is None else [os.fspath(p) for p in ([input] if isinstance(input, (str, os.PathLike))
                                                                    else input)]
        out = None if output is None else os.fspath(output)
        if self._recipe_file is not None:
            recipe = load_recipe(self._recipe_file, inputs, out, check_inputs=True)
            if input_options or output_options:
                raise RecipeError([f"{self._recipe_file}: reader and output options "
                                   f"{sorted(input_options) + sorted(output_options or {})} go in the recipe"])
        else:
            if inputs is None or out is None:
                raise RecipeError(["Pipeline.run needs an input (a glob, a path or a list of them) and an output folder"])
            raw_out = {**(output_options or {}), "path": out}
            if compression is not None:
                raw_out["compression"] = compression
            text = yaml.safe_dump({"input": {"path": inputs, **input_options}, "output": raw_out, "stages": []})
            try:
                recipe = parse_recipe(text, self.name, check_inputs=True)
            except RecipeError as e:
                raise RecipeError(_strip_lines(e.problems, self.name)) from None
        if write_rejected is not None:
            recipe.output.write_rejected = bool(write_rejected)
        if compression is not None and self._recipe_file is not None:
            recipe.output.compression = compression
        recipe.stages = list(self.stages)
        return recipe

    def run(self, input=None, output=None, *, runner: str | None = None, workers: int = 1,
            write_rejected: bool | None = None, compression: str | None = None, beam_args: list[str] | None = None,
            max_error_rate: float = 0.5, show_progress: bool = False, output_options: dict | None = None,
            **input_options) -> "Result":
        """Run over files, as ``curate run`` does: ``input`` a glob, path or list (local, gs://, s3://);
        ``output`` a folder (``data/``, ``rejected/``, ``errors/``, ``stats.json``). ``runner``: None for the
        embedded runner (``workers`` processes), or a Beam runner name with ``beam_args`` (``--project`` ...).
        Reader options (``text_key``, ``id_key``, ``source``, ``batch_size`` ...) are keyword arguments; the
        recipe's other ``output:`` keys (``format``, ``file_rows`` ...) go in ``output_options``.
        Raises ``RecipeError``/``UserError`` (ValueErrors) before anything is written, ``LedgerError`` when
        the counts do not balance. A stage over ``max_error_rate`` is listed in ``Result.failed``."""
        recipe = self.recipe(input, output, write_rejected=write_rejected, compression=compression,
                             output_options=output_options, **input_options)
        return Result(run_recipe(recipe, runner=runner, workers=workers, beam_args=beam_args,
                                 show_progress=show_progress, max_error_rate=max_error_rate))

    def apply(self, table, **input_options) -> "TableResult":
        """Run the stages on a table in memory (see the module doc); reader options as for ``run``."""
        return _apply_table(self.stages, table, input_options)


def apply(stage_or_stages, table, **params) -> "TableResult":
    """One stage (or a list, as for ``Pipeline``) on a ``pyarrow.Table``: ``apply("length_filter", t,
    min_words=50)``, ``apply(LengthFilter(min_words=50), t)``, ``apply(["exact_dedup", "gopher_quality"], t)``.
    ``params`` configure a stage given by name or class; with a list or an object, they are reader options."""
    if params and isinstance(stage_or_stages, (str, type)):
        from curate.core.registry import params_of

        own = {f.name for f in params_of(_stage_class(stage_or_stages))}  # a stage's own batch_size stays its own
        reader = {k: params.pop(k) for k in list(params) if k in _READER_OPTIONS and k not in own}
        obj = stage(stage_or_stages, **params)
        return Pipeline([(_default_name(stage_or_stages, type(obj)), obj)]).apply(table, **reader)
    return Pipeline(stage_or_stages).apply(table, **params)


_READER_OPTIONS = ("text_key", "id_key", "url_key", "source", "batch_size", "unique_ids")


def run(recipe: str | os.PathLike, input=None, output=None, **options) -> "Result":
    """Run a YAML recipe file from Python (``curate run RECIPE``); ``input``/``output`` override the recipe's;
    ``options`` as for ``Pipeline.run``."""
    return Pipeline.from_recipe(recipe).run(input, output, **options)


def run_recipe(recipe, runner: str | None = None, workers: int = 1, beam_args: list[str] | None = None,
               show_progress: bool = False, max_error_rate: float = 0.5):
    """``curate.core.runner.run_recipe`` with the folders of any stage modules from outside curate (plugins,
    ``module:Class``, a notebook's package) on ``PYTHONPATH`` for the run, so that ``workers > 1`` worker
    processes import them as this process did. What ``curate run`` and ``Pipeline.run`` call."""
    from curate.core import runner as R

    with _plugin_paths([obj for _, obj in recipe.stages]):
        return R.run_recipe(recipe, runner=runner, workers=workers, beam_args=beam_args,
                            show_progress=show_progress, max_error_rate=max_error_rate)


def _import_roots(objs) -> list[str]:
    """The sys.path folders the classes of ``objs`` were imported from, for classes outside curate (and not in
    ``__main__``, which Beam's pickler sends by value) and outside site-packages (which workers have anyway)."""
    import site

    skip = {os.path.realpath(p) for p in site.getsitepackages() + [site.getusersitepackages()]}
    roots: list[str] = []
    for obj in objs:
        module = type(obj).__module__
        top = module.split(".")[0]
        if top in ("curate", "__main__", "builtins"):
            continue
        mod = sys.modules.get(top)
        if mod is None:
            continue
        paths = list(getattr(mod, "__path__", []) or [])
        places = [os.path.dirname(p) for p in paths] if paths else (
            [os.path.dirname(mod.__file__)] if getattr(mod, "__file__", None) else [])
        for place in places:
            real = os.path.realpath(place)
            if real not in skip and place not in roots:
                roots.append(place)
    return roots


@contextlib.contextmanager
def _plugin_paths(objs):
    roots = _import_roots(objs)
    old = os.environ.get("PYTHONPATH")
    have = [p for p in (old or "").split(os.pathsep) if p]
    add = [r for r in roots if r not in have]
    if add:
        os.environ["PYTHONPATH"] = os.pathsep.join(add + have)
    try:
        yield
    finally:
        if add:
            if old is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = old


# ------------------------------------------------------------------------------------ results


def read_output(folder: str | os.PathLike, part: str = "data", columns: list[str] | None = None) -> pa.Table:
    """The files of one part of a run's output folder (``data``, ``rejected`` or ``errors``) as one table
    (schemas unified; empty when there are none): Parquet, or JSON lines (``.jsonl[.gz|.zst]``) for an
    output written with ``format: jsonl``. Local or remote (gs://, s3://)."""
    import pyarrow.parquet as pq

    from curate import schema as S
    from curate.io.readers import match_paths, open_raw
    from curate.io.writers import join

    if part not in ("data", "rejected", "errors"):
        raise ValueError(f"part must be 'data', 'rejected' or 'errors', got {part!r}")
    folder = os.fspath(folder)
    files = sorted(match_paths(join(join(folder, part), "*.parquet")))
    tables = []
    for path in files:
        with open_raw(path) as f:
            tables.append(pq.read_table(f, columns=columns))
    if not files:  # output: {format: jsonl}
        import pyarrow.json as pj

        for path in sorted(match_paths(join(join(folder, part), "*.jsonl*"))):
            comp = "gzip" if path.endswith(".gz") else "zstd" if path.endswith(".zst") else None
            with open_raw(path) as f:
                t = pj.read_json(pa.input_stream(f, compression=comp))
            tables.append(t.select([c for c in columns if c in t.column_names]) if columns else t)
    if not tables:
        return S.ERROR_SCHEMA.empty_table() if part == "errors" else pa.table({})
    return pa.concat_tables(tables, promote_options="default")


@dataclass
class Result:
    """What ``Pipeline.run`` returns: the counts (``stats``: stage -> StageStats) and the output's tables."""

    run: Any  # curate.core.runner.RunResult

    @property
    def output(self) -> str:
        return self.run.recipe.output.path

    @property
    def stats(self) -> dict:
        return self.run.stats

    @property
    def names(self) -> list[str]:
        return self.run.names

    @property
    def ledger_ok(self) -> bool:
        return not self.run.problems

    @property
    def failed(self) -> list[str]:
        return self.run.failed

    @property
    def documents_in(self) -> int:
        return self.run.stats["read"].n_in

    @property
    def documents_out(self) -> int:
        return self.run.stats["write"].kept

    def data(self, columns: list[str] | None = None) -> pa.Table:
        return read_output(self.output, "data", columns)

    def rejected(self) -> pa.Table:
        return read_output(self.output, "rejected")

    def errors(self) -> pa.Table:
        return read_output(self.output, "errors")

    def to_json(self) -> dict:
        return self.run.to_json()

    def summary(self) -> str:
        """The table ``curate run`` prints, as text."""
        import io

        from rich.console import Console

        from curate.core.report import print_summary

        buf = io.StringIO()
        print_summary(self.run, Console(file=buf, width=160, color_system=None, soft_wrap=True))
        return buf.getvalue()

    def __repr__(self) -> str:
        if self.run.dry_run:
            return f"Result({self.output!r}: dry run, {len(self.names) - 1} stages; nothing was read or written)"
        return (f"Result({self.output!r}: {self.documents_in:,} in, {self.documents_out:,} written, "
                f"ledger {'balanced' if self.ledger_ok else 'NOT balanced'})")


@dataclass
class TableResult:
    """What ``apply`` returns: ``kept`` rows (with the columns the stages added), ``rejected`` rows (with
    ``drop_stage`` and ``drop_reason``), ``errors`` (curate's error records: stage, id, reason, ...) and
    per-stage counts (``stats``: name -> StageStats; ``read`` is the table's mapping onto the schema)."""

    kept: pa.Table
    rejected: pa.Table
    errors: pa.Table
    stats: dict
    names: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        from curate.core.runner import check_ledger

        return check_ledger(self.stats, self.names)

    @property
    def ledger_ok(self) -> bool:
        return not self.problems

    def dropped(self) -> dict[str, int]:
        """Dropped documents per reason, over all stages."""
        out: dict[str, int] = {}
        for n in self.names:
            for k, v in self.stats[n].dropped.items():
                out[k] = out.get(k, 0) + v
        return out

    def summary(self) -> str:
        lines = [f"{'stage':<20} {'in':>8} {'kept':>8} {'dropped':>8} {'errors':>7}  reasons"]
        for n in self.names + ["write"]:
            s = self.stats[n]
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(s.dropped.items(), key=lambda kv: -kv[1]))
            if s.flagged:
                reasons += (" | " if reasons else "") + "flagged: " + ", ".join(f"{k} {v}" for k, v in s.flagged.items())
            lines.append(f"{n:<20} {s.n_in:>8} {s.kept:>8} {s.n_dropped:>8} {s.errors:>7}  {reasons}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        n_in = self.stats["read"].n_in
        errors = sum(self.stats[n].errors for n in self.names)
        return (f"TableResult({n_in:,} in, {self.kept.num_rows:,} kept, {sum(self.dropped().values()):,} dropped "
                f"{self.dropped()}, {errors:,} errors)")


# -------------------------------------------------------------------------------- on a table


def _as_table(table) -> pa.Table:
    if isinstance(table, pa.Table):
        return table
    if isinstance(table, pa.RecordBatch):
        return pa.Table.from_batches([table])
    try:
        return pa.table(table)
    except (TypeError, ValueError, pa.ArrowException) as e:
        raise TypeError(f"apply takes a pyarrow.Table, a RecordBatch or anything pyarrow.table() accepts "
                        f"(a pandas DataFrame, a dict of columns ...); got {type(table).__name__}: {e}") from None


def _reader_spec(options: dict):
    from curate.core.recipe import RecipeError, configure
    from curate.io.readers import InputSpec

    bad = sorted(set(options) - set(_READER_OPTIONS))
    if bad:
        raise RecipeError([f"unknown option(s) {bad} for a table; known: {', '.join(_READER_OPTIONS)}"])
    spec, problems = configure(InputSpec, {"path": [TABLE_FILE], **options}, "<python>", {}, (), "table")
    if problems:
        raise RecipeError(_strip_lines(problems, "<python>"))
    return spec


def _combine(batches: list[pa.RecordBatch], empty_schema: pa.Schema | None = None) -> pa.Table:
    tables = [pa.Table.from_batches([b]).replace_schema_metadata(None) for b in batches if b.num_rows]
    if not tables:
        return (empty_schema or pa.schema([])).empty_table().replace_schema_metadata(None)
    return pa.concat_tables(tables, promote_options="default")


def _normalize(table: pa.Table, spec):
    """The table as keyed record batches of the document schema, as the Parquet reader maps a file: (batches,
    read stats, rejected batches, error records), then the id check (a repeated id is an error)."""
    import numpy as np

    from curate import schema as S
    from curate.core.runner import StageStats
    from curate.io.readers import BatchBuilder, Shard, _table_to_batches

    shard = Shard(0, TABLE_FILE, "parquet", 0)
    b = BatchBuilder(shard, spec, keep_rejected=True)
    batches = [x for x in _table_to_batches(table, shard, spec, b, 0) if x is not None]
    read = StageStats("read", n_in=b.n_in, kept=sum(x.num_rows for x in batches),
                      errors=sum(e["n_records"] for e in b.errors), dropped=dict(b.dropped))
    rejected = [r for r in [b.rejected_batch()] if r is not None]
    errors = list(b.errors)
    stats = {"read": read}
    if spec.unique_ids:
        n = sum(x.num_rows for x in batches)
        ids = pa.concat_arrays([x.column(S.ID) for x in batches]) if batches else pa.array([], pa.string())
        firsts = pa.table({"id": ids, "i": np.arange(n)}).group_by("id", use_threads=False).aggregate([("i", "min")])
        keep = np.zeros(n, dtype=bool)
        keep[firsts.column("i_min").to_numpy()] = True
        out, start = [], 0
        for x in batches:
            k = keep[start:start + x.num_rows]
            for r in np.flatnonzero(~k):
                errors.append(dict(stage="input_ids", file=TABLE_FILE, location=f"batch {S.batch_key(x)} row {int(r)}",
                                   id=x.column(S.ID)[int(r)].as_py(), reason="duplicate id", n_records=1,
                                   snippet=x.column(S.TEXT)[int(r)].as_py()))
            kept = S.keep_rows(x, k)
            if kept.num_rows:
                out.append(kept)
            start += x.num_rows
        stats["input_ids"] = StageStats("input_ids", n_in=n, kept=int(keep.sum()), errors=int(n - keep.sum()))
        batches = out
    return batches, stats, rejected, errors


def _apply_table(stages: list[tuple[str, Any]], table, options: dict) -> TableResult:
    from curate import schema as S
    from curate.core.global_stage import GlobalStage

    table = _as_table(table)
    spec = _reader_spec(options)
    if spec.text_key not in table.column_names:  # the whole table, not a record: the caller's mistake
        raise ValueError(f"the table has no column {spec.text_key!r} (columns: {table.column_names}); "
                         "name the text column with text_key=")
    kind = table.schema.field(spec.text_key).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)):
        raise ValueError(f"the table's column {spec.text_key!r} has type {kind}, not string")
    batches, stats, rejected, errors = _normalize(table, spec)
    names = list(stats)
    schema = batches[0].schema if batches else None
    if any(isinstance(obj, GlobalStage) for _, obj in stages):
        kept, more_rejected, more_errors, more_stats = _apply_with_beam(stages, batches, spec)
    else:
        kept, more_rejected, more_errors, more_stats = _apply_rules(stages, batches)
    stats.update(more_stats)
    names += [n for n, _ in stages]
    from curate.core.runner import StageStats

    stats["write"] = StageStats("write", n_in=kept.num_rows, kept=kept.num_rows)
    rej = [pa.Table.from_batches([r]).replace_schema_metadata(None) for r in rejected if r.num_rows] + more_rejected
    rej = pa.concat_tables(rej, promote_options="default") if rej else pa.table({
        **{f.name: pa.array([], f.type) for f in (schema or [])}, "drop_stage": pa.array([], pa.string()),
        "drop_reason": pa.array([], pa.string())})
    errs = [pa.Table.from_batches([S.errors_batch(errors)])] if errors else []
    errs += more_errors
    errs = pa.concat_tables(errs, promote_options="default") if errs else S.ERROR_SCHEMA.empty_table()
    if kept.num_rows == 0 and schema is not None and kept.num_columns == 0:
        kept = schema.empty_table().replace_schema_metadata(None)
    return TableResult(kept, rej, errs, stats, names)


def _apply_rules(stages, batches):
    """Per-batch rules in this process, through ``ApplyRule`` (the DoFn of a Beam run), counted from what it emits."""
    import numpy as np
    import pyarrow.compute as pc

    from curate.core.runner import StageStats
    from curate.core.stage import ERRORS, REJECTED, ApplyRule, Filter

    rejected, errors, stats = [], [], {}
    for name, rule in stages:
        fn = ApplyRule(rule, name, write_rejected=True)
        fn.setup()
        st = stats[name] = StageStats(name)
        out = []
        for batch in batches:
            st.n_in += batch.num_rows
            for item in fn.process(batch):
                tag = getattr(item, "tag", None)
                if tag == ERRORS:
                    st.errors += int(pc.sum(item.value.column("n_records")).as_py() or 0)
                    errors.append(pa.Table.from_batches([item.value]))
                elif tag == REJECTED:
                    r = item.value
                    for reason, n in zip(*np.unique(np.asarray(r.column("drop_reason").to_pylist(), dtype=object).astype(str),
                                                    return_counts=True)):
                        st.dropped[str(reason)] = st.dropped.get(str(reason), 0) + int(n)
                    rejected.append(pa.Table.from_batches([r]).replace_schema_metadata(None))
                else:
                    st.kept += item.num_rows
                    out.append(item)
                    if isinstance(rule, Filter) and rule.mode == "annotate":
                        col = item.column(f"{name}_reason")
                        for v in pc.value_counts(col.drop_null()).to_pylist():
                            st.flagged[v["values"]] = st.flagged.get(v["values"], 0) + v["counts"]
        batches = out
    schema = batches[0].schema if batches else None
    return _combine(batches, schema), rejected, errors, stats


def _apply_with_beam(stages, batches, spec):
    """A pipeline with a global stage: the normalized table as one Parquet file, run on the embedded runner
    (the same ``run_recipe`` as ``curate run``) into a scratch folder, read back in the table's row order."""
    import shutil
    import tempfile

    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from curate import schema as S
    from curate.core.recipe import OutputSpec, Recipe
    from curate.io.readers import InputSpec

    tmp = tempfile.mkdtemp(prefix="curate-apply-")
    try:
        src = os.path.join(tmp, "in", TABLE_FILE + ".parquet")
        os.makedirs(os.path.dirname(src))
        order = pa.concat_arrays([b.column(S.ID) for b in batches]) if batches else pa.array([], pa.string())
        if batches:
            tables = [pa.Table.from_batches([b]).replace_schema_metadata(None) for b in batches]
            pq.write_table(pa.concat_tables(tables, promote_options="default"), src, row_group_size=spec.batch_size)
        else:
            pq.write_table(pa.table({S.ID: pa.array([], pa.string()), S.TEXT: pa.array([], pa.string())}), src)
        recipe = Recipe("Pipeline.apply", InputSpec(path=[src], format="parquet", batch_size=spec.batch_size,
                                                    unique_ids=False),
                        OutputSpec(path=os.path.join(tmp, "out"), write_rejected=True, compression="none"), list(stages))
        res = run_recipe(recipe)
        out = recipe.output.path

        def in_order(t: pa.Table) -> pa.Table:
            if not t.num_rows or S.ID not in t.column_names:
                return t
            return t.take(pa.array(np.argsort(pc.index_in(t.column(S.ID), value_set=order).to_numpy(zero_copy_only=False),
                                              kind="stable")))

        kept = in_order(read_output(out, "data"))
        rejected = read_output(out, "rejected")
        rejected = [in_order(rejected)] if rejected.num_rows else []
        errors = read_output(out, "errors")
        if errors.num_rows:
            errors = errors.set_column(errors.schema.get_field_index("file"), "file",
                                       pa.array([TABLE_FILE] * errors.num_rows, pa.string()))
        errors = [errors] if errors.num_rows else []
        stats = {n: res.stats[n] for n, _ in stages}
        if not kept.num_columns and batches:
            kept = batches[0].schema.empty_table().replace_schema_metadata(None)
        return kept, rejected, errors, stats
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
