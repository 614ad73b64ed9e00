"""curate score (annotate everything, drop nothing) and curate inspect (quantiles, drop rates, histograms)."""
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import prose, read_output, write_jsonl

from curate.core.recipe import RecipeError
from curate.core.runner import run_recipe
from curate.inspect import collect, quantile_table
from curate.score import score_recipe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _docs():
    return [{"id": f"d{i}", "text": prose(i, 1 + i % 9)} for i in range(60)] + [
        {"id": "fr", "text": "Le comité publiera la semaine prochaine son rapport annuel sur les bibliothèques."},
        {"id": "tiny", "text": "ok"}]


def test_score_keeps_every_document_and_adds_columns(tmp_path):
    write_jsonl(tmp_path / "in.jsonl", _docs())
    recipe = score_recipe([str(tmp_path / "in.jsonl")], ["lang_id", "length_filter"], str(tmp_path / "out"))
    res = run_recipe(recipe)
    out = read_output(tmp_path / "out")
    assert out.num_rows == 62 and res.stats["write"].kept == 62
    for col in ("lang", "lang_score", "n_chars", "n_words"):
        assert col in out.column_names
    rows = {r["id"]: r for r in out.to_pylist()}
    assert rows["fr"]["lang"] == "fr" and rows["tiny"]["n_words"] == 1
    with pytest.raises(RecipeError, match="did you mean 'lang_id'"):
        score_recipe([str(tmp_path / "in.jsonl")], ["lang_idd"], str(tmp_path / "x"))


def test_quantiles_and_drop_rates_are_exact():
    x = np.arange(1, 101, dtype=float)  # 1..100
    chars = np.full(100, 10.0)
    chars[-1] = 1010.0  # the highest-scoring document is long
    rows = {r["quantile"]: r for r in quantile_table(x, chars)}
    assert rows[0.5]["threshold"] == pytest.approx(50.5)
    assert rows[0.5]["docs_below"] == pytest.approx(0.5) and rows[0.5]["docs_above"] == pytest.approx(0.5)
    assert rows[1.0]["docs_below"] == pytest.approx(0.99) and rows[1.0]["chars_below"] == pytest.approx(990 / 2000)
    assert rows[0.0]["docs_above"] == pytest.approx(0.99) and rows[0.0]["chars_above"] == pytest.approx(1990 / 2000)


def test_cli_score_then_inspect_writes_report(tmp_path):
    write_jsonl(tmp_path / "in.jsonl", _docs())
    r = subprocess.run([sys.executable, "-m", "curate.cli", "score", str(tmp_path / "in.jsonl"), "--scorer", "lang_id",
                        "--scorer", "length_filter", "--output", str(tmp_path / "scored"), "--quiet"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "curate.cli", "inspect", str(tmp_path / "scored")], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "lang_score" in r.stdout and "n_words" in r.stdout and "quantile" in r.stdout
    report = tmp_path / "scored" / "inspect"
    html = (report / "index.html").read_text()
    assert "histograms/lang_score.png" in html and "<td>en</td>" in html
    png = (report / "histograms" / "n_words.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    cols, chars, counts = collect(str(tmp_path / "scored"))
    assert set(cols) >= {"lang_score", "n_chars", "n_words"} and counts["lang"]["en"] >= 60 and len(chars) == 62
