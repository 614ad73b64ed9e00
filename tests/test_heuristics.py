"""Heuristic rule sets (Gopher quality and repetition, C4, FineWeb) on hand-made documents at and
around each threshold; score/filter equivalence; words as spaCy's English tokenizer splits them;
the shared per-batch analysis; one run through the runner."""
from collections import Counter

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from conftest import PROSE, prose, read_output, write_jsonl

from curate import schema as S
from curate.core.stage import apply_rule
from curate.stages.heuristics import _text as T
from curate.stages.heuristics.c4 import C4Lines, C4Quality
from curate.stages.heuristics.fineweb import FineWebQuality
from curate.stages.heuristics.gopher_quality import GopherQuality
from curate.stages.heuristics.gopher_repetition import GopherRepetition


def _batch(texts, ids=None):
    ids = ids or [f"d{i}" for i in range(len(texts))]
    return S.with_key(pa.RecordBatch.from_pydict({"id": pa.array(ids, pa.string()), "text": pa.array(texts, pa.string())}), "k")


def _run(rule, texts):
    """(keep mask as a list, reasons as a list, score columns as lists)"""
    if hasattr(rule, "add_scores"):
        rule.add_scores = True
    out, mask, reasons = apply_rule(rule, _batch(texts))
    scores = {k: out.column(k).to_pylist() for k in out.schema.names if k not in ("id", "text")}
    return mask.tolist(), reasons.tolist(), scores


def _words(text):
    w = T.tokenize(pl.Series([text]))
    return w.vocab.gather(w.ref).to_list()


# ------------------------------------------------------------------------------------------- words

# expected: what spaCy's blank English tokenizer (DataTrove's English word tokenizer) returns
SPACY_WORDS = {
    "don't": ["do", "n't"], "I’m": ["I", "’m"], "dont": ["do", "nt"], "cannot": ["can", "not"],
    "U.S.": ["U.S."], "e.g.": ["e.g."], "etc.": ["etc", "."], "end.Next": ["end", ".", "Next"],
    "well-known": ["well", "-", "known"], "10km": ["10", "km"], "$10": ["$", "10"],
    "http://foo.com/a-b": ["http://foo.com/a-b"], "hello...": ["hello", "..."], "Hello!?": ["Hello", "!", "?"],
    "3.5": ["3.5"], "(hello),": ["(", "hello", ")", ","], "z.B.": ["z.", "B."], "Follower):": ["Follower", "):"],
    "John's": ["John", "'s"], "a/b": ["a", "/", "b"], "1-2": ["1", "-", "2"], "Mr.": ["Mr."], "5pm": ["5", "pm"],
    "gonna": ["gon", "na"], "USA.": ["USA", "."], "x....": ["x", "...."], "«mot»": ["«", "mot", "»"],
    "„Wort“,": ["„", "Wort", "“", ","], "self-made.": ["self", "-", "made", "."], "1,000.": ["1,000", "."],
    "St.”": ["St.", "”"], "it’s": ["it", "’s"], "x-dont.": ["x", "-", "dont", "."], "naïve.": ["naïve", "."],
    "ol'": ["ol'"], "Ph.D.": ["Ph.D."], ":)": [":)"], "word;)": ["word", ";)"], "don’t,": ["do", "n’t", ","],
    '"Yes,"': ['"', "Yes", ",", '"'], "A.": ["A."], "a.m.": ["a.m."], "12:30": ["12:30"],
    "°C.": ["°", "C", "."], "im.": ["i", "m."], "'Cause": ["'Cause"], "“Y’all": ["“", "Y’all"],
    "кухонь.Эксклюзивный": ["кухонь", ".", "Эксклюзивный"], "CO₂-Emissionen": ["CO₂-Emissionen"],
    "18½-minute": ["18½-minute"], "$10,000-$50,000": ["$", "10,000-$50,000"], "220...240VAC": ["220", "...", "240VAC"],
    "ist…;-)": ["ist", "…", ";-", ")"], "(8)": ["(", "8)"], "km/h.": ["km", "/", "h."], "Wittkamp🐬": ["Wittkamp", "🐬"],
    "《GOODBYE&HELLO》-最靠近": ["《", "GOODBYE&HELLO》", "-", "最靠近"],
}


