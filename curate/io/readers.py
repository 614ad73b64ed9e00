"""Readers: jsonl(.gz/.zst), Parquet, Arrow IPC and WARC (HTML extracted to text).

Reading happens in three Beam steps so that nothing is listed at pipeline construction time
(gs:// inputs are only touched by workers) and no large file becomes one unit of work:

1. ``ExpandInput``: glob patterns -> (file index, path, size), sorted, at run time.
2. ``SplitFile``: a file -> shards. Parquet splits by row groups, Arrow IPC files by record
   batches, uncompressed jsonl by byte ranges; compressed text and WARC files are one shard each.
3. ``ReadShard``: a shard -> record batches in the document schema, plus error and drop records.

Every path goes through Beam's ``FileSystems`` (gs://, s3://, ...); local paths keep a plain
``open``. Compression (gzip, zstd, bzip2) is told from the file's first bytes, with the name as a
fallback: an object stored with ``Content-Encoding: gzip`` under a ``.jsonl`` name, or a ``.gz``
that was compressed twice (``FileSystems.create`` compresses a ``.gz`` path again unless told not
to), reads correctly, and a compressed file is never split into byte ranges.

A line/row that cannot be read becomes an error record that names the file and location; it is
counted in the ledger and never silently lost.

Fields other than text/id/url/source pass through with their input types. JSON strings stay
strings: Arrow's JSON reader would make ISO dates timestamps, so such fields are read again as
strings (``_parse_fast``). WARC: see ``_read_warc`` for which records are documents and the drop
reasons ``not_2xx``, ``not_html`` and ``no_extracted_text``.
"""
from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field
from typing import Iterator

import orjson
import pyarrow as pa

from curate import schema as S

FORMATS = ("jsonl", "parquet", "arrow", "warc")


@dataclass
class InputSpec:
    """Where documents come from and how to map their fields onto the schema."""

    path: list[str]
    format: str = "auto"
    text_key: str = "text"
    id_key: str = "id"
    url_key: str = "url"
    html_key: str | None = None
    source: str | None = None
    batch_size: int = 4096
    batch_bytes: int = 64 << 20
    split_bytes: int = 128 << 20
    unique_ids: bool = True
    extract: dict = field(default_factory=dict)
    limit: int | None = None  # read only the first N documents (files in sorted order, records in file order)


@dataclass(frozen=True)
class Shard:
    file_index: int
    path: str
    format: str
    index: int  # ordinal of the shard within its file
    start: int = 0  # byte offset, row group or record batch
    end: int = -1  # exclusive; -1: to the end of the file
    whole_file: bool = True
    problem: str | None = None  # set when the file could not even be split (corrupt footer ...)
    n_records: int = 1

    @property
    def key(self) -> str:
        return f"{self.file_index:05d}-{self.index:05d}"


def detect_format(path: str, fmt: str = "auto") -> str:
    if fmt != "auto":
        return fmt
    name = path.lower()
    for suffix in (".gz", ".zst", ".zstd", ".bz2"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".arrow", ".ipc", ".feather")):
        return "arrow"
    if name.endswith((".warc", ".arc")):
        return "warc"
    raise ValueError(f"{path}: cannot tell the format from the file name; set input.format to one of {FORMATS}")


def compression_of(path: str) -> str | None:
    """The compression a file's name says it has (``sniff_compression`` tells it from the content)."""
    name = path.lower()
    if name.endswith(".gz"):
        return "gzip"
    if name.endswith((".zst", ".zstd")):
        return "zstd"
    if name.endswith(".bz2"):
        return "bzip2"
    return None


def sniff_compression(head: bytes) -> str | None:
    """The compression of a stream from its first bytes (at least 10 for bzip2), or None.

    No JSON text, WARC, Parquet or Arrow file starts with these magic numbers, so content that
    does is compressed whatever its name says.
    """
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd"
    if head[:3] == b"BZh" and head[3:4] in (b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"8", b"9") \
            and head[4:10] in (b"1AY&SY", b"\x17rE8P\x90"):  # a block, or the end of an empty stream
        return "bzip2"
    return None


SNIFF_BYTES = 16


def is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def _emulator_without_credentials() -> None:
    """With ``STORAGE_EMULATOR_HOST`` set (the GCS emulator), talk to it without credentials.

    google-cloud-storage needs none for the emulator, but Beam's GCS filesystem first looks for
    Google default credentials with four retries and exponential backoff (about 30 s in every
    process, and every command and worker is one). Telling Beam's credential cache "none" up front
    makes it create the anonymous client it would end with anyway. Real GCS is not affected.
    """
    if not os.environ.get("STORAGE_EMULATOR_HOST"):
        return
    try:
        from apache_beam.internal.gcp import auth

        with auth._Credentials._credentials_lock:
            if not auth._Credentials._credentials_init:
                auth._Credentials._credentials = None
                auth._Credentials._credentials_init = True
    except Exception:  # noqa: BLE001 - no gcp extra, or Beam changed: the slow path still works
        pass


_emulator_without_credentials()


def set_filesystem_options(options) -> None:
    """Give Beam's FileSystems the pipeline options before the driver touches a remote path
    (``beam.Pipeline`` does the same, but only once it is built)."""
    from apache_beam.io.filesystems import FileSystems

    FileSystems.set_options(options)
    _emulator_without_credentials()


def exists(path: str) -> bool:
    if is_local(path):
        return os.path.exists(path.removeprefix("file://"))
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.exists(path)


