"""Build the Beam pipeline for a recipe, run it, and settle the ledger.

Output folder layout::

    OUTPUT/data/part-<batch key>.parquet        kept documents
    OUTPUT/rejected/<stage>-<batch key>.parquet dropped documents with drop_stage/drop_reason (opt-in)
    OUTPUT/errors/<stage>-<batch key>.parquet   records that could not be read or processed, with reasons
    OUTPUT/stats.json                           per-stage counts and the ledger check
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import (DirectOptions, PipelineOptions, SetupOptions, StandardOptions,
                                                  TypeOptions)

from curate import schema as S
from curate.core import progress
from curate.core.recipe import Recipe
from curate.core.global_stage import Chain, GlobalStage, StageContext
from curate.core.registry import build_stage
from curate.core.safety import INCOMPLETE, SUCCESS, UserError, begin_output, check_output, finish_output
from curate.core.stage import ERRORS, KEPT, NAMESPACE, REJECTED
from curate.io.readers import is_local
from curate.io.transforms import ReadInput
from curate.io.writers import WriteBatches, WriteOutput, join, write_bytes

LOCAL_RUNNERS = (None, "", "local", "DirectRunner", "FnApiRunner", "InProcess")
OUTPUT_PARTS = ("data", "rejected", "errors", "_tmp", "stats.json", SUCCESS, INCOMPLETE)
DEFAULT_MAX_ERROR_RATE = 0.5


class LedgerError(RuntimeError):
    pass


def derive_partitions(paths: list[str], bytes_per_partition: int = 128 << 20, most: int = 1 << 14) -> int:
    """Shuffle partitions for the global stages, from the input's size: one per 128 MiB, 4 at least.

    What is shuffled are keys (16-24 bytes a document, about 300 for MinHash bands), so a partition
    of 128 MiB of input holds a few MB to tens of MB of keys. More partitions would multiply the
    shuffle's elements (one per batch and partition, which the local runner's driver holds); fewer
    would grow each reducer's share (bench/bench_scale.py measured both ways).

    Local inputs are measured with a glob; remote ones by one listing of each pattern through Beam's
    FileSystems (sizes only, nothing is read); when a remote listing fails here (no credentials on
    the machine that builds the graph), 64, and a dry run never lists them (64: nothing runs). A
    stage's ``partitions:`` overrides it. Results never depend on this number, only memory per
    reducer and parallelism do.
    """
    import glob as _glob

    if any(not is_local(p) for p in paths):
        from curate.io.readers import list_files

        try:
            total = sum(size for _, size in list_files(paths))
        except Exception:  # noqa: BLE001 - the read itself reports what is wrong with the input
            return 64
        return int(min(most, max(4, -(-total // bytes_per_partition))))
    total = 0
    for pattern in paths:
        local = pattern.removeprefix("file://")
        files = [local] if os.path.isfile(local) else _glob.glob(os.path.join(local, "**") if os.path.isdir(local) else local,
                                                                 recursive=True)
        total += sum(os.path.getsize(f) for f in files if os.path.isfile(f))
    return int(min(most, max(4, -(-total // bytes_per_partition))))


def segments(stages: list[tuple[str, object]], unique_ids: bool) -> list[tuple[str, list]]:
    """The recipe's stages as ("rule", [(name, rule)]) and ("chain", [(name, global stage), ...]) segments.

    Consecutive global stages share one materialization. The input id check is a global stage too: it
    joins the first chain (so its scratch copy is shared), or runs alone after the read when there is none.
    """
    from curate.core.keydedup import UniqueIds

    items = list(stages)
    if unique_ids:
        first = next((i for i, (_, obj) in enumerate(items) if isinstance(obj, GlobalStage)), 0)
        items.insert(first, ("input_ids", UniqueIds()))
    out: list[tuple[str, list]] = []
    for name, obj in items:
        kind = "chain" if isinstance(obj, GlobalStage) else "rule"
        if kind == "chain" and out and out[-1][0] == "chain":
            out[-1][1].append((name, obj))
        else:
            out.append((kind, [(name, obj)]))
    return out


def build_pipeline(p: beam.Pipeline, recipe: Recipe, tmp_dir: str, spill: bool = True, list_inputs: bool = True) -> list[str]:
    """Adds the recipe's transforms to ``p``; returns the ordered stage names for the ledger."""
    out = recipe.output
    names = ["read"]
    res = p | "read" >> ReadInput(recipe.input, write_rejected=out.write_rejected)
    kept, errors, rejected = res[KEPT], [res[ERRORS]], [res[REJECTED]]
    partitions = derive_partitions(recipe.input.path) if list_inputs or all(is_local(x) for x in recipe.input.path) else 64
    spill_dir = join(tmp_dir, "_spill") if spill else None
    for i, (kind, members) in enumerate(segments(recipe.stages, recipe.input.unique_ids)):
        if kind == "rule":
            (name, obj), = members
            res = kept | name >> build_stage(obj, StageContext(name=name, tmp_dir=tmp_dir, write_rejected=out.write_rejected))
        else:
            label = f"chain{i}"
            res = kept | label >> Chain(members, tmp_dir, out.write_rejected, spill_dir, partitions, label)
        kept = res[KEPT]
        errors += res[ERRORS] if isinstance(res[ERRORS], list) else [res[ERRORS]]
        rejected += res[REJECTED] if isinstance(res[REJECTED], list) else [res[REJECTED]]
        names += [n for n, _ in members]
    files = dict(fmt=out.format, compression=out.compression, file_rows=out.file_rows, file_bytes=out.file_bytes)
    kept | "write" >> WriteOutput(join(out.path, "data"), "part-", count_as="write", name="data", **files)
    # each stage's errors and rejected documents are written where they are produced: a Flatten across steps
    # would be buffered whole in the local runner's memory (with write_rejected, most of the corpus)
    for i, pc in enumerate(errors):
        pc | f"write_errors{i}" >> beam.ParDo(WriteBatches(join(out.path, "errors"), "", out.compression))
    if out.write_rejected:
        for i, pc in enumerate(rejected):
            pc | f"write_rejected{i}" >> WriteOutput(join(out.path, "rejected"), "", name=f"rejected{i}", **files)
    return names


