"""Mixture fitting: a CMR scaling law for continual pre-training, and a Skill-it style online mixture.

**CMR scaling law** (Gu et al. 2024, "CMR Scaling Law: Predicting Critical Mixture Ratios for
Continual Pre-training of Language Models", arXiv 2407.17467). The paper finds a power-law relation
between loss, training tokens T and the domain mixture ratio r, and casts the choice of r as
"minimize the domain loss subject to the general loss staying within a tolerance": the feasible
ratios are those whose general loss stays within the tolerance of the baseline, and the Critical
Mixture Ratio (CMR) is the largest feasible one, which is the feasible ratio with the lowest domain
loss when domain loss falls as r grows. We could not get the paper's exact joint formula; the law
fitted here is OUR READING of it, for both the general and the domain loss (separate parameters)::

    L(T, r) = E + A * T^(-alpha) * exp(c * r)

a Chinchilla-style power law in tokens whose reducible part moves log-linearly with the ratio (as in
the data-mixing laws of Ye et al. 2024). c > 0 for the general loss (forgetting grows with domain
share), c < 0 for the domain loss. The general-loss increase over r = 0, A T^-alpha (e^{c r} - 1),
shrinks as T grows, so the CMR grows with the token budget, as the paper reports. Fitting is numpy
only: a grid over E with linear least squares for (log A, alpha, c) in log space, then
Levenberg-Marquardt on all four parameters in loss space.

**Online mixture** (Chen et al. 2023, "Skill-it! A Data-Driven Skills Framework for Understanding and
Training Language Models"; code: github HazyResearch/skill-it, ``trainer/mw_trainer.py``): after each
evaluation round, multiplicative weights ``w_{t+1} ∝ w_t * exp(eta * A @ L_t)`` where L_t are the
per-domain validation losses and A[i, j] says how much training on domain i helps domain j
(identity by default). Skill-it itself recomputes ``w ∝ w_prior * exp(eta * A @ sum of the last
`window` losses)`` (window 3, eta 0.5 in its scripts); the recursive form here is its unbounded-window
case. ``min_weight`` then keeps every domain sampled.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
from dataclasses import dataclass

import numpy as np

COLUMNS = ("ratio", "tokens", "general_loss", "domain_loss")


class RunsError(ValueError):
    """A runs file could not be read; the message names the file and the line."""


@dataclass
class Run:
    ratio: float
    tokens: float
    general_loss: float
    domain_loss: float


def _number(value, column: str, where: str) -> float:
    try:
        if isinstance(value, bool) or value is None:
            raise TypeError
        x = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise RunsError(f"{where}: column {column!r}: {value!r} is not a number") from None
    if not math.isfinite(x):
        raise RunsError(f"{where}: column {column!r}: {value!r} is not finite")
    return x


def _run(record: dict, where: str) -> Run:
    missing = [c for c in COLUMNS if c not in record or record[c] is None or record[c] == ""]
    if missing:
        raise RunsError(f"{where}: missing column(s) {', '.join(missing)} (need {', '.join(COLUMNS)})")
    run = Run(*(_number(record[c], c, where) for c in COLUMNS))
    if not 0.0 <= run.ratio <= 1.0:
        raise RunsError(f"{where}: column 'ratio': {run.ratio} is outside [0, 1]")
    if run.tokens <= 0:
        raise RunsError(f"{where}: column 'tokens': {run.tokens} is not > 0")
    return run


def load_runs(path) -> list[Run]:
    """Runs from a CSV (header row) or JSON-lines file with columns ratio, tokens, general_loss, domain_loss.

    The format comes from the extension (.csv/.tsv, .jsonl/.ndjson/.json) or else from the first
    character. Extra columns are ignored. Raises :class:`RunsError` naming ``file:line``.
    """
    path = os.fspath(path)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    ext = os.path.splitext(path)[1].lower()
    is_json = ext in (".jsonl", ".ndjson", ".json") or (ext not in (".csv", ".tsv") and text.lstrip().startswith("{"))
    runs = []
    if is_json:
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise RunsError(f"{where}: not valid JSON ({e.msg})") from None
            if not isinstance(record, dict):
                raise RunsError(f"{where}: expected a JSON object, got {type(record).__name__}")
            runs.append(_run(record, where))
    else:
        reader = csv.DictReader(io.StringIO(text), delimiter="\t" if ext == ".tsv" else ",")
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise RunsError(f"{path}:1: missing column(s) {', '.join(missing)} in header {header} (need {', '.join(COLUMNS)})")
        reader.fieldnames = header
        for record in reader:
            if all(v is None or not str(v).strip() for v in record.values()):
                continue
            runs.append(_run(record, f"{path}:{reader.line_num}"))
    if not runs:
        raise RunsError(f"{path}: no runs found")
    return runs


# ---------------------------------------------------------------------------------------------
# CMR law


@dataclass(frozen=True)
class LossLaw:
    """``L(T, r) = E + A * T^(-alpha) * exp(c * r)`` with the fit's R^2 on the runs it came from."""

    E: float
    A: float
    alpha: float
    c: float
    r2: float

    def predict(self, ratio, tokens):
        ratio, tokens = np.asarray(ratio, dtype=float), np.asarray(tokens, dtype=float)
        out = self.E + np.exp(math.log(self.A) - self.alpha * np.log(tokens) + self.c * ratio)
        return float(out) if out.ndim == 0 else out

    def params(self) -> dict[str, float]:
        return {"E": self.E, "A": self.A, "alpha": self.alpha, "c": self.c}


