"""Output writers (Parquet, jsonl with gzip/zstd) with atomic finalization; folder removal on any filesystem.

Two ways of cutting the output into files (``WriteOutput``):

* one file per batch (the default): ``<prefix><batch key>.<ext>``, written under a temporary name and
  renamed. Batch keys are stable, so a re-run or a retried bundle writes the same names.
* files of a target size or row count (``output.file_bytes`` / ``output.file_rows``): a worker appends
  the batches it is given to one open file (a Parquet row group per batch, or compressed jsonl) until
  the target is reached. Files are written to ``<folder>/.inprogress/<name>/`` and only those of
  bundles that succeeded are renamed into place by a last step (``_Commit``), which then deletes what
  failed or retried attempts left; a file is named after the smallest batch key it holds, so names
  never collide and no document is ever written twice.

Remote files are created with ``CompressionTypes.UNCOMPRESSED``: Beam's default (AUTO) would
gzip a ``.gz`` name a second time.
"""
from __future__ import annotations

import os
import shutil
import uuid

import apache_beam as beam
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from curate import schema as S
from curate.core import progress
from curate.core.stage import counter
from curate.io.readers import is_local


def join(folder: str, name: str) -> str:
    return folder.rstrip("/") + "/" + name


def _create(path: str):
    """A new remote file for writing, bytes as given (no compression added by its name)."""
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.create(path, mime_type="application/octet-stream", compression_type=CompressionTypes.UNCOMPRESSED)


def remove_tree(folder: str) -> int:
    """Remove ``folder`` and everything below it, on any filesystem; returns the files removed remotely.

    Object stores (GCS, S3) have no folders, only names under a prefix: the files are listed with
    ``folder/**`` and deleted. A folder that does not exist is not an error.
    """
    if is_local(folder):
        shutil.rmtree(folder.removeprefix("file://"), ignore_errors=True)
        return 0
    from apache_beam.io.filesystems import FileSystems

    paths = [m.path for m in FileSystems.match([join(folder, "**")])[0].metadata_list]
    for i in range(0, len(paths), 1000):
        FileSystems.delete(paths[i:i + 1000])
    return len(paths)


# Long free-text columns get neither a dictionary (documents are unique: the attempt only costs time)
# nor min/max statistics (Arrow copies the smallest and largest value of each page: 2x a huge
# document's size in the writer, for statistics nobody filters on).
LONG_TEXT = ("text", "html")


def parquet_options(schema: pa.Schema) -> dict:
    short = [n for n in schema.names if n not in LONG_TEXT]
    return {"use_dictionary": short, "write_statistics": short}


def write_parquet(batch: pa.RecordBatch | pa.Table, path: str, compression: str = "zstd") -> None:
    """Write ``batch`` to ``path`` atomically: a temporary name, then a rename."""
    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    table = table.replace_schema_metadata(None)
    options = parquet_options(table.schema)
    folder, name = path.rsplit("/", 1)
    tmp = join(folder, f".{name}.{uuid.uuid4().hex[:8]}.inprogress")
    if is_local(path):
        os.makedirs(folder, exist_ok=True)
        pq.write_table(table, tmp, compression=compression, **options)
        os.replace(tmp, path)
        return
    from apache_beam.io.filesystems import FileSystems

    with _create(tmp) as f:
        pq.write_table(table, f, compression=compression, **options)
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([tmp], [path])


