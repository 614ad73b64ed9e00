"""decontaminate: documents sharing word n-grams with evaluation sets, and `curate decontaminate-report`.

Every reference file here is written in tmp_path; the vectorized matcher is checked against a
plain-Python n-gram set on spliced documents."""
import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import prose, read_output, write_jsonl

from curate import pieces
from curate import schema as S
from curate.core.stage import apply_rule
from curate.stages.decontaminate import Decontaminate, match

QUESTIONS = [
    {"query": "Which gas do green plants take in from the air to make their own food during photosynthesis in sunlight?",
     "choices": ["carbon dioxide", "oxygen", "nitrogen gas taken from the soil by the roots of legumes and clover plants"],
     "gold": 0},
    {"query": "A student drops a rubber ball and a steel ball of the same size from the roof of the school building at once.",
     "choices": ["the steel ball lands first", "both land at the same time"], "gold": 1},
]
PASSAGES = [
    {"context": "The lighthouse keeper climbed the spiral stairs every evening at dusk, trimmed the wick, polished the "
                "great lens and wrote the weather in a leather log that his grandfather had started", "continuation": "decades"},
    {"context": "Short one here.", "continuation": "x"},
]


def _batch(texts, ids=None):
    ids = ids or [f"d{i}" for i in range(len(texts))]
    return S.with_key(pa.RecordBatch.from_pydict({"id": ids, "text": texts}), "k")


@pytest.fixture
def refs(tmp_path):
    q = write_jsonl(tmp_path / "arc_like.jsonl", QUESTIONS)
    pq.write_table(pa.Table.from_pylist(PASSAGES), tmp_path / "lambada_like.parquet")
    return [q, str(tmp_path / "lambada_like.parquet")]


FIELDS = ["query", "choices", "context"]


def test_flags_copies_whatever_case_and_punctuation_and_names_the_benchmark(refs):
    rule = Decontaminate(references=refs, reference_fields=FIELDS)
    q0 = QUESTIONS[0]["query"]
    texts = [
        "Homework help: " + q0.upper().replace(" ", "  ").replace("?", " ?!") + " Answer below.",    # the whole question
        "which gas do green plants take in from the air to make their",                             # 13 words exactly
        "which gas do green plants take in from the air to make",                                   # 12 words: no
        # the end of the query followed by a choice: an n-gram across two texts of a record is no match
        "to make their own food during photosynthesis in sunlight carbon dioxide oxygen nitrogen gas taken",
        prose(3),
        "He said the lighthouse keeper climbed the spiral stairs every evening at dusk, trimmed the wick, then left. "
        "Also: " + q0,
    ]
    out, mask, reasons = apply_rule(rule, _batch(texts))
    matches = out.column("decontaminate_matches").to_pylist()
    assert mask.tolist() == [False, False, True, True, True, False]
    assert reasons[0] == "contaminated" and reasons[2] is None
    n_q0 = len(re.findall(r"\w+", q0)) - 13 + 1
    assert matches[0] == n_q0 and matches[1] == 1 and matches[2] == 0 and matches[3] == 0
    assert out.column("decontaminate_benchmarks").to_pylist() == [
        "arc_like", "arc_like", None, None, None, "arc_like,lambada_like"]
    # the default is one n-gram; min_matches asks for more
    _, mask, _ = apply_rule(Decontaminate(references=refs, reference_fields=FIELDS, min_matches=2), _batch(texts))
    assert mask.tolist() == [False, True, True, True, True, False]


def test_annotate_mode_keeps_everything_and_a_shorter_ngram_finds_more(refs):
    rule = Decontaminate(references=refs, reference_fields=FIELDS, mode="annotate", ngram=5)
    texts = ["we saw the steel ball lands first today", "both land at the", prose(1)]
    out, mask, reasons = apply_rule(rule, _batch(texts))
    # choices are texts of their own: 5-grams of "the steel ball lands first" (5 words) match
    assert out.column("decontaminate_matches").to_pylist() == [1, 0, 0]
    assert reasons.tolist() == ["contaminated", None, None] and not mask[0]  # the stage wrapper keeps it in annotate


