"""Readers: every format, splitting, and that a split read equals a whole read."""
import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard
from conftest import prose, read_output, write_jsonl

from curate.io.readers import InputSpec, read_shard, split_file


def _docs(n, offset=0):
    return [{"id": f"d{offset + i}", "text": prose(i), "url": f"https://example.org/{i}", "meta": {"k": i}} for i in range(n)]


def _read_all(path, spec):
    import os

    shards = split_file(0, path, os.path.getsize(path), spec)
    rows, errors = [], []
    for sh in shards:
        for kind, item in read_shard(sh, spec):
            if kind == "batch":
                rows += item.to_pylist()
            else:
                errors += item.errors
    return shards, rows, errors


def test_jsonl_byte_ranges_equal_whole_file(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", _docs(500))
    whole_shards, whole, _ = _read_all(path, InputSpec(path=[path]))
    split_shards, split, _ = _read_all(path, InputSpec(path=[path], split_bytes=997, batch_size=7))
    assert len(whole_shards) == 1 and len(split_shards) > 50
    assert [r["id"] for r in split] == [r["id"] for r in whole] == [f"d{i}" for i in range(500)]
    assert split == whole


def test_parquet_row_group_split_and_columns(tmp_path):
    table = pa.Table.from_pylist(_docs(300))
    path = str(tmp_path / "a.parquet")
    pq.write_table(table, path, row_group_size=50)
    shards, rows, errors = _read_all(path, InputSpec(path=[path], split_bytes=1))
    assert len(shards) == 6 and not errors
    assert [r["id"] for r in rows] == [f"d{i}" for i in range(300)]
    assert rows[7]["text"] == prose(7) and rows[7]["url"] == "https://example.org/7"


def test_compressed_and_arrow_and_column_mapping(tmp_path):
    docs = [{"doc_id": i, "body": prose(i), "lang": "en"} for i in range(50)]
    gz = write_jsonl(tmp_path / "a.jsonl.gz", docs, gzip.open)
    zst = tmp_path / "a.jsonl.zst"
    zst.write_bytes(zstandard.ZstdCompressor().compress("".join(json.dumps(d) + "\n" for d in docs).encode()))
    arrow = str(tmp_path / "a.arrow")
    with pa.OSFile(arrow, "wb") as f, pa.ipc.new_file(f, pa.Table.from_pylist(docs).schema) as w:
        for s in range(0, 50, 10):
            w.write_table(pa.Table.from_pylist(docs[s : s + 10]))
    for path in (gz, str(zst), arrow):
        spec = InputSpec(path=[path], text_key="body", id_key="doc_id", split_bytes=1)
        _, rows, errors = _read_all(path, spec)
        assert not errors, path
        assert [r["id"] for r in rows] == [str(i) for i in range(50)], path
        assert rows[3]["text"] == prose(3) and rows[3]["lang"] == "en" and rows[3]["source"] == "a"


def test_derived_ids_are_stable_and_unique(tmp_path):
    docs = [{"text": "same text"}, {"text": "same text"}, {"text": "other"}]
    path = write_jsonl(tmp_path / "noid.jsonl", docs)
    _, rows1, _ = _read_all(path, InputSpec(path=[path]))
    _, rows2, _ = _read_all(path, InputSpec(path=[path]))
    ids = [r["id"] for r in rows1]
    assert len(set(ids)) == 3 and ids == [r["id"] for r in rows2]


def test_html_column_extraction(tmp_path, run):
    html = "<html><head><title>t</title></head><body><nav>Home | About</nav><article><h1>Bridges</h1>" + "".join(
        f"<p>{prose(i, 3)}</p>" for i in range(4)) + "</article><footer>Copyright</footer></body></html>"
    pq.write_table(pa.table({"id": ["p1", "p2"], "html": [html, "<html><body></body></html>"]}), tmp_path / "pages.parquet")
    res = run(f"""
input: {{path: {tmp_path}/pages.parquet, html_key: html}}
output: {tmp_path}/out
""")
    out = read_output(tmp_path / "out")
    assert out.column("id").to_pylist() == ["p1"]
    assert PROSE_START in out.column("text")[0].as_py()
    assert "html" not in out.column_names
    assert res.stats["read"].dropped == {"no_extracted_text": 1}


PROSE_START = "The river had risen overnight"


def test_vectorized_and_per_line_paths_agree(tmp_path):
    """A clean file takes the pyarrow.json path; one bad line sends it through the per-line path.
    Both must give the same documents, with the same derived ids."""
    docs = [{"text": prose(i), "n": i, "meta": {"a": i}} for i in range(200)]
    clean = write_jsonl(tmp_path / "clean.jsonl", docs)
    lines = open(clean).read()
    (tmp_path / "dirty.jsonl").write_text(lines + "{broken\n")
    _, fast_rows, fast_err = _read_all(clean, InputSpec(path=[clean]))
    dirty = str(tmp_path / "dirty.jsonl")
    _, slow_rows, slow_err = _read_all(dirty, InputSpec(path=[dirty]))
    assert not fast_err and len(slow_err) == 1 and slow_err[0]["location"] == "line 201"
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("id", "source")} for r in rows]  # noqa: E731
    assert strip(fast_rows) == strip(slow_rows)
    # derived ids hash the file name too: compare on a copy with the same name
    (tmp_path / "d2").mkdir()
    (tmp_path / "d2" / "clean.jsonl").write_text(lines + "{broken\n")
    _, slow2, _ = _read_all(str(tmp_path / "d2" / "clean.jsonl"), InputSpec(path=["x"]))
    assert [r["id"] for r in slow2] == [r["id"] for r in fast_rows]


def test_chunked_reading_matches_whole_reads(tmp_path, monkeypatch):
    """Shards are parsed in chunks of whole lines; chunk boundaries must not change anything."""
    import curate.io.readers as R

    docs = [{"id": f"d{i}", "text": prose(i, 1 + i % 7)} for i in range(300)]
    path = write_jsonl(tmp_path / "a.jsonl", docs)
    gz = write_jsonl(tmp_path / "a.jsonl.gz", docs, gzip.open)
    _, whole, _ = _read_all(path, InputSpec(path=[path]))
    monkeypatch.setattr(R, "CHUNK_BYTES", 777)
    for p, split in ((path, 1 << 30), (path, 5000), (gz, 1 << 30)):
        _, rows, errors = _read_all(p, InputSpec(path=[p], split_bytes=split))
        assert not errors and [r["text"] for r in rows] == [r["text"] for r in whole]
