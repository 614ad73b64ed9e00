"""``curate preselect label``: per-model bits per character, predictive strength and balanced labels.

One Beam job (any runner; the embedded one by default): read the input (``ReadInput``), keep a
seeded hash sample of the documents (cut to ``max_chars``), mark a seeded held-out share, then one
stage per model, separated by reshuffles, adds ``bpc_<model>`` with batched torch inference (GPU
when present). Each worker holds one model at a time (:func:`curate.preselect.family.cached_model`),
and a runner that runs stage after stage (the embedded one) loads each model once per worker.
A last stage adds ``strength`` (S(d)) and the batches are written to ``OUTPUT/losses/*.parquet``.

The driver then picks balanced labels from the non-held-out documents (``OUTPUT/labels.parquet``:
id, text, label pos|neg, strength), writes the held-out documents to ``OUTPUT/heldout.parquet`` and
``OUTPUT/summary.json`` (models, abilities and how they were measured, counts, throughput).
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import sys
import time

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter

from curate import schema as S
from curate.core.stage import ERRORS, KEPT
from curate.preselect import family
from curate.models.gguf import is_gguf
from curate.preselect.config import LabelConfig
from curate.preselect.strength import balanced_labels, predictive_strength, unit_hash

NS = "curate.preselect"


def loss_column(name: str) -> str:
    return f"bpc_{name}"


class _Sample(beam.DoFn):
    """Hash sample of the documents, cut to max_chars, with a held-out flag."""

    def __init__(self, cfg: LabelConfig):
        self.fraction, self.heldout, self.seed, self.max_chars = (cfg.sample_fraction, cfg.heldout_fraction, cfg.seed,
                                                                  cfg.max_chars)

    def process(self, batch: pa.RecordBatch):
        ids = [str(v) for v in batch.column(S.ID).to_pylist()]
        text = pc.utf8_slice_codeunits(pc.fill_null(batch.column(S.TEXT).cast(pa.string()), ""), 0, self.max_chars)
        chars = pc.utf8_length(text).to_numpy(zero_copy_only=False)
        keep = np.array([unit_hash(i, self.seed) < self.fraction for i in ids], dtype=bool) & (chars > 0)
        if not keep.any():
            return
        held = np.array([unit_hash(i, self.seed + 1) < self.heldout for i in ids], dtype=bool)
        idx = pa.array(np.flatnonzero(keep))
        out = pa.RecordBatch.from_arrays(
            [pa.array(ids).take(idx), text.take(idx), pa.array(chars.astype(np.int64)).take(idx), pa.array(held).take(idx)],
            names=[S.ID, S.TEXT, "chars", "heldout"])
        Metrics.counter(NS, "documents").inc(len(idx))
        yield S.with_key(out, S.batch_key(batch))


class _ModelLoss(beam.DoFn):
    """Adds ``bpc_<name>``: the model's bits per character of each document."""

    def __init__(self, spec, cfg: LabelConfig):
        self.spec = spec
        st = spec.settings(cfg)
        self.kwargs = dict(tokenizer=spec.tokenizer, device=cfg.device, dtype=st["dtype"], max_length=st["max_length"])
        self.stride, self.batch_size = st["stride"], st["batch_size"]

    def process(self, batch: pa.RecordBatch):
        lm = family.cached_model(self.spec.path, **self.kwargs)
        t0 = time.perf_counter()
        bpc = family.bits_per_char(lm, batch.column(S.TEXT).to_pylist(), self.stride, self.batch_size)
        Metrics.counter(NS, f"ms_{self.spec.name}").inc(int((time.perf_counter() - t0) * 1000))
        Metrics.counter(NS, f"docs_{self.spec.name}").inc(batch.num_rows)
        out = batch.append_column(loss_column(self.spec.name), pa.array(bpc, type=pa.float64()))
        yield S.with_key(out, S.batch_key(batch))


def _add_strength(batch: pa.RecordBatch, names: list[str], abilities: list[float]) -> pa.RecordBatch:
    losses = np.stack([batch.column(loss_column(n)).to_numpy(zero_copy_only=False) for n in names], axis=1)
    out = batch.append_column("strength", pa.array(predictive_strength(losses, abilities), type=pa.float64()))
    return S.with_key(out, S.batch_key(batch))


