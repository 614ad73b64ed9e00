"""curate mix output safety (issue 9): names never become paths, only the mix's own files are removed,
outputs overlapping inputs and partial inputs are refused, completion markers, every spec value
checked up front, ``--plan``, and a crashed mix re-run giving the same output."""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import textwrap

import pyarrow.parquet as pq
import pytest
from test_mix import _bins, _spec, corpus  # noqa: F401  (corpus is a fixture)

from curate.cli import main
from curate.core.recipe import RecipeError
from curate.core.safety import INCOMPLETE, SUCCESS, UserError, begin_output, check_complete, finish_output
from curate.mix import pipeline
from curate.mix.pipeline import run_mix
from curate.mix.spec import parse_spec

SMALL = {"total_tokens": 20000, "heldout_tokens": 500}


def _small(root, **over):
    return _spec(root, **{**SMALL, **over})


def _tree(folder) -> dict[str, bytes]:
    out = {}
    for dirpath, _, files in os.walk(folder):
        for f in files:
            with open(os.path.join(dirpath, f), "rb") as fh:
                out[os.path.relpath(os.path.join(dirpath, f), folder)] = fh.read()
    return out


def _spec_file(path, root, body: str) -> str:
    path.write_text(f"tokenizer: {root / 'tok'}\n" + textwrap.dedent(body))
    return str(path)


# ------------------------------------------------------------------------------------ names


def test_phase_and_domain_names_that_are_paths_are_spec_problems(corpus):
    """A phase named ../victim deleted a sibling folder, one named . the whole output: now spec problems."""
    root, _ = corpus
    text = textwrap.dedent(f"""\
        tokenizer: {root / 'tok'}
        seq_length: 64
        total_tokens: 1000
        domains:
          a: {{path: {root / 'a'}}}
          ../b: {{path: {root / 'b'}}}
          .: {{path: {root / 'c'}}}
        phases:
          - {{name: ../victim, fraction: 0.25, weights: {{a: 1}}}}
          - name: .
            fraction: 0.25
            weights: {{a: 1}}
          - {{name: valid, fraction: 0.25, weights: {{a: 1}}}}
          - {{name: _tmp, fraction: 0.25, weights: {{a: 1}}}}
        """)
    with pytest.raises(RecipeError) as e:
        parse_spec(text, "mix.yaml")
    msg = str(e.value)
    assert "mix.yaml:6: domain name '../b' is not a valid name" in msg
    assert "mix.yaml:7: domain name '.' is not a valid name" in msg
    assert "mix.yaml:9: phase 1: name '../victim' is not a valid name" in msg
    assert "mix.yaml:10: phase 2: name '.' is not a valid name" in msg
    assert "mix.yaml:13: phase 3: name 'valid' is reserved" in msg
    assert "mix.yaml:14: phase 4: name '_tmp' is reserved" in msg
    # phase names differing only in case would share a folder on macOS/Windows
    with pytest.raises(RecipeError, match="phase names must be unique"):
        parse_spec(json.dumps({"tokenizer": "t", "seq_length": 8, "total_tokens": 10, "domains": {"a": "x"},
                               "phases": [{"name": "Base", "fraction": 0.5, "weights": {"a": 1}},
                                          {"name": "base", "fraction": 0.5, "weights": {"a": 1}}]}))


def test_run_mix_refuses_path_names_set_in_code(corpus, tmp_path):
    """A spec changed in code after parsing cannot make run_mix write or delete outside its output."""
    root, _ = corpus
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    (victim / "shard-00000.bin").write_text("looks like a shard, is not ours")
    for bad in ("../victim", ".", "valid"):
        spec = _small(root)
        spec.phases[0].name = bad
        with pytest.raises(UserError, match="phase name"):
            run_mix(spec, str(tmp_path / "out"))
    spec = _small(root)
    spec.domains["../victim"] = spec.domains.pop("c")
    with pytest.raises(UserError, match="domain name"):
        run_mix(spec, str(tmp_path / "out"))
    assert _tree(victim) == {"keep.txt": b"precious", "shard-00000.bin": b"looks like a shard, is not ours"}
    assert not (tmp_path / "out").exists()


