"""``curate mix``: curated Parquet -> tokenized, sampled, packed, shuffled Megatron shards.

Two Beam pipelines with the plan between them, so an impossible mixture fails before any shard
is written, with a message the user can act on:

1. **count** -- read every domain (any format curate reads), apply its ``where`` filter, tokenize
   (HF ``tokenizers``, batched), and write the token ids to scratch Arrow files. Each document gets
   a seeded 64-bit hash of its id; the top 16 bits are its bucket. Per domain, tokens and documents
   are summed per bucket: 65,536 numbers, however large the domain.
2. **plan** (driver) -- targets per phase and domain from weights / upsampling / token targets;
   each domain is a stream consumed by the phases in order, and its documents sit in the stream in
   bucket order, so the stream position of a bucket is a prefix sum of the histogram. A phase
   spanning stream positions [S, E) takes every document copy ``k`` (epoch k) whose position
   ``k * available + pos`` falls in [S, E): whole epochs repeat, a fraction is a hash-chosen
   subset, and realized tokens match the target to within one bucket. The highest buckets up to
   ``heldout_tokens`` are held out per domain.
3. **pack** -- every document copy gets a seeded shuffle key that picks its shard and its place in
   it; a shard (bounded by ``shard_tokens``) is sorted by key, packed per domain into fixed-length
   sequences with EOS after each document, its sequences permuted, and written atomically as a
   Megatron ``.bin/.idx`` pair. ``manifest.json`` records what was asked and what was realized.

Memory is bounded by one batch in the first pipeline and one shard in the second, not by the corpus;
the output depends only on the inputs, the spec and the seed (not on workers or bundle order).

Output safety: the output may not overlap a domain's input, and a domain that is the partial output
of a killed run is refused, before anything is written. The output is marked ``_INCOMPLETE`` while the
mix writes it and ``_SUCCESS`` when it is done. A re-run removes only what a mix writes: the shard
files (``shard-NNNNN.bin/.idx/.domains.npy``) in the phase folders, the held-out shards of its domains,
the domains' error files, ``manifest.json`` and its own scratch folder ``_tmp`` (recognized by a marker
file); anything else in the output folder is left alone. ``plan_mix`` runs the first pipeline only,
into a scratch folder it removes, and writes nothing.

Remote storage: every path (domains, tokenizer, output, scratch) may be on any Beam filesystem
(gs://). With a remote runner or a remote output and ``--temp_location``, scratch goes to a folder of
this run only, ``TEMP/curate-mix-<run id>`` (with the marker); otherwise to ``OUTPUT/_tmp``. Scratch is
removed when the mix ends, also when it fails. Workers load the tokenizer from its path (a remote
runner refuses a path on this machine) and check its sha256 against the driver's; the second
pipeline lists the scratch files itself, so they never become elements of the job graph.
"""
from __future__ import annotations

import itertools
import json
import os
import pickle
import re
import shutil
import tempfile
import time
from dataclasses import dataclass

import apache_beam as beam
import numpy as np
import pyarrow as pa
import xxhash

from curate import schema as S
from curate.core import exchange
from curate.core.progress import Step
from curate.core.safety import UserError, begin_output, check_name, check_output, finish_output, resolve_input
from curate.core.stage import ERRORS, KEPT, Counts
from curate.io.readers import InputSpec, is_local, read_bytes, read_ipc
from curate.io.transforms import ReadInput
from curate.io.writers import WriteBatches, join, write_bytes, write_ipc
from curate.mix.indexed import write_indexed
from curate.mix.spec import BUCKETS, RESERVED_PHASES, DomainPool, MixSpec, Plan, make_plan, where_mask

MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer, vectorized: a well-spread 64-bit hash of 64-bit integers."""
    x = np.asarray(x, dtype=np.uint64).copy()
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def domain_seed(seed: int, domain: str) -> int:
    return xxhash.xxh3_64_intdigest(f"{seed}:{domain}".encode())


# ----------------------------------------------------------------------------- pipeline 1: count


class _Tokenize(beam.DoFn):
    """Filter, tokenize, hash; write the ids to a scratch Arrow file; yield the bucket histogram."""

    def __init__(self, spec: MixSpec, domain: str, index: int, scratch: str, tokenizer: str, eos_token: str,
                 sha256: str):
        self.spec, self.domain, self.index, self.scratch = spec, domain, index, scratch
        self.tokenizer, self.eos_token, self.sha256 = tokenizer, eos_token, sha256  # the file the driver loaded

    def setup(self):
        from curate.tokenizer import load_tokenizer

        self.tok = load_tokenizer(self.tokenizer, self.eos_token)  # through FileSystems: gs:// on remote workers
        if self.tok.sha256 != self.sha256:
            raise ValueError(f"tokenizer {self.tokenizer} changed while the mix ran (sha256 {self.sha256[:12]} when it "
                             f"started, {self.tok.sha256[:12]} now)")
        self.counts = Counts(f"mix:{self.domain}")
        self.seed = domain_seed(self.spec.seed, self.domain)

    def process(self, batch: pa.RecordBatch):
        dom = self.spec.domains[self.domain]
        n = batch.num_rows
        self.counts.n_in.inc(n)
        if dom.clauses:
            try:
                keep = where_mask(batch, dom.clauses)
            except KeyError as e:
                raise ValueError(f"domain {self.domain!r}: where clause names column {e.args[0]!r}, which batch "
                                 f"{S.batch_key(batch)} does not have (columns: {', '.join(batch.schema.names)})") from None
            self.counts.dropped("where", int(n - keep.sum()))
            batch = S.keep_rows(batch, keep)
        if batch.num_rows == 0:
            return
        ids = self.tok.encode_batch(batch.column("text").to_pylist())
        lens = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        empty = lens == 0
        self.counts.dropped("no_tokens", int(empty.sum()))
        self.counts.kept.inc(int((~empty).sum()))
        h = S.hash_strings(batch.column("id"), self.seed)[~empty]
        lens = lens[~empty]
        if len(lens) == 0:
            return
        if self.scratch is not None:  # None: only counting (``plan_mix``)
            flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=self.tok.token_dtype, count=int(lens.sum()))
            offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
            tokens = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(flat))
            write_ipc(pa.record_batch({"h": h, "tokens": tokens}),
                      join(self.scratch, f"{self.index:03d}-{S.batch_key(batch)}.arrow"))
        bucket = (h >> np.uint64(48)).astype(np.int64)
        yield self.index, np.bincount(bucket, weights=lens + 1, minlength=BUCKETS).astype(np.int64)


# ------------------------------------------------------------------------------ pipeline 2: pack


@dataclass
class _Payload:
    keys: np.ndarray  # uint64 shuffle keys
    domains: np.ndarray  # int16
    lengths: np.ndarray  # int64 tokens per copy (without EOS)
    tokens: np.ndarray  # flat token ids
    eos: np.ndarray  # bool: the copy ends its document (an EOS follows); false for a piece cut at a phase end


def _concat(payloads: list[_Payload]) -> _Payload:
    return _Payload(*(np.concatenate([getattr(p, f) for p in payloads]) for f in ("keys", "domains", "lengths", "tokens", "eos")))


class _Select(beam.DoFn):
    """A scratch file -> ((phase, shard), payload) for every document copy the plan takes."""

    def __init__(self, spec: MixSpec, plan: Plan):
        self.spec, self.plan = spec, plan

    def process(self, path: str):
        d = int(os.path.basename(path).split("-", 1)[0])
        batch = read_ipc(path)
        h = batch.column("h").to_numpy()
        lists = batch.column("tokens")
        offsets = lists.offsets.to_numpy()
        flat = lists.values.to_numpy()
        lens = np.diff(offsets)
        pos = self.plan.positions[d][(h >> np.uint64(48)).astype(np.int64)]
        heldout = pos < 0
        if heldout.any():
            idx = np.flatnonzero(heldout)
            yield ("valid", d), self._payload(h[idx], d, idx, offsets, flat)
        train = np.flatnonzero(~heldout)
        avail = int(self.plan.available[d])
        if avail == 0 or len(train) == 0:
            return
        c = pos[train]
        span = lens[train] + 1  # the document and its EOS
        for p, name in enumerate(self.plan.phases):
            start, end = int(self.plan.starts[p, d]), int(self.plan.ends[p, d])
            if end <= start:
                continue
            # copy k of a document occupies [k * avail + c, k * avail + c + span) of the domain's stream;
            # the phase takes every copy overlapping [start, end), cut to the overlap
            k_min = np.maximum(0, -((c + span - 1 - start) // avail))  # ceil((start - c - span + 1) / avail)
            k_max = -((c - end) // avail) - 1  # ceil((end - c) / avail) - 1
            count = np.maximum(0, k_max - k_min + 1)
            if not count.any():
                continue
            rows = np.repeat(train, count)
            epoch = np.repeat(k_min, count) + (np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count))
            at = epoch * avail + np.repeat(c, count)
            lo = np.maximum(start - at, 0)
            hi = np.minimum(end - at, lens[rows] + 1)
            salt = np.uint64(domain_seed(self.spec.seed, f"phase:{name}"))
            with np.errstate(over="ignore"):
                keys = mix64(h[rows] ^ salt ^ mix64(epoch.astype(np.uint64) + np.uint64(1)))
            shard = (keys % np.uint64(self.plan.n_shards[p])).astype(np.int64)
            for s in np.unique(shard):
                sel = shard == s
                yield (name, int(s)), self._payload(keys[sel], d, rows[sel], offsets, flat, lo[sel], hi[sel])

    @staticmethod
    def _payload(keys, d, rows, offsets, flat, lo=None, hi=None) -> _Payload:
        """Tokens [lo, hi) of each row's document + EOS sequence (all of it by default)."""
        n = offsets[rows + 1] - offsets[rows]
        lo = np.zeros(len(rows), dtype=np.int64) if lo is None else lo
        hi = n + 1 if hi is None else hi
        starts = offsets[rows] + lo
        lens = np.minimum(hi, n) - lo
        take = np.repeat(starts - (np.cumsum(lens) - lens), lens) + np.arange(lens.sum())
        return _Payload(np.asarray(keys, dtype=np.uint64), np.full(len(rows), d, dtype=np.int16), lens, flat[take],
                        hi == n + 1)


