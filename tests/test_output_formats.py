"""output.format (parquet | jsonl with gzip/zstd), files of a target size or row count, types passed through."""
import glob
import gzip
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from curate.core.recipe import RecipeError, parse_recipe
from tests.conftest import prose, read_output, write_jsonl


def records(n=60):
    return [{"id": f"d{i:03d}", "text": prose(i), "url": f"http://example.com/{i}",
             "created": "2020-03-29T09:04:10Z", "day": "2020-03-29", "when": "2024-01-01 10:00:00",
             "n": i, "score": i / 7, "flag": i % 2 == 0, "tags": ["a", str(i)],
             "metadata": {"date_download": "2020-03-29T09:04:10Z", "length": 10 * i}} for i in range(n)]


def recipe(tmp_path, output: str, stages="[]", batch_size=8):
    return f"input: {{path: {tmp_path}/in.jsonl, batch_size: {batch_size}}}\noutput: {output}\nstages: {stages}\n"


def read_jsonl(path):
    opener = {".gz": gzip.open, ".zst": lambda p: zstandard.open(p, "rb")}.get(os.path.splitext(path)[1], open)
    with opener(path) as f:
        return [json.loads(line) for line in f.read().splitlines()]


@pytest.mark.parametrize("compression,ext", [("gzip", ".jsonl.gz"), ("zstd", ".jsonl.zst")])
def test_jsonl_output_gives_back_the_input_records(tmp_path, run, compression, ext):
    recs = records()
    write_jsonl(tmp_path / "in.jsonl", recs)
    res = run(recipe(tmp_path, f"{{path: {tmp_path}/out, format: jsonl, compression: {compression}}}"))
    assert res.stats["write"].kept == 60
    files = sorted(glob.glob(f"{tmp_path}/out/data/*"))
    assert files and all(f.endswith(ext) for f in files) and len(files) == 8  # one file per batch of 8
    rows = sorted((r for f in files for r in read_jsonl(f)), key=lambda r: r["id"])
    for r, want in zip(rows, recs):
        assert r == dict(want, source="in")  # every field, every type, the ISO date strings unchanged
    if compression == "gzip":  # curate reads its own jsonl output back
        res2 = run(f"input: {tmp_path}/out/data/*{ext}\noutput: {tmp_path}/again\nstages: []\n")
        assert res2.stats["read"].kept == 60 and res2.stats["read"].errors == 0


def test_uncompressed_jsonl_file(tmp_path):
    from curate.io.writers import file_suffix, write_file

    t = pa.Table.from_pylist(records(5))
    path = str(tmp_path / ("part" + file_suffix("jsonl", "none")))
    write_file(t, path, "jsonl", "none")
    assert path.endswith("part.jsonl") and read_jsonl(path) == records(5)
    assert not [f for f in os.listdir(tmp_path) if f != "part.jsonl"]  # the temporary name is gone


def test_files_of_a_row_count(tmp_path, run):
    write_jsonl(tmp_path / "in.jsonl", records(100))
    res = run(recipe(tmp_path, f"{{path: {tmp_path}/out, file_rows: 30}}"))
    assert res.stats["write"].kept == 100 and not res.problems
    files = sorted(glob.glob(f"{tmp_path}/out/data/*.parquet"))
    rows = [pq.read_metadata(f).num_rows for f in files]
    assert sum(rows) == 100 and len(files) < 100 // 8
    assert sorted(rows)[1:] and all(r >= 30 for r in sorted(rows)[1:])  # all but the bundle's last are full
    assert all(r < 30 + 8 for r in rows)  # closed at the first batch that reaches the count
    assert sorted(read_output(tmp_path / "out").column("id").to_pylist()) == [f"d{i:03d}" for i in range(100)]
    assert sorted(os.listdir(tmp_path / "out" / "data")) == [os.path.basename(f) for f in files]  # no .inprogress left
    assert all(os.path.basename(f).startswith("part-") for f in files)
    # ISO date strings in jsonl stay strings in Parquet, at any depth
    t = read_output(tmp_path / "out")
    for col in ("created", "day", "when"):
        assert t.schema.field(col).type == pa.string(), col
    assert t.schema.field("metadata").type.field("date_download").type == pa.string()
    row = sorted(t.to_pylist(), key=lambda r: r["id"])[3]
    assert row["created"] == "2020-03-29T09:04:10Z" and row["when"] == "2024-01-01 10:00:00" and row["day"] == "2020-03-29"
    assert row["metadata"] == {"date_download": "2020-03-29T09:04:10Z", "length": 30}


