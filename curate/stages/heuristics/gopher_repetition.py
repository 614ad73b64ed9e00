"""Gopher repetition rules (Rae et al. 2021, appendix A.1.1, table A1), with the definitions of
DataTrove's ``GopherRepetitionFilter``.

Paragraphs are the parts of the stripped text between runs of two or more newlines; lines the parts
between runs of newlines; words are spaCy-style tokens (see ``_text``). A unit is a *duplicate* when
an equal unit occurs earlier in the same document. Character fractions are over the length of the
whole text.

=====================================  ===============================================  ==================================
column                                 statistic                                        dropped as (default: above)
=====================================  ===============================================  ==================================
``gopher_dup_para_frac``               duplicate paragraphs / paragraphs                ``gopher_dup_para_frac`` (0.30)
``gopher_dup_para_char_frac``          characters in duplicate paragraphs               ``gopher_dup_para_char_frac`` (0.20)
``gopher_dup_line_frac``               duplicate lines / lines                          ``gopher_dup_line_frac`` (0.30)
``gopher_dup_line_char_frac``          characters in duplicate lines                    ``gopher_dup_line_char_frac`` (0.20)
``gopher_top_{n}_gram_char_frac``      characters of the most frequent word n-gram      ``gopher_top_{n}_gram``
                                       times its count (n = 2, 3, 4)                    (0.20, 0.18, 0.16)
``gopher_dup_{n}_gram_char_frac``      characters of words in repeated n-grams, each    ``gopher_dup_{n}_grams``
                                       repeat counted once, scanning left to right      (0.15, 0.14, 0.13, 0.12,
                                       (n = 5 .. 10)                                    0.11, 0.10)
=====================================  ===============================================  ==================================

A threshold set to null (or an n left out of ``top_ngrams`` / ``dup_ngrams``) turns its check
off. A document takes the reason of the first check it fails, in the order above.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from curate.core.registry import register
from curate.core.stage import Filter
from curate.stages.heuristics._text import RuleSet, above, column, first_failure, ratio, scores_np

TOP_NGRAMS = {2: 0.20, 3: 0.18, 4: 0.16}
DUP_NGRAMS = {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}


@register
@dataclass(kw_only=True)
class GopherRepetition(RuleSet, Filter):
    """Gopher repetition rules: duplicate lines and paragraphs, most frequent n-grams, duplicated n-grams."""

    stage = "gopher_repetition"
    reason = "gopher_repetition"
    dup_para_frac: float | None = 0.30
    dup_para_char_frac: float | None = 0.20
    dup_line_frac: float | None = 0.30
    dup_line_char_frac: float | None = 0.20
    top_ngrams: dict[int, float] = field(default_factory=lambda: dict(TOP_NGRAMS))
    dup_ngrams: dict[int, float] = field(default_factory=lambda: dict(DUP_NGRAMS))

    def __post_init__(self):
        for name in ("top_ngrams", "dup_ngrams"):
            bad = [n for n in getattr(self, name) if n < 1]
            if bad:
                raise ValueError(f"{name}: n-gram sizes must be >= 1, got {bad}")

    def needs(self):
        return ([("duplicates", "paragraphs"), ("duplicates", "newlines")]
                + [("top_ngram", n) for n in sorted(self.top_ngrams)] + [("dup_ngram", n) for n in sorted(self.dup_ngrams)])

    def columns(self, s, m):
        chars = m.n_chars
        para, line = m.duplicates("paragraphs"), m.duplicates("newlines")
        out = {
            "gopher_dup_para_frac": column(ratio(para["dup"], para["units"])),
            "gopher_dup_para_char_frac": column(ratio(para["dup_chars"], chars)),
            "gopher_dup_line_frac": column(ratio(line["dup"], line["units"])),
            "gopher_dup_line_char_frac": column(ratio(line["dup_chars"], chars)),
        }
        for n in sorted(self.top_ngrams):
            out[f"gopher_top_{n}_gram_char_frac"] = column(ratio(m.top_ngram_chars(n), chars))
        for n in sorted(self.dup_ngrams):
            out[f"gopher_dup_{n}_gram_char_frac"] = column(ratio(m.dup_ngram_chars(n), chars))
        return out

    def filter(self, batch, scores):
        s = {k: scores_np(scores, k) for k in scores}
        checks = [
            (above(s["gopher_dup_para_frac"], self.dup_para_frac), "gopher_dup_para_frac"),
            (above(s["gopher_dup_para_char_frac"], self.dup_para_char_frac), "gopher_dup_para_char_frac"),
            (above(s["gopher_dup_line_frac"], self.dup_line_frac), "gopher_dup_line_frac"),
            (above(s["gopher_dup_line_char_frac"], self.dup_line_char_frac), "gopher_dup_line_char_frac"),
        ]
        for n in sorted(self.top_ngrams):
            checks.append((above(s[f"gopher_top_{n}_gram_char_frac"], self.top_ngrams[n]), f"gopher_top_{n}_gram"))
        for n in sorted(self.dup_ngrams):
            checks.append((above(s[f"gopher_dup_{n}_gram_char_frac"], self.dup_ngrams[n]), f"gopher_dup_{n}_grams"))
        return first_failure(batch.num_rows, checks)