def write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a temporary name, then a rename), locally or on any Beam filesystem."""
    folder, name = path.rsplit("/", 1)
    tmp = join(folder, f".{name}.{uuid.uuid4().hex[:8]}.inprogress")
    if is_local(path):
        os.makedirs(folder, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        return
    from apache_beam.io.filesystems import FileSystems

    with _create(tmp) as f:
        f.write(data)
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([tmp], [path])


def write_ipc(batch: pa.RecordBatch, path: str) -> None:
    """One record batch as an Arrow IPC file, atomically (scratch files of global stages and of the mix)."""
    folder, name = path.rsplit("/", 1)
    tmp = join(folder, f".{name}.{uuid.uuid4().hex[:8]}")
    if is_local(path):
        os.makedirs(folder, exist_ok=True)
        with pa.OSFile(tmp, "wb") as f, pa.ipc.new_file(f, batch.schema) as w:
            w.write_batch(batch)
        os.replace(tmp, path)
        return
    from apache_beam.io.filesystems import FileSystems

    with _create(tmp) as f, pa.ipc.new_file(f, batch.schema) as w:
        w.write_batch(batch)
    FileSystems.rename([tmp], [path])


OUTPUT_FORMATS = ("parquet", "jsonl")
JSONL_COMPRESSIONS = ("gzip", "zstd", "none")


def file_suffix(fmt: str = "parquet", compression: str | None = "zstd") -> str:
    """The file name ending of an output file: ``.parquet`` (compressed inside), ``.jsonl[.gz|.zst]``."""
    if fmt == "parquet":
        return ".parquet"
    if fmt != "jsonl":
        raise ValueError(f"unknown output format {fmt!r}; one of {OUTPUT_FORMATS}")
    ext = {"gzip": ".gz", "zstd": ".zst", "none": "", None: ""}
    if compression not in ext:
        raise ValueError(f"jsonl output is compressed with one of {JSONL_COMPRESSIONS}, not {compression!r}")
    return ".jsonl" + ext[compression]


def _json_default(v):
    if isinstance(v, (bytes, bytearray, memoryview)):
        import base64

        return base64.b64encode(bytes(v)).decode("ascii")
    return str(v)  # Decimal, time, timedelta ...: their text


def _plain(t: pa.DataType) -> bool:
    """Types that polars writes to JSON exactly as orjson does (strings, numbers, booleans, nulls, lists, structs)."""
    if pa.types.is_struct(t):
        return all(_plain(t.field(i).type) for i in range(t.num_fields))
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _plain(t.value_type)
    return (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t) or pa.types.is_floating(t)
            or pa.types.is_boolean(t) or pa.types.is_null(t)) and not pa.types.is_float16(t)


def jsonl_lines(batch: pa.RecordBatch | pa.Table) -> bytes:
    """The rows of ``batch`` as JSON lines, one object per row with every column. Strings stay strings;
    timestamps and dates are written as ISO 8601 text, binary as base64, NaN and infinities as null.

    Columns of plain types are written by polars (about 5x faster than rows through orjson, the same
    bytes: tests/test_output_formats.py); other types go through orjson row by row."""
    if batch.num_rows == 0:
        return b""
    if all(_plain(f.type) for f in batch.schema):
        import polars as pl

        table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
        out = pl.from_arrow(table.replace_schema_metadata(None), rechunk=False).write_ndjson()
        return out.encode() if isinstance(out, str) else out
    dumps, opt = orjson.dumps, orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS
    return b"".join(dumps(r, default=_json_default, option=opt) for r in batch.to_pylist())


class _Compressor:
    """Streaming gzip / zstd / no compression of bytes written in pieces."""

    def __init__(self, compression: str | None):
        self.compression = None if compression in (None, "none") else compression
        if self.compression == "gzip":
            import zlib

            self._c = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        elif self.compression == "zstd":
            import zstandard

            self._c = zstandard.ZstdCompressor(level=3).compressobj()
        elif self.compression is not None:
            raise ValueError(f"jsonl output is compressed with one of {JSONL_COMPRESSIONS}, not {compression!r}")

    def compress(self, data: bytes) -> bytes:
        return data if self.compression is None else self._c.compress(data)

    def compress_block(self, data: bytes) -> bytes:
        """``data`` compressed and flushed to a block boundary: what is written so far is the file's true size."""
        if self.compression is None:
            return data
        if self.compression == "gzip":
            import zlib

            return self._c.compress(data) + self._c.flush(zlib.Z_SYNC_FLUSH)
        import zstandard

        return self._c.compress(data) + self._c.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)

    def flush(self) -> bytes:
        return b"" if self.compression is None else self._c.flush()


def write_jsonl(batch: pa.RecordBatch | pa.Table, path: str, compression: str | None = "zstd") -> None:
    """Write ``batch`` to ``path`` as (compressed) jsonl, atomically."""
    c = _Compressor(compression)
    write_bytes(path, c.compress(jsonl_lines(batch)) + c.flush())


