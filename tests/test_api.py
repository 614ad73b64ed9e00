"""The Python API: pipelines built and run from Python, their outputs as tables, any stage called on a
pyarrow.Table, and the same checks as recipes."""
import glob
import hashlib
import os
import runpy
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import prose, write_jsonl

import curate
from curate.core.recipe import RecipeError
from curate.core.stage import Filter, Mapper, Scorer
from curate.stages.length import LengthFilter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(kw_only=True)
class Fragile(Filter):
    """Raises on documents that say 'boom'; drops those that say 'drop'."""

    stage = "fragile"
    reason = "said_drop"

    def filter(self, batch, scores):
        texts = batch.column("text").to_pylist()
        if any("boom" in t for t in texts):
            raise ValueError("boom in the text")
        return np.array(["drop" not in t for t in texts])


@dataclass(kw_only=True)
class Upper(Mapper):
    """Upper-cases the text; a text of only 'x' becomes empty."""

    stage = "upper"

    def map(self, batch):
        return pc.utf8_upper(pc.replace_substring(batch.column("text"), "x", ""))


@dataclass(kw_only=True)
class Vowels(Scorer):
    """The number of vowels."""

    stage = "vowels"

    def score(self, batch):
        return {"n_vowels": pc.count_substring_regex(batch.column("text"), "[aeiou]")}


def _table(n=60):
    texts = [prose(i % 20, 1 + i % 4) for i in range(n)]
    ids = [f"doc-{i}" for i in range(n)]
    texts[3], texts[7] = None, "   "          # null text: an error of read; blank: dropped as empty_text
    ids[11] = ids[10]                          # a repeated id: an error of input_ids
    texts[13] = "boom " + texts[13]            # a rule raises on it: an error of that stage
    texts[17] = "drop " + texts[17]
    return pa.table({"id": ids, "text": texts, "lang": ["en"] * n, "quality": np.linspace(0, 1, n)})


