"""Decontamination: find documents that share long word n-grams with evaluation sets.

The approach of GPT-3's contamination study, NeMo Curator's ``TaskDecontamination`` and dolma's
``decon``: the text fields of every evaluation record are cut into word n-grams (13 words by
default), and a training document that contains one of them (``min_matches``: at least that many
distinct ones) is contaminated. Here:

* **Words** are those of ``toxic_words``: NFKC, lower-case, curly apostrophes made straight, then
  maximal runs of letters, digits, marks, ``_`` and inner apostrophes; punctuation and spacing
  never matter (``"The  Cat, sat"`` and ``the cat sat`` are the same 3 words).
* **Reference n-grams** are built once per worker process, in ``setup()``, from ``references``
  (files or globs, jsonl (optionally compressed) or Parquet): each of the ``reference_fields`` of
  each record (a string, or a list of strings: each item a text of its own; n-grams never span two
  texts) gives its n-grams. A text shorter than ``ngram`` words but of at least ``min_ngram`` words
  is used whole, as NeMo Curator does for short tasks (``min_ngram: 8`` there; off by default
  here). Each n-gram is a 64-bit hash (XXH3 of each word, combined by a polynomial over the
  ``ngram`` word hashes and mixed), kept in a sorted numpy array with, for each hash, the benchmarks
  (reference files) and records it comes from. Memory is bounded by the reference size, not by
  the corpus: 8 bytes per distinct n-gram, 8 per (n-gram, record), and a bitmap of about 4 bytes
  per n-gram that answers most look-ups without a search.
* **Documents** are matched per batch, vectorized: words found with numpy over the UTF-8 bytes
  (:func:`words`; the same words as the Arrow-regex tokenizer of ``toxic_words``, about twice as
  fast), word hashes (numpy XXH3 over the byte spans), rolling n-gram hashes (``ngram`` numpy
  passes), the bitmap, then ``searchsorted`` for the few candidates left. A batch is worked on a slice of
  about 4 MB at a time, and a longer document piece by piece (the last ``ngram - 1`` words carried
  over to the next piece), so memory is bounded whatever the documents.

``decontaminate_matches`` is the number of distinct reference n-grams a document contains, and
``decontaminate_benchmarks`` the benchmarks they come from (comma-separated names; null when
none). A benchmark's name is its file name without extensions (``arc_easy`` for
``eval/arc_easy.jsonl``); two files with the same name are told apart by their folder.
``curate decontaminate-report`` says which documents each benchmark leaked into, with the n-grams.
"""
from __future__ import annotations

import glob as _glob
import os
import threading
from dataclasses import dataclass, field
from typing import ClassVar, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate import pieces
from curate import schema as S
from curate.core.registry import register
from curate.core.stage import Filter
from curate.scorers.toxic_words import normalize

_P = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier of the polynomial n-gram hash
_SIZE_SALT = np.uint64(0xD6E8FEB86659FD93)
_MAX_NGRAM = 64


def _mix(h: np.ndarray, size: int) -> np.ndarray:
    """splitmix64's finalizer over the polynomial value, salted with the n-gram size."""
    h = h ^ (_SIZE_SALT * np.uint64(size))
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


