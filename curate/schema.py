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

import numpy as np
import pyarrow as pa
import xxhash

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
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    idx = batch.schema.get_field_index(name)
    if idx >= 0:
        out = batch.set_column(idx, name, arr)
    else:
        out = batch.append_column(name, arr)
    return out.replace_schema_metadata(batch.schema.metadata)


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


def hash_strings(arr: pa.Array, seed: int = 0) -> np.ndarray:
    """Stable 64-bit xxh3 hash of every string in ``arr`` (nulls hash as empty strings).

    Hashes the raw UTF-8 bytes straight from the Arrow buffers: no Python string objects are built.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    offsets, data = string_offsets(arr)
    h = xxhash.xxh3_64_intdigest
    out = np.fromiter(
        (h(data[offsets[i] : offsets[i + 1]], seed) for i in range(len(arr))),
        dtype=np.uint64,
        count=len(arr),
    )
    return out


def hash_strings128(arr: pa.Array, seed: int = 0) -> np.ndarray:
    """Stable 128-bit xxh3 hash of every string, as an (n, 2) uint64 array (high, low)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    offsets, data = string_offsets(arr)
    h = xxhash.xxh3_128_digest
    n = len(arr)
    raw = b"".join(h(data[offsets[i] : offsets[i + 1]], seed) for i in range(n))
    return np.frombuffer(raw, dtype=">u8").reshape(n, 2).astype(np.uint64)


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