def match_paths(pattern: str, limit: int | None = None) -> list[str]:
    """Paths matching a glob on any filesystem (nothing when nothing matches)."""
    from apache_beam.io.filesystems import FileSystems

    found = FileSystems.match([pattern], limits=[limit] if limit else None)[0].metadata_list
    return [m.path for m in found]


def open_raw(path: str):
    """A seekable binary stream for a local path or any Beam filesystem path."""
    if is_local(path):
        return open(path.removeprefix("file://"), "rb", buffering=1 << 20)
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def arrow_filesystem():
    """A read-only ``pyarrow.fs.FileSystem`` over Beam's FileSystems, for ``pyarrow.dataset`` on gs:// paths."""
    import pyarrow.fs as pafs

    class _BeamHandler(pafs.FileSystemHandler):
        def get_type_name(self):
            return "beam"

        def equals(self, other):
            return isinstance(other, _BeamHandler)

        def normalize_path(self, path):
            return path

        def get_file_info(self, paths):
            from apache_beam.io.filesystems import FileSystems

            out = []
            for path in paths:
                found = FileSystems.match([path])[0].metadata_list
                out.append(pafs.FileInfo(path, pafs.FileType.File, size=found[0].size_in_bytes) if found
                           else pafs.FileInfo(path, pafs.FileType.NotFound))
            return out

        def open_input_file(self, path):
            return pa.PythonFile(open_raw(path), mode="r")

        def open_input_stream(self, path):
            return pa.PythonFile(open_raw(path), mode="r")

        def _read_only(self, *args, **kwargs):
            raise NotImplementedError("this filesystem is read-only")

        get_file_info_selector = create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = _read_only
        delete_file = move = copy_file = open_output_stream = open_append_stream = _read_only

    return pafs.PyFileSystem(_BeamHandler())


def read_bytes(path: str) -> bytes:
    with open_raw(path) as f:
        return f.read()


def read_ipc(path: str) -> pa.RecordBatch:
    """The record batch of a one-batch Arrow IPC file written by ``curate.io.writers.write_ipc``."""
    if is_local(path):  # memory-mapped: no copy, the page cache serves the columns a stage touches
        with pa.memory_map(path.removeprefix("file://")) as f:
            return pa.ipc.open_file(f).get_batch(0)
    return pa.ipc.open_file(pa.BufferReader(read_bytes(path))).get_batch(0)


class TruncatedStream(Exception):
    """A compressed stream ended early or is corrupt; every complete line before it was yielded."""


class _Peeked:
    """A ``read``-only stream: ``head``, then the rest of ``source`` (a stream, or an iterator of chunks)."""

    def __init__(self, head: bytes, source):
        self.buf = head
        self.source = source

    def _more(self, n: int) -> bytes:
        if hasattr(self.source, "read"):
            return self.source.read(n)
        return next(self.source, b"")

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = [self.buf]
            while True:
                data = self._more(1 << 20)
                if not data:
                    break
                parts.append(data)
            self.buf = b""
            return b"".join(parts)
        if not self.buf:  # like a raw read: what one read of the source gives (a decompressed chunk is
            self.buf = self._more(n)  # passed on at once, so a cut later in the stream loses nothing before it)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def _peek(stream, n: int = SNIFF_BYTES) -> tuple[bytes, _Peeked]:
    """The first ``n`` bytes of ``stream`` (fewer at its end) and a stream that still yields them."""
    head = stream.read(n)
    while head and len(head) < n:
        more = stream.read(n - len(head))
        if not more:
            break
        head += more
    return head, _Peeked(head, stream)


def _looks_like_text(head: bytes) -> bool:
    """Content that is plain jsonl (served decompressed although the name says compressed)."""
    return head.lstrip()[:1] in (b"{", b"[") or head.startswith(b"WARC/")


def _content_chunks(raw, name_comp: str | None, chunk: int):
    """Decompressed chunks of ``raw``: the compression is sniffed from the first bytes (the name is
    the fallback), and nested layers (a gzip inside a gzip) are decompressed too."""
    head, stream = _peek(raw)
    comp = sniff_compression(head)
    if comp is None and name_comp is not None and head and not _looks_like_text(head):
        comp = name_comp  # not recognized: let the decompressor name the problem (corrupt/truncated)
    for _ in range(3):
        if comp is None:
            break
        out = _decompressed_chunks(stream, comp, chunk)
        head, stream = _peek(_Peeked(b"", out))
        comp = sniff_compression(head)
    while True:
        data = stream.read(chunk)
        if not data:
            return
        yield data


def is_compressed(path: str) -> bool:
    """The file is compressed, by its name or by its first bytes (one small read)."""
    if compression_of(path):
        return True
    try:
        with open_raw(path) as f:
            return sniff_compression(f.read(SNIFF_BYTES)) is not None
    except OSError:
        return False


