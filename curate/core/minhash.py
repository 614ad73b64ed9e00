"""Vectorized MinHash over word n-grams, and LSH band keys.

Everything is computed per record batch with numpy over all shingles of the batch:

1. normalize (NFKC, lower-case, punctuation to spaces, whitespace folded) and split into words
   with Arrow kernels;
2. dictionary-encode the words, hash only the distinct ones (xxh3), gather: one hash per word;
3. word n-gram hashes by a polynomial over the n word hashes (docs shorter than n words give one
   shingle of all their words; empty docs give none and are never duplicates);
4. ``num_perm`` multiply-shift hash functions h_i(x) = (a_i * x + b_i) >> 32 on the 32-bit
   shingle hash, minimum per document with ``np.minimum.reduceat``;
5. band keys: each band of ``rows`` values folded to one 64-bit key (with the band index mixed in).

Seeded and reproducible: the same seed gives the same signatures on any machine.
"""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.schema import hash_strings, nfkc

MASK32 = np.uint64(0xFFFFFFFF)


def normalize_for_shingles(text: pa.Array) -> pa.Array:
    text = nfkc(text)
    text = pc.utf8_lower(text)
    text = pc.replace_substring_regex(text, r"\d+", "0")
    return pc.replace_substring_regex(text, r"[\p{P}\p{S}]+", " ")