# --------------------------------------------------------------------------------------- ledger


@dataclass
class StageStats:
    name: str
    n_in: int = 0
    kept: int = 0
    errors: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    flagged: dict[str, int] = field(default_factory=dict)

    @property
    def n_dropped(self) -> int:
        return sum(self.dropped.values())

    def balanced(self) -> bool:
        return self.n_in == self.kept + self.n_dropped + self.errors


def collect_stats(result, names: list[str]) -> dict[str, StageStats]:
    stats = {n: StageStats(n) for n in names}
    stats["write"] = StageStats("write")
    counters = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
    for c in counters:
        parts = c.key.metric.name.split("|")
        value = c.committed if c.committed is not None else c.attempted
        st = stats.setdefault(parts[0], StageStats(parts[0]))
        kind = parts[1]
        if kind == "in":
            st.n_in += value
        elif kind == "kept":
            st.kept += value
        elif kind == "errors":
            st.errors += value
        elif kind in ("dropped", "flagged"):
            d = getattr(st, kind)
            d[parts[2]] = d.get(parts[2], 0) + value
    stats["write"].n_in = stats["write"].kept
    return stats


def collect_info(result) -> dict[str, int]:
    info: dict[str, int] = {}
    for c in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE + ".info"))["counters"]:
        value = c.committed if c.committed is not None else c.attempted
        info[c.key.metric.name] = info.get(c.key.metric.name, 0) + value
    return dict(sorted(info.items()))


