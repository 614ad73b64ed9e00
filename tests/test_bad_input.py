"""Bad input never crashes a run silently, never loses or duplicates a document."""
import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
from conftest import prose, read_output, write_jsonl


def _errors(out):
    return read_output(out, "errors").to_pylist()


def test_malformed_lines_invalid_utf8_missing_and_null_fields(tmp_path, run):
    lines = [
        json.dumps({"id": "ok1", "text": prose(1)}).encode(),
        b'{"id": "broken", "text": "unterminated',
        json.dumps({"id": "ok2", "text": prose(2)}).encode(),
        b'{"id": "badutf8", "text": "caf\xe9 \xff\xfe"}',
        json.dumps({"id": "notext", "body": "x"}).encode(),
        json.dumps({"id": "nulltext", "text": None}).encode(),
        json.dumps({"id": None, "text": prose(3)}).encode(),
        json.dumps({"id": "empty", "text": "   "}).encode(),
        json.dumps([1, 2]).encode(),
        json.dumps({"id": "ok3", "text": prose(4)}).encode(),
    ]
    (tmp_path / "bad.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    res = run(f"input: {tmp_path}/bad.jsonl\noutput: {tmp_path}/out\n")
    out = read_output(tmp_path / "out")
    assert sorted(out.column("id").to_pylist()) == ["ok1", "ok2", "ok3"]
    errs = {e["location"]: e for e in _errors(tmp_path / "out")}
    assert set(errs) == {"line 2", "line 4", "line 5", "line 6", "line 7", "line 9"}
    assert errs["line 2"]["reason"].startswith("malformed JSON")
    assert errs["line 4"]["reason"].startswith("invalid UTF-8")
    assert errs["line 5"]["reason"] == "missing field 'text'"
    assert errs["line 6"]["reason"] == "null 'text'"
    assert errs["line 7"]["reason"] == "null 'id'"
    assert all(e["file"].endswith("bad.jsonl") for e in errs.values())
    read = res.stats["read"]
    assert (read.n_in, read.kept, read.errors, read.dropped) == (10, 3, 6, {"empty_text": 1})


def test_duplicate_ids_go_to_errors_keeping_the_first(tmp_path, run):
    write_jsonl(tmp_path / "a.jsonl", [{"id": "x", "text": prose(1)}, {"id": "y", "text": prose(2)}])
    write_jsonl(tmp_path / "b.jsonl", [{"id": "x", "text": prose(3)}, {"id": "z", "text": prose(4)}])
    res = run(f"input: {tmp_path}/*.jsonl\noutput: {tmp_path}/out\n")
    out = read_output(tmp_path / "out").to_pylist()
    assert sorted(r["id"] for r in out) == ["x", "y", "z"]
    assert [r["text"] for r in out if r["id"] == "x"] == [prose(1)]  # the first occurrence survives
    errs = _errors(tmp_path / "out")
    assert [(e["id"], e["reason"]) for e in errs] == [("x", "duplicate id")]
    assert res.stats["input_ids"].errors == 1


def test_truncated_gzip_keeps_what_was_readable(tmp_path, run):
    data = gzip.compress("".join(json.dumps({"id": f"d{i}", "text": prose(i)}) + "\n" for i in range(2000)).encode())
    (tmp_path / "cut.jsonl.gz").write_bytes(data[: len(data) // 2])
    res = run(f"input: {tmp_path}/cut.jsonl.gz\noutput: {tmp_path}/out\n")
    out = read_output(tmp_path / "out")
    ids = out.column("id").to_pylist()
    assert 0 < len(ids) < 2000 and ids == [f"d{i}" for i in range(len(ids))]
    (err,) = _errors(tmp_path / "out")
    assert err["file"].endswith("cut.jsonl.gz") and "truncated" in err["reason"] and err["location"].startswith("after line")
    assert res.stats["read"].errors == 1


def test_corrupt_parquet_and_missing_column(tmp_path, run):
    pq.write_table(pa.table({"id": ["a", "b"], "text": [prose(1), prose(2)]}), tmp_path / "good.parquet")
    (tmp_path / "corrupt.parquet").write_bytes(b"PAR1 this is not really parquet PAR1")
    pq.write_table(pa.table({"id": ["c"], "content": [prose(3)]}), tmp_path / "nocol.parquet")
    res = run(f"input: {tmp_path}/*.parquet\noutput: {tmp_path}/out\n")
    assert sorted(read_output(tmp_path / "out").column("id").to_pylist()) == ["a", "b"]
    errs = {e["file"].rsplit("/", 1)[1]: e for e in _errors(tmp_path / "out")}
    assert "cannot open Parquet file" in errs["corrupt.parquet"]["reason"]
    assert "column 'text' not found" in errs["nocol.parquet"]["reason"] and errs["nocol.parquet"]["n_records"] == 1
    assert res.stats["read"].errors == 2


def test_parquet_null_text_and_ids_name_the_row(tmp_path, run):
    pq.write_table(pa.table({"id": ["a", None, "c", "d"], "text": [prose(1), prose(2), None, ""]}), tmp_path / "n.parquet")
    res = run(f"input: {tmp_path}/n.parquet\noutput: {tmp_path}/out\n")
    assert read_output(tmp_path / "out").column("id").to_pylist() == ["a"]
    errs = sorted((e["location"], e["reason"]) for e in _errors(tmp_path / "out"))
    assert errs == [("row 1", "null 'id'"), ("row 2", "null 'text'")]
    assert res.stats["read"].dropped == {"empty_text": 1}


def test_a_100mb_document_passes_through(tmp_path, run):
    big = ("word " * 20_000_000).strip()  # 100 MB of text
    write_jsonl(tmp_path / "big.jsonl", [{"id": "big", "text": big}, {"id": "small", "text": prose(1)}])
    res = run(f"""
input: {tmp_path}/big.jsonl
output: {tmp_path}/out
stages:
  - length_filter: {{max_chars: 1000000}}
""")
    assert read_output(tmp_path / "out").column("id").to_pylist() == ["small"]
    assert res.stats["length_filter"].dropped == {"too_many_chars": 1}