def _decompressed_chunks(raw, comp: str, chunk: int = 1 << 20):
    """Decompressed chunks of a gzip (multi-member), zstd or bzip2 (multi-stream) stream; raises
    TruncatedStream at a cut."""
    if comp == "bzip2":
        import bz2

        d, started = bz2.BZ2Decompressor(), False
        while True:
            data = raw.read(chunk)
            if not data:
                if started:
                    raise TruncatedStream("bzip2 stream ends before its end marker")
                return
            while data:
                started = True
                try:
                    out = d.decompress(data)
                except (OSError, ValueError) as e:
                    raise TruncatedStream(f"corrupt bzip2 data: {e}") from None
                if out:
                    yield out
                if d.eof:  # end of one stream; another may follow (pbzip2)
                    data = d.unused_data
                    d, started = bz2.BZ2Decompressor(), False
                else:
                    data = b""
    elif comp == "gzip":
        d, started = zlib.decompressobj(wbits=47), False
        while True:
            data = raw.read(chunk)
            if not data:
                if started:
                    raise TruncatedStream("gzip stream ends before its end marker")
                return
            while data:
                started = True
                try:
                    out = d.decompress(data)
                except zlib.error as e:
                    raise TruncatedStream(f"corrupt gzip data: {e}") from None
                if out:
                    yield out
                if d.eof:  # end of one gzip member; another may follow
                    data = d.unused_data.lstrip(b"\0")
                    d, started = zlib.decompressobj(wbits=47), False
                else:
                    data = b""
    else:
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        while True:
            try:
                out = reader.read(chunk)
            except zstandard.ZstdError as e:
                raise TruncatedStream(f"corrupt or truncated zstd data: {e}") from None
            if not out:
                return
            yield out


