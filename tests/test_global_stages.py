"""The GlobalStage base: chains share one materialization, errors are isolated per document, annotate
output is the same for every global stage, partitions do not change results, and a new global stage
is a few lines of its own logic."""
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pytest
from conftest import prose, read_output, write_jsonl

from curate import schema as S
from curate.core.global_stage import Decision, GlobalStage
from curate.core.keydedup import KeyDedupStage
from curate.core.recipe import parse_recipe
from curate.core.runner import run_recipe, segments

GLOBAL = ["url_dedup", "exact_dedup", "fuzzy_dedup", "line_dedup"]


def _corpus(tmp_path, n=40):
    recs = []
    for i in range(n):
        text = prose(i % 13) + ("\nshared footer line for every page" if i % 2 else "")
        recs.append({"id": f"d{i:03d}", "text": text, "url": f"http://example.com/p{i % 17}"})
    recs.append({"id": "badport", "text": prose(99), "url": "http://example.com:99999/x"})
    write_jsonl(tmp_path / "in.jsonl", recs)
    return recs


def _run(tmp_path, stages: str, out="out", write_rejected=False, **kw):
    text = (f"input: {{path: {tmp_path}/in.jsonl, batch_size: 8}}\n"
            f"output: {{path: {tmp_path}/{out}, write_rejected: {str(write_rejected).lower()}}}\nstages:\n{stages}")
    return run_recipe(parse_recipe(text, "<test>"), **kw)


def test_a_url_that_cannot_be_parsed_is_an_error_not_a_crash(tmp_path):
    _corpus(tmp_path)
    res = _run(tmp_path, "  - url_dedup: {}\n")
    errs = read_output(tmp_path / "out", "errors").to_pylist()
    assert [(e["id"], e["stage"]) for e in errs] == [("badport", "url_dedup")]
    assert "Port out of range" in errs[0]["reason"] and errs[0]["file"].endswith("in.jsonl")
    st = res.stats["url_dedup"]
    assert st.errors == 1 and st.n_in == 41 and st.balanced()
    assert st.dropped == {"url_duplicate": 40 - 17}


def test_consecutive_global_stages_materialize_once(tmp_path):
    recs = _corpus(tmp_path)
    res = _run(tmp_path, "".join(f"  - {g}: {{}}\n" for g in GLOBAL))
    kinds = [k for k, _ in segments(res.recipe.stages, True)]
    assert kinds == ["chain"]  # the id check joins the chain too
    in_bytes = res.info["scratch_bytes_materialized"]
    one = _run(tmp_path, "  - exact_dedup: {}\n", out="one").info["scratch_bytes_materialized"]
    assert in_bytes == one  # five global stages (with the id check) wrote the corpus to scratch once, like one stage
    assert res.stats["read"].n_in == len(recs) and not res.problems


def test_annotate_is_the_same_for_every_global_stage(tmp_path):
    _corpus(tmp_path)
    stages = "".join(f"  - {g}: {{mode: annotate}}\n" for g in GLOBAL)
    res = _run(tmp_path, stages)
    out = read_output(tmp_path / "out")
    assert out.num_rows == 40  # nothing dropped (the bad URL is an error)
    for g in GLOBAL:
        assert f"{g}_reason" in out.column_names, g
        st = res.stats[g]
        assert st.n_dropped == 0 and st.kept == st.n_in - st.errors
    flagged = out.column("exact_dedup_reason").to_pylist()
    assert flagged.count("exact_duplicate") == res.stats["exact_dedup"].flagged["exact_duplicate"] > 0
    assert "dup_cluster" in out.column_names and "line_dedup_removed" in out.column_names


def test_partitions_do_not_change_results(tmp_path):
    _corpus(tmp_path)
    outs = []
    for p in (1, 7):
        stages = "".join(f"  - {g}: {{partitions: {p}}}\n" for g in GLOBAL)
        _run(tmp_path, stages, out=f"p{p}")
        t = read_output(tmp_path / f"p{p}")
        outs.append(sorted(zip(t.column("id").to_pylist(), t.column("text").to_pylist())))
    assert outs[0] == outs[1] and len(outs[0]) < 40


def test_line_dedup_text_is_seen_rewritten_by_the_next_stage_of_the_chain(tmp_path):
    write_jsonl(tmp_path / "in.jsonl", [{"id": f"d{i}", "text": f"unique body {i} " + prose(i) + "\nboiler plate"}
                                        for i in range(6)] + [{"id": "x", "text": "boiler plate"}])
    res = _run(tmp_path, "  - line_dedup: {max_doc_frequency: 3}\n  - exact_dedup: {}\n", write_rejected=True)
    out = read_output(tmp_path / "out")
    assert all("boiler plate" not in t for t in out.column("text").to_pylist())
    assert res.stats["line_dedup"].dropped == {"too_short_after_line_dedup": 1}
    rej = read_output(tmp_path / "out", "rejected").to_pylist()
    assert [(r["id"], r["drop_stage"], r["text"]) for r in rej] == [("x", "line_dedup", "")]


def test_duplicate_ids_with_many_batches(tmp_path):
    recs = [{"id": f"i{i % 30}", "text": prose(i)} for i in range(90)]
    write_jsonl(tmp_path / "in.jsonl", recs)
    res = _run(tmp_path, "  - exact_dedup: {}\n")
    out = read_output(tmp_path / "out")
    assert sorted(out.column("id").to_pylist()) == sorted(f"i{i}" for i in range(30))
    assert res.stats["input_ids"].errors == 60
    # the first occurrence (input order) survives
    by_id = dict(zip(out.column("id").to_pylist(), out.column("text").to_pylist()))
    assert by_id["i5"] == prose(5)


