"""The ``mates`` stage: score documents with a MATES data-influence model (``curate.mates``).

Adds ``mates`` = the influence model's prediction for each document (z-scored oracle units: higher
means one training step on the document lowered the reference loss more). The model is an
``influence/`` folder that ``curate train`` writes per stage with ``selection: {method: mates}``
(``OUTPUT/mates/stage-NNN/influence``). Batched torch inference, once-per-worker model load, on
the GPU when one is present (``device: auto``). Drops nothing: select afterwards, e.g.
``quality_select: {score_column: mates, ...}``, or take ``curate score`` output to a top-k.

    stages:
      - mates: {model: out/model/mates/stage-003/influence}

Needs torch and transformers (``pip install 'curate[train]'``).
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from curate import schema as S
from curate.core.registry import register
from curate.core.stage import Scorer

_MODELS: dict = {}
_LOCK = threading.Lock()


def _load(folder: str, device: str):
    with _LOCK:
        st = os.stat(os.path.join(folder, "model.safetensors"))
        key = (folder, device, st.st_mtime_ns, st.st_size)
        if key not in _MODELS:
            try:
                import torch  # noqa: F401
                import transformers  # noqa: F401
            except ImportError:
                raise RuntimeError("the mates stage needs torch and transformers: pip install 'curate[train]'") from None
            from curate.mates.influence import load_influence

            _MODELS[key] = load_influence(folder, device=device)
        return _MODELS[key]


@register
@dataclass(kw_only=True)
class MatesScorer(Scorer):
    """MATES influence model: adds ``mates`` = predicted influence of each document on the reference loss."""

    stage = "mates"
    column = "mates"  # ClassVar-like: the score column (fixed)
    model: str
    batch_size: int = 64
    device: str = "auto"  # auto (cuda when present) | cpu | cuda | cuda:N
    max_chars: int = 20000  # characters of a document the model reads (it sees max_tokens tokens anyway)

    def __post_init__(self):
        if "://" in self.model and not self.model.startswith("file://"):
            raise ValueError(f"mates: model {self.model!r}: give a local folder (copy a remote influence model "
                             "down first)")
        path = os.path.abspath(self.model.removeprefix("file://"))
        for name in ("config.json", "model.safetensors", "tokenizer.json"):
            if not os.path.isfile(os.path.join(path, name)):
                raise ValueError(f"mates: model {path}: no {name} there (give an influence/ folder written by "
                                 "`curate train` with selection: {method: mates}, e.g. OUTPUT/mates/stage-001/influence)")
        if self.device != "auto" and not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"mates: device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        self.model = path

    def setup(self):
        self._model = _load(self.model, self.device)

    def score(self, batch: pa.RecordBatch) -> dict[str, pa.Array]:
        if getattr(self, "_model", None) is None:
            self.setup()
        texts = [(t or "")[: self.max_chars] for t in batch.column(S.TEXT).to_pylist()]
        preds = self._model.predict_texts(texts, batch_size=self.batch_size) if texts else np.zeros(0)
        return {self.column: pa.array(np.asarray(preds, dtype=np.float32), type=pa.float32())}
