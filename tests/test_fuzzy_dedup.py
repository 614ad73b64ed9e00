"""fuzzy_dedup: MinHash signatures, LSH, connected components, survivors."""
import random

import numpy as np
import pyarrow as pa
from conftest import read_output, write_jsonl

from curate.core import minhash

VOCAB = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "pe", "ro", "su", "ti", "va", "ze") for b in
         ("bar", "cen", "dol", "fim", "gat", "hul", "jor", "kes", "lim", "mun", "nop", "quo", "rat", "sil", "tev")]


def words(rng, n):
    return [rng.choice(VOCAB) for _ in range(n)]


def edit(ws, rng, k):
    ws = list(ws)
    for _ in range(k):
        ws[rng.randrange(len(ws))] = rng.choice(VOCAB) + "x"
    return ws


def est_jaccard(a, b):
    sig, _ = minhash.signatures(pa.array([a, b]))
    return float((sig[0] == sig[1]).mean())


def _run(run, tmp_path, docs, params="{mode: annotate}", workers=1, out="out"):
    write_jsonl(tmp_path / "in.jsonl", docs)
    res = run(f"input: {tmp_path}/in.jsonl\noutput: {tmp_path}/{out}\nstages:\n  - fuzzy_dedup: {params}\n", workers=workers)
    return res, {r["id"]: r for r in read_output(tmp_path / out).to_pylist()}


def test_signatures_estimate_jaccard_and_are_seeded():
    rng = random.Random(0)
    a = words(rng, 400)
    b = edit(a, rng, 12)
    grams = lambda w: {tuple(w[i:i + 5]) for i in range(len(w) - 4)}  # noqa: E731
    true = len(grams(a) & grams(b)) / len(grams(a) | grams(b))
    assert abs(est_jaccard(" ".join(a), " ".join(b)) - true) < 0.1
    t = pa.array([" ".join(a), " ".join(b)])
    s1, _ = minhash.signatures(t, seed=3)
    s2, _ = minhash.signatures(t, seed=3)
    s3, _ = minhash.signatures(t, seed=4)
    assert (s1 == s2).all() and not (s1 == s3).all()
    # punctuation, case and whitespace do not matter
    assert est_jaccard("The cat, sat on the mat today!", "the CAT sat   on the mat today") == 1.0


def test_threshold_picks_bands_and_rows():
    b, r = minhash.optimal_bands(0.72, 112)
    assert b * r <= 112 and 0.6 < minhash.jaccard_threshold(b, r) < 0.8
    b2, r2 = minhash.optimal_bands(0.9, 112)
    assert minhash.jaccard_threshold(b2, r2) > minhash.jaccard_threshold(b, r)


def test_transitive_chain_is_one_cluster(tmp_path, run):
    rng = random.Random(1)
    chain = [words(rng, 300)]
    for _ in range(14):
        chain.append(edit(chain[-1], rng, 3))
    texts = [" ".join(w) for w in chain]
    assert est_jaccard(texts[0], texts[-1]) < 0.4  # the ends are not near duplicates of each other
    docs = [{"id": f"c{i:02d}", "text": t} for i, t in enumerate(texts)]
    docs += [{"id": f"other{i}", "text": " ".join(words(rng, 300))} for i in range(5)]
    res, out = _run(run, tmp_path, docs, "{mode: annotate, rounds: 1}")
    assert {out[f"c{i:02d}"]["dup_cluster"] for i in range(15)} == {"c00"}
    assert all(out[f"c{i:02d}"]["dup_cluster_size"] == 15 for i in range(15))
    assert all(out[f"other{i}"]["dup_cluster"] is None for i in range(5))
    assert res.stats["fuzzy_dedup"].flagged == {"near_duplicate": 14}


def test_cluster_spanning_many_buckets_and_drop_mode(tmp_path, run):
    rng = random.Random(2)
    base = words(rng, 500)
    docs = [{"id": f"v{i:02d}", "text": " ".join(edit(base, rng, 6))} for i in range(30)]
    docs += [{"id": f"u{i}", "text": " ".join(words(rng, 200))} for i in range(10)]
    res, out = _run(run, tmp_path, docs, "{}")
    assert sorted(out) == ["u%d" % i for i in range(10)] + ["v00"]
    assert res.stats["fuzzy_dedup"].dropped == {"near_duplicate": 29}