def pack(payload: _Payload, seq_length: int, eos: int, n_domains: int, dtype):
    """Sort copies by key, pack each domain into ``seq_length`` sequences with EOS after each document.

    Returns (sequences [n, seq_length], domain per sequence, stats per domain).
    """
    order = np.lexsort((payload.lengths, payload.domains, payload.keys))
    starts = np.concatenate([[0], np.cumsum(payload.lengths)[:-1]]).astype(np.int64)
    seqs, doms, stats = [], [], {}
    for d in range(n_domains):
        rows = order[payload.domains[order] == d]
        if len(rows) == 0:
            continue
        lens = payload.lengths[rows]
        ends = payload.eos[rows].astype(np.int64)
        total = int((lens + ends).sum())
        out = np.full(total, eos, dtype=dtype)  # EOS stays where no token is written: after each document
        dst = np.concatenate([[0], np.cumsum(lens + ends)[:-1]]).astype(np.int64)
        within = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
        out[np.repeat(dst, lens) + within] = payload.tokens[np.repeat(starts[rows], lens) + within]
        n = total // seq_length
        seqs.append(out[: n * seq_length].reshape(n, seq_length))
        doms.append(np.full(n, d, dtype=np.int16))
        stats[d] = {"docs": int(len(rows)), "tokens": total, "packed_tokens": n * seq_length, "sequences": n}
    if not seqs:
        return np.zeros((0, seq_length), dtype=dtype), np.zeros(0, dtype=np.int16), stats
    return np.concatenate(seqs), np.concatenate(doms), stats


class _Pack(beam.DoFn):
    def __init__(self, spec: MixSpec, out: str, eos: int, dtype):
        self.spec, self.out, self.eos, self.dtype = spec, out, eos, dtype

    def process(self, item):
        (phase, shard), payloads = item
        payload = _concat(payloads)
        names = list(self.spec.domains)
        seqs, doms, stats = pack(payload, self.spec.seq_length, self.eos, len(names), self.dtype)
        if phase == "valid":
            prefix = f"valid/{names[shard]}"
        else:
            prefix = f"{phase}/shard-{shard:05d}"
            rng = np.random.default_rng([self.spec.seed, domain_seed(0, phase) & 0xFFFFFFFF, shard])
            perm = rng.permutation(len(seqs))
            seqs, doms = seqs[perm], doms[perm]
        if len(seqs):
            if is_local(self.out):
                write_indexed(os.path.join(self.out, prefix), seqs, doms)
            else:  # gs:// and other Beam filesystems: write locally, then copy each file up
                import tempfile

                with tempfile.TemporaryDirectory() as local:
                    write_indexed(os.path.join(local, "shard"), seqs, doms)
                    for ext in (".bin", ".domains.npy", ".idx"):  # the .idx last, as locally
                        with open(os.path.join(local, "shard" + ext), "rb") as f:
                            write_bytes(join(self.out, prefix + ext), f.read())
        yield {"phase": phase, "shard": shard, "prefix": prefix, "sequences": int(len(seqs)),
               "domains": {names[d]: s for d, s in stats.items()}}


# --------------------------------------------------------------------------------------- driver


def _pipeline(runner, workers, beam_args):
    from curate.core.runner import pipeline_setup

    options, beam_runner, _, local = pipeline_setup(runner, workers, beam_args)
    return beam.Pipeline(runner=beam_runner, options=options), local


