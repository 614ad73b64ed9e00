"""Shuffles whose payload spills to scratch files, for the local runner.

Beam's in-process runner keeps every GroupByKey's contents in its driver's memory, so a shuffle of
per-document keys grows with the corpus. Locally, the array payloads that global stages shuffle are
therefore written to scratch files first, and only small references (file name, offset,
length) go through the GroupByKey; the reducer reads its own slices back. One file per bundle (or
per ``FLUSH_BYTES`` of a bundle) holds the bundle's payloads (a batch's keys for every partition), so
the number of files grows with the data, not with batches x partitions, and a worker never holds
more than ``FLUSH_BYTES`` of payload waiting to be written. Files are content-addressed (name = hash of the
contents), so a retried bundle rewrites the same file. Payloads under ``INLINE_BYTES`` stay inline:
what the driver holds is then at most that much per shuffle element, whatever the batch size.
On a distributed runner (Dataflow) the runner's shuffle service holds the data and nothing is
spilled: ``folder=None``.
"""
from __future__ import annotations

import os
import pickle
import typing

import apache_beam as beam
import xxhash
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from curate.io.readers import is_local, open_raw
from curate.io.writers import join, write_bytes

INLINE_BYTES = 256
# pending payloads are written out when they reach this size, so a worker holds at most this much of a
# shuffle's payload whatever the size of its bundle (one bundle can be a worker's whole share of the corpus)
FLUSH_BYTES = 32 << 20


# What travels through the GroupByKey for one payload, as small as possible (the local runner's
# driver holds every element of a shuffle, and there is one per batch and partition):
#   (None, payload)            a tiny payload, inline
#   (name, offset, length)     a slice of the scratch file ``folder/name``


def read_slice(folder: str, ref: tuple):
    name, offset, length = ref
    path = join(folder, name)
    if is_local(path):
        fd = os.open(path.removeprefix("file://"), os.O_RDONLY)
        try:
            return pickle.loads(os.pread(fd, length, offset))
        finally:
            os.close(fd)
    with open_raw(path) as f:
        f.seek(offset)
        return pickle.loads(f.read(length))


def load(folder: str, ref: tuple):
    return ref[1] if ref[0] is None else read_slice(folder, ref)


@beam.typehints.with_output_types(typing.Tuple[typing.Any, typing.Any])  # references of two shapes: no inferred coder
class _Spill(beam.DoFn):
    """(key, payload) -> (key, reference): inline when tiny, else a slice of one file per bundle."""

    def __init__(self, folder: str):
        self.folder = folder

    def setup(self):
        from apache_beam.metrics import Metrics

        self.written = Metrics.counter("curate.info", "scratch_bytes_spilled")

    def start_bundle(self):
        self.pending: list[tuple[object, bytes]] = []
        self.pending_bytes = 0

    def process(self, item):
        key, payload = item
        data = pickle.dumps(payload, protocol=5)
        if len(data) < INLINE_BYTES:
            yield key, (None, payload)
            return
        self.pending.append((key, data))
        self.pending_bytes += len(data)
        if self.pending_bytes >= FLUSH_BYTES:  # a bundle can hold a worker's whole share of the corpus
            yield from self._flush()

    def finish_bundle(self):
        for key_ref in self._flush():
            yield WindowedValue(key_ref, MIN_TIMESTAMP, [GlobalWindow()])

    def _flush(self) -> list[tuple]:
        """Write the pending payloads to one content-addressed file; their (key, reference) pairs."""
        if not self.pending:
            return []
        blob = b"".join(d for _, d in self.pending)
        name = f"{xxhash.xxh3_128_hexdigest(blob)}.pkl"
        path = join(self.folder, name)
        if not (is_local(path) and os.path.exists(path)):  # content-addressed: an existing file is this payload
            write_bytes(path, blob)
            self.written.inc(len(blob))
        out, offset = [], 0
        for key, data in self.pending:
            out.append((key, (name, offset, len(data))))
            offset += len(data)
        self.pending, self.pending_bytes = [], 0
        return out


def _load_group(item, folder):
    key, values = item
    return key, [load(folder, v) for v in values]


def _load_cogroup(item, folders):
    key, grouped = item
    return key, {tag: [load(folders[tag], v) for v in values] if tag in folders else list(values)
                 for tag, values in grouped.items()}


class GroupByKey(beam.PTransform):
    """GroupByKey whose values travel as scratch files when ``folder`` is set."""

    def __init__(self, folder: str | None, label: str | None = None):
        super().__init__(label=label)
        self.folder = folder

    def expand(self, pcoll):
        if self.folder is None:
            return pcoll | beam.GroupByKey()
        return (pcoll | "Spill" >> beam.ParDo(_Spill(self.folder)) | beam.GroupByKey()
                | "Load" >> beam.Map(_load_group, self.folder))


class CoGroupByKey(beam.PTransform):
    """CoGroupByKey over a dict of PCollections; the tags in ``spilled`` travel as scratch files."""

    def __init__(self, folder: str | None, spilled: tuple[str, ...], label: str | None = None):
        super().__init__(label=label)
        self.folder, self.spilled = folder, spilled

    def expand(self, pcolls: dict):
        if self.folder is None:
            return pcolls | beam.CoGroupByKey()
        folders = {tag: join(self.folder, tag) for tag in pcolls if tag in self.spilled}
        inputs = {tag: (pc | f"Spill_{tag}" >> beam.ParDo(_Spill(folders[tag])) if tag in folders else pc)
                  for tag, pc in pcolls.items()}
        return inputs | beam.CoGroupByKey() | "Load" >> beam.Map(_load_cogroup, folders)
