"""curate inspect: the one-screen summary, the stages' default thresholds, skipped columns, --json."""
import dataclasses
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import prose

from curate.cli import main
from curate.core.registry import all_stages
from curate.core.safety import SUCCESS
from curate.core.stage import apply_rule
from curate.inspect import _THRESHOLD_PARAMS, default_thresholds, summarize

JUNK = [
    "short one",
    "- a\n- b\n- c\n- d\n- e\n- f",
    "Wait for it... and more... and more... then... " * 12,
    "#tag #tag #tag words here #and #more #hash " * 10,
    "lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 10,
    "function f() { return 1; } " * 30,
    "The same line again and again.\n" * 40,
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa " * 20,
    "12 34 56 78 90 11 22 33 44 55 66 77 88 99 " * 20,
    prose(3, 8) + "\nThe set {a, b} is small, and it is the only bracket in this long document.",
    prose(5, 8) + "\nLorem ipsum dolor sit amet is all this line says, in a document that is otherwise fine.",
]


def _batch():
    texts = [prose(i, 1 + i % 12) for i in range(40)] + JUNK + ["\n".join(prose(i, 1) for i in range(12)) + "\n" + JUNK[1]]
    return pa.RecordBatch.from_pydict({"id": [f"d{i}" for i in range(len(texts))], "text": texts,
                                       "source": ["t"] * len(texts), "url": [None] * len(texts)})


def test_default_thresholds_are_the_registered_defaults_and_name_real_columns():
    registry = all_stages()
    th = default_thresholds()
    gq = registry["gopher_quality"]()
    assert {"kind": "min", "value": gq.min_doc_words} == {k: th["gopher_word_count"][0][k] for k in ("kind", "value")}
    assert th["gopher_word_count"][1]["value"] == gq.max_doc_words
    assert th["gopher_top_2_gram_char_frac"][0]["value"] == registry["gopher_repetition"]().top_ngrams[2]
    assert "n_chars" in th and all(t["param"] != "max_chars" for t in th["n_chars"])  # off by default: not drawn
    batch = _batch()
    for stage in sorted({p[0] for params in _THRESHOLD_PARAMS.values() for p in params}):
        cls = registry[stage]
        if any(f.name == "model" and f.default is dataclasses.MISSING for f in dataclasses.fields(cls)):
            continue  # a classifier: needs a trained model file
        obj = cls()
        obj.setup()
        produced = set(obj.score(batch))
        mapped = {c for c, params in _THRESHOLD_PARAMS.items() if any(p[0] == stage for p in params)}
        assert mapped <= produced, (stage, mapped - produced)


@pytest.mark.parametrize("stage", ["gopher_quality", "gopher_repetition", "fineweb_quality", "c4_quality"])
def test_dropped_at_default_matches_what_the_stage_itself_drops(stage):
    """The union of the per-column default thresholds drops exactly the documents the stage's own filter does."""
    obj = all_stages()[stage](add_scores=True)
    obj.setup()
    batch = _batch()
    out, mask, _ = apply_rule(obj, batch)
    th = default_thresholds()
    cols = {c: out.column(c).cast(pa.float64()).to_numpy(zero_copy_only=False) for c in out.column_names
            if c in th and any(t["stage"] == stage for t in th[c])}
    assert cols
    union = np.zeros(batch.num_rows, dtype=bool)
    for c, x in cols.items():
        for t in th[c]:
            if t["stage"] == stage:
                union |= (x < t["value"]) if t["kind"] == "min" else (x > t["value"])
    assert (~mask).any() and mask.any()  # the data exercises both outcomes
    assert np.array_equal(union, ~mask)


def test_summarize_counts_nulls_skips_null_and_constant_columns():
    x = np.array([1.0, 2.0, np.nan, 4.0, 100.0] * 20)
    cols = {"n_words": x, "empty": np.full(100, np.nan), "same": np.full(100, 3.0)}
    counts = {"lang": {"en": 60, "fr": 40}, "only": {"x": 100}, "length_filter_reason": {None: 90, "too_few_words": 10}}
    s = summarize(cols, np.ones(100), counts)
    (row,) = s["columns"]
    assert row["column"] == "n_words" and row["n"] == 80 and row["nulls"] == 20
    assert row["p50"] == pytest.approx(np.quantile(x[~np.isnan(x)], 0.5))
    assert s["skipped"] == {"empty": "all null", "same": "constant 3", "only": "constant 'x'"}
    assert s["flagged"]["length_filter"]["share"] == pytest.approx(0.1)
    assert row["dropped_at_default"] == 0.0  # length_filter.min_words defaults to 0: drops nothing


def _scored_run(root):
    n = 200
    rng = np.random.default_rng(0)
    words = rng.integers(1, 400, n).astype(float)
    words[0] = 50_000  # a long tail that the histogram clips
    table = pa.table({
        "id": [f"d{i}" for i in range(n)], "text": [prose(i, 1 + i % 4) for i in range(n)],
        "gopher_word_count": words, "gopher_stop_words": rng.integers(0, 9, n),
        "all_null": pa.nulls(n, pa.float64()), "constant": [7] * n,
        "lang": ["<b>en</b>" if i % 3 else "fr" for i in range(n)],
        "gopher_quality_reason": [None if i % 4 else "gopher_short_doc" for i in range(n)],
    })
    os.makedirs(root / "data")
    pq.write_table(table, root / "data" / "part-0.parquet")
    (root / "stats.json").write_text("{}")
    (root / SUCCESS).write_text("")
    return root, words


def test_cli_inspect_summary_html_and_json(tmp_path, capsys):
    run, words = _scored_run(tmp_path / "run")
    assert main(["inspect", str(run)]) == 0
    out = capsys.readouterr().out
    assert out.index("summary: 200 documents") < out.index("quantile")  # the summary comes first
    assert "gopher_quality.min_doc_words" in out and "skipped: all_null (all null), constant (constant 7)" in out
    assert "gopher_quality: flags 50 documents (25.0%)" in out
    page = (run / "inspect" / "index.html").read_text()
    assert page.index("<h2>summary</h2>") < page.index("<h2>gopher_word_count</h2>")
    assert "&lt;b&gt;en&lt;/b&gt;" in page and "<b>en</b>" not in page  # categorical values escaped
    assert "<h2>lang (top values)</h2>" in page and "<i>(null)</i>" in page
    # the 50,000 lies past p99.5: the histogram clips it and says so
    assert f"clipped at p99.5 = {np.quantile(words, 0.995):.4g}: 1 document above (max 5e+04)" in page
    assert "clipped at" not in page.split("<h2>gopher_stop_words</h2>")[1].split("<h2>")[0]
    pngs = sorted(os.listdir(run / "inspect" / "histograms"))
    assert pngs == ["gopher_stop_words.png", "gopher_word_count.png"]  # all-null and constant: no histogram
    assert main(["inspect", str(run), "--json", "--output", str(tmp_path / "r")]) == 0
    data = json.loads(capsys.readouterr().out)
    row = next(c for c in data["columns"] if c["column"] == "gopher_word_count")
    expected = float(((words < 50) | (words > 100_000)).mean())
    assert row["dropped_at_default"] == pytest.approx(expected) and row["n"] == 200 and row["nulls"] == 0
    assert row["p99"] == pytest.approx(np.quantile(words, 0.99))
    assert data["skipped"] == {"all_null": "all null", "constant": "constant 7"}
    assert data["categorical"]["lang"] == {"<b>en</b>": 133, "fr": 67}
    assert data["report"] == str(tmp_path / "r" / "index.html")
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["columns"] == data["columns"]
