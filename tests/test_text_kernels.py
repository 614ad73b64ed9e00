"""The vectorized text kernels behind the dedup keys: whitespace folding and NFKC."""
import random
import unicodedata

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import curate.schema as E
from curate.schema import fold_whitespace
from curate.stages.exact_dedup import normalize_text

ALPHABET = [" ", "\t", "\n", "\r", "\f", "\v", "a", "B", "é", "e\u0301", "\u00a0", "\u3000", "ﬁ", "Ｈ", "  ", "\n\n"]


def _random_array(rng, n):
    vals = [None if rng.random() < 0.1 else "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 14)))
            for _ in range(n)]
    arr = pa.array(vals, type=rng.choice([pa.string(), pa.large_string()]))
    if n > 2 and rng.random() < 0.5:
        arr = arr.slice(1, n - 2)
    return arr


def test_fold_whitespace_equals_the_regex():
    rng = random.Random(0)
    for _ in range(2000):
        arr = _random_array(rng, rng.randint(0, 9))
        got = fold_whitespace(arr)
        got.validate(full=True)
        assert got.to_pylist() == pc.replace_substring_regex(arr, r"\s+", " ").to_pylist()
    assert fold_whitespace(pa.chunked_array([pa.array(["a  b"]), pa.array(["\t\tc"])])).to_pylist() == ["a b", " c"]
    with pytest.raises(TypeError):
        fold_whitespace(pa.array([1, 2]))


def test_fold_whitespace_in_small_blocks(monkeypatch):
    monkeypatch.setattr(E, "_FOLD_BLOCK", 3)  # runs and strings across block edges
    rng = random.Random(3)
    for _ in range(1000):
        arr = _random_array(rng, rng.randint(0, 9))
        assert fold_whitespace(arr).to_pylist() == pc.replace_substring_regex(arr, r"\s+", " ").to_pylist()


def test_nfkc_is_pythons_nfkc_and_skips_normal_values():
    rng = random.Random(1)
    for _ in range(500):
        arr = _random_array(rng, rng.randint(0, 9))
        expect = [None if v is None else unicodedata.normalize("NFKC", v) for v in arr.to_pylist()]
        assert E.nfkc(arr).to_pylist() == expect
    plain = pa.array(["already normal", "café"])
    assert E.nfkc(plain) is plain  # nothing to do: the same array comes back


def test_nfkc_of_huge_values_goes_piecewise(monkeypatch):
    monkeypatch.setattr(E, "_PIECE", 16)
    text = "e\u0301 ﬁrst line\nsecond Ｈ line é\u0301\n\nthird\n" * 20
    assert E.nfkc(pa.array([text, "x"])).to_pylist() == [unicodedata.normalize("NFKC", text), "x"]


def test_normalize_text_matches_the_reference():
    rng = random.Random(2)
    arr = _random_array(rng, 300)
    ref = [None if v is None else " ".join(unicodedata.normalize("NFKC", v).lower().replace("\v", "\x00").split())
           .replace("\x00", "\v") for v in arr.to_pylist()]
    got = normalize_text(arr).to_pylist()
    # the reference folds Python's whitespace; ours folds RE2's \s (no \v) and trims Unicode spaces: compare on
    # values without the characters where the two definitions differ
    for g, r, v in zip(got, ref, arr.to_pylist()):
        if v is not None and not any(c in v for c in "\v\u00a0\u3000"):
            assert g == r