def gram_hashes(word_hash: np.ndarray, doc: np.ndarray, sizes) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(size, start word index, hash) of every n-gram of each size in ``sizes`` that lies inside one
    document (``doc``: the document of each word, non-decreasing). One numpy pass per word of the
    longest size: the hash of an n-gram of ``k`` words is ``sum(word[i + j] * P^(k - 1 - j))``, mixed."""
    m = len(word_hash)
    sizes = sorted(set(int(s) for s in sizes))
    if not m or not sizes:
        return
    top = sizes[-1]
    pad_w = np.concatenate([word_hash.astype(np.uint64, copy=False), np.zeros(top, np.uint64)])
    pad_d = np.concatenate([doc.astype(np.int64, copy=False), np.full(top, -1, np.int64)])
    acc = np.zeros(m, np.uint64)
    with np.errstate(over="ignore"):
        for j in range(top):
            acc *= _P
            acc += pad_w[j: j + m]
            k = j + 1
            if k in sizes:
                ok = pad_d[k - 1: k - 1 + m] == pad_d[:m]
                starts = np.flatnonzero(ok)
                if len(starts):
                    yield k, starts, _mix(acc[starts], k)


# ------------------------------------------------------------------------------ words, vectorized

_WORD_CP: np.ndarray | None = None


def _word_table() -> np.ndarray:
    """Per code point: a letter, digit or mark (Unicode L*, N*, M*) or ``_``; built once per process."""
    global _WORD_CP
    if _WORD_CP is None:
        import unicodedata

        cat = unicodedata.category
        table = np.zeros(0x110000, dtype=bool)
        # every assigned code point outside planes 3 to 13 (where only CJK extensions G and H lie) and
        # the private use planes 15 and 16
        ok = [c for c in (*range(0x32400), *range(0xE0000, 0xE0200)) if cat(chr(c))[0] in "LNM"]
        table[ok] = True
        table[ord("_")] = True
        _WORD_CP = table
    return _WORD_CP


@dataclass
class Words:
    """The words of some texts as byte spans of one UTF-8 buffer: ``buf[start[i]:start[i] + length[i]]``
    is word i, of text ``doc[i]`` (non-decreasing)."""

    buf: np.ndarray
    start: np.ndarray
    length: np.ndarray
    doc: np.ndarray

    def __len__(self) -> int:
        return len(self.start)

    def hashes(self) -> np.ndarray:
        return S.hash_spans(self.buf, self.start, self.length) if len(self.start) else np.zeros(0, np.uint64)

    def text(self, i: int, k: int) -> list[str]:
        """Words i to i + k - 1."""
        return [bytes(self.buf[a: a + n]).decode("utf-8") for a, n in
                zip(self.start[i: i + k].tolist(), self.length[i: i + k].tolist())]


_ASCII_WORD = np.zeros(256, dtype=bool)
_ASCII_WORD[[ord(c) for c in "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"]] = True


def words(text: pa.Array) -> Words:
    """The words of every text, after normalization (NFKC, lower-case, curly apostrophes straight):
    maximal runs of letters, digits, marks, ``_`` and apostrophes, with apostrophes trimmed from
    both ends of a run (the words of ``toxic_words``). Found with numpy over the UTF-8 bytes: ASCII
    bytes by a table; the code point of each non-ASCII character decoded from its bytes and looked
    up in a table of the Unicode categories, its continuation bytes taking its class. Memory: a few
    bytes per byte of text, plus 16 per word."""
    norm = pieces.as_string(normalize(text))  # no nulls after normalize
    n = len(norm)
    if pa.types.is_string(norm.type) and len(norm) and int(pieces.offsets(norm)[0][-1]) + n >= 2**31 - 1:
        norm = norm.cast(pa.large_string())  # the joined text would not fit 32-bit offsets
    z = np.zeros(0, np.int64)
    if n == 0:
        return Words(np.zeros(0, np.uint8), z, z, z)
    # the texts one after the other in one buffer, a space between them: no word runs across texts
    lists = pa.LargeListArray.from_arrays(pa.array([0, n], pa.int64()), norm)
    joined = pieces.as_string(pc.binary_join(lists, pa.scalar(" ", type=norm.type)))
    joff, jdata = pieces.offsets(joined)
    buf = jdata[joff[0]: joff[1]]
    lengths = np.diff(pieces.offsets(norm)[0])
    starts_of_text = np.zeros(n, np.int64)
    np.cumsum(lengths[:-1] + 1, out=starts_of_text[1:])
    total = len(buf)
    if total == 0:
        return Words(buf, z, z, z)
    word = _ASCII_WORD[buf]
    hi = np.flatnonzero(buf >= 0xC0)  # lead bytes of non-ASCII characters
    if len(hi):
        def at(k):
            return buf[np.minimum(hi + k, total - 1)].astype(np.int64) & 0x3F

        b0 = buf[hi].astype(np.int64)
        cp = np.where(b0 < 0xE0, ((b0 & 0x1F) << 6) | at(1),
                      np.where(b0 < 0xF0, ((b0 & 0x0F) << 12) | (at(1) << 6) | at(2),
                               ((b0 & 0x07) << 18) | (at(1) << 12) | (at(2) << 6) | at(3)))
        word[hi] = _word_table()[np.minimum(cp, 0x10FFFF)]
        cont = np.flatnonzero((buf & 0xC0) == 0x80)
        if len(cont):
            lead = hi[np.maximum(np.searchsorted(hi, cont, side="right") - 1, 0)]
            word[cont] = word[lead]
    ap = np.flatnonzero(buf == 0x27)  # "'"
    if len(ap):  # a run of apostrophes is inside a word when a word character is on both sides of it
        first = np.ones(len(ap), bool)
        first[1:] = ap[1:] != ap[:-1] + 1
        run = np.cumsum(first) - 1
        run_start = ap[first]
        last = np.flatnonzero(np.append(first[1:], True))
        run_end = ap[last]
        inside = (run_start > 0) & (run_end < total - 1)
        inside &= word[np.maximum(run_start - 1, 0)] & word[np.minimum(run_end + 1, total - 1)]
        word[ap[inside[run]]] = True
    edge = np.diff(np.concatenate(([False], word, [False])).view(np.int8))
    start = np.flatnonzero(edge == 1)
    end = np.flatnonzero(edge == -1)
    doc = np.searchsorted(starts_of_text, start, side="right") - 1
    return Words(buf, start, end - start, doc)


# ------------------------------------------------------------------------------ the reference index


def reference_name(paths: list[str]) -> list[str]:
    """A benchmark name per reference file: its base name without extensions, with its folder
    names in front when two files would have the same name."""
    def stem(p: str, up: int) -> str:
        parts = p.rstrip("/").replace("\\", "/").split("/")
        base = parts[-1]
        for ext in (".gz", ".zst", ".zstd", ".bz2", ".jsonl", ".json", ".ndjson", ".parquet"):
            if base.endswith(ext):
                base = base[: -len(ext)]
        return "/".join(parts[-1 - up:-1] + [base]) if up else base

    up = 0
    while True:
        names = [stem(p, up) for p in paths]
        if len(set(names)) == len(names) or up > 8:
            return names
        up += 1


def expand_references(patterns: list[str]) -> list[str]:
    """The reference files (sorted, de-duplicated) of files and globs; a clear error when one
    matches nothing."""
    from curate.io.readers import is_local, list_files

    out: list[str] = []
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern.strip():
            raise ValueError(f"decontaminate: a reference must be a file or glob, got {pattern!r}")
        if is_local(pattern):
            local = pattern.removeprefix("file://")
            found = sorted(_glob.glob(local)) if _glob.has_magic(local) else ([local] if os.path.exists(local) else [])
            found = [f for f in found if os.path.isfile(f)]
            if not found:
                raise ValueError(f"decontaminate: reference {pattern!r} matched no files")
            out += found
        else:
            try:
                out += [p for p, _ in list_files([pattern])]
            except FileNotFoundError as e:
                raise ValueError(f"decontaminate: reference {pattern!r}: {e}") from None
    return sorted(set(out))


def _reference_records(path: str, fields: list[str]) -> Iterator[tuple[int, dict]]:
    """(record number, {field: value}) of a jsonl(.gz/.zst) or Parquet reference file."""
    from curate.io.readers import _content_chunks, compression_of, open_raw

    name = path.lower()
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        with open_raw(path) as f:
            pf = pq.ParquetFile(f)
            have = [c for c in fields if c in pf.schema_arrow.names]
            if not have:
                raise ValueError(f"decontaminate: reference {path} has none of the fields {fields} "
                                 f"(its columns: {', '.join(pf.schema_arrow.names)}); set reference_fields")
            rows = pf.read(columns=have).to_pylist()
        yield from enumerate(rows)
        return
    import orjson

    with open_raw(path) as raw:
        buf = b"".join(_content_chunks(raw, compression_of(path), 1 << 20))
    for i, line in enumerate(buf.split(b"\n")):
        if not line.strip():
            continue
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            raise ValueError(f"decontaminate: reference {path} line {i + 1}: not valid JSON ({e})") from None
        if not isinstance(rec, dict):
            raise ValueError(f"decontaminate: reference {path} line {i + 1}: a record must be a JSON object, "
                             f"got {type(rec).__name__}")
        yield i, rec


def _texts_of(value, path: str, rec: int, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) or v is None for v in value):
        return [v for v in value if v]
    raise ValueError(f"decontaminate: reference {path} record {rec + 1}: field {key!r} must be a string or a list "
                     f"of strings, got {type(value).__name__}")


@dataclass
class ReferenceIndex:
    """The distinct reference n-gram hashes (sorted), with for each the (benchmark, record) pairs it
    comes from (``owner_*[ptr[i]:ptr[i + 1]]``), and a bitmap over the top bits of the hashes."""

    names: list[str]
    files: list[str]
    records: list[int]             # records per benchmark
    hashes: np.ndarray             # uint64, sorted, distinct
    ptr: np.ndarray                # int64, len(hashes) + 1
    owner_bench: np.ndarray        # int32
    owner_rec: np.ndarray          # int32: record number in its file (0-based, jsonl: line - 1)
    sizes: tuple[int, ...]
    bits: int = 0
    bitmap: np.ndarray = field(default_factory=lambda: np.zeros(1, np.uint8))

    def __post_init__(self):
        n = max(len(self.hashes), 1)
        self.bits = int(min(max(int(np.ceil(np.log2(n * 32))), 16), 31))
        self.bitmap = np.zeros(1 << (self.bits - 3), np.uint8)
        top = (self.hashes >> np.uint64(64 - self.bits)).astype(np.int64)
        np.bitwise_or.at(self.bitmap, top >> 3, (1 << (top & 7)).astype(np.uint8))

    @property
    def nbytes(self) -> int:
        return int(self.hashes.nbytes + self.ptr.nbytes + self.owner_bench.nbytes + self.owner_rec.nbytes + self.bitmap.nbytes)

    def find(self, h: np.ndarray) -> np.ndarray:
        """Index into ``hashes`` of each of ``h``, -1 where absent."""
        out = np.full(len(h), -1, np.int64)
        if not len(h) or not len(self.hashes):
            return out
        top = (h >> np.uint64(64 - self.bits)).astype(np.int64)
        maybe = np.flatnonzero((self.bitmap[top >> 3] >> (top & 7).astype(np.uint8)) & 1)
        if not len(maybe):
            return out
        cand = h[maybe]
        pos = np.minimum(np.searchsorted(self.hashes, cand), len(self.hashes) - 1)
        hit = self.hashes[pos] == cand
        out[maybe[hit]] = pos[hit]
        return out

    def benchmarks_of(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position in ``idx``, benchmark) for every benchmark of each reference n-gram ``idx``."""
        starts, ends = self.ptr[idx], self.ptr[idx + 1]
        counts = ends - starts
        rep = np.repeat(np.arange(len(idx)), counts)
        flat = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(counts.sum())
        return rep, self.owner_bench[flat]


