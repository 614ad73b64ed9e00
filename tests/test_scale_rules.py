"""Scale traps in the per-document work: the heuristic rule sets share their analysis explicitly
(one ``Analysis`` per call, the ``web_quality`` stage), batches and huge documents are analyzed a
slice / piece at a time with the same results, toxic_words and pii_redact work piecewise too, and
ids are hashed vectorized with the exact XXH3 values."""
import random
import threading

import numpy as np
import pyarrow as pa
import pytest
import xxhash
from conftest import PROSE, prose

from curate import pieces
from curate import schema as S
from curate.core.stage import apply_rule
from curate.stages.heuristics import _text as T
from curate.stages.heuristics.c4 import C4Lines, C4Quality
from curate.stages.heuristics.fineweb import FineWebQuality
from curate.stages.heuristics.gopher_quality import GopherQuality
from curate.stages.heuristics.gopher_repetition import GopherRepetition
from curate.stages.heuristics.web_quality import WebQuality


def _batch(texts):
    return S.with_key(pa.RecordBatch.from_pydict({"id": [f"d{i}" for i in range(len(texts))], "text": pa.array(texts, pa.string())}), "k")


def _docs(seed=5, n=40):
    """Real-ish documents: prose, lists, repeated lines and paragraphs, odd line breaks and spaces."""
    rng = random.Random(seed)
    words = "the of and to a in that is was he for it with as his on be at by I this had not are but".split()
    odd = ["", " ", "\t", "\u3000", "\xa0", "\r", "\r\n", "\n", "\n\n", "\n\n\n", "\x85", "\u2028", "...", "…", "#", "- ", "• ",
           "lorem ipsum", "{x}", "don't", "U.S.", "e.g.", "12:30", "Wittkamp🐬", "日本語のテキスト。"]
    docs = []
    for i in range(n):
        lines = []
        for _ in range(rng.randrange(1, 25)):
            k = rng.randrange(1, 18)
            line = " ".join(rng.choice(words) for _ in range(k))
            line = rng.choice(["", "", "- ", "• ", " "]) + line + rng.choice(["", ".", "!", "...", " it.", "?"])
            if rng.random() < 0.2:
                line += rng.choice(odd)
            lines.append(line)
        if i % 3 == 0:
            lines += lines[: rng.randrange(1, len(lines) + 1)]
        if i % 5 == 0:
            lines = [prose(i, 3)] + lines + [PROSE[i % len(PROSE)]] * 3
        docs.append("".join(line + rng.choice(["\n", "\n", "\n\n", "\r\n", "\n\n\n"]) for line in lines))
    return docs + ["", "\n", "  \n\n  ", "word", "a\n\na", "\n\nlead and trail\n\n"]


RULE_SETS = (
    GopherQuality(),
    GopherRepetition(top_ngrams={1: 0.5, 2: 0.2, 3: 0.18, 4: 0.16}),
    C4Quality(),
    FineWebQuality(),
)


def _columns(cols):
    return {k: v.to_pylist() for c in cols for k, v in c.items()}


def _same_batch(a, b):
    assert a.schema.names == b.schema.names
    for k in a.schema.names:
        x, y = a.column(k), b.column(k)
        if pa.types.is_floating(x.type):
            np.testing.assert_array_equal(x.to_numpy(zero_copy_only=False), y.to_numpy(zero_copy_only=False), err_msg=k)
        else:
            assert x.equals(y), k
    return True


def _same(got, want):
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_array_equal(np.array(got[k], dtype=float), np.array(want[k], dtype=float), err_msg=k)


# ------------------------------------------------------------------------- explicit, per-call analysis


def test_no_process_wide_analysis_cache():
    assert not hasattr(T, "_CACHE") and not hasattr(T, "analyze")
    batch = _batch(_docs(n=6))
    a, b = T.Analysis.of(batch), T.Analysis.of(batch)
    assert a is not b
    _same(_columns(a.run(RULE_SETS)), _columns(b.run(RULE_SETS)))


def test_one_analysis_serves_every_rule_set_and_equals_each_alone():
    batch = _batch(_docs())
    a = T.Analysis.of(batch)
    together = _columns(a.run(RULE_SETS))
    alone = _columns([r.score(batch) for r in RULE_SETS])
    shared = _columns([r.score(batch, a) for r in RULE_SETS])  # the same analysis handed to each
    _same(together, alone)
    _same(shared, alone)