def test_rerun_removes_only_the_mix_files(corpus, tmp_path):
    """Re-running (with a phase renamed) removes the earlier shards, manifest and scratch -- nothing of the user's."""
    root, _ = corpus
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "mine").mkdir()
    (out / "mine" / "shard-00000.bin").write_text("mine too")
    (out / "base").mkdir()
    (out / "base" / "README").write_text("about the base phase")
    first = run_mix(_small(root), str(out)).manifest
    assert (out / "base" / "README").read_text() == "about the base phase"  # was: rmtree of the phase folder
    assert (out / "base" / "shard-00000.bin").exists() and (out / "anneal" / "shard-00000.bin").exists()
    assert first["valid"] and (out / SUCCESS).exists() and not (out / INCOMPLETE).exists()
    assert not (out / "_tmp").exists()

    spec = _small(root)
    spec.phases[1].name = "late"
    second = run_mix(spec, str(out)).manifest
    assert [ph["name"] for ph in second["phases"]] == ["base", "late"]
    assert not (out / "anneal").exists()  # the earlier manifest's phase: its shards removed, then the empty folder
    files = set(_tree(out))
    assert {"notes.txt", "mine/shard-00000.bin", "base/README", SUCCESS, "manifest.json"} <= files
    written = {p + ext for ph in second["phases"] for p in ph["shards"] for ext in (".bin", ".idx", ".domains.npy")}
    written |= {v["prefix"] + ext for v in second["valid"].values() for ext in (".bin", ".idx", ".domains.npy")}
    assert files == {"notes.txt", "mine/shard-00000.bin", "base/README", SUCCESS, "manifest.json"} | written
    assert (out / "notes.txt").read_text() == "mine" and (out / "base" / "README").read_text() == "about the base phase"


def test_things_in_the_way_are_refused_before_the_output_is_touched(corpus, tmp_path):
    """A scratch folder the mix did not make, or a file where a phase folder goes: refused, earlier mix intact."""
    root, _ = corpus
    out = tmp_path / "out"
    run_mix(_small(root), str(out))
    before = _tree(out)
    (out / "_tmp").mkdir()
    (out / "_tmp" / "mine.txt").write_text("not scratch")
    with pytest.raises(UserError, match="did not write"):
        run_mix(_small(root), str(out))
    shutil.rmtree(out / "_tmp")
    spec = _small(root)
    spec.phases[1].name = "notes"
    (out / "notes").write_text("a file of the user's")
    with pytest.raises(UserError, match="in the way"):
        run_mix(spec, str(out))
    os.remove(out / "notes")
    assert _tree(out) == before  # still the complete earlier mix, _SUCCESS and all


# --------------------------------------------------------------------------- inputs and outputs


def test_output_overlapping_an_input_is_refused_before_anything_is_deleted(corpus, tmp_path):
    root, _ = corpus
    dom = tmp_path / "dom"
    shutil.copytree(root / "c", dom)
    before = _tree(dom)
    spec = _small(root, phases=None, weights={"c": 1}, total_tokens=3000,
                  domains={"c": {"path": str(dom), "max_epochs": 4}})
    for out in (dom, dom / "mix", tmp_path):  # the input itself, inside it, holding it
        with pytest.raises(UserError, match="--output"):
            run_mix(spec, str(out))
        assert _tree(dom) == before
    assert not (tmp_path / INCOMPLETE).exists() and not (dom / "mix").exists()
    # a glob input: an output that holds its folder is refused too
    spec = _small(root, phases=None, weights={"c": 1}, total_tokens=3000,
                  domains={"c": {"path": str(dom / "*.parquet"), "max_epochs": 4}})
    with pytest.raises(UserError, match="holds"):
        run_mix(spec, str(dom))
    assert _tree(dom) == before