@dataclass(frozen=True)
class CMRFit:
    general: LossLaw
    domain: LossLaw
    n_runs: int

    def predict_general(self, ratio, tokens):
        return self.general.predict(ratio, tokens)

    def predict_domain(self, ratio, tokens):
        return self.domain.predict(ratio, tokens)

    @property
    def r2_general(self) -> float:
        return self.general.r2

    @property
    def r2_domain(self) -> float:
        return self.domain.r2


def _lm(theta: np.ndarray, x: np.ndarray, r: np.ndarray, y: np.ndarray, iters: int = 200) -> np.ndarray:
    """Levenberg-Marquardt on theta = (E, a, alpha, c), prediction E + exp(a - alpha x + c r)."""

    def residual(th):
        with np.errstate(over="ignore", invalid="ignore"):
            g = np.exp(th[1] - th[2] * x + th[3] * r)
        return th[0] + g - y, g

    res, g = residual(theta)
    cost, lam = res @ res, 1e-3
    for _ in range(iters):
        jac = np.column_stack([np.ones_like(g), g, -x * g, r * g])
        jtj, grad = jac.T @ jac, jac.T @ res
        try:
            step = np.linalg.solve(jtj + lam * np.diag(np.diag(jtj) + 1e-12), -grad)
        except np.linalg.LinAlgError:
            break
        new = theta + step
        res_new, g_new = residual(new)
        cost_new = res_new @ res_new
        if np.isfinite(cost_new) and cost_new < cost:
            done = cost - cost_new <= 1e-14 * max(cost, 1e-300)
            theta, res, g, cost, lam = new, res_new, g_new, cost_new, max(lam / 3, 1e-12)
            if done:
                break
        else:
            lam *= 4
            if lam > 1e12:
                break
    return theta


def _fit_law(ratio: np.ndarray, tokens: np.ndarray, y: np.ndarray) -> LossLaw:
    logt = np.log(tokens)
    shift = logt.mean()  # centre log T for conditioning; undone when reporting A
    x = logt - shift
    design = np.column_stack([np.ones_like(x), x, ratio])
    span = max(float(np.ptp(y)), 1e-12)
    # Profile over the irreducible loss E (below every observation); (log A, -alpha, c) is linear in log space.
    e_grid = y.min() - span * np.geomspace(1e-3, 1e3, 121)
    z = np.log(y[:, None] - e_grid[None, :])
    coef = np.linalg.lstsq(design, z, rcond=None)[0]
    sse = ((e_grid[None, :] + np.exp(design @ coef) - y[:, None]) ** 2).sum(axis=0)
    k = int(np.nanargmin(sse))
    theta = _lm(np.array([e_grid[k], coef[0, k], -coef[1, k], coef[2, k]]), x, ratio, y)
    e, a, alpha, c = (float(v) for v in theta)
    pred = e + np.exp(a - alpha * x + c * ratio)
    sst = float(((y - y.mean()) ** 2).sum())
    sse_fit = float(((y - pred) ** 2).sum())
    r2 = 1.0 - sse_fit / sst if sst > 0 else (1.0 if sse_fit <= 1e-24 else 0.0)
    return LossLaw(E=e, A=math.exp(a + alpha * shift), alpha=alpha, c=c, r2=r2)


