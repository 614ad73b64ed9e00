"""fastText text classifiers in the DCLM style: training, scoring stages, and top-fraction selection.

A classifier is a binary fastText model with the labels ``__label__pos`` / ``__label__neg``
(``pos`` = high quality for the quality classifier, toxic for the toxicity classifier). Training
and prediction see exactly the same text preprocessing (:func:`preprocess`): the first
``max_chars`` characters, lower-cased, punctuation and symbols split off as their own tokens,
every run of whitespace (newlines included) folded to one space.

Stages (registered):

* ``quality_classifier`` (filter): adds ``quality`` = P(pos); keeps documents with
  ``quality >= min_score`` (drop reason ``low_quality``).
* ``toxicity_classifier`` (filter): adds ``toxicity`` = P(pos); drops documents with
  ``toxicity > max_score`` (drop reason ``toxic``).
* ``quality_select`` (global): keeps the highest-scoring documents until ``top_char_fraction``
  of the corpus's characters is reached (DCLM keeps its top 10%). One pass scores each batch
  (or reads an existing score column), materializes it to scratch and emits a fixed-size
  histogram of characters per score bucket; the histograms are summed with one
  ``CombineGlobally`` (no shuffle), the bucket threshold is derived from the total and
  broadcast as a side input, and each batch is read back and filtered against it.

Training lives in :mod:`curate.scorers.train` (``curate train-scorer``).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from typing import Literal

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics

from curate import schema as S
from curate.core.global_stage import Decision, GlobalStage
from curate.core.registry import register
from curate.core.stage import Filter, Scorer

POS, NEG = "__label__pos", "__label__neg"
KINDS = ("quality", "toxicity")
DEFAULT_MAX_CHARS = 10000

# ------------------------------------------------------------------------------------ preprocessing


def preprocess(text, max_chars: int = DEFAULT_MAX_CHARS, mode: str = "curate") -> pa.Array:
    """The text fastText sees, for training and prediction alike (vectorized with Arrow).

    ``curate``: the first ``max_chars`` characters, NFKC, lower-cased, punctuation and symbols
    split off as tokens, whitespace folded. ``newlines``: only newlines (and other whitespace
    runs) become one space -- the preprocessing of DCLM's released classifiers, for using them.
    """
    arr = text if isinstance(text, (pa.Array, pa.ChunkedArray)) else pa.array(list(text), type=pa.string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.chunk(0) if arr.num_chunks == 1 else arr.combine_chunks()  # one chunk: no copy
    arr = pc.fill_null(arr.cast(pa.string()), "")
    if max_chars:
        arr = pc.utf8_slice_codeunits(arr, 0, int(max_chars))
    if mode == "curate":
        arr = pc.utf8_lower(S.nfkc(arr))
        arr = pc.replace_substring_regex(arr, r"([\pP\pS])", r" \1 ")
    elif mode != "newlines":
        raise ValueError(f"unknown preprocess mode {mode!r} (curate | newlines)")
    return pc.utf8_trim_whitespace(pc.replace_substring_regex(arr, r"[\s\pZ]+", " "))


def predict_positive(model, texts: list[str], label: str = POS) -> np.ndarray:
    """P(label) for each (preprocessed) text: one ``model.predict(texts, k=-1)`` call."""
    if not texts:
        return np.zeros(0, dtype=np.float32)
    labels, probs = model.predict(texts, k=-1)
    out = np.zeros(len(texts), dtype=np.float32)
    for i, (labs, ps) in enumerate(zip(labels, probs)):
        for lab, p in zip(labs, ps):
            if lab == label:
                out[i] = p
                break
    return np.clip(out, 0.0, 1.0)


def _label(name: str) -> str:
    return name if name.startswith("__label__") else f"__label__{name}"


# ------------------------------------------------------------------------------------ model loading

_MODELS: dict[str, object] = {}
_MODELS_LOCK = threading.Lock()


def check_model_path(path: str, what: str = "model") -> str:
    """Absolute path of a local model file (remote paths are checked when loaded); ValueError if missing."""
    if not path:
        raise ValueError(f"{what}: a model path is required (train one with `curate train-scorer`)")
    if "://" in path and not path.startswith("file://"):
        return path
    path = os.path.abspath(path.removeprefix("file://"))
    if not os.path.isfile(path):
        raise ValueError(f"{what}: model file not found: {path} (train one with `curate train-scorer`)")
    return path


def load_model(path: str):
    """Load a fastText model once per process (local path, or any Beam filesystem path, copied locally)."""
    with _MODELS_LOCK:
        local_path = path.removeprefix("file://")
        key = path
        if "://" not in local_path and os.path.isfile(local_path):
            st = os.stat(local_path)
            key = f"{path}\0{st.st_mtime_ns}\0{st.st_size}"  # a retrained model at the same path is reloaded
        model = _MODELS.get(key)
        if model is not None:
            return model
        import fasttext

        fasttext.FastText.eprint = lambda *a, **k: None  # silence the load_model deprecation notice
        local = path.removeprefix("file://")
        if "://" in local:
            from apache_beam.io.filesystems import FileSystems

            if not FileSystems.exists(local):
                raise FileNotFoundError(f"fastText model not found: {path}")
            fd, tmp = tempfile.mkstemp(suffix=os.path.splitext(local)[1] or ".bin")
            with os.fdopen(fd, "wb") as out, FileSystems.open(local) as src:
                shutil.copyfileobj(src, out, 1 << 20)
            local = tmp
        elif not os.path.isfile(local):
            raise FileNotFoundError(f"fastText model not found: {path}")
        model = _MODELS[key] = fasttext.load_model(local)
        return model


# ------------------------------------------------------------------------------------ stages


@dataclass(kw_only=True)
class _ClassifierFilter(Filter):
    """Shared body of the fastText classifier filters (not registered)."""

    column = ""  # ClassVar: the score column
    add_scores: bool = True
    model: str
    positive_label: str = "pos"
    max_chars: int = DEFAULT_MAX_CHARS
    preprocess: Literal["curate", "newlines"] = "curate"

    def __post_init__(self):
        self.model = check_model_path(self.model, self.stage)

    def setup(self):
        self._model = load_model(self.model)

    def score(self, batch):
        if getattr(self, "_model", None) is None:
            self.setup()
        texts = preprocess(batch.column(S.TEXT), self.max_chars, self.preprocess).to_pylist()
        return {self.column: pa.array(predict_positive(self._model, texts, _label(self.positive_label)), type=pa.float32())}

    def __getstate__(self):  # the loaded model never travels with the rule
        state = dict(self.__dict__)
        state.pop("_model", None)
        return state


@register
@dataclass(kw_only=True)
class QualityClassifier(_ClassifierFilter):
    """fastText quality classifier (DCLM style): adds ``quality`` = P(high quality); keeps quality >= min_score."""

    stage = "quality_classifier"
    reason = "low_quality"
    column = "quality"
    min_score: float = 0.5

    def filter(self, batch, scores):
        return scores[self.column].to_numpy(zero_copy_only=False) >= self.min_score


@register
@dataclass(kw_only=True)
class ToxicityClassifier(_ClassifierFilter):
    """fastText toxicity classifier: adds ``toxicity`` = P(toxic); drops toxicity > max_score."""

    stage = "toxicity_classifier"
    reason = "toxic"
    column = "toxicity"
    max_score: float = 0.5

    def filter(self, batch, scores):
        return scores[self.column].to_numpy(zero_copy_only=False) <= self.max_score


# ------------------------------------------------------------------------------------ quality_select


@dataclass(kw_only=True)
class _ModelScore(Scorer):
    """Adds ``column`` from a fastText model (used inside quality_select, so bad documents are isolated)."""

    stage = "quality_select"
    model: str
    column: str
    positive_label: str
    max_chars: int
    preprocess: str

    def score(self, batch):
        model = load_model(self.model)
        texts = preprocess(batch.column(S.TEXT), self.max_chars, self.preprocess).to_pylist()
        return {self.column: pa.array(predict_positive(model, texts, _label(self.positive_label)), type=pa.float32())}


def _buckets(scores: np.ndarray, lo: float, hi: float, n: int) -> np.ndarray:
    s = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=lo, posinf=hi, neginf=lo)
    b = np.floor((s - lo) / (hi - lo) * n).astype(np.int64)
    return np.clip(b, 0, n - 1)


def threshold_bucket(hist: np.ndarray, fraction: float) -> int:
    """Smallest bucket b such that buckets >= b hold at least ``fraction`` of all characters.

    Documents in buckets >= b are kept: at least the fraction, exceeding it by at most the
    characters of bucket b. ``fraction >= 1`` keeps everything; ``<= 0`` keeps nothing.
    """
    n = len(hist)
    total = int(hist.sum())
    if fraction >= 1.0 or total == 0:
        return 0
    if fraction <= 0.0:
        return n
    from_top = np.cumsum(hist[::-1])
    k = int(np.searchsorted(from_top, fraction * total, side="left"))
    return n - 1 - min(k, n - 1)


class _HistSum(beam.CombineFn):
    def __init__(self, n: int):
        self.n = n

    def create_accumulator(self):
        return np.zeros(self.n, dtype=np.int64)

    def add_input(self, acc, h):
        acc += h
        return acc

    def merge_accumulators(self, accs):
        accs = list(accs)
        out = accs[0]
        for a in accs[1:]:
            out = out + a
        return out

    def extract_output(self, acc):
        return acc


@register
@dataclass(kw_only=True)
class QualitySelect(GlobalStage):
    """Keep the highest-scoring documents up to top_char_fraction of the corpus's characters (global)."""

    stage = "quality_select"
    reason = "below_top_fraction"
    top_char_fraction: float = 0.1
    model: str | None = None
    score_column: str = "quality"
    positive_label: str = "pos"
    max_chars: int = DEFAULT_MAX_CHARS
    preprocess: Literal["curate", "newlines"] = "curate"
    score_range: list[float] | None = None  # [lo, hi] of the scores; default [0, 1] (probabilities)
    buckets: int = 10000
    add_scores: bool = True
    mode: Literal["drop", "annotate"] = "drop"

    def __post_init__(self):
        if not 0.0 <= self.top_char_fraction <= 1.0:
            raise ValueError(f"top_char_fraction must be within [0, 1], got {self.top_char_fraction}")
        if self.buckets < 1:
            raise ValueError("buckets must be >= 1")
        self.score_range = [0.0, 1.0] if self.score_range is None else [float(v) for v in self.score_range]
        if len(self.score_range) != 2 or not self.score_range[0] < self.score_range[1]:
            raise ValueError(f"score_range must be [lo, hi] with lo < hi, got {self.score_range}")
        if self.model is not None:
            self.model = check_model_path(self.model, self.stage)

    def send(self, view, out):
        """Score (with ``model``) or read the score column; send the batch's character histogram."""
        batch = view.batch
        if self.model:
            if not hasattr(self, "_rule"):
                self._rule = _ModelScore(model=self.model, column=self.score_column, positive_label=self.positive_label,
                                         max_chars=self.max_chars, preprocess=self.preprocess)
            scores = self._rule.score(batch)[self.score_column]
            out.column(self.score_column, scores)
        elif self.score_column not in batch.schema.names:
            raise ValueError(f"quality_select: the batches have no {self.score_column!r} column: set 'model', or run a "
                             f"stage that adds it (e.g. quality_classifier with mode: annotate) before quality_select")
        else:
            scores = batch.column(self.score_column)
        scores = pc.cast(scores, pa.float64()).to_numpy(zero_copy_only=False)
        chars = pc.utf8_length(batch.column(S.TEXT)).to_numpy(zero_copy_only=False).astype(np.int64)
        lo, hi = self.score_range
        out.send(0, np.bincount(_buckets(scores, lo, hi, self.buckets), weights=chars, minlength=self.buckets).astype(np.int64))

    def side_input(self, messages, ctx):
        """The threshold bucket: the histograms are summed by a combiner (never held together), then cut."""
        return (messages | "Histograms" >> beam.Values() | "SumHistograms" >> beam.CombineGlobally(_HistSum(self.buckets))
                | "Threshold" >> beam.Map(threshold_bucket, self.top_char_fraction))

    def decide(self, view, decisions, side=None):
        batch = view.batch
        scores = pc.cast(batch.column(self.score_column), pa.float64()).to_numpy(zero_copy_only=False)
        lo, hi = self.score_range
        keep = _buckets(scores, lo, hi, self.buckets) >= side
        chars = pc.utf8_length(batch.column(S.TEXT)).to_numpy(zero_copy_only=False).astype(np.int64)
        Metrics.counter("curate.info", f"{self.ctx.name}_chars_total").inc(int(chars.sum()))
        Metrics.counter("curate.info", f"{self.ctx.name}_chars_kept").inc(int(chars[keep].sum()))
        drop_scores = self.model and not self.add_scores and self.mode == "drop"
        return Decision(keep=keep, drop_columns=(self.score_column,) if drop_scores else (),
                        rejected_columns={})

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_rule", None)
        return state
