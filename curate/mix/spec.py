"""Mixture specs: which curated datasets go into training, in what proportions, in which phase.

```yaml
tokenizer: out/tokenizer            # a folder with tokenizer.json, or the file itself
seq_length: 512                     # tokens per packed training sequence
total_tokens: 2_000_000             # the budget over all phases (needed when phases give weights)
seed: 0
heldout_tokens: 20_000              # per domain, kept out of training for per-domain held-out loss
domains:
  web:  {path: out/quickstart/data, max_epochs: 2}
  news: {path: out/news/data, where: "quality_score >= 0.5 and lang == 'en'", max_epochs: 4}
phases:                             # in training order
  - {name: base, fraction: 0.85, weights: {web: 0.8, news: 0.2}}
  - {name: anneal, fraction: 0.15, upsample: {news: 3}}   # weights of the phase before, news x3, renormalized
```

A phase gives ``weights`` (normalized to sum 1), ``upsample`` (factors on the previous phase's
weights) or ``tokens`` (absolute targets per domain). Each domain is a stream that phases consume
in order; ``max_epochs`` caps how many passes over a domain all phases together may take. If a cap
cannot hold, planning fails and names every domain that runs short, by how much, and what to change.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np

from curate.core.recipe import RecipeError, _load_with_lines, configure, read_text

BUCKETS = 1 << 16  # hash buckets per domain: the granularity of deterministic sampling


class MixError(ValueError):
    """The mixture cannot be realized; the message names the domains and the shortfall."""


@dataclass
class DomainSpec:
    path: str | list[str]
    where: str | None = None
    text_key: str = "text"
    id_key: str = "id"
    format: str = "auto"
    max_epochs: float = 4.0

    def __post_init__(self):
        if isinstance(self.path, str):
            self.path = [self.path]
        self.path = [p if "://" in p else os.path.abspath(p) for p in self.path]
        if self.max_epochs <= 0:
            raise ValueError("max_epochs must be > 0")
        self.clauses = parse_where(self.where) if self.where else []


@dataclass
class PhaseSpec:
    name: str
    fraction: float | None = None
    weights: dict[str, float] | None = None
    upsample: dict[str, float] | None = None
    tokens: dict[str, float] | None = None

    def __post_init__(self):
        given = [k for k in ("weights", "upsample", "tokens") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of weights, upsample or tokens, not {' and '.join(given)}")
        if self.tokens is not None and self.fraction is not None:
            raise ValueError("a phase with token targets takes no fraction")
        for k in given:
            bad = {d: v for d, v in getattr(self, k).items() if v < 0}
            if bad:
                raise ValueError(f"{k} must be >= 0, got {bad}")
        if self.fraction is not None and not 0 < self.fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {self.fraction}")


@dataclass
class MixSpec:
    tokenizer: str
    seq_length: int
    domains: dict[str, DomainSpec]
    phases: list[PhaseSpec] = field(default_factory=list)
    weights: dict[str, float] | None = None  # shorthand for a single phase "main"
    total_tokens: int | None = None
    seed: int = 0
    heldout_tokens: int = 0
    shard_tokens: int = 1 << 25
    eos_token: str | None = None
    batch_size: int = 1024
    source_file: str = "<spec>"


# ----------------------------------------------------------------------------- where clauses

_CLAUSE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(>=|<=|==|!=|>|<)\s*(.+?)\s*$")


def parse_where(text: str) -> list[tuple[str, str, object]]:
    """``"quality >= 0.5 and lang == 'en'"`` -> [(column, op, value), ...]; only ``and`` joins clauses."""
    clauses = []
    for part in re.split(r"\s+and\s+", text.strip()):
        m = _CLAUSE.match(part)
        if not m:
            raise ValueError(f"cannot read where clause {part!r}: write `column OP value` joined by `and`, "
                             "OP one of >= <= == != > <")
        col, op, raw = m.groups()
        if raw[:1] in "'\"" and raw[-1:] == raw[:1] and len(raw) >= 2:
            value: object = raw[1:-1]
        elif raw in ("true", "false"):
            value = raw == "true"
        else:
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"in where clause {part!r}: {raw!r} is neither a number nor a quoted string") from None
        clauses.append((col, op, value))
    return clauses


def _column(batch, name: str):
    import pyarrow.compute as pc

    head, *rest = name.split(".")
    if head not in batch.schema.names:
        raise KeyError(name)
    arr = batch.column(head)
    for part in rest:
        arr = pc.struct_field(arr, part)
    return arr


def where_mask(batch, clauses) -> np.ndarray:
    """Rows of ``batch`` that satisfy every clause (nulls never do)."""
    import pyarrow.compute as pc

    ops = {">=": pc.greater_equal, "<=": pc.less_equal, "==": pc.equal, "!=": pc.not_equal,
           ">": pc.greater, "<": pc.less}
    mask = np.ones(batch.num_rows, dtype=bool)
    for col, op, value in clauses:
        res = ops[op](_column(batch, col), value)
        mask &= np.asarray(res.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
    return mask


# ------------------------------------------------------------------------------------ loading


def parse_spec(text: str, where: str = "<spec>") -> MixSpec:
    data, lines = _load_with_lines(text, where)
    if not isinstance(data, dict):
        raise RecipeError([f"{where}:1: a mixture spec is a mapping with tokenizer, seq_length, domains, phases"])
    problems = []
    domains = {}
    raw_domains = data.pop("domains", None)
    if not isinstance(raw_domains, dict) or not raw_domains:
        problems.append(f"{where}:{lines.get(('domains',), 1)}: 'domains' must be a non-empty mapping of name -> {{path: ...}}")
        raw_domains = {}
    for name, params in raw_domains.items():
        if isinstance(params, str):
            params = {"path": params}
        if not isinstance(params, dict):
            problems.append(f"{where}:{lines.get(('domains', name), 0)}: domain {name!r} must be a mapping with at least 'path'")
            continue
        dom, errs = configure(DomainSpec, params, where, lines, ("domains", name), f"domain {name!r}")
        problems += errs
        if dom is not None:
            domains[name] = dom
    phases = []
    raw_phases = data.pop("phases", None) or []
    if not isinstance(raw_phases, list):
        problems.append(f"{where}:{lines.get(('phases',), 0)}: 'phases' must be a list")
        raw_phases = []
    for i, params in enumerate(raw_phases):
        what = f"phase {i + 1}"
        if not isinstance(params, dict):
            problems.append(f"{where}:{lines.get(('phases', i), 0)}: {what} must be a mapping with name and weights")
            continue
        ph, errs = configure(PhaseSpec, params, where, lines, ("phases", i), what)
        problems += errs
        if ph is not None:
            for k in ("weights", "upsample", "tokens"):
                for d in (getattr(ph, k) or {}):
                    if d not in raw_domains:
                        problems.append(f"{where}:{lines.get(('phases', i, k, d), lines.get(('phases', i), 0))}: "
                                        f"phase {ph.name!r}: {k} names unknown domain {d!r} (domains: {', '.join(raw_domains)})")
            phases.append(ph)
    data["domains"], data["phases"] = {}, []
    spec, errs = configure(MixSpec, data, where, lines, (), "mixture")
    problems += errs
    if spec is not None:
        spec.domains, spec.phases, spec.source_file = domains, phases, where
        problems += _check_phases(spec, where, lines)
    if problems:
        raise RecipeError(problems)
    if spec.tokenizer and "://" not in spec.tokenizer:
        spec.tokenizer = os.path.abspath(spec.tokenizer)
    return spec


def _check_phases(spec: MixSpec, where: str, lines: dict) -> list[str]:
    problems = []
    if spec.seq_length < 2:
        problems.append(f"{where}:{lines.get(('seq_length',), 0)}: seq_length must be >= 2")
    if spec.weights is not None:
        unknown = [d for d in spec.weights if d not in spec.domains]
        if unknown:
            problems.append(f"{where}:{lines.get(('weights',), 0)}: weights name unknown domain(s) {unknown} "
                            f"(domains: {', '.join(spec.domains)})")
        if spec.phases:
            return [f"{where}:{lines.get(('weights',), 0)}: give top-level weights or phases, not both"]
        spec.phases = [PhaseSpec(name="main", fraction=1.0, weights=spec.weights)]
    if not spec.phases:
        return problems + [f"{where}:1: the spec needs 'phases' (or top-level 'weights' for a single phase)"]
    names = [p.name for p in spec.phases]
    if "valid" in names:
        problems.append(f"{where}:{lines.get(('phases',), 0)}: 'valid' is reserved for the held-out split; rename that phase")
    if len(set(names)) != len(names):
        problems.append(f"{where}:{lines.get(('phases',), 0)}: phase names must be unique: {names}")
    if spec.phases[0].upsample is not None:
        problems.append(f"{where}:{lines.get(('phases', 0), 0)}: the first phase cannot upsample: there are no weights before it")
    with_fraction = [p for p in spec.phases if p.tokens is None]
    if with_fraction:
        if spec.total_tokens is None:
            problems.append(f"{where}:1: phases with weights need total_tokens")
        missing = [p.name for p in with_fraction if p.fraction is None]
        if missing and len(with_fraction) > 1:
            problems.append(f"{where}:{lines.get(('phases',), 0)}: phases {missing} need a fraction of total_tokens")
        elif missing:
            with_fraction[0].fraction = 1.0
        total = sum(p.fraction or 0 for p in with_fraction)
        if not missing and abs(total - 1.0) > 1e-6:
            problems.append(f"{where}:{lines.get(('phases',), 0)}: phase fractions sum to {total:g}, not 1")
    for p in spec.phases:
        if p.weights is not None and sum(p.weights.values()) <= 0:
            problems.append(f"{where}:1: phase {p.name!r}: weights sum to 0")
    return problems


def load_spec(path: str) -> MixSpec:
    return parse_spec(read_text(path, "mixture spec"), path)


# ------------------------------------------------------------------------------------ planning


@dataclass
class DomainPool:
    """What a domain offers after tokenization: its token count per hash bucket."""

    tokens: np.ndarray  # int64[BUCKETS], tokens (with EOS) per bucket
    heldout_from: int = BUCKETS  # buckets >= this are held out

    @property
    def available(self) -> int:
        return int(self.tokens[: self.heldout_from].sum())

    @property
    def heldout(self) -> int:
        return int(self.tokens[self.heldout_from:].sum())

    def positions(self) -> np.ndarray:
        """Stream position (tokens before it) of each training bucket; held-out buckets get -1."""
        pos = np.concatenate([[0], np.cumsum(self.tokens[: self.heldout_from])[:-1]]).astype(np.int64)
        return np.concatenate([pos, np.full(BUCKETS - self.heldout_from, -1, dtype=np.int64)])


@dataclass
class Plan:
    phases: list[str]
    domains: list[str]
    targets: np.ndarray  # float[phase, domain]: requested tokens
    starts: np.ndarray  # int64[phase, domain]: the phase's start in the domain's stream
    ends: np.ndarray
    available: np.ndarray  # int64[domain]
    heldout_from: np.ndarray  # int[domain]
    positions: np.ndarray  # int64[domain, BUCKETS]
    n_shards: list[int]


def _fmt(n: float) -> str:
    return f"{n:,.0f}"


def make_plan(spec: MixSpec, pools: dict[str, DomainPool]) -> Plan:
    names = list(spec.domains)
    problems = []
    for d in names:
        pool = pools[d]
        if spec.heldout_tokens:
            total = int(pool.tokens.sum())
            if total < 2 * spec.heldout_tokens:
                problems.append(f"domain {d!r} has {_fmt(total)} tokens, too few to hold out {_fmt(spec.heldout_tokens)} "
                                "and train on the rest; lower heldout_tokens")
                continue
            tail = np.cumsum(pool.tokens[::-1])
            pool.heldout_from = BUCKETS - int(np.searchsorted(tail, spec.heldout_tokens) + 1)
    if problems:
        raise MixError("\n".join(problems))
    avail = np.array([pools[d].available for d in names], dtype=np.int64)
    targets = np.zeros((len(spec.phases), len(names)))
    prev = None
    for i, ph in enumerate(spec.phases):
        if ph.tokens is not None:
            targets[i] = [float(ph.tokens.get(d, 0)) for d in names]
            w = targets[i] / max(targets[i].sum(), 1)
        else:
            if ph.weights is not None:
                w = np.array([float(ph.weights.get(d, 0)) for d in names])
            else:
                base = prev if prev is not None else np.full(len(names), 1.0 / len(names))
                w = base * np.array([float(ph.upsample.get(d, 1.0)) for d in names])
            w = w / w.sum()
            targets[i] = w * spec.total_tokens * ph.fraction
        prev = w
    need = targets.sum(axis=0)
    caps = np.array([spec.domains[d].max_epochs for d in names]) * avail
    short = []
    for j, d in enumerate(names):
        if need[j] > 0 and avail[j] == 0:
            short.append(f"domain {d!r} has no tokens (after its where filter and hold-out) but the mixture asks for {_fmt(need[j])}")
        elif need[j] > caps[j] + 0.5:
            per_phase = " + ".join(f"{p.name} {_fmt(t)}" for p, t in zip(spec.phases, targets[:, j]) if t > 0)
            epochs = need[j] / avail[j]
            fits = (caps / np.maximum(need, 1)).min() * (spec.total_tokens or need.sum())
            short.append(
                f"domain {d!r} runs short by {_fmt(need[j] - caps[j])} tokens: the mixture asks for {_fmt(need[j])} "
                f"({per_phase}), {epochs:.2f} epochs of its {_fmt(avail[j])} available tokens, but max_epochs is "
                f"{spec.domains[d].max_epochs:g} ({_fmt(caps[j])} tokens). Raise its max_epochs to {np.ceil(epochs * 100) / 100:g}, "
                f"lower its weight, add data, or lower total_tokens to {_fmt(np.floor(fits))}")
    if short:
        raise MixError("the mixture cannot be realized:\n  " + "\n  ".join(short))
    ends = np.rint(np.cumsum(targets, axis=0)).astype(np.int64)
    starts = np.vstack([np.zeros((1, len(names)), dtype=np.int64), ends[:-1]])
    n_shards = [max(1, int(np.ceil(t / spec.shard_tokens))) for t in targets.sum(axis=1)]
    return Plan([p.name for p in spec.phases], names, targets, starts, ends, avail,
                np.array([pools[d].heldout_from for d in names]),
                np.stack([pools[d].positions() for d in names]), n_shards)