def check_ledger(stats: dict[str, StageStats], names: list[str]) -> list[str]:
    problems = []
    for n in names:
        st = stats[n]
        if not st.balanced():
            problems.append(f"stage {n}: in {st.n_in} != kept {st.kept} + dropped {st.n_dropped} + errors {st.errors}")
    for a, b in zip(names, names[1:]):
        if stats[a].kept != stats[b].n_in:
            problems.append(f"stage {a} kept {stats[a].kept} but stage {b} received {stats[b].n_in}")
    if names and stats[names[-1]].kept != stats["write"].kept:
        problems.append(f"last stage kept {stats[names[-1]].kept} but {stats['write'].kept} were written")
    total_in = stats["read"].n_in
    accounted = stats["write"].kept + sum(stats[n].n_dropped + stats[n].errors for n in names)
    if total_in != accounted:
        problems.append(f"input {total_in} != written {stats['write'].kept} + dropped + errors ({accounted - stats['write'].kept})")
    return problems


# ------------------------------------------------------------------------------------------ run


@dataclass
class RunResult:
    recipe: Recipe
    names: list[str]
    stats: dict[str, StageStats]
    seconds: float
    problems: list[str]
    runner: str
    dry_run: bool = False
    job_steps: list[str] = field(default_factory=list)
    info: dict[str, int] = field(default_factory=dict)  # stage diagnostics (lines removed, pairs checked ...)
    top_errors: list[dict] = field(default_factory=list)  # most frequent error reasons: stage, reason, n, example
    failed: list[str] = field(default_factory=list)  # stages over the error-rate limit, in words

    def to_json(self) -> dict:
        return {
            "recipe": self.recipe.source_file,
            "input": self.recipe.input.path,
            "output": self.recipe.output.path,
            "runner": self.runner,
            "seconds": round(self.seconds, 3),
            "ledger_ok": not self.problems,
            "ledger_problems": self.problems,
            "limit": self.recipe.input.limit,  # --limit N: only the first N documents of the input were read
            "documents_in": self.stats["read"].n_in,
            "documents_out": self.stats["write"].kept,
            "info": self.info,
            "top_errors": self.top_errors,
            "failed": self.failed,
            "stages": [
                {"name": n, "in": s.n_in, "kept": s.kept, "dropped": s.dropped, "errors": s.errors, "flagged": s.flagged}
                for n, s in ((n, self.stats[n]) for n in self.names + ["write"])
            ],
        }


def claim_output(path: str, parts=OUTPUT_PARTS) -> None:
    """Refuse to write into a folder that holds any of our ``parts`` without being a curate output.

    ``clean_output`` removes those parts; in a folder curate did not write (no ``_SUCCESS``,
    ``_INCOMPLETE`` or ``stats.json``) a ``data/`` may be the user's own, so nothing is removed.
    On an object store (gs://) a part "exists" when a file has its name or lies under it.
    """
    if not is_local(path):
        from curate.io.readers import exists, match_paths

        base = path.rstrip("/")
        if any(exists(join(base, m)) for m in (SUCCESS, INCOMPLETE, "stats.json")):
            return
        theirs = [p for p in parts if exists(join(base, p)) or match_paths(join(base, p) + "/**", limit=1)]
        if theirs:
            raise UserError(f"output {path!r} already holds {', '.join(theirs)} but was not written by curate (no "
                            f"{SUCCESS}, {INCOMPLETE} or stats.json): curate would replace them; choose another output folder")
        return
    local = path.removeprefix("file://")
    if not os.path.isdir(local):
        return
    ours = any(os.path.exists(os.path.join(local, m)) for m in (SUCCESS, INCOMPLETE, "stats.json"))
    theirs = [p for p in parts if os.path.exists(os.path.join(local, p))]
    if theirs and not ours:
        raise UserError(f"output {path!r} already holds {', '.join(theirs)} but was not written by curate (no {SUCCESS}, "
                        f"{INCOMPLETE} or stats.json): curate would replace them; choose another output folder")


