"""FineWeb quality rules (Penedo et al. 2024, "The FineWeb Datasets"), with the definitions and
published defaults of DataTrove's ``FineWebQualityFilter``.

Lines are the parts of the text between newlines, whitespace-only lines left out; words are
spaCy-style tokens (see ``_text``).

==============================  =================================================  ==================================
column                          statistic                                          dropped as (default threshold)
==============================  =================================================  ==================================
``fineweb_line_punct_ratio``    lines ending with terminal punctuation / lines     ``fineweb_line_punct_ratio`` (< 0.12)
``fineweb_short_line_ratio``    lines of at most ``short_line_length`` (30)        ``fineweb_short_line_ratio`` (> 0.67)
                                characters / lines
``fineweb_char_dup_ratio``      characters in lines equal to an earlier line /     ``fineweb_char_dup_ratio`` (> 0.01)
                                characters of the text without newlines
``fineweb_list_ratio``          newlines / words                                   ``fineweb_list_ratio`` (> 0.3)
==============================  =================================================  ==================================

With ``line_punct_exclude_zero`` a document with no line ending in punctuation is not dropped by
the first check. A threshold set to null turns its check off.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from curate.core.registry import register
from curate.core.stage import Filter
from curate.stages.heuristics._text import TERMINAL_PUNCTUATION, RuleSet, above, column, first_failure, ratio, scores_np


@register
@dataclass(kw_only=True)
class FineWebQuality(RuleSet, Filter):
    """FineWeb quality rules: lines ending in punctuation, short lines, duplicated line characters, newlines per word."""

    stage = "fineweb_quality"
    reason = "fineweb_quality"
    line_punct_thr: float | None = 0.12
    line_punct_exclude_zero: bool = False
    stop_chars: str | None = None  # the characters that end a line "with punctuation"; null: the Unicode sentence terminals
    short_line_thr: float | None = 0.67
    short_line_length: int = 30
    char_duplicates_ratio: float | None = 0.01
    new_line_ratio: float | None = 0.3

    def needs(self):
        return [("duplicates", "newline_nonblank")]

    def slice_sums(self, st):
        doc, lines = st.lines("newline_nonblank")
        stop = TERMINAL_PUNCTUATION if self.stop_chars is None else self.stop_chars
        punct = lines.str.slice(-1).is_in(pl.Series(list(stop), dtype=pl.String).implode()).to_numpy()
        short = (lines.str.len_chars() <= self.short_line_length).to_numpy()
        return {
            "lines": np.bincount(doc, minlength=st.n), "punct_lines": np.bincount(doc[punct], minlength=st.n),
            "short_lines": np.bincount(doc[short], minlength=st.n), "newlines": st.count("\n"),
            "words": st.word_counts["words"],
        }

    def columns(self, s, m):
        dup = m.duplicates("newline_nonblank")
        return {
            "fineweb_line_punct_ratio": column(ratio(s["punct_lines"], s["lines"])),
            "fineweb_short_line_ratio": column(ratio(s["short_lines"], s["lines"])),
            "fineweb_char_dup_ratio": column(ratio(dup["dup_chars"], m.n_chars - s["newlines"])),
            "fineweb_list_ratio": column(ratio(s["newlines"], s["words"])),
        }

    def filter(self, batch, scores):
        s = {k: scores_np(scores, k) for k in scores}
        punct = s["fineweb_line_punct_ratio"]
        low_punct = None
        if self.line_punct_thr is not None:
            low_punct = punct < self.line_punct_thr
            if self.line_punct_exclude_zero:
                low_punct &= punct != 0
        return first_failure(batch.num_rows, [
            (low_punct, "fineweb_line_punct_ratio"),
            (above(s["fineweb_short_line_ratio"], self.short_line_thr), "fineweb_short_line_ratio"),
            (above(s["fineweb_char_dup_ratio"], self.char_duplicates_ratio), "fineweb_char_dup_ratio"),
            (above(s["fineweb_list_ratio"], self.new_line_ratio), "fineweb_list_ratio"),
        ])
