"""--limit N on run/score (the first N documents, read at the reader), `curate stats merge`, and the progress
lines of the long commands (mix passes, tokenizer training, downstream evaluation)."""
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import prose, read_output, write_jsonl

from curate.core.recipe import parse_recipe
from curate.core.report import merge_stats
from curate.core.runner import run_recipe
from curate.core.safety import UserError
from curate.io.readers import InputSpec, read_first

def _corpus(folder):
    """b.jsonl and a.jsonl of 20 records each (a.jsonl: a blank text at line 3, bad JSON at line 5), and a
    z.jsonl.gz that is not gzip at all: a limited read that stops before it never sees it."""
    folder.mkdir(exist_ok=True)
    a = [{"id": f"a{i}", "text": prose(i, 1 + i % 5)} for i in range(20)]
    a[2]["text"] = "   "
    write_jsonl(folder / "b.jsonl", [{"id": f"b{i}", "text": prose(i, 2)} for i in range(20)])
    lines = [json.dumps(r) for r in a]
    lines.insert(4, "{not json")
    (folder / "a.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "z.jsonl.gz").write_bytes(b"\x1f\x8b this is not a gzip stream at all" * 10)
    return str(folder / "*.jsonl*")


RECIPE = """
input:
  path: {inp}
output: {out}
stages:
  - length_filter:
      min_words: 40
"""


def _ids(out):
    t = read_output(out)
    return sorted(t.column("id").to_pylist()) if t.num_rows else []


def test_limit_reads_the_first_documents_in_sorted_file_order(tmp_path):
    inp = _corpus(tmp_path / "in")
    out = tmp_path / "out"
    recipe = parse_recipe(RECIPE.format(inp=inp, out=out), "<test>")
    recipe.input.limit = 25
    res = run_recipe(recipe)
    read = res.stats["read"]
    # a.jsonl first: 19 documents of its 20 records (one blank), then the first 6 of b.jsonl; bad JSON is an error
    assert read.kept == 25 and read.dropped == {"empty_text": 1} and read.errors == 1 and read.n_in == 27
    assert not res.problems and res.stats["length_filter"].n_in == 25
    kept_ids = set(_ids(out))
    first25 = [f"a{i}" for i in range(20) if i != 2] + [f"b{i}" for i in range(6)]
    assert kept_ids <= set(first25) and kept_ids  # the filter drops some, never anything past the 25th
    dropped = res.stats["length_filter"].n_dropped
    assert len(kept_ids) + dropped == 25
    stats = json.loads((out / "stats.json").read_text())
    assert stats["limit"] == 25 and stats["documents_in"] == 27 and stats["ledger_ok"]
    # the corrupt z.jsonl.gz was never opened: no error from it
    assert not any("z.jsonl.gz" in (e.get("example") or "") for e in stats["top_errors"])


def test_without_limit_the_same_input_reads_everything(tmp_path):
    inp = _corpus(tmp_path / "in")
    res = run_recipe(parse_recipe(RECIPE.format(inp=inp, out=tmp_path / "out"), "<test>"))
    assert res.stats["read"].kept == 39 and res.stats["read"].errors == 2  # bad JSON + the corrupt gzip
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["limit"] is None
    # the recipe may say it too (input.limit); a limit below 1 is refused before anything is written
    recipe = parse_recipe(RECIPE.format(inp=inp, out=tmp_path / "out2").replace("output:", "  limit: 0\noutput:"), "<t>")
    assert recipe.input.limit == 0
    with pytest.raises(UserError, match="input limit .* must be a whole number >= 1, got 0"):
        run_recipe(recipe)
    assert not (tmp_path / "out2").exists()


def test_read_first_stops_inside_a_parquet_row_group_and_is_deterministic(tmp_path):
    t = pa.table({"id": [f"p{i:03d}" for i in range(500)], "text": [prose(i, 1) for i in range(500)]})
    pq.write_table(t, tmp_path / "x.parquet", row_group_size=100)
    spec = InputSpec(path=[str(tmp_path / "x.parquet")], limit=137, batch_size=64)
    batches = [item for kind, item in read_first(spec) if kind == "batch"]
    ids = [i for b in batches for i in b.column("id").to_pylist()]
    assert ids == [f"p{i:03d}" for i in range(137)]
    reports = [item for kind, item in read_first(spec) if kind == "report"]
    assert sum(r.n_in for r in reports) == 137 and len(reports) == 1  # one shard (one split) read, then stop
    with pytest.raises(ValueError, match="limit of at least 1"):
        list(read_first(InputSpec(path=[str(tmp_path / "x.parquet")])))


def test_cli_run_and_score_with_limit(tmp_path, capsys):
    from curate.cli import main

    inp = _corpus(tmp_path / "in")
    (tmp_path / "r.yaml").write_text(RECIPE.format(inp=inp, out=tmp_path / "out"))
    assert main(["run", str(tmp_path / "r.yaml"), "--limit", "10", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "limited" in out and "first 10 documents" in out
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["limit"] == 10
    with pytest.raises(SystemExit) as e:
        main(["run", str(tmp_path / "r.yaml"), "--limit", "0"])
    assert e.value.code == 2 and "--limit: must be >= 1, got 0" in capsys.readouterr().err
    assert main(["score", str(tmp_path / "in" / "b.jsonl"), "--scorer", "length_filter", "--output",
                 str(tmp_path / "scored"), "--limit", "7", "--quiet"]) == 0
    assert _ids(tmp_path / "scored") == sorted(f"b{i}" for i in range(7))


def _two_runs(tmp_path):
    outs = []
    for k in range(2):
        folder = tmp_path / f"in{k}"
        folder.mkdir()
        write_jsonl(folder / "x.jsonl", [{"id": f"{k}-{i}", "text": prose(i, 1 + i % 6)} for i in range(30 + 10 * k)]
                    + [{"id": f"{k}-empty", "text": ""}])
        out = tmp_path / f"out{k}"
        run_recipe(parse_recipe(RECIPE.format(inp=folder / "x.jsonl", out=out), "<test>"))
        outs.append(out)
    return outs


def test_stats_merge_sums_the_ledgers(tmp_path):
    a, b = _two_runs(tmp_path)
    sa, sb = (json.loads((o / "stats.json").read_text()) for o in (a, b))
    merged = merge_stats([str(a), str(b / "stats.json")])
    assert merged["runs"] == 2 and merged["ledger_ok"]
    assert merged["documents_in"] == sa["documents_in"] + sb["documents_in"] == 72
    for m, x, y in zip(merged["stages"], sa["stages"], sb["stages"]):
        assert m["name"] == x["name"] == y["name"]
        assert m["in"] == x["in"] + y["in"] and m["kept"] == x["kept"] + y["kept"] and m["errors"] == x["errors"] + y["errors"]
        for reason in set(x["dropped"]) | set(y["dropped"]):
            assert m["dropped"][reason] == x["dropped"].get(reason, 0) + y["dropped"].get(reason, 0)
    lf = next(s for s in merged["stages"] if s["name"] == "length_filter")
    assert lf["dropped"]["too_few_words"] > 0
    with pytest.raises(UserError, match="each run once"):
        merge_stats([str(a), str(a / "stats.json")])


def test_stats_merge_refuses_other_recipes_unless_told(tmp_path):
    a, b = _two_runs(tmp_path)
    other = tmp_path / "other"
    run_recipe(parse_recipe(f"input:\n  path: {tmp_path / 'in0' / 'x.jsonl'}\noutput: {other}\nstages:\n  - gopher_quality: {{}}\n",
                            "<other>"))
    with pytest.raises(UserError, match="not of the same recipe") as e:
        merge_stats([str(a), str(other)])
    assert "gopher_quality" in str(e.value) and "--allow-mismatch" in str(e.value)
    merged = merge_stats([str(a), str(b), str(other)], allow_mismatch=True)
    names = [s["name"] for s in merged["stages"]]
    assert names[0] == "read" and names[-1] == "write" and {"length_filter", "gopher_quality"} <= set(names)
    assert merged["ledger_ok"] and merged["mismatch_allowed"]
    bad = tmp_path / "bad.json"
    bad.write_text('{"stages": [{"name": "read", "in": -3}]}')
    with pytest.raises(UserError, match="bad.json: stage 'read'"):
        merge_stats([str(a), str(bad)])


def test_cli_stats_merge(tmp_path, capsys):
    from curate.cli import main

    a, b = _two_runs(tmp_path)
    out = tmp_path / "merged.json"
    assert main(["stats", "merge", str(a), str(b), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "balanced" in printed and "72 in" in printed and "length_filter" in printed
    assert json.loads(out.read_text())["documents_in"] == 72
    assert main(["stats", "merge", str(a), str(b), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["runs"] == 2
    assert main(["stats", "merge", str(a), str(b), "--output", str(a / "stats.json")]) == 2
    assert "one of the stats.json files read" in capsys.readouterr().err
    assert main(["stats", "merge", str(a), str(tmp_path / "nowhere")]) == 2
    assert "nowhere: no stats.json" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ progress


def test_step_lines_off_a_terminal(monkeypatch):
    import io

    from curate.core import progress

    out = io.StringIO()
    with progress.Step("work", stream=out, every=0.0) as step:
        step.update(3)
        step.update(2, detail="half way")
    lines = out.getvalue().splitlines()
    assert lines[0] == "work ..." and lines[1].startswith("work: 3 docs") and lines[2].startswith("work: 5 docs")
    assert lines[-1].startswith("work: done in ") and lines[-1].endswith("(5 docs, half way)")
    out = io.StringIO()
    with pytest.raises(RuntimeError):
        with progress.Step("boom", stream=out, every=0):
            raise RuntimeError("x")
    assert out.getvalue().splitlines()[-1].startswith("boom: failed in ")
    out = io.StringIO()  # by default, off a terminal, a quick step says nothing (errors stay one line)
    with progress.Step("quick", stream=out) as step:
        step.update(4)
    assert out.getvalue() == ""
    # counts that Beam workers report through progress.add (a fresh folder per step), env restored after
    monkeypatch.delenv("CURATE_PROGRESS_DIR", raising=False)
    out = io.StringIO()
    with progress.Step("pass", stream=out, workers=True) as step:
        folder = os.environ["CURATE_PROGRESS_DIR"]
        progress.add("read", 7)
        progress.flush()
    assert step.n == 7 and "CURATE_PROGRESS_DIR" not in os.environ and not os.path.exists(folder)
    monkeypatch.setenv("CURATE_PROGRESS", "0")
    out = io.StringIO()
    with progress.Step("quiet", stream=out) as step:
        step.update(1)
    assert out.getvalue() == ""


@pytest.fixture
def tok_and_mix(tmp_path, capsys, monkeypatch):
    """`curate train-tokenizer` and `curate mix` on 120 documents, with every step's lines on (stderr returned)."""
    from curate.cli import main

    monkeypatch.setenv("CURATE_PROGRESS_EVERY", "0")  # every step says when it starts and ends, however quick
    write_jsonl(tmp_path / "c.jsonl", [{"id": f"c{i}", "text": prose(i, 3)} for i in range(120)])
    assert main(["train-tokenizer", str(tmp_path / "c.jsonl"), "--vocab-size", "300", "--output", str(tmp_path / "tok")]) == 0
    err = capsys.readouterr().err
    (tmp_path / "mix.yaml").write_text(f"tokenizer: {tmp_path / 'tok'}\nseq_length: 32\ntotal_tokens: 3000\n"
                                       f"weights: {{c: 1}}\ndomains:\n  c: {{path: {tmp_path / 'c.jsonl'}}}\n")
    assert main(["mix", str(tmp_path / "mix.yaml"), "--output", str(tmp_path / "mixed")]) == 0
    return err, capsys.readouterr().err


def test_tokenizer_and_mix_print_progress(tok_and_mix):
    tok_err, err = tok_and_mix
    assert "train-tokenizer: read documents and learn 300 tokens ..." in tok_err
    assert "train-tokenizer: read documents and learn 300 tokens: done in" in tok_err and "(120 docs)" in tok_err
    assert "mix: pass 1 of 2, read and tokenize 1 domain(s): done in" in err and "(120 docs)" in err
    assert "mix: pass 2 of 2, sample, shuffle, pack and write shards: done in" in err and "shard(s)" in err


@pytest.mark.usefixtures("one_torch_thread")
def test_evaluation_prints_a_line_per_task(tmp_path, capsys, monkeypatch):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from curate.tokenizer import train_tokenizer
    from curate.train.evaluate import evaluate_tasks

    write_jsonl(tmp_path / "c.jsonl", [{"id": f"c{i}", "text": prose(i, 3)} for i in range(60)])
    tok = train_tokenizer([str(tmp_path / "c.jsonl")], str(tmp_path / "tok"), vocab_size=300)
    monkeypatch.setenv("CURATE_PROGRESS_EVERY", "0")
    task = tmp_path / "copa.jsonl"
    write_jsonl(task, [{"query": f"Sentence {i} is", "choices": [" short", " long"], "gold": i % 2} for i in range(6)])
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=tok.vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    model = transformers.LlamaForCausalLM(config)
    res = evaluate_tasks(model, tok.tokenizer, [str(task)])
    err = capsys.readouterr().err
    assert "eval: task 1 of 1, copa ..." in err
    assert "eval: task 1 of 1, copa: done in" in err and f"(6 examples, acc {res['copa']['acc']:.3f}" in err


def test_summary_rate_is_readable_at_any_size():
    from curate.core.report import _rate

    assert [_rate(x) for x in (12345.6, 123.4, 12.34, 0.3278, 0.0)] == ["12,346", "123", "12.3", "0.33", "0"]