def clean_output(path: str, parts=OUTPUT_PARTS) -> None:
    """Remove what an earlier (possibly crashed) run left in our own ``parts`` of ``path``; nothing else.

    Remotely a part is the file of that name (``stats.json``, the markers) and every file under it
    (``data/**``; object stores have no folders, so a folder path itself matches nothing).
    """
    if is_local(path):
        for part in parts:
            target = os.path.join(path, part)
            if os.path.isdir(target):
                shutil.rmtree(target)
            elif os.path.exists(target):
                os.remove(target)
        os.makedirs(path, exist_ok=True)
        return
    from apache_beam.io.filesystems import FileSystems

    from curate.io.readers import exists
    from curate.io.writers import remove_tree

    for part in parts:
        target = join(path, part)
        remove_tree(target)
        if exists(target):
            FileSystems.delete([target])


def _ship_options(options: PipelineOptions) -> None:
    """For remote runners: ship this package to the workers unless the user chose how."""
    setup = options.view_as(SetupOptions)
    if setup.setup_file or setup.extra_packages or setup.requirements_file:
        return
    from apache_beam.options.pipeline_options import WorkerOptions

    if options.view_as(WorkerOptions).sdk_container_image:
        return
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    pyproject = os.path.join(here, "pyproject.toml")
    if os.path.exists(pyproject):
        setup.setup_file = pyproject


def pipeline_setup(runner: str | None, workers: int = 1, beam_args: list[str] | None = None):
    """(options, Beam runner object or None, runner name, local?) for ``beam.Pipeline(runner=, options=)``.

    Locally: the in-process FnApiRunner, with ``workers`` processes when > 1. Otherwise the named runner,
    with this package shipped to its workers (``_ship_options``). Beam's FileSystems get the options
    now, so what the driver reads and writes before the pipeline exists (markers, cleanup) uses them.
    """
    from curate.io.readers import set_filesystem_options

    options = PipelineOptions(list(beam_args or []))
    if not any("pipeline_type_check" in a for a in beam_args or []):
        # every element between our transforms is a RecordBatch (or a small tuple of them) that Beam
        # pickles anyway; its type inference (bytecode analysis of each DoFn) would be half of the
        # graph's construction time. `--pipeline_type_check` turns it back on.
        options.view_as(TypeOptions).pipeline_type_check = False
    set_filesystem_options(options)
    if runner in LOCAL_RUNNERS:
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        if workers > 1:
            direct = options.view_as(DirectOptions)
            direct.direct_num_workers = workers
            direct.direct_running_mode = "multi_processing"
        return options, FnApiRunner(), "local" + (f" ({workers} workers)" if workers > 1 else ""), True
    options.view_as(StandardOptions).runner = runner
    _ship_options(options)
    return options, None, runner, False