def build_index(files: list[str], fields: list[str], ngram: int, min_ngram: int | None) -> ReferenceIndex:
    names = reference_name(files)
    texts, seg_bench, seg_rec, n_records = [], [], [], []
    for b, path in enumerate(files):
        seen_field, n = False, 0
        for rec, row in _reference_records(path, fields):
            n += 1
            for key in fields:
                if key in row:
                    seen_field = True
                    for t in _texts_of(row[key], path, rec, key):
                        texts.append(t)
                        seg_bench.append(b)
                        seg_rec.append(rec)
        if n and not seen_field:
            raise ValueError(f"decontaminate: reference {path}: no record has any of the fields {fields}; "
                             "set reference_fields to the fields that hold its text")
        n_records.append(n)
    seg_bench = np.asarray(seg_bench, np.int32)
    seg_rec = np.asarray(seg_rec, np.int32)
    hs, owners = [], []
    sizes = {ngram}
    if texts:
        arr = pa.array(texts, type=pa.large_string())
        for entry in pieces.plan(arr, pieces.SLICE_BYTES):  # bounded work per slice; a long text is one slice
            a, b = (entry[1], entry[1] + 1) if entry[0] == "pieces" else entry[1:]
            w = words(arr.slice(a, b - a))
            seg = w.doc + a
            wh = w.hashes()
            for k, starts, h in gram_hashes(wh, seg, [ngram]):
                hs.append(h)
                owners.append(seg[starts])
            if min_ngram is not None and min_ngram < ngram:
                n_words = np.bincount(seg - a, minlength=b - a)
                for k in range(min_ngram, ngram):
                    short = np.flatnonzero(n_words == k) + a
                    if not len(short):
                        continue
                    sizes.add(k)
                    first = np.searchsorted(seg, short)  # the first word of each short text
                    for kk, starts, h in gram_hashes(wh, seg, [k]):
                        sel = np.isin(starts, first)
                        hs.append(h[sel])
                        owners.append(seg[starts[sel]])
    h = np.concatenate(hs) if hs else np.zeros(0, np.uint64)
    seg = np.concatenate(owners) if owners else np.zeros(0, np.int64)
    bench, rec = seg_bench[seg] if len(seg) else np.zeros(0, np.int32), seg_rec[seg] if len(seg) else np.zeros(0, np.int32)
    order = np.lexsort((rec, bench, h))
    h, bench, rec = h[order], bench[order], rec[order]
    if len(h):
        new = np.ones(len(h), bool)
        new[1:] = (h[1:] != h[:-1]) | (bench[1:] != bench[:-1]) | (rec[1:] != rec[:-1])
        h, bench, rec = h[new], bench[new], rec[new]
    first = np.ones(len(h), bool)
    first[1:] = h[1:] != h[:-1] if len(h) else first[1:]
    uniq = h[first]
    ptr = np.append(np.flatnonzero(first), len(h)).astype(np.int64)
    return ReferenceIndex(names, list(files), n_records, uniq, ptr, bench.astype(np.int32), rec.astype(np.int32),
                          tuple(sorted(sizes)))


