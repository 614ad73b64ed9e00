"""Built-in stages. Each module registers one concept."""
from curate.stages import exact_dedup, fuzzy_dedup, lang_id, length, line_dedup, sample, url_dedup  # noqa: F401
from curate.stages import heuristics  # noqa: F401
import curate.scorers  # noqa: F401,E402
