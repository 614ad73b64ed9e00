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

import difflib
import math
import os
import re
from dataclasses import dataclass, field

import numpy as np

from curate.core.recipe import RecipeError, _load_with_lines, configure, read_text
from curate.core.safety import check_name

BUCKETS = 1 << 16  # hash buckets per domain: the granularity of deterministic sampling


class MixError(ValueError):
    """The mixture cannot be realized; the message names the domains and the shortfall."""


# names a phase cannot take: they are the other entries of a mix output folder
RESERVED_PHASES = ("valid", "errors", "_tmp", "manifest.json", "_SUCCESS", "_INCOMPLETE")


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check_amounts(what: str, values: dict) -> None:
    """Weights, upsampling factors or token targets: each a finite number >= 0."""
    bad = {d: v for d, v in values.items() if not _finite(v) or v < 0}
    if bad:
        raise ValueError(f"{what} must be finite numbers >= 0, got {bad}")


@dataclass
class DomainSpec:
    path: str | list[str]
    where: str | None = None
    text_key: str = "text"
    id_key: str = "id"
    format: str = "auto"
    max_epochs: float = 4.0

    def __post_init__(self):
        from curate.io.readers import FORMATS

        if isinstance(self.path, str):
            self.path = [self.path]
        if not self.path or any(not p for p in self.path):
            raise ValueError("path must be a non-empty file, folder or glob (or a list of them)")
        self.path = [p if "://" in p else os.path.abspath(p) for p in self.path]
        if not math.isfinite(self.max_epochs) or self.max_epochs <= 0:
            raise ValueError(f"max_epochs must be a finite number > 0, got {self.max_epochs}")
        if self.format not in FORMATS + ("auto",):
            raise ValueError(f"format must be one of {FORMATS + ('auto',)}, got {self.format!r}")
        for key in ("text_key", "id_key"):
            if not getattr(self, key):
                raise ValueError(f"{key} must be a column name, got {getattr(self, key)!r}")
        self.clauses = parse_where(self.where) if self.where is not None else []


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
            _check_amounts(k, getattr(self, k))
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

    # lowest (and highest) values, for ``configure``'s range checks; ``_check_values`` checks them too
    limits = {"seq_length": (2, None), "total_tokens": (1, None), "shard_tokens": (1, None),
              "batch_size": (1, None), "heldout_tokens": (0, None), "seed": (0, None)}


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
    seen_domains: dict[str, str] = {}
    for name, params in raw_domains.items():
        line = lines.get(('domains', name), 0)
        bad = check_name(name, "domain name")
        if bad:  # domain names become file names (valid/<domain>.bin, errors/<domain>-*.parquet)
            problems.append(f"{where}:{line}: {bad}")
            continue
        if name.lower() in seen_domains:
            problems.append(f"{where}:{line}: domain {name!r} differs from domain {seen_domains[name.lower()]!r} only in "
                            "case; their files would collide on case-insensitive filesystems")
        seen_domains[name.lower()] = name
        if isinstance(params, str):
            params = {"path": params}
        if not isinstance(params, dict):
            problems.append(f"{where}:{line}: domain {name!r} must be a mapping with at least 'path'")
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
        name = params.get("name")
        if name is not None:
            bad = check_name(name, f"{what}: name")
            if bad is None and name.lower() in (r.lower() for r in RESERVED_PHASES):
                bad = f"{what}: name {name!r} is reserved (a mix output holds {', '.join(RESERVED_PHASES)}); rename the phase"
            if bad:  # phase names become folders of the output
                problems.append(f"{where}:{lines.get(('phases', i, 'name'), lines.get(('phases', i), 0))}: {bad}")
        ph, errs = configure(PhaseSpec, params, where, lines, ("phases", i), what)
        problems += errs
        label = f"phase {name!r}" if isinstance(name, str) else what
        for k in ("weights", "upsample", "tokens"):  # from the raw params: reported even when others are wrong
            for d in (params.get(k) if isinstance(params.get(k), dict) else {}):
                if d not in raw_domains:
                    problems.append(f"{where}:{lines.get(('phases', i, k, d), lines.get(('phases', i), 0))}: "
                                    f"{label}: {k} names {_unknown_domain(d, raw_domains)}")
        if ph is not None:
            phases.append(ph)
    if "source_file" in data:  # set by the loader, not a spec key
        problems.append(f"{where}:{lines.get(('source_file',), 0)}: unknown top-level key 'source_file'")
        data.pop("source_file")
    data["domains"], data["phases"] = {}, []
    spec, errs = configure(MixSpec, data, where, lines, (), "mixture")
    problems += errs
    problems += _check_values(data, where, lines, problems)
    if spec is not None:
        spec.domains, spec.phases, spec.source_file = domains, phases, where
        if len(phases) == len(raw_phases):  # checks across phases: only when every phase could be read
            problems += _check_phases(spec, where, lines, list(raw_domains))
    if problems:
        raise RecipeError(problems)
    if spec.tokenizer and "://" not in spec.tokenizer:
        spec.tokenizer = os.path.abspath(spec.tokenizer)
    return spec


