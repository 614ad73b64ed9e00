"""Staged MATES training: ``curate train CONFIG`` with a ``selection:`` block.

The run is cut into stages of ``stage_steps`` steps. At the start of stage s (model at step
s x stage_steps):

1. **probe**: ``probes`` sequences drawn uniformly from the pool get one optimizer step each from
   the current state (``curate.mates.probe``); oracle = reference loss before - after;
2. **fit**: the influence model regresses the z-scored oracle (``curate.mates.influence``), best epoch
   by Spearman on the held-out probes;
3. **score** every pool sequence with it;
4. **select** ``fraction`` of the pool by Gumbel-top-k (``curate.mates.select``); stage s trains on
   the selection, in a shuffled order, wrapping if it is shorter than the stage.

With ``random_first_stage`` (default, as MATES warms up on random data) stage 0 is a uniform draw
of the same size; ``method: random`` makes every stage a uniform draw: the baseline at equal tokens
and steps. ``method: static`` is the model-blind reference: every pool sequence is scored once (when the
first non-random stage is made) by a fastText quality classifier (``classifier:``; P(``__label__pos``)
of the sequence detokenized with the mix's tokenizer, preprocessed as its ``MODEL.json`` says), and
every stage selects ``fraction`` of the pool by Gumbel-top-k on those fixed scores (same temperature
as mates; only the noise differs between stages). Every method draws stage s's Gumbel noise from the
same seed (``[seed, s, 2]``), so the arms' selections are paired: at temperature 1 they share far more
sequences than independent draws would.

**The pool** is the mix's packed training sequences, all phases together (a multi-phase mix is
pooled; its phase schedule does not apply). A sequence is what a training step reads, so
selecting sequences keeps the token budget exact, and "one optimizer step on a document" is one
step on one sequence. (The ``mates`` scorer stage scores curated *documents* with the same
influence model, for a pipeline; see ``curate.scorers.mates``.)

**Files**, per stage, under ``OUTPUT/mates/stage-NNN/`` (written to a temporary folder and renamed
when complete): ``stage.json`` (method, step, pool size, selected count, Spearman, timings, probe
cost per document), ``probes.jsonl`` (pool index, reference loss after the step, oracle),
``influence/`` (the influence model, loadable by ``load_influence`` / the ``mates`` stage),
``scores.npy`` (predicted influence of every pool sequence), ``selection.npy`` (pool indices in
training order). **Resume**: a stage boundary always gets a checkpoint; a re-run resumes from the
newest checkpoint like any training run, reuses the stage folders already written and makes the
missing ones from the checkpoint at their first step. What a step reads is a function of the step
and the stage's selection, so a resumed run reproduces the uninterrupted one.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
import uuid

import numpy as np

from curate.core.safety import UserError
from curate.mates.select import gumbel_topk
from curate.train.trainer import Trainer, _latest_checkpoint, learning_rate


class StagedTrainer(Trainer):
    def __init__(self, cfg, quiet: bool = False, allow_config_change: bool = False):
        if cfg.selection is None:
            raise ValueError("StagedTrainer needs a config with a selection: block")
        super().__init__(cfg, quiet=quiet, allow_config_change=allow_config_change)
        if getattr(getattr(self, "dist", None), "active", False):
            raise UserError("selection: staged data selection runs in one process; run it without torchrun "
                            "(every process would probe and write the same stage files)")
        from tokenizers import Tokenizer

        self.sel = cfg.selection
        sizes = [p["n"] for p in self.data.phases]
        self.pool_starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.pool_size = int(self.pool_starts[-1])
        self.k = max(1, int(round(self.sel.fraction * self.pool_size)))
        self.stage_steps = self.sel.stage_steps
        self.n_stages = max(1, math.ceil(self.max_steps / self.stage_steps))
        self.selections: dict[int, np.ndarray] = {}
        self.folder = os.path.join(cfg.output, "mates")
        self.lm_tokenizer = Tokenizer.from_file(self.data.manifest["tokenizer"]["path"])
        self.reference = None
        if self.sel.method == "mates":
            from curate.mates.probe import load_reference

            self.reference = load_reference(self.sel.reference, self.lm_tokenizer, self.data.seq_length,
                                            limit=self.sel.reference_limit)
        self.classifier, self.static_scores = None, None
        if self.sel.method == "static":
            from curate.scorers.fasttext_classifier import load_model

            try:
                self.classifier = load_model(self.sel.classifier)
            except (OSError, ValueError) as e:
                raise UserError(f"selection.classifier {self.sel.classifier}: not a fastText model ({e})") from None
        if len(self.data.phases) > 1:
            self._print(f"note: selection pools the mix's {len(self.data.phases)} phases ({self.pool_size:,} sequences); "
                        "the phase schedule does not apply")
        per_stage = self.stage_steps * self.batch
        if self.k < per_stage:
            self._print(f"note: a stage reads {per_stage:,} sequences but selects {self.k:,} "
                        f"({self.sel.fraction:g} of {self.pool_size:,}): selected sequences repeat within a stage")

    # ---- the pool: every sequence of the mix, phases in order

    def pool_rows(self, idx: np.ndarray) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)
        ph = np.searchsorted(self.pool_starts, idx, side="right") - 1
        out = np.empty((len(idx), self.data.seq_length), dtype=np.int64)
        for p in np.unique(ph):
            m = ph == p
            out[m] = self.data.rows(int(p), idx[m] - self.pool_starts[p])
        return out

    def batch_rows(self, step: int) -> np.ndarray:
        s = step // self.stage_steps
        if s not in self.selections:
            self.selections[s] = self.make_stage(s)
        sel = self.selections[s]
        first = (step - s * self.stage_steps) * self.batch
        return self.pool_rows(sel[(first + np.arange(self.batch)) % len(sel)])

    def classifier_scores(self) -> np.ndarray:
        """method static: the classifier's P(pos) of every pool sequence (detokenized), computed once."""
        if self.static_scores is None:
            import pyarrow as pa
            import pyarrow.compute as pc

            from curate.scorers.fasttext_classifier import DEFAULT_MAX_CHARS, POS, predict_positive, preprocess

            card = {}
            if os.path.isfile(self.sel.classifier + ".json"):  # MODEL.json of `curate train-scorer`
                with open(self.sel.classifier + ".json") as f:
                    card = (json.load(f) or {}).get("preprocess") or {}
            mode, max_chars = card.get("mode", "curate"), card.get("max_chars", DEFAULT_MAX_CHARS)
            eos = self.lm_tokenizer.id_to_token(int(self.data.manifest["tokenizer"]["eos_id"]))
            parts = []
            for a in range(0, self.pool_size, 4096):
                ids = self.pool_rows(np.arange(a, min(a + 4096, self.pool_size))).tolist()
                texts = pa.array(self.lm_tokenizer.decode_batch(ids, skip_special_tokens=False), type=pa.string())
                texts = pc.replace_substring(texts, eos, "\n") if eos else texts  # documents stay apart
                parts.append(predict_positive(self.classifier, preprocess(texts, max_chars, mode).to_pylist(), POS))
            self.static_scores = np.concatenate(parts).astype(np.float32)
        return self.static_scores

    # ---- one stage

    def stage_dir(self, s: int) -> str:
        return os.path.join(self.folder, f"stage-{s:03d}")

    def make_stage(self, s: int) -> np.ndarray:
        """The stage's selection: read from its folder, else made now (the model must be at the stage's first step)."""
        folder = self.stage_dir(s)
        if os.path.exists(os.path.join(folder, "stage.json")):
            try:
                sel = np.load(os.path.join(folder, "selection.npy"))
            except (OSError, ValueError) as e:
                raise UserError(f"{folder}/selection.npy cannot be read ({e}); delete {folder} to redo the stage "
                                "from the checkpoint at its first step") from None
            if sel.ndim != 1 or len(sel) == 0 or sel.min() < 0 or sel.max() >= self.pool_size:
                raise UserError(f"{folder}/selection.npy does not fit this mix's pool of {self.pool_size} sequences")
            return sel.astype(np.int64)
        first = s * self.stage_steps
        if self.step != first:
            raise UserError(f"{folder} is missing and the model is at step {self.step}, not {first} where stage {s} "
                            "starts: its selection cannot be remade; delete the checkpoints after step "
                            f"{first} to redo it")
        os.makedirs(self.folder, exist_ok=True)
        tmp = os.path.join(self.folder, f".stage-{s:03d}.{uuid.uuid4().hex[:8]}")
        os.makedirs(tmp)
        try:
            info = self._build_stage(s, tmp)
            with open(os.path.join(tmp, "stage.json"), "w") as f:
                json.dump(info, f, indent=1)
            os.replace(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return np.load(os.path.join(folder, "selection.npy")).astype(np.int64)

    def _build_stage(self, s: int, tmp: str) -> dict:
        cfg, sel = self.cfg, self.sel
        seed = [cfg.seed, s]
        rng = np.random.default_rng(seed + [0])
        info = {"stage": s, "step": self.step, "pool": self.pool_size, "selected": self.k,
                "fraction": sel.fraction, "temperature": sel.temperature}
        t0 = time.perf_counter()
        if sel.method == "random" or (s == 0 and sel.random_first_stage):
            info["method"] = "random"
            chosen = gumbel_topk(np.zeros(self.pool_size), self.k, 1.0, seed=seed + [2])  # a uniform draw
        elif sel.method == "static":
            info["method"] = "static"
            scores = self.classifier_scores()
            np.save(os.path.join(tmp, "scores.npy"), scores)
            chosen = gumbel_topk(scores, self.k, sel.temperature, seed=seed + [2])
            info.update({"classifier": sel.classifier, "score_seconds": time.perf_counter() - t0,
                         "selected_score_mean": float(scores[chosen].mean()), "pool_score_mean": float(scores.mean())})
        else:
            from curate.mates.influence import fit_influence
            from curate.mates.probe import probe, probe_batched

            info["method"] = "mates"
            n_probe = min(sel.probes, self.pool_size)
            probe_idx = np.sort(rng.choice(self.pool_size, n_probe, replace=False))
            rows = self.pool_rows(probe_idx)
            lr = learning_rate(cfg, self.step, self.max_steps)
            self._print(f"stage {s}: probing {n_probe} sequences at step {self.step} (lr {lr:.3g}) against "
                        f"{self.reference.n_records} reference records ({self.reference.n_tokens} tokens)")
            if sel.probe_batch > 1:
                res = probe_batched(self.model, self.opt, rows, self.reference, lr, cfg.grad_clip, self.device,
                                    self.amp, batch=sel.probe_batch)
            else:
                res = probe(self.model, self.opt, rows, self.reference, lr, cfg.grad_clip, self.device, self.amp,
                            self.forward)
            with open(os.path.join(tmp, "probes.jsonl"), "w") as f:
                for i, a, o in zip(probe_idx.tolist(), res["after"].tolist(), res["oracle"].tolist()):
                    f.write(json.dumps({"pool_index": i, "reference_loss_after": a, "oracle": o}) + "\n")
            emb = self.model.get_input_embeddings().weight.detach().float().cpu().clone()
            t1 = time.perf_counter()
            model, fit = fit_influence(rows, res["oracle"], self.lm_tokenizer, encoder=sel.encoder, lm_embeddings=emb,
                                       max_tokens=min(sel.encoder_max_tokens, self.data.seq_length),
                                       epochs=sel.fit_epochs, lr=sel.fit_lr, batch_size=sel.fit_batch_size,
                                       holdout_fraction=sel.holdout_fraction, seed=cfg.seed * 1000 + s,
                                       device=self.device)
            model.save(os.path.join(tmp, "influence"))
            with open(os.path.join(tmp, "influence", "history.json"), "w") as f:
                json.dump(fit, f, indent=1)
            t2 = time.perf_counter()
            scores = np.concatenate([model.predict_ids(self.pool_rows(np.arange(a, min(a + 4096, self.pool_size))),
                                                       batch_size=sel.score_batch_size)
                                     for a in range(0, self.pool_size, 4096)])
            t3 = time.perf_counter()
            np.save(os.path.join(tmp, "scores.npy"), scores.astype(np.float32))
            chosen = gumbel_topk(scores, self.k, sel.temperature, seed=seed + [2])
            info.update({"probes": n_probe, "reference": sel.reference, "reference_records": self.reference.n_records,
                         "reference_loss": res["before"], "oracle_mean": float(res["oracle"].mean()),
                         "oracle_std": float(res["oracle"].std()), "probe_lr": lr,
                         "probe_seconds_per_doc": res["seconds_per_doc"], "probe_batch": sel.probe_batch, "probe_seconds": t1 - t0,
                         "fit_seconds": t2 - t1, "score_seconds": t3 - t2,
                         "spearman_holdout": fit["spearman"], "spearman_train": fit["train_spearman"],
                         "best_epoch": fit["best_epoch"], "holdout_probes": fit["holdout"],
                         "selected_score_mean": float(scores[chosen].mean()), "pool_score_mean": float(scores.mean())})
            self._print(f"stage {s}: probe {res['seconds_per_doc'] * 1000:.1f} ms/doc, influence model held-out "
                        f"Spearman {fit['spearman']:.3f} (epoch {fit['best_epoch']}), pool scored in {t3 - t2:.1f}s")
        order = np.random.default_rng(seed + [3]).permutation(len(chosen))
        np.save(os.path.join(tmp, "selection.npy"), chosen[order].astype(np.int64))
        info["seconds"] = time.perf_counter() - t0
        return info

    # ---- the loop

    def run(self, stop_at_step: int | None = None) -> dict:
        os.makedirs(self.cfg.output, exist_ok=True)
        ckpt = _latest_checkpoint(self.cfg.output)
        if ckpt:
            self.resume(ckpt)  # probing needs the state at the stage start; train() resumes from it again
        while True:
            s = min(self.step // self.stage_steps, self.n_stages - 1)
            end = min((s + 1) * self.stage_steps, self.max_steps)
            if self.step < self.max_steps:
                self.selections[s] = self.make_stage(s)
            stop = end if end < self.max_steps else None
            if stop_at_step is not None:
                stop = min(stop, stop_at_step) if stop is not None else stop_at_step
            res = self.train(stop_at_step=stop)
            if "stopped_at" not in res:
                break
            if self.step == end:
                folder = os.path.join(self.cfg.output, "checkpoints", f"step-{self.step:07d}")
                if not os.path.exists(folder):
                    self.save(folder)
                    self._prune()
            if stop_at_step is not None and self.step >= stop_at_step:
                return res
        res["mates"] = self.summary()
        with open(os.path.join(self.cfg.output, "results.json"), "w") as f:
            json.dump(res, f, indent=2)
        return res

    def summary(self) -> dict:
        stages = []
        for s in range(self.n_stages):
            path = os.path.join(self.stage_dir(s), "stage.json")
            if os.path.exists(path):
                with open(path) as f:
                    stages.append(json.load(f))
        keep = ("stage", "step", "method", "selected", "spearman_holdout", "probe_seconds_per_doc", "seconds")
        return {"method": self.sel.method, "stage_steps": self.stage_steps, "pool": self.pool_size,
                "selection_seconds": sum(st.get("seconds", 0.0) for st in stages),
                "stages": [{k: st[k] for k in keep if k in st} for st in stages]}


def run_staged(cfg, quiet: bool = False, stop_at_step: int | None = None, allow_config_change: bool = False) -> dict:
    trainer = StagedTrainer(cfg, quiet=quiet, allow_config_change=allow_config_change)
    try:
        return trainer.run(stop_at_step=stop_at_step)
    finally:
        dist = getattr(trainer, "dist", None)
        if dist is not None:
            dist.close()