def test_partial_curate_output_as_domain_is_refused(corpus, tmp_path):
    """A domain read from a `curate run` output that did not finish is refused; a finished one means its data/."""
    root, _ = corpus
    run = tmp_path / "run"
    shutil.copytree(root / "c", run / "data")
    begin_output(str(run), "run")
    spec_for = lambda path: _small(root, phases=None, weights={"c": 1}, total_tokens=3000,  # noqa: E731
                                   domains={"c": {"path": path, "max_epochs": 4}})
    for path in (str(run), str(run / "data"), str(run / "data" / "*.parquet")):
        with pytest.raises(UserError, match=f"did not finish.*{INCOMPLETE}"):
            run_mix(spec_for(path), str(tmp_path / "mix"))
        assert main(["mix", _spec_file(tmp_path / "m.yaml", root, f"""\
            seq_length: 64
            total_tokens: 3000
            weights: {{c: 1}}
            domains:
              c: {{path: '{path}'}}
            """), "--output", str(tmp_path / "mix"), "--plan"]) == 2
    assert not (tmp_path / "mix").exists()
    finish_output(str(run))
    (run / "stats.json").write_text(json.dumps({"not": "a record"}))
    m = run_mix(spec_for(str(run)), str(tmp_path / "mix")).manifest
    assert m["domains"]["c"]["path"] == [str(run / "data")]
    assert m["domains"]["c"]["documents_in"] == pq.read_table(str(root / "c")).num_rows
    assert m["domains"]["c"]["errors"] == 0


def test_mix_output_is_marked_incomplete_until_it_finishes(corpus, tmp_path):
    root, _ = corpus
    out = tmp_path / "out"
    run_mix(_small(root), str(out))
    check_complete(str(out))
    assert (out / SUCCESS).exists() and not (out / INCOMPLETE).exists()
    with pytest.raises(ValueError, match="cannot be realized"):  # an impossible mixture: shards gone, marked partial
        run_mix(_small(root, total_tokens=400000), str(out))
    assert (out / INCOMPLETE).exists() and not (out / SUCCESS).exists() and not (out / "_tmp").exists()
    with pytest.raises(UserError, match="did not finish"):
        check_complete(str(out))


def test_crashed_mix_rerun_gives_the_same_output(corpus, tmp_path, monkeypatch):
    """A mix that dies after writing some shards (with a half-written shard left) and is re-run: same shards."""
    root, _ = corpus
    run_mix(_small(root), str(tmp_path / "clean"))
    real, calls = pipeline.write_indexed, []

    def dies_on_second_shard(prefix, *a, **k):
        calls.append(prefix)
        if len(calls) == 2:
            raise RuntimeError("killed")
        real(prefix, *a, **k)

    out = tmp_path / "out"
    monkeypatch.setattr(pipeline, "write_indexed", dies_on_second_shard)
    with pytest.raises(Exception, match="killed"):
        run_mix(_small(root), str(out))
    monkeypatch.setattr(pipeline, "write_indexed", real)
    # the failed mix stays marked unfinished; its scratch is removed on the way out (try/finally)
    assert (out / INCOMPLETE).exists() and not (out / "_tmp").exists() and not (out / "manifest.json").exists()
    assert _bins(out)  # the first shard was written
    (out / "base").mkdir(exist_ok=True)
    (out / "base" / "shard-00007.bin.0123abcd.tmp").write_bytes(b"half a shard")  # what a kill leaves
    run_mix(_small(root), str(out))
    assert _bins(out) == _bins(tmp_path / "clean")
    assert set(_tree(out)) == set(_tree(tmp_path / "clean"))
    assert (out / SUCCESS).exists() and not (out / INCOMPLETE).exists()


# ------------------------------------------------------------------------------------- spec values


def _problems(text: str) -> str:
    with pytest.raises(RecipeError) as e:
        parse_spec(textwrap.dedent(text), "m.yaml")
    return str(e.value)


