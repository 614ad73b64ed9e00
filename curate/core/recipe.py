"""YAML recipes: load, validate everything before anything runs, report problems as file:line.

```yaml
input:
  path: samples/corpus/*.jsonl*      # glob or list of globs; local, gs://, s3://
  text_key: text                     # reader options: format, id_key, url_key, html_key, source, batch_size ...
output: out/quickstart               # or {path: DIR, write_rejected: true}
stages:
  - lang_id: {languages: [en]}
  - length_filter: {min_words: 50}
  - exact_dedup: {}
```
"""
from __future__ import annotations

import dataclasses
import difflib
import glob
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from curate.core.registry import StageLoadError, all_stages, is_reference, params_of
from curate.core.safety import NOT_DATA, UserError, check_name, check_output, resolve_input
from curate.io.readers import FORMATS, InputSpec, detect_format


class RecipeError(ValueError):
    """One or more problems in a recipe; ``str()`` lists them, each with file:line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


COMPRESSIONS = ("zstd", "snappy", "gzip", "brotli", "lz4", "none")


@dataclass
class OutputSpec:
    """``output:``. ``format``: parquet (default) or jsonl; ``compression``: Parquet's codec, or for jsonl
    gzip | zstd | none (``.jsonl.gz``, ``.jsonl.zst``, ``.jsonl``). ``file_rows`` / ``file_bytes``: files of
    about that many rows / bytes on disk (the first limit reached) instead of one file per batch.
    Errors are always written as Parquet (``curate run`` summarizes them from there)."""

    path: str
    write_rejected: bool = False
    compression: Literal["zstd", "snappy", "gzip", "brotli", "lz4", "none"] = "zstd"
    format: Literal["parquet", "jsonl"] = "parquet"
    file_rows: int | None = None
    file_bytes: int | None = None


def _output_problems(out: OutputSpec) -> list[tuple[str, str]]:
    """(key, problem) for values that pass the type check but not together."""
    from curate.io.writers import JSONL_COMPRESSIONS

    problems = []
    if out.format == "jsonl" and out.compression not in JSONL_COMPRESSIONS:
        problems.append(("compression", f"jsonl output is compressed with one of {', '.join(JSONL_COMPRESSIONS)}, "
                                        f"not {out.compression!r}"))
    for key in ("file_rows", "file_bytes"):
        v = getattr(out, key)
        if v is not None and v < 1:
            problems.append((key, f"{key} must be at least 1 (or left out: one file per batch), got {v}"))
    return problems


@dataclass
class Recipe:
    source_file: str
    input: InputSpec
    output: OutputSpec
    stages: list[tuple[str, Any]] = field(default_factory=list)  # (instance name, configured rule/stage)


# ------------------------------------------------------------------------- YAML with line numbers


def _load_with_lines(text: str, filename: str):
    """Parse YAML; returns (data, lines) where lines maps a key path tuple to its 1-based line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{filename}:{mark.line + 1}" if mark else filename
        raise RecipeError([f"{where}: not valid YAML: {getattr(e, 'problem', e)}"]) from None
    lines: dict[tuple, int] = {}
    constructor = yaml.SafeLoader("")

    def build(node, path):
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out = {}
            for k, v in node.value:
                key = constructor.construct_object(k)
                lines[path + (key,)] = k.start_mark.line + 1
                out[key] = build(v, path + (key,))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [build(v, path + (i,)) for i, v in enumerate(node.value)]
        return constructor.construct_object(node)

    data = build(root, ()) if root is not None else None
    return data, lines


