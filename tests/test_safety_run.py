"""Issue 9, `curate run`/`score`: natural mistakes never delete data, write outside the output or run another job.

Each test reproduces one finding through the real CLI (in-process, real Beam runner, real files).
"""
import glob
import hashlib
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from conftest import prose, read_output, write_jsonl

from curate.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*argv):
    return main([str(a) for a in argv])


def snapshot(folder) -> dict:
    """path -> sha1 of every file below ``folder``: proves nothing was touched."""
    out = {}
    for path in sorted(glob.glob(os.path.join(folder, "**"), recursive=True)):
        if os.path.isfile(path):
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = hashlib.sha1(f.read()).hexdigest()
    return out


@pytest.fixture
def corpus(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"id": f"a{i}", "text": prose(i)} for i in range(6)])
    write_jsonl(tmp_path / "b.jsonl", [{"id": f"b{i}", "text": prose(i + 10)} for i in range(4)])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"input: {tmp_path}/a.jsonl\noutput: {tmp_path}/out\nstages:\n  - length_filter: {{min_words: 5}}\n")
    return tmp_path, recipe


# ------------------------------------------------------------------ 1. output holds the input


def test_1_output_holding_the_input_is_refused_before_anything_is_deleted(corpus, capsys):
    tmp, recipe = corpus
    assert cli("run", recipe, "--quiet") == 0
    before = snapshot(tmp / "out")
    capsys.readouterr()
    rc = cli("run", recipe, "--input", f"{tmp}/out/data/*.parquet", "--output", tmp / "out", "--quiet")
    err = capsys.readouterr().err
    assert rc == 2 and "holds the input" in err and "Traceback" not in err
    assert snapshot(tmp / "out") == before  # the input (the earlier output) is intact


def test_output_inside_a_folder_input_and_a_foreign_data_folder_are_refused(corpus, capsys):
    tmp, recipe = corpus
    mine = tmp / "project"
    (mine / "data").mkdir(parents=True)
    (mine / "data" / "precious.parquet").write_bytes(b"not ours")
    rc = cli("run", recipe, "--output", mine, "--quiet")
    assert rc == 2 and "was not written by curate" in capsys.readouterr().err
    assert (mine / "data" / "precious.parquet").read_bytes() == b"not ours"
    rc = cli("run", recipe, "--input", f"{tmp}/**/*.jsonl", "--output", tmp / "sub" / "out", "--quiet")
    assert rc == 2 and "lies inside" in capsys.readouterr().err


# -------------------------------------------------------------- 3. stage names never reach paths


def test_3_a_stage_name_that_is_a_path_is_a_recipe_error(corpus, capsys):
    tmp, _ = corpus
    recipe = tmp / "evil.yaml"
    recipe.write_text(f"input: {tmp}/a.jsonl\noutput: {tmp}/deep/out\nstages:\n"
                      "  - length_filter: {min_words: 1000, name: '../../x'}\n")
    rc = cli("run", recipe, "--write-rejected", "--quiet")
    err = capsys.readouterr().err
    assert rc == 2 and f"{recipe}:4: stage name '../../x' is not a valid name" in err
    assert not glob.glob(str(tmp / "**" / "x-*"), recursive=True) and not (tmp / "deep").exists()


# ------------------------------------------------------------------------- 6. local dry run


def test_6_local_dry_run_builds_the_graph_and_touches_nothing(corpus, capsys):
    tmp, recipe = corpus
    assert cli("run", recipe, "--quiet") == 0
    before = snapshot(tmp / "out")
    capsys.readouterr()
    assert cli("run", recipe, "--input", tmp / "b.jsonl", "--dry_run=True", "--quiet") == 0
    out = capsys.readouterr().out
    assert "dry run on local" in out and "length_filter" in out and "nothing was read, written or submitted" in out
    assert snapshot(tmp / "out") == before
    assert cli("run", recipe, "--output", tmp / "new", "--dry_run=True", "--quiet") == 0
    assert not (tmp / "new").exists()


# ---------------------------------------------------- 7. every option is known, or it is an error


def test_7_unquoted_glob_reads_every_file(corpus):
    tmp, recipe = corpus
    assert cli("run", recipe, "--input", tmp / "a.jsonl", tmp / "b.jsonl", "--quiet") == 0
    assert len(read_output(tmp / "out")) == 10


@pytest.mark.parametrize("typo, suggestion", [
    (["--wokers", "2"], "--workers"),
    (["--outptu", "/tmp/x"], "--output"),
    (["--write_rejected"], "--write-rejected"),
    (["--temp_locaton", "/tmp/x"], "--temp_location"),
])
def test_7_unknown_options_are_errors_with_a_suggestion(corpus, capsys, typo, suggestion):
    tmp, recipe = corpus
    rc = cli("run", recipe, "--quiet", *typo)
    err = capsys.readouterr().err
    assert rc == 2 and f"did you mean {suggestion}?" in err
    assert not (tmp / "out").exists()