def run_recipe(recipe: Recipe, runner: str | None = None, workers: int = 1, beam_args: list[str] | None = None,
               show_progress: bool = False, max_error_rate: float = DEFAULT_MAX_ERROR_RATE) -> RunResult:
    """Run ``recipe``. Raises UserError before anything is written when the output is unsafe (or, with a
    remote runner, when a path is on this machine), LedgerError when the ledger does not balance. A stage whose error rate is over ``max_error_rate`` is
    named in ``RunResult.failed`` and the output is left marked ``_INCOMPLETE``.

    Scratch files of global stages go to a folder of this run only (``safety.scratch_folder``:
    ``OUTPUT/_tmp`` locally, ``TEMP/curate-<run id>`` under ``--temp_location`` or ``OUTPUT/_tmp/<run id>``
    otherwise), removed when the run ends, whether it succeeded or failed."""
    if workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    if not 0 <= max_error_rate <= 1:
        raise UserError(f"--max-error-rate must be between 0 and 1, got {max_error_rate}")
    limit = recipe.input.limit
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise UserError(f"input limit (--limit or the recipe's input.limit) must be a whole number >= 1, got {limit!r}")
    options, beam_runner, runner_name, local = pipeline_setup(runner, workers, beam_args)
    from apache_beam.options.pipeline_options import GoogleCloudOptions, TestOptions

    from curate.core.safety import check_remote_paths, new_run_id, scratch_folder
    from curate.io.writers import remove_tree

    dry_run = bool(options.view_as(TestOptions).dry_run)
    out = recipe.output.path
    temp = options.view_as(GoogleCloudOptions).temp_location
    if not local:  # strings only: nothing remote is touched before submission (a dry run stays offline)
        from curate.stages.lang_id import LID176

        paths = [("input", p) for p in recipe.input.path] + [("output", out)]
        paths += [(f"stage {name!r}: model", obj.model) for name, obj in recipe.stages
                  if isinstance(getattr(obj, "model", None), str) and obj.model not in ("", LID176)]
        if temp:
            paths.append(("--temp_location", temp))
        check_remote_paths(runner_name, paths)
    check_output(out, recipe.input.path, "output")
    if dry_run and local:
        return _dry_run_local(recipe, runner_name)
    if not dry_run:
        claim_output(out)
        clean_output(out)
        begin_output(out, "run")
    tmp_dir = scratch_folder(out, temp, local, new_run_id())

    progress_dir = _progress_dir() if local else None
    old_env = os.environ.get("CURATE_PROGRESS_DIR")
    if progress_dir:
        os.environ["CURATE_PROGRESS_DIR"] = progress_dir
    start = time.time()
    monitor = None
    keep_scratch = dry_run
    try:
        p = beam.Pipeline(runner=beam_runner, options=options)
        names = build_pipeline(p, recipe, tmp_dir, spill=local, list_inputs=not dry_run)
        start = time.time()
        monitor = _Monitor(progress_dir, names, start) if (show_progress and progress_dir) else None
        if monitor:
            monitor.start()
        result = p.run()
        result.wait_until_finish()
    except KeyboardInterrupt:
        keep_scratch = keep_scratch or not local  # a submitted remote job may still be running and reading it
        raise
    finally:
        if monitor:
            monitor.stop()
        if progress_dir:
            shutil.rmtree(progress_dir, ignore_errors=True)
            if old_env is None:
                os.environ.pop("CURATE_PROGRESS_DIR", None)
            else:
                os.environ["CURATE_PROGRESS_DIR"] = old_env
        if not keep_scratch:
            remove_tree(tmp_dir)
    seconds = time.time() - start
    if dry_run:
        steps = _job_steps(result)
        return RunResult(recipe, names, {n: StageStats(n) for n in names + ["write"]}, seconds, [], runner_name, True, steps)
    stats = collect_stats(result, names)
    problems = check_ledger(stats, names)
    res = RunResult(recipe, names, stats, seconds, problems, runner_name, info=collect_info(result))
    if sum(st.errors for st in stats.values()):
        res.top_errors = top_errors(join(out, "errors"))
    res.failed = [f"{n}: {stats[n].errors:,} of {stats[n].n_in:,} documents were errors ({stats[n].errors / stats[n].n_in:.0%}, "
                  f"limit {max_error_rate:.0%})" for n in names
                  if stats[n].n_in and stats[n].errors / stats[n].n_in > max_error_rate]
    _write_stats(out, res.to_json())
    if problems:
        raise LedgerError("the ledger does not balance:\n  " + "\n  ".join(problems))
    if res.failed:
        write_bytes(join(out, INCOMPLETE), ("curate run failed: " + "; ".join(res.failed) + "\n").encode())
    else:
        finish_output(out)
    return res