_CACHE: dict[tuple, ReferenceIndex] = {}
_CACHE_LOCK = threading.Lock()


def cached_index(files: list[str], fields: list[str], ngram: int, min_ngram: int | None) -> ReferenceIndex:
    """One index per process for the same references (Beam runs several DoFn instances per worker)."""
    stamp = []
    for f in files:
        try:
            st = os.stat(f.removeprefix("file://"))
            stamp.append((f, st.st_size, st.st_mtime_ns))
        except OSError:
            stamp.append((f, None, None))
    key = (tuple(stamp), tuple(fields), ngram, min_ngram)
    with _CACHE_LOCK:
        idx = _CACHE.get(key)
        if idx is None:
            idx = _CACHE[key] = build_index(files, fields, ngram, min_ngram)
        return idx


# ------------------------------------------------------------------------------ matching documents


@dataclass
class Hits:
    """Every matching n-gram occurrence of a batch: its document, reference n-gram, size and,
    when asked for, its words."""

    doc: np.ndarray
    ref: np.ndarray
    size: np.ndarray
    words: list[str] | None = None


def _match_words(word_hash: np.ndarray, doc: np.ndarray, index: ReferenceIndex, text_of=None, carried: int = 0):
    """Hits among the n-grams of the words ``word_hash`` (of the documents ``doc``); those that lie
    wholly inside the first ``carried`` words (carried over from the previous piece of a long
    document, and matched with it) are left out. ``text_of(i, k)``: words i to i + k - 1, for the
    report."""
    docs, refs, sizes, texts = [], [], [], []
    for k, starts, h in gram_hashes(word_hash, doc, index.sizes):
        if carried:
            new = starts + k > carried
            starts, h = starts[new], h[new]
        found = index.find(h)
        hit = np.flatnonzero(found >= 0)
        if not len(hit):
            continue
        docs.append(doc[starts[hit]])
        refs.append(found[hit])
        sizes.append(np.full(len(hit), k, np.int32))
        if text_of is not None:
            texts += [" ".join(text_of(a, k)) for a in starts[hit].tolist()]
    return docs, refs, sizes, texts


