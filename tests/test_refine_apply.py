"""`prox_apply` and `curate refine apply`: given programs executed on the real runner."""
import glob
import json
import os
import subprocess
import sys

import pyarrow.parquet as pq

from curate.core.recipe import parse_recipe
from curate.core.runner import run_recipe

DOCS = [
    {"id": "a", "text": "Title line\nBuy now!!! click here\nThe first real sentence of the article is here and it goes on.\n"
                        "Another good line with plenty of words to keep the ratio high enough.\nFooter: copyright 2024"},
    {"id": "b", "text": "spam spam spam\nmore spam"},
    {"id": "c", "text": "A document without any program at all, it stays as it is."},
    {"id": "d", "text": "Teh quick brown fox jumps over the lazy dog and keeps running far away from here."},
    {"id": "e", "text": "garbled program doc with enough words in it to be meaningful text overall ok"},
    {"id": "f", "text": "Teh quick brown fox jumps over the lazy dog and keeps running far away from here."},
    {"id": "g", "text": "two programs name this document, so which one is right cannot be known here at all"},
]
PROGRAMS = [
    {"id": "a", "program": "remove_lines(line_start=0, line_end=1)\nremove_lines(line_start=4, line_end=4)"},
    {"id": "b", "program": "drop_doc()"},
    {"id": "d", "program": 'normalize(source_str="Teh", target_str="The")'},
    {"id": "e", "program": "import os\nos.system('touch /tmp/pwned')\nremove_lines(1, 0)"},
    {"id": "f", "program": 'normalize("Teh", "The")'},  # positional: the same edit as d's
    {"id": "g", "program": "drop_doc()"},
    {"id": "g", "program": "keep_doc()"},
    {"id": "nobody", "program": "drop_doc()"},
]


def _write(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def _rows(folder):
    out = {}
    for f in sorted(glob.glob(os.path.join(folder, "*.parquet"))):
        for r in pq.read_table(f).to_pylist():
            out[r["id"]] = r
    return out


def test_programs_are_joined_by_id_and_executed(tmp_path):
    _write(tmp_path / "docs.jsonl", DOCS)
    _write(tmp_path / "programs.jsonl", PROGRAMS)
    out = tmp_path / "out"
    # prox_apply, then exact dedup in the same chain: dedup must see the refined text (d and f become equal)
    recipe = parse_recipe(f"input: {{path: {tmp_path / 'docs.jsonl'}}}\noutput: {{path: {out}, write_rejected: true}}\n"
                          f"stages:\n  - prox_apply: {{programs: {tmp_path / 'programs.jsonl'}}}\n  - exact_dedup: {{}}\n", "<t>")
    res = run_recipe(recipe)
    data, rejected = _rows(out / "data"), _rows(out / "rejected")
    assert data["a"]["text"] == DOCS[0]["text"].split("\n", 2)[2].rsplit("\n", 1)[0]
    assert data["a"]["prox_action"] == "refined" and data["a"]["prox_program"].count("remove_lines") == 2
    assert rejected["b"]["drop_reason"] == "prox_drop_doc" and rejected["b"]["text"] == DOCS[1]["text"]
    assert data["c"]["text"] == DOCS[2]["text"] and data["c"]["prox_action"] == "no_program"
    assert data["d"]["text"].startswith("The quick") and data["d"]["prox_program"] == 'normalize(source_str="Teh", target_str="The")'
    assert rejected["f"]["drop_reason"] == "exact_duplicate"  # refined f == refined d: the smaller id survives
    assert data["e"]["text"] == DOCS[4]["text"] and data["e"]["prox_action"] == "unchanged" and data["e"]["prox_invalid"] == 3
    assert not os.path.exists("/tmp/pwned")
    assert "g" not in data and "g" not in rejected  # two programs for one id: an error with its reason
    errors = _rows(out / "errors")
    assert errors["g"]["reason"] == "two programs for one id"
    st = res.stats["prox_apply"]
    assert (st.n_in, st.kept, st.errors) == (7, 5, 1) and st.dropped == {"prox_drop_doc": 1}
    assert res.info["prox_apply_programs_unmatched"] == 1


def test_refine_apply_command(tmp_path):
    _write(tmp_path / "docs.jsonl", DOCS[:5])
    _write(tmp_path / "programs.jsonl", PROGRAMS[:5])
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "curate", "refine", "apply", str(tmp_path / "docs.jsonl"), "--programs",
                        str(tmp_path / "programs.jsonl"), "--output", str(out), "--quiet"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "ledger balanced: 5 in = 4 written + 1 dropped + 0 errors" in p.stdout
    stats = json.load(open(out / "stats.json"))
    (st,) = [s for s in stats["stages"] if s["name"] == "prox_apply"]
    assert st["dropped"] == {"prox_drop_doc": 1}
    bad = subprocess.run([sys.executable, "-m", "curate", "refine", "apply", str(tmp_path / "docs.jsonl"), "--programs",
                          str(tmp_path / "nope.jsonl"), "--output", str(tmp_path / "o2")], capture_output=True, text=True)
    assert bad.returncode == 2 and "nope.jsonl" in bad.stdout + bad.stderr