def _has_magic(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def list_files(patterns: list[str]) -> list[tuple[str, int]]:
    """Expand glob patterns (local or Beam filesystems) to sorted, de-duplicated (path, size)."""
    from apache_beam.io.filesystems import FileSystems

    from curate.core.safety import NOT_DATA, resolve_input

    found: dict[str, int] = {}
    for pattern in patterns:
        pattern = resolve_input(pattern)  # a curate output folder means its data/; a partial one is refused
        if is_local(pattern) and os.path.isdir(pattern.removeprefix("file://")):
            # a folder (e.g. the data/ of a curate run): every file in it, hidden and in-progress ones aside
            pattern = pattern.rstrip("/") + "/[!._]*"
        results = FileSystems.match([pattern])[0].metadata_list
        if not results and not is_local(pattern) and not _has_magic(pattern):
            # gs://bucket/folder: object stores have no folders, only names under a prefix
            results = FileSystems.match([pattern.rstrip("/") + "/[!._]*"])[0].metadata_list
        if not results:
            raise FileNotFoundError(f"input pattern {pattern!r} matched no files")
        for m in results:
            if m.path.rstrip("/").rsplit("/", 1)[-1] in NOT_DATA:
                continue  # stats.json, _SUCCESS, HF dataset_info.json ...: written beside data, never records
            found[m.path] = m.size_in_bytes
    return sorted(found.items())


def split_file(file_index: int, path: str, size: int, spec: InputSpec) -> list[Shard]:
    fmt = detect_format(path, spec.format)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            with open_raw(path) as f:
                md = pq.ParquetFile(f).metadata
        except Exception as e:  # corrupt footer, not a parquet file ...
            return [Shard(file_index, path, fmt, 0, problem=f"cannot open Parquet file: {e}")]
        shards, start, acc = [], 0, 0
        for rg in range(md.num_row_groups):
            acc += md.row_group(rg).total_byte_size
            if acc >= spec.split_bytes or rg == md.num_row_groups - 1:
                shards.append(Shard(file_index, path, fmt, len(shards), start, rg + 1, md.num_row_groups == rg + 1 and start == 0))
                start, acc = rg + 1, 0
        return shards or [Shard(file_index, path, fmt, 0, 0, 0)]
    if fmt == "arrow":
        try:
            with open_raw(path) as f:
                reader = pa.ipc.open_file(f)
                n = reader.num_record_batches
                sizes = [reader.get_batch(i).nbytes for i in range(n)] if n > 1 else [0] * n
        except pa.ArrowInvalid:
            return [Shard(file_index, path, "arrow_stream", 0)]  # IPC stream format: read whole
        except Exception as e:
            return [Shard(file_index, path, fmt, 0, problem=f"cannot open Arrow file: {e}")]
        shards, start, acc = [], 0, 0
        for i, nb in enumerate(sizes):
            acc += nb
            if acc >= spec.split_bytes or i == n - 1:
                shards.append(Shard(file_index, path, fmt, len(shards), start, i + 1, start == 0 and i == n - 1))
                start, acc = i + 1, 0
        return shards or [Shard(file_index, path, fmt, 0, 0, 0)]
    if fmt == "jsonl" and size > spec.split_bytes and not is_compressed(path):
        n = -(-size // spec.split_bytes)
        return [
            Shard(file_index, path, fmt, i, i * spec.split_bytes, min(size, (i + 1) * spec.split_bytes), False)
            for i in range(n)
        ]
    return [Shard(file_index, path, fmt, 0)]


class BatchBuilder:
    """Accumulates documents of one shard and cuts them into keyed record batches.

    Also collects error rows and reader-level drops for the shard.
    """

    def __init__(self, shard: Shard, spec: InputSpec, keep_rejected: bool = False):
        self.shard, self.spec = shard, spec
        self.keep_rejected = keep_rejected  # keep reader-level drops as rows for rejected/
        self.rejected: list[dict] = []
        self.default_source = spec.source or _stem(shard.path)
        self.rows: list[dict] = []
        self.positions: list[int] = []
        self.nbytes = 0
        self.n_batches = 0
        self.errors: list[dict] = []
        self.dropped: dict[str, int] = {}
        self.n_in = 0

    def error(self, location: str, reason: str, snippet=None, id=None, n_records: int = 1):
        self.errors.append(
            dict(stage="read", file=self.shard.path, location=location, id=id, reason=reason,
                 n_records=n_records, snippet=None if snippet is None else _snippet(snippet))
        )

    def drop(self, reason: str, n: int = 1, rows: list[dict] | None = None):
        """Count ``n`` documents dropped at read; ``rows`` ({id, text, url, location}) go to rejected/ on request."""
        self.dropped[reason] = self.dropped.get(reason, 0) + n
        if self.keep_rejected and rows:
            for r in rows:
                self.rejected.append({S.ID: _as_id(r.get("id")), S.TEXT: r.get("text"),
                                      S.SOURCE: self.default_source, S.URL: _str_or_none(r.get("url")),
                                      "location": r.get("location"), "drop_stage": "read", "drop_reason": reason})

    def rejected_batch(self):
        if not self.rejected:
            return None
        cols = (S.ID, S.TEXT, S.SOURCE, S.URL, "location", "drop_stage", "drop_reason")
        batch = pa.RecordBatch.from_pydict({c: [r[c] for r in self.rejected] for c in cols},
                                           schema=pa.schema([(c, pa.string()) for c in cols]))
        return S.with_key(batch, f"read-{self.shard.key}")

    def add(self, record: dict, position: int, location: str) -> Iterator[pa.RecordBatch]:
        """Validate one record (a dict from jsonl/WARC) and queue it; yields full batches."""
        self.n_in += 1
        spec = self.spec
        text = record.get(spec.text_key)
        rid = record.get(spec.id_key)
        if text is None:
            reason = f"missing field {spec.text_key!r}" if spec.text_key not in record else f"null {spec.text_key!r}"
            self.error(location, reason, orjson.dumps(record, default=str)[:300].decode("utf-8", "replace"),
                       None if rid is None else str(rid))
            return
        if not isinstance(text, str):
            self.error(location, f"field {spec.text_key!r} is {type(text).__name__}, not a string", str(text)[:300])
            return
        if spec.id_key in record and rid is None:
            self.error(location, f"null {spec.id_key!r}", text)
            return
        if not text.strip():
            self.drop("empty_text", rows=[{"id": rid, "text": text, "url": record.get(spec.url_key), "location": location}])
            return
        self.rows.append(record)
        self.positions.append(position)
        self.nbytes += len(text)
        if len(self.rows) >= spec.batch_size or self.nbytes >= spec.batch_bytes:
            yield self.flush()

    def flush(self) -> pa.RecordBatch | None:
        if not self.rows:
            return None
        spec = self.spec
        rows, positions = self.rows, self.positions
        self.rows, self.positions, self.nbytes = [], [], 0
        texts = pa.array([r[spec.text_key] for r in rows], type=pa.string())
        cols: dict[str, pa.Array] = {}
        if any(spec.id_key in r for r in rows):
            cols[S.ID] = pa.array([_as_id(r.get(spec.id_key)) for r in rows], type=pa.string())
        cols[S.TEXT] = texts
        cols[S.SOURCE] = pa.array([r.get("source") or self.default_source for r in rows], type=pa.string())
        cols[S.URL] = pa.array([_str_or_none(r.get(spec.url_key)) for r in rows], type=pa.string())
        skip = {spec.text_key, spec.id_key, spec.url_key, "source", spec.html_key}
        extra: dict[str, list] = {}
        for i, r in enumerate(rows):
            for k, v in r.items():
                if k not in skip:
                    extra.setdefault(k, [None] * len(rows))[i] = v
        for k in sorted(extra):
            cols[k] = _to_arrow(extra[k])
        return self._emit(cols, positions)

    def _emit(self, cols: dict[str, pa.Array], positions: list[int]) -> pa.RecordBatch:
        """Finish a batch: derive ids when the input has none, core columns first, attach the batch key."""
        if S.ID not in cols:
            cols[S.ID] = S.derive_ids(self.default_source, os.path.basename(self.shard.path), positions, cols[S.TEXT])
        order = [S.ID, S.TEXT, S.SOURCE, S.URL] + [k for k in cols if k not in S.CORE_COLUMNS]
        batch = pa.RecordBatch.from_arrays([cols[k] for k in order], names=order)
        key = f"{self.shard.key}-{self.n_batches:05d}"
        self.n_batches += 1
        return S.with_key(S.with_file(batch, self.shard.path), key)


def _stem(path: str) -> str:
    name = os.path.basename(path.rstrip("/"))
    for _ in range(3):
        root, ext = os.path.splitext(name)
        if not ext:
            break
        name = root
    return name


def _snippet(v) -> str:
    if isinstance(v, bytes):
        v = v[:300].decode("utf-8", "replace")
    return str(v)[:300]


def _as_id(v):
    if v is None:
        return None
    return v if isinstance(v, str) else str(v)


def _str_or_none(v):
    if v is None:
        return None
    return v if isinstance(v, str) else str(v)


def _to_arrow(values: list) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        # mixed types across records: keep them losslessly as JSON strings
        return pa.array([None if v is None else orjson.dumps(v, default=str).decode() for v in values], type=pa.string())


# ---------------------------------------------------------------- per-format shard readers


def _problem_report(shard: Shard, b: "BatchBuilder") -> "BatchBuilder":
    """The report of a shard that cannot be read at all: its records are counted in and as one error."""
    b.n_in += shard.n_records
    b.error("file", shard.problem, n_records=shard.n_records)
    return b


def read_shard(shard: Shard, spec: InputSpec, keep_rejected: bool = False) -> Iterator[tuple[str, object]]:
    """Yields ("batch", RecordBatch) items, then one ("report", BatchBuilder) item with errors/drops."""
    b = BatchBuilder(shard, spec, keep_rejected)
    if shard.problem:
        yield "report", _problem_report(shard, b)
        return
    for batch in _shard_readers()[shard.format](shard, spec, b):
        if batch is not None:
            yield "batch", batch
    last = b.flush()
    if last is not None:
        yield "batch", last
    yield "report", b


def read_in_process(files: list[tuple[str, int]], spec: InputSpec,
                    skipped: dict[str, int]) -> Iterator[tuple[str, pa.RecordBatch]]:
    """(file, record batch) for every batch of ``files`` (from ``list_files``) in order, read in this process without Beam
    (for commands that stream an input through one process: ``train-tokenizer``,
    ``decontaminate-report``); records that are errors or dropped at read are counted into
    ``skipped`` by reason."""
    for i, (path, size) in enumerate(files):
        for shard in split_file(i, path, size, spec):
            for kind, item in read_shard(shard, spec):
                if kind == "batch":
                    yield path, item
                    continue
                for e in item.errors:
                    skipped[e["reason"]] = skipped.get(e["reason"], 0) + e["n_records"]
                for reason, n in item.dropped.items():
                    skipped[reason] = skipped.get(reason, 0) + n


def _shard_readers() -> dict:
    """Shard format -> reader generator (``reader(shard, spec, builder)`` yields record batches)."""
    return {"jsonl": _read_jsonl, "parquet": _read_parquet, "arrow": _read_arrow,
            "arrow_stream": _read_arrow_stream, "warc": _read_warc}


def read_first(spec: InputSpec, keep_rejected: bool = False) -> Iterator[tuple[str, object]]:
    """``read_shard`` over the whole input, stopping once ``spec.limit`` documents have been passed on.

    The order is deterministic: files in sorted order (``list_files``), shards and records in file
    order. Reading stops inside the shard that holds the N-th document, so a large input is never
    read whole. Records met on the way that are errors or dropped (empty text) are reported as
    usual; the read stage's ``in`` is the documents passed on plus those. Yields ("batch", batch)
    items and one ("report", BatchBuilder) item per shard read, like ``read_shard``.
    """
    import dataclasses

    left = spec.limit
    if left is None or left < 1:
        raise ValueError(f"read_first needs a limit of at least 1, got {left!r}")
    readers = _shard_readers()
    for i, (path, size) in enumerate(list_files(spec.path)):
        for shard in split_file(i, path, size, spec):
            if left <= 0:
                return
            # batches of at most ``left`` rows: the reader hands over the N-th document as soon as it has it
            sub = dataclasses.replace(spec, batch_size=max(1, min(spec.batch_size, left)))
            b = BatchBuilder(shard, sub, keep_rejected)
            if shard.problem:
                yield "report", _problem_report(shard, b)
                continue
            passed, cut = 0, False
            gen = readers[shard.format](shard, sub, b)
            try:
                for batch in gen:
                    if batch is None:
                        continue
                    if batch.num_rows >= left:
                        cut = True
                        batch = batch.slice(0, left)
                    left -= batch.num_rows
                    passed += batch.num_rows
                    yield "batch", batch
                    if cut:
                        break
            finally:
                gen.close()
            if not cut:
                last = b.flush()
                if last is not None:
                    if last.num_rows >= left:
                        cut = True
                        last = last.slice(0, left)
                    left -= last.num_rows
                    passed += last.num_rows
                    yield "batch", last
            if cut:  # stopped inside the shard: what the reader counted but did not pass on is not in the sample
                b.rows, b.positions = [], []
                b.n_in = passed + sum(b.dropped.values()) + sum(e["n_records"] for e in b.errors)
            yield "report", b


CHUNK_BYTES = 16 << 20


def _raw_chunks(shard: Shard, chunk: int):
    """Byte chunks of a shard's (decompressed) content; a byte-range shard starts at its first
    whole line and ends with the line that straddles its end. Raises TruncatedStream at a cut."""
    if shard.whole_file:
        with open_raw(shard.path) as raw:
            yield from _content_chunks(raw, compression_of(shard.path), chunk)
        return
    with open_raw(shard.path) as f:
        pos = shard.start
        if pos > 0:  # the line that straddles our start belongs to the previous shard
            f.seek(pos - 1)
            pos += len(f.readline()) - 1
        while pos < shard.end:
            data = f.read(min(chunk, shard.end - pos))
            if not data:
                return
            pos += len(data)
            if pos >= shard.end and not data.endswith(b"\n"):
                data += f.readline()  # finish the last line, which starts inside our range
            yield data


def _line_chunks(shard: Shard, chunk: int | None = None):
    """Chunks of about CHUNK_BYTES that hold whole lines only."""
    rest = b""
    for data in _raw_chunks(shard, chunk or CHUNK_BYTES):
        buf = rest + data
        cut = buf.rfind(b"\n") + 1
        if cut == 0:
            rest = buf
            continue
        yield buf[:cut]
        rest = buf[cut:]
    if rest:
        yield rest


def _parse_fast(data: bytes, spec: InputSpec):
    """pyarrow.json over a chunk of whole lines, or None when the chunk needs the per-line path
    (bad JSON, blank lines, nulls or missing fields: it must name the exact line)."""
    import pyarrow.json as pj

    read_options = pj.ReadOptions(use_threads=False, block_size=1 << 24)
    try:
        table = pj.read_json(pa.BufferReader(data), read_options=read_options,
                             parse_options=pj.ParseOptions(newlines_in_values=False))
        if _has_timestamp(table.schema):
            # Arrow infers timestamps from ISO date strings; JSON has none, so such a field is read again as
            # the string it is and passes through unchanged (the per-line path keeps strings too)
            schema = pa.schema([f.with_type(_no_timestamps(f.type)) for f in table.schema])
            table = pj.read_json(pa.BufferReader(data), read_options=read_options,
                                 parse_options=pj.ParseOptions(newlines_in_values=False, explicit_schema=schema))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError):
        return None
    if data.count(b"\n") + (not data.endswith(b"\n")) != table.num_rows:
        return None
    names = table.column_names
    if spec.text_key not in names or table.column(spec.text_key).null_count:
        return None
    if not pa.types.is_string(table.column(spec.text_key).type):
        return None
    if spec.id_key in names and table.column(spec.id_key).null_count:
        return None
    nulls = [f.name for f in table.schema if pa.types.is_null(f.type)]
    return table.drop_columns(nulls) if nulls else table


def _no_timestamps(t: pa.DataType) -> pa.DataType:
    """``t`` with every timestamp (at any depth) made a string."""
    if pa.types.is_timestamp(t):
        return pa.string()
    if pa.types.is_struct(t):
        return pa.struct([t.field(i).with_type(_no_timestamps(t.field(i).type)) for i in range(t.num_fields)])
    if pa.types.is_list(t):
        return pa.list_(t.value_field.with_type(_no_timestamps(t.value_type)))
    if pa.types.is_large_list(t):
        return pa.large_list(t.value_field.with_type(_no_timestamps(t.value_type)))
    return t


def _has_timestamp(schema: pa.Schema) -> bool:
    return any(_no_timestamps(f.type) != f.type for f in schema)


def _read_jsonl(shard: Shard, spec: InputSpec, b: BatchBuilder):
    """Chunks of whole lines: clean chunks are parsed vectorized, others line by line.

    Record positions (for derived ids) count non-blank lines from the start of the shard, the same
    on both paths; locations are line numbers for whole files and byte offsets for byte ranges.
    """
    loads = orjson.loads
    lineno, ordinal = 0, 0
    offset = shard.start if not shard.whole_file else 0
    try:
        for data in _line_chunks(shard):
            table = None if spec.html_key else _parse_fast(data, spec)
            if table is not None:
                yield from _table_to_batches(table, shard, spec, b, (shard.index << 32) + ordinal)
                ordinal += table.num_rows
                lineno += table.num_rows
                offset += len(data)
                continue
            pos = offset
            for line in data.splitlines(keepends=True):
                lineno += 1
                here, pos = pos, pos + len(line)
                if not line.strip():
                    continue
                position = (shard.index << 32) + ordinal
                ordinal += 1
                location = f"line {lineno}" if shard.whole_file else f"byte offset {here}"
                try:
                    record = loads(line)
                except orjson.JSONDecodeError as e:
                    b.n_in += 1
                    msg = str(e)
                    reason = "invalid UTF-8" if "utf-8" in msg.lower() or "unicode" in msg.lower() else "malformed JSON"
                    b.error(location, f"{reason}: {msg}", line)
                    continue
                if not isinstance(record, dict):
                    b.n_in += 1
                    b.error(location, f"JSON value is a {type(record).__name__}, not an object", line)
                    continue
                if spec.html_key:
                    record = _extract_record(record, spec, b, location)
                    if record is None:
                        continue
                yield from b.add(record, position, location)
            offset = pos
    except TruncatedStream as e:
        b.n_in += 1
        b.error(f"after line {lineno}", f"truncated or corrupt compressed stream: {e}; the rest of the file is unreadable")
    except OSError as e:
        b.n_in += 1
        b.error(f"after line {lineno}", f"cannot read file: {e}")


def _extract_record(record: dict, spec: InputSpec, b: BatchBuilder, location: str) -> dict | None:
    from curate.io.html import extract_text

    html = record.get(spec.html_key)
    if html is None:
        b.n_in += 1
        b.error(location, f"missing or null {spec.html_key!r}")
        return None
    try:
        text = extract_text(html, record.get(spec.url_key), **spec.extract)
    except Exception as e:
        b.n_in += 1
        b.error(location, f"HTML extraction failed: {type(e).__name__}: {e}", html)
        return None
    if not text:
        b.n_in += 1
        b.drop("no_extracted_text", rows=[{"id": record.get(spec.id_key), "url": record.get(spec.url_key), "location": location}])
        return None
    record = dict(record)
    record[spec.text_key] = text
    return record


def _table_to_batches(table: pa.Table, shard: Shard, spec: InputSpec, b: BatchBuilder, first_row: int):
    """Map a columnar chunk onto the schema, vectorized; rows with bad text/id go to errors."""
    import numpy as np
    import pyarrow.compute as pc

    n = table.num_rows
    names = table.column_names
    b.n_in += n
    if spec.html_key:
        if spec.html_key not in names:
            b.error(f"rows {first_row}-{first_row + n - 1}", f"column {spec.html_key!r} not found (columns: {names})", n_records=n)
            return
        rows = table.to_pylist()
        b.n_in -= n
        for i, r in enumerate(rows):
            loc = f"row {first_row + i}"
            rec = _extract_record(r, spec, b, loc)
            if rec is not None:
                yield from b.add(rec, first_row + i, loc)
        return
    if spec.text_key not in names:
        b.error(f"rows {first_row}-{first_row + n - 1}", f"column {spec.text_key!r} not found (columns: {names})", n_records=n)
        return
    text = table.column(spec.text_key)
    if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
        b.error(f"rows {first_row}-{first_row + n - 1}", f"column {spec.text_key!r} has type {text.type}, not string", n_records=n)
        return
    text = S.flat(text.cast(pa.string()))
    bad = np.zeros(n, dtype=bool)
    null_text = text.is_null().to_numpy(zero_copy_only=False)
    ids = None
    null_id = np.zeros(n, dtype=bool)
    if spec.id_key in names:
        ids = S.flat(table.column(spec.id_key))
        null_id = ids.is_null().to_numpy(zero_copy_only=False)
        ids = ids.cast(pa.string())
    for i in np.flatnonzero(null_text | null_id):
        reason = f"null {spec.text_key!r}" if null_text[i] else f"null {spec.id_key!r}"
        b.error(f"row {first_row + int(i)}", reason, None if null_text[i] else text[int(i)].as_py(),
                None if ids is None or null_id[i] else ids[int(i)].as_py())
    bad |= null_text | null_id
    empty = ~bad & S.blank_mask(text)
    if empty.any():
        rows = None
        if b.keep_rejected:
            idx = np.flatnonzero(empty)
            urls = table.column(spec.url_key) if spec.url_key in names else None
            rows = [{"id": None if ids is None else ids[int(i)].as_py(), "text": text[int(i)].as_py(),
                     "url": None if urls is None else urls[int(i)].as_py(), "location": f"row {first_row + int(i)}"}
                    for i in idx]
        b.drop("empty_text", int(empty.sum()), rows)
    good = ~(bad | empty)
    positions = np.arange(first_row, first_row + n)[good]
    all_good = bool(good.all())
    mask = pa.array(good)

    def keep(arr):
        return arr if all_good else arr.filter(mask)

    cols: dict[str, pa.Array] = {}
    if ids is not None:
        cols[S.ID] = keep(ids)
    cols[S.TEXT] = keep(text)
    if "source" in names:
        src = keep(S.flat(table.column("source")).cast(pa.string()))
        cols[S.SOURCE] = pc.fill_null(src, b.default_source)
    else:
        cols[S.SOURCE] = pa.array([b.default_source] * int(good.sum()), type=pa.string())
    if spec.url_key in names:
        cols[S.URL] = keep(S.flat(table.column(spec.url_key)).cast(pa.string()))
    else:
        cols[S.URL] = pa.nulls(int(good.sum()), type=pa.string())
    skip = {spec.text_key, spec.id_key, spec.url_key, "source"}
    for k in names:
        if k not in skip:
            cols[k] = keep(S.flat(table.column(k)))
    if not len(positions):
        return
    # cut into batches of the configured size
    total = len(positions)
    step = spec.batch_size
    for s in range(0, total, step):
        part = {k: v.slice(s, step) for k, v in cols.items()}
        yield b._emit(part, positions[s : s + step].tolist())


def _read_parquet(shard: Shard, spec: InputSpec, b: BatchBuilder):
    """Row group by row group, ``batch_size`` rows at a time (``iter_batches``: a row group of many
    documents is never decoded whole; a local file is memory-mapped)."""
    import pyarrow.parquet as pq

    local = is_local(shard.path)
    f = None if local else open_raw(shard.path)
    try:
        pf = pq.ParquetFile(shard.path.removeprefix("file://"), memory_map=True) if local else pq.ParquetFile(f)
        md = pf.metadata
        first_row = sum(md.row_group(i).num_rows for i in range(shard.start))
        for rg in range(shard.start, shard.end if shard.end >= 0 else md.num_row_groups):
            n_rg = md.row_group(rg).num_rows
            done = 0
            try:
                batches = pf.iter_batches(batch_size=spec.batch_size, row_groups=[rg], use_threads=False)
                while done < n_rg:
                    rb = next(batches)
                    if done + rb.num_rows >= n_rg:
                        # the row group's last batch: let go of the decoder (its pages and dictionary, 3x a
                        # huge document) before the batch travels on through the stages
                        batches.close()
                        del batches
                        batches = iter(())
                    yield from _table_to_batches(pa.Table.from_batches([rb]), shard, spec, b, first_row + done)
                    done += rb.num_rows
            except Exception as e:
                left = n_rg - done
                b.n_in += left
                b.error(f"row group {rg} (rows {first_row + done}-{first_row + n_rg - 1})", f"cannot read row group: {e}",
                        n_records=left)
            first_row += n_rg
    finally:
        if f is not None:
            f.close()


def _read_arrow(shard: Shard, spec: InputSpec, b: BatchBuilder):
    with open_raw(shard.path) as f:
        reader = pa.ipc.open_file(f)
        first_row = sum(reader.get_batch(i).num_rows for i in range(shard.start))
        for i in range(shard.start, shard.end if shard.end >= 0 else reader.num_record_batches):
            rb = reader.get_batch(i)
            yield from _table_to_batches(pa.Table.from_batches([rb]), shard, spec, b, first_row)
            first_row += rb.num_rows


def _read_arrow_stream(shard: Shard, spec: InputSpec, b: BatchBuilder):
    first_row = 0
    try:
        with open_raw(shard.path) as f:
            for rb in pa.ipc.open_stream(f):
                yield from _table_to_batches(pa.Table.from_batches([rb]), shard, spec, b, first_row)
                first_row += rb.num_rows
    except pa.ArrowInvalid as e:
        b.n_in += 1
        b.error(f"after row {first_row}", f"corrupt or truncated Arrow stream: {e}")


def _dechunk(body: bytes) -> bytes:
    """The payload of an HTTP body sent with ``Transfer-Encoding: chunked`` (WARC writers such as wget keep
    the chunk framing; fastwarc does not remove it). A body that is not valid chunked framing is returned as is."""
    out, pos, n = [], 0, len(body)
    while pos < n:
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            return body
        try:
            size = int(body[pos:eol].split(b";", 1)[0].strip() or b"x", 16)
        except ValueError:
            return body
        if size == 0:
            return b"".join(out)
        start = eol + 2
        out.append(body[start:start + size])
        pos = start + size + 2  # the chunk's trailing CRLF
    return b"".join(out)  # a truncated last chunk: what arrived


def _decode_body(body: bytes, http_headers) -> bytes:
    """Undo ``Transfer-Encoding: chunked`` and a gzip/deflate ``Content-Encoding`` kept in the record."""
    te = (http_headers.get("Transfer-Encoding") or "").lower()
    if "chunked" in te:
        body = _dechunk(body)
    ce = (http_headers.get("Content-Encoding") or "").lower().strip()
    if ce in ("gzip", "x-gzip", "deflate") and body:
        if body[:2] == b"\x1f\x8b":
            wbits = 16 + zlib.MAX_WBITS
        elif ce == "deflate":
            wbits = zlib.MAX_WBITS if body[:1] == b"\x78" else -zlib.MAX_WBITS  # zlib-wrapped, or raw deflate
        else:
            wbits = None  # a gzip header without gzip bytes: stored decoded (Common Crawl keeps the header)
        if wbits is not None:
            try:
                body = zlib.decompress(body, wbits)
            except zlib.error:
                pass
    return body


def warc_target_uri(value: str | None) -> str | None:
    """``WARC-Target-URI`` without the ``<...>`` that some writers (wget, WARC/1.1 drafts) put around it."""
    if value is None:
        return None
    value = value.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1].strip()
    return value or None


