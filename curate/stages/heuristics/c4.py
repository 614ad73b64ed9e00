"""C4 rules (Raffel et al. 2020, "Exploring the Limits of Transfer Learning", section 2.2), with the
definitions of DataTrove's ``C4QualityFilter`` (line mode, the C4 default).

The C4 rules are of two kinds, and are two stages here because a ``Filter`` keeps or drops whole
documents and only a ``Mapper`` rewrites text:

* ``c4_lines`` (Mapper) keeps the lines of a document that pass the line rules: each line is
  stripped and Wikipedia-style citations (``[1]``, ``[edit]``, ``[citation needed]``) are removed;
  a line is removed if it has a word longer than ``max_word_length`` (1000) characters, does not
  end in terminal punctuation (``. ? ! " '``; an ellipsis does not count), has fewer than
  ``min_words_per_line`` (3) words, mentions "javascript", or has cookie/terms-of-use boilerplate.
  The kept lines are joined with newlines. A document left empty is dropped by the stage machinery
  as ``empty_after_c4_lines``.
* ``c4_quality`` (Filter) makes the document-level decisions, on the lines that pass the line rules
  (the same rules and parameters, computed from the original text, so the decision does not depend
  on whether ``c4_lines`` ran before): a line with "lorem ipsum" (``c4_lorem_ipsum``) or a curly
  bracket (``c4_curly_bracket``) drops the document, and so do fewer than ``min_num_sentences`` (5)
  sentences in the kept lines (``c4_too_few_sentences``; sentences as spaCy's sentencizer splits
  each line).

DataTrove's ``C4QualityFilter`` is both at once: a recipe with ``c4_quality`` followed by
``c4_lines`` keeps the same documents with the same text. Score columns of ``c4_quality``:
``c4_num_sentences``, ``c4_lorem_ipsum_lines``, ``c4_curly_bracket_lines`` (the three decide) and
``c4_kept_lines`` (informative).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from curate.core.registry import register
from curate.core.stage import Filter, Mapper
from curate.schema import TEXT
from curate.stages.heuristics._text import (
    CHUNK_RE, WHITESPACE, Analysis, RuleSet, column, count_sentences, first_failure, scores_np, sentence_counts,
)

CITATION_RE = r"\[\d*\]|\[edit\]|\[citation needed\]"
END_PUNCTUATION = (".", "?", "!", '"', "'")
POLICY_SUBSTRINGS = ["terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies"]


@dataclass(kw_only=True)
class C4LineRules:
    """The line rules' parameters, shared by ``c4_lines`` and ``c4_quality``."""

    remove_citations: bool = True
    filter_no_terminal_punct: bool = True
    min_words_per_line: int | None = 3
    max_word_length: int | None = 1000
    filter_javascript: bool = True
    filter_policy: bool = True

    def _line_params(self):
        return (self.remove_citations, self.filter_no_terminal_punct, self.min_words_per_line, self.max_word_length,
                self.filter_javascript, self.filter_policy)

    def line_analysis(self, st) -> dict:
        """Per line of every text of the slice ``st`` (``str.splitlines``): text index, cleaned
        line, and masks ``candidate`` (passes the punctuation / length / word-count rules: the lines
        C4 checks for lorem ipsum and curly brackets), ``kept`` (also passes the javascript and
        policy rules)."""
        return st.memo(("c4_lines",) + self._line_params(), lambda: self._analyze(st))

    def _analyze(self, st) -> dict:
        doc, raw = st.lines("splitlines")
        line = raw.str.strip_chars(WHITESPACE)
        ok = np.ones(len(line), dtype=bool)
        if self.max_word_length is not None:
            # only a line longer than the limit can hold a word longer than the limit
            long = np.flatnonzero((line.str.len_chars() > self.max_word_length).to_numpy())
            if len(long):
                longest = (
                    line.gather(long).str.extract_all(CHUNK_RE).list.eval(pl.element().str.len_chars()).list.max().fill_null(0)
                )
                ok[long[(longest > self.max_word_length).to_numpy()]] = False
        if self.min_words_per_line is not None:
            ok &= (line.str.count_matches(CHUNK_RE) >= self.min_words_per_line).to_numpy()  # words before citation removal
        cited = np.zeros(len(line), dtype=bool)
        if self.remove_citations:
            cited = line.str.contains(CITATION_RE).to_numpy()
            line = line.str.replace_all(CITATION_RE, "")
        if self.filter_no_terminal_punct:
            last = line.str.slice(-1)
            ok &= (last.is_in(pl.Series(list(END_PUNCTUATION)).implode()) & ~line.str.ends_with("...")).to_numpy()
        kept = ok.copy()
        if self.filter_javascript:
            kept &= ~line.str.contains("(?i)javascript").to_numpy()
        if self.filter_policy:
            kept &= ~line.str.contains("(?i)" + "|".join(POLICY_SUBSTRINGS)).to_numpy()
        return {"doc": doc, "line": line, "candidate": ok, "kept": kept, "cited": cited, "n": st.n}

    def sentences(self, st, a: dict) -> np.ndarray:
        """Sentences per line (0 for the lines not kept)."""
        kept, cited = a["kept"], a["cited"]
        out = np.zeros(len(kept), dtype=np.int64)
        # a line's words do not change when it is stripped: reuse the slice's words of the lines
        # that lost no citation, tokenize the others again
        line_words = st.line_words
        out += count_sentences(line_words, (kept & ~cited)[line_words.group])
        redo = np.flatnonzero(kept & cited)
        if len(redo):
            out[redo] = sentence_counts(a["line"].gather(redo))
        return out