@pytest.mark.parametrize("chunk", sorted(SPACY_WORDS))
def test_words_follow_spacy_english_tokenizer(chunk):
    assert list(T.splitter()._split(chunk)) == SPACY_WORDS[chunk]
    assert _words(chunk) == SPACY_WORDS[chunk]  # through the batch path (vectorized forms, memo)


def test_words_of_a_batch_keep_order_and_documents():
    texts = [" ".join(SPACY_WORDS), "plain words only", "", "  \n\t ", "(a) b-c d. 7, x\r\ny"]
    w = T.tokenize(pl.Series(texts))
    got = w.vocab.gather(w.ref).to_list()
    want = [t for text in texts for c in text.split() for t in T.splitter()._split(c)]
    assert got == want
    assert np.diff(w.start).tolist() == [sum(len(T.splitter()._split(c)) for c in t.split()) for t in texts]


# --------------------------------------------------------------------------------- gopher quality

GQ_OFF = dict(min_doc_words=None, max_doc_words=None, min_avg_word_length=None, max_avg_word_length=None,
              max_symbol_word_ratio=None, max_bullet_lines_ratio=None, max_ellipsis_lines_ratio=None,
              min_alpha_words_ratio=None, min_stop_words=None)


def gq(**kw):
    return GopherQuality(**{**GQ_OFF, **kw})


def test_gopher_word_count_bounds():
    mask, reasons, s = _run(gq(min_doc_words=50, max_doc_words=100_000),
                            [" ".join(["word"] * 50), " ".join(["word"] * 49), "word , " * 49 + "word",
                             "a " * 100_000, "a " * 100_001])
    assert mask == [True, False, True, True, False]
    assert reasons[1] == "gopher_short_doc" and reasons[4] == "gopher_long_doc"
    assert s["gopher_word_count"][:3] == [50, 49, 50]  # a comma is a token but not a word


def test_gopher_mean_word_length_bounds():
    docs = ["abc " * 10, "abc " * 9 + "ab", "abc, abc. abc!", "abcdefghij " * 10, "abcdefghij " * 9 + "abcdefghijk"]
    mask, reasons, s = _run(gq(min_avg_word_length=3, max_avg_word_length=10), docs)
    assert s["gopher_mean_word_length"] == [3.0, 2.9, 3.0, 10.0, 10.1]
    assert mask == [True, False, True, True, False]
    assert reasons[1] == "gopher_below_avg_threshold" and reasons[4] == "gopher_above_avg_threshold"


def test_gopher_symbol_ratios():
    words = lambda n: " ".join(f"w{i}x" for i in range(n))  # noqa: E731
    docs = [words(90) + " #" * 10, words(89) + " #" * 11, words(90) + " ..." * 10, words(89) + " …" * 11]
    mask, reasons, s = _run(gq(max_symbol_word_ratio=0.1), docs)
    assert s["gopher_hash_ratio"][:2] == [0.1, 0.11] and s["gopher_ellipsis_ratio"][2:] == [0.1, 0.11]
    assert mask == [True, False, True, False]
    assert reasons[1] == "gopher_too_many_hashes" and reasons[3] == "gopher_too_many_ellipsis"


def test_gopher_bullet_and_ellipsis_lines():
    def bullets(k):  # k of 10 lines start with a bullet (after spaces)
        return "\n".join(("  - item" if i % 2 else "• item") if i < k else "plain line" for i in range(10))

    def ends(k):  # k of 10 lines end with an ellipsis (before spaces)
        return "\n".join(f"line {i}" + (("..." if i % 2 else "…  ") if i < k else "") for i in range(10))

    mask, reasons, s = _run(gq(max_bullet_lines_ratio=0.9, max_ellipsis_lines_ratio=0.3),
                            [bullets(9), bullets(10), ends(3), ends(4), "- one\n- two\n"])
    assert s["gopher_bullet_lines_ratio"] == [0.9, 1.0, 0.0, 0.0, 1.0]  # a final newline starts no line
    assert s["gopher_ellipsis_lines_ratio"][2:4] == [0.3, 0.4]
    assert mask == [True, False, True, False, False]
    assert reasons[1] == "gopher_too_many_bullets" and reasons[3] == "gopher_too_many_end_ellipsis"