def _read_warc(shard: Shard, spec: InputSpec, b: BatchBuilder):
    """``response`` records are the documents: one each, counted in the ledger. Records of other types
    (``warcinfo``, ``request``, ``metadata``, ``resource``, ``revisit``, ...) describe the crawl, not pages,
    and are skipped uncounted. A response is dropped with a reason when its HTTP status is not 2xx
    (``not_2xx``: redirects, errors), when it is not HTML (``not_html``: no ``html`` in its
    Content-Type, or no HTTP headers at all, e.g. ``dns:`` records) or when trafilatura finds no main
    text in it (``no_extracted_text``); a page whose extraction raises is an error. Kept documents get
    ``id`` = the WARC-Record-ID's UUID, ``url`` = WARC-Target-URI (without ``<...>``), ``warc_date``
    and ``http_status``. The body's chunked transfer encoding and gzip/deflate content encoding are undone.
    """
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    n, in_record = 0, False
    try:
        with open_raw(shard.path) as raw:
            # decompressed here, not by fastwarc: it ends silently at a cut gzip member, ours raises
            stream = _ReadStream(_content_chunks(raw, compression_of(shard.path), 1 << 20))
            for rec in ArchiveIterator(stream, record_types=WarcRecordType.response, parse_http=True):
                n += 1
                b.n_in += 1
                in_record = True
                record = _warc_document(rec, f"record {n}", spec, b)
                in_record = False
                if record is not None:
                    b.n_in -= 1  # counted again by add()
                    yield from b.add(record, n, f"record {n}")
    except Exception as e:
        if not in_record:
            b.n_in += 1
        where = f"record {n}" if in_record else f"after record {n}"
        b.error(where, f"corrupt or truncated WARC: {type(e).__name__}: {e}; the rest of the file is unreadable")