def _splitmix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def shingles(text: pa.Array, n: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(shingle hashes uint64, per-document shingle counts) for a string array."""
    words = pc.utf8_split_whitespace(normalize_for_shingles(text))
    if isinstance(words, pa.ChunkedArray):
        words = words.chunk(0) if words.num_chunks == 1 else words.combine_chunks()  # one chunk: no copy
    offsets = words.offsets.to_numpy().astype(np.int64)
    flat = words.flatten()
    nonempty = pc.greater(pc.binary_length(flat), 0).to_numpy(zero_copy_only=False)
    if not nonempty.all():  # leading/trailing separators give empty tokens: drop them
        kept_before = np.concatenate([[0], np.cumsum(nonempty)])
        offsets = kept_before[offsets]
        flat = flat.filter(pa.array(nonempty))
    counts = np.diff(offsets)
    if len(flat) == 0:
        return np.zeros(0, np.uint64), np.zeros(len(counts), np.int64)
    enc = pc.dictionary_encode(flat)
    word_h = hash_strings(enc.dictionary, seed=seed)[enc.indices.to_numpy()]
    n_sh = np.where(counts >= n, counts - n + 1, (counts > 0).astype(np.int64))
    # start word index of every shingle
    doc_of = np.repeat(np.arange(len(counts)), n_sh)
    starts = np.repeat(offsets[:-1], n_sh) + (np.arange(len(doc_of)) - np.repeat(np.cumsum(n_sh) - n_sh, n_sh))
    coef = _splitmix(np.arange(1, n + 1, dtype=np.uint64) + np.uint64(seed))
    L = len(word_h)
    h = np.zeros(len(starts), dtype=np.uint64)
    with np.errstate(over="ignore"):
        if L >= n:
            # every window of n words over the flat word array, by n shifted multiply-adds on contiguous
            # slices; windows that cross a document boundary are simply never picked
            full = word_h[: L - n + 1] * coef[0]
            for k in range(1, n):
                full += word_h[k : L - n + 1 + k] * coef[k]
        short = counts[doc_of] < n
        if L >= n:
            h[~short] = full[starts[~short]]
        if short.any():  # documents shorter than n words: one shingle of all their words
            st, ln = starts[short], counts[doc_of[short]]
            acc = np.zeros(len(st), dtype=np.uint64)
            for k in range(n):
                ok = k < ln
                acc[ok] += word_h[st[ok] + k] * coef[k]
            h[short] = acc
    return _splitmix(h), n_sh


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(1, np.iinfo(np.int64).max, size=num_perm, dtype=np.int64).astype(np.uint64) | np.uint64(1)
    b = rng.integers(0, np.iinfo(np.int64).max, size=num_perm, dtype=np.int64).astype(np.uint64)
    return a, b


HUGE_CHARS = 4 << 20  # documents longer than this (in UTF-8 bytes) are signed piece by piece (bounded memory)
OVERLAP_TOKENS = 256  # whitespace tokens repeated at each cut, so that no n-gram window is lost


def _pieces(doc: np.ndarray, size: int, overlap: int):
    """Byte ranges (start, end) of ``doc`` (UTF-8 bytes as uint8) cut at a space or newline into pieces of
    about ``size`` bytes, each starting ``overlap`` whitespace-separated tokens before the previous cut.
    Every window of up to ``overlap`` consecutive tokens lies wholly in some piece, so the union of the
    pieces' shingle sets is the document's (normalization maps a token to zero or more words, so this
    holds unless more than ``overlap - n`` consecutive tokens at a cut are pure punctuation). Only one
    window of the document is scanned at a time: no per-character arrays."""
    n, start = len(doc), 0
    while start < n:
        end = min(n, start + size)
        if end < n:
            lo = start + size // 2
            ws = np.flatnonzero((doc[lo:end] == 32) | (doc[lo:end] == 10))
            end = lo + int(ws[-1]) if len(ws) else end
        yield start, end
        if end >= n:
            return
        lo = max(start, end - size // 2)
        ws = np.flatnonzero((doc[lo:end] == 32) | (doc[lo:end] == 10))
        back = lo + int(ws[-overlap]) if len(ws) >= overlap else lo
        start = max(back, start + 1)


def signatures(text: pa.Array, n: int = 5, num_perm: int = 112, seed: int = 1, max_shingles: int = 1 << 20) -> tuple[np.ndarray, np.ndarray]:
    """(signatures (n_docs, num_perm) uint32, valid mask) — documents with no shingle are not valid.

    A document longer than ``HUGE_CHARS`` is signed piece by piece (overlapping cuts at whitespace)
    and its signature is the element-wise minimum: the same as signing it whole, in bounded memory."""
    if isinstance(text, pa.ChunkedArray):
        text = text.chunk(0) if text.num_chunks == 1 else text.combine_chunks()  # one chunk: no copy
    lengths = pc.fill_null(pc.binary_length(text), 0).to_numpy(zero_copy_only=False)
    huge = lengths > HUGE_CHARS
    if huge.any():
        sig, valid = signatures(text.filter(pa.array(~huge)), n, num_perm, seed, max_shingles)
        full = np.full((len(text), num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
        ok = np.zeros(len(text), dtype=bool)
        full[~huge], ok[~huge] = sig, valid
        for i in np.flatnonzero(huge):
            buf = text[int(i)].as_buffer()  # the document's UTF-8 bytes, zero-copy
            doc = np.frombuffer(buf, dtype=np.uint8)
            for a, b in _pieces(doc, HUGE_CHARS // 2, OVERLAP_TOKENS):
                piece = pa.Array.from_buffers(pa.string(), 1, [None, pa.py_buffer(np.array([0, b - a], dtype=np.int32)),
                                                               buf.slice(a, b - a)])
                s, v = signatures(piece, n, num_perm, seed, max_shingles)
                if v[0]:
                    np.minimum(full[i], s[0], out=full[i])
                    ok[i] = True
        return full, ok
    sh, counts = shingles(text, n, seed)
    n_docs = len(counts)
    sig = np.full((n_docs, num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
    valid = counts > 0
    if not valid.any():
        return sig, valid
    a, b = permutations(num_perm, seed)
    x = (sh >> np.uint64(32)) ^ (sh & MASK32)
    doc_idx = np.flatnonzero(valid)
    bounds = np.concatenate([[0], np.cumsum(counts[valid])])
    shift = np.uint64(32)
    # one hash function at a time over a contiguous run of shingles (much faster than a 2-D block),
    # documents in groups so that at most max_shingles values are live at once
    buf = np.empty(min(len(x), max_shingles), dtype=np.uint64)
    g0 = 0
    while g0 < len(doc_idx):
        g1 = max(int(np.searchsorted(bounds, bounds[g0] + max_shingles, side="right")) - 1, g0 + 1)
        s0, s1 = bounds[g0], bounds[g1]
        xs = x[s0:s1]
        v = buf[: s1 - s0] if s1 - s0 <= len(buf) else np.empty(s1 - s0, dtype=np.uint64)
        starts = bounds[g0:g1] - s0
        rows = doc_idx[g0:g1]
        for p in range(num_perm):
            np.multiply(xs, a[p], out=v)
            np.add(v, b[p], out=v)
            np.right_shift(v, shift, out=v)
            sig[rows, p] = np.minimum.reduceat(v, starts)
        g0 = g1
    return sig, valid


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n_docs, bands) uint64 keys; equal keys in a column = identical band."""
    n = sig.shape[0]
    keys = np.zeros((n, bands), dtype=np.uint64)
    coef = _splitmix(np.arange(rows, dtype=np.uint64) + np.uint64(77))
    with np.errstate(over="ignore"):
        for j in range(bands):
            block = sig[:, j * rows : (j + 1) * rows].astype(np.uint64)
            keys[:, j] = _splitmix((block * coef[None, :]).sum(axis=1, dtype=np.uint64) + np.uint64(j) * np.uint64(0x51ED27))
    return keys


def _false_positive(threshold: float, b: int, r: int) -> float:
    xs = np.linspace(0, threshold, 200)
    return float(np.trapezoid(1 - (1 - xs**r) ** b, xs))


def _false_negative(threshold: float, b: int, r: int) -> float:
    xs = np.linspace(threshold, 1, 200)
    return float(np.trapezoid(1 - (1 - (1 - xs**r) ** b), xs))


def optimal_bands(threshold: float, num_perm: int, fp_weight: float = 0.5, fn_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) with bands * rows <= num_perm minimizing the weighted FP/FN areas of the S-curve
    (the same criterion as datasketch's parameter search)."""
    best, best_err = (1, 1), math.inf
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            err = fp_weight * _false_positive(threshold, b, r) + fn_weight * _false_negative(threshold, b, r)
            if err < best_err:
                best, best_err = (b, r), err
    return best


def jaccard_threshold(bands: int, rows: int) -> float:
    """The similarity at which a pair becomes a candidate with probability 1/2 (approximately)."""
    return (1 / bands) ** (1 / rows)
