"""Gumbel-top-k selection (MATES keeps 20% of the pool per stage).

``key_i = z(score_i) / temperature + G_i`` with ``G_i ~ Gumbel(0, 1)``; the ``k`` largest keys are
selected. This draws ``k`` items without replacement with probabilities proportional to
``exp(z_i / temperature)`` (Kool et al. 2019): temperature 0 is plain top-k, a large temperature
tends to a uniform draw, and equal scores give an exactly uniform draw (the random baseline).
"""
from __future__ import annotations

import numpy as np


def zscore(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    sd = x.std()
    return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)


def gumbel_topk(scores: np.ndarray, k: int, temperature: float = 1.0, seed=0) -> np.ndarray:
    """Indices of the ``k`` selected items, highest key first. ``seed``: anything ``default_rng`` takes."""
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    if not 0 <= k <= n:
        raise ValueError(f"gumbel_topk: k must be in [0, {n}], got {k}")
    if temperature < 0:
        raise ValueError(f"gumbel_topk: temperature must be >= 0, got {temperature}")
    if not np.isfinite(scores).all():
        raise ValueError("gumbel_topk: scores must be finite")
    z = zscore(scores)
    if temperature == 0:
        keys = z
    else:
        keys = z / temperature + np.random.default_rng(seed).gumbel(size=n)
    order = np.argsort(-keys, kind="stable")
    return order[:k]
