"""The one document schema that flows between stages.

Every stage takes and returns ``pyarrow.RecordBatch`` objects with at least these columns:

=========  ========  ============================================================
column     type      meaning
=========  ========  ============================================================
``id``     string    stable, unique document id (from the input or derived)
``text``   string    the document text (never null once past the reader)
``source`` string    name of the dataset/domain the document came from
``url``    string    original URL when known (nullable)
=========  ========  ============================================================

Any other input field is carried through unchanged as a passthrough metadata column;
scorers append their own columns (``lang``, ``lang_score``, ...).

Each batch carries its *batch key* in the schema metadata (``curate.batch``): a stable
name derived from the input file and record position. Writers name output files after
it, so re-running a recipe reproduces the same file names and contents.
"""
from __future__ import annotations

import os
import unicodedata

import numpy as np
import pyarrow as pa
import xxhash


def use_returning_allocator() -> str:
    """Arrow's buffers from jemalloc, which hands freed memory back to the system within a second;
    pyarrow's Linux default (mimalloc) keeps it, so a worker that once held a large batch stays that
    large, and a huge document's transient copies add up in the peak (a 100 MB document through
    line_dedup: 5.2x its size with mimalloc, 4.1x with jemalloc; bench/bench_big_doc.py).

    ``curate/__init__`` sets ``ARROW_DEFAULT_MEMORY_POOL=jemalloc`` (unless the user set it), which
    Arrow's C++ code reads when it first allocates and Beam's worker processes inherit. When pyarrow
    was loaded before curate, only pyarrow's own default can still be switched here (Arrow's C++
    internals keep mimalloc in this process). Returns the backend of pyarrow's default pool."""
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL") == "jemalloc" and pa.default_memory_pool().backend_name != "jemalloc":
        try:
            pa.set_memory_pool(pa.jemalloc_memory_pool())
        except (NotImplementedError, AttributeError):  # a pyarrow built without jemalloc
            pass
    return pa.default_memory_pool().backend_name


use_returning_allocator()

ID, TEXT, SOURCE, URL = "id", "text", "source", "url"
CORE_COLUMNS = (ID, TEXT, SOURCE, URL)
BATCH_KEY = b"curate.batch"

ERROR_SCHEMA = pa.schema(
    [
        ("stage", pa.string()),
        ("file", pa.string()),
        ("location", pa.string()),
        ("id", pa.string()),
        ("reason", pa.string()),
        ("n_records", pa.int64()),
        ("snippet", pa.string()),
    ]
)


def batch_key(batch: pa.RecordBatch) -> str:
    md = batch.schema.metadata or {}
    return md.get(BATCH_KEY, b"unkeyed").decode()


FILE_KEY = b"curate.file"


def source_file(batch: pa.RecordBatch) -> str | None:
    """The input file a batch was read from (set by the readers), for error records."""
    md = batch.schema.metadata or {}
    v = md.get(FILE_KEY)
    return v.decode() if v is not None else None


def with_file(batch: pa.RecordBatch, path: str) -> pa.RecordBatch:
    md = dict(batch.schema.metadata or {})
    md[FILE_KEY] = path.encode()
    return batch.replace_schema_metadata(md)


def with_key(batch: pa.RecordBatch, key: str) -> pa.RecordBatch:
    md = dict(batch.schema.metadata or {})
    md[BATCH_KEY] = key.encode()
    return batch.replace_schema_metadata(md)


def keep_rows(batch: pa.RecordBatch, mask: np.ndarray) -> pa.RecordBatch:
    """Rows of ``batch`` where ``mask`` is true, schema metadata (batch key) preserved."""
    if mask.all():
        return batch
    out = batch.filter(pa.array(mask, type=pa.bool_()))
    return out.replace_schema_metadata(batch.schema.metadata)


def set_column(batch: pa.RecordBatch, name: str, values) -> pa.RecordBatch:
    """Add or replace column ``name``; keeps the batch key."""
    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
    arr = flat(arr)
    idx = batch.schema.get_field_index(name)
    if idx >= 0:
        out = batch.set_column(idx, name, arr)
    else:
        out = batch.append_column(name, arr)
    return out.replace_schema_metadata(batch.schema.metadata)


