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


def add(stage: str, n: int) -> None:
    folder = os.environ.get("CURATE_PROGRESS_DIR")
    if not folder:
        return
    global _last_flush
    with _lock:
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
