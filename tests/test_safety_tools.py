"""Issue 9, tools: curate inspect, train-tokenizer, train-scorer and the lang_id stage refuse user
mistakes with one clear line (exit 2) and never write outside their output."""
import json
import os
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import prose, write_jsonl
from test_scorers import SMALL, _train_args, synthetic

from curate.cli import main
from curate.core.recipe import RecipeError, parse_recipe
from curate.core.safety import INCOMPLETE, SUCCESS, UserError
from curate.inspect import inspect
from curate.scorers import train as tr
from curate.stages import lang_id
from curate.stages.lang_id import LangId
from curate.tokenizer import train_tokenizer

EVIL = "q' onerror='alert(1)"
ESCAPE = "../../escaped"
FAST = [f"--{k}={v}" for k, v in (("epoch", 25), ("lr", 0.5), ("dim", 16), ("bucket", 20000), ("threads", 1))]


def _run_output(root, table: pa.Table, done: bool = True):
    """A folder laid out like a `curate run` output: data/part-0.parquet, stats.json and a marker."""
    os.makedirs(root / "data")
    pq.write_table(table, root / "data" / "part-0.parquet")
    (root / "stats.json").write_text("{}")
    (root / (SUCCESS if done else INCOMPLETE)).write_text("")
    return root


def _scored():
    n = 12
    return pa.table({"id": [f"d{i}" for i in range(n)], "text": [prose(i, 1 + i % 3) for i in range(n)],
                     ESCAPE: [float(i) for i in range(n)], EVIL: list(range(n)),
                     "lang": ["<script>alert(2)</script>" if i % 2 else "en" for i in range(n)]})


def _files_under(root) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs}


# ------------------------------------------------------------------------------ curate inspect


def test_inspect_column_names_cannot_escape_the_report_or_inject_html(tmp_path):
    run = _run_output(tmp_path / "work" / "run", _scored())
    before = _files_under(tmp_path)
    index = inspect(str(run))  # the default report folder, RUN/inspect, is beside data/: allowed
    assert index == str(run / "inspect" / "index.html")
    written = _files_under(tmp_path) - before
    assert written and all(p.startswith(os.path.join("work", "run", "inspect") + os.sep) for p in written), written
    assert not (tmp_path / "escaped.png").exists() and not (tmp_path / "work" / "escaped.png").exists()
    assert len([p for p in written if p.endswith(".png")]) == 2
    page = (run / "inspect" / "index.html").read_text()
    assert EVIL not in page and "onerror='" not in page and "<script>" not in page
    assert "q&#x27; onerror=&#x27;alert(1)" in page and "&lt;script&gt;alert(2)&lt;/script&gt;" in page
    for src in (part.split('"')[0] for part in page.split('src="')[1:]):
        assert src.startswith("histograms/") and ".." not in src and (run / "inspect" / unquote(src)).exists()


