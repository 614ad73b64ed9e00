"""Grouping parallel numpy arrays by an integer key, the step before every array shuffle."""
from __future__ import annotations

import numpy as np


def groups(keys: np.ndarray):
    """Yield (key, positions) for each distinct key in ascending order; positions keep input order."""
    if not len(keys):
        return
    order = np.argsort(keys, kind="stable")
    k = keys[order]
    cuts = np.flatnonzero(np.diff(k)) + 1
    for s, e in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [len(k)]])):
        yield k[s], order[s:e]
