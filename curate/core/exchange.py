"""Shuffles whose payload spills to scratch files, for the local runner.

Beam's in-process runner keeps every GroupByKey's contents in its driver's memory, so a shuffle of
per-document keys grows with the corpus. Locally, the array payloads that global stages shuffle are
therefore written to scratch files first, and only small ``Spilled`` references (path, offset,
length) go through the GroupByKey; the reducer reads its own slices back. One file per bundle holds
all of the bundle's payloads (a batch's keys for every partition), so the number of files grows
with the batches, not with batches x partitions. Files are content-addressed (name = hash of the
contents), so a retried bundle rewrites the same file. Payloads under ``INLINE_BYTES`` stay inline:
what the driver holds is then at most that much per shuffle element, whatever the batch size.
On a distributed runner (Dataflow) the runner's shuffle service holds the data and nothing is
spilled: ``folder=None``.
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass

import apache_beam as beam
import xxhash
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from curate.io.readers import is_local, open_raw
from curate.io.writers import join, write_bytes

INLINE_BYTES = 256


@dataclass(frozen=True)
class Spilled:
    path: str
    offset: int
    length: int

    def load(self):
        if is_local(self.path):
            fd = os.open(self.path.removeprefix("file://"), os.O_RDONLY)
            try:
                return pickle.loads(os.pread(fd, self.length, self.offset))
            finally:
                os.close(fd)
        with open_raw(self.path) as f:
            f.seek(self.offset)
            return pickle.loads(f.read(self.length))


def load(value):
    return value.load() if isinstance(value, Spilled) else value


class _Spill(beam.DoFn):
    """(key, payload) -> (key, payload) when tiny, else (key, Spilled): one file per bundle."""

    def __init__(self, folder: str):
        self.folder = folder

    def setup(self):
        from apache_beam.metrics import Metrics

        self.written = Metrics.counter("curate.info", "scratch_bytes_spilled")

    def start_bundle(self):
        self.pending: list[tuple[object, bytes]] = []

    def process(self, item):
        key, payload = item
        data = pickle.dumps(payload, protocol=5)
        if len(data) < INLINE_BYTES:
            yield key, payload
            return
        self.pending.append((key, data))

    def finish_bundle(self):
        if not self.pending:
            return
        blob = b"".join(d for _, d in self.pending)
        path = join(self.folder, f"{xxhash.xxh3_128_hexdigest(blob)}.pkl")
        if not (is_local(path) and os.path.exists(path)):  # content-addressed: an existing file is this payload
            write_bytes(path, blob)
            self.written.inc(len(blob))
        offset = 0
        for key, data in self.pending:
            yield WindowedValue((key, Spilled(path, offset, len(data))), MIN_TIMESTAMP, [GlobalWindow()])
            offset += len(data)
        self.pending = []


def _load_group(item):
    key, values = item
    return key, [load(v) for v in values]


def _load_cogroup(item):
    key, grouped = item
    return key, {tag: [load(v) for v in values] for tag, values in grouped.items()}


class Spill(beam.PTransform):
    """(key, payload) -> (key, Spilled) when ``folder`` is set; identity otherwise."""

    def __init__(self, folder: str | None, label: str = "Spill"):
        super().__init__(label=label)
        self.folder = folder

    def expand(self, pcoll):
        return pcoll if self.folder is None else pcoll | beam.ParDo(_Spill(self.folder))


class GroupByKey(beam.PTransform):
    """GroupByKey whose values travel as scratch files when ``folder`` is set."""

    def __init__(self, folder: str | None, label: str | None = None):
        super().__init__(label=label)
        self.folder = folder

    def expand(self, pcoll):
        if self.folder is None:
            return pcoll | beam.GroupByKey()
        return (pcoll | "Spill" >> beam.ParDo(_Spill(self.folder)) | beam.GroupByKey()
                | "Load" >> beam.Map(_load_group))


class CoGroupByKey(beam.PTransform):
    """CoGroupByKey over a dict of PCollections; the tags in ``spilled`` travel as scratch files."""

    def __init__(self, folder: str | None, spilled: tuple[str, ...], label: str | None = None):
        super().__init__(label=label)
        self.folder, self.spilled = folder, spilled

    def expand(self, pcolls: dict):
        if self.folder is None:
            return pcolls | beam.CoGroupByKey()
        inputs = {tag: (pc | f"Spill_{tag}" >> beam.ParDo(_Spill(join(self.folder, tag))) if tag in self.spilled else pc)
                  for tag, pc in pcolls.items()}
        return inputs | beam.CoGroupByKey() | "Load" >> beam.Map(_load_cogroup)