def test_gopher_alphabetic_words():
    docs = [" ".join(["word"] * 80 + ["123"] * 20), " ".join(["word"] * 79 + ["123"] * 21), "1st 2nd 3rd 4th 5"]
    mask, reasons, s = _run(gq(min_alpha_words_ratio=0.8), docs)
    assert s["gopher_alpha_words_ratio"] == [0.8, 0.79, 0.8]
    assert mask == [True, False, True] and reasons[1] == "gopher_below_alpha_threshold"


def test_gopher_stop_words():
    docs = ["the cat and the dog", "The cat And the dog", "the the the", "cat, dog. the; and!"]
    mask, reasons, s = _run(gq(min_stop_words=2), docs)
    assert s["gopher_stop_words"] == [2, 1, 1, 2]  # case-sensitive, distinct words
    assert mask == [True, False, False, True] and reasons[1] == "gopher_too_few_stop_words"
    mask, _, _ = _run(gq(min_stop_words=1, stop_words=["cat"]), docs[:3])
    assert mask == [True, True, False]


def test_gopher_quality_defaults_keep_prose_and_name_the_first_failure():
    mask, reasons, _ = _run(GopherQuality(), [prose(0), prose(1, 1), "# " * 60, "1 2 3 " * 30])
    assert mask == [True, False, False, False]
    assert reasons[1:] == ["gopher_short_doc", "gopher_short_doc", "gopher_below_avg_threshold"]  # "#" is no word


# ------------------------------------------------------------------------------ gopher repetition

GR_OFF = dict(dup_para_frac=None, dup_para_char_frac=None, dup_line_frac=None, dup_line_char_frac=None,
              top_ngrams={}, dup_ngrams={})


def gr(**kw):
    return GopherRepetition(**{**GR_OFF, **kw})


def _units(n_distinct, n_dup, sep):
    return sep.join([f"unit number {i}" for i in range(n_distinct)] + ["repeated"] * (n_dup + 1))


def test_gopher_duplicate_paragraph_and_line_fractions():
    # 10 paragraphs (or lines), 3 of them repeat an earlier one: 0.3 is kept, 4 of 11 is dropped
    mask, reasons, s = _run(gr(dup_para_frac=0.3), [_units(6, 3, "\n\n"), _units(6, 4, "\n\n\n")])
    assert s["gopher_dup_para_frac"] == [0.3, 4 / 11] and mask == [True, False] and reasons[1] == "gopher_dup_para_frac"
    mask, reasons, s = _run(gr(dup_line_frac=0.3), [_units(6, 3, "\n"), _units(6, 4, "\n\n")])
    assert s["gopher_dup_line_frac"] == [0.3, 4 / 11] and mask == [True, False] and reasons[1] == "gopher_dup_line_frac"
    # leading/trailing newlines make empty lines (re.split semantics), and a second empty line is a duplicate
    _, _, s = _run(gr(dup_line_frac=0.3), ["\nabc\n"])
    assert s["gopher_dup_line_frac"] == [1 / 3]


def test_gopher_duplicate_character_fractions():
    # the repeated unit has 20 characters; 20 / 100 is kept, 20 / 99 is dropped
    def doc(sep, total):
        rep = "r" * 20
        filler = "f" * (total - 2 * len(sep) - 2 * len(rep))
        return filler + sep + rep + sep + rep

    mask, reasons, s = _run(gr(dup_para_char_frac=0.2), [doc("\n\n", 100), doc("\n\n", 99)])
    assert s["gopher_dup_para_char_frac"] == [0.2, 20 / 99] and mask == [True, False]
    assert reasons[1] == "gopher_dup_para_char_frac"
    mask, reasons, s = _run(gr(dup_line_char_frac=0.2), [doc("\n", 100), doc("\n", 99)])
    assert s["gopher_dup_line_char_frac"] == [0.2, 20 / 99] and mask == [True, False]
    assert reasons[1] == "gopher_dup_line_char_frac"


def _pad(text, total):
    """``text`` + one more word so that the document has exactly ``total`` characters."""
    return text + " " + "z" * (total - len(text) - 1)