def _has(msg: str, line: int, pattern: str) -> None:
    assert re.search(rf"^m\.yaml:{line}: .*{pattern}", msg, re.M), (line, pattern, msg)


def test_every_spec_value_is_checked_with_its_line():
    """Out-of-range values, bad where clauses, unknown keys at any depth: all reported at once, each at its line."""
    msg = _problems("""\
        tokenizer: tok
        seq_len: 64
        seq_length: 1
        total_tokens: 0
        seed: -1
        heldout_tokens: -5
        shard_tokens: 0
        batch_size: 0
        eos_token: 5
        domains:
          web: {path: x, max_epochs: 0}
          news: {path: y, max_epochs: .nan}
          books: {path: z, weight: 2}
          blogs: {path: w, where: "score >= 0.5 or lang == 'en'"}
        phases:
          - {name: base, fraction: 0.5, weights: {web: .inf, news: -1, newz: 1}}
          - {name: mid, fraction: 1.5, weight: {web: 1}}
          - {name: late, upsample: {web: .nan, bookz: 2}}
          - {name: last, fraction: 0.5, tokens: {books: 1}}
        """)
    for line, pattern in [
        (2, "unknown parameter 'seq_len' .*did you mean 'seq_length'"), (3, "seq_length.* must be >= 2"),
        (4, "total_tokens.* must be >= 1"), (5, "seed.* must be >= 0"), (6, "heldout_tokens.* must be >= 0"),
        (7, "shard_tokens.* must be >= 1"), (8, "batch_size.* must be >= 1"), (9, "eos_token.* must be str"),
        (11, "domain 'web': .*max_epochs.*> 0"), (12, "domain 'news': .*max_epochs.*finite"),
        (13, "domain 'books': unknown parameter 'weight'"), (14, "domain 'blogs': .*where clause"),
        (16, "weights.* finite"), (16, "unknown domain 'newz' .*did you mean 'news'"),
        (17, "fraction.*1.5"), (17, "unknown parameter 'weight' .*did you mean 'weights'"),
        (18, "upsample.* finite"), (18, "unknown domain 'bookz' .*did you mean 'books'"),
        (19, "token targets takes no fraction"),
    ]:
        _has(msg, line, pattern)
    # values checked once their types are right
    msg = _problems("""\
        tokenizer: tok
        seq_length: 64
        total_tokens: 100
        eos_token: ""
        domains:
          web: {path: x, format: csv}
          news: {path: y, where: "score >> 3"}
          books: {path: z, text_key: ""}
        phases:
          - {name: base, fraction: 0, weights: {web: 1}}
          - {name: late, fraction: 1, upsample: {books: 2}}
        """)
    for line, pattern in [(4, "eos_token.* must not be empty"), (6, "domain 'web': format must be one of"),
                          (7, "domain 'news': .*where clause 'score >> 3'"),
                          (8, "domain 'books': text_key must be a column name"), (10, "fraction must be in \\(0, 1\\]")]:
        _has(msg, line, pattern)


def test_top_level_weights_and_zero_weights_are_spec_problems():
    """Negative top-level weights raised a bare ValueError (no file:line); weights that end up all zero gave NaN."""
    base = {"tokenizer": "t", "seq_length": 8, "total_tokens": 10, "domains": {"a": "x", "b": "y"}}
    with pytest.raises(RecipeError, match=r"s.yaml:\d+: .*weights.* >= 0"):
        parse_spec(json.dumps({**base, "weights": {"a": -1, "b": 1}}), "s.yaml")
    with pytest.raises(RecipeError, match=r"weights name unknown domain\(s\) \['bb'\] \(did you mean 'bb' -> 'b'"):
        parse_spec(json.dumps({**base, "weights": {"a": 1, "bb": 1}}), "s.yaml")
    with pytest.raises(RecipeError, match="phase 'late': upsampled weights sum to 0"):
        parse_spec(json.dumps({**base, "phases": [{"name": "base", "fraction": 0.5, "weights": {"a": 1}},
                                                  {"name": "late", "fraction": 0.5, "upsample": {"a": 0}}]}), "s.yaml")
    with pytest.raises(RecipeError, match="phase 'p': token targets sum to 0"):
        parse_spec(json.dumps({**base, "phases": [{"name": "p", "tokens": {"a": 0}}]}), "s.yaml")
    with pytest.raises(RecipeError, match="unknown top-level key 'source_file'"):
        parse_spec(json.dumps({**base, "weights": {"a": 1}, "source_file": "x"}), "s.yaml")


