"""Output safety, shared by every command that writes.

* **Names** that come from recipes, specs or data (stage, phase, domain, column names) never
  become paths unchecked: ``check_name`` validates a name given by a user (recipe, spec), and
  ``safe_filename`` turns a name found in data (a column) into a file name that cannot escape.
* **Overlap**: ``check_output`` refuses an output folder that is an existing file, or that
  overlaps any input, before anything is deleted.
* **Completion markers**: a command that writes a folder calls ``begin_output`` first (an
  ``_INCOMPLETE`` marker) and ``finish_output`` last (``_SUCCESS``, as Hadoop and Beam users
  expect, and the marker removed). ``check_complete`` refuses an input that lies in an output
  that was not finished; ``resolve_input`` maps a curate output folder to its ``data/``.

Every refusal is a ``UserError``: one clear line, exit code 2 from the CLI.
"""
from __future__ import annotations

import glob as _glob
import hashlib
import os
import re

INCOMPLETE = "_INCOMPLETE"
SUCCESS = "_SUCCESS"
# files that sit in dataset folders but are not records: never read as data
NOT_DATA = frozenset({"stats.json", "manifest.json", "state.json", "dataset_info.json", "dataset_dict.json",
                      INCOMPLETE, SUCCESS, "README.md", ".gitattributes"})

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:+=-]{0,127}$")


class UserError(ValueError):
    """A mistake in what the user asked for; the CLI prints the message alone and exits 2."""


def check_name(name, what: str) -> str | None:
    """None when ``name`` may become part of a file name; otherwise the problem, in words.

    Allowed: letters, digits and ``_ . : + = -``, 1-128 characters, not starting with ``.`` or ``-``
    (so never ``.``, ``..``, a hidden file or a path).
    """
    if not isinstance(name, str):
        return f"{what} must be a string, got {name!r}"
    if not _NAME.match(name):
        return (f"{what} {name!r} is not a valid name: use letters, digits and _ . : + = - "
                "(at most 128, not starting with '.' or '-'; no '/' or spaces)")
    return None


def safe_filename(name: str) -> str:
    """A file name derived from ``name`` (a column of the data) that stays inside its folder.

    Names that are already safe are kept; any other gets its unsafe characters replaced and a
    short hash of the original appended, so two different names never collide.
    """
    if check_name(name, "name") is None:
        return name
    clean = re.sub(r"[^A-Za-z0-9_.+=-]+", "_", str(name)).strip("._-")[:60] or "column"
    return f"{clean}-{hashlib.sha1(str(name).encode()).hexdigest()[:8]}"


def is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _local(path: str) -> str:
    return os.path.realpath(os.path.abspath(path.removeprefix("file://")))


def _norm_remote(path: str) -> str:
    return path.rstrip("/")


def glob_base(pattern: str) -> str:
    """The longest leading folder of ``pattern`` that has no wildcard."""
    parts = pattern.split("/")
    keep = []
    for part in parts:
        if _glob.has_magic(part):
            break
        keep.append(part)
    if len(keep) == len(parts):  # no wildcard: the path itself
        return pattern
    return "/".join(keep) or "/"


def inside(path: str, folder: str) -> bool:
    """``path`` is ``folder`` or lies below it (local paths resolved, symlinks followed)."""
    if is_remote(path) != is_remote(folder):
        return False
    if is_remote(path):
        p, f = _norm_remote(path), _norm_remote(folder)
        return p == f or p.startswith(f + "/")
    p, f = _local(path), _local(folder)
    return p == f or p.startswith(f.rstrip(os.sep) + os.sep)


def check_output(output: str, inputs: list[str] = (), what: str = "--output") -> None:
    """Refuse an output that is an existing file or that overlaps an input, before anything is written.

    An input overlaps when its folder (the part of the glob before any wildcard) lies inside the
    output, when a file it matches lies inside the output, or when the output lies inside a folder
    that a recursive (``**``) glob or a folder input would read.
    """
    if not is_remote(output):
        local = output.removeprefix("file://")
        if os.path.exists(local) and not os.path.isdir(local):
            raise UserError(f"{what} {output!r} is an existing file, not a folder; give a folder to write into")
    for pattern in inputs:
        if not isinstance(pattern, str):
            continue
        base = glob_base(pattern)
        if inside(base, output):
            raise UserError(f"{what} {output!r} holds the input {pattern!r}: writing there would delete or overwrite the "
                            "input before it is read; write to another folder")
        if not is_remote(pattern):
            for path in _glob.glob(pattern.removeprefix("file://"), recursive=True):
                if inside(path, output):
                    raise UserError(f"{what} {output!r} holds {path!r}, which the input {pattern!r} reads; write to "
                                    "another folder")
        recursive = "**" in pattern or (not is_remote(pattern) and os.path.isdir(pattern.removeprefix("file://")))
        if recursive and inside(output, base) and not inside(base, output):
            raise UserError(f"{what} {output!r} lies inside {base!r}, which the input {pattern!r} reads: a later run "
                            "would read this output as input; write to a folder outside it")


# ------------------------------------------------------------------------------ completion markers


def _marker(folder: str, name: str) -> str:
    return folder.rstrip("/") + "/" + name


