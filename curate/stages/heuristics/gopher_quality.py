"""Gopher quality rules (Rae et al. 2021, "Scaling Language Models: Methods, Analysis & Insights
from Training Gopher", appendix A.1.1), with the definitions of DataTrove's ``GopherQualityFilter``.

*Tokens* are spaCy-style word tokens (punctuation is a token of its own, see ``_text``); a *word*
is a token with at least one character that is not a symbol. Score columns (``add_scores`` /
``mode: annotate``) and the checks they decide:

======================================  ========================================  ===================================
column                                  statistic                                 dropped as (default threshold)
======================================  ========================================  ===================================
``gopher_word_count``                   words                                     ``gopher_short_doc`` (< 50),
                                                                                  ``gopher_long_doc`` (> 100,000)
``gopher_mean_word_length``             mean characters per word                  ``gopher_below_avg_threshold`` (< 3),
                                                                                  ``gopher_above_avg_threshold`` (> 10)
``gopher_hash_ratio``                   ``#`` per token                           ``gopher_too_many_hashes`` (> 0.1)
``gopher_ellipsis_ratio``               ``...`` or ``…`` per token                ``gopher_too_many_ellipsis`` (> 0.1)
``gopher_bullet_lines_ratio``           lines starting with ``•`` or ``-``        ``gopher_too_many_bullets`` (> 0.9)
``gopher_ellipsis_lines_ratio``         lines ending with ``...`` or ``…``        ``gopher_too_many_end_ellipsis`` (> 0.3)
``gopher_alpha_words_ratio``            tokens with a letter, per token           ``gopher_below_alpha_threshold`` (< 0.8)
``gopher_stop_words``                   distinct stop words present               ``gopher_too_few_stop_words`` (< 2)
======================================  ========================================  ===================================

A threshold set to null turns its check off. A document takes the reason of the first check it
fails, in the order above.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from curate.core.registry import register
from curate.core.stage import Filter
from curate.stages.heuristics._text import WHITESPACE, RuleSet, above, below, column, first_failure, ratio, scores_np

STOP_WORDS = ["the", "be", "to", "of", "and", "that", "have", "with"]


@register
@dataclass(kw_only=True)
class GopherQuality(RuleSet, Filter):
    """Gopher quality rules: word count, mean word length, symbol ratios, bullet/ellipsis lines, alphabetic words, stop words."""

    stage = "gopher_quality"
    reason = "gopher_quality"
    min_doc_words: int | None = 50
    max_doc_words: int | None = 100_000
    min_avg_word_length: float | None = 3
    max_avg_word_length: float | None = 10
    max_symbol_word_ratio: float | None = 0.1
    max_bullet_lines_ratio: float | None = 0.9
    max_ellipsis_lines_ratio: float | None = 0.3
    min_alpha_words_ratio: float | None = 0.8
    min_stop_words: int | None = 2
    stop_words: list[str] = field(default_factory=lambda: list(STOP_WORDS))

    def needs(self):
        return [("distinct_words", tuple(dict.fromkeys(self.stop_words)))]

    def slice_sums(self, st):
        wc = st.word_counts
        line_doc, lines = st.lines("splitlines")
        lstripped = lines.str.strip_chars_start(WHITESPACE)
        rstripped = lines.str.strip_chars_end(WHITESPACE)
        bullet = (lstripped.str.starts_with("•") | lstripped.str.starts_with("-")).to_numpy()
        ellipsis = (rstripped.str.ends_with("...") | rstripped.str.ends_with("…")).to_numpy()
        return {
            "tokens": wc["words"], "alpha": wc["alpha"], "non_symbol": wc["non_symbol"],
            "non_symbol_chars": wc["non_symbol_chars"], "hashes": st.count("#"),
            "ellipses": st.count("...") + st.count("…"), "lines": np.bincount(line_doc, minlength=st.n),
            "bullet_lines": np.bincount(line_doc[bullet], minlength=st.n),
            "ellipsis_lines": np.bincount(line_doc[ellipsis], minlength=st.n),
        }

    def columns(self, s, m):
        tokens, words = s["tokens"], s["non_symbol"]
        return {
            "gopher_word_count": column(words),
            # undefined (NaN) without words: no length check applies, as with DataTrove's mean of nothing
            "gopher_mean_word_length": column(np.where(words > 0, ratio(s["non_symbol_chars"], words), np.nan)),
            "gopher_hash_ratio": column(ratio(s["hashes"], tokens)),
            "gopher_ellipsis_ratio": column(ratio(s["ellipses"], tokens)),
            "gopher_bullet_lines_ratio": column(ratio(s["bullet_lines"], s["lines"])),
            "gopher_ellipsis_lines_ratio": column(ratio(s["ellipsis_lines"], s["lines"])),
            "gopher_alpha_words_ratio": column(ratio(s["alpha"], tokens)),
            "gopher_stop_words": column(m.distinct_words_in(self.stop_words)),
        }

    def filter(self, batch, scores):
        s = {k: scores_np(scores, k) for k in scores}
        words, avg = s["gopher_word_count"], s["gopher_mean_word_length"]
        return first_failure(batch.num_rows, [
            (below(words, self.min_doc_words), "gopher_short_doc"),
            (above(words, self.max_doc_words), "gopher_long_doc"),
            (below(avg, self.min_avg_word_length), "gopher_below_avg_threshold"),
            (above(avg, self.max_avg_word_length), "gopher_above_avg_threshold"),
            (above(s["gopher_hash_ratio"], self.max_symbol_word_ratio), "gopher_too_many_hashes"),
            (above(s["gopher_ellipsis_ratio"], self.max_symbol_word_ratio), "gopher_too_many_ellipsis"),
            (above(s["gopher_bullet_lines_ratio"], self.max_bullet_lines_ratio), "gopher_too_many_bullets"),
            (above(s["gopher_ellipsis_lines_ratio"], self.max_ellipsis_lines_ratio), "gopher_too_many_end_ellipsis"),
            (below(s["gopher_alpha_words_ratio"], self.min_alpha_words_ratio), "gopher_below_alpha_threshold"),
            (below(s["gopher_stop_words"], self.min_stop_words), "gopher_too_few_stop_words"),
        ])