def test_files_of_a_target_size_jsonl_and_rerun_gives_the_same_documents(tmp_path, run):
    write_jsonl(tmp_path / "in.jsonl", records(120))
    text = recipe(tmp_path, f"{{path: {tmp_path}/out, format: jsonl, compression: gzip, file_bytes: 1500}}")
    run(text)
    files = sorted(glob.glob(f"{tmp_path}/out/data/*"))
    assert 1 < len(files) < 15 and all(f.endswith(".jsonl.gz") for f in files)
    sizes = sorted(os.path.getsize(f) for f in files)
    assert all(s >= 1500 for s in sizes[1:])  # every file but the last one closed reached the target
    first = sorted(r["id"] for f in files for r in read_jsonl(f))
    assert first == [f"d{i:03d}" for i in range(120)]
    run(text)  # the same recipe again into the same output: the same documents, none twice
    again = sorted(r["id"] for f in glob.glob(f"{tmp_path}/out/data/*") for r in read_jsonl(f))
    assert again == first
    assert sorted(os.listdir(tmp_path / "out" / "data")) == [os.path.basename(f) for f in files]


def test_rejected_follow_the_format_errors_stay_parquet(tmp_path, run):
    recs = records(30)
    recs[5]["text"] = "too short"
    recs[6]["url"] = "http://example.com:99999/"
    write_jsonl(tmp_path / "in.jsonl", recs)
    res = run(recipe(tmp_path, f"{{path: {tmp_path}/out, format: jsonl, compression: zstd, write_rejected: true, "
                               f"file_rows: 100}}", "[{length_filter: {min_words: 5}}, {url_dedup: {}}]"))
    assert res.stats["length_filter"].n_dropped == 1 and res.stats["url_dedup"].errors == 1
    rejected = [r for f in glob.glob(f"{tmp_path}/out/rejected/*.jsonl.zst") for r in read_jsonl(f)]
    assert [(r["id"], r["drop_reason"]) for r in rejected] == [("d005", "too_few_words")]
    (err,) = read_output(tmp_path / "out", "errors").to_pylist()
    assert err["id"] == "d006"
    assert len(glob.glob(f"{tmp_path}/out/data/*.jsonl.zst")) == 1


def test_commit_moves_only_committed_files_and_removes_the_rest(tmp_path):
    from curate.io.writers import _Commit

    tmp = tmp_path / "data" / ".inprogress" / "data"
    tmp.mkdir(parents=True)
    for name in ("a", "b", "failed-attempt"):
        (tmp / f"{name}.parquet").write_bytes(name.encode())
    files = [(str(tmp / "a.parquet"), "part-x.parquet", 1), (str(tmp / "b.parquet"), "part-y.parquet", 1)]
    commit = _Commit(str(tmp_path / "data"), str(tmp))
    assert list(commit.process(files)) == [2]
    assert sorted(os.listdir(tmp_path / "data")) == ["part-x.parquet", "part-y.parquet"]
    assert (tmp_path / "data" / "part-y.parquet").read_bytes() == b"b"
    assert list(commit.process(files)) == [2]  # a retried commit finds them in place
    assert sorted(os.listdir(tmp_path / "data")) == ["part-x.parquet", "part-y.parquet"]


