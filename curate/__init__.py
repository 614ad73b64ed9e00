"""curate: streaming data curation for LLM pretraining corpora on Apache Beam and Arrow.

The Python API (``curate.Pipeline``, ``curate.apply``, ``curate.stage``, ``curate.run``, ...) lives in
``curate.api``; its names are loaded on first use, so ``import curate`` stays light (no Beam).
"""

import os as _os
import sys as _sys

__version__ = "0.1.0"

# Arrow's allocator: jemalloc hands freed memory back to the system; pyarrow's Linux default
# (mimalloc) keeps it, so a huge document's transient copies add up in the peak and a worker stays
# as large as its largest batch (see curate.schema.use_returning_allocator). Arrow reads this
# variable when it first allocates, and Beam's worker processes inherit it; a user's own setting wins.
# glibc's malloc (numpy, Python) keeps up to 8 arenas per core, one per thread that allocated, and
# rarely gives their free space back: a Beam worker's threads left it ~60 MB larger at 4 GB than at
# 0.25 GB (bench/bench_scale.py: largest worker 531-555 MB at 4 GB, 495 MB with 2 arenas). Read by
# glibc when a process starts: this process keeps its own setting, Beam's worker processes get 2.
if _sys.platform.startswith("linux"):
    _os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")
    _os.environ.setdefault("MALLOC_ARENA_MAX", "2")

_API = ("Pipeline", "Result", "TableResult", "apply", "list_stages", "read_output", "run", "run_recipe", "stage")


def __getattr__(name):
    if name in _API:
        from curate import api

        return getattr(api, name)
    raise AttributeError(f"module 'curate' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_API))
