"""Parquet writers with atomic finalization and stable names; folder removal on any filesystem.

Remote files are created with ``CompressionTypes.UNCOMPRESSED``: Beam's default (AUTO) would
gzip a ``.gz`` name a second time.
"""
from __future__ import annotations

import os
import shutil
import uuid

import apache_beam as beam
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


class WriteBatches(beam.DoFn):
    """Writes each batch to ``<folder>/<prefix><batch key>.parquet``; yields (path, rows)."""

    def __init__(self, folder: str, prefix: str = "part-", compression: str = "zstd", count_as: str | None = None):
        self.folder, self.prefix, self.compression = folder, prefix, compression
        self.count_as = count_as

    def setup(self):
        self.counter = counter(self.count_as, "kept") if self.count_as else None

    def process(self, batch: pa.RecordBatch):
        if batch.num_rows == 0:
            return
        path = join(self.folder, f"{self.prefix}{S.batch_key(batch)}.parquet")
        write_parquet(batch, path, self.compression)
        if self.counter is not None:
            self.counter.inc(batch.num_rows)
            progress.add(self.count_as, batch.num_rows)
        yield path, batch.num_rows
