"""Bounded memory for per-document work on very large texts: slices and pieces.

A per-batch rule that builds per-word or per-line arrays (or copies of the text) needs memory in
proportion to the text it works on at once. :func:`plan` divides a text array into *slices* of
consecutive whole documents of about ``size`` bytes together, and a document longer than that into
*pieces* of about ``size`` bytes, cut right after a byte of ``cut_after`` (a newline, or a space or
newline), so that the rule can work a slice or a piece at a time and add up, or join, the results.
Pieces share the batch's data buffer (no copy).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

#: Text worked on at once by the per-batch rules that use :func:`plan`.
SLICE_BYTES = 4 << 20


def offsets(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(int64 offsets, uint8 data) of a string / large_string array (no copy of the data)."""
    large = pa.types.is_large_string(text.type) or pa.types.is_large_binary(text.type)
    bufs = text.buffers()
    n = len(text)
    if n:
        off = np.frombuffer(bufs[1], dtype=np.int64 if large else np.int32)[text.offset : text.offset + n + 1]
    else:
        off = np.zeros(1, dtype=np.int64)
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None and bufs[2].size else np.zeros(0, np.uint8)
    return off.astype(np.int64), data


def plan(text: pa.Array, size: int = SLICE_BYTES, cut_after: bytes = b"\n", ascii_next: bool = False,
         piece_size: int | None = None) -> list[tuple]:
    """The slices of ``text``: ``("docs", a, b)`` (documents a to b-1, together at most ``size``
    bytes unless a is alone) or ``("pieces", d, bounds)`` (document d, longer than ``size``, cut
    into pieces of about ``piece_size`` bytes (default ``size``) at the byte offsets ``bounds``
    into the data buffer, each cut right after one of the bytes of ``cut_after`` and, with
    ``ascii_next``, before an ASCII character). A long document without a place to cut is a slice
    of its own. An empty array has one empty slice."""
    n = len(text)
    if n == 0:
        return [("docs", 0, 0)]
    size = max(1, int(size))
    off, data = offsets(text)
    length = np.diff(off)
    if text.null_count:
        length[~text.is_valid().to_numpy(zero_copy_only=False)] = 0
    cum = np.concatenate(([0], np.cumsum(length)))
    big = np.flatnonzero(length > size)
    after = np.zeros(256, dtype=bool)
    after[list(cut_after)] = True
    out, i = [], 0
    while i < n:
        if length[i] > size:
            bounds = cut_points(data, int(off[i]), int(off[i + 1]), piece_size or size, after, ascii_next)
            out.append(("pieces", i, bounds) if len(bounds) > 2 else ("docs", i, i + 1))
            i += 1
            continue
        j = max(int(np.searchsorted(cum, cum[i] + size, side="right")) - 1, i + 1)
        k = np.searchsorted(big, i)
        if k < len(big):
            j = min(j, int(big[k]))
        out.append(("docs", i, j))
        i = j
    return out


def cut_points(data: np.ndarray, start: int, end: int, size: int, after: np.ndarray, ascii_next: bool = False) -> list[int]:
    """Byte offsets ``[start, c1, ..., end]`` cutting ``data[start:end]`` into pieces of about
    ``size`` bytes (see :func:`plan`); ``[start, end]`` when there is no place to cut."""
    bounds = [start]
    t = start + size
    while t < end:
        q = _find_cut(data, t - 1, end - 1, after, ascii_next)
        if q < 0:
            break
        bounds.append(q + 1)
        t = q + 1 + size
    bounds.append(end)
    return bounds


def _find_cut(data: np.ndarray, a: int, b: int, after: np.ndarray, ascii_next: bool) -> int:
    """The first position q in [a, b) with ``after[data[q]]`` (and ``data[q + 1]`` ASCII), or -1."""
    step = 1 << 16
    while a < b:
        hi = min(b, a + step)
        ok = after[data[a:hi]]
        if ascii_next:
            ok &= data[a + 1 : hi + 1] < 0x80
        hit = np.flatnonzero(ok)
        if len(hit):
            return a + int(hit[0])
        a = hi
        step = min(step * 2, 1 << 24)
    return -1


def piece(text: pa.Array, a: int, b: int) -> pa.Array:
    """The bytes ``a:b`` of ``text``'s data buffer as a one-text array of the same type (no copy)."""
    large = pa.types.is_large_string(text.type) or pa.types.is_large_binary(text.type)
    bounds = np.array([a, b], dtype=np.int64 if large else np.int32)
    return pa.Array.from_buffers(text.type, 1, [None, pa.py_buffer(bounds), text.buffers()[2]])


def as_string(text) -> pa.Array:
    """``text`` as one string or large_string array."""
    if isinstance(text, pa.ChunkedArray):
        text = text.chunk(0) if text.num_chunks == 1 else text.combine_chunks()  # one chunk: no copy
    if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
        text = text.cast(pa.large_string())
    return text


_LIBC = None


def release_memory() -> None:
    """Hand freed memory back to the operating system between the phases of work on a very large
    text: glibc keeps freed blocks below its (adaptive, up to 32 MB) mmap threshold in the heap,
    where the next phase's numpy arrays of another size cannot always reuse them, and Arrow's pool
    keeps freed pages too. Best effort: a no-op where ``malloc_trim`` does not exist."""
    global _LIBC
    try:
        pa.default_memory_pool().release_unused()
    except Exception:  # noqa: BLE001 - an old pyarrow or another pool
        pass
    if _LIBC is None:
        try:
            import ctypes

            _LIBC = ctypes.CDLL("libc.so.6")
            _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)