def flat(arr):
    """One Arrow array for an Array or ChunkedArray, copying only when there are several chunks
    (``ChunkedArray.combine_chunks`` copies even a single chunk: 1x a huge document, for nothing)."""
    if not isinstance(arr, pa.ChunkedArray):
        return arr
    if arr.num_chunks == 1:
        return arr.chunk(0)
    if arr.num_chunks == 0:
        return pa.array([], type=arr.type)
    return arr.combine_chunks()


def string_offsets(arr: pa.Array):
    """(offsets, data buffer) of a string/large_string array, for zero-copy per-value access."""
    if pa.types.is_large_string(arr.type):
        off_dtype = np.int64
    else:
        off_dtype = np.int32
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=off_dtype)[arr.offset : arr.offset + len(arr) + 1]
    data = bufs[2] if bufs[2] is not None else pa.py_buffer(b"")
    return offsets, memoryview(data)


def string_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets as int64 into ``data``, the whole data buffer as uint8) of a string array, zero-copy."""
    bufs = arr.buffers()
    off = np.frombuffer(bufs[1], dtype=np.int64 if pa.types.is_large_string(arr.type) else np.int32)
    off = off[arr.offset: arr.offset + len(arr) + 1].astype(np.int64)
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    return off, data


def strings_like(like: pa.Array, lengths: np.ndarray, data: np.ndarray) -> pa.Array:
    """A string array of ``like``'s type and nulls from each value's byte length and the values' bytes
    one after the other (the kernels that rewrite text build their output this way: one buffer)."""
    large = pa.types.is_large_string(like.type)
    off = np.zeros(len(like) + 1, np.int64)
    np.cumsum(lengths, out=off[1:])
    if not large and off[-1] >= 2**31:
        raise ValueError("a batch's text grew past 2 GB")
    validity = pa.array(np.asarray(like.is_valid())).buffers()[1] if like.null_count else None
    return pa.Array.from_buffers(like.type, len(like), [validity, pa.py_buffer(off.astype(np.int64 if large else np.int32)),
                                                        pa.py_buffer(data)], null_count=like.null_count)


_FOLD_BLOCK = 1 << 22


def fold_whitespace(arr) -> pa.Array:
    """Every run of ASCII whitespace (``[\\t\\n\\f\\r ]``, RE2's ``\\s``) becomes one space.

    The value of ``replace_substring_regex(arr, r"\\s+", " ")``, computed on the flat UTF-8 buffer
    with numpy (about 4x faster than the regex; whitespace bytes never occur inside a multi-byte
    character, so the buffer can be scanned byte-wise). Memory: the output, plus a few MB.
    """
    arr = flat(arr)
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        raise TypeError(f"fold_whitespace needs strings, got {arr.type}")
    n = len(arr)
    if n == 0:
        return arr
    off, data = string_buffers(arr)
    data = data[off[0]: off[-1]]
    off -= off[0]
    starts = off[:-1]
    out = np.empty(len(data), np.uint8)
    removed = np.zeros(n, np.int64)
    w, prev_ws, changed = 0, False, False
    # in blocks, so that the temporaries stay a few MB whatever the size of a document
    for b0 in range(0, len(data), _FOLD_BLOCK):
        blk = data[b0: b0 + _FOLD_BLOCK]
        ws = (blk == 32) | ((blk >= 9) & (blk <= 13) & (blk != 11))
        # a whitespace byte that follows one in the same string goes; the first of each run stays
        repeat = np.empty_like(ws)
        repeat[0] = ws[0] and prev_ws
        np.logical_and(ws[1:], ws[:-1], out=repeat[1:])
        lo, hi = np.searchsorted(starts, [b0, b0 + len(blk)])
        repeat[starts[lo:hi] - b0] = False
        gone = np.flatnonzero(repeat)
        if len(gone):
            removed += np.bincount(np.searchsorted(off, gone + b0, "right") - 1, minlength=n)[:n]
        changed = changed or bool(len(gone)) or bool((blk[ws] != 32).any())
        kept = np.where(ws, np.uint8(32), blk)
        if len(gone):
            kept = kept[~repeat]
        out[w: w + len(kept)] = kept
        w += len(kept)
        prev_ws = bool(ws[-1])
    if not changed:
        return arr
    return strings_like(arr, np.diff(off) - removed, out[:w])


_PIECE = 1 << 20


def _nfkc_lines(v: str) -> str:
    """NFKC of ``v``, line by line, normalizing only the lines that need it (a newline is a starter
    that nothing composes with, so lines normalize independently; most lines of a document that
    needs normalizing are already normal, and the quick check is far cheaper than normalizing)."""
    return "\n".join(line if unicodedata.is_normalized("NFKC", line) else unicodedata.normalize("NFKC", line)
                     for line in v.split("\n"))


class _Out:
    """A growing byte buffer (numpy), written at the end."""

    def __init__(self, capacity: int):
        self.buf = np.empty(max(capacity, 1 << 16), np.uint8)
        self.n = 0

    def write(self, data) -> None:
        data = np.frombuffer(data, np.uint8) if not isinstance(data, np.ndarray) else data
        end = self.n + len(data)
        if end > len(self.buf):
            grown = np.empty(max(end, int(len(self.buf) * 1.25)), np.uint8)
            grown[: self.n] = self.buf[: self.n]
            self.buf = grown
        self.buf[self.n: end] = data
        self.n = end


def _nfkc_pieces(mv: memoryview):
    """The NFKC of a huge UTF-8 value as UTF-8 pieces: each piece ends just before a newline and is
    normalized line by line, so no full-size Python string is ever built."""
    start, size = 0, len(mv)
    while start < size:
        end = start + _PIECE
        while end < size:  # extend to the next newline
            i = bytes(mv[end: end + 65536]).find(b"\n")
            if i >= 0:
                end += i
                break
            end += 65536
        end = min(end, size)
        yield _nfkc_lines(str(mv[start:end], "utf-8")).encode("utf-8")
        start = end


def nfkc(text) -> pa.Array:
    """Unicode NFKC of every value (Python's ``unicodedata``; Arrow 25's ``utf8_normalize`` composes
    nothing, its "NFKC" is in fact NFKD), normalizing only the values that need it.

    Pure-ASCII values are already NFKC (found vectorized); of the others, those Python's quick check
    finds normalized (most real text) are left as they are, so the per-value Python work is one
    C-speed check on the non-ASCII values only. The result is written once into one buffer (the
    unchanged runs of values copied as byte ranges): 1x the input's size, whatever the sizes of its
    values; values over 1 MB are normalized piece by piece.
    """
    import pyarrow.compute as pc

    text = flat(text)
    todo = np.flatnonzero(~np.asarray(pc.fill_null(pc.string_is_ascii(text), True)))
    if not len(todo):
        return text
    off, data = string_buffers(text)
    mv = memoryview(data)
    lengths = np.diff(off)
    out = _Out(int(off[-1] - off[0]) + (1 << 16))
    done, changed = 0, False  # rows before `done` are in `out`
    for i in todo.tolist():
        a, b = int(off[i]), int(off[i + 1])
        if b - a > _PIECE:
            pieces = _nfkc_pieces(mv[a:b])
        else:
            v = str(mv[a:b], "utf-8")
            if unicodedata.is_normalized("NFKC", v):
                continue
            pieces = (_nfkc_lines(v).encode("utf-8"),)
        out.write(data[int(off[done]): a])
        w0 = out.n
        for piece in pieces:
            out.write(piece)
        lengths[i] = out.n - w0
        done, changed = i + 1, True
    if not changed:
        return text
    out.write(data[int(off[done]): int(off[-1])])
    return strings_like(text, lengths, out.buf[: out.n])


# ------------------------------------------------------------------------------------------ hashing
#
# ``hash_strings`` / ``hash_strings128`` are XXH3 (64 / 128 bits) of each string's UTF-8 bytes, the
# values of ``xxhash.xxh3_64_intdigest`` / ``xxh3_128_digest`` (as before, so ids, samples and mixes
# do not change): a specified, platform-independent hash, stable across runs, processes, machines
# and versions. Short strings (ids, keys, words, short lines: most calls) are hashed by a numpy
# transcription of XXH3's short-input paths, vectorized over the Arrow offsets and data buffers, no
# Python object per string; longer ones by xxhash's C code, one call per string (see
# ``_VECTOR_MAX_64``). Tests compare the numpy paths with xxhash on every length up to 240 and beyond.

_M64 = (1 << 64) - 1
_P32_2 = 0x85EBCA77
_P64_1, _P64_2, _P64_3 = 0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9
_P64_4 = 0x85EBCA77C2B2AE63
_PMX1, _PMX2 = 0x165667919E3779F9, 0x9FB21C651E98DF25
_SECRET = bytes.fromhex(
    "b8fe6c3923a44bbe7c01812cf721ad1cded46de9839097db7240a4a4b7b3671fcb79e64eccc0e578825ad07dccff7221"
    "b8084674f743248ee03590e6813a264c3c2852bb91c300cb88d0658b1b532ea371644897a20df94e3819ef46a9deacd8"
    "a8fa763fe39c343ff9dcbbc7c70b4f1d8a51e04bcdb45931c89f7ec9d9787364eac5ac8334d3ebc3c581a0fffa1363eb"
    "170ddd51b7f0da49d3165526 29d4689e2b16be587d47a1fc8ff8b8d17ad031ce45cb3a8f95160428afd7fbcabb4b407e".replace(" ", "")
)
_SHORT = 240  # XXH3's short-input limit (its paths up to here are transcribed below)
# Strings up to these lengths are hashed by numpy, longer ones by the C code (one call each, about
# 0.2 us per string). numpy's cost per string grows with the length: alone, strings of over ~110
# bytes (64 bits) or ~70 bytes (128 bits) would be faster in C, but on real mixed lengths (URLs of
# 50 to 130 bytes) numpy up to 240 bytes is faster than any split (bench/bench_hash.py).
_VECTOR_MAX_64 = 240
_VECTOR_MAX_128 = 240
_BLOCK = 1 << 16  # strings hashed together (bounds the numpy temporaries, keeps them in cache)


def _s64(off: int) -> int:
    return int.from_bytes(_SECRET[off : off + 8], "little")


def _s32(off: int) -> int:
    return int.from_bytes(_SECRET[off : off + 4], "little")


def _u(x: int) -> np.uint64:
    return np.uint64(x & _M64)


class _Reader:
    """Unaligned little-endian 32/64-bit reads at byte positions of one data buffer (zero-copy)."""

    def __init__(self, data: np.ndarray):
        self.u8 = data
        n = len(data)
        self.u32 = np.ndarray((max(n - 3, 0),), dtype="<u4", buffer=data, offset=0, strides=(1,)) if n >= 4 else None
        self.u64 = np.ndarray((max(n - 7, 0),), dtype="<u8", buffer=data, offset=0, strides=(1,)) if n >= 8 else None

    def r64(self, pos: np.ndarray) -> np.ndarray:
        return self.u64[pos].astype(np.uint64, copy=False)

    def r32(self, pos: np.ndarray) -> np.ndarray:
        return self.u32[pos].astype(np.uint64)


def _mul128(a: np.ndarray, b) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) 64-bit halves of the 128-bit products ``a * b`` (unsigned)."""
    m32 = np.uint64(0xFFFFFFFF)
    s32 = np.uint64(32)
    low = a * b
    a_lo, a_hi = a & m32, a >> s32
    b_lo, b_hi = b & m32, b >> s32
    lo_lo = a_lo * b_lo
    hi_lo = a_hi * b_lo
    lo_lo >>= s32
    lo_lo += hi_lo & m32
    a_lo *= b_hi
    lo_lo += a_lo  # the middle column, with its carries
    hi_lo >>= s32
    hi_lo += lo_lo >> s32
    a_hi *= b_hi
    hi_lo += a_hi
    return low, hi_lo


def _fold(a: np.ndarray, b) -> np.ndarray:
    low, high = _mul128(a, b)
    low ^= high
    return low


def _avalanche(h: np.ndarray) -> np.ndarray:  # XXH3_avalanche
    h = h ^ (h >> np.uint64(37))
    h = h * _u(_PMX1)
    return h ^ (h >> np.uint64(32))


def _avalanche64(h: np.ndarray) -> np.ndarray:  # XXH64_avalanche
    h = h ^ (h >> np.uint64(33))
    h = h * _u(_P64_2)
    h = h ^ (h >> np.uint64(29))
    h = h * _u(_P64_3)
    return h ^ (h >> np.uint64(32))


def _mix16(rd: _Reader, pos: np.ndarray, soff: int, seed: int) -> np.ndarray:  # XXH3_mix16B
    return _fold(rd.r64(pos) ^ _u(_s64(soff) + seed), rd.r64(pos + 8) ^ _u(_s64(soff + 8) - seed))


def _rotl64(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


def _bytes3(rd: _Reader, s: np.ndarray, n: np.ndarray) -> np.ndarray:
    c1 = rd.u8[s].astype(np.uint64)
    c2 = rd.u8[s + (n >> 1)].astype(np.uint64)
    c3 = rd.u8[s + n - 1].astype(np.uint64)
    return (c1 << np.uint64(16)) | (c2 << np.uint64(24)) | c3 | (n.astype(np.uint64) << np.uint64(8))


def _seed32(seed: int) -> int:
    return seed ^ (int.from_bytes((seed & 0xFFFFFFFF).to_bytes(4, "little"), "big") << 32)


def _xxh3_64_short(rd: _Reader, s: np.ndarray, n: np.ndarray, seed: int) -> np.ndarray:
    """XXH3-64 of the strings ``data[s : s + n]``, all ``n <= 240``."""
    out = np.empty(len(s), dtype=np.uint64)
    k = np.flatnonzero(n == 0)
    if len(k):
        out[k] = _avalanche64(np.full(len(k), _u(seed ^ _s64(56) ^ _s64(64))))
    k = np.flatnonzero((n >= 1) & (n <= 3))
    if len(k):
        keyed = _bytes3(rd, s[k], n[k]) ^ _u((_s32(0) ^ _s32(4)) + seed)
        out[k] = _avalanche64(keyed)
    k = np.flatnonzero((n >= 4) & (n <= 8))
    if len(k):
        sk, nk = s[k], n[k]
        bitflip = _u((_s64(8) ^ _s64(16)) - _seed32(seed))
        h = (rd.r32(sk + nk - 4) + (rd.r32(sk) << np.uint64(32))) ^ bitflip
        h = h ^ _rotl64(h, 49) ^ _rotl64(h, 24)
        h = h * _u(_PMX2)
        h = h ^ ((h >> np.uint64(35)) + nk.astype(np.uint64))
        h = h * _u(_PMX2)
        out[k] = h ^ (h >> np.uint64(28))
    k = np.flatnonzero((n >= 9) & (n <= 16))
    if len(k):
        sk, nk = s[k], n[k]
        lo = rd.r64(sk) ^ _u((_s64(24) ^ _s64(32)) + seed)
        hi = rd.r64(sk + nk - 8) ^ _u((_s64(40) ^ _s64(48)) - seed)
        out[k] = _avalanche(nk.astype(np.uint64) + lo.byteswap() + hi + _fold(lo, hi))
    k = np.flatnonzero((n >= 17) & (n <= 128))
    if len(k):
        sk, nk = s[k], n[k]
        acc = nk.astype(np.uint64) * _u(_P64_1)
        acc += _mix16(rd, sk, 0, seed) + _mix16(rd, sk + nk - 16, 16, seed)
        for lim, a, b in ((32, 16, 32), (64, 32, 48), (96, 48, 64)):
            m = np.flatnonzero(nk > lim)
            if not len(m):
                break
            sm, nm = sk[m], nk[m]
            acc[m] += _mix16(rd, sm + a, 2 * a, seed) + _mix16(rd, sm + nm - b, 2 * a + 16, seed)
        out[k] = _avalanche(acc)
    k = np.flatnonzero(n > 128)
    if len(k):
        sk, nk = s[k], n[k]
        acc = nk.astype(np.uint64) * _u(_P64_1)
        for i in range(8):
            acc += _mix16(rd, sk + 16 * i, 16 * i, seed)
        acc = _avalanche(acc)
        acc_end = _mix16(rd, sk + nk - 16, 136 - 17, seed)
        for i in range(8, _SHORT // 16):
            m = np.flatnonzero(nk // 16 > i)
            if not len(m):
                break
            acc_end[m] += _mix16(rd, sk[m] + 16 * i, 16 * (i - 8) + 3, seed)
        out[k] = _avalanche(acc + acc_end)
    return out


def _mix32(rd: _Reader, lo, hi, p1, p2, soff: int, seed: int):  # XXH128_mix32B on (lo, hi) accumulators
    lo = (lo + _mix16(rd, p1, soff, seed)) ^ (rd.r64(p2) + rd.r64(p2 + 8))
    hi = (hi + _mix16(rd, p2, soff + 16, seed)) ^ (rd.r64(p1) + rd.r64(p1 + 8))
    return lo, hi


def _xxh3_128_short(rd: _Reader, s: np.ndarray, n: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(high, low) halves of XXH3-128 of the strings ``data[s : s + n]``, all ``n <= 240``."""
    high = np.empty(len(s), dtype=np.uint64)
    low = np.empty(len(s), dtype=np.uint64)
    k = np.flatnonzero(n == 0)
    if len(k):
        low[k] = _avalanche64(np.full(len(k), _u(seed ^ _s64(64) ^ _s64(72))))
        high[k] = _avalanche64(np.full(len(k), _u(seed ^ _s64(80) ^ _s64(88))))
    k = np.flatnonzero((n >= 1) & (n <= 3))
    if len(k):
        cl = _bytes3(rd, s[k], n[k])
        sw = cl.astype(np.uint32).byteswap().astype(np.uint64)
        ch = ((sw << np.uint64(13)) | (sw >> np.uint64(19))) & np.uint64(0xFFFFFFFF)
        low[k] = _avalanche64(cl ^ _u((_s32(0) ^ _s32(4)) + seed))
        high[k] = _avalanche64(ch ^ _u((_s32(8) ^ _s32(12)) - seed))
    k = np.flatnonzero((n >= 4) & (n <= 8))
    if len(k):
        sk, nk = s[k], n[k]
        keyed = (rd.r32(sk) + (rd.r32(sk + nk - 4) << np.uint64(32))) ^ _u((_s64(16) ^ _s64(24)) + _seed32(seed))
        ml, mh = _mul128(keyed, _u(_P64_1) + (nk.astype(np.uint64) << np.uint64(2)))
        mh += ml << np.uint64(1)
        ml ^= mh >> np.uint64(3)
        ml ^= ml >> np.uint64(35)
        ml *= _u(_PMX2)
        low[k] = ml ^ (ml >> np.uint64(28))
        high[k] = _avalanche(mh)
    k = np.flatnonzero((n >= 9) & (n <= 16))
    if len(k):
        sk, nk = s[k], n[k]
        in_lo, in_hi = rd.r64(sk), rd.r64(sk + nk - 8)
        ml, mh = _mul128(in_lo ^ in_hi ^ _u((_s64(32) ^ _s64(40)) - seed), _u(_P64_1))
        ml += (nk.astype(np.uint64) - np.uint64(1)) << np.uint64(54)
        in_hi ^= _u((_s64(48) ^ _s64(56)) + seed)
        mh += in_hi + (in_hi & np.uint64(0xFFFFFFFF)) * np.uint64(_P32_2 - 1)
        ml ^= mh.byteswap()
        hl, hh = _mul128(ml, _u(_P64_2))
        hh += mh * _u(_P64_2)
        low[k] = _avalanche(hl)
        high[k] = _avalanche(hh)
    k = np.flatnonzero(n >= 17)
    if len(k):
        sk, nk = s[k], n[k]
        n64 = nk.astype(np.uint64)
        lo = n64 * _u(_P64_1)
        hi = np.zeros(len(k), dtype=np.uint64)
        mid = nk <= 128
        m = np.flatnonzero(mid)
        if len(m):  # 17..128 bytes
            sm, nm = sk[m], nk[m]
            ml, mh = lo[m], hi[m]
            for lim, a, b in ((96, 48, 64), (64, 32, 48), (32, 16, 32)):
                j = np.flatnonzero(nm > lim)
                if len(j):
                    ml[j], mh[j] = _mix32(rd, ml[j], mh[j], sm[j] + a, sm[j] + nm[j] - b, 2 * a, seed)
            lo[m], hi[m] = _mix32(rd, ml, mh, sm, sm + nm - 16, 0, seed)
        m = np.flatnonzero(~mid)
        if len(m):  # 129..240 bytes
            sm, nm = sk[m], nk[m]
            ml, mh = lo[m], hi[m]
            for i in range(4):
                ml, mh = _mix32(rd, ml, mh, sm + 32 * i, sm + 32 * i + 16, 32 * i, seed)
            ml, mh = _avalanche(ml), _avalanche(mh)
            for i in range(4, _SHORT // 32):
                j = np.flatnonzero(nm // 32 > i)
                if not len(j):
                    break
                ml[j], mh[j] = _mix32(rd, ml[j], mh[j], sm[j] + 32 * i, sm[j] + 32 * i + 16, 3 + 32 * (i - 4), seed)
            lo[m], hi[m] = _mix32(rd, ml, mh, sm + nm - 16, sm + nm - 32, 136 - 17 - 16, -seed)
        low[k] = _avalanche(lo + hi)
        h = lo * _u(_P64_1) + hi * _u(_P64_4) + (n64 - _u(seed)) * _u(_P64_2)
        high[k] = np.uint64(0) - _avalanche(h)
    return high, low


def _string_parts(arr):
    """The Arrow arrays of ``arr`` (chunks of a ChunkedArray) as string/binary arrays with offsets."""
    chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
    out = []
    for c in chunks:
        t = c.type
        if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t)):
            c = c.cast(pa.large_binary() if pa.types.is_binary_view(t) or pa.types.is_fixed_size_binary(t) else pa.large_string())
        out.append(c)
    return out


def _spans(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(data buffer as uint8, start, length) of every value; nulls are empty."""
    large = pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type)
    bufs = arr.buffers()
    n = len(arr)
    offsets = np.frombuffer(bufs[1], dtype=np.int64 if large else np.int32)[arr.offset : arr.offset + n + 1] if n else np.zeros(1, np.int64)
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None and bufs[2].size else np.zeros(0, np.uint8)
    start = offsets[:-1].astype(np.int64)
    length = np.diff(offsets).astype(np.int64)
    if arr.null_count:
        length[~np.asarray(arr.is_valid())] = 0
    return data, start, length


def _check_seed(seed) -> int:
    seed = int(seed)
    if not 0 <= seed <= _M64:
        raise OverflowError(f"hash seed must be between 0 and 2**64 - 1, got {seed}")
    return seed


def hash_strings(arr: pa.Array, seed: int = 0) -> np.ndarray:
    """Stable 64-bit XXH3 hash of every string in ``arr`` (nulls hash as empty strings).

    The values of ``xxhash.xxh3_64_intdigest(value, seed)``, computed from the Arrow buffers without
    a Python object per string (see the notes above ``_xxh3_64_short``).
    """
    seed = _check_seed(seed)
    outs = [hash_spans(*_spans(part), seed) for part in _string_parts(arr)]
    return np.concatenate(outs) if len(outs) != 1 else outs[0]


def hash_strings128(arr: pa.Array, seed: int = 0) -> np.ndarray:
    """Stable 128-bit XXH3 hash of every string, as an (n, 2) uint64 array (high, low): the two halves
    of ``xxhash.xxh3_128_digest(value, seed)``. Nulls hash as empty strings."""
    seed = _check_seed(seed)
    outs = [hash_spans128(*_spans(part), seed) for part in _string_parts(arr)]
    return np.concatenate(outs) if len(outs) != 1 else outs[0]


def hash_spans(data: np.ndarray, start: np.ndarray, length: np.ndarray, seed: int = 0) -> np.ndarray:
    """64-bit XXH3 of the byte ranges ``data[start[i] : start[i] + length[i]]`` of a uint8 array."""
    seed = _check_seed(seed)
    start, length = np.asarray(start, dtype=np.int64), np.asarray(length, dtype=np.int64)
    out = np.empty(len(start), dtype=np.uint64)
    short = length <= min(_VECTOR_MAX_64, _SHORT)
    k = np.flatnonzero(short)
    if len(k):
        rd = _Reader(data)
        for a in range(0, len(k), _BLOCK):
            kk = k[a : a + _BLOCK]
            out[kk] = _xxh3_64_short(rd, start[kk], length[kk], seed)
    k = np.flatnonzero(~short)
    if len(k):
        mv, h = memoryview(data), xxhash.xxh3_64_intdigest
        out[k] = [h(mv[a : a + b], seed) for a, b in zip(start[k].tolist(), length[k].tolist())]
    return out


def hash_spans128(data: np.ndarray, start: np.ndarray, length: np.ndarray, seed: int = 0) -> np.ndarray:
    """128-bit XXH3 (n, 2: high, low) of the byte ranges ``data[start[i] : start[i] + length[i]]``."""
    seed = _check_seed(seed)
    start, length = np.asarray(start, dtype=np.int64), np.asarray(length, dtype=np.int64)
    out = np.empty((len(start), 2), dtype=np.uint64)
    short = length <= min(_VECTOR_MAX_128, _SHORT)
    k = np.flatnonzero(short)
    if len(k):
        rd = _Reader(data)
        for a in range(0, len(k), _BLOCK):
            kk = k[a : a + _BLOCK]
            out[kk, 0], out[kk, 1] = _xxh3_128_short(rd, start[kk], length[kk], seed)
    k = np.flatnonzero(~short)
    if len(k):
        mv, h = memoryview(data), xxhash.xxh3_128_digest
        raw = b"".join([h(mv[a : a + b], seed) for a, b in zip(start[k].tolist(), length[k].tolist())])
        out[k] = np.frombuffer(raw, dtype=">u8").reshape(len(k), 2)
    return out


def derive_ids(source: str, file: str, positions, texts: pa.Array) -> pa.Array:
    """Ids for documents that have none: a hash of source, file name, record position and content.

    Stable across re-runs and unique even for identical texts at different positions.
    """
    content = hash_strings(texts)
    base = f"{source}\0{file}"
    h = xxhash.xxh3_64_intdigest
    return pa.array([f"{h(f'{base}:{p}:{int(c)}'.encode()):016x}" for p, c in zip(positions, content)], type=pa.string())


def errors_batch(rows: list[dict]) -> pa.RecordBatch:
    """Error records (dicts with the ERROR_SCHEMA fields) as one batch."""
    cols = {f.name: [r.get(f.name) for r in rows] for f in ERROR_SCHEMA}
    cols["n_records"] = [1 if v is None else v for v in cols["n_records"]]
    cols["snippet"] = [None if v is None else v[:300] for v in cols["snippet"]]
    return pa.RecordBatch.from_pydict(cols, schema=ERROR_SCHEMA)


def blank_mask(text) -> np.ndarray:
    """True where a string is null, empty or whitespace only (no copy of the text is made)."""
    import pyarrow.compute as pc

    empty = pc.or_(pc.equal(pc.binary_length(text), 0), pc.utf8_is_space(text))
    return pc.fill_null(empty, True).to_numpy(zero_copy_only=False)