def test_inspect_refuses_partial_input_overlap_and_unknown_column(tmp_path, capsys):
    partial = _run_output(tmp_path / "partial", _scored(), done=False)
    with pytest.raises(UserError, match="did not finish"):
        inspect(str(partial))
    with pytest.raises(UserError, match="did not finish"):
        inspect(str(partial / "data" / "part-0.parquet"))
    assert not (partial / "inspect").exists()

    run = _run_output(tmp_path / "run", _scored())
    with pytest.raises(UserError, match="holds the input"):
        inspect(str(run), output=str(run / "data"))
    with pytest.raises(UserError, match="existing file"):
        inspect(str(run), output=str(run / "data" / "part-0.parquet"))
    # a file inside a run's data/: the default report goes to the run folder, never into data/
    inspect(str(run / "data" / "part-0.parquet"), columns=["lang"])
    assert os.listdir(run / "data") == ["part-0.parquet"] and (run / "inspect" / "index.html").exists()

    (tmp_path / "empty").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.parquet").write_text("not parquet")
    cases = [
        ([str(run), "--column", "lang_scor"], "--column 'lang_scor' is not in the input (did you mean 'lang'?"),
        ([str(tmp_path / "nope")], "no such file or folder"),
        ([str(tmp_path / "empty")], "no Parquet files"),
        ([str(tmp_path / "bad")], "cannot read the input as Parquet"),
        ([str(partial)], "did not finish"),
    ]
    for argv, message in cases:
        assert main(["inspect", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


# ------------------------------------------------------------------------------ curate train-tokenizer


def _corpus(path, key="text", n=40):
    return write_jsonl(path, [{"id": f"d{i}", key: prose(i, 2)} for i in range(n)])


def test_train_tokenizer_refuses_a_wrong_text_key_naming_the_fields(tmp_path, capsys):
    _corpus(tmp_path / "in.jsonl", key="body")
    with pytest.raises(UserError, match=r"no documents with text in field 'text'.*fields are id, body.*--text-key"):
        train_tokenizer([str(tmp_path / "in.jsonl")], str(tmp_path / "tok"), vocab_size=300)
    assert not (tmp_path / "tok").exists()
    assert main(["train-tokenizer", str(tmp_path / "in.jsonl"), "--vocab-size", "300", "--output", str(tmp_path / "tok")]) == 2
    assert "fields are id, body" in capsys.readouterr().err

    assert main(["train-tokenizer", str(tmp_path / "in.jsonl"), "--vocab-size", "300", "--text-key", "body",
                 "--limit-docs", "25", "--output", str(tmp_path / "tok")]) == 0
    assert "trained on 25 documents from 1 file" in capsys.readouterr().out
    tok = train_tokenizer([str(tmp_path / "in.jsonl")], str(tmp_path / "tok2"), vocab_size=300, text_key="body")
    assert tok.stats["docs"] == 40


def test_train_tokenizer_inputs_outputs_and_options(tmp_path, capsys):
    run = tmp_path / "run"
    os.makedirs(run / "data")
    _corpus(run / "data" / "part-0.jsonl", n=30)
    (run / "stats.json").write_text(json.dumps({"not": "a record"}))
    (run / SUCCESS).write_text("")
    tok = train_tokenizer([str(run)], str(tmp_path / "tok"), vocab_size=300)  # a run folder means its data/
    assert tok.stats["docs"] == 30 and tok.stats["files"] == [str(run / "data" / "part-0.jsonl")]

    (run / INCOMPLETE).write_text("")
    with pytest.raises(UserError, match="did not finish"):
        train_tokenizer([str(run)], str(tmp_path / "tok3"), vocab_size=300)
    os.remove(run / INCOMPLETE)

    (tmp_path / "empty.jsonl").write_text("")
    cases = [
        (["--output", str(run / "data")], "holds the input"),
        (["--output", str(run / "data" / "part-0.jsonl")], "existing file"),
        (["--vocab-size", "0"], "--vocab-size 0 is smaller"),
        (["--vocab-size", "-5"], "--vocab-size -5 is smaller"),
        (["--min-frequency", "-1"], "--min-frequency must be 0 or more"),
        (["--limit-docs", "0"], "--limit-docs must be at least 1"),
    ]
    for extra, message in cases:
        argv = ["train-tokenizer", str(run), "--vocab-size", "300", "--output", str(tmp_path / "t"), *extra]
        assert main(argv) == 2, extra
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    for inputs, message in (([str(tmp_path / "missing.jsonl")], "matched no files"),
                            ([str(tmp_path / "empty.jsonl")], "the input is empty")):
        assert main(["train-tokenizer", *inputs, "--vocab-size", "300", "--output", str(tmp_path / "t")]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


# ------------------------------------------------------------------------------ curate train-scorer


def _table(path, labels=("hate", "offensive", "neither")):
    texts, toxic = synthetic(120, 5)
    rows = ["tweet,label"] + [f'"{t}",{(labels[(i // 2) % 2] if y else labels[2])}' for i, (t, y) in enumerate(zip(texts, toxic))]
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def test_train_scorer_refuses_positive_values_that_match_no_label(tmp_path, capsys):
    data = _table(tmp_path / "t.csv")
    common = dict(kind="toxicity", data=data, text_column="tweet", output=str(tmp_path / "m.bin"), **SMALL)
    assert tr.run_train_scorer(_train_args(positive="hate,offensiv", **common)) == 2
    err = capsys.readouterr().err
    assert "'offensiv' matches no row (did you mean 'offensive'?)" in err and "hate (" in err and "neither (" in err
    assert not (tmp_path / "m.bin").exists()
    assert tr.run_train_scorer(_train_args(positive="toxic", **common)) == 2
    assert "--positive toxic matches no row's label" in capsys.readouterr().err
    with pytest.raises(UserError, match="did you mean 'offensive'"):
        tr.load_labeled(data, "tweet", "label", "Offensiv")

    assert tr.run_train_scorer(_train_args(positive="hate,offensive", **common)) == 0
    out = capsys.readouterr().out
    assert "positive: 60 documents (hate 30, offensive 30)" in out and "negative: 60 documents (neither 60)" in out
    side = json.loads((tmp_path / "m.bin.json").read_text())
    assert side["data"]["documents"] == {"positive": {"hate": 30, "offensive": 30}, "negative": {"neither": 60}}


def test_train_scorer_refuses_one_class_zero_documents_and_overwriting_inputs(tmp_path, capsys):
    data = _table(tmp_path / "t.csv")
    common = dict(kind="toxicity", text_column="tweet", **SMALL)
    texts, toxic = synthetic(40, 1)
    write_jsonl(tmp_path / "pos.jsonl", [{"text": t} for t, y in zip(texts, toxic) if y])
    (tmp_path / "empty.jsonl").write_text("")
    cases = [  # (arguments, message)
        (dict(data=data, positive="hate,offensive,neither", output=str(tmp_path / "m.bin")), "cannot train on one class"),
        (dict(positive_data=str(tmp_path / "pos.jsonl"), negative_data=str(tmp_path / "empty.jsonl"), text_column="text",
              output=str(tmp_path / "m.bin")), "0 from --negative-data"),
        (dict(data=data, positive="hate", output=data), "would overwrite the input"),
        (dict(data=data, positive="hate", output=str(tmp_path)), "is a folder"),
        (dict(data=data, positive="hate", output=str(tmp_path / "m.bin"), epoch=0), "--epoch must be at least 1"),
        (dict(data=data, positive="hate", output=str(tmp_path / "m.bin"), valid_fraction=1.5), "--valid-fraction"),
    ]
    for kw, message in cases:
        code = tr.run_train_scorer(_train_args(**{**common, **kw}))
        err = capsys.readouterr().err
        assert code == 2 and message in err and "Traceback" not in err, (kw, err)
    assert (tmp_path / "t.csv").read_text().startswith("tweet,label")

    # a partial curate output is refused as training data; a finished one means its data/
    run = tmp_path / "run"
    os.makedirs(run / "data")
    write_jsonl(run / "data" / "part-0.jsonl", [{"text": t} for t, y in zip(texts, toxic) if not y])
    (run / INCOMPLETE).write_text("")
    args = dict(kind="quality", positive_data=str(tmp_path / "pos.jsonl"), negative_data=str(run),
                output=str(tmp_path / "q.bin"), **SMALL)
    assert tr.run_train_scorer(_train_args(**args)) == 2
    assert "did not finish" in capsys.readouterr().err
    os.remove(run / INCOMPLETE)
    (run / SUCCESS).write_text("")
    (run / "stats.json").write_text("{}")
    assert tr.run_train_scorer(_train_args(**args)) == 0
    assert "negative: 20 documents" in capsys.readouterr().out


def test_train_scorer_cli_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "r.yaml").write_text("kind: [unclosed\n")
    for argv in (["--recipe", str(tmp_path / "r.yaml")],
                 ["--recipe", str(tmp_path / "missing.yaml")],
                 ["toxicity", "--data", str(tmp_path / "missing.csv"), "--positive", "x"]):
        assert main(["train-scorer", *argv, *FAST]) == 2, argv
        err = [ln for ln in capsys.readouterr().err.strip().splitlines() if not ln.startswith("training the")]
        assert len(err) == 1 and err[0].startswith("error: "), err


# ------------------------------------------------------------------------------ lang_id


def _recipe(stage: str) -> str:
    return f"input: in.jsonl\noutput: out\nstages:\n  - length_filter: {{}}\n  - lang_id: {stage}\n"


def test_lang_id_languages_are_checked_against_the_model_at_load_time(tmp_path):
    with pytest.raises(RecipeError) as e:
        parse_recipe(_recipe("{languages: [english, fr, Deutsch, xx]}"), "r.yaml", check_inputs=False)
    text = "\n".join(e.value.problems)
    assert "r.yaml:5:" in text and "'english' is not a language code of lid.176 (did you mean 'en'?)" in text
    assert "'xx' is not a language code" in text and "'fr'" not in text
    with pytest.raises(RecipeError, match=r"min_score key 'German' .*did you mean 'de'"):
        parse_recipe(_recipe("{min_score: {en: 0.5, German: 0.4, default: 0.2}}"), "r.yaml", check_inputs=False)
    with pytest.raises(RecipeError, match="r.yaml:5: .*language-id model not found"):
        parse_recipe(_recipe(f"{{model: {tmp_path / 'missing.bin'}}}"), "r.yaml", check_inputs=False)
    with pytest.raises(RecipeError, match="drop every document"):
        parse_recipe(_recipe("{languages: []}"), "r.yaml", check_inputs=False)
    with pytest.raises(ValueError, match="did you mean 'en'"):
        LangId(languages=["EN"])
    recipe = parse_recipe(_recipe("{languages: [en, fr], min_score: {en: 0.5, default: 0.3}}"), "r.yaml", check_inputs=False)
    assert recipe.stages[-1][0] == "lang_id"
    # the labels are loaded once per process, and only when languages or a per-language min_score is given
    model_labels = lang_id.model_labels
    model_labels.cache_clear()
    LangId(min_score=0.5)
    assert model_labels.cache_info().currsize == 0
    LangId(languages=["en"])
    LangId(languages=["de"], min_score={"de": 0.4})
    info = model_labels.cache_info()
    assert info.misses == 1 and info.hits == 1 and "en" in model_labels(lang_id.resolve_lid_model("lid.176"))
