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


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularized incomplete beta function (Lentz's method)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(x: float, df: int) -> float:
    """Student's t distribution function."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + x * x))
    return 1.0 - tail if x >= 0 else tail


def t_quantile(p: float, df: int) -> float:
    """The p-quantile of Student's t with ``df`` degrees of freedom (bisection on the distribution function)."""
    if not 0 < p < 1:
        raise ValueError(f"p must be in (0, 1), got {p}")
    lo, hi = -1e6, 1e6
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


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
