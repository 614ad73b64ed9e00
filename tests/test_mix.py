"""curate mix: realized shares per phase, epoch caps, determinism, Megatron's own reader, errors."""
from __future__ import annotations

import gzip
import json
import os
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.core.recipe import RecipeError
from curate.mix.indexed import IndexedReader
from curate.mix.pipeline import pack, run_mix, _Payload
from curate.mix.spec import MixError, parse_spec
from curate.tokenizer import load_tokenizer, train_tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = [os.path.join(ROOT, "samples", "corpus", f) for f in ("web-0.jsonl", "web-1.jsonl", "web-2.jsonl.gz")]


def _paragraphs(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        for line in f:
            for p in json.loads(line)["text"].split("\n"):
                if len(p) > 40:
                    yield p


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Three domains of real paragraphs (from the sample corpus), each a Parquet dataset with a score column."""
    root = tmp_path_factory.mktemp("mixdata")
    for name, path in zip(("a", "b", "c"), SAMPLES):
        paras = list(_paragraphs(path))
        if name == "c":
            paras = paras[:120]  # a small domain that the mixture must repeat
        rng = np.random.default_rng(len(paras))
        table = pa.table({"id": [f"{name}-{i}" for i in range(len(paras))], "text": paras,
                          "score": rng.random(len(paras))})
        os.makedirs(root / name)
        half = len(paras) // 2
        pq.write_table(table.slice(0, half), root / name / "part-0.parquet")
        pq.write_table(table.slice(half), root / name / "part-1.parquet")
    tok = train_tokenizer([str(root / "a"), str(root / "b")], str(root / "tok"), vocab_size=600)
    return root, tok


def _spec(root, **over):
    spec = {
        "tokenizer": str(root / "tok"), "seq_length": 64, "total_tokens": 60000, "seed": 7, "heldout_tokens": 1500,
        "shard_tokens": 20000,
        "domains": {"a": {"path": str(root / "a"), "max_epochs": 2},
                    "b": {"path": str(root / "b"), "max_epochs": 2},
                    "c": {"path": str(root / "c"), "max_epochs": 3}},
        "phases": [{"name": "base", "fraction": 0.8, "weights": {"a": 0.5, "b": 0.3, "c": 0.2}},
                   {"name": "anneal", "fraction": 0.2, "upsample": {"c": 4}}],
    }
    spec.update(over)
    return parse_spec(json.dumps(spec), "test-spec")


def _bins(out):
    data = {}
    for dirpath, _, files in os.walk(out):
        for f in sorted(files):
            if f.endswith((".bin", ".idx", ".npy")):
                with open(os.path.join(dirpath, f), "rb") as fh:
                    data[os.path.relpath(os.path.join(dirpath, f), out)] = fh.read()
    return data


@pytest.fixture(scope="module")
def mixed(corpus, tmp_path_factory):
    root, _ = corpus
    out = tmp_path_factory.mktemp("mix1")
    res = run_mix(_spec(root), str(out))
    return out, res.manifest


def test_realized_shares_within_one_percent(mixed):
    _, m = mixed
    expected = {"base": {"a": 0.5, "b": 0.3, "c": 0.2}, "anneal": {"a": 0.5 / 1.6, "b": 0.3 / 1.6, "c": 0.8 / 1.6}}
    for ph in m["phases"]:
        for d, want in expected[ph["name"]].items():
            r = ph["domains"][d]
            assert abs(r["realized_share"] - want) < 0.01, (ph["name"], d, r)
            assert abs(r["requested_share"] - want) < 1e-9
            # packing drops at most one partial sequence per domain and shard
            assert r["realized_tokens"] - r["packed_tokens"] < 64 * len(ph["shards"])
        assert abs(ph["realized_tokens"] - ph["requested_tokens"]) <= 3  # rounding of the phase boundaries
    assert [ph["name"] for ph in m["phases"]] == ["base", "anneal"]
    assert sum(ph["requested_tokens"] for ph in m["phases"]) == 60000
    assert len(m["phases"][0]["shards"]) == 3  # 48,000 tokens / 20,000 per shard


def test_epochs_within_caps_and_heldout_disjoint(mixed):
    out, m = mixed
    for d, r in m["domains"].items():
        assert r["epochs_total"] <= r["max_epochs"] + 0.01
        assert r["heldout_tokens"] >= 1500
        assert r["errors"] == 0
        assert r["documents_in"] == r["documents_tokenized"] + sum(r["dropped"].values())
    # domain c is repeated: more than one epoch in all, whole epochs plus a fraction
    assert m["domains"]["c"]["epochs_total"] > 1.0
    # held-out documents never reach training and vice versa: segments between EOS tokens, decoded,
    # compared on paragraphs that occur once in their domain (the samples repeat boilerplate lines)
    from curate import schema as S
    from curate.mix.pipeline import domain_seed
    from curate.tokenizer import load_tokenizer

    tok = load_tokenizer(m["tokenizer"]["path"])

    def segments(prefixes, domain=None):
        readers = [IndexedReader(os.path.join(out, p)) for p in prefixes]
        flat = np.concatenate([r.tokens[r.domains == domain if domain is not None else slice(None)].reshape(-1)
                               for r in readers])
        cuts = np.flatnonzero(flat == tok.eos_id)
        return {tok.tokenizer.decode([int(t) for t in flat[a + 1:b]]) for a, b in zip(cuts[:-1], cuts[1:])}

    for j, d in [(0, "a"), (2, "c")]:
        train = segments([p for ph in m["phases"] for p in ph["shards"]], j)
        table = pa.concat_tables(pq.read_table(os.path.join(m["domains"][d]["path"][0], f)) for f in ("part-0.parquet", "part-1.parquet"))
        texts = table.column("text").to_pylist()
        once = {t for t in texts if texts.count(t) == 1}
        bucket = (S.hash_strings(table.column("id"), domain_seed(m["seed"], d)) >> np.uint64(48)).astype(np.int64)
        held = bucket >= m["domains"][d]["heldout_from_bucket"]
        valid = segments([m["valid"][d]["prefix"]])
        held_texts = {t for t, h in zip(texts, held) if h and t in once}
        train_texts = {t for t, h in zip(texts, held) if not h and t in once}
        assert held_texts and held_texts <= valid | {t for t in held_texts if t not in valid}
        assert not (held_texts & train), d
        assert not (train_texts & valid), d
        assert len(held_texts & valid) >= 0.5 * len(held_texts)  # all but those cut at the first/last sequence


def test_sequences_packed_with_eos(mixed, corpus):
    out, m = mixed
    _, tok = corpus
    r = IndexedReader(os.path.join(out, m["phases"][0]["shards"][0]))
    assert r.tokens.shape[1] == 64 and r.tokens.dtype == np.uint16
    eos_per_seq = (r.tokens == tok.eos_id).sum(axis=1)
    assert eos_per_seq.mean() > 0.5  # paragraphs of ~50 tokens: about one boundary per sequence
    text = tok.tokenizer.decode([int(t) for t in r.tokens[0]], skip_special_tokens=False)
    assert len(text) > 100 and "<|endoftext|>" in text or eos_per_seq[0] == 0
    assert set(np.unique(r.domains)) <= {0, 1, 2}


def test_same_seed_identical_shards_other_seed_differs(mixed, corpus, tmp_path):
    out, _ = mixed
    root, _ = corpus
    run_mix(_spec(root), str(tmp_path / "again"), workers=2)  # and any number of workers
    assert _bins(out) == _bins(tmp_path / "again")
    run_mix(_spec(root, seed=8), str(tmp_path / "other"))
    assert _bins(out).keys() & _bins(tmp_path / "other").keys()
    assert _bins(out) != _bins(tmp_path / "other")


def test_megatron_reader_loads_the_shards(mixed):
    pytest.importorskip("megatron.core")
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    out, m = mixed
    for ph in m["phases"]:
        for prefix in ph["shards"]:
            ours = IndexedReader(os.path.join(out, prefix))
            theirs = IndexedDataset(os.path.join(out, prefix), mmap=True)
            assert len(theirs) == len(ours)
            assert (theirs.sequence_lengths == 64).all()
            for i in (0, len(ours) // 2, len(ours) - 1):
                assert np.array_equal(theirs[i], ours[i])
            assert np.array_equal(theirs.get(3, offset=10, length=5), ours[3][10:15])


def test_where_filter_on_score_column(corpus, tmp_path):
    root, _ = corpus
    spec = _spec(root, total_tokens=20000, heldout_tokens=0, phases=None,
                 weights={"a": 0.5, "b": 0.5},
                 domains={"a": {"path": str(root / "a"), "where": "score >= 0.5"},
                          "b": {"path": str(root / "b"), "where": "score < 0.5 and id != 'b-0'"}})
    m = run_mix(spec, str(tmp_path / "w")).manifest
    a, b = m["domains"]["a"], m["domains"]["b"]
    assert 0.4 < a["documents_tokenized"] / a["documents_in"] < 0.6
    assert a["dropped"]["where"] + a["documents_tokenized"] == a["documents_in"]
    table = pq.read_table(str(root / "b"))
    expected_b = sum(1 for i, s in zip(table.column("id").to_pylist(), table.column("score").to_pylist())
                     if s < 0.5 and i != "b-0")
    assert b["documents_tokenized"] == expected_b
    assert [ph["name"] for ph in m["phases"]] == ["main"]


def test_infeasible_mixture_names_the_short_domain(corpus, tmp_path):
    root, _ = corpus
    spec = _spec(root, total_tokens=400000)
    with pytest.raises(MixError) as e:
        run_mix(spec, str(tmp_path / "bad"))
    msg = str(e.value)
    assert "domain 'c' runs short by" in msg and "max_epochs" in msg and "lower total_tokens to" in msg
    assert not os.path.exists(tmp_path / "bad" / "base")


def test_spec_errors_have_lines(corpus):
    root, _ = corpus
    text = textwrap.dedent(f"""\
        tokenizer: {root / 'tok'}
        seq_length: 64
        total_tokens: 1000
        domains:
          a: {{path: {root / 'a'}, max_epoch: 2}}
        phases:
          - {{name: base, fraction: 0.7, weights: {{a: 1, zz: 2}}}}
          - {{name: anneal, fraction: 0.2, upsample: {{a: 2}}}}
        """)
    with pytest.raises(RecipeError) as e:
        parse_spec(text, "mix.yaml")
    msg = str(e.value)
    assert "mix.yaml:5" in msg and "did you mean 'max_epochs'" in msg
    assert "unknown domain 'zz'" in msg
    assert "fractions sum to 0.9" in msg
    with pytest.raises(RecipeError, match="where clause"):
        parse_spec(json.dumps({"tokenizer": "t", "seq_length": 8, "total_tokens": 10, "weights": {"a": 1},
                               "domains": {"a": {"path": "x", "where": "score >> 3"}}}))


def test_pack_vectorized_matches_simple_loop():
    rng = np.random.default_rng(0)
    lens = rng.integers(0, 20, size=50)
    tokens = rng.integers(1, 100, size=lens.sum()).astype(np.uint16)
    keys = rng.integers(0, 2**63, size=50).astype(np.uint64)
    doms = rng.integers(0, 2, size=50).astype(np.int16)
    seqs, sdoms, stats = pack(_Payload(keys, doms, lens, tokens, np.ones(50, bool)), 16, 0, 2, np.uint16)
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    for d in (0, 1):
        stream = []
        for i in sorted(np.flatnonzero(doms == d), key=lambda i: keys[i]):
            stream += list(tokens[starts[i]:starts[i] + lens[i]]) + [0]
        n = len(stream) // 16
        assert np.array_equal(seqs[sdoms == d].reshape(-1), np.array(stream[: n * 16], dtype=np.uint16))
        assert stats[d]["tokens"] == len(stream)


def test_tokenizer_loads_in_transformers(corpus):
    transformers = pytest.importorskip("transformers")
    root, tok = corpus
    auto = transformers.AutoTokenizer.from_pretrained(str(root / "tok"))
    text = "The committee met on Tuesday to discuss the budget."
    assert auto(text)["input_ids"] == tok.encode_batch([text])[0]
    assert auto.eos_token == "<|endoftext|>" and auto.eos_token_id == tok.eos_id
    assert auto.decode(auto(text)["input_ids"]) == text
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        load_tokenizer("gpt2")


def test_cli_tokenizer_mix_and_errors(corpus, tmp_path, capsys):
    from curate.cli import main

    root, _ = corpus
    assert main(["train-tokenizer", str(root / "c"), "--vocab-size", "300", "--output", str(tmp_path / "tok")]) == 0
    assert os.path.exists(tmp_path / "tok" / "tokenizer.json")
    spec = tmp_path / "mix.yaml"
    spec.write_text(textwrap.dedent(f"""\
        tokenizer: {tmp_path / 'tok'}
        seq_length: 32
        total_tokens: 5000
        weights: {{c: 1}}
        domains:
          c: {{path: {root / 'c'}}}
        """))
    assert main(["mix", str(spec), "--output", str(tmp_path / "out")]) == 0
    assert "main       c" in capsys.readouterr().out
    spec.write_text(spec.read_text().replace("total_tokens: 5000", "total_tokens: 5000000"))
    assert main(["mix", str(spec), "--output", str(tmp_path / "out2")]) == 2
    assert "domain 'c' runs short" in capsys.readouterr().err
    spec.write_text(spec.read_text().replace("weights: {c: 1}", "weights: {d: 1}"))
    assert main(["mix", str(spec), "--output", str(tmp_path / "out3")]) == 2
    assert "unknown domain(s) ['d']" in capsys.readouterr().err


def test_bad_records_go_to_errors_and_are_counted(corpus, tmp_path):
    root, _ = corpus
    bad = tmp_path / "bad.jsonl"
    lines = [json.dumps({"id": f"d{i}", "text": f"Paragraph number {i} about the weather and the trains. " * 3})
             for i in range(200)]
    lines.insert(50, '{"id": "broken", "text": "unterminated')
    bad.write_text("\n".join(lines) + "\n")
    spec = _spec(root, total_tokens=3000, heldout_tokens=0, phases=None, weights={"j": 1},
                 domains={"j": {"path": str(bad)}})
    m = run_mix(spec, str(tmp_path / "out")).manifest
    d = m["domains"]["j"]
    assert d["errors"] == 1 and d["documents_in"] == 201 and d["documents_tokenized"] == 200
    errors = pq.read_table(str(tmp_path / "out" / "errors")).to_pylist()
    assert len(errors) == 1 and errors[0]["file"] == str(bad) and errors[0]["location"] == "line 51"