def top_errors(folder: str, n: int = 5) -> list[dict]:
    """The most frequent error reasons in ``folder`` (the errors/ of a run): stage, reason, count, an example.

    Reasons are grouped by their head (``malformed JSON: <detail>`` counts as ``malformed JSON``).
    Only the small columns are read.
    """
    from apache_beam.io.filesystems import FileSystems

    try:
        files = [m.path for m in FileSystems.match([join(folder, "*.parquet")])[0].metadata_list]
    except Exception:
        return []
    groups: dict[tuple[str, str], dict] = {}
    import pyarrow.parquet as pq

    from curate.io.readers import open_raw

    for path in sorted(files):
        try:
            with open_raw(path) as f:
                t = pq.read_table(f, columns=["stage", "reason", "n_records", "file", "location"])
        except Exception:
            continue
        for stage, reason, count, file, loc in zip(*(t.column(c).to_pylist() for c in t.column_names)):
            head = _reason_head(reason or "")
            g = groups.setdefault((stage or "", head), {"stage": stage, "reason": head, "n": 0,
                                                         "example": (f"{file}: {loc}" if file else loc) or ""})
            g["n"] += count or 1
    return sorted(groups.values(), key=lambda g: (-g["n"], g["stage"] or "", g["reason"]))[:n]


def _reason_head(reason: str) -> str:
    head = reason.split(": ", 1)[0] if reason.startswith(("malformed JSON", "invalid UTF-8", "HTML extraction failed",
                                                           "corrupt", "cannot")) else reason
    return head if len(head) <= 120 else head[:117] + "..."


def _progress_dir() -> str:
    """A fresh folder for the workers' progress files; folders of runs that were killed are removed."""
    base = tempfile.gettempdir()
    for name in os.listdir(base):
        if name.startswith("curate-progress-"):
            pid = name.rsplit("-", 1)[-1]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(os.path.join(base, name), ignore_errors=True)
    path = os.path.join(base, f"curate-progress-{os.getpid()}")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _dry_run_local(recipe: Recipe, runner_name: str) -> RunResult:
    """Build the job graph on a pipeline that is never run: nothing is read, written or deleted."""
    p = beam.Pipeline(runner=None, options=PipelineOptions([]))
    names = build_pipeline(p, recipe, join(recipe.output.path, "_tmp"), spill=True)
    proto = p.to_runner_api()
    steps = sorted({t.unique_name.split("/")[0] for t in proto.components.transforms.values()
                    if t.unique_name and not t.unique_name.startswith("ref_")})
    return RunResult(recipe, names, {n: StageStats(n) for n in names + ["write"]}, 0.0, [], runner_name, True, steps)


def _write_stats(out: str, data: dict) -> None:
    write_bytes(join(out, "stats.json"), (json.dumps(data, indent=2) + "\n").encode())


def _job_steps(result) -> list[str]:
    job = getattr(result, "job", None)
    if job is None or getattr(job, "proto_pipeline", None) is None:
        return []
    transforms = job.proto_pipeline.components.transforms
    return sorted({t.unique_name.split("/")[0] for t in transforms.values() if t.unique_name and not t.unique_name.startswith("ref_")})


class _Monitor(threading.Thread):
    """Draws a one-line progress display from the workers' progress files."""

    def __init__(self, folder: str, names: list[str], start: float):
        super().__init__(daemon=True)
        self.folder, self.names, self.start_time = folder, names, start
        self._halt = threading.Event()

    def run(self):
        from rich.console import Console

        console = Console(stderr=True)
        if not console.is_terminal:
            return
        with console.status("starting ...") as status:
            while not self._halt.wait(0.5):
                counts = progress.read(self.folder)
                el = time.time() - self.start_time
                read = counts.get("read", 0)
                parts = [f"{n} {counts.get(n, 0):,}" for n in self.names[1:] + ["write"] if counts.get(n)]
                status.update(f"[{el:6.1f}s] read {read:,} docs ({read / max(el, 1e-9):,.0f}/s)  " + "  ".join(parts))

    def stop(self):
        self._halt.set()
        self.join(timeout=2)