def _setup(spec: MixSpec, output: str | None, runner, workers, beam_args):
    """(local runner?, --temp_location) before anything is read; a remote runner refuses paths on this machine.

    Only strings are looked at here; Beam's FileSystems get the pipeline options (credentials ...).
    """
    from apache_beam.options.pipeline_options import GoogleCloudOptions

    from curate.core.runner import pipeline_setup
    from curate.core.safety import check_remote_paths

    options, _, runner_name, local = pipeline_setup(runner, workers, beam_args)
    temp = options.view_as(GoogleCloudOptions).temp_location
    if not local:
        paths = [(f"domain {d!r}: path", p) for d, dom in spec.domains.items() for p in dom.path]
        paths += [("tokenizer", spec.tokenizer), ("--temp_location", temp)]
        if output is not None:
            paths.append(("--output", output))
        check_remote_paths(runner_name, paths)
    return local, temp


def _scratch_folder(output: str, local: bool, temp: str | None) -> str:
    """``TEMP/curate-mix-<run id>`` with a remote runner or output and ``--temp_location``; else ``OUTPUT/_tmp``."""
    from curate.core.safety import is_remote, new_run_id

    if temp and (not local or is_remote(output)):
        return join(temp, f"curate-mix-{new_run_id()}")
    return join(output, "_tmp")


@dataclass
class MixResult:
    manifest: dict
    seconds: float
    read_stats: dict

    def summary(self) -> str:
        m = self.manifest
        lines = [f"mix: {m['total_sequences']:,} sequences of {m['seq_length']} tokens in {self.seconds:.1f}s -> {m['output']}"]
        lines.append(f"{'phase':<10} {'domain':<14} {'requested':>12} {'realized':>12} {'share':>7} {'target':>7} {'epochs':>7}")
        for ph in m["phases"]:
            for d, r in ph["domains"].items():
                lines.append(f"{ph['name']:<10} {d:<14} {r['requested_tokens']:>12,} {r['realized_tokens']:>12,} "
                             f"{r['realized_share']:>7.3f} {r['requested_share']:>7.3f} {r['epochs']:>7.2f}")
        for d, r in m["domains"].items():
            lines.append(f"domain {d}: {r['documents_in']:,} in, {r['documents_used']:,} document copies used, dropped {r['dropped']}, "
                         f"errors {r['errors']}; {r['available_tokens']:,} tokens available, {r['heldout_tokens']:,} held out, "
                         f"{r['epochs_total']:.2f} epochs in all (cap {r['max_epochs']:g})")
        return "\n".join(lines)


def run_mix(spec: MixSpec, output: str, runner: str | None = None, workers: int = 1,
            beam_args: list[str] | None = None) -> MixResult:
    from curate.tokenizer import load_tokenizer

    start = time.time()
    local, temp = _setup(spec, output, runner, workers, beam_args)
    tok = load_tokenizer(spec.tokenizer, spec.eos_token)  # fail before any pipeline on a bad tokenizer
    paths = check_inputs(spec, output)  # before anything in the output is touched
    _check_where_columns(spec, paths)
    _check_layout(output, spec)
    begin_output(output, "mix")
    clean_mix_output(output, spec)
    tmp = _scratch_folder(output, local, temp)
    _make_scratch(tmp)
    scratch = join(tmp, "tokens")
    try:
        # 1. count
        pools, read_stats = _count(spec, paths, tmp, scratch, join(output, "errors"), runner, workers, beam_args, tok,
                                   label="mix: pass 1 of 2, read and tokenize")

        # 2. plan
        plan = make_plan(spec, pools)

        # 3. select, shuffle, pack, write; the scratch files are listed by the pipeline, not put in its graph
        p, local = _pipeline(runner, workers, beam_args)
        stats_path = join(tmp, "shards.pkl")
        _ = (p | "Scratch" >> beam.Create([scratch])
             | "List" >> beam.FlatMap(_list)
             | beam.Reshuffle()
             | "Select" >> beam.ParDo(_Select(spec, plan))
             | "Shuffle" >> exchange.GroupByKey(join(tmp, "spill") if local else None)
             | "Pack" >> beam.ParDo(_Pack(spec, output, tok.eos_id, tok.token_dtype))
             | beam.combiners.ToList()
             | beam.Map(lambda rows: write_bytes(stats_path, pickle.dumps(rows))))
        with Step("mix: pass 2 of 2, sample, shuffle, pack and write shards", unit="", workers=local) as step:
            p.run().wait_until_finish()
            shards = pickle.loads(read_bytes(stats_path))
            step.detail = f"{len(shards):,} shard(s)"
        manifest = build_manifest(spec, plan, pools, shards, tok, read_stats, output, paths)
        write_bytes(join(output, "manifest.json"), json.dumps(manifest, indent=2).encode())
    finally:
        _clear_scratch(tmp)
    finish_output(output)
    return MixResult(manifest, time.time() - start, read_stats)