def _unknown_domain(d, domains) -> str:
    close = difflib.get_close_matches(str(d), [str(k) for k in domains], n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown domain {d!r} ({hint}domains: {', '.join(map(str, domains))})"


# (key, smallest allowed value, what it means) for the top-level numbers
_RANGES = (("seq_length", 2, "tokens per packed sequence"), ("shard_tokens", 1, "tokens per shard"),
           ("batch_size", 1, "documents per tokenizer batch"), ("heldout_tokens", 0, "held-out tokens per domain"),
           ("total_tokens", 1, "the token budget"), ("seed", 0, "the seed"))


def _check_values(data: dict, where: str, lines: dict, found: list[str]) -> list[str]:
    """Every top-level value in range, so nothing fails halfway through a run.

    Checks the raw values (so a problem is reported even when another key has one too), skipping
    values of the wrong type and keys that already have a problem at their line in ``found``.
    """
    def reported(key):
        return any(p.startswith(f"{where}:{lines.get((key,), 0)}:") and repr(key) in p for p in found)

    problems = []
    for key, low, meaning in _RANGES:
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or reported(key):
            continue
        if value < low:
            problems.append(f"{where}:{lines.get((key,), 0)}: {key!r} ({meaning}) must be >= {low}, got {value}")
    for key in ("tokenizer", "eos_token"):
        if data.get(key) == "" and not reported(key):
            problems.append(f"{where}:{lines.get((key,), 0)}: {key!r} must not be empty")
    weights = data.get("weights")
    if isinstance(weights, dict) and not reported("weights"):
        try:
            _check_amounts("weights", weights)
        except ValueError as e:
            problems.append(f"{where}:{lines.get(('weights',), 0)}: {e}")
    return problems


def _check_phases(spec: MixSpec, where: str, lines: dict, known: list | None = None) -> list[str]:
    problems = []
    known = list(spec.domains) if known is None else known
    if spec.weights is not None:
        unknown = [d for d in spec.weights if d not in known]
        if unknown:
            hints = [f"{d!r} -> {c[0]!r}" for d in unknown
                     for c in [difflib.get_close_matches(str(d), [str(k) for k in known], n=1)] if c]
            hint = f"did you mean {', '.join(hints)}? " if hints else ""
            problems.append(f"{where}:{lines.get(('weights', unknown[0]), lines.get(('weights',), 0))}: weights name "
                            f"unknown domain(s) {unknown} ({hint}domains: {', '.join(map(str, known))})")
        if spec.phases:
            return [f"{where}:{lines.get(('weights',), 0)}: give top-level weights or phases, not both"]
        try:
            spec.phases = [PhaseSpec(name="main", fraction=1.0, weights=spec.weights)]
        except ValueError:  # weights out of range: reported by _check_values
            return problems
    if not spec.phases:
        return problems + [f"{where}:1: the spec needs 'phases' (or top-level 'weights' for a single phase)"]
    names = [p.name for p in spec.phases]
    if len({n.lower() for n in names}) != len(names):
        problems.append(f"{where}:{lines.get(('phases',), 0)}: phase names must be unique (also ignoring case: each "
                        f"is a folder of the output): {names}")
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
    # the weights each phase ends up with: none may be all zero (an upsample of zero weights is too)
    prev = None
    for i, p in enumerate(spec.phases):
        line = lines.get(('phases', i), 1)
        if p.tokens is not None:
            w = {d: float(v) for d, v in p.tokens.items()}
            kind = "token targets"
        elif p.weights is not None:
            w = {d: float(v) for d, v in p.weights.items()}
            kind = "weights"
        elif prev is not None:
            w = {d: v * float(p.upsample.get(d, 1.0)) for d, v in prev.items()}
            kind = "upsampled weights"
        else:
            break  # the first phase upsamples: reported above
        if sum(w.values()) <= 0:
            problems.append(f"{where}:{line}: phase {p.name!r}: {kind} sum to 0")
        prev = {d: w.get(d, 0.0) for d in spec.domains}
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