# ------------------------------------------------------------------------------ type checking


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"mapping of {_type_name(typing.get_args(tp)[1])}"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _check(value, tp) -> tuple[bool, Any]:
    """(ok, coerced value) for ``value`` against the annotation ``tp``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return True, value
    if origin is Literal:
        return value in typing.get_args(tp), value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, v = _check(value, arg)
            if ok:
                return True, v
        return False, value
    if tp is type(None):
        return value is None, value
    if origin is list:
        if not isinstance(value, list):
            return False, value
        (arg,) = typing.get_args(tp)
        out = []
        for v in value:
            ok, v = _check(v, arg)
            if not ok:
                return False, value
            out.append(v)
        return True, out
    if origin is dict:
        if not isinstance(value, dict):
            return False, value
        kt, vt = typing.get_args(tp)
        out = {}
        for k, v in value.items():
            ok1, k = _check(k, kt)
            ok2, v = _check(v, vt)
            if not (ok1 and ok2):
                return False, value
            out[k] = v
        return True, out
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        return False, value
    if tp is str:
        return isinstance(value, str), value
    if tp is dict:
        return isinstance(value, dict), value
    return isinstance(value, tp), value


# ----------------------------------------------------------------------- value conventions
#
# Every numeric parameter of every rule, stage, spec and config follows these conventions, so a
# new rule gets range checks without writing them (a class may override with ``limits``):
#   * numbers are finite and >= 0 (there is no negative count, length, score or seed here);
#   * counts of things that must exist at least once are >= 1 (partitions, buckets, bands, ...);
#   * fractions, thresholds and probabilities lie in [0, 1];
#   * ``min_X`` <= ``max_X`` when both are set.
AT_LEAST_ONE = re.compile(r"^(partitions|buckets|bands|rows|num_perm|ngram|rounds|max_doc_frequency|vocab_size)$|_size$|_bytes$")
UNIT_INTERVAL = re.compile(r"(^|_)(frac|fraction|thr|threshold|prob|probability)(_|$)|^(min|max)_score$")


def range_problem(cls, name: str, value) -> str | None:
    """The convention (or the class's ``limits``) that ``value`` of parameter ``name`` breaks, if any."""
    limits = getattr(cls, "limits", None) or {}
    if isinstance(value, dict):
        for v in value.values():
            p = range_problem(cls, name, v)
            if p:
                return p
        return None
    if isinstance(value, list):
        for v in value:
            p = range_problem(cls, name, v)
            if p:
                return p
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, got {value!r}"
    if name in limits:
        lo, hi = limits[name]
    elif AT_LEAST_ONE.search(name):
        lo, hi = 1, None
    elif UNIT_INTERVAL.search(name):
        lo, hi = 0, 1
    else:
        lo, hi = 0, None
    if lo is not None and value < lo:
        return f"must be >= {lo}, got {value!r}"
    if hi is not None and value > hi:
        return f"must be <= {hi}, got {value!r}"
    return None


def configure(cls, params: dict, where: str, lines: dict, path: tuple, what: str) -> tuple[Any, list[str]]:
    """Instantiate a dataclass from recipe params, collecting every problem with its line."""
    problems = []
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in params_of(cls)}
    kwargs = {}
    problems += _unknown_keys(params, cls, where, lines, path, what)
    for key, value in params.items():
        line = lines.get(path + (key,), lines.get(path, 0))
        if key not in fields:
            continue
        ok, coerced = _check(value, hints[key])
        if not ok:
            problems.append(f"{where}:{line}: {what}: parameter {key!r} must be {_type_name(hints[key])}, got {value!r}")
            continue
        bad = range_problem(cls, key, coerced)
        if bad:
            problems.append(f"{where}:{line}: {what}: parameter {key!r} {bad}")
            continue
        kwargs[key] = coerced

    for name, f in fields.items():
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and name not in params:
            problems.append(f"{where}:{lines.get(path, 0)}: {what}: missing required parameter {name!r}")
    if problems:
        return None, problems
    try:
        obj = cls(**kwargs)
    except (ValueError, TypeError) as e:
        return None, [f"{where}:{lines.get(path, 0)}: {what}: {e}"]
    for key in fields:
        other = "max_" + key[4:]
        if key.startswith("min_") and other in fields:
            lo, hi = getattr(obj, key, None), getattr(obj, other, None)
            if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and lo > hi:
                at = lines.get(path + (key,), lines.get(path + (other,), lines.get(path, 0)))
                problems.append(f"{where}:{at}: {what}: {key} ({lo!r}) is greater than {other} ({hi!r})")
    return (None, problems) if problems else (obj, [])