def test_7_beam_options_by_their_full_name_are_accepted(corpus):
    tmp, recipe = corpus
    assert cli("run", recipe, "--quiet", "--direct_running_mode", "in_memory", "--job_name=curate-test") == 0


def test_7_a_stray_value_is_an_error(corpus, capsys):
    tmp, _ = corpus
    assert cli("mix", "spec.yaml", "--output", tmp / "m", "extra") == 2
    assert "unexpected argument 'extra'" in capsys.readouterr().err


# ------------------------------------------------------------ 8. a mostly failed run is not exit 0


def test_8_wrong_text_key_fails_loudly_with_the_reason_on_the_terminal(corpus, capsys):
    tmp, _ = corpus
    recipe = tmp / "content.yaml"
    recipe.write_text(f"input: {{path: {tmp}/a.jsonl, text_key: content}}\noutput: {tmp}/out\n")
    rc = cli("run", recipe, "--quiet")
    cap = capsys.readouterr()
    assert rc == 4
    assert "missing field 'content' x6" in cap.out and "FAILED read: 6 of 6 documents were errors" in cap.out
    assert "the run mostly failed" in cap.err
    assert (tmp / "out" / "_INCOMPLETE").exists() and not (tmp / "out" / "_SUCCESS").exists()
    # a failed output is not read as if it were complete
    assert cli("run", recipe, "--input", tmp / "out", "--output", tmp / "out2", "--quiet") == 2
    assert "did not finish" in capsys.readouterr().err
    # the limit is the user's to raise
    assert cli("run", recipe, "--quiet", "--max-error-rate", "1") == 0
    assert (tmp / "out" / "_SUCCESS").exists() and not (tmp / "out" / "_INCOMPLETE").exists()


def test_8_wrong_html_key_in_score_fails(tmp_path, capsys):
    write_jsonl(tmp_path / "p.jsonl", [{"id": str(i), "html": f"<html><body><p>{prose(i)}</p></body></html>"} for i in range(3)])
    rc = cli("score", tmp_path / "p.jsonl", "--scorer", "length_filter", "--html-key", "page", "--output", tmp_path / "s", "--quiet")
    assert rc == 4 and "missing or null 'page'" in capsys.readouterr().out


def test_8_previous_run_folder_as_input_means_its_data(corpus, capsys):
    tmp, recipe = corpus
    assert cli("run", recipe, "--quiet") == 0
    assert cli("run", recipe, "--input", tmp / "out", "--output", tmp / "again", "--quiet") == 0
    again = read_output(tmp / "again")
    assert sorted(again.column("id").to_pylist()) == [f"a{i}" for i in range(6)]
    assert not read_output(tmp / "again", "errors").num_rows  # stats.json / _SUCCESS were never read as records
    # and a glob that matches stats.json beside the data does not read it either
    assert cli("run", recipe, "--input", f"{tmp}/out/*", "--output", tmp / "again2", "--quiet") == 2
    assert "not a data file" in capsys.readouterr().err


# --------------------------------------------------------------- 9. values checked before running


BAD_VALUES = [
    ("output: {{path: {out}, compression: lz77}}", "parameter 'compression' must be"),
    ("input: {{path: {inp}, batch_size: 0}}", "parameter 'batch_size' must be >= 1, got 0"),
    ("input: {{path: {inp}, batch_size: -3}}", "parameter 'batch_size' must be >= 1, got -3"),
    ("stages: [{{length_filter: {{min_words: -5}}}}]", "parameter 'min_words' must be >= 0, got -5"),
    ("stages: [{{exact_dedup: {{partitions: 0}}}}]", "parameter 'partitions' must be >= 1, got 0"),
    ("stages: [{{length_filter: {{min_words: 10, max_words: 5}}}}]", "min_words (10) is greater than max_words (5)"),
    ("stages: [{{sample: {{fraction: .nan}}}}]", "must be a finite number"),
]


@pytest.mark.parametrize("line, message", BAD_VALUES)
def test_9_bad_values_fail_validate_and_run_alike_and_keep_the_old_output(corpus, capsys, line, message):
    tmp, recipe = corpus
    assert cli("run", recipe, "--quiet") == 0
    before = snapshot(tmp / "out")
    parts = {"input": f"input: {tmp}/a.jsonl", "output": f"output: {tmp}/out", "stages": "stages: []"}
    key = line.split(":", 1)[0]
    parts[key] = line.format(out=tmp / "out", inp=tmp / "a.jsonl")
    bad = tmp / "bad.yaml"
    bad.write_text("\n".join(parts.values()) + "\n")
    capsys.readouterr()
    assert cli("validate", bad) == 2
    v = capsys.readouterr().err
    assert cli("run", bad, "--quiet") == 2
    r = capsys.readouterr().err
    assert message in v and message in r and f"{bad}:" in r and "Traceback" not in r
    assert snapshot(tmp / "out") == before