def measure_abilities(cfg: LabelConfig, log=print) -> dict[str, float]:
    """Each model's ability: given in the config, or measured (``cfg.ability``), one model at a time."""
    out = {}
    texts = None
    for m in cfg.models:
        if m.ability is not None:
            out[m.name] = float(m.ability)
            continue
        ab = cfg.ability
        st = m.settings(cfg)
        lm = family.cached_model(m.path, tokenizer=m.tokenizer, device=cfg.device, dtype=st["dtype"],
                                 max_length=st["max_length"])
        if ab.measure == "bpc":
            if texts is None:
                texts = [t[:cfg.max_chars] for t in family.read_texts(ab.target, ab.text_keys, ab.max_docs)]
                if not texts:
                    raise ValueError(f"ability target {ab.target} has no text under {ab.text_keys}")
            out[m.name] = family.measure_bpc_ability(lm, texts, st["stride"], st["batch_size"])
        else:
            out[m.name] = family.measure_downstream_ability(lm, ab.tasks, ab.limit, st["batch_size"])
        log(f"  ability {m.name}: {out[m.name]:.4f}")
    family.release_models()
    if len(set(out.values())) < 2:
        raise ValueError(f"all models have the same ability ({next(iter(out.values()))}); predictive strength needs "
                         "models of different abilities")
    return out


def prepare_models(cfg: LabelConfig, log=print) -> None:
    """Models named by a ``.gguf`` file: converted once to a transformers folder under ``OUTPUT/gguf/``.

    The folder is ``OUTPUT/gguf/<file stem>-<hash of the file's path, size and mtime>`` (see
    :func:`curate.models.gguf.cached_conversion`): a rerun into the same output reuses it, a changed
    file gets a new folder. The model's ``path`` becomes that folder (``source`` keeps the file).
    """
    for m in cfg.models:
        if is_gguf(m.path):
            from curate.models.gguf import cached_conversion

            m.source = m.path
            m.path = cached_conversion(m.path, os.path.join(cfg.output, "gguf"), log=log)
            if m.tokenizer is None:
                m.tokenizer = m.path


def _metric(result, name: str) -> int:
    try:
        res = result.metrics().query(MetricsFilter().with_namespace(NS).with_name(name))
        return int(sum(c.committed or c.attempted or 0 for c in res["counters"]))
    except Exception:  # a runner without metrics
        return 0