# --------------------------------------------------------------------------------- the recipe


def read_text(path: str, what: str) -> str:
    """The text of a YAML file; a RecipeError naming the file when it cannot be read."""
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        raise RecipeError([f"{path}: cannot read {what}: {e.strerror}"]) from None


def load_recipe(path: str, input_override: list[str] | None = None, output_override: str | None = None,
                check_inputs: bool = True) -> Recipe:
    return parse_recipe(read_text(path, "recipe"), path, input_override, output_override, check_inputs)


def parse_recipe(text: str, where: str = "<recipe>", input_override=None, output_override=None,
                 check_inputs: bool = True) -> Recipe:
    data, lines = _load_with_lines(text, where)
    problems: list[str] = []
    if not isinstance(data, dict):
        raise RecipeError([f"{where}:1: a recipe is a mapping with 'input', 'output' and 'stages'"])
    for key in data:
        if key not in ("input", "output", "stages"):
            close = difflib.get_close_matches(str(key), ["input", "output", "stages"], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{where}:{lines[(key,)]}: unknown top-level key {key!r}{hint}")

    # input
    raw_in = data.get("input")
    if isinstance(raw_in, (str, list)):
        raw_in = {"path": raw_in}
        lines[("input", "path")] = lines.get(("input",), 1)
    if input_override:
        raw_in = dict(raw_in or {}, path=list(input_override))
    spec = None
    if not isinstance(raw_in, dict) or "path" not in raw_in:
        problems.append(f"{where}:{lines.get(('input',), 1)}: 'input' needs a 'path' (a glob or a list of globs), or pass --input")
        if isinstance(raw_in, dict):
            problems += _unknown_keys(raw_in, InputSpec, where, lines, ("input",), "input")
    else:
        raw_in = dict(raw_in)
        if isinstance(raw_in["path"], str):
            raw_in["path"] = [raw_in["path"]]
        spec, errs = configure(InputSpec, raw_in, where, lines, ("input",), "input")
        problems += errs
        if spec is not None and spec.format not in FORMATS + ("auto",):
            problems.append(f"{where}:{lines.get(('input', 'format'), 0)}: input: format must be one of {FORMATS + ('auto',)}")
        if check_inputs and isinstance(raw_in["path"], list):
            for i, pattern in enumerate(raw_in["path"]):
                line = lines.get(("input", "path", i), lines.get(("input", "path"), 0))
                src = "--input" if input_override else f"{where}:{line}"
                problems += [f"{src}: input: {p}" for p in _input_problems(pattern, spec.format if spec else "auto")]
        if spec is not None:
            spec.path = [_abs(p) for p in spec.path]
            try:
                spec.path = [p if "://" in p else resolve_input(p) for p in spec.path]  # remote: checked by the workers
            except UserError as e:
                problems.append(f"{'--input' if input_override else where}: {e}")

    # output
    raw_out = data.get("output")
    if output_override:
        raw_out = dict(raw_out, path=output_override) if isinstance(raw_out, dict) else output_override
    if isinstance(raw_out, str):
        raw_out = {"path": raw_out}
        lines[("output", "path")] = lines.get(("output",), 1)
    out = None
    if not isinstance(raw_out, dict) or "path" not in raw_out:
        problems.append(f"{where}:{lines.get(('output',), 1)}: 'output' needs a folder path, or pass --output")
        if isinstance(raw_out, dict):
            problems += _unknown_keys(raw_out, OutputSpec, where, lines, ("output",), "output")
    else:
        out, errs = configure(OutputSpec, raw_out, where, lines, ("output",), "output")
        problems += errs
        if out is not None:
            for key, problem in _output_problems(out):
                problems.append(f"{where}:{lines.get(('output', key), lines.get(('output',), 1))}: output: {problem}")
            out.path = _abs(out.path)
            if check_inputs and spec is not None:
                try:
                    check_output(out.path, spec.path, "the output")
                except UserError as e:
                    problems.append(f"{'--output' if output_override else where + ':' + str(lines.get(('output',), 1))}: {e}")

    # stages
    stages = []
    registry = all_stages()
    raw_stages = data.get("stages") or []
    if not isinstance(raw_stages, list):
        problems.append(f"{where}:{lines.get(('stages',), 0)}: 'stages' is a list of '- name: {{params}}' items")
        raw_stages = []
    names_seen: dict[str, int] = {}
    for i, item in enumerate(raw_stages):
        line = lines.get(("stages", i), 0)
        if isinstance(item, str):
            item = {item: {}}
        if not isinstance(item, dict) or len(item) != 1:
            problems.append(f"{where}:{line}: stage {i + 1}: each stage is one 'name: {{params}}' mapping")
            continue
        (stype, params), = item.items()
        params = {} if params is None else params
        if stype not in registry:
            close = difflib.get_close_matches(str(stype), list(registry), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else (
                f" (known stages: {', '.join(sorted(registry))}; a stage of your own is named 'package.module:Class' "
                "or registered by a plugin, entry point group 'curate.stages')")
            problems.append(f"{where}:{line}: unknown stage {stype!r}{hint}")
            continue
        try:
            cls = registry[stype]  # a plugin or 'module:Class' is imported and checked here
        except StageLoadError as e:
            problems.append(f"{where}:{line}: {e}")
            continue
        if not isinstance(params, dict):
            problems.append(f"{where}:{line}: stage {stype!r}: parameters must be a mapping, got {params!r}")
            continue
        params = dict(params)
        name = params.pop("name", None)
        if name is None:
            base = (cls.stage or cls.__name__) if is_reference(stype) else stype
            names_seen[base] = names_seen.get(base, 0) + 1
            name = base if names_seen[base] == 1 else f"{base}_{names_seen[base]}"
        bad = check_name(name, "stage name")
        if bad:  # stage names become file names (rejected/<stage>-..., errors/<stage>-...) and metric keys
            problems.append(f"{where}:{lines.get(('stages', i, stype, 'name'), line)}: {bad}")
            continue
        obj, errs = configure(cls, params, where, lines, ("stages", i, stype), f"stage {stype!r}")
        problems += errs
        if obj is not None:
            stages.append((str(name), obj))
    dup = {n for n, _ in stages if [m for m, _ in stages].count(n) > 1}
    if dup:
        problems.append(f"{where}: stage names must be unique; repeated: {sorted(dup)} (set 'name:' on one of them)")
    if problems:
        raise RecipeError(problems)
    return Recipe(where, spec, out, stages)


def _unknown_keys(params: dict, cls, where: str, lines: dict, path: tuple, what: str) -> list[str]:
    """A problem with its line for every key of ``params`` that is not a parameter of ``cls``, with a did-you-mean."""
    fields = [f.name for f in params_of(cls)]
    out = []
    for key in params:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(sorted(fields))})"
            out.append(f"{where}:{lines.get(path + (key,), lines.get(path, 0))}: {what}: unknown parameter {key!r}{hint}")
    return out


def _input_problems(pattern, fmt: str) -> list[str]:
    """What is wrong with one local input pattern: matches nothing, or files of no format curate reads."""
    if not isinstance(pattern, str):
        return [f"{pattern!r} is not a path"]
    if "://" in pattern and not pattern.startswith("file://"):
        return []  # remote: listed by the workers at run time
    local = pattern.removeprefix("file://")
    found = glob.glob(local)
    if not found:
        return [f"{pattern!r} matches no file"]
    if fmt != "auto":
        return []
    problems = []
    for path in sorted(found):
        if os.path.isdir(path):
            continue
        if os.path.basename(path) in NOT_DATA:
            problems.append(f"{path!r} is not a data file ({os.path.basename(path)} is written beside data, not records); "
                            "give the data files or their folder")
            continue
        try:
            detect_format(path)
        except ValueError:
            problems.append(f"{path!r}: cannot tell the format from the file name (jsonl, json, ndjson, parquet, arrow, "
                            "warc, optionally .gz/.zst); rename it or set input.format")
        if len(problems) >= 3:
            break
    return problems


def _abs(p: str) -> str:
    return p if "://" in p else os.path.abspath(p)
