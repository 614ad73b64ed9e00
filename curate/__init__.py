"""curate: streaming data curation for LLM pretraining corpora on Apache Beam and Arrow."""

import os as _os
import sys as _sys

__version__ = "0.1.0"

# Arrow's allocator: jemalloc hands freed memory back to the system; pyarrow's Linux default
# (mimalloc) keeps it, so a huge document's transient copies add up in the peak and a worker stays
# as large as its largest batch (see curate.schema.use_returning_allocator). Arrow reads this
# variable when it first allocates, and Beam's worker processes inherit it; a user's own setting wins.
if _sys.platform.startswith("linux"):
    _os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")
