"""Megatron-style indexed datasets: a ``.bin`` of raw token ids and an ``.idx`` describing them.

The layout is the one Megatron-LM / Megatron-Core's ``IndexedDataset`` (``MMIDIDX`` version 1)
reads: header ``MMIDIDX\\0\\0``, version, dtype code, sequence count, document count, then the
int32 sequence lengths, int64 byte pointers and int64 document indices. Every packed training
sequence is written as one sequence and one document, so ``IndexedDataset(prefix)[i]`` is the
i-th training sequence. A ``.domains.npy`` sidecar holds each sequence's domain index (the
names are in the manifest); Megatron ignores it.

``write_indexed`` writes atomically (temporary names, then rename), so a re-run after a crash
never leaves a half-written shard under its final name. ``IndexedReader`` is our own
memory-mapped reader, used by the bundled trainer so that Megatron is not a dependency.
"""
from __future__ import annotations

import os
import struct
import uuid

import numpy as np

HEADER = b"MMIDIDX\x00\x00"
DTYPE_CODES = {np.dtype(np.uint8): 1, np.dtype(np.int8): 2, np.dtype(np.int16): 3, np.dtype(np.int32): 4,
               np.dtype(np.int64): 5, np.dtype(np.float64): 6, np.dtype(np.float32): 7, np.dtype(np.uint16): 8}
CODE_DTYPES = {v: k for k, v in DTYPE_CODES.items()}


def _replace_all(pairs: list[tuple[str, str]]) -> None:
    for tmp, final in pairs:
        os.replace(tmp, final)


def write_indexed(prefix: str, sequences: np.ndarray, domains: np.ndarray | None = None) -> None:
    """Write ``sequences`` (a 2-D array: n sequences x length) as ``prefix.bin`` / ``prefix.idx``."""
    sequences = np.ascontiguousarray(sequences)
    if sequences.ndim != 2:
        raise ValueError("sequences must be 2-D (n x sequence length)")
    dtype = sequences.dtype
    if dtype not in DTYPE_CODES:
        raise ValueError(f"unsupported token dtype {dtype}")
    n, length = sequences.shape
    os.makedirs(os.path.dirname(prefix) or ".", exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    pairs = []
    bin_tmp = f"{prefix}.bin.{tag}.tmp"
    with open(bin_tmp, "wb") as f:
        f.write(sequences.tobytes(order="C"))
    pairs.append((bin_tmp, prefix + ".bin"))
    idx_tmp = f"{prefix}.idx.{tag}.tmp"
    with open(idx_tmp, "wb") as f:
        f.write(HEADER)
        f.write(struct.pack("<Q", 1))
        f.write(struct.pack("<B", DTYPE_CODES[dtype]))
        f.write(struct.pack("<Q", n))
        f.write(struct.pack("<Q", n + 1))
        f.write(np.full(n, length, dtype=np.int32).tobytes())
        f.write((np.arange(n, dtype=np.int64) * (length * dtype.itemsize)).tobytes())
        f.write(np.arange(n + 1, dtype=np.int64).tobytes())
    pairs.append((idx_tmp, prefix + ".idx"))
    if domains is not None:
        dom_tmp = f"{prefix}.domains.{tag}.tmp.npy"
        np.save(dom_tmp, np.asarray(domains, dtype=np.int16))
        pairs.append((dom_tmp, prefix + ".domains.npy"))
    # the .idx last: a reader that finds the .idx finds a complete .bin
    _replace_all(sorted(pairs, key=lambda p: p[1].endswith(".idx")))


class IndexedReader:
    """Memory-mapped reader of a fixed-length indexed dataset written by ``write_indexed``."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        idx = prefix + ".idx"
        with open(idx, "rb") as f:
            if f.read(9) != HEADER:
                raise ValueError(f"{idx}: not a Megatron indexed dataset (bad header)")
            (version,) = struct.unpack("<Q", f.read(8))
            if version != 1:
                raise ValueError(f"{idx}: unsupported version {version}")
            (code,) = struct.unpack("<B", f.read(1))
            self.dtype = CODE_DTYPES[code]
            (self.n,) = struct.unpack("<Q", f.read(8))
            struct.unpack("<Q", f.read(8))
            lengths = np.frombuffer(f.read(4 * self.n), dtype=np.int32)
        if self.n and (lengths != lengths[0]).any():
            raise ValueError(f"{idx}: sequences of different lengths; the trainer expects packed fixed-length sequences")
        self.length = int(lengths[0]) if self.n else 0
        self.tokens = (np.memmap(prefix + ".bin", dtype=self.dtype, mode="r").reshape(self.n, self.length)
                       if self.n else np.zeros((0, 0), dtype=self.dtype))
        dom = prefix + ".domains.npy"
        self.domains = np.load(dom) if os.path.exists(dom) else np.zeros(self.n, dtype=np.int16)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        return self.tokens[i]