def _count(spec: MixSpec, paths: dict[str, list[str]], tmp: str, scratch: str | None, errors: str | None,
           runner, workers, beam_args, tok, label: str = "mix: read and tokenize") -> tuple[dict[str, DomainPool], dict]:
    """Pipeline 1: read, filter, tokenize every domain; (token histogram per domain, read stats).

    The token ids go to ``scratch`` (None: not kept), unreadable records to ``errors`` (None: only counted).
    """
    from curate.core.runner import collect_stats

    names = list(spec.domains)
    p, _ = _pipeline(runner, workers, beam_args)
    hists = []
    for i, d in enumerate(names):
        dom = spec.domains[d]
        ispec = InputSpec(path=paths[d], format=dom.format, text_key=dom.text_key, id_key=dom.id_key,
                          source=d, batch_size=spec.batch_size)
        read = p | f"Read[{d}]" >> ReadInput(ispec, stage=f"read:{d}")
        if errors is not None:
            _ = read[ERRORS] | f"Errors[{d}]" >> beam.ParDo(WriteBatches(errors, prefix=f"{d}-"))
        hists.append(read[KEPT] | f"Tokenize[{d}]" >> beam.ParDo(_Tokenize(spec, d, i, scratch, tok.path, tok.eos_token,
                                                                            tok.sha256)))
    hist_path = join(tmp, "hist.pkl")
    _ = ((hists | beam.Flatten() | beam.CombinePerKey(sum)  # histograms, summed per domain
          | beam.combiners.ToList()
          | beam.Map(lambda rows: write_bytes(hist_path, pickle.dumps(dict(rows))))))
    with Step(f"{label} {len(names)} domain(s)", workers=is_local(tmp)) as step:
        result = p.run()
        result.wait_until_finish()
        read_stats = collect_stats(result, [f"read:{d}" for d in names] + [f"mix:{d}" for d in names])
        hist = pickle.loads(read_bytes(hist_path))
        step.n = sum(read_stats[f"read:{d}"].kept for d in names)
    return {d: DomainPool(hist.get(i, np.zeros(BUCKETS, np.int64))) for i, d in enumerate(names)}, read_stats


# ----------------------------------------------------------------------------------- plan only


@dataclass
class MixPlan:
    """What a mix would do (``curate mix --plan``): the plan of a real run, with nothing written."""

    spec: MixSpec
    plan: Plan
    pools: dict[str, DomainPool]
    read_stats: dict
    seconds: float

    def summary(self) -> str:
        spec, plan = self.spec, self.plan
        total = plan.targets.sum()
        lines = [f"plan: {len(plan.phases)} phase(s), {len(plan.domains)} domain(s), {total:,.0f} tokens in "
                 f"{spec.seq_length}-token sequences (counted in {self.seconds:.1f}s; nothing written)"]
        lines.append(f"{'phase':<10} {'domain':<14} {'requested':>12} {'share':>7} {'epochs':>7}")
        for p, ph in enumerate(plan.phases):
            phase_total = plan.targets[p].sum()
            for j, d in enumerate(plan.domains):
                t = plan.targets[p, j]
                share = t / phase_total if phase_total else 0.0
                epochs = t / plan.available[j] if plan.available[j] else 0.0
                lines.append(f"{ph:<10} {d:<14} {t:>12,.0f} {share:>7.3f} {epochs:>7.2f}")
        need = plan.targets.sum(axis=0)
        for j, d in enumerate(plan.domains):
            rs, ms = self.read_stats.get(f"read:{d}"), self.read_stats.get(f"mix:{d}")
            dropped = {**(rs.dropped if rs else {}), **(ms.dropped if ms else {})}
            errors = (rs.errors if rs else 0) + (ms.errors if ms else 0)
            epochs = need[j] / plan.available[j] if plan.available[j] else 0.0
            lines.append(f"domain {d}: {rs.n_in if rs else 0:,} documents in, {ms.kept if ms else 0:,} tokenized, "
                         f"dropped {dropped}, errors {errors}; {int(plan.available[j]):,} tokens available, "
                         f"{self.pools[d].heldout:,} held out; asks for {need[j]:,.0f} tokens, {epochs:.2f} epochs "
                         f"(cap {spec.domains[d].max_epochs:g})")
        return "\n".join(lines)