def test_import_curate_does_not_import_beam():
    code = ("import sys, curate; assert not [m for m in sys.modules if m.startswith('apache_beam')]; "
            "p = curate.Pipeline; assert 'Pipeline' in dir(curate); print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_a_rule_on_a_table_accounts_for_every_row():
    t = _table()
    res = curate.apply(Fragile(), t)
    assert res.names == ["read", "input_ids", "fragile"] and res.ledger_ok
    s = res.stats
    assert (s["read"].n_in, s["read"].kept, s["read"].errors, s["read"].dropped) == (60, 58, 1, {"empty_text": 1})
    assert (s["input_ids"].kept, s["input_ids"].errors) == (57, 1)
    assert (s["fragile"].n_in, s["fragile"].kept, s["fragile"].errors, s["fragile"].dropped) == (57, 55, 1, {"said_drop": 1})
    expected = [f"doc-{i}" for i in range(60) if i not in (3, 7, 11, 13, 17)]
    assert res.kept.column("id").to_pylist() == expected
    assert res.kept.column_names == ["id", "text", "source", "url", "lang", "quality"]
    assert res.kept.column("source").unique().to_pylist() == ["table"]
    assert res.kept.column("quality").to_pylist() == [t.column("quality")[int(i.split("-")[1])].as_py() for i in expected]
    errors = {(e["stage"], e["id"], e["reason"]) for e in res.errors.to_pylist()}
    assert errors == {("read", "doc-3", "null 'text'"), ("input_ids", "doc-10", "duplicate id"),
                      ("fragile", "doc-13", "ValueError: boom in the text")}
    rejected = {(r["id"], r["drop_stage"], r["drop_reason"]) for r in res.rejected.to_pylist()}
    assert rejected == {("doc-7", "read", "empty_text"), ("doc-17", "fragile", "said_drop")}
    assert res.dropped() == {"empty_text": 1, "said_drop": 1}
    assert "fragile" in res.summary() and "said_drop 1" in res.summary()


def test_mappers_scorers_annotate_and_stage_names_on_a_table():
    t = pa.table({"text": ["abc x", "x", "hello", "a b c d e f g", "x x x"]})
    res = curate.apply([Upper(), Vowels(), ("short", curate.stage("length_filter", min_words=2, mode="annotate"))], t)
    assert res.ledger_ok
    assert res.stats["upper"].dropped == {"empty_after_upper": 2}
    assert res.kept.column("text").to_pylist() == ["ABC ", "HELLO", "A B C D E F G"]
    assert res.kept.column("n_vowels").to_pylist() == [0, 0, 0]  # upper-cased before it counted
    assert res.kept.column("short_reason").to_pylist() == [None, "too_few_words", None]
    assert res.stats["short"].flagged == {"too_few_words": 1} and res.stats["short"].kept == 3
    assert len(set(res.kept.column("id").to_pylist())) == 3  # ids derived, as the readers derive them
    # by name with parameters; reader options (text_key) travel with them
    res = curate.apply("length_filter", pa.table({"body": ["one two three", "one"]}), min_words=2, text_key="body")
    assert res.kept.column("text").to_pylist() == ["one two three"]
    assert res.stats["length_filter"].dropped == {"too_few_words": 1}


def _files(tmp_path, table):
    os.makedirs(tmp_path / "in", exist_ok=True)
    write_jsonl(tmp_path / "in" / "a.jsonl", [r for r in table.to_pylist() if r["text"] is not None])
    return str(tmp_path / "in" / "*.jsonl")


def test_a_global_stage_on_a_table_matches_a_run_over_files(tmp_path):
    n = 200
    texts = [prose(i % 37, 2 + i % 3) for i in range(n)]
    t = pa.table({"id": [f"d{i:03d}" for i in range(n)], "text": texts})
    stages = ["exact_dedup", LengthFilter(min_words=40), "line_dedup"]
    res = curate.apply(stages, t, batch_size=32)
    assert res.ledger_ok
    assert res.names == ["read", "input_ids", "exact_dedup", "length_filter", "line_dedup"]
    assert res.stats["exact_dedup"].dropped["exact_duplicate"] > 0
    ids = res.kept.column("id").to_pylist()
    assert ids == sorted(ids)  # the table's row order
    run = curate.Pipeline(stages).run(_files(tmp_path, t), tmp_path / "out", write_rejected=True, batch_size=32)
    assert run.ledger_ok and run.names == res.names
    assert sorted(run.data().column("id").to_pylist()) == ids
    assert sorted(run.rejected().column("id").to_pylist()) == sorted(res.rejected.column("id").to_pylist())
    for name in res.names[2:]:
        assert run.stats[name].dropped == res.stats[name].dropped, name


def _digest(out):
    h = hashlib.sha256()
    for part in ("data", "rejected", "errors"):
        for f in sorted(glob.glob(os.path.join(out, part, "*.parquet"))):
            h.update(os.path.basename(f).encode() + repr(pq.read_table(f).to_pylist()).encode())
    return h.hexdigest()


def test_pipeline_run_writes_what_the_same_recipe_writes(tmp_path, run):
    files = _files(tmp_path, _table(120))
    recipe = f"""
input: {{path: {files}, batch_size: 25}}
output: {{path: {tmp_path / 'yaml'}, write_rejected: true}}
stages:
  - length_filter: {{min_words: 30}}
  - exact_dedup: {{}}
  - sample: {{fraction: 0.7, seed: 3}}
"""
    ran = run(recipe)
    pipe = curate.Pipeline([{"length_filter": {"min_words": 30}}, "exact_dedup", curate.stage("sample", fraction=0.7, seed=3)])
    res = pipe.run(files, tmp_path / "py", write_rejected=True, batch_size=25)
    assert res.names == ran.names and res.ledger_ok and res.failed == []
    assert _digest(tmp_path / "py") == _digest(tmp_path / "yaml")
    assert res.documents_in == 119 and res.documents_out == ran.stats["write"].kept == res.data().num_rows
    assert res.errors().to_pylist()[0]["reason"] == "duplicate id"
    assert os.path.exists(tmp_path / "py" / "_SUCCESS") and "ledger balanced" in res.summary()
    assert res.data(columns=["id"]).column_names == ["id"]


def test_everything_given_from_python_is_checked_like_a_recipe(tmp_path):
    with pytest.raises(RecipeError, match=r"stage 'LengthFilter': parameter 'min_words' must be >= 0, got -1"):
        curate.Pipeline([LengthFilter(min_words=-1)])
    with pytest.raises(RecipeError) as e:
        curate.stage("length_filter", min_wrds=3)
    assert e.value.problems == ["stage 'length_filter': unknown parameter 'min_wrds' (did you mean 'min_words'?)"]
    with pytest.raises(RecipeError, match=r"unknown stage 'exact_dedupe' \(did you mean 'exact_dedup'\?\)"):
        curate.Pipeline(["exact_dedupe"])
    with pytest.raises(RecipeError, match="is not a stage class"):
        curate.Pipeline([dict])
    assert [n for n, _ in curate.Pipeline(["exact_dedup", "exact_dedup"]).stages] == ["exact_dedup", "exact_dedup_2"]
    with pytest.raises(RecipeError, match="stage names must be unique"):
        curate.Pipeline([("a", "exact_dedup"), ("a", "url_dedup")])
    with pytest.raises(RecipeError, match="is not a valid name"):
        curate.Pipeline([("../x", "exact_dedup")])
    pipe = curate.Pipeline([LengthFilter(min_words=3)])
    with pytest.raises(RecipeError, match=r"input: '.*nothing-\*\.jsonl' matches no file"):
        pipe.run(str(tmp_path / "nothing-*.jsonl"), tmp_path / "out")
    files = _files(tmp_path, _table(20))
    with pytest.raises(RecipeError, match="holds the input"):
        pipe.run(files, tmp_path)
    with pytest.raises(RecipeError, match="unknown parameter 'txt_key'"):
        pipe.run(files, tmp_path / "out", txt_key="body")
    with pytest.raises(RecipeError, match="unknown option"):
        pipe.apply(_table(20), txt_key="body")
    with pytest.raises(TypeError, match="apply takes a pyarrow.Table"):
        pipe.apply(42)
    assert not os.path.exists(tmp_path / "out")


def test_the_readme_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", ["api_quickstart.py", str(tmp_path / "out")])
    runpy.run_path(os.path.join(ROOT, "samples", "api_quickstart.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "ledger balanced: 342 in = " in out and "spam_word" in out
    assert "TableResult(" in out and "gopher_quality_reason" not in out
    assert os.path.exists(tmp_path / "out" / "_SUCCESS")


def test_a_table_without_its_text_column_is_refused_with_the_columns_it_has():
    with pytest.raises(ValueError, match=r"the table has no column 'text' \(columns: \['body'\]\); name the text column"):
        curate.apply("length_filter", pa.table({"body": ["a b"]}))
    with pytest.raises(ValueError, match="column 'text' has type int64, not string"):
        curate.apply("length_filter", pa.table({"text": [1, 2]}))
    empty = curate.apply("exact_dedup", pa.table({"text": pa.array([], pa.string())}))
    assert empty.kept.num_rows == 0 and empty.ledger_ok


def test_output_options_and_reading_jsonl_output(tmp_path):
    files = _files(tmp_path, _table(20))
    pipe = curate.Pipeline([LengthFilter(min_words=10)])
    res = pipe.run(files, tmp_path / "j", output_options={"format": "jsonl", "compression": "gzip"}, write_rejected=True)
    assert glob.glob(str(tmp_path / "j" / "data" / "*.jsonl.gz"))
    parquet = pipe.run(files, tmp_path / "p", write_rejected=True)
    assert res.data().column("id").to_pylist() == parquet.data().column("id").to_pylist()
    assert res.data(columns=["id"]).column_names == ["id"]
    assert sorted(res.rejected().column("id").to_pylist()) == sorted(parquet.rejected().column("id").to_pylist())