def match(text, index: ReferenceIndex, want_text: bool = False) -> Hits:
    """The reference n-grams found in each document of ``text`` (see :class:`Hits`).

    A slice of whole documents of about 4 MB at a time; a longer document piece by piece, cut after
    a space or newline before an ASCII character (where the tokenizer works the same on both sides),
    each piece preceded by the last (longest n - 1) words of the one before, so that n-grams across
    the cut are found, once."""
    text = pieces.as_string(text)
    docs, refs, sizes, texts = [], [], [], []
    keep = max(index.sizes) - 1

    def add(result):
        d, r, s, t = result
        docs.extend(d)
        refs.extend(r)
        sizes.extend(s)
        texts.extend(t)

    for entry in pieces.plan(text, pieces.SLICE_BYTES, b" \n", ascii_next=True):
        if entry[0] == "docs":
            _, a, b = entry
            w = words(text.slice(a, b - a))
            add(_match_words(w.hashes(), w.doc + a, index, w.text if want_text else None))
            continue
        _, dno, bounds = entry
        carry_hash, carry_text = np.zeros(0, np.uint64), []
        for a, b in zip(bounds[:-1], bounds[1:]):
            w = words(pieces.piece(text, a, b))
            k = len(carry_hash)
            wh = np.concatenate([carry_hash, w.hashes()])
            text_of = None
            if want_text:
                def text_of(i, n, w=w, k=k, carry_text=carry_text):
                    return [carry_text[j] if j < k else w.text(j - k, 1)[0] for j in range(i, i + n)]
            add(_match_words(wh, np.full(len(wh), dno, np.int64), index, text_of, carried=k))
            n_keep = min(keep, len(wh))
            carry_hash = wh[len(wh) - n_keep:].copy()
            if want_text:
                carry_text = [text_of(j, 1)[0] for j in range(len(wh) - n_keep, len(wh))]
            del w, wh
    cat = (lambda xs, dt: np.concatenate(xs) if xs else np.zeros(0, dt))
    return Hits(cat(docs, np.int64), cat(refs, np.int64), cat(sizes, np.int32), texts if want_text else None)