def fit_cmr(runs: list[Run]) -> CMRFit:
    """Fit the general and the domain loss laws to the runs (needs >= 5 runs, >= 2 ratios, >= 2 token counts)."""
    if len(runs) < 5:
        raise ValueError(f"need at least 5 runs to fit 4 parameters per loss, got {len(runs)}")
    arr = np.array([[r.ratio, r.tokens, r.general_loss, r.domain_loss] for r in runs], dtype=float)
    ratio, tokens = arr[:, 0], arr[:, 1]
    if len(np.unique(ratio)) < 2 or len(np.unique(tokens)) < 2:
        raise ValueError("runs need at least 2 distinct mixture ratios and 2 distinct token counts")
    if not np.isfinite(arr).all() or (tokens <= 0).any():
        raise ValueError("runs need finite values and tokens > 0")
    return CMRFit(general=_fit_law(ratio, tokens, arr[:, 2]), domain=_fit_law(ratio, tokens, arr[:, 3]), n_runs=len(runs))


def _bisect(f, lo: float, hi: float, iters: int = 60) -> float:
    """Last point from ``lo`` towards ``hi`` where f holds (f(lo) true, f(hi) false)."""
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if f(mid) else (lo, mid)
    return lo


def critical_mixture_ratio(
    fit: CMRFit, tokens: float, tolerance: float, baseline_ratio: float = 0.0, *, relative: bool = True
) -> float:
    """The Critical Mixture Ratio in [0, 1] at a budget of ``tokens`` training tokens.

    Feasible ratios r are those whose predicted general loss stays within the tolerance of the
    baseline's, ``L_g(T, r) <= L_g(T, baseline) * (1 + tolerance)`` (or ``+ tolerance`` with
    ``relative=False``). The CMR is the feasible ratio with the lowest predicted domain loss (the
    largest such ratio on ties); with a domain loss that falls as r grows, that is the largest
    feasible ratio. Found on a dense grid, the feasibility boundary refined by bisection.
    """
    for name, v in (("tokens", tokens), ("tolerance", tolerance), ("baseline_ratio", baseline_ratio)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number, got {v!r}")
    if tokens <= 0 or tolerance < 0 or not 0.0 <= baseline_ratio <= 1.0:
        raise ValueError("need tokens > 0, tolerance >= 0 and baseline_ratio in [0, 1]")
    base = fit.predict_general(baseline_ratio, tokens)
    limit = base + tolerance * abs(base) if relative else base + tolerance
    limit += 1e-12 * max(abs(limit), 1.0)  # the baseline itself is always feasible

    def feasible(r):
        return fit.predict_general(r, tokens) <= limit

    grid = np.union1d(np.linspace(0.0, 1.0, 20001), [baseline_ratio])
    ok = feasible(grid)
    dom = fit.predict_domain(grid, tokens)
    idx = np.flatnonzero(ok)
    best_loss = dom[idx].min()
    best = int(idx[dom[idx] <= best_loss + 1e-12 * max(abs(best_loss), 1.0)].max())
    # A minimum next to an infeasible grid point sits on the boundary: refine it towards the lower domain loss.
    for nb in (best + 1, best - 1):
        if 0 <= nb < len(grid) and not ok[nb] and dom[nb] < dom[best]:
            return float(_bisect(feasible, grid[best], grid[nb]))
    return float(grid[best])


def cli_main(argv: list[str]) -> int:
    """``curate fit-mixture RUNS --tokens T [--tolerance 0.01]``: fit the CMR law, print it and the CMR."""
    parser = argparse.ArgumentParser(
        prog="curate fit-mixture",
        description="Fit the CMR scaling law L(T, r) = E + A*T^-alpha*exp(c*r) to continual pre-training runs "
        "and print the critical mixture ratio.",
    )
    parser.add_argument("runs", metavar="RUNS", help="CSV or JSONL with columns " + ", ".join(COLUMNS))
    parser.add_argument("--tokens", type=float, required=True, help="training-token budget T for the CMR")
    parser.add_argument("--tolerance", type=float, default=0.01,
                        help="allowed general-loss increase over the baseline, relative (0.01 = 1%%) unless --absolute")
    parser.add_argument("--baseline-ratio", type=float, default=0.0, help="domain ratio of the baseline (default 0)")
    parser.add_argument("--absolute", action="store_true", help="tolerance is an absolute loss increase")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse already printed usage / help
        return 0 if e.code in (0, None) else 2
    try:
        runs = load_runs(args.runs)
        fit = fit_cmr(runs)
        cmr = critical_mixture_ratio(fit, args.tokens, args.tolerance, args.baseline_ratio, relative=not args.absolute)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"fitted {fit.n_runs} runs from {args.runs}: L(T, r) = E + A * T^-alpha * exp(c * r)")
    for name, law in (("general", fit.general), ("domain", fit.domain)):
        params = "  ".join(f"{k}={v:.6g}" for k, v in law.params().items())
        print(f"  {name:<8} {params}  R^2={law.r2:.4f}")
    kind = "absolute" if args.absolute else "relative"
    print(f"critical mixture ratio at T={args.tokens:.4g} tokens "
          f"(tolerance {args.tolerance:g} {kind}, baseline ratio {args.baseline_ratio:g}): {cmr:.4f}")
    return 0


