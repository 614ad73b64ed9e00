"""line_dedup: lines in more than N documents go, the rest stays, short leftovers are dropped."""
from conftest import prose, read_output, write_jsonl


def _docs():
    nav = "Home | About | Contact"
    cookie = "This site uses cookies to improve your experience."
    docs = []
    for i in range(6):
        body = prose(i, 3)
        extra = [cookie] if i < 3 else []  # in 3 documents only
        docs.append({"id": f"d{i}", "text": "\n".join([nav, body, *extra, nav, "  Home |  About | Contact "])})
    docs.append({"id": "short", "text": nav + "\nHi"})
    return docs


def test_frequent_lines_removed_everywhere(tmp_path, run):
    write_jsonl(tmp_path / "a.jsonl", _docs())
    res = run(f"""
input: {tmp_path}/a.jsonl
output: {{path: {tmp_path}/out, write_rejected: true}}
stages:
  - line_dedup: {{max_doc_frequency: 3, min_chars: 10}}
""")
    out = {r["id"]: r["text"] for r in read_output(tmp_path / "out").to_pylist()}
    # the nav line is in 7 documents (several times in some: counted once each, whitespace folded)
    assert "Home" not in "".join(out.values())
    assert out["d0"] == prose(0, 3) + "\nThis site uses cookies to improve your experience."  # 3 docs: kept
    assert out["d4"] == prose(4, 3)
    assert "short" not in out
    (rej,) = read_output(tmp_path / "out", "rejected").to_pylist()
    assert rej["id"] == "short" and rej["drop_reason"] == "too_short_after_line_dedup" and rej["text"] == "Hi"
    assert res.stats["line_dedup"].dropped == {"too_short_after_line_dedup": 1}


def test_lowercase_paragraph_mode_and_annotate(tmp_path, run):
    docs = [{"id": f"p{i}", "text": f"{prose(i, 2)}\n\nSUBSCRIBE to our newsletter\nfor weekly news\n\n{prose(i + 1, 1)}"}
            for i in range(4)]
    docs[0]["text"] = docs[0]["text"].replace("SUBSCRIBE", "subscribe")
    write_jsonl(tmp_path / "a.jsonl", docs)
    run(f"""
input: {tmp_path}/a.jsonl
output: {tmp_path}/out
stages:
  - line_dedup: {{unit: paragraph, max_doc_frequency: 3, lowercase: true}}
""")
    out = {r["id"]: r["text"] for r in read_output(tmp_path / "out").to_pylist()}
    assert out["p0"] == f"{prose(0, 2)}\n\n{prose(1, 1)}"
    run(f"""
input: {tmp_path}/a.jsonl
output: {tmp_path}/out2
stages:
  - line_dedup: {{unit: paragraph, max_doc_frequency: 2, mode: annotate}}
""")
    rows = {r["id"]: r for r in read_output(tmp_path / "out2").to_pylist()}
    assert rows["p0"]["line_dedup_removed"] == 0 and rows["p1"]["line_dedup_removed"] == 1  # case matters: only 3 exact copies
    assert rows["p1"]["text"] == docs[1]["text"]


def test_kept_lines_are_rebuilt_from_byte_ranges():
    """`_keep_lines` (runs of kept lines copied from the original buffer) equals joining the kept lines."""
    import random

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from curate.stages.line_dedup import _keep_lines

    rng = random.Random(0)
    for _ in range(1000):
        docs = ["\n".join(rng.choice(["a", "bb", "", "ccc é", " x ", "\r"]) for _ in range(rng.randint(1, 5)))
                for _ in range(rng.randint(1, 6))]
        arr = pa.array(docs, type=rng.choice([pa.string(), pa.large_string()]))
        if len(docs) > 2 and rng.random() < 0.3:
            arr = arr.slice(1, len(docs) - 1)
        parts = pc.split_pattern(arr, "\n")
        offsets = parts.offsets.to_numpy().astype(np.int64)
        flat = parts.flatten().to_pylist()
        keep = np.array([rng.random() < 0.6 for _ in flat], dtype=bool)
        want = ["\n".join(flat[i] for i in range(offsets[d], offsets[d + 1]) if keep[i]) for d in range(len(arr))]
        assert _keep_lines(arr, offsets, keep).to_pylist() == want
