from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.core.registry import register
from curate.core.stage import Filter
from curate.schema import TEXT


def word_counts(text: pa.Array) -> np.ndarray:
    return pc.list_value_length(pc.utf8_split_whitespace(text)).to_numpy(zero_copy_only=False)


@register
@dataclass(kw_only=True)
class LengthFilter(Filter):
    """Drop documents outside a character / whitespace-word length range."""

    stage = "length_filter"
    min_chars: int = 0
    max_chars: int | None = None
    min_words: int = 0
    max_words: int | None = None

    def score(self, batch):
        text = batch.column(TEXT)
        return {"n_chars": pc.utf8_length(text), "n_words": pa.array(word_counts(text))}

    def filter(self, batch, scores):
        chars = scores["n_chars"].to_numpy(zero_copy_only=False)
        words = scores["n_words"].to_numpy(zero_copy_only=False)
        reasons = np.full(len(chars), None, dtype=object)
        for bad, why in (
            (chars < self.min_chars, "too_few_chars"),
            (chars > (self.max_chars if self.max_chars is not None else np.inf), "too_many_chars"),
            (words < self.min_words, "too_few_words"),
            (words > (self.max_words if self.max_words is not None else np.inf), "too_many_words"),
        ):
            reasons[bad & (reasons == None)] = why  # noqa: E711  first failing check names the reason
        return reasons == None, reasons  # noqa: E711