def plan_mix(spec: MixSpec, output: str | None = None, runner: str | None = None, workers: int = 1,
             beam_args: list[str] | None = None) -> MixPlan:
    """Count every domain and plan the mixture without writing shards, a manifest or error files.

    Raises the MixError a real run would raise for an impossible mixture. Scratch goes to a local
    temporary folder (with a remote runner: ``TEMP/curate-mix-plan-<run id>`` under ``--temp_location``,
    else ``OUTPUT/_tmp``), removed before returning.
    """
    from curate.core.safety import new_run_id
    from curate.tokenizer import load_tokenizer

    start = time.time()
    local, temp = _setup(spec, output, runner, workers, beam_args)
    tok = load_tokenizer(spec.tokenizer, spec.eos_token)
    paths = check_inputs(spec, output)
    _check_where_columns(spec, paths)
    if local:
        tmp = tempfile.mkdtemp(prefix="curate-mix-plan-")
    elif temp:
        tmp = join(temp, f"curate-mix-plan-{new_run_id()}")
        _make_scratch(tmp)
    elif output:
        tmp = join(output, "_tmp")
        _clear_scratch(tmp)
        _make_scratch(tmp)
    else:
        raise UserError("curate mix --plan with a remote runner needs --temp_location or --output for its scratch")
    try:
        pools, read_stats = _count(spec, paths, tmp, None, None, runner, workers, beam_args, tok,
                                   label="mix --plan: read and tokenize")
        plan = make_plan(spec, pools)
    finally:
        if local:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            _clear_scratch(tmp)
    return MixPlan(spec, plan, pools, read_stats, time.time() - start)


# ------------------------------------------------------------------------------ output safety

SCRATCH_MARK = "_CURATE_MIX_SCRATCH"
# the files ``write_indexed`` writes for a prefix, and its temporary names (a re-run after a kill may find them)
_INDEXED = r"(?:\.bin|\.idx|\.domains\.npy|\.(?:bin|idx)\.[0-9a-f]{8}\.tmp|\.domains\.[0-9a-f]{8}\.tmp\.npy)"


def check_inputs(spec: MixSpec, output: str | None) -> dict[str, list[str]]:
    """Each domain's paths as they are read; refuses partial inputs and an output overlapping an input.

    A domain path that is a curate output folder means its ``data/``; one inside the output of a run
    that did not finish is refused. Nothing is written.
    """
    _check_names(spec)
    paths = {d: [resolve_input(p, f"domain {d!r}: path") for p in dom.path] for d, dom in spec.domains.items()}
    if output is not None:
        check_output(output, [p for d, dom in spec.domains.items() for p in [*dom.path, *paths[d]]])
    return paths


def _check_names(spec: MixSpec) -> None:
    """Phase and domain names become file names: refuse any that is not a plain name (``parse_spec`` already
    does, with lines; this guards specs built or changed in code)."""
    reserved = {r.lower() for r in RESERVED_PHASES}
    for p in spec.phases:
        problem = check_name(p.name, "phase name")
        if problem is None and p.name.lower() in reserved:
            problem = f"phase name {p.name!r} is reserved (a mix output holds {', '.join(RESERVED_PHASES)})"
        if problem:
            raise UserError(problem)
    for d in spec.domains:
        problem = check_name(d, "domain name")
        if problem:
            raise UserError(problem)


def _listdir(folder: str) -> list[str] | None:
    """Names in ``folder`` (None when it does not exist); a UserError when it is a file or a link."""
    if is_local(folder):
        f = folder.removeprefix("file://")
        if not os.path.lexists(f):
            return None
        if os.path.islink(f) or not os.path.isdir(f):
            raise UserError(f"{folder!r} is in the way: the mix writes a folder there, and it did not make this "
                            "one; remove it or choose another --output")
        return os.listdir(f)
    from apache_beam.io.filesystems import FileSystems

    found = FileSystems.match([join(folder, "*")])[0].metadata_list
    return [m.path.rstrip("/").rsplit("/", 1)[-1] for m in found] or None


def _remove_files(folder: str, pattern: str) -> None:
    """Remove the files of ``folder`` whose names match ``pattern`` (a regex); then the folder if empty."""
    names = _listdir(folder)
    if names is None:
        return
    rx = re.compile(pattern)
    ours = [join(folder, n) for n in names if rx.fullmatch(n)]
    if is_local(folder):
        for path in ours:
            f = path.removeprefix("file://")
            if os.path.isfile(f) or os.path.islink(f):
                os.remove(f)
        try:
            os.rmdir(folder.removeprefix("file://"))  # only when nothing else is left in it
        except OSError:
            pass
    elif ours:
        from apache_beam.io.filesystems import FileSystems

        FileSystems.delete(ours)