@pytest.mark.parametrize("slice_bytes,piece_bytes", [(60, 60), (500, 100), (3000, 700), (1 << 30, None)])
def test_slices_and_pieces_give_the_same_scores(slice_bytes, piece_bytes):
    docs = _docs(seed=9) + ["\n".join(_docs(seed=2, n=8))]  # one long document with everything
    text = pa.array(docs, pa.string())
    whole = _columns(T.Analysis(text, slice_bytes=1 << 40).run(RULE_SETS))
    a = T.Analysis(text, slice_bytes=slice_bytes, piece_bytes=piece_bytes)
    if slice_bytes < 1000:
        assert any(e[0] == "pieces" for e in a.plan())
    _same(_columns(a.run(RULE_SETS)), whole)
    batch = pa.RecordBatch.from_arrays([text], names=["text"])
    assert C4Lines().map(batch, T.Analysis(text, slice_bytes=slice_bytes, piece_bytes=piece_bytes)).equals(
        C4Lines().map(batch, T.Analysis(text, slice_bytes=1 << 40)))


def test_large_string_and_chunked_text():
    docs = _docs(n=10)
    ref = _columns(T.Analysis(pa.array(docs, pa.string())).run(RULE_SETS))
    _same(_columns(T.Analysis(pa.array(docs, pa.large_string()), slice_bytes=200, piece_bytes=50).run(RULE_SETS)), ref)
    _same(_columns(T.Analysis(pa.chunked_array([docs[:4], docs[4:]], pa.string())).run(RULE_SETS)), ref)


def test_document_duplicates_without_splitting_equal_the_split():
    rng = random.Random(3)
    parts = ["a", "b", "Hello world", "", " ", "\t", "\u3000", "\xa0", "\r", "\r\n", "\n", "\n\n", "\n\n\n", "\x85", "\u2028",
             "日本語", "é", "x" * 300, "y" * 250, "  z  "]
    docs = ["".join(rng.choice(parts) for _ in range(rng.randrange(0, 40))) for _ in range(300)] + _docs(n=10)
    for t in docs:
        arr = pa.array([t])
        for how in ("newline", "newline_nonblank", "newlines", "paragraphs"):
            ref = {k: int(v[0]) for k, v in T._duplicates(*T._split_lines(arr, how), 1).items()}
            assert T.doc_duplicates(arr, how) == ref, (t, how)