def test_gopher_top_ngram_fraction():
    # "ab cd" (5 characters) twice: 10 characters; 10 / 50 = 0.2 is kept, 10 / 49 is dropped
    base = "ab cd q1 ab cd"
    mask, reasons, s = _run(gr(top_ngrams={2: 0.2}), [_pad(base, 50), _pad(base, 49)])
    assert s["gopher_top_2_gram_char_frac"] == [0.2, 10 / 49] and mask == [True, False]
    assert reasons[1] == "gopher_top_2_gram"
    # no repeated n-gram: the first one counts once; fewer words than n: no n-gram, 0
    _, _, s = _run(gr(top_ngrams={3: 0.18}), ["aaaa b c d e", "x y"])
    assert s["gopher_top_3_gram_char_frac"] == [8 / 12, 0.0]


def test_gopher_duplicated_ngram_fraction():
    # the 5-gram "a b c d e" twice: 5 repeated characters (spaces not counted); 5 / ... = 0.15
    base = "a b c d e a b c d e"
    n_chars = round(5 / 0.15)
    mask, reasons, s = _run(gr(dup_ngrams={5: 0.15}), [_pad(base, n_chars + 1), _pad(base, n_chars - 1)])
    assert s["gopher_dup_5_gram_char_frac"] == [5 / (n_chars + 1), 5 / (n_chars - 1)]
    assert mask == [True, False] and reasons[1] == "gopher_dup_5_grams"