# -------------------------------------------------------------------------------------- --plan


def test_plan_prints_the_plan_and_writes_nothing(corpus, tmp_path, capsys, monkeypatch):
    root, _ = corpus
    scratch = tmp_path / "system-tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    spec = _spec_file(tmp_path / "mix.yaml", root, f"""\
        seq_length: 64
        total_tokens: 20000
        heldout_tokens: 500
        seed: 7
        domains:
          a: {{path: {root / 'a'}, max_epochs: 2}}
          c: {{path: {root / 'c'}, max_epochs: 3}}
        phases:
          - {{name: base, fraction: 0.8, weights: {{a: 0.75, c: 0.25}}}}
          - {{name: anneal, fraction: 0.2, upsample: {{c: 3}}}}
        """)
    out = tmp_path / "out"
    assert main(["mix", spec, "--output", str(out), "--plan"]) == 0
    text = capsys.readouterr().out
    assert "nothing written" in text
    assert not out.exists() and os.listdir(scratch) == []
    lines = {tuple(line.split()[:2]): line.split()[2:] for line in text.splitlines()}
    assert lines[("base", "a")] == ["12,000", "0.750", lines[("base", "a")][2]]
    assert lines[("anneal", "c")][:2] == ["2,000", "0.500"]
    assert "domain c:" in text and "held out" in text and "tokens available" in text
    # the plan is the one a real run follows
    assert main(["mix", spec, "--output", str(out)]) == 0
    capsys.readouterr()
    m = json.loads((out / "manifest.json").read_text())
    for ph in m["phases"]:
        for d, r in ph["domains"].items():
            assert lines[(ph["name"], d)][0] == f"{r['requested_tokens']:,}"
            assert lines[(ph["name"], d)][2] == f"{r['realized_tokens'] / m['domains'][d]['available_tokens']:.2f}" \
                or abs(float(lines[(ph["name"], d)][2]) - r["epochs"]) < 0.02
    for d, r in m["domains"].items():
        assert f"{r['available_tokens']:,} tokens available, {r['heldout_tokens']:,} held out" in text
    # --plan on a finished mix leaves it as it is; --plan needs no --output; a mix without --plan does
    before = _tree(out)
    assert main(["mix", spec, "--output", str(out), "--plan"]) == 0
    assert main(["mix", spec, "--plan"]) == 0
    assert _tree(out) == before and os.listdir(scratch) == []
    capsys.readouterr()
    assert main(["mix", spec]) == 2
    assert "needs --output" in capsys.readouterr().err


def test_plan_of_an_impossible_mixture_fails_like_a_run(corpus, tmp_path, capsys):
    root, _ = corpus
    spec = _spec_file(tmp_path / "mix.yaml", root, f"""\
        seq_length: 32
        total_tokens: 5000000
        weights: {{c: 1}}
        domains:
          c: {{path: {root / 'c'}}}
        """)
    assert main(["mix", spec, "--output", str(tmp_path / "p"), "--plan"]) == 2
    planned = capsys.readouterr().err
    assert main(["mix", spec, "--output", str(tmp_path / "r")]) == 2
    ran = capsys.readouterr().err
    assert "domain 'c' runs short by" in planned and planned == ran
    assert not (tmp_path / "p").exists()
