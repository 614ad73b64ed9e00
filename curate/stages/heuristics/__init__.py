"""Heuristic quality rule sets (Gopher quality and repetition, C4, FineWeb). Each module registers its stages."""