def test_writer_rolls_over_when_the_schema_changes(tmp_path):
    from curate import schema as S
    from curate.io.writers import _RollingWriter

    w = _RollingWriter(str(tmp_path), "part-", "parquet", "zstd", 1000, None, str(tmp_path / ".inprogress" / "x"))
    w.setup()
    w.start_bundle()
    def batch(key, **cols):
        return S.with_key(pa.RecordBatch.from_pydict({"id": [key], "text": ["x"], **cols}), key)

    seq = [batch("k1", n=pa.array([3], pa.int64())),
           batch("k2", n=pa.array([None], pa.null())),     # null column: cast to the file's int64, same file
           batch("k3", n=pa.array(["s"], pa.string())),    # another type: a file of its own
           batch("k4", other=pa.array([1.5]))]             # other columns: a file of its own
    out = [o for b in seq for o in w.process(b)] + [v.value for v in w.finish_bundle()]
    assert [(name, rows) for _, name, rows in out] == [("part-k1.parquet", 2), ("part-k3.parquet", 1),
                                                      ("part-k4.parquet", 1)]
    t = pq.read_table(out[0][0])
    assert t.schema.field("n").type == pa.int64() and t.column("n").to_pylist() == [3, None]


@pytest.mark.parametrize("output,problem", [
    ("{path: OUT, format: jsonl, compression: snappy}", "jsonl output is compressed with one of gzip, zstd, none"),
    ("{path: OUT, format: csv}", "format"),
    ("{path: OUT, file_rows: 0}", "file_rows must be at least 1"),
    ("{path: OUT, file_bytes: -5}", "'file_bytes' must be >= 1"),
    ("{path: OUT, file_rows: many}", "file_rows"),
])
def test_bad_output_settings_are_named_with_their_line(tmp_path, output, problem):
    write_jsonl(tmp_path / "in.jsonl", records(1))
    text = f"input: {tmp_path}/in.jsonl\noutput: {output.replace('OUT', str(tmp_path / 'out'))}\nstages: []\n"
    with pytest.raises(RecipeError) as e:
        parse_recipe(text, "r.yaml")
    assert any(p.startswith("r.yaml:2:") and problem in p for p in e.value.problems), e.value.problems


def test_jsonl_lines_polars_path_equals_orjson_and_other_types_are_text():
    import datetime

    import orjson

    from curate.io.writers import jsonl_lines

    t = pa.table({"f": [1.5, float("nan"), float("inf"), None, 0.1 + 0.2], "s": ["a\u2028b", '"q"\n', "é", None, "/"],
                  "i": pa.array([1, -2, None, 2**63 - 1, 0], pa.int64()), "u": pa.array([1, 2, 3, 4, 2**64 - 1], pa.uint64()),
                  "l": [[1], [], None, [2, None], [3]], "st": [{"a": 1, "b": "x"}, None, {"a": None, "b": None}, {"a": 2, "b": ""},
                                                             {"a": 3, "b": "y"}],
                  "ls": pa.array(["x", "y", "z", "w", "v"], pa.large_string()), "b": [True, False, None, True, False]})
    want = b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in t.to_pylist())
    assert jsonl_lines(t) == want  # polars' bytes, orjson's bytes
    odd = pa.table({"ts": pa.array([datetime.datetime(2020, 3, 29, 9, 4, 10)], pa.timestamp("s")),
                    "d": pa.array([datetime.date(2020, 3, 29)]), "bin": pa.array([b"\x00\xff"], pa.binary())})
    assert json.loads(jsonl_lines(odd)) == {"ts": "2020-03-29T09:04:10", "d": "2020-03-29", "bin": "AP8="}


def test_parquet_files_of_a_target_size(tmp_path, run):
    write_jsonl(tmp_path / "in.jsonl", records(200))
    res = run(recipe(tmp_path, f"{{path: {tmp_path}/out, file_bytes: 40000}}"))
    files = sorted(glob.glob(f"{tmp_path}/out/data/*.parquet"))
    assert res.stats["write"].kept == 200 and 1 < len(files) < 200 // 8
    data_bytes = sorted(os.path.getsize(f) - pq.read_metadata(f).serialized_size for f in files)  # without the footer
    assert all(40000 <= b < 40000 + 8000 for b in data_bytes[1:])  # closed at the first batch past the target
    assert sorted(read_output(tmp_path / "out").column("id").to_pylist()) == [f"d{i:03d}" for i in range(200)]
