"""Shuffles whose payload spills to scratch files, for the local runner.

Beam's in-process runner keeps every GroupByKey's contents in memory, so a shuffle of per-document
keys grows with the corpus. Locally, the array payloads that global stages shuffle are therefore
written to scratch files first, and only small ``Spilled`` references go through the GroupByKey;
the reducer loads its own partition back. Files are content-addressed (name = hash of the
payload), so a retried bundle rewrites the same file, and two equal payloads sharing a file is
harmless. Payloads under ``INLINE_BYTES`` stay inline: a tiny file costs more than it saves, and
their total is bounded by the number of shuffle elements (batches x partitions), not documents.
On a distributed runner (Dataflow) the runner's shuffle service holds the data and nothing is
spilled: ``folder=None``.
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass

import apache_beam as beam
import xxhash

from curate.io.readers import is_local, read_bytes
from curate.io.writers import join, write_bytes

INLINE_BYTES = 16 << 10


@dataclass(frozen=True)
class Spilled:
    path: str

    def load(self):
        return pickle.loads(read_bytes(self.path))


def load(value):
    return value.load() if isinstance(value, Spilled) else value


class _Spill(beam.DoFn):
    def __init__(self, folder: str):
        self.folder = folder

    def setup(self):
        from apache_beam.metrics import Metrics

        self.written = Metrics.counter("curate.info", "scratch_bytes_spilled")

    def process(self, item):
        key, payload = item
        data = pickle.dumps(payload, protocol=5)
        if len(data) < INLINE_BYTES:
            yield key, payload
            return
        name = xxhash.xxh3_64_hexdigest(repr(key).encode())
        path = join(self.folder, f"{name}-{xxhash.xxh3_128_hexdigest(data)}.pkl")
        if not (is_local(path) and os.path.exists(path)):  # content-addressed: an existing file is this payload
            write_bytes(path, data)
            self.written.inc(len(data))
        yield key, Spilled(path)


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