def _earlier(output: str) -> tuple[set[str], set[str]]:
    """(phase names, domain names) of an earlier mix's manifest in ``output``, if any; valid names only."""
    try:
        m = json.loads(read_bytes(join(output, "manifest.json")))
        phases = {ph["name"] for ph in m.get("phases", [])}
        domains = set(m.get("domain_names", []))
    except Exception:  # no manifest, or not one of ours
        return set(), set()
    reserved = {r.lower() for r in RESERVED_PHASES}
    ok = {n for n in phases if check_name(n, "phase") is None and n.lower() not in reserved}
    return ok, {n for n in domains if check_name(n, "domain") is None}


def _targets(output: str, spec: MixSpec) -> tuple[list[str], list[str]]:
    """(phase names, domain names) whose files a mix into ``output`` may remove: this spec's and the earlier manifest's."""
    old_phases, old_domains = _earlier(output)
    return sorted({p.name for p in spec.phases} | old_phases), sorted(set(spec.domains) | old_domains)


def _check_layout(output: str, spec: MixSpec) -> None:
    """Refuse, before the output is marked or cleaned, a file or link where the mix writes a folder,
    a ``manifest.json`` that is not a file, or a scratch folder the mix did not make."""
    phases, _ = _targets(output, spec)
    for name in [*phases, "valid", "errors"]:
        _listdir(join(output, name))
    manifest = join(output, "manifest.json")
    if is_local(manifest) and os.path.lexists(manifest) and (os.path.islink(manifest) or not os.path.isfile(manifest)):
        raise UserError(f"{manifest!r} is in the way: the mix writes its manifest there; remove it or choose another --output")
    names = _listdir(join(output, "_tmp"))
    if names and not _scratch_is_ours(names):
        raise UserError(_not_our_scratch(join(output, "_tmp")))


def clean_mix_output(output: str, spec: MixSpec) -> None:
    """Remove what an earlier (possibly killed) mix wrote in ``output`` -- and nothing else.

    That is: shard files in the folders of this spec's phases and of the phases of the earlier
    manifest; held-out shards and error files of those domains; ``manifest.json``; the scratch
    folder ``_tmp`` if it has the mix's marker. A folder is removed only when that leaves it empty.
    """
    phases, domains = _targets(output, spec)
    for name in phases:
        _remove_files(join(output, name), r"shard-\d{5}" + _INDEXED)
    alt = "|".join(re.escape(d) for d in domains)
    _remove_files(join(output, "valid"), f"(?:{alt}){_INDEXED}")
    _remove_files(join(output, "errors"), rf"(?:{alt})-[^/]+\.parquet|\.(?:{alt})-[^/]+\.parquet\.[0-9a-f]{{8}}\.inprogress")
    manifest = join(output, "manifest.json")
    if is_local(manifest):
        if os.path.isfile(manifest):
            os.remove(manifest)
    else:
        from apache_beam.io.filesystems import FileSystems

        if FileSystems.exists(manifest):
            FileSystems.delete([manifest])
    _clear_scratch(join(output, "_tmp"))


def _make_scratch(tmp: str) -> None:
    write_bytes(join(tmp, SCRATCH_MARK), b"scratch of curate mix: removed when the mix ends\n")


def _clear_scratch(tmp: str) -> None:
    """Remove the scratch folder ``tmp`` if the mix made it (its marker is there); refuse one it did not make."""
    names = _listdir(tmp)
    if not names:
        if names is not None and is_local(tmp):
            os.rmdir(tmp.removeprefix("file://"))
        return
    if _scratch_is_ours(names):
        if is_local(tmp):
            shutil.rmtree(tmp.removeprefix("file://"))
        else:
            from apache_beam.io.filesystems import FileSystems

            found = FileSystems.match([join(tmp, "**")])[0].metadata_list
            if found:
                FileSystems.delete([m.path for m in found])
        return
    raise UserError(_not_our_scratch(tmp))


def _scratch_is_ours(names: list[str]) -> bool:
    # the marker, or only a marker that was being written when a run was killed
    return SCRATCH_MARK in names or all(n.startswith("." + SCRATCH_MARK) for n in names)


def _not_our_scratch(tmp: str) -> str:
    return (f"{tmp!r} holds files that curate mix did not write (no {SCRATCH_MARK} marker); the mix keeps its "
            "scratch there: move them away or choose another --output")


def _list(folder: str) -> list[str]:
    """The scratch Arrow files in ``folder``, sorted (run inside the pipeline, on a worker)."""
    from apache_beam.io.filesystems import FileSystems

    return sorted(m.path for m in FileSystems.match([join(folder, "*.arrow")])[0].metadata_list)