def _exists(path: str) -> bool:
    if is_remote(path):
        from apache_beam.io.filesystems import FileSystems

        return FileSystems.exists(path)
    return os.path.exists(path.removeprefix("file://"))


def _write(path: str, data: bytes) -> None:
    from curate.io.writers import write_bytes

    write_bytes(path, data)


def _remove(path: str) -> None:
    if is_remote(path):
        from apache_beam.io.filesystems import FileSystems

        if FileSystems.exists(path):
            FileSystems.delete([path])
        return
    try:
        os.remove(path.removeprefix("file://"))
    except FileNotFoundError:
        pass


def begin_output(folder: str, command: str) -> None:
    """Mark ``folder`` as being written by ``command`` (an ``_INCOMPLETE`` marker; ``_SUCCESS`` removed)."""
    _remove(_marker(folder, SUCCESS))
    _write(_marker(folder, INCOMPLETE), f"curate {command}: this output is being written or its run did not finish\n".encode())


def finish_output(folder: str) -> None:
    """Mark ``folder`` complete: ``_SUCCESS`` written, then the ``_INCOMPLETE`` marker removed."""
    _write(_marker(folder, SUCCESS), b"")
    _remove(_marker(folder, INCOMPLETE))


def is_incomplete(folder: str) -> bool:
    return _exists(_marker(folder, INCOMPLETE))


def _candidate_outputs(pattern: str) -> list[str]:
    """Folders that may be the curate output holding ``pattern``: its base and up to two parents."""
    base = glob_base(pattern).rstrip("/")
    out = [base]
    for _ in range(2):
        parent = base.rsplit("/", 1)[0] if "/" in base else ""
        if not parent or parent == base or parent.endswith(":/") or parent.endswith(":"):
            break
        out.append(parent)
        base = parent
    return out


def check_complete(pattern: str, what: str = "input") -> None:
    """Refuse ``pattern`` when it lies in (or is) a curate output whose run did not finish."""
    for folder in _candidate_outputs(pattern):
        if is_incomplete(folder):
            raise UserError(f"{what} {pattern!r} is in {folder!r}, the output of a run that did not finish "
                            f"({INCOMPLETE} is there): re-run that command to complete it, then try again")


def is_curate_output(folder: str) -> bool:
    """A folder written by ``curate run``/``curate score``: ``data/`` beside a marker or ``stats.json``.

    On an object store (gs://) the folder is a name prefix: ``data/`` exists when a file is under it.
    """
    if is_remote(folder):
        if _glob.has_magic(folder):
            return False
        from apache_beam.io.filesystems import FileSystems

        base = folder.rstrip("/")
        if not FileSystems.match([base + "/data/*"], limits=[1])[0].metadata_list:
            return False
        return any(FileSystems.exists(base + "/" + m) for m in (SUCCESS, INCOMPLETE, "stats.json"))
    f = folder.removeprefix("file://")
    return os.path.isdir(os.path.join(f, "data")) and any(
        os.path.exists(os.path.join(f, m)) for m in (SUCCESS, INCOMPLETE, "stats.json"))


def resolve_input(pattern: str, what: str = "input") -> str:
    """A folder that is a curate output means its ``data/``; a partial output is refused.

    Remote paths are looked at (through Beam's FileSystems) only when this is called, which for
    recipes is at run time on the workers, never when a pipeline is built.
    """
    check_complete(pattern, what)
    local = pattern.removeprefix("file://")
    if not is_remote(pattern) and os.path.isdir(local) and is_curate_output(local):
        return os.path.join(local, "data")
    if is_remote(pattern) and is_curate_output(pattern):
        return pattern.rstrip("/") + "/data"
    return pattern


# ----------------------------------------------------------------------- remote runners, scratch


def check_remote_paths(runner: str, paths: list[tuple[str, str]]) -> None:
    """Refuse driver-local ``(what, path)`` pairs for a remote runner, before anything is submitted.

    The workers of Dataflow (or Flink, Spark ...) run on other machines: a local input would match
    nothing there, a local output would land on worker disks and be lost. Only strings are looked
    at: nothing remote is touched (``--dry_run=True`` builds its graph offline).
    """
    for what, path in paths:
        if isinstance(path, str) and path and not is_remote(path):
            raise UserError(f"{what} {path!r} is a path on this machine, but --runner {runner} runs on workers that "
                            "cannot see it: copy it to a bucket (gs://...) and give that path, or run locally")


def new_run_id() -> str:
    """A unique id for one run's scratch folder: time (sortable) and random."""
    import time
    import uuid

    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:8]


def scratch_folder(output: str, temp_location: str | None, local_run: bool, run_id: str, prefix: str = "curate") -> str:
    """The scratch folder of one run.

    A local run into a local output: ``OUTPUT/_tmp`` (the output is claimed, so no other run uses
    it). Otherwise (a remote runner or a remote output): ``TEMP/<prefix>-<run id>`` under
    ``--temp_location`` when given, else ``OUTPUT/_tmp/<run id>``; the run id keeps two concurrent
    runs apart even when their outputs share a name (``gs://b/web/out`` and ``gs://b/code/out``).
    """
    if local_run and not is_remote(output):
        return output.rstrip("/") + "/_tmp"
    if temp_location:
        return temp_location.rstrip("/") + f"/{prefix}-{run_id}"
    return output.rstrip("/") + f"/_tmp/{run_id}"
