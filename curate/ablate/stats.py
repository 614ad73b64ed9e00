"""Mean, standard deviation and the paired t-interval of a difference between arms, paired by seed."""
from __future__ import annotations

import math


def mean_std(xs: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0 for a single value)."""
    n = len(xs)
    if n == 0:
        return math.nan, math.nan
    m = sum(xs) / n
    if n < 2:
        return m, 0.0
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))


def t_quantile(p: float, df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(p, df))


def paired_ci(arm: dict, base: dict, confidence: float = 0.95) -> dict:
    """The difference arm - base over the seeds both have: ``{n, mean, lo, hi, significant}``.

    ``arm`` and ``base`` map seed -> value. The interval is mean ± t(1 - α/2, n - 1) · sd / √n of the
    per-seed differences; with fewer than two pairs there is no interval (lo = hi = None) and
    nothing is called significant.
    """
    seeds = sorted(set(arm) & set(base))
    d = [arm[s] - base[s] for s in seeds]
    n = len(d)
    m, sd = mean_std(d)
    if n < 2:
        return {"n": n, "mean": m, "lo": None, "hi": None, "significant": False}
    half = t_quantile(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    lo, hi = m - half, m + half
    return {"n": n, "mean": m, "lo": lo, "hi": hi, "significant": bool(lo > 0 or hi < 0)}