def test_9_cli_values(corpus, capsys):
    tmp, recipe = corpus
    (tmp / "file").write_text("x")
    (tmp / "data.txt").write_text("one document\n")
    for args, message in [(["--workers", "0"], "--workers: must be >= 1"), (["--workers", "-1"], "--workers: must be >= 1"),
                          (["--output", tmp / "file"], "is an existing file, not a folder"),
                          (["--input", tmp / "data.txt"], "cannot tell the format"),
                          (["--max-error-rate", "2"], "must be between 0 and 1")]:
        with pytest.raises(SystemExit) if "--workers" in args or "--max-error-rate" in args else _nothing():
            rc = cli("run", recipe, "--quiet", *args)
            assert rc == 2
        assert message in capsys.readouterr().err
    assert not (tmp / "out").exists()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# ----------------------------------------------------------------------------- smaller findings


def test_empty_text_reaches_rejected_and_duplicate_ids_name_their_file(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"id": "x", "text": prose(1)}, {"id": "e", "text": "   "}])
    write_jsonl(tmp_path / "b.jsonl", [{"id": "x", "text": prose(2)}])
    (tmp_path / "r.yaml").write_text(f"input: {tmp_path}/*.jsonl\noutput: {tmp_path}/out\n")
    assert cli("run", tmp_path / "r.yaml", "--write-rejected", "--quiet") == 0
    rej = read_output(tmp_path / "out", "rejected").to_pylist()
    assert [(r["id"], r["drop_stage"], r["drop_reason"]) for r in rej] == [("e", "read", "empty_text")]
    errs = read_output(tmp_path / "out", "errors").to_pylist()
    assert [(e["id"], e["reason"], os.path.basename(e["file"])) for e in errs] == [("x", "duplicate id", "b.jsonl")]


def test_killed_run_progress_folders_are_cleaned(corpus, tmp_path):
    import tempfile

    dead = os.path.join(tempfile.gettempdir(), "curate-progress-999999999")
    os.makedirs(dead, exist_ok=True)
    tmp, recipe = corpus
    assert cli("run", recipe) == 0
    assert not os.path.exists(dead)


def test_quiet_by_default_and_errors_not_wrapped(corpus):
    tmp, recipe = corpus
    r = subprocess.run([sys.executable, "-m", "curate.cli", "run", str(recipe), "--quiet"], capture_output=True,
                       text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0 and r.stderr == "", r.stderr  # no Beam/apitools warnings, no worker INFO lines
    long_name = "x" * 150
    r = subprocess.run([sys.executable, "-m", "curate.cli", "run", str(recipe), "--input", f"{tmp}/{long_name}.jsonl"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 2
    assert any(long_name in line and "matches no file" in line for line in r.stderr.splitlines())
    assert "Traceback" not in r.stderr


def test_a_complete_run_is_marked_and_a_killed_one_is_refused_as_input(corpus, capsys):
    tmp, recipe = corpus
    assert cli("run", recipe, "--quiet") == 0
    assert (tmp / "out" / "_SUCCESS").exists() and not (tmp / "out" / "_INCOMPLETE").exists()
    (tmp / "out" / "_SUCCESS").unlink()
    (tmp / "out" / "_INCOMPLETE").write_text("killed\n")  # what a run killed midway leaves
    for pattern in (tmp / "out", f"{tmp}/out/data/*.parquet"):
        assert cli("run", recipe, "--input", pattern, "--output", tmp / "next", "--quiet") == 2
        assert "did not finish" in capsys.readouterr().err
    assert cli("score", f"{tmp}/out/data/*.parquet", "--scorer", "length_filter", "--output", tmp / "s", "--quiet") == 2
    assert not (tmp / "next").exists()


def test_parquet_output_with_each_compression(corpus):
    tmp, _ = corpus
    for codec in ("none", "snappy", "gzip"):
        recipe = tmp / f"{codec}.yaml"
        recipe.write_text(f"input: {tmp}/a.jsonl\noutput: {{path: {tmp}/{codec}, compression: {codec}}}\n")
        assert cli("run", recipe, "--quiet") == 0
        assert pq.read_table(glob.glob(f"{tmp}/{codec}/data/*.parquet")[0]).num_rows == 6