def test_ngram_statistics_of_a_cut_document_equal_the_whole(monkeypatch):
    text = "\n".join(_docs(seed=4, n=12)) + ("the same words again " * 100 + "\n") * 3
    st = T.TextStats(pa.array([text]))
    tops, dups = [1, 2, 3, 4], [5, 6, 7, 8, 9, 10]
    want = ({n: int(st.top_ngram_chars(n)[0]) for n in tops}, {n: int(st.dup_ngram_chars(n)[0]) for n in dups})
    table = T.WordTable()
    # the words of the document in three pieces cut after newlines
    raw = text.encode()
    cuts = [0] + [raw.index(b"\n", k) + 1 for k in (len(raw) // 3, 2 * len(raw) // 3)] + [len(raw)]
    full = pa.array([text])
    for a, b in zip(cuts[:-1], cuts[1:]):
        table.add(*T.TextStats(pieces.piece(full, a, b)).word_refs())
    ids = table.ids()
    for part in (1 << 30, 500, 37):  # one group; groups by first word; groups split again by key
        monkeypatch.setattr(T, "_PART", part)
        monkeypatch.setattr(T, "_CHUNK", 1000)
        assert T.ngram_stats(ids, table.hash, table.length, 0, tops, dups) == want
    # one word over and over: every n-gram is the same
    same = np.zeros(5000, dtype=np.int32)
    monkeypatch.setattr(T, "_PART", 100)
    small = T.ngram_stats(same, np.array([12345], np.uint64), np.array([3], np.int32), 0, tops, dups)
    monkeypatch.setattr(T, "_PART", 1 << 30)
    assert small == T.ngram_stats(same, np.array([12345], np.uint64), np.array([3], np.int32), 0, tops, dups)


def test_concurrent_batches_in_threads_get_their_own_results():
    batches = [_batch(_docs(seed=s, n=15)) for s in (1, 2, 3, 4)]
    rule = WebQuality(mode="annotate")
    want = [apply_rule(rule, b) for b in batches]
    results, errors = {}, []

    def work(i):
        try:
            for _ in range(3):
                for j in (i, (i + 1) % len(batches)):
                    out, mask, reasons = apply_rule(rule, batches[j])
                    results.setdefault(j, []).append((out, mask, reasons))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for j, runs in results.items():
        for out, mask, reasons in runs:
            assert _same_batch(out, want[j][0]) and mask.tolist() == want[j][1].tolist() and reasons.tolist() == want[j][2].tolist()


# --------------------------------------------------------------------------------------- web_quality


def test_web_quality_equals_the_rule_sets_in_a_row():
    docs = _docs(seed=7, n=60) + [prose(i) for i in range(6)]
    batch = _batch(docs)
    order = ["gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality"]
    combined = WebQuality(rule_sets=order, add_scores=True, gopher_quality={"min_doc_words": 20})
    out, mask, reasons = apply_rule(combined, batch)
    rules = {"gopher_repetition": GopherRepetition(add_scores=True), "gopher_quality": GopherQuality(add_scores=True, min_doc_words=20),
             "c4_quality": C4Quality(add_scores=True), "fineweb_quality": FineWebQuality(add_scores=True)}
    keep = np.ones(len(docs), dtype=bool)
    want = np.full(len(docs), None, dtype=object)
    for name in order:
        o, m, r = apply_rule(rules[name], batch)
        want[keep & ~m] = r[keep & ~m]
        keep &= m
        for k in o.schema.names:
            if k not in ("id", "text"):
                np.testing.assert_array_equal(out.column(k).to_numpy(zero_copy_only=False), o.column(k).to_numpy(zero_copy_only=False), err_msg=k)
    assert mask.tolist() == keep.tolist() and reasons.tolist() == want.tolist()
    assert 0 < keep.sum() < len(docs) and len({r for r in want if r}) >= 3
    # annotate: nothing dropped, the first failing rule set's reason
    _, mask_a, reasons_a = apply_rule(WebQuality(rule_sets=order, mode="annotate", gopher_quality={"min_doc_words": 20}), batch)
    assert mask_a.tolist() == keep.tolist() and reasons_a.tolist() == want.tolist()


def test_web_quality_parameters_are_checked():
    with pytest.raises(ValueError, match="did you mean 'gopher_quality'"):
        WebQuality(rule_sets=["gopher_qualty"])
    with pytest.raises(ValueError, match="not in rule_sets"):
        WebQuality(rule_sets=["c4_quality"], gopher_quality={"min_doc_words": 3})
    with pytest.raises(ValueError, match="min_doc_wrds"):
        WebQuality(gopher_quality={"min_doc_wrds": 3})
    with pytest.raises(ValueError, match="listed twice"):
        WebQuality(rule_sets=["c4_quality", "c4_quality"])
    with pytest.raises(ValueError, match="mode"):
        WebQuality(c4_quality={"mode": "annotate"})
    assert [s.stage for s in WebQuality(rule_sets=["fineweb_quality", "c4_quality"])._sets] == ["fineweb_quality", "c4_quality"]


def test_web_quality_in_a_recipe(tmp_path):
    from curate.core.recipe import RecipeError, parse_recipe

    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    text = (f"input: {tmp_path}/a.jsonl\noutput: {tmp_path}/o\nstages:\n  - web_quality:\n"
            "      rule_sets: [gopher_quality, fineweb_quality]\n      gopher_quality: {{min_doc_words: 10}}\n")
    recipe = parse_recipe(text.replace("{{", "{").replace("}}", "}"))
    rule = recipe.stages[0][1]
    assert rule._sets[0].min_doc_words == 10
    with pytest.raises(RecipeError):
        parse_recipe(text.replace("{{", "{").replace("}}", "}").replace("min_doc_words: 10", "min_doc_words: -1"))


# ------------------------------------------------------------------------------- piecewise scorers


def test_toxic_words_and_pii_pieces_equal_the_whole(monkeypatch):
    from curate.scorers import pii
    from curate.scorers.toxic_words import ToxicWords, match_words

    rng = random.Random(0)
    vocab = "the bad blow job son of a bitch hello world fuck x-ray naïve Ｆｕｃｋ café shit damn".split()
    vocab += ["10.0.0.1", "192.168.1.254", "a@b.com", "john.doe@example.org", "2001:db8::8a2e:370:7334", "::ffff:192.0.2.1",
              "1.2.3", "v1.2.3.4", "10.0.0.1.", "fe80::1", "12:30:45", "日本"]
    docs = ["".join(rng.choice(vocab) + rng.choice([" ", " ", "\n", ", ", " — "]) for _ in range(rng.randrange(1, 150)))
            for _ in range(12)]
    arr = pa.array(docs)
    rule = ToxicWords(words=["blow job", "son of a bitch", "bad"])
    rule.setup()
    ref_words, ref_pii = match_words(arr, rule._compiled), pii.redact(arr)
    for size in (40, 300):
        monkeypatch.setattr(pieces, "SLICE_BYTES", size)
        got = match_words(arr, rule._compiled)
        assert np.array_equal(got[0], ref_words[0]) and np.array_equal(got[1], ref_words[1])
        text, emails, ips = pii.redact(arr)
        assert text.equals(ref_pii[0]) and np.array_equal(emails, ref_pii[1]) and np.array_equal(ips, ref_pii[2])
    assert ref_words[0].sum() > 0 and ref_pii[1].sum() > 0 and ref_pii[2].sum() > 0


def test_pieces_cut_where_asked():
    text = pa.array(["aaa\nbbb\nccc\n" * 50, "x" * 500, "short", "é é é é " * 100])
    plan = pieces.plan(text, 100, b"\n")
    kinds = [e[0] for e in plan]
    assert kinds == ["pieces", "docs", "docs", "pieces"] or kinds[:2] == ["pieces", "docs"]
    off, data = pieces.offsets(text)
    for e in plan:
        if e[0] == "pieces":
            bounds = e[2]
            assert bounds[0] == off[e[1]] and bounds[-1] == off[e[1] + 1]
            assert all(data[b - 1] == 10 for b in bounds[1:-1])
    plan = pieces.plan(text, 100, b" \n", ascii_next=True)
    for e in plan:
        if e[0] == "pieces":
            assert all(data[b - 1] in b" \n" and data[b] < 0x80 for b in e[2][1:-1])


# -------------------------------------------------------------------------------------------- hashing


def _xxh64(values, seed=0):
    return np.array([xxhash.xxh3_64_intdigest(v if isinstance(v, bytes) else (v or "").encode(), seed) for v in values], dtype=np.uint64)


def _xxh128(values, seed=0):
    raw = b"".join(xxhash.xxh3_128_digest(v if isinstance(v, bytes) else (v or "").encode(), seed) for v in values)
    return np.frombuffer(raw, dtype=">u8").reshape(len(values), 2).astype(np.uint64)


@pytest.mark.parametrize("vector_max", [None, 0, 40])
def test_hashes_are_xxh3_for_every_length_and_seed(monkeypatch, vector_max):
    if vector_max is not None:  # numpy for the short ones, the C code for the others
        monkeypatch.setattr(S, "_VECTOR_MAX_64", vector_max)
        monkeypatch.setattr(S, "_VECTOR_MAX_128", vector_max)
    rng = random.Random(1)
    values = [bytes(rng.randrange(256) for _ in range(n)) for n in range(0, 300) for _ in range(2)]
    values += [b"\xff" * n for n in range(0, 260, 7)] + [b"\x00" * n for n in range(0, 260, 5)]
    arr = pa.array(values, pa.binary())
    for seed in (0, 1, 12345, 2**63 + 5, 2**64 - 1):
        assert np.array_equal(S.hash_strings(arr, seed), _xxh64(values, seed))
        assert np.array_equal(S.hash_strings128(arr, seed), _xxh128(values, seed))
    # pinned: the values do not depend on this machine or on the numpy version
    assert int(S.hash_strings(pa.array(["", "a", "curate"]))[2]) == xxhash.xxh3_64_intdigest(b"curate")
    assert S.hash_strings(pa.array([""]))[0] == np.uint64(0x2D06800538D394C2)


def test_hashes_of_sliced_chunked_large_and_null_strings():
    words = [f"doc-{i:05d}-" + "x" * (i % 300) for i in range(700)] + ["", "é日本", None]
    ref64, ref128 = _xxh64(words), _xxh128(words)
    base = pa.array(words, pa.string())
    for arr in (base, pa.array(words, pa.large_string()), pa.chunked_array([words[:100], words[100:350], words[350:]]),
                base.cast(pa.string_view())):
        assert np.array_equal(S.hash_strings(arr), ref64)
        assert np.array_equal(S.hash_strings128(arr), ref128)
    assert np.array_equal(S.hash_strings(base.slice(123, 400)), ref64[123:523])
    assert np.array_equal(S.hash_strings128(base.slice(650)), ref128[650:])
    assert S.hash_strings(pa.array([], pa.string())).shape == (0,)
    assert S.hash_strings128(pa.array([], pa.string())).shape == (0, 2)
    assert np.array_equal(S.hash_strings(base, seed=7), S.hash_strings(base, seed=7))
    with pytest.raises(OverflowError):
        S.hash_strings(base, seed=-1)
