"""Beam transforms around the readers: expand globs, split files, read shards."""
from __future__ import annotations

import apache_beam as beam

from curate import schema as S
from curate.core import progress
from curate.core.stage import ERRORS, KEPT, REJECTED, Counts
from curate.io.readers import InputSpec, list_files, read_first, read_shard, split_file


class _Expand(beam.DoFn):
    def process(self, patterns):
        for i, (path, size) in enumerate(list_files(patterns)):
            yield i, path, size


class _Split(beam.DoFn):
    def __init__(self, spec: InputSpec):
        self.spec = spec

    def process(self, item):
        i, path, size = item
        yield from split_file(i, path, size, self.spec)


class _ReadShard(beam.DoFn):
    def __init__(self, spec: InputSpec, stage: str = "read", write_rejected: bool = False):
        self.spec, self.stage, self.write_rejected = spec, stage, write_rejected

    def setup(self):
        self.counts = Counts(self.stage)

    def process(self, shard):
        # ``--limit N``: one element (the patterns) read in order until N documents are passed on
        items = read_first(self.spec, self.write_rejected) if self.spec.limit else read_shard(shard, self.spec,
                                                                                             self.write_rejected)
        kept = 0
        for kind, item in items:
            if kind == "batch":
                kept += item.num_rows
                progress.add(self.stage, item.num_rows)
                yield item
            else:
                b = item
                self.counts.n_in.inc(b.n_in)
                self.counts.kept.inc(kept)
                kept = 0
                for reason, n in b.dropped.items():
                    self.counts.dropped(reason, n)
                if b.errors:
                    self.counts.errors.inc(sum(e["n_records"] for e in b.errors))
                    yield beam.pvalue.TaggedOutput(ERRORS, S.with_key(S.errors_batch(b.errors), f"read-{b.shard.key}"))
                rejected = b.rejected_batch()
                if rejected is not None:
                    yield beam.pvalue.TaggedOutput(REJECTED, rejected)


class ReadInput(beam.PTransform):
    """Input spec -> {'kept': record batches, 'errors': error batches, 'rejected': (empty)}.

    File listing happens inside the pipeline, so gs:// inputs are not touched at construction time.
    Shards are redistributed with a Reshuffle so that one large file is read by many workers.
    """

    def __init__(self, spec: InputSpec, stage: str = "read", write_rejected: bool = False):
        super().__init__(label=stage)
        self.spec, self.stage, self.write_rejected = spec, stage, write_rejected

    def expand(self, pbegin):
        if self.spec.limit:
            # a sample: the first N documents in sorted-file order, read by one worker that stops there
            res = (pbegin | "Patterns" >> beam.Create([list(self.spec.path)])
                   | "ReadFirst" >> beam.ParDo(_ReadShard(self.spec, self.stage, self.write_rejected)).with_outputs(
                       ERRORS, REJECTED, main=KEPT))
            return {KEPT: res[KEPT], ERRORS: res[ERRORS], REJECTED: res[REJECTED]}
        shards = (
            pbegin
            | "Patterns" >> beam.Create([list(self.spec.path)])
            | "Expand" >> beam.ParDo(_Expand())
            | "ReshuffleFiles" >> beam.Reshuffle()
            | "Split" >> beam.ParDo(_Split(self.spec))
            | "ReshuffleShards" >> beam.Reshuffle()
        )
        res = shards | "Read" >> beam.ParDo(_ReadShard(self.spec, self.stage, self.write_rejected)).with_outputs(
            ERRORS, REJECTED, main=KEPT)
        return {KEPT: res[KEPT], ERRORS: res[ERRORS], REJECTED: res[REJECTED]}