def run_label(cfg: LabelConfig, runner: str | None = None, workers: int = 1, beam_args: list[str] | None = None,
              log=None) -> dict:
    """Run the labeling job; returns the summary (also written to OUTPUT/summary.json)."""
    from curate.core.runner import pipeline_setup
    from curate.core.safety import begin_output, check_output, finish_output
    from curate.io.transforms import ReadInput
    from curate.io.writers import WriteBatches, join

    log = log or (lambda msg: print(msg, file=sys.stderr))
    out = cfg.output
    check_output(out, cfg.input.path)
    t_start = time.time()
    measure = ("given" if all(m.ability is not None for m in cfg.models)
               else f"{cfg.ability.measure}" + (f" on {', '.join(cfg.ability.target)}" if cfg.ability.measure == "bpc"
                                               else f" on {', '.join(cfg.ability.tasks)}"))
    os.makedirs(out, exist_ok=True)
    prepare_models(cfg, log)
    log(f"abilities ({measure}):")
    abilities = measure_abilities(cfg, log)
    names = [m.name for m in cfg.models]
    os.makedirs(out, exist_ok=True)
    begin_output(out, "preselect label")
    for sub in ("losses", "errors"):
        shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
    options, beam_runner, runner_name, _ = pipeline_setup(runner, workers, beam_args)
    p = beam.Pipeline(runner=beam_runner, options=options)
    read = p | "Read" >> ReadInput(cfg.input)
    docs = read[KEPT] | "Sample" >> beam.ParDo(_Sample(cfg))
    for m in cfg.models:
        docs = (docs | f"Reshuffle[{m.name}]" >> beam.Reshuffle()
                | f"Loss[{m.name}]" >> beam.ParDo(_ModelLoss(m, cfg)))
    _ = (docs | "Strength" >> beam.Map(_add_strength, names, [abilities[n] for n in names])
         | "Write" >> beam.ParDo(WriteBatches(join(out, "losses"))))
    _ = read[ERRORS] | "WriteErrors" >> beam.ParDo(WriteBatches(join(out, "errors")))
    t0 = time.time()
    result = p.run()
    result.wait_until_finish()
    job_seconds = time.time() - t0
    n_docs = _metric(result, "documents")
    infer_ms = {n: _metric(result, f"ms_{n}") for n in names}

    files = sorted(glob.glob(os.path.join(out, "losses", "*.parquet")))
    if not files:
        raise ValueError(f"no documents to label: the input {cfg.input.path} gave no text (check text_key/html_key, "
                         "sample_fraction)")
    table = pa.concat_tables([pq.read_table(f) for f in files])
    table = table.sort_by(S.ID)
    n_docs = n_docs or table.num_rows
    held = table.column("heldout").to_numpy(zero_copy_only=False)
    train = table.filter(pa.array(~held))
    labels = balanced_labels(train.column("strength").to_numpy(zero_copy_only=False),
                             train.column(S.ID).to_pylist(), cfg.label_fraction, cfg.seed)
    chosen = np.flatnonzero(labels >= 0)
    lab = train.take(pa.array(chosen))
    lab_table = pa.table({S.ID: lab.column(S.ID), S.TEXT: lab.column(S.TEXT),
                          "label": pa.array(np.where(labels[chosen] == 1, "pos", "neg")),
                          "strength": lab.column("strength")})
    pq.write_table(lab_table, os.path.join(out, "labels.parquet"))
    pq.write_table(table.filter(pa.array(held)), os.path.join(out, "heldout.parquet"))
    strength = table.column("strength").to_numpy(zero_copy_only=False)
    total_infer = sum(infer_ms.values()) / 1000.0
    summary = {
        "config": cfg.source_file,
        "models": [{"name": m.name, "path": m.path, **({"gguf": m.source} if getattr(m, "source", None) else {}),
                    **{k: v for k, v in m.settings(cfg).items()}, "ability": abilities[m.name],
                    "ability_source": "config" if m.ability is not None else measure,
                    "mean_bpc": float(np.nanmean(table.column(loss_column(m.name)).to_numpy(zero_copy_only=False))),
                    "inference_seconds": infer_ms[m.name] / 1000.0} for m in cfg.models],
        "ability_measure": measure,
        "documents": int(table.num_rows),
        "heldout_documents": int(held.sum()),
        "labeled": {"pos": int((labels == 1).sum()), "neg": int((labels == 0).sum())},
        "strength": {"mean": float(np.nanmean(strength)), "share_s1": float(np.mean(strength == 1.0)),
                     "share_s0": float(np.mean(strength == 0.0)),
                     "quantiles": {str(q): float(np.nanquantile(strength, q)) for q in (0.1, 0.25, 0.5, 0.75, 0.9)}},
        "runner": runner_name,
        "job_seconds": round(job_seconds, 3),
        "total_seconds": round(time.time() - t_start, 3),
        "throughput": {"doc_models_per_second_job": round(n_docs * len(names) / job_seconds, 3) if job_seconds else None,
                       "doc_models_per_second_inference": round(n_docs * len(names) / total_infer, 3) if total_infer else None},
        "device": str(family.pick_device(cfg.device)),
    }
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    finish_output(out)
    return summary


def print_summary(summary: dict, out=None) -> None:
    out = out or sys.stdout
    print(f"abilities ({summary['ability_measure']}; higher is better):", file=out)
    for m in summary["models"]:
        print(f"  {m['name']:<16} ability {m['ability']:+.4f}  mean bpc {m['mean_bpc']:.4f}  "
              f"inference {m['inference_seconds']:.1f}s", file=out)
    s = summary["strength"]
    print(f"documents {summary['documents']:,} ({summary['heldout_documents']:,} held out); labels: "
          f"{summary['labeled']['pos']:,} pos, {summary['labeled']['neg']:,} neg", file=out)
    print(f"strength: mean {s['mean']:.3f}, S=1 {s['share_s1']:.1%}, S=0 {s['share_s0']:.1%}, median "
          f"{s['quantiles']['0.5']:.3f}", file=out)
    t = summary["throughput"]
    print(f"throughput: {t['doc_models_per_second_job']} documents x models / s over the job "
          f"({summary['job_seconds']:.1f}s, {summary['runner']}, {summary['device']}); "
          f"{t['doc_models_per_second_inference']} in inference alone", file=out)
