"""The Python API on the sample corpus: a pipeline without YAML, its outputs as tables, and stages called
on a pyarrow.Table. Run from the repository root:  python samples/api_quickstart.py [OUTPUT_DIR]"""
import sys
from dataclasses import dataclass

import pyarrow.compute as pc

import curate
from curate.core.stage import Filter
from curate.stages.length import LengthFilter


@dataclass(kw_only=True)
class NoReplicas(Filter):
    """A stage of your own: a dataclass on Filter whose fields are its parameters."""

    stage = "no_replicas"
    reason = "spam_word"
    word: str = "replica"

    def filter(self, batch, scores):
        return pc.invert(pc.match_substring(pc.utf8_lower(batch.column("text")), self.word))


out = sys.argv[1] if len(sys.argv) > 1 else "out/api-quickstart"
pipe = curate.Pipeline([
    LengthFilter(min_words=50),             # a configured stage object
    NoReplicas(),                           # a stage defined above, not in curate
    "exact_dedup",                          # a registered name, default parameters
    {"gopher_repetition": {}},              # the recipe form
])
res = pipe.run("samples/corpus/*.jsonl*", out, write_rejected=True)   # what `curate run` does
print(res.summary())
data = res.data()                           # pyarrow.Table of data/*.parquet
print(f"{data.num_rows} documents kept; rejected: {res.rejected().num_rows}, errors: {res.errors().num_rows}")

t = curate.apply("length_filter", data, min_words=200)     # any stage on a table, in memory
print(t)                                                   # TableResult(... in, ... kept, ... dropped {...}, 0 errors)
print(t.rejected.select(["id", "drop_stage", "drop_reason"]).slice(0, 3).to_pylist())
scored = curate.apply(curate.stage("gopher_quality", mode="annotate"), data)   # annotate: keep all, add the reason
print(scored.kept.column("gopher_quality_reason").value_counts().to_pylist())
