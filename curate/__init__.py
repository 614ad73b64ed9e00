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
if _sys.platform.startswith("linux"):
    _os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")

_API = ("Pipeline", "Result", "TableResult", "apply", "list_stages", "read_output", "run", "run_recipe", "stage")


def __getattr__(name):
    if name in _API:
        from curate import api

        return getattr(api, name)
    raise AttributeError(f"module 'curate' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_API))
