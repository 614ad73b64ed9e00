from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.core.keydedup import KeyDedupStage
from curate.core.registry import register
from curate.schema import ID, TEXT, fold_whitespace, hash_strings128


_PIECE = 1 << 20


def _nfkc_lines(v: str) -> str:
    """NFKC of ``v``, line by line, normalizing only the lines that need it (a newline is a starter
    that nothing composes with, so lines normalize independently; most lines of a document that
    needs normalizing are already normal, and the quick check is far cheaper than normalizing)."""
    return "\n".join(line if unicodedata.is_normalized("NFKC", line) else unicodedata.normalize("NFKC", line)
                     for line in v.split("\n"))


def _nfkc_large(data: bytes) -> str:
    """NFKC of a huge value, piece by piece (pieces end just before a newline), so that no full-size
    Python string of the whole value is ever built next to its UTF-8 bytes and the lines' copies."""
    out, start = [], 0
    while start < len(data):
        cut = data.find(b"\n", start + _PIECE) if start + _PIECE < len(data) else -1
        end = len(data) if cut < 0 else cut
        out.append(_nfkc_lines(data[start:end].decode("utf-8")))
        start = end
    return "".join(out)


def nfkc(text: pa.Array) -> pa.Array:
    """Unicode NFKC of every value (Python's ``unicodedata``; Arrow 25's ``utf8_normalize`` composes
    nothing, its "NFKC" is in fact NFKD), normalizing only the values that need it.

    Pure-ASCII values are already NFKC (found vectorized); of the others, those Python's quick check
    finds normalized (most real text) are left as they are, so the per-value Python work is one
    C-speed check on the non-ASCII values only.
    """
    text = text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text
    todo = np.flatnonzero(~np.asarray(pc.fill_null(pc.string_is_ascii(text), True)))
    if not len(todo):
        return text
    changed, values = [], []
    for i in todo.tolist():
        scalar = text[i]
        if scalar.as_buffer().size > _PIECE:
            values.append(_nfkc_large(scalar.as_buffer().to_pybytes()))
            changed.append(i)
            continue
        v = scalar.as_py()
        if not unicodedata.is_normalized("NFKC", v):
            values.append(_nfkc_lines(v))
            changed.append(i)
    if not changed:
        return text
    mask = np.zeros(len(text), dtype=bool)
    mask[changed] = True
    return pc.replace_with_mask(text, pa.array(mask), pa.array(values, type=text.type))


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