# ---------------------------------------------------------------------------------------------
# Skill-it style online mixture


class OnlineMixture:
    """Multiplicative-weights domain mixture driven by per-domain validation losses (see module doc)."""

    def __init__(self, domains: list[str], initial_weights: dict[str, float] | None = None, eta: float = 0.5,
                 graph: np.ndarray | None = None, min_weight: float = 0.0):
        self.domains = list(domains)
        k = len(self.domains)
        if k == 0 or len(set(self.domains)) != k:
            raise ValueError(f"domains must be a non-empty list of distinct names, got {self.domains}")
        if not math.isfinite(eta) or eta < 0:
            raise ValueError(f"eta must be a finite number >= 0, got {eta!r}")
        if not math.isfinite(min_weight) or min_weight < 0 or min_weight * k > 1 + 1e-12:
            raise ValueError(f"min_weight must be in [0, 1/{k}] for {k} domains, got {min_weight!r}")
        self.eta, self.min_weight, self.step = float(eta), float(min_weight), 0
        self.graph = self._check_graph(np.eye(k) if graph is None else graph)
        if initial_weights is None:
            w = np.full(k, 1.0 / k)
        else:
            w = self._vector(initial_weights, "initial weight")
            if (w < 0).any() or w.sum() <= 0:
                raise ValueError("initial weights must be >= 0 with a positive sum")
        self._w = self._floor(w / w.sum())

    def _check_graph(self, graph) -> np.ndarray:
        g = np.array(graph, dtype=float)
        k = len(self.domains)
        if g.shape != (k, k) or not np.isfinite(g).all():
            raise ValueError(
                f"graph must be a finite {k}x{k} matrix (row i: how training on domain i helps each domain), "
                f"got shape {g.shape}"
            )
        return g

    def _vector(self, values: dict[str, float], what: str) -> np.ndarray:
        missing = [d for d in self.domains if d not in values]
        unknown = [d for d in values if d not in self.domains]
        if missing or unknown:
            raise ValueError(f"{what}s: missing domain(s) {missing}, unknown domain(s) {unknown}; domains are {self.domains}")
        v = np.array([float(values[d]) for d in self.domains])
        if not np.isfinite(v).all():
            raise ValueError(f"{what}s must be finite, got {dict(zip(self.domains, v.tolist()))}")
        return v

    def _floor(self, w: np.ndarray) -> np.ndarray:
        """Clamp weights below min_weight to it and rescale the others so the sum stays 1."""
        m = self.min_weight
        if m <= 0:
            return w
        fixed = np.zeros(len(w), dtype=bool)
        while True:  # each pass fixes at least one more domain, so at most len(w) passes
            free = w[~fixed] if w[~fixed].sum() > 0 else np.ones((~fixed).sum())
            out = np.full(len(w), m)
            out[~fixed] = free * (1.0 - m * fixed.sum()) / free.sum()
            low = ~fixed & (out < m * (1 - 1e-12))
            if not low.any():
                return out
            fixed |= low

    @property
    def weights(self) -> dict[str, float]:
        return dict(zip(self.domains, self._w.tolist()))

    def update(self, val_losses: dict[str, float]) -> dict[str, float]:
        """One round: ``w <- w * exp(eta * graph @ losses)``, normalized, floored at min_weight; returns the weights."""
        losses = self._vector(val_losses, "validation loss")
        with np.errstate(divide="ignore"):
            z = np.log(self._w) + self.eta * (self.graph @ losses)
        w = np.exp(z - z.max())
        self._w = self._floor(w / w.sum())
        self.step += 1
        return self.weights

    def state_dict(self) -> dict:
        return {"domains": list(self.domains), "weights": self._w.tolist(), "eta": self.eta,
                "graph": self.graph.tolist(), "min_weight": self.min_weight, "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        if list(state["domains"]) != self.domains:
            raise ValueError(f"state is for domains {list(state['domains'])}, this mixture has {self.domains}")
        w = np.array(state["weights"], dtype=float)
        if w.shape != (len(self.domains),) or not np.isfinite(w).all():
            raise ValueError("state weights do not match the domains")
        self.graph = self._check_graph(state["graph"])
        self.eta, self.min_weight, self.step = float(state["eta"]), float(state["min_weight"]), int(state["step"])
        self._w = w
