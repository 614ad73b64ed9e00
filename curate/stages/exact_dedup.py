from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

from curate.core.keydedup import KeyDedup
from curate.core.registry import GlobalStage, StageContext, register
from curate.schema import ID, TEXT, hash_strings128


def normalize_text(text: pa.Array, lowercase: bool = True, whitespace: bool = True, punctuation: bool = False,
                   unicode: bool = True) -> pa.Array:
    """Vectorized normalization before hashing: NFKC, case, punctuation, whitespace folding."""
    if unicode:
        text = pc.utf8_normalize(text, "NFKC")
    if lowercase:
        text = pc.utf8_lower(text)
    if punctuation:
        text = pc.replace_substring_regex(text, r"[\p{P}\p{S}]+", "")
    if whitespace:
        text = pc.utf8_trim_whitespace(pc.replace_substring_regex(text, r"\s+", " "))
    return text


@register
@dataclass(kw_only=True)
class ExactDedup(GlobalStage):
    """Exact dedup on a 128-bit hash of normalized text; the smallest id of each group survives."""

    stage = "exact_dedup"
    lowercase: bool = True
    normalize_whitespace: bool = True
    strip_punctuation: bool = False
    partitions: int = 64
    mode: Literal["drop", "annotate"] = "drop"

    def keyer(self, batch):
        norm = normalize_text(batch.column(TEXT), self.lowercase, self.normalize_whitespace, self.strip_punctuation)
        return hash_strings128(norm), None, batch.column(ID)

    def build(self, ctx: StageContext):
        return KeyDedup(ctx.name, self.keyer, "exact_duplicate", ctx.tmp_dir, self.partitions,
                        write_rejected=ctx.write_rejected, annotate=self.mode == "annotate", spill_dir=ctx.spill())