def test_min_ngram_uses_short_reference_texts_whole(tmp_path):
    ref = write_jsonl(tmp_path / "copa_like.jsonl", [{"text": "the man turned on the faucet and water flowed"},   # 9 words
                                                     {"text": "too short to count"}])
    doc = ["Yesterday the man turned on the faucet and water flowed from the spout.", "too short to count"]
    _, mask, _ = apply_rule(Decontaminate(references=[ref]), _batch(doc))
    assert mask.tolist() == [True, True]
    out, mask, _ = apply_rule(Decontaminate(references=[ref], min_ngram=8), _batch(doc))
    assert mask.tolist() == [False, True] and out.column("decontaminate_matches").to_pylist() == [1, 0]
    # a 9-word text inside a longer document is found only as a whole: its 8-word parts are not references
    _, mask, _ = apply_rule(Decontaminate(references=[ref], min_ngram=8), _batch(["the man turned on the faucet and water"]))
    assert mask.tolist() == [True]


def _naive_counts(texts, ref_texts, n):
    def words(t):
        return [w.strip("'") for w in re.split(r"[^\w']+", t.lower().replace("\u2019", "'")) if w.strip("'")]

    grams = set()
    for t in ref_texts:
        w = words(t)
        grams |= {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}
    out = []
    for t in texts:
        w = words(t)
        out.append(len({tuple(w[i:i + n]) for i in range(len(w) - n + 1)} & grams))
    return out


def test_vectorized_matching_equals_a_plain_python_ngram_set_also_across_pieces(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    vocab = [w for t in (QUESTIONS[0]["query"], QUESTIONS[1]["query"], PASSAGES[0]["context"], prose(2)) for w in t.split()]
    ref_texts = [" ".join(rng.choice(vocab, int(rng.integers(5, 40)))) for _ in range(30)]
    ref = write_jsonl(tmp_path / "r.jsonl", [{"text": t} for t in ref_texts])
    texts = []
    for i in range(60):  # random words with 0-3 spliced pieces of reference texts, some across the piece cuts
        parts = [" ".join(rng.choice(vocab, int(rng.integers(0, 30))))]
        for _ in range(int(rng.integers(0, 4))):
            t = ref_texts[int(rng.integers(len(ref_texts)))].split()
            a = int(rng.integers(0, len(t)))
            parts += [" ".join(t[a:a + int(rng.integers(8, 30))]), " ".join(rng.choice(vocab, int(rng.integers(0, 20))))]
        texts.append("\n".join(parts))
    rule = Decontaminate(references=[ref], ngram=6)
    want = _naive_counts(texts, ref_texts, 6)
    assert sum(want) > 20 and sum(1 for w in want if w == 0) > 5  # the data exercises both outcomes
    out, _, _ = apply_rule(rule, _batch(texts))
    assert out.column("decontaminate_matches").to_pylist() == want
    # slices of a few documents, and documents cut into pieces of ~40 bytes: the same counts
    monkeypatch.setattr(pieces, "SLICE_BYTES", 40)
    hits = match(pa.array(texts), rule.index, want_text=True)
    per = np.zeros(len(texts), int)
    for d in range(len(texts)):
        per[d] = len(set(hits.ref[hits.doc == d].tolist()))
    assert per.tolist() == want
    assert all(len(w.split()) == 6 for w in hits.words)


def test_bad_references_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="matched no files"):
        Decontaminate(references=[str(tmp_path / "missing-*.jsonl")])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": oops}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl line 2: not valid JSON"):
        Decontaminate(references=[str(bad)]).setup()
    nofield = write_jsonl(tmp_path / "nofield.jsonl", [{"question": "a b c"}])
    with pytest.raises(ValueError, match=r"nofield.jsonl: no record has any of the fields \['text'\]"):
        Decontaminate(references=[nofield]).setup()
    wrong = write_jsonl(tmp_path / "wrong.jsonl", [{"text": "a b"}, {"text": {"nested": 1}}])
    with pytest.raises(ValueError, match=r"wrong.jsonl record 2: field 'text' must be a string or a list"):
        Decontaminate(references=[wrong]).setup()
    pq.write_table(pa.table({"question": ["x"]}), tmp_path / "p.parquet")
    with pytest.raises(ValueError, match=r"p.parquet has none of the fields \['text'\] \(its columns: question\)"):
        Decontaminate(references=[str(tmp_path / "p.parquet")]).setup()
    with pytest.raises(ValueError, match="min_ngram must be between"):
        Decontaminate(references=[nofield], min_ngram=20)
    with pytest.raises(ValueError, match="reference_fields must be a non-empty list"):
        Decontaminate(references=nofield, reference_fields=[])
    assert Decontaminate(references=nofield, reference_fields=["question"], ngram=3).index.names == ["nofield"]