def test_key_dedup_resolve_groups_duplicates_by_batch():
    class K(KeyDedupStage):
        stage = "k"

    keys = np.array([[1, 1], [2, 2], [1, 1], [3, 3], [2, 2], [1, 1]], dtype=np.uint64)
    payloads = [(f"b{i}", keys[i:i + 1], None, np.array([i], dtype=np.int64)) for i in range(6)][::-1]
    got = sorted((p, r.tolist()) for p, r in K().resolve(0, payloads))
    assert got == [("b2", [2]), ("b4", [4]), ("b5", [5])]


@dataclass(kw_only=True)
class LongestPerSource(GlobalStage):
    """Keep the longest document of each source: a global stage in a dozen lines of its own logic."""

    stage = "longest_per_source"
    reason = "not_longest"

    def send(self, view, out):
        lengths = np.array([len(t) for t in view.batch.column(S.TEXT).to_pylist()])
        for src, length, row in zip(view.batch.column(S.SOURCE).to_pylist(), lengths, view.rows):
            out.send(hash(src) % 3, (src, int(length), out.path, int(row)))

    def resolve(self, partition, payloads):
        best = {}
        for src, length, path, row in sorted(payloads):
            best[src] = (path, row)
        for src, length, path, row in payloads:
            if best[src] != (path, row):
                yield path, row

    def decide(self, view, decisions, side=None):
        keep = np.ones(view.n, dtype=bool)
        keep[view.positions(np.array(decisions, dtype=np.int64))] = False
        return Decision(keep=keep)


def test_a_new_global_stage_is_its_own_logic_only(tmp_path):
    from curate.core.recipe import Recipe, OutputSpec
    from curate.io.readers import InputSpec

    for s in ("a", "b"):
        write_jsonl(tmp_path / f"{s}.jsonl", [{"id": f"{s}{i}", "text": "word " * (i + 1)} for i in range(5)])
    recipe = Recipe("<test>", InputSpec(path=[str(tmp_path / "*.jsonl")], batch_size=2),
                    OutputSpec(path=str(tmp_path / "out")), [("longest", LongestPerSource())])
    res = run_recipe(recipe)
    assert sorted(read_output(tmp_path / "out").column("id").to_pylist()) == ["a4", "b4"]
    assert res.stats["longest"].dropped == {"not_longest": 8} and not res.problems


@pytest.mark.parametrize("workers", [2])
def test_chain_is_the_same_with_two_workers(tmp_path, workers):
    _corpus(tmp_path)
    stages = "".join(f"  - {g}: {{}}\n" for g in GLOBAL)
    _run(tmp_path, stages, out="w1")
    _run(tmp_path, stages, out="w2", workers=workers)
    a, b = read_output(tmp_path / "w1"), read_output(tmp_path / "w2")
    assert sorted(a.column("id").to_pylist()) == sorted(b.column("id").to_pylist())
    assert pa.Table.equals(a.sort_by("id"), b.sort_by("id"))


def test_a_huge_document_is_signed_in_pieces_with_the_same_signature(monkeypatch):
    import random

    from curate.core import minhash

    rng = random.Random(3)
    vocab = ["river", "beam", "Hello,", "x.y", "--", "(a)", "WORLD!", "notebook", "42", "data"]
    doc = " ".join(rng.choice(vocab) + (str(rng.randrange(30)) if rng.random() < 0.5 else "") for _ in range(60000))
    doc = doc.replace(" data ", "\ndata ")
    texts = pa.array([doc, "a short one with some words in it", ""])
    whole, valid = minhash.signatures(texts, 5, 112, 1)
    monkeypatch.setattr(minhash, "HUGE_CHARS", 20_000)
    assert len(list(minhash._pieces(np.frombuffer(doc.encode(), np.uint8), 10_000, minhash.OVERLAP_TOKENS))) > 20
    pieces, valid2 = minhash.signatures(texts, 5, 112, 1)
    assert (whole == pieces).all() and valid.tolist() == valid2.tolist() == [True, True, False]


@pytest.mark.parametrize("flush_bytes", [None, 20_000])
def test_shuffle_spills_one_file_per_bundle_and_loads_slices(tmp_path, monkeypatch, flush_bytes):
    """Payloads spill to one scratch file per bundle (or per ``FLUSH_BYTES`` of one: a worker never holds
    more than that); only (path, offset, length) references go through the GroupByKey, tiny payloads
    stay inline; every payload comes back whole."""
    import os

    import apache_beam as beam
    import numpy as np
    from apache_beam.testing.util import assert_that, equal_to

    from curate.core import exchange

    items = [(k % 3, np.arange(k * 100, dtype=np.int64)) for k in range(12)]  # k=0: empty payload, inline
    folder = str(tmp_path / "spill")
    if flush_bytes:
        monkeypatch.setattr(exchange, "FLUSH_BYTES", flush_bytes)
    with beam.Pipeline() as p:
        out = (p | beam.Create(items, reshuffle=False) | exchange.GroupByKey(folder)
               | beam.Map(lambda kv: (kv[0], sorted(int(a.sum()) for a in kv[1]))))
        expect = {}
        for k, a in items:
            expect.setdefault(k, []).append(int(a.sum()))
        assert_that(out, equal_to([(k, sorted(v)) for k, v in expect.items()]))
    files = os.listdir(folder)
    if flush_bytes is None:
        assert 1 <= len(files) <= 2  # one per bundle (Create may make one or two), not one per payload
    else:  # 12 payloads of up to 8.8 KB, 50 KB in all: written out every 20 KB
        assert 3 <= len(files) <= 6, files