def write_file(batch: pa.RecordBatch | pa.Table, path: str, fmt: str = "parquet", compression: str = "zstd") -> None:
    if fmt == "jsonl":
        write_jsonl(batch, path, compression)
    else:
        write_parquet(batch, path, compression)


class _Counted:
    """A write-only binary stream that counts the bytes written through it (the size of an open file)."""

    def __init__(self, f):
        self.f, self.n, self.closed = f, 0, False

    def write(self, data) -> int:
        self.f.write(data)
        self.n += len(data)
        return len(data)

    def tell(self) -> int:
        return self.n

    def flush(self):
        self.f.flush()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False

    def close(self):
        if not self.closed:
            self.closed = True
            self.f.close()


def _open_for_write(path: str):
    if is_local(path):
        local = path.removeprefix("file://")
        os.makedirs(os.path.dirname(local), exist_ok=True)
        return open(local, "wb")
    return _create(path)


class _OpenFile:
    """One output file being appended to: Parquet (a row group per batch) or jsonl through a compressor."""

    def __init__(self, path: str, fmt: str, compression: str, schema: pa.Schema):
        self.path, self.fmt = path, fmt
        self.out = _Counted(_open_for_write(path))
        self.rows, self.keys = 0, []
        self.schema = schema.remove_metadata()
        if fmt == "parquet":
            self.writer = pq.ParquetWriter(self.out, self.schema, compression=compression, **parquet_options(self.schema))
        else:
            self.comp = _Compressor(compression)

    def fits(self, batch: pa.RecordBatch) -> pa.RecordBatch | None:
        """``batch`` in this file's schema (a Parquet file has one), or None when it cannot be."""
        if self.fmt != "parquet":
            return batch
        schema = batch.schema.remove_metadata()
        if schema.equals(self.schema):
            return batch
        if schema.names != self.schema.names:
            return None
        try:
            return batch.cast(self.schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            return None

    def append(self, batch: pa.RecordBatch) -> None:
        if self.fmt == "parquet":
            self.writer.write_table(pa.Table.from_batches([batch.replace_schema_metadata(None)]))
        else:
            self.out.write(self.comp.compress_block(jsonl_lines(batch)))  # one block per batch
        self.rows += batch.num_rows
        self.keys.append(S.batch_key(batch))

    @property
    def size(self) -> int:
        return self.out.n

    def close(self) -> None:
        if self.fmt == "parquet":
            self.writer.close()
        else:
            self.out.write(self.comp.flush())
        self.out.close()


class _RollingWriter(beam.DoFn):
    """Appends batches to an open file until it holds ``file_rows`` rows or ``file_bytes`` bytes (on disk,
    compressed; a Parquet file's footer, about 1 KB per row group, comes on top), then starts the next; yields (temporary path, final name, rows) per closed file. A file is
    closed at the end of each bundle, so a bundle's outputs are all its own (committed or retried whole)."""

    def __init__(self, folder: str, prefix: str, fmt: str, compression: str, file_rows: int | None,
                 file_bytes: int | None, tmp: str, count_as: str | None = None):
        self.folder, self.prefix, self.fmt, self.compression = folder, prefix, fmt, compression
        self.file_rows, self.file_bytes, self.tmp, self.count_as = file_rows, file_bytes, tmp, count_as
        self.suffix = file_suffix(fmt, compression)

    def setup(self):
        self.counter = counter(self.count_as, "kept") if self.count_as else None

    def start_bundle(self):
        self.current: _OpenFile | None = None

    def _close(self):
        f, self.current = self.current, None
        f.close()
        key = min(f.keys)
        if key == "unkeyed":  # batches without a key (none of curate's): a name that cannot collide
            key = f"unkeyed-{uuid.uuid4().hex[:12]}"
        return f.path, f"{self.prefix}{key}{self.suffix}", f.rows

    def process(self, batch: pa.RecordBatch):
        if batch.num_rows == 0:
            return
        fitted = self.current.fits(batch) if self.current is not None else None
        if self.current is not None and fitted is None:  # another schema: it starts a file of its own
            yield self._close()
        if self.current is None:
            self.current = _OpenFile(join(self.tmp, f"{uuid.uuid4().hex}{self.suffix}"), self.fmt, self.compression,
                                     batch.schema)
            fitted = batch
        self.current.append(fitted)
        if self.counter is not None:
            self.counter.inc(batch.num_rows)
            progress.add(self.count_as, batch.num_rows)
        if (self.file_rows and self.current.rows >= self.file_rows) or (self.file_bytes and self.current.size >= self.file_bytes):
            yield self._close()

    def finish_bundle(self):
        if self.current is not None:
            from apache_beam.transforms.window import GlobalWindows

            yield GlobalWindows.windowed_value(self._close())


class _Commit(beam.DoFn):
    """Moves the files of the committed bundles into place, then removes the temporary folder (with
    whatever failed or retried attempts wrote there). Re-running it finds the files already moved."""

    def __init__(self, folder: str, tmp: str):
        self.folder, self.tmp = folder, tmp

    def process(self, files: list):
        from curate.io.readers import exists

        for tmp_path, name, _ in sorted(files, key=lambda f: f[1]):
            final = join(self.folder, name)
            if is_local(final):
                if os.path.exists(tmp_path.removeprefix("file://")):
                    os.replace(tmp_path.removeprefix("file://"), final.removeprefix("file://"))
                continue
            from apache_beam.io.filesystems import FileSystems

            if exists(tmp_path):
                if FileSystems.exists(final):
                    FileSystems.delete([final])
                FileSystems.rename([tmp_path], [final])
        remove_tree(self.tmp)
        if is_local(self.tmp):
            try:
                os.rmdir(os.path.dirname(self.tmp.removeprefix("file://").rstrip("/")))  # .inprogress, when empty
            except OSError:
                pass
        yield len(files)


class WriteOutput(beam.PTransform):
    """Record batches -> files in ``folder``: one per batch (``file_rows``/``file_bytes`` unset) or files
    of about that many rows/bytes, in ``fmt`` (parquet | jsonl) with ``compression``. ``name`` keeps the
    temporary folders of several writers into one folder apart."""

    def __init__(self, folder: str, prefix: str = "part-", fmt: str = "parquet", compression: str = "zstd",
                 file_rows: int | None = None, file_bytes: int | None = None, count_as: str | None = None,
                 name: str = "files"):
        super().__init__()
        file_suffix(fmt, compression)  # a bad combination fails here, before anything runs
        self.folder, self.prefix, self.fmt, self.compression = folder, prefix, fmt, compression
        self.file_rows, self.file_bytes, self.count_as, self.name = file_rows, file_bytes, count_as, name

    def expand(self, pcoll):
        if not (self.file_rows or self.file_bytes):
            return pcoll | "PerBatch" >> beam.ParDo(WriteBatches(self.folder, self.prefix, self.compression,
                                                                 self.count_as, self.fmt))
        tmp = join(join(self.folder, ".inprogress"), self.name)
        return (pcoll
                | "Files" >> beam.ParDo(_RollingWriter(self.folder, self.prefix, self.fmt, self.compression,
                                                       self.file_rows, self.file_bytes, tmp, self.count_as))
                | "Collect" >> beam.combiners.ToList()
                | "Commit" >> beam.ParDo(_Commit(self.folder, tmp)))


class WriteBatches(beam.DoFn):
    """Writes each batch to ``<folder>/<prefix><batch key>.parquet`` (or ``.jsonl[.gz|.zst]``); yields (path, rows)."""

    def __init__(self, folder: str, prefix: str = "part-", compression: str = "zstd", count_as: str | None = None,
                 fmt: str = "parquet"):
        self.folder, self.prefix, self.compression = folder, prefix, compression
        self.count_as, self.fmt = count_as, fmt
        self.suffix = file_suffix(fmt, compression)

    def setup(self):
        self.counter = counter(self.count_as, "kept") if self.count_as else None

    def process(self, batch: pa.RecordBatch):
        if batch.num_rows == 0:
            return
        path = join(self.folder, f"{self.prefix}{S.batch_key(batch)}{self.suffix}")
        write_file(batch, path, self.fmt, self.compression)
        if self.counter is not None:
            self.counter.inc(batch.num_rows)
            progress.add(self.count_as, batch.num_rows)
        yield path, batch.num_rows