def _check_where_columns(spec: MixSpec, paths: dict[str, list[str]]) -> None:
    """Name a where column that the domain's first Parquet file lacks before anything runs."""
    import pyarrow.parquet as pq

    from curate.io.readers import detect_format, list_files

    for d, dom in spec.domains.items():
        files = list_files(paths[d])
        if not files:
            raise FileNotFoundError(f"domain {d!r}: no files match {', '.join(paths[d])}")
        first = files[0][0]
        if not dom.clauses or detect_format(first, dom.format) != "parquet":
            continue
        if is_local(first):
            schema = pq.read_schema(first)
        else:  # the footer only, through FileSystems
            from curate.io.readers import open_raw

            with open_raw(first) as f:
                schema = pq.ParquetFile(f).schema_arrow
        for col, _, _ in dom.clauses:
            if col.split(".")[0] not in schema.names:
                raise ValueError(f"domain {d!r}: where clause names column {col!r}, which {first} does not have "
                                 f"(columns: {', '.join(schema.names)})")


def build_manifest(spec: MixSpec, plan: Plan, pools: dict[str, DomainPool], shards: list[dict], tok,
                   read_stats: dict, output: str, paths: dict[str, list[str]] | None = None) -> dict:
    names = list(spec.domains)
    phases = []
    used_docs = {d: 0 for d in names}
    for p, name in enumerate(plan.phases):
        rows = sorted((s for s in shards if s["phase"] == name), key=lambda s: s["shard"])
        realized = {d: sum(s["domains"].get(d, {}).get("tokens", 0) for s in rows) for d in names}
        packed = {d: sum(s["domains"].get(d, {}).get("packed_tokens", 0) for s in rows) for d in names}
        docs = {d: sum(s["domains"].get(d, {}).get("docs", 0) for s in rows) for d in names}
        for d in names:
            used_docs[d] += docs[d]
        total_req, total_real = plan.targets[p].sum(), sum(realized.values())
        phases.append({
            "name": name,
            "shards": [s["prefix"] for s in rows if s["sequences"]],
            "sequences": [s["sequences"] for s in rows if s["sequences"]],
            "requested_tokens": int(round(total_req)),
            "realized_tokens": int(total_real),
            "packed_tokens": int(sum(packed.values())),
            "domains": {d: {
                "requested_tokens": int(round(plan.targets[p, j])),
                "realized_tokens": int(realized[d]),
                "packed_tokens": int(packed[d]),
                "documents": int(docs[d]),
                "requested_share": float(plan.targets[p, j] / total_req) if total_req else 0.0,
                "realized_share": float(realized[d] / total_real) if total_real else 0.0,
                "epochs": float(realized[d] / plan.available[j]) if plan.available[j] else 0.0,
            } for j, d in enumerate(names)},
        })
    valid = {s["prefix"].split("/", 1)[1]: {"prefix": s["prefix"], "sequences": s["sequences"],
                                            "tokens": sum(v["packed_tokens"] for v in s["domains"].values())}
             for s in shards if s["phase"] == "valid" and s["sequences"]}
    domains = {}
    for j, d in enumerate(names):
        rs, ms = read_stats.get(f"read:{d}"), read_stats.get(f"mix:{d}")
        used = sum(ph["domains"][d]["realized_tokens"] for ph in phases)
        domains[d] = {
            "path": (paths or {}).get(d, spec.domains[d].path), "where": spec.domains[d].where,
            "documents_in": rs.n_in if rs else 0,
            "documents_tokenized": ms.kept if ms else 0,
            "documents_used": used_docs[d],
            "dropped": {**(rs.dropped if rs else {}), **(ms.dropped if ms else {})},
            "errors": (rs.errors if rs else 0) + (ms.errors if ms else 0),
            "available_tokens": int(plan.available[j]),
            "heldout_tokens": int(pools[d].heldout),
            "heldout_from_bucket": int(pools[d].heldout_from),
            "used_tokens": int(used),
            "epochs_total": float(used / plan.available[j]) if plan.available[j] else 0.0,
            "max_epochs": spec.domains[d].max_epochs,
        }
    return {
        "format": "megatron-indexed-v1",
        "output": output,
        "tokenizer": {"path": tok.path, "sha256": tok.sha256, "eos_id": tok.eos_id, "vocab_size": tok.vocab_size,
                      "dtype": np.dtype(tok.token_dtype).name},
        "seq_length": spec.seq_length,
        "seed": spec.seed,
        "spec": spec.source_file,
        "domain_names": names,
        "phases": phases,
        "valid": valid,
        "domains": domains,
        "total_sequences": sum(sum(ph["sequences"]) for ph in phases),
    }
