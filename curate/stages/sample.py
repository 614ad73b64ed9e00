from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curate.core.registry import register
from curate.core.stage import Filter
from curate.schema import ID, hash_strings


@register
@dataclass(kw_only=True)
class Sample(Filter):
    """Keep a deterministic fraction of documents (a seeded hash of the id)."""

    stage = "sample"
    reason = "not_sampled"
    fraction: float = 1.0
    seed: int = 0

    def __post_init__(self):
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"fraction must be between 0 and 1, got {self.fraction}")

    def filter(self, batch, scores):
        h = hash_strings(batch.column(ID), seed=self.seed)
        # top 53 bits as a uniform float in [0, 1)
        u = (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)
        return u < self.fraction
