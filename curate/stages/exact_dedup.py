from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

from curate.core.keydedup import KeyDedupStage
from curate.core.registry import register
from curate.schema import ID, TEXT, fold_whitespace, hash_strings128, nfkc


def normalize_text(text: pa.Array, lowercase: bool = True, whitespace: bool = True, punctuation: bool = False,
                   unicode: bool = True) -> pa.Array:
    """Vectorized normalization before hashing: NFKC, case, punctuation, whitespace folding."""
    if unicode:
        text = nfkc(text)
    if lowercase:
        text = pc.utf8_lower(text)
    if punctuation:
        text = pc.replace_substring_regex(text, r"[\p{P}\p{S}]+", "")
    if whitespace:
        text = pc.utf8_trim_whitespace(fold_whitespace(text))
    return text


@register
@dataclass(kw_only=True)
class ExactDedup(KeyDedupStage):
    """Exact dedup on a 128-bit hash of normalized text; the smallest id of each group survives."""

    stage = "exact_dedup"
    reason = "exact_duplicate"
    lowercase: bool = True
    normalize_whitespace: bool = True
    strip_punctuation: bool = False
    partitions: int | None = None  # default: derived from the input's size
    mode: Literal["drop", "annotate"] = "drop"

    def keys(self, batch):
        norm = normalize_text(batch.column(TEXT), self.lowercase, self.normalize_whitespace, self.strip_punctuation)
        return hash_strings128(norm), None, batch.column(ID)