def test_runs_in_a_recipe_with_the_ledger_and_rejected_rows(tmp_path, run, refs):
    docs = [{"id": f"clean{i}", "text": prose(i)} for i in range(6)]
    docs += [{"id": "leak-q", "text": prose(9) + " " + QUESTIONS[1]["query"]},
             {"id": "leak-p", "text": PASSAGES[0]["context"].replace(",", " ;")}]
    write_jsonl(tmp_path / "in.jsonl", docs)
    res = run(f"""
input: {tmp_path}/in.jsonl
output: {{path: {tmp_path}/out, write_rejected: true}}
stages:
  - decontaminate: {{references: ["{tmp_path}/*_like.*"], reference_fields: [query, choices, context]}}
""")
    st = res.stats["decontaminate"]
    assert st.n_in == 8 and st.kept == 6 and st.dropped == {"contaminated": 2} and st.balanced()
    rej = {r["id"]: r for r in read_output(tmp_path / "out", "rejected").to_pylist()}
    assert set(rej) == {"leak-q", "leak-p"} and rej["leak-q"]["drop_reason"] == "contaminated"
    assert rej["leak-p"]["decontaminate_benchmarks"] == "lambada_like"
    assert res.info.get("decontaminate_arc_like") == 1 and res.info.get("decontaminate_lambada_like") == 1


def test_report_command_lists_benchmark_documents_and_ngrams(tmp_path, refs):
    from curate.cli import main

    docs = [{"id": "a", "text": "Notes. " + QUESTIONS[0]["query"]}, {"id": "b", "text": prose(2)},
            {"id": "c", "text": PASSAGES[0]["context"] + " and " + QUESTIONS[1]["query"]}]
    inp = write_jsonl(tmp_path / "docs.jsonl", docs)
    out = tmp_path / "report"
    rc = main(["decontaminate-report", inp, "--references", *refs, "--reference-fields", *FIELDS, "--output", str(out)])
    assert rc == 0
    rows = [json.loads(x) for x in (out / "leaks.jsonl").read_text().splitlines()]
    got = {(r["id"], r["benchmark"]): r for r in rows}
    assert set(got) == {("a", "arc_like"), ("c", "arc_like"), ("c", "lambada_like")}
    assert got[("a", "arc_like")]["records"] == [0] and got[("c", "arc_like")]["records"] == [1]
    assert got[("a", "arc_like")]["ngrams"][0] == "which gas do green plants take in from the air to make their"
    assert got[("c", "lambada_like")]["matches"] == len(re.findall(r"\w+", PASSAGES[0]["context"])) - 12
    summary = json.loads((out / "summary.json").read_text())
    assert summary["documents"] == 3 and summary["contaminated_documents"] == 2
    assert summary["benchmarks"]["arc_like"]["documents"] == 2 and summary["benchmarks"]["arc_like"]["records_leaked"] == 2
    assert (out / "_SUCCESS").exists()
    # a missing reference is one line and exit code 2
    assert main(["decontaminate-report", inp, "--references", str(tmp_path / "nope.jsonl"), "--output", str(out)]) == 2


def test_numpy_words_equal_the_arrow_regex_tokenizer_of_toxic_words():
    from curate.scorers.toxic_words import tokenize
    from curate.stages.decontaminate import words

    texts = ["Hello, World! don't 'quoted' a''b ''x'' Ünïcödé CAFÉ naïve — “smart” ’tis 東京タワー 𝔘nicode _under_score_ x'",
             "", "second  text\nwith\tlines", "'", "ÉCOLE’s", "e\u0301 combining \u0915\u094d\u0937 Ωμέγα", "12,345.67 3.14",
             "ﬁ ligature ½ ①", "emoji 🙂 between words🙂glued", prose(4)]
    w = words(pa.array(texts))
    got = [[] for _ in texts]
    for i in range(len(w)):
        got[int(w.doc[i])].append(w.text(i, 1)[0])
    flat, doc = tokenize(pa.array(texts))
    want = [[] for _ in texts]
    for x, d in zip(flat.to_pylist(), doc.tolist()):
        want[d].append(x)
    assert got == want
    assert got[0][:5] == ["hello", "world", "don't", "quoted", "a''b"]
