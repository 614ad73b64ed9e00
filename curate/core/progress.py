"""Live progress for local runs.

Workers (in-process threads or ``--workers N`` subprocesses) add to per-process counters and
flush them, at most once a second, to ``$CURATE_PROGRESS_DIR/<pid>.json``. The CLI sums those
files to draw its progress line. Outside a local ``curate run`` this is a no-op.
"""
from __future__ import annotations

import json
import os
import threading
import time

_counts: dict[str, int] = {}
_lock = threading.Lock()
_last_flush = 0.0
_counts_folder: str | None = None  # the folder _counts belong to: a new run (a new folder) starts from zero


def add(stage: str, n: int) -> None:
    folder = os.environ.get("CURATE_PROGRESS_DIR")
    if not folder:
        return
    global _last_flush, _counts_folder
    with _lock:
        if folder != _counts_folder:
            _counts.clear()
            _counts_folder = folder
        _counts[stage] = _counts.get(stage, 0) + int(n)
        now = time.monotonic()
        if now - _last_flush < 1.0:
            return
        _last_flush = now
        data = json.dumps(_counts)
    tmp = os.path.join(folder, f".{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(data)
        os.replace(tmp, os.path.join(folder, f"{os.getpid()}.json"))
    except OSError:
        pass


def flush() -> None:
    global _last_flush
    _last_flush = 0.0
    add("_", 0)


def read(folder: str) -> dict[str, int]:
    total: dict[str, int] = {}
    try:
        names = os.listdir(folder)
    except OSError:
        return total
    for name in names:
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(folder, name)) as f:
                for k, v in json.load(f).items():
                    total[k] = total.get(k, 0) + v
        except (OSError, ValueError):
            continue
    return total


# ------------------------------------------------------------------ long commands: one line per step


def _enabled() -> bool:
    return os.environ.get("CURATE_PROGRESS", "1").lower() not in ("0", "false", "no", "off")


class Step:
    """Progress of one long step of a command (a ``mix`` pass, tokenizer training, a task's evaluation) on stderr.

    On a terminal: one line redrawn at most twice a second, ``label: 1,234 docs (560/s), 12.3s``,
    ending as ``label: done in 12.3s (1,234 docs[, detail])`` (or ``failed``).
    Elsewhere (logs, CI) a step that ends within ``every`` seconds (``$CURATE_PROGRESS_EVERY``,
    default 10) prints nothing, so a quick command's output, and its one-line errors, stay as they
    were; a longer one prints ``label ...`` once it has run that long, a line every ``every``
    seconds after, and the end line. ``workers``: also count the documents that Beam workers of a
    local pipeline report through ``add`` (a fresh ``CURATE_PROGRESS_DIR``). ``CURATE_PROGRESS=0``
    turns it all off.
    """

    def __init__(self, label: str, unit: str = "docs", total: int | None = None, stream=None, every: float | None = None,
                 enabled: bool = True, workers: bool = False):
        import sys

        if every is None:
            try:
                every = float(os.environ.get("CURATE_PROGRESS_EVERY", "10"))
            except ValueError:
                every = 10.0
        self.label, self.unit, self.total, self.every = label, unit, total, every
        self.shown = False  # off a terminal: whether the start line has been printed
        self.stream = stream or sys.stderr
        self.enabled = enabled and _enabled()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.n, self.detail = 0, ""
        self.workers = workers
        self._folder = self._old_env = None
        self._start = self._last = 0.0
        self._thread = None
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def __enter__(self) -> "Step":
        self._start = self._last = time.monotonic()
        if self.workers and self.enabled:  # Beam workers of a local pipeline count through CURATE_PROGRESS_DIR
            import shutil
            import tempfile

            self._folder = tempfile.mkdtemp(prefix=f"curate-step-{os.getpid()}-")
            self._old_env = os.environ.get("CURATE_PROGRESS_DIR")
            os.environ["CURATE_PROGRESS_DIR"] = self._folder
            self._cleanup = lambda: shutil.rmtree(self._folder, ignore_errors=True)
        if self.enabled:  # redraws (and, off a terminal, the periodic lines) while the step makes no calls
            self._thread = threading.Thread(target=self._watch, daemon=True)
            self._thread.start()
        if self.enabled and not self.tty and self.every <= 0:
            self._start_line()
        return self

    def _start_line(self) -> None:
        if not self.shown:
            self.shown = True
            self._write(f"{self.label} ...")

    def _watch(self):
        while not self._halt.wait(0.5):
            if self._folder:
                counts = read(self._folder)
                self.n = max(self.n, sum(v for k, v in counts.items() if k.startswith("read")))
            self._draw(tick=True)

    def update(self, n: int = 1, detail: str | None = None) -> None:
        self.n += n
        if detail is not None:
            self.detail = detail
        self._draw()

    def _progress_text(self) -> str:
        el = time.monotonic() - self._start
        of = f"/{self.total:,}" if self.total else ""
        rate = f" ({self.n / el:,.0f}/s)" if el > 0 and self.n else ""
        return f"{self.n:,}{of} {self.unit}{rate}, {el:.1f}s" + (f", {self.detail}" if self.detail else "")

    def _draw(self, tick: bool = False) -> None:
        if not self.enabled:
            return
        with self._lock:
            now = time.monotonic()
            if self.tty:
                if now - self._last >= 0.5:
                    self._last = now
                    try:
                        self.stream.write(f"\r\x1b[K{self.label}: {self._progress_text()}")
                        self.stream.flush()
                    except (OSError, ValueError):
                        pass
            elif now - self._last >= (max(self.every, 1.0) if tick else self.every):
                self._last = now
                self._start_line()
                self._write(f"{self.label}: {self._progress_text()}")

    def _write(self, line: str) -> None:
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._thread is not None:
            self._halt.set()
            self._thread.join(timeout=2)
        if self._folder is not None:
            counts = read(self._folder)
            self.n = max(self.n, sum(v for k, v in counts.items() if k.startswith("read")))
            self._cleanup()
            if self._old_env is None:
                os.environ.pop("CURATE_PROGRESS_DIR", None)
            else:
                os.environ["CURATE_PROGRESS_DIR"] = self._old_env
        el = time.monotonic() - self._start
        if not self.enabled or (not self.tty and not self.shown and el < self.every):
            return  # a quick step, off a terminal: nothing to say
        if not self.tty:
            self._start_line()
        what = f"{self.n:,} {self.unit}" if self.n else ""
        extra = ", ".join(x for x in (what, self.detail) if x)
        end = "failed" if exc_type is not None else "done"
        self._write(("\r\x1b[K" if self.tty else "") + f"{self.label}: {end} in {el:.1f}s" + (f" ({extra})" if extra else ""))