def per_document(hits: Hits, n_docs: int, index: ReferenceIndex) -> tuple[np.ndarray, list]:
    """(distinct reference n-grams per document, sorted benchmark indices per document or None)."""
    matches = np.zeros(n_docs, np.int32)
    benches: list = [None] * n_docs
    if not len(hits.doc):
        return matches, benches
    width = np.int64(len(index.hashes) + 1)
    pair = np.unique(hits.doc * width + hits.ref)  # distinct (document, reference n-gram)
    pdoc, pref = pair // width, pair % width
    matches += np.bincount(pdoc, minlength=n_docs).astype(np.int32)
    rep, bench = index.benchmarks_of(pref)
    nb = np.int64(len(index.names))
    db = np.unique(pdoc[rep] * nb + bench)  # distinct (document, benchmark), sorted
    for d, b in zip((db // nb).tolist(), (db % nb).tolist()):
        if benches[d] is None:
            benches[d] = [b]
        else:
            benches[d].append(b)
    return matches, benches


# ------------------------------------------------------------------------------ the stage


@register
@dataclass(kw_only=True)
class Decontaminate(Filter):
    """Drop (or flag) documents that share word n-grams (13 by default) with evaluation sets."""

    stage = "decontaminate"
    reason = "contaminated"
    limits: ClassVar[dict] = {"ngram": (1, _MAX_NGRAM), "min_ngram": (1, _MAX_NGRAM), "min_matches": (1, None)}
    references: list[str] | str
    reference_fields: list[str] = field(default_factory=lambda: ["text"])
    ngram: int = 13
    min_ngram: int | None = None
    min_matches: int = 1
    add_scores: bool = True

    def __post_init__(self):
        if isinstance(self.references, str):
            self.references = [self.references]
        if not self.references:
            raise ValueError("decontaminate: references is empty: give the evaluation files (jsonl or parquet, globs allowed)")
        if not self.reference_fields or not all(isinstance(f, str) and f for f in self.reference_fields):
            raise ValueError("decontaminate: reference_fields must be a non-empty list of field names, "
                             f"got {self.reference_fields!r}")
        if not 1 <= self.ngram <= _MAX_NGRAM:
            raise ValueError(f"decontaminate: ngram must be between 1 and {_MAX_NGRAM}, got {self.ngram}")
        if self.min_ngram is not None and not 1 <= self.min_ngram <= self.ngram:
            raise ValueError(f"decontaminate: min_ngram must be between 1 and ngram ({self.ngram}), got {self.min_ngram}")
        if self.min_matches < 1:
            raise ValueError(f"decontaminate: min_matches must be >= 1, got {self.min_matches}")
        self._files = expand_references(list(self.references))  # fails at recipe load, not on a worker
        self._names = reference_name(self._files)

    def setup(self):
        self._index = cached_index(self._files, list(self.reference_fields), self.ngram, self.min_ngram)

    @property
    def index(self) -> ReferenceIndex:
        if getattr(self, "_index", None) is None:
            self.setup()
        return self._index

    def score(self, batch):
        index = self.index
        hits = match(batch.column(S.TEXT), index)
        matches, benches = per_document(hits, batch.num_rows, index)
        names = [None if b is None else ",".join(index.names[i] for i in b) for b in benches]
        flagged = matches >= self.min_matches
        if flagged.any():  # documents per benchmark, in the run's info line (diagnostics, not the ledger)
            from apache_beam.metrics import Metrics

            per = np.bincount([i for b, f in zip(benches, flagged) if f for i in b], minlength=len(index.names))
            for i in np.flatnonzero(per):
                Metrics.counter("curate.info", f"{self.stage}_{index.names[i]}").inc(int(per[i]))
        return {"decontaminate_matches": pa.array(matches, type=pa.int32()),
                "decontaminate_benchmarks": pa.array(names, type=pa.string())}

    def filter(self, batch, scores):
        return scores["decontaminate_matches"].to_numpy(zero_copy_only=False) < self.min_matches

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_index", None)
        return state


# ------------------------------------------------------------------------------ the report


def report(inputs: list[str], references: list[str], output: str, reference_fields: list[str] | None = None,
           ngram: int = 13, min_ngram: int | None = None, text_key: str = "text", id_key: str = "id",
           max_examples: int = 5, stream=None) -> dict:
    """Which benchmark leaked into which documents: scan ``inputs`` (any input curate reads, one
    record batch at a time) against the references and write

    * ``OUTPUT/leaks.jsonl``: one row per (document, benchmark): ``id``, ``file``, ``benchmark``,
      ``matches`` (distinct n-grams of that benchmark in the document), ``ngrams`` (up to
      ``max_examples`` of them, as normalized words), ``records`` (the benchmark's records they come
      from: 0-based record numbers, jsonl line - 1, at most 20);
    * ``OUTPUT/summary.json``: per benchmark the documents it leaked into, its distinct n-grams
      found, and how many of its records leaked (of how many); documents read and contaminated,
      reader errors.

    Returns the summary. Input records the readers refuse are counted under ``skipped``."""
    import json

    from curate.core.safety import begin_output, check_output, finish_output
    from curate.io.readers import InputSpec, list_files, read_in_process

    rule = Decontaminate(references=list(references), reference_fields=list(reference_fields or ["text"]),
                         ngram=ngram, min_ngram=min_ngram, mode="annotate")
    check_output(output, list(inputs) + list(rule._files))
    index = rule.index
    spec = InputSpec(path=list(inputs), text_key=text_key, id_key=id_key, unique_ids=False)
    files = list_files(spec.path)
    os.makedirs(output, exist_ok=True)
    begin_output(output, "decontaminate-report")
    nb = len(index.names)
    docs_per = np.zeros(nb, np.int64)
    grams_per: list[set] = [set() for _ in range(nb)]
    recs_per: list[set] = [set() for _ in range(nb)]
    examples: list[list] = [[] for _ in range(nb)]
    n_docs = n_bad = 0
    skipped: dict[str, int] = {}
    contaminated = 0
    with open(os.path.join(output, "leaks.jsonl"), "w", encoding="utf-8") as out:
        for path, item in read_in_process(files, spec, skipped):
            n_docs += item.num_rows
            hits = match(item.column(S.TEXT), index, want_text=True)
            if not len(hits.doc):
                continue
            contaminated += len(np.unique(hits.doc))
            ids = item.column(S.ID)
            rep, bench = index.benchmarks_of(hits.ref)
            rows: dict[tuple[int, int], dict] = {}
            for h, b in zip(rep.tolist(), bench.tolist()):
                d, ref = int(hits.doc[h]), int(hits.ref[h])
                row = rows.get((d, b))
                if row is None:
                    row = rows[(d, b)] = {"id": ids[d].as_py(), "file": path, "benchmark": index.names[b],
                                          "refs": set(), "ngrams": [], "records": set()}
                if ref not in row["refs"]:
                    row["refs"].add(ref)
                    if len(row["ngrams"]) < max_examples:
                        row["ngrams"].append(hits.words[h])
                grams_per[b].add(ref)
                a, z = index.ptr[ref], index.ptr[ref + 1]
                recs = index.owner_rec[a:z][index.owner_bench[a:z] == b].tolist()
                recs_per[b].update(recs)
                if len(row["records"]) < 20:
                    row["records"].update(recs[: 20 - len(row["records"])])
            for (d, b), row in sorted(rows.items()):
                docs_per[b] += 1
                if len(examples[b]) < 3:
                    examples[b].append({"id": row["id"], "ngram": row["ngrams"][0]})
                out.write(json.dumps({"id": row["id"], "file": row["file"], "benchmark": row["benchmark"],
                                      "matches": len(row["refs"]), "ngrams": row["ngrams"],
                                      "records": sorted(row["records"])}, ensure_ascii=False) + "\n")
    summary = {
        "documents": n_docs, "contaminated_documents": contaminated, "skipped": skipped,
        "ngram": ngram, "min_ngram": min_ngram, "reference_fields": list(rule.reference_fields),
        "reference_ngrams": int(len(index.hashes)),
        "benchmarks": {index.names[b]: {"file": index.files[b], "documents": int(docs_per[b]),
                                        "ngrams": len(grams_per[b]), "records_leaked": len(recs_per[b]),
                                        "records": int(index.records[b]), "examples": examples[b]}
                       for b in range(nb)},
    }
    with open(os.path.join(output, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, ensure_ascii=False)
    finish_output(output)
    return summary


def print_report(summary: dict, output: str, file=None) -> None:
    import sys

    file = file or sys.stdout
    p = lambda *a: print(*a, file=file)  # noqa: E731
    skipped = sum(summary["skipped"].values())
    lo, n = summary.get("min_ngram"), summary["ngram"]
    gram = f"{n}-gram" if not lo or lo >= n else f"{n}-gram (or a whole reference text of {lo} to {n - 1} words)"
    p(f"decontaminate-report: {summary['documents']:,} documents read"
      + (f" ({skipped:,} records skipped: {', '.join(sorted(summary['skipped']))})" if skipped else "")
      + f", {summary['contaminated_documents']:,} share a {gram} with a benchmark "
      f"({summary['reference_ngrams']:,} reference n-grams)")
    rows = sorted(summary["benchmarks"].items(), key=lambda kv: (-kv[1]["documents"], kv[0]))
    w = max([len("benchmark")] + [len(k) for k, _ in rows])
    p(f"{'benchmark':<{w}}  {'documents':>9}  {'n-grams':>8}  {'records leaked':>16}  example")
    for name, b in rows:
        ex = b["examples"][0] if b["examples"] else None
        example = f"{ex['id']}: \"{ex['ngram']}\"" if ex else ""
        leaked = f"{b['records_leaked']:,}/{b['records']:,}"
        p(f"{name:<{w}}  {b['documents']:>9,}  {b['ngrams']:>8,}  {leaked:>16}  {example[:120]}")
    p(f"wrote {output}/leaks.jsonl (one row per document and benchmark, with the n-grams) and {output}/summary.json")