class _ReadStream:
    """A forward-only binary stream over an iterator of byte chunks (``read`` and ``tell``, as fastwarc needs)."""

    def __init__(self, chunks):
        self._src, self._pos = _Peeked(b"", chunks), 0

    def read(self, n: int = -1) -> bytes:
        data = self._src.read(n)
        self._pos += len(data)
        return data

    def tell(self) -> int:
        return self._pos

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        pass


def _warc_document(rec, loc: str, spec: InputSpec, b: BatchBuilder) -> dict | None:
    """The document of one response record, or None when it is dropped or an error (recorded in ``b``).
    Raises TruncatedStream when the record's payload is cut short."""
    from curate.io.html import extract_text

    rid = (rec.record_id or "").strip("<>").removeprefix("urn:uuid:") or None
    url = warc_target_uri(rec.headers.get("WARC-Target-URI"))
    http = rec.http_headers
    status = http.status_code if http is not None else None
    if status is not None and not 200 <= status < 300:
        b.drop("not_2xx", rows=[{"id": rid, "url": url, "location": f"{loc} (HTTP {status})"}])
        return None
    ctype = (http.get("Content-Type", "") if http is not None else "").lower()
    if "html" not in ctype:
        b.drop("not_html", rows=[{"id": rid, "url": url, "location": loc}])
        return None
    body = rec.reader.read()
    if len(body) < rec.content_length:
        raise TruncatedStream(f"the payload has {len(body):,} of its {rec.content_length:,} bytes")
    try:
        text = extract_text(_decode_body(body, http), url, **spec.extract)
    except Exception as e:
        b.error(loc, f"HTML extraction failed: {type(e).__name__}: {e}", id=rid)
        return None
    if not text:
        b.drop("no_extracted_text", rows=[{"id": rid, "url": url, "location": loc}])
        return None
    return {spec.id_key: rid, spec.text_key: text, spec.url_key: url, "warc_date": rec.headers.get("WARC-Date"),
            "http_status": status}