def _ref_top(words, n):
    grams = [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0
    g, c = Counter(grams).most_common(1)[0]
    return len(g) * c


def _ref_dup(words, n):
    seen, chars, i = set(), 0, 0
    while i < len(words) - n + 1:
        g = "".join(words[i : i + n])
        if g in seen:
            chars += len(g)
            i += n
        else:
            seen.add(g)
            i += 1
    return chars


def test_ngram_statistics_match_the_reference_definitions():
    rng = np.random.default_rng(3)
    vocab = ["a", "bb", "ccc", "dd", "e", "ffff", "g"]
    docs = [" ".join(rng.choice(vocab[: rng.integers(2, 8)], size=rng.integers(0, 120))) for _ in range(150)]
    docs += ["a b a b a b a b a b a b", "x " * 40, "p q r s t p q r s t u p q r s t"]
    docs = [d if d.strip() else "solo" for d in docs]
    _, _, s = _run(GopherRepetition(), docs)
    for i, d in enumerate(docs):
        w = d.split()
        for n in (2, 3, 4):
            assert s[f"gopher_top_{n}_gram_char_frac"][i] == _ref_top(w, n) / len(d), (d, n)
        for n in range(5, 11):
            assert s[f"gopher_dup_{n}_gram_char_frac"][i] == _ref_dup(w, n) / len(d), (d, n)


def test_gopher_repetition_defaults():
    spam = "\n".join(["Buy cheap watches now"] * 10 + [prose(2)])
    mask, reasons, _ = _run(GopherRepetition(), [prose(0), spam, "word " * 200])
    assert mask == [True, False, False]
    assert reasons[1] == "gopher_dup_line_frac" and reasons[2] == "gopher_top_2_gram"
    with pytest.raises(ValueError):
        GopherRepetition(top_ngrams={0: 0.1})


# ------------------------------------------------------------------------------------------- C4

C4_DOC = "\n".join([
    "  This line has enough words.  ",
    "Short line.",  # 2 words
    "This line has no terminal punctuation",
    "Please enable JavaScript in your browser.",
    "We use cookies to improve this site.",
    "This one trails off with an ellipsis...",
    "A cited claim stands here [1].",
    "[edit] Heading text comes next.",
    "He said: \"this is quoted.\"",
    "x" * 1001 + " is a very long word.",
    "y" * 1000 + " is a long word.",
])


def test_c4_lines_keeps_the_lines_that_pass():
    out = apply_rule(C4Lines(), _batch([C4_DOC, "no line passes here", "Only this line passes the rules."]))[0]
    assert out.column("text").to_pylist() == [
        "This line has enough words.\nA cited claim stands here .\n Heading text comes next.\n"
        "He said: \"this is quoted.\"\n" + "y" * 1000 + " is a long word.",
        "", "Only this line passes the rules."]
    _, mask, reasons = apply_rule(C4Lines(), _batch([C4_DOC, "no line passes here"]))
    assert mask.tolist() == [True, False] and reasons[1] == "empty_after_c4_lines"
    # every rule can be turned off
    off = C4Lines(filter_no_terminal_punct=False, min_words_per_line=None, max_word_length=None,
                  filter_javascript=False, filter_policy=False, remove_citations=False)
    assert apply_rule(off, _batch([C4_DOC]))[0].column("text").to_pylist() == ["\n".join(x.strip() for x in C4_DOC.splitlines())]


def test_c4_document_rules():
    five = "One two three.\nFour five six. Seven eight nine!\nTen eleven twelve?\nThirteen fourteen fifteen."
    docs = [
        five,  # 5 sentences
        five.rsplit("\n", 1)[0],  # 4
        five + "\nSome lorem ipsum dolor text.",
        five + "\nlorem ipsum without punctuation",  # that line is dropped before the check
        five + "\nA line with a { bracket.",
        five + "\nThe javascript code { is removed.",  # javascript lines go before the bracket check
        five + "\nA line with a { bracket",  # no punctuation: removed, no check
        "Mr. Smith went home. He slept.\nIt was late, e.g. ten p.m. here.",  # abbreviations do not end sentences
    ]
    mask, reasons, s = _run(C4Quality(add_scores=True), docs)
    assert s["c4_num_sentences"][:2] == [5, 4] and s["c4_num_sentences"][7] == 3
    assert mask == [True, False, False, True, False, True, True, False]
    assert reasons[1] == "c4_too_few_sentences" and reasons[2] == "c4_lorem_ipsum" and reasons[4] == "c4_curly_bracket"
    assert s["c4_lorem_ipsum_lines"][2:4] == [1, 0] and s["c4_curly_bracket_lines"][4:7] == [1, 0, 0]
    assert s["c4_kept_lines"][:2] == [4, 3]
    mask, _, _ = _run(C4Quality(min_num_sentences=4, filter_lorem_ipsum=False, filter_curly_bracket=False), docs[:5])
    assert mask == [True, True, True, True, True]


# -------------------------------------------------------------------------------------- FineWeb

FW_OFF = dict(line_punct_thr=None, short_line_thr=None, char_duplicates_ratio=None, new_line_ratio=None)


def fw(**kw):
    return FineWebQuality(**{**FW_OFF, **kw})


def test_fineweb_line_punctuation_ratio():
    doc = lambda k: "\n".join(f"line number {i}" + ("." if i < k else "") for i in range(25)) + "\n   \n\n"  # noqa: E731
    mask, reasons, s = _run(fw(line_punct_thr=0.12), [doc(3), doc(2), doc(0)])
    assert s["fineweb_line_punct_ratio"] == [0.12, 0.08, 0.0]  # blank lines do not count
    assert mask == [True, False, False] and reasons[1] == "fineweb_line_punct_ratio"
    mask, _, _ = _run(fw(line_punct_thr=0.12, line_punct_exclude_zero=True), [doc(2), doc(0)])
    assert mask == [False, True]


def test_fineweb_short_line_ratio():
    doc = lambda k: "\n".join(("s" * 30 if i < k else "l" * 31) for i in range(100))  # noqa: E731  k short lines
    mask, reasons, s = _run(fw(short_line_thr=0.67), [doc(67), doc(68)])
    assert s["fineweb_short_line_ratio"] == [0.67, 0.68] and mask == [True, False]
    assert reasons[1] == "fineweb_short_line_ratio"


def test_fineweb_duplicated_line_characters():
    # a 10-character line repeated once, in 1000 (kept) or 999 (dropped) characters without newlines
    doc = lambda total: "\n".join(["d" * 10, "f" * (total - 20), "d" * 10])  # noqa: E731
    mask, reasons, s = _run(fw(char_duplicates_ratio=0.01), [doc(1000), doc(999)])
    assert s["fineweb_char_dup_ratio"] == [0.01, 10 / 999] and mask == [True, False]
    assert reasons[1] == "fineweb_char_dup_ratio"


def test_fineweb_list_ratio():
    # newlines per word: 3 / 10 is kept, 4 / 10 is dropped
    mask, reasons, s = _run(fw(new_line_ratio=0.3), ["a b c\nd e f\ng h\ni j", "a b\nc d\ne f\ng h\ni j"])
    assert s["fineweb_list_ratio"] == [0.3, 0.4] and mask == [True, False] and reasons[1] == "fineweb_list_ratio"


def test_fineweb_defaults():
    menu = "\n".join(["Home", "About", "Contact", "Shop", "Blog"] * 3)
    mask, reasons, _ = _run(FineWebQuality(), ["\n".join(PROSE), menu])
    assert mask == [True, False] and reasons[1] == "fineweb_line_punct_ratio"


# ------------------------------------------------------------------------ score/filter equivalence


def _corpus():
    rng = np.random.default_rng(11)
    words = "the of and to a in that is was he for it with as his on be at by I this had not are but".split()
    docs = []
    for i in range(60):
        lines = []
        for _ in range(rng.integers(1, 12)):
            k = int(rng.integers(1, 15))
            line = " ".join(rng.choice(words + ["#tag", "...", "123", "x-y", "(z)", "lorem ipsum", "{x}"], size=k))
            line = rng.choice(["", "- ", "• "], p=[0.7, 0.2, 0.1]) + line + rng.choice(["", ".", "!", "...", " it."])
            lines.append(line)
        if i % 3 == 0:
            lines += lines[: rng.integers(1, len(lines) + 1)]
        docs.append(rng.choice(["\n", "\n\n"]).join(lines) or "x")
    return docs + [prose(i) for i in range(6)]


# (rule, the threshold field, its score column, the check fails when the score is "below"/"above" it,
#  the parameters that turn the other checks off)
EQUIVALENCE = [
    (GopherQuality, "min_doc_words", "gopher_word_count", "below", GQ_OFF),
    (GopherQuality, "max_doc_words", "gopher_word_count", "above", GQ_OFF),
    (GopherQuality, "min_avg_word_length", "gopher_mean_word_length", "below", GQ_OFF),
    (GopherQuality, "max_avg_word_length", "gopher_mean_word_length", "above", GQ_OFF),
    (GopherQuality, "max_bullet_lines_ratio", "gopher_bullet_lines_ratio", "above", GQ_OFF),
    (GopherQuality, "max_ellipsis_lines_ratio", "gopher_ellipsis_lines_ratio", "above", GQ_OFF),
    (GopherQuality, "min_alpha_words_ratio", "gopher_alpha_words_ratio", "below", GQ_OFF),
    (GopherQuality, "min_stop_words", "gopher_stop_words", "below", GQ_OFF),
    (GopherRepetition, "dup_para_frac", "gopher_dup_para_frac", "above", GR_OFF),
    (GopherRepetition, "dup_para_char_frac", "gopher_dup_para_char_frac", "above", GR_OFF),
    (GopherRepetition, "dup_line_frac", "gopher_dup_line_frac", "above", GR_OFF),
    (GopherRepetition, "dup_line_char_frac", "gopher_dup_line_char_frac", "above", GR_OFF),
    (GopherRepetition, ("top_ngrams", 3), "gopher_top_3_gram_char_frac", "above", {**GR_OFF, "top_ngrams": {3: 1.0}}),
    (GopherRepetition, ("dup_ngrams", 6), "gopher_dup_6_gram_char_frac", "above", {**GR_OFF, "dup_ngrams": {6: 1.0}}),
    (C4Quality, "min_num_sentences", "c4_num_sentences", "below", dict(filter_lorem_ipsum=False, filter_curly_bracket=False)),
    (FineWebQuality, "line_punct_thr", "fineweb_line_punct_ratio", "below", FW_OFF),
    (FineWebQuality, "short_line_thr", "fineweb_short_line_ratio", "above", FW_OFF),
    (FineWebQuality, "char_duplicates_ratio", "fineweb_char_dup_ratio", "above", FW_OFF),
    (FineWebQuality, "new_line_ratio", "fineweb_list_ratio", "above", FW_OFF),
]


INT_FIELDS = {"min_doc_words", "max_doc_words", "min_stop_words", "min_num_sentences"}


@pytest.mark.parametrize("cls,field,column,side,off", EQUIVALENCE, ids=[str(e[1]) for e in EQUIVALENCE])
def test_filtering_at_a_threshold_drops_exactly_the_scores_past_it(cls, field, column, side, off):
    docs = _corpus()
    scores = np.array(_run(cls(mode="annotate", **off), docs)[2][column], dtype=float)
    values = np.unique(scores[np.isfinite(scores)])
    assert len(values) >= 4, "the corpus should spread the scores"
    thresholds = values if field in INT_FIELDS else np.unique(np.concatenate([values, (values[1:] + values[:-1]) / 2]))
    for thr in thresholds[:: max(1, len(thresholds) // 12)]:
        value = int(thr) if field in INT_FIELDS else float(thr)
        params = {**off, field[0]: {field[1]: value}} if isinstance(field, tuple) else {**off, field: value}
        _, mask, _ = apply_rule(cls(**params), _batch(docs))
        fails = scores < thr if side == "below" else scores > thr
        assert mask.tolist() == (~fails).tolist(), (field, thr)


def test_document_level_flags_decide_c4():
    docs = _corpus()
    _, mask, _ = apply_rule(C4Quality(min_num_sentences=None), _batch(docs))
    s = _run(C4Quality(mode="annotate"), docs)[2]
    flagged = (np.array(s["c4_lorem_ipsum_lines"]) > 0) | (np.array(s["c4_curly_bracket_lines"]) > 0)
    assert flagged.any() and mask.tolist() == (~flagged).tolist()


# ------------------------------------------------------------------------------ shared analysis


def test_empty_batches_and_odd_documents():
    for rule in (GopherQuality(), GopherRepetition(), C4Quality(), FineWebQuality(), C4Lines()):
        out, mask, _ = apply_rule(rule, _batch([]))
        assert len(mask) == 0
        odd = ["!!! ???", "日本語のテキストです。句読点もあります。", "a\r\nb\rc", "\u2028x\u2029", "…", "{}"]
        out, mask, reasons = apply_rule(rule, _batch(odd))
        assert len(mask) == len(odd)


# -------------------------------------------------------------------------------------- end to end


def test_annotate_run_adds_scores_and_reasons(tmp_path, run):
    spam = "\n".join(["Buy cheap watches now"] * 12)
    write_jsonl(tmp_path / "a.jsonl", [{"id": "good", "text": "\n".join(PROSE)}, {"id": "spam", "text": spam},
                                       {"id": "short", "text": "Too short."}])
    res = run(f"""
input: {tmp_path}/a.jsonl
output: {tmp_path}/out
stages:
  - gopher_quality: {{mode: annotate}}
  - gopher_repetition: {{mode: annotate}}
  - c4_quality: {{mode: annotate}}
  - fineweb_quality: {{mode: annotate, short_line_length: 25}}
""")
    out = {r["id"]: r for r in read_output(tmp_path / "out").to_pylist()}
    assert set(out) == {"good", "spam", "short"}
    good, spam_row, short = out["good"], out["spam"], out["short"]
    for stage in ("gopher_quality", "gopher_repetition", "c4_quality", "fineweb_quality"):
        assert good[f"{stage}_reason"] is None
    assert spam_row["gopher_repetition_reason"] == "gopher_dup_para_frac" or spam_row["gopher_repetition_reason"] == "gopher_dup_line_frac"
    assert short["gopher_quality_reason"] == "gopher_short_doc" and short["c4_quality_reason"] == "c4_too_few_sentences"
    assert good["gopher_word_count"] > 100 and good["c4_num_sentences"] == 6 and good["fineweb_line_punct_ratio"] == 1.0
    assert res.stats["gopher_quality"].n_dropped == 0 and res.stats["gopher_quality"].flagged["gopher_short_doc"] == 2


def test_c4_run_rewrites_text_and_balances(tmp_path, run):
    write_jsonl(tmp_path / "a.jsonl", [{"id": "a", "text": C4_DOC + "\n" + "\n".join(PROSE)},
                                       {"id": "b", "text": "No punctuation anywhere here\nnor here"}])
    res = run(f"""
input: {tmp_path}/a.jsonl
output: {{path: {tmp_path}/out, write_rejected: true}}
stages:
  - c4_quality: {{}}
  - c4_lines: {{}}
""")
    (row,) = read_output(tmp_path / "out").to_pylist()
    assert row["id"] == "a" and row["text"].startswith("This line has enough words.\nA cited claim stands here .")
    assert "JavaScript" not in row["text"] and row["text"].endswith(PROSE[-1])
    assert res.stats["c4_quality"].dropped == {"c4_too_few_sentences": 1}
