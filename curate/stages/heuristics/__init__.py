"""Heuristic quality rule sets (Gopher quality and repetition, C4, FineWeb), alone or together
(``web_quality``). Each module registers its stages."""
from curate.stages.heuristics import c4, fineweb, gopher_quality, gopher_repetition, web_quality  # noqa: F401