@register
@dataclass(kw_only=True)
class C4Lines(C4LineRules, Mapper):
    """C4 line cleanup: keep the lines that end in punctuation, have 3+ words and no javascript/cookie boilerplate."""

    stage = "c4_lines"

    def map(self, batch, analysis: Analysis | None = None):
        a = analysis if analysis is not None else Analysis.of(batch)
        joined = a.join_rows(self._joined)
        out = pc.utf8_trim(joined, WHITESPACE)
        del joined
        return out.cast(batch.column(TEXT).type)

    def _joined(self, st):
        """Per text of the slice: its kept lines joined with newlines, and how many there are."""
        a = self.line_analysis(st)
        kept = a["kept"]
        counts = np.bincount(a["doc"][kept], minlength=a["n"])
        offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        lines = a["line"].filter(pl.Series(kept)).to_arrow()
        if isinstance(lines, pa.ChunkedArray):
            lines = lines.chunk(0) if lines.num_chunks == 1 else lines.combine_chunks()  # one chunk: no copy
        lists = pa.LargeListArray.from_arrays(pa.array(offsets), lines.cast(pa.large_string()))
        return pc.binary_join(lists, pa.scalar("\n", pa.large_string())), counts


@register
@dataclass(kw_only=True)
class C4Quality(C4LineRules, RuleSet, Filter):
    """C4 document rules: lorem ipsum, curly brackets, too few sentences (on the lines that pass C4's line rules)."""

    stage = "c4_quality"
    reason = "c4_quality"
    min_num_sentences: int | None = 5
    filter_lorem_ipsum: bool = True
    filter_curly_bracket: bool = True

    def slice_sums(self, st):
        a = self.line_analysis(st)
        doc, line, cand, kept, n = a["doc"], a["line"], a["candidate"], a["kept"], a["n"]
        lorem = cand & line.str.contains("(?i)lorem ipsum").to_numpy()
        # the curly bracket check comes after the javascript one: a javascript line is removed first
        js = line.str.contains("(?i)javascript").to_numpy() if self.filter_javascript else np.zeros(len(cand), dtype=bool)
        curly = cand & ~js & line.str.contains("{", literal=True).to_numpy()
        sentences = self.sentences(st, a)
        return {
            "sentences": np.bincount(doc, weights=sentences, minlength=n).astype(np.int64),
            "lorem": np.bincount(doc[lorem], minlength=n).astype(np.int64),
            "curly": np.bincount(doc[curly], minlength=n).astype(np.int64),
            "kept": np.bincount(doc[kept], minlength=n).astype(np.int64),
        }

    def columns(self, s, m):
        return {
            "c4_num_sentences": column(s["sentences"]),
            "c4_lorem_ipsum_lines": column(s["lorem"]),
            "c4_curly_bracket_lines": column(s["curly"]),
            "c4_kept_lines": column(s["kept"]),
        }

    def filter(self, batch, scores):
        s = {k: scores_np(scores, k) for k in scores}
        return first_failure(batch.num_rows, [
            (s["c4_lorem_ipsum_lines"] > 0 if self.filter_lorem_ipsum else None, "c4_lorem_ipsum"),
            (s["c4_curly_bracket_lines"] > 0 if self.filter_curly_bracket else None, "c4_curly_bracket"),
            (s["c4_num_sentences"] < self.min_num_sentences if self.min_num_sentences is not None else None,
             "c4_too_few_sentences"),
        ])
