"""Word-list flagging: the fraction of a document's words that are on a list of toxic words or phrases.

Lists: the user's (``words``, and ``word_files`` with one word or phrase per line, ``#`` comments
allowed), in any language, plus by default the English list shipped by the ``better-profanity``
package (its ``profanity_wordlist.txt``, read from the installed package: no network at run time).

Matching is on whole words, case-insensitively, and vectorized over a batch with Arrow:

* text and list entries go through the same normalization (NFKC, lower-case, curly apostrophes
  to ``'``) and the same tokenizer: words are maximal runs of letters, digits, marks, ``_`` and
  inner apostrophes; everything else separates words.
* single-word entries are matched with ``pc.is_in`` over all the batch's words; a phrase of n
  words (``blow job``, and entries with inner punctuation such as ``f.u.c.k`` or ``son-of-a-bitch``,
  which tokenize to several words) is matched against the n-grams of consecutive words of each
  document, built with ``binary_join_element_wise``. No per-document Python loop.
* ``toxic_words_fraction`` = words covered by a match / words in the document (a word covered by
  both a phrase and a single-word entry counts once).

Languages written without spaces (Chinese, Japanese, Thai) tokenize into long runs of letters,
so list entries match only whole runs there; use the fastText toxicity classifier for them.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate import pieces
from curate.core.registry import register
from curate.core.stage import Filter
from curate.schema import TEXT, nfkc

WORD_SEPARATORS = r"[^\pL\pN\pM_']+"


def default_wordlist_path() -> str:
    """Path of better-profanity's English word list inside the installed package."""
    spec = importlib.util.find_spec("better_profanity")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("toxic_words: the default English list comes from the better-profanity package: "
                         "pip install better-profanity (or set default_words: false and give words / word_files)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "profanity_wordlist.txt")
    if not os.path.isfile(path):
        raise ValueError(f"toxic_words: profanity_wordlist.txt not found in the better-profanity install ({path})")
    return path


def read_word_file(path: str) -> list[str]:
    """One word or phrase per line; blank lines and lines starting with ``#`` are skipped."""
    if not os.path.isfile(path):
        raise ValueError(f"toxic_words: word file not found: {path}")
    with open(path, encoding="utf-8") as f:
        return [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]


def normalize(text: pa.Array) -> pa.Array:
    text = pc.utf8_lower(nfkc(pc.fill_null(text, "")))
    return pc.replace_substring(text, "\u2019", "'")


def tokenize(text) -> tuple[pa.Array, np.ndarray]:
    """(flat words, index of each word's document) for a string array, after :func:`normalize`."""
    if not isinstance(text, (pa.Array, pa.ChunkedArray)):
        text = pa.array(list(text), type=pa.string())
    if isinstance(text, pa.ChunkedArray):
        text = text.chunk(0) if text.num_chunks == 1 else text.combine_chunks()  # one chunk: no copy
    parts = pc.split_pattern_regex(normalize(text), WORD_SEPARATORS)
    parents = pc.list_parent_indices(parts).to_numpy(zero_copy_only=False)
    flat = pc.utf8_trim(pc.list_flatten(parts), "'")
    nonempty = pc.greater(pc.binary_length(flat), 0).to_numpy(zero_copy_only=False)
    return flat.filter(pa.array(nonempty)), parents[nonempty]


def entry_keys(entries: list[str]) -> list[str]:
    """Each entry as its normalized words joined by one space ('' for an entry without words)."""
    flat, doc = tokenize(pa.array(list(entries), type=pa.string()))
    words = flat.to_pylist()
    bounds = np.searchsorted(doc, np.arange(len(entries) + 1))  # doc is sorted
    return [" ".join(words[bounds[i]:bounds[i + 1]]) for i in range(len(entries))]


def compile_entries(entries: list[str]) -> dict[int, pa.Array]:
    """{n: the distinct n-word entries, each as its words joined by one space}."""
    grams: dict[int, set[str]] = {}
    for key in entry_keys(entries):
        if key:
            grams.setdefault(key.count(" ") + 1, set()).add(key)
    return {n: pa.array(sorted(v), type=pa.string()) for n, v in sorted(grams.items())}


def _matched(flat: pa.Array, doc: np.ndarray, entries: dict[int, pa.Array]) -> np.ndarray:
    """Per word of ``flat`` (words of the documents ``doc``): covered by a match of ``entries``."""
    m = len(flat)
    matched = np.zeros(m, dtype=bool)
    for n, values in entries.items():
        if m < n or not len(values):
            continue
        if n == 1:
            matched |= pc.is_in(flat, value_set=values).to_numpy(zero_copy_only=False)
            continue
        k = m - n + 1
        grams = pc.binary_join_element_wise(*[flat.slice(j, k) for j in range(n)], " ")
        hit = pc.is_in(grams, value_set=values).to_numpy(zero_copy_only=False) & (doc[: k] == doc[n - 1:])
        del grams
        starts = np.flatnonzero(hit)
        for j in range(n):
            matched[starts + j] = True
    return matched


def match_words(text, entries: dict[int, pa.Array]) -> tuple[np.ndarray, np.ndarray]:
    """(words matched, words) per document of ``text``.

    The batch is matched a slice at a time (:func:`curate.pieces.plan`), and a document longer
    than a slice a piece at a time, cut after a space or newline before an ASCII character (where
    normalization, lower-casing and the tokenizer work the same on both sides); the last words of
    a piece are carried over to the next, so that phrases across the cut match, and the words they
    cover are counted once."""
    if not isinstance(text, (pa.Array, pa.ChunkedArray)):
        text = pa.array(list(text), type=pa.string())
    text = pieces.as_string(text)
    n_docs = len(text)
    hits = np.zeros(n_docs, dtype=np.int64)
    total = np.zeros(n_docs, dtype=np.int64)
    longest = max(entries, default=1)
    for entry in pieces.plan(text, pieces.SLICE_BYTES, b" \n", ascii_next=True):
        if entry[0] == "docs":
            _, a, b = entry
            flat, doc = tokenize(text.slice(a, b - a))
            matched = _matched(flat, doc, entries)
            hits[a:b] = np.bincount(doc[matched], minlength=b - a)
            total[a:b] = np.bincount(doc, minlength=b - a)
            continue
        _, d, bounds = entry
        carry, carry_hit = None, np.zeros(0, dtype=bool)  # the previous piece's last words
        for a, b in zip(bounds[:-1], bounds[1:]):
            flat, _ = tokenize(pieces.piece(text, a, b))
            total[d] += len(flat)
            k = 0 if carry is None else len(carry)
            words = pa.concat_arrays([carry, flat.cast(carry.type)]) if k else flat
            del flat
            matched = _matched(words, np.zeros(len(words), dtype=np.int64), entries)
            hits[d] += int(matched[k:].sum()) + int((matched[:k] & ~carry_hit).sum())
            keep = min(longest - 1, len(words))
            carry = words.take(pa.array(np.arange(len(words) - keep, len(words)), pa.int64()))
            carry_hit = (matched | np.concatenate([carry_hit, np.zeros(len(words) - k, dtype=bool)]))[len(words) - keep :]
            del words, matched
    return hits, total


@register
@dataclass(kw_only=True)
class ToxicWords(Filter):
    """Fraction of words on toxic word lists (user lists in any language + better-profanity's English list)."""

    stage = "toxic_words"
    reason = "toxic_words"
    add_scores: bool = True
    words: list[str] = field(default_factory=list)
    word_files: list[str] = field(default_factory=list)
    default_words: bool = True
    exclude_words: list[str] = field(default_factory=list)
    max_fraction: float = 0.01

    def __post_init__(self):
        entries = list(self.words)
        for path in self.word_files:
            entries += read_word_file(path)
        if self.default_words:
            entries += read_word_file(default_wordlist_path())
        if self.exclude_words:
            excluded = set(entry_keys(self.exclude_words))
            entries = [e for e, key in zip(entries, entry_keys(entries)) if key not in excluded]
        if not entries:
            raise ValueError("toxic_words: no words to match: give words / word_files, or keep default_words: true")
        self._entries = entries  # the lists travel with the rule: workers need no word files

    def setup(self):
        self._compiled = compile_entries(self._entries)

    def score(self, batch):
        if getattr(self, "_compiled", None) is None:
            self.setup()
        hits, total = match_words(batch.column(TEXT), self._compiled)
        frac = np.divide(hits, total, out=np.zeros(len(hits), dtype=np.float64), where=total > 0)
        return {"toxic_words_fraction": pa.array(frac.astype(np.float32), type=pa.float32())}

    def filter(self, batch, scores):
        return scores["toxic_words_fraction"].to_numpy(zero_copy_only=False) <= self.max_fraction

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_compiled", None)
        return state
