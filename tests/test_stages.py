"""The first stages, on hand-made documents at and around their thresholds."""
import pyarrow as pa
from conftest import prose, read_output, write_jsonl

from curate import schema as S
from curate.core.stage import apply_rule
from curate.stages.lang_id import LangId
from curate.stages.length import LengthFilter
from curate.stages.sample import Sample


def _batch(texts, ids=None):
    ids = ids or [f"d{i}" for i in range(len(texts))]
    return S.with_key(pa.RecordBatch.from_pydict({"id": ids, "text": texts}), "k")


def test_length_filter_thresholds_and_reasons():
    texts = ["one two three", "one two three four", "x" * 10, "a b c d e f g h i j k"]
    rule = LengthFilter(min_words=4, max_chars=20)
    _, mask, reasons = apply_rule(rule, _batch(texts))
    assert mask.tolist() == [False, True, False, False]
    assert reasons.tolist() == ["too_few_words", None, "too_few_words", "too_many_chars"]
    # exactly at the bounds is kept
    _, mask, _ = apply_rule(LengthFilter(min_chars=13, max_chars=13), _batch(["one two three"]))
    assert mask.tolist() == [True]


def test_annotate_mode_drops_nothing_and_adds_scores(tmp_path, run):
    write_jsonl(tmp_path / "a.jsonl", [{"id": "s", "text": "too short"}, {"id": "l", "text": prose(1)}])
    res = run(f"""
input: {tmp_path}/a.jsonl
output: {tmp_path}/out
stages:
  - length_filter: {{min_words: 5, mode: annotate}}
""")
    out = {r["id"]: r for r in read_output(tmp_path / "out").to_pylist()}
    assert out["s"]["length_filter_reason"] == "too_few_words" and out["l"]["length_filter_reason"] is None
    assert out["s"]["n_words"] == 2
    assert res.stats["length_filter"].flagged == {"too_few_words": 1} and res.stats["length_filter"].n_dropped == 0


def test_sample_is_deterministic_and_close_to_fraction():
    ids = [f"doc-{i}" for i in range(20000)]
    batch = _batch(["t"] * len(ids), ids)
    _, m1, _ = apply_rule(Sample(fraction=0.3, seed=7), batch)
    _, m2, _ = apply_rule(Sample(fraction=0.3, seed=7), batch)
    _, m3, _ = apply_rule(Sample(fraction=0.3, seed=8), batch)
    assert (m1 == m2).all() and not (m1 == m3).all()
    assert abs(m1.mean() - 0.3) < 0.015
    _, m4, _ = apply_rule(Sample(fraction=0.5, seed=7), batch)
    assert (m4 | ~m1).all()  # a larger fraction keeps a superset


def test_lang_id_scores_and_filters():
    texts = [
        "The committee will publish its annual report on the state of public libraries next week.",
        "Le comité publiera la semaine prochaine son rapport annuel sur l'état des bibliothèques publiques.",
        "Der Ausschuss veröffentlicht nächste Woche seinen Jahresbericht über den Zustand der Bibliotheken.",
        "12 34 56 ### !!!",
    ]
    rule = LangId(languages=["en", "fr"], min_score=0.5)
    rule.setup()
    out, mask, reasons = apply_rule(rule, _batch(texts))
    assert out.column("lang").to_pylist()[:3] == ["en", "fr", "de"]
    assert all(0 <= s <= 1 for s in out.column("lang_score").to_pylist())
    assert mask.tolist()[:3] == [True, True, False] and reasons[2] == "wrong_language"
    per_lang = LangId(min_score={"en": 0.99, "default": 0.1})
    per_lang.setup()
    _, mask, _ = apply_rule(per_lang, _batch(texts[1:3]))
    assert mask.tolist() == [True, True]