def test_identical_docs_one_word_and_no_shingle_docs(tmp_path, run):
    docs = [
        {"id": "b", "text": "Hello"}, {"id": "a", "text": "hello!"},  # one-word, identical after normalization
        {"id": "p1", "text": "!!! ???"}, {"id": "p2", "text": "!!! ???"},  # no words at all: never duplicates
        {"id": "same2", "text": "one two three four five six seven"}, {"id": "same1", "text": "one two three four five six seven"},
    ]
    res, out = _run(run, tmp_path, docs)
    assert out["a"]["dup_cluster"] == out["b"]["dup_cluster"] == "a"
    assert out["same1"]["dup_cluster"] == out["same2"]["dup_cluster"] == "same1"
    assert out["p1"]["dup_cluster"] is None and out["p2"]["dup_cluster"] is None


def test_score_column_picks_the_survivor(tmp_path, run):
    rng = random.Random(3)
    base = words(rng, 300)
    docs = [{"id": f"d{i}", "text": " ".join(edit(base, rng, 1)), "quality": q} for i, q in enumerate([0.2, 0.9, 0.5])]
    res, out = _run(run, tmp_path, docs, "{score_column: quality}")
    assert list(out) == ["d1"]


def test_deterministic_across_runs_and_workers(tmp_path, run):
    rng = random.Random(4)
    bases = [words(rng, 200) for _ in range(20)]
    docs = [{"id": f"d{i:03d}", "text": " ".join(edit(bases[i % 20], rng, i % 4))} for i in range(200)]
    outs = []
    for k, workers in enumerate((1, 1, 2)):
        _, out = _run(run, tmp_path, docs, "{mode: annotate, partitions: 7}", workers=workers, out=f"o{k}")
        outs.append(sorted((r["id"], r["dup_cluster"], r["dup_cluster_size"]) for r in out.values()))
    assert outs[0] == outs[1] == outs[2]
    assert sum(1 for _, c, _ in outs[0] if c is not None) > 150


def test_components_exact_against_union_find():
    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from apache_beam.testing.util import assert_that, equal_to

    from curate.core.components import ConnectedComponents, both_directions, split_by_partition

    rng = random.Random(5)
    edges = [(i, i + 1) for i in range(100, 180)] + [(500, 500 + i) for i in range(1, 20)]
    edges += [(rng.randint(1000, 1150), rng.randint(1000, 1150)) for _ in range(120)]
    parent = {}

    def find(x):
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    expected = sorted({(n, find(n)) for a, b in edges if a != b for n in (a, b)})
    src, dst = both_directions(np.array([a for a, _ in edges], np.uint64), np.array([b for _, b in edges], np.uint64))
    for rounds in (0, 2, 6):
        with beam.Pipeline(runner=FnApiRunner()) as p:
            got = (p | beam.Create(list(split_by_partition(src, dst, 5))) | ConnectedComponents(5, rounds)
                   | beam.FlatMap(lambda x: [(int(a), int(b)) for a, b in zip(*x)]))
            assert_that(got, equal_to(expected))


def test_verification_removes_pairs_below_the_jaccard_threshold(tmp_path, run):
    rng = random.Random(6)
    base = words(rng, 400)
    close = edit(base, rng, 4)  # Jaccard about 0.9
    far = edit(base, rng, 40)  # Jaccard about 0.4: a candidate only with a permissive LSH
    docs = [{"id": "a", "text": " ".join(base)}, {"id": "b", "text": " ".join(close)}, {"id": "c", "text": " ".join(far)}]
    loose = "{mode: annotate, bands: 40, rows: 2}"  # threshold about 0.16: c becomes a candidate
    _, out = _run(run, tmp_path, docs, loose, out="loose")
    assert out["c"]["dup_cluster"] == "a"
    _, out = _run(run, tmp_path, docs, "{mode: annotate, bands: 40, rows: 2, verify: true, verify_threshold: 0.7}", out="checked")
    assert out["a"]["dup_cluster"] == out["b"]["dup_cluster"] == "a" and out["c"]["dup_cluster"] is None