def test_exact_dedup_normalizes_and_keeps_smallest_id(tmp_path, run):
    base = prose(3)
    write_jsonl(tmp_path / "a.jsonl", [
        {"id": "m", "text": base},
        {"id": "b", "text": "  " + base.upper().replace(" ", "   ") + "\n"},  # same after normalization
        {"id": "u", "text": prose(4)},
    ])
    write_jsonl(tmp_path / "b.jsonl", [{"id": "c", "text": base}, {"id": "z", "text": prose(5)}])
    res = run(f"""
input: {tmp_path}/*.jsonl
output: {{path: {tmp_path}/out, write_rejected: true}}
stages:
  - exact_dedup: {{}}
""")
    assert sorted(read_output(tmp_path / "out").column("id").to_pylist()) == ["b", "u", "z"]
    rej = read_output(tmp_path / "out", "rejected").to_pylist()
    assert sorted((r["id"], r["drop_stage"], r["drop_reason"]) for r in rej) == [
        ("c", "exact_dedup", "exact_duplicate"), ("m", "exact_dedup", "exact_duplicate")]
    assert res.stats["exact_dedup"].dropped == {"exact_duplicate": 2}


def test_a_failing_rule_sends_only_the_bad_document_to_errors(tmp_path, run):
    from dataclasses import dataclass

    from curate.core.registry import STAGES, register
    from curate.core.stage import Scorer

    if "explode_on_x" not in STAGES:
        @register
        @dataclass(kw_only=True)
        class ExplodeOnX(Scorer):
            """Raises on documents containing 'BOOM' (test rule)."""
            stage = "explode_on_x"

            def score(self, batch):
                texts = batch.column("text").to_pylist()
                if any("BOOM" in t for t in texts):
                    raise ValueError("cannot score BOOM")
                return {"score_len": pa.array([len(t) for t in texts])}

    write_jsonl(tmp_path / "a.jsonl", [{"id": f"d{i}", "text": "BOOM" if i == 13 else prose(i)} for i in range(40)])
    res = run(f"input: {tmp_path}/a.jsonl\noutput: {tmp_path}/out\nstages:\n  - explode_on_x: {{}}\n")
    out = read_output(tmp_path / "out")
    assert out.num_rows == 39 and "d13" not in out.column("id").to_pylist()
    (err,) = read_output(tmp_path / "out", "errors").to_pylist()
    assert err["id"] == "d13" and err["stage"] == "explode_on_x" and "cannot score BOOM" in err["reason"]
    assert res.stats["explode_on_x"].errors == 1 and res.stats["explode_on_x"].kept == 39


def test_url_normalization():
    from curate.stages.url_dedup import normalize_url

    same = [
        "https://www.Example.org/a/b/?utm_source=x&id=3&lang=en#top",
        "http://example.org:80/a/b?lang=en&id=3",
        "HTTPS://example.org/a/b?id=3&fbclid=abc&lang=en",
    ]
    assert len({normalize_url(u) for u in same}) == 1
    assert normalize_url("https://example.org/a/b?id=4") != normalize_url(same[0])
    assert normalize_url("https://example.org/A/b") != normalize_url("https://example.org/a/b")  # paths keep case
    assert normalize_url(None) is None and normalize_url("  ") is None
    assert normalize_url("http://example.org/x", ignore_scheme=False) != normalize_url("https://example.org/x", ignore_scheme=False)


def test_url_dedup_stage_keeps_smallest_id_and_documents_without_url(tmp_path, run):
    write_jsonl(tmp_path / "a.jsonl", [
        {"id": "b", "text": prose(1), "url": "https://example.org/post/?utm_medium=social"},
        {"id": "a", "text": prose(2), "url": "http://www.example.org/post"},
        {"id": "c", "text": prose(3), "url": "https://example.org/other"},
        {"id": "d", "text": prose(4)},
        {"id": "e", "text": prose(5)},
    ])
    res = run(f"input: {tmp_path}/a.jsonl\noutput: {tmp_path}/out\nstages:\n  - url_dedup: {{}}\n")
    assert sorted(read_output(tmp_path / "out").column("id").to_pylist()) == ["a", "c", "d", "e"]
    assert res.stats["url_dedup"].dropped == {"url_duplicate": 1}
