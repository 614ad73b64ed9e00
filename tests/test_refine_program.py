"""ProX refining programs: the parser (curate.refine.program) and the executor (curate.refine.execute).

Unit tests cover every call form (keyword, positional, mixed), every decision rule, commas, ``=``,
quotes and parentheses inside strings, canonical rendering (``parse(render(p)) == p``) and the
batch API.

The fuzz test (``test_fuzz``) runs 10,812 programs made by a seeded ``random.Random(20241130)``
through ``parse_program`` and ``execute`` on four documents (1, 7, 30 and 120 lines): 24 classes
of 450 programs each, plus 12 megabyte programs:

  valid (random valid calls, with fences, blank lines, ``;``, odd white space) · strings with
  ``, = ( ) " ' \\`` inside · imports (``import os``, ``from os import system``) · attribute
  access (``os.system(...)``, ``().__class__.__bases__...``) · ``__import__`` as call and as
  argument · lambdas · comprehensions and generators · f-strings · ``*args``/``**kwargs`` ·
  nested calls as arguments (``remove_lines(line_start=len(x), ...)``) · names and walrus as
  arguments · huge numbers (``10**100``, 40- and 5,000-digit literals, floats, bools) · negative
  and reversed ranges · out-of-range lines · non-UTF-8 bytes, lone surrogates, NUL bytes, BOM ·
  unbalanced quotes and parentheses · deep nesting (``(``, ``-``, ``[``, ``{``, ``not``,
  ``lambda:``, ``+x``, ``a.`` repeated 50 to 100,000 times) · random bytes · valid programs with
  random character edits · valid and hostile lines mixed · statements (assignments, ``global``,
  ``exec``, ``eval``, ``open``, ``breakpoint``, ``def``, ``class``, ``with``, ``del``) · calls
  of unknown or builtin names · wrong arity and unknown keywords · doc-level/chunk-level mixes ·
  megabyte programs (10 over the 1 MB cap; 2 just under it: a string literal far over the string
  limit, a comment).

Outcomes of the 10,812 (Python 3.11): 7,847 unchanged for lack of edits (``keep_doc()``,
``skip_chunk()``, and most hostile programs: one invalid call, which is tolerated, and nothing
else), 1,147 unchanged with 2+ invalid calls (original kept), 829 refined, 527 kept (valid
edits with no effect), 240 dropped by ``drop_doc()``, 206 by the word-ratio rule, 16 by the
too-few-words rule. Parsing and executing all of them takes about 5 s on 2 CPU cores.

Hostile programs try to create a sentinel file and to set ``builtins`` and module globals if
they were ever evaluated. During the loop ``builtins.eval`` and ``exec`` raise, ``__import__`` raises
for anything but ``unicodedata`` (which CPython's parser imports to read a ``"\\N{...}"`` escape),
and ``compile`` is allowed only to build an AST; every attempt is recorded. Asserted for every
program: nothing raises; nothing is imported, evaluated or executed; the sentinel file and
globals do not exist; the valid calls render and re-parse to the same calls; a program with
``max_invalid`` invalid calls or more returns the original text exactly; a dropped document is
dropped only by a valid ``drop_doc()`` or by the word rules; any other result is the original
text or exactly the original lines, normalized by the applied calls, minus the removed ones.
"""
from __future__ import annotations

import builtins
import os
import random
import sys
import time

import pyarrow as pa
import pytest

from curate.refine.execute import Result, Settings, execute, execute_batch
from curate.refine.program import MAX_CHARS, Call, Program, check_lines, parse_program, quote

# ---------------------------------------------------------------------------------------------
# helpers


def doc(n: int, words: int = 8) -> str:
    """A document of ``n`` lines, line i holding ``words`` words that name it."""
    return "\n".join(" ".join(f"w{i}_{j}" for j in range(words)) for i in range(n))


def ok(text, **kw) -> Program:
    p = parse_program(text, **kw)
    assert p.errors == [], p.errors
    return p


# ---------------------------------------------------------------------------------------------
# parser: call forms


def test_keyword_positional_and_mixed_forms_are_the_same_call():
    forms = ["remove_lines(line_start=3, line_end=7)", "remove_lines(3, 7)", "remove_lines(3, line_end=7)",
             "remove_lines(line_end=7, line_start=3)", "remove_lines( 3 ,7 )"]
    calls = [ok(f).calls for f in forms]
    assert all(c == [Call("remove_lines", (("line_start", 3), ("line_end", 7)))] for c in calls)
    n1 = ok('normalize(source_str="a", target_str="b")').calls
    assert n1 == ok('normalize("a", "b")').calls == ok("normalize('a', target_str='b')").calls
    assert n1 == ok('normalize(target_str="b", source_str="a")').calls


def test_normalize_target_defaults_to_empty():
    assert ok('normalize(source_str="x")').calls == [Call("normalize", (("source_str", "x"), ("target_str", "")))]
    assert ok('normalize("x")').calls == ok('normalize("x", "")').calls


def test_doc_level_calls():
    p = ok("drop_doc()\nkeep_doc()\nskip_chunk()")
    assert [c.name for c in p.calls] == ["drop_doc", "keep_doc", "skip_chunk"]
    assert all(c.args == () for c in p.calls)


def test_commas_equals_quotes_parens_inside_strings():
    cases = {
        'normalize(source_str="a, b", target_str="x=y")': ("a, b", "x=y"),
        'normalize(source_str="f(x)=1, g(y)=2", target_str=")")': ("f(x)=1, g(y)=2", ")"),
        'normalize(source_str="say \\"hi\\"", target_str="\'")': ('say "hi"', "'"),
        "normalize(source_str='it\\'s, =', target_str='\\\\')": ("it's, =", "\\"),
        'normalize("source_str=", "target_str=x,")': ("source_str=", "target_str=x,"),
        'normalize("#not a comment", "")': ("#not a comment", ""),
        'normalize("a;b", "c") ; skip_chunk()': ("a;b", "c"),
        'normalize("Ünïcødé ✓", "\\t")': ("Ünïcødé ✓", "\t"),
    }
    for src, (a, b) in cases.items():
        c = ok(src).calls[0]
        assert (c.arg("source_str"), c.arg("target_str")) == (a, b), src


def test_implicit_concatenation_and_parenthesized_constants():
    assert ok('normalize("a" "b", ("c"))').calls[0].args == (("source_str", "ab"), ("target_str", "c"))
    assert ok("remove_lines(((1)), +2)").calls[0].args == (("line_start", 1), ("line_end", 2))


def test_separators_whitespace_fences_crlf_bom():
    text = "\ufeff```python\n  remove_lines(0, 1)\r\n\n\tnormalize('a','b');  skip_chunk() \n```\n"
    p = ok(text)
    assert [c.name for c in p.calls] == ["remove_lines", "normalize", "skip_chunk"]
    assert ok("").calls == [] and ok("\n \n```\n```").calls == [] and ok(None).calls == []
    assert ok(b"keep_doc()").calls == [Call("keep_doc")]


def test_multiline_call_is_one_call():
    p = ok('normalize(\n    source_str="a",\n    target_str="b",\n)\nremove_lines(\n 1,\n 2)')
    assert [c.name for c in p.calls] == ["normalize", "remove_lines"]


def test_invalid_calls_each_one_error_and_do_not_stop_the_others():
    text = "\n".join([
        "remove_lines(line_start=-1, line_end=2)",  # negative
        "remove_lines(5, 2)",  # reversed
        "remove_lines(0, 10**100)",  # expression
        "remove_lines(True, 2)",  # bool
        "remove_lines(1.0, 2)",  # float
        "remove_lines(0)",  # missing
        "remove_lines(0, 1, 2)",  # too many
        "remove_lines(0, 1, all=True)",  # unknown keyword
        "remove_lines(0, line_start=1)",  # twice
        "remove_lines(*[0, 1])",
        "normalize(**{'source_str': 'a'})",
        "normalize(source_str='')",  # empty source
        "normalize(source_str='a\\nb')",  # newline
        "normalize(source_str=b'a')",  # bytes
        "normalize(f'{x}')",  # f-string
        "normalize(x)",  # name
        "os.system('ls')",  # attribute
        "eval('1')",  # unknown function
        "import os",
        "x = drop_doc()",
        "drop_doc",  # not called
        "drop_doc(1)",
        "remove_lines(0, 9999999999)",  # over MAX_INT
        "keep_doc()",  # the one valid call
    ])
    p = parse_program(text)
    assert [c.name for c in p.calls] == ["keep_doc"]
    assert p.n_invalid == 23 and all(e.startswith("line ") for e in p.errors)
    assert "negative" in p.errors[0] and "after" in p.errors[1]


def test_syntax_error_falls_back_to_lines():
    p = parse_program("remove_lines(0, 1)\nremove_lines(2, 3\nnormalize('a', 'b')\n'unclosed\nskip_chunk()")
    assert [c.name for c in p.calls] == ["remove_lines", "normalize", "skip_chunk"]
    assert len(p.errors) == 2 and p.errors[0].startswith("line 2:") and p.errors[1].startswith("line 4:")


def test_line_range_checked_against_n_lines():
    assert ok("remove_lines(0, 4)", n_lines=5).calls
    p = parse_program("remove_lines(3, 5)\nremove_lines(5, 5)", n_lines=5)
    assert p.calls == [] and len(p.errors) == 2
    assert ok("remove_lines(3, 5)").calls  # unknown line count: checked at execution
    calls, errors = check_lines(ok("remove_lines(3, 5)\nremove_lines(0, 1)").calls, 5)
    assert [c.arg("line_start") for c in calls] == [0] and len(errors) == 1


def test_levels():
    assert parse_program("drop_doc()\nremove_lines(0, 1)", level="doc").n_invalid == 1
    assert parse_program("drop_doc()\nkeep_doc()\nskip_chunk()", level="chunk").n_invalid == 2
    assert parse_program("drop_doc()\nremove_lines(0, 1)", level="any").n_invalid == 0


def test_hostile_text_limits():
    p = parse_program("keep_doc()\n" * 10, max_chars=50)
    assert p.calls == [] and len(p.errors) == 1 and "limit" in p.errors[0]
    assert parse_program("x" * (MAX_CHARS + 1)).n_invalid == 1
    assert parse_program(12).n_invalid == 1
    for deep in ["(" * 100_000, "-" * 100_000 + "1", "a." * 50_000 + "b", "[" * 5000 + "]" * 5000,
                 "remove_lines(" + "(" * 300 + "1" + ")" * 300 + ", 2)", "x" + "+x" * 100_000]:
        p = parse_program(deep)
        assert p.calls == [] and p.n_invalid == 1
    p = parse_program("keep_doc()\x00\nskip_chunk()\nnormalize('\ud800')\n\udcff\n" + "normalize('\\x00')")
    assert [c.name for c in p.calls] == ["skip_chunk", "normalize"] and p.n_invalid == 3
    assert p.calls[1].arg("source_str") == "\x00"
    p = parse_program(b"\xff\xfe drop_doc()\nkeep_doc()")
    assert p.calls == [Call("keep_doc")] and p.n_invalid == 1
    assert "\\udcff" in p.errors[0]
    p = parse_program("normalize('" + "a" * 200 + "')", max_str=100)
    assert p.n_invalid == 1


def test_max_errors_stops_reading():
    p = parse_program("bad(\n" * 1000, max_errors=10)
    assert len(p.errors) == 10 and "not read" in p.errors[-1]
    p = parse_program("x = 1\n" * 1000, max_errors=10)
    assert len(p.errors) == 10


def test_render_canonical_and_round_trip():
    p = ok("remove_lines(3, 7)\nnormalize('a', 'b')\nnormalize(\"x\")\nkeep_doc()")
    assert p.render() == ('remove_lines(line_start=3, line_end=7)\nnormalize(source_str="a", target_str="b")\n'
                          'normalize(source_str="x", target_str="")\nkeep_doc()')
    tricky = ['"', "'", "\\", '\\"', "a\tb", "\r", "\x00\x01\x7f", "é✓😀", "\u200b\u2028", "\\n", "{x}", "'''",
              "a, b=c)", "\udcff"]
    for s in tricky:
        assert ast_value(quote(s)) == s
    valid = [s for s in tricky if s != "\udcff"]  # lone surrogates are not valid Unicode
    calls = [Call("normalize", (("source_str", s), ("target_str", s[::-1]))) for s in valid]
    prog = Program(calls, [])
    assert parse_program(prog.render()) == prog


def ast_value(src: str):
    import ast
    node = ast.parse(src, mode="eval").body
    assert isinstance(node, ast.Constant)
    return node.value


# ---------------------------------------------------------------------------------------------
# executor: semantics and decision rules


def test_remove_lines_end_is_inclusive_and_ranges_union():
    text = doc(30)
    r = execute(text, "remove_lines(line_start=1, line_end=2)")
    lines = text.split("\n")
    assert r.action == "refined" and r.text == "\n".join([lines[0]] + lines[3:])
    r = execute(text, "remove_lines(0, 4)\nremove_lines(3, 6)\nremove_lines(10, 10)")
    assert r.text.split("\n") == lines[7:10] + lines[11:]
    assert r.applied.count("remove_lines") == 3


def test_normalize_all_occurrences_in_order_then_remove_by_original_lines():
    text = "aa b aa\nkeep this line with enough words to stay in\naa\n" + doc(5)
    r = execute(text, "normalize('aa', 'x')\nnormalize('x', 'yy')")
    assert r.text == text.replace("aa", "yy")
    r = execute(text, "normalize('this line', 'THAT')\nremove_lines(1, 1)\nnormalize('keep', 'K')")
    assert "THAT" not in r.text and r.text.split("\n")[:2] == ["aa b aa", "aa"]
    assert r.applied == ('normalize(source_str="this line", target_str="THAT")\n'
                         'normalize(source_str="keep", target_str="K")\nremove_lines(line_start=1, line_end=1)')


def test_normalize_cannot_change_line_count():
    text = doc(20)
    r = execute(text, "normalize('w1_0', 'a\\nb')")
    assert r.n_invalid == 1 and r.action == "unchanged" and r.text == text  # invalid, nothing applied
    r = execute(text, "normalize('w1_0', 'a\\nb')", Settings(max_invalid=2))
    assert r.text == text


def test_single_space_normalize_is_ignored_not_invalid():
    text = doc(20)
    r = execute(text, "normalize(' ', '')")
    assert r.action == "kept" and r.reason == "no_effect" and r.n_invalid == 0 and r.text == text
    r = execute(text, "normalize(' ', '')\nremove_lines(0, 0)")
    assert r.action == "refined" and r.applied == "remove_lines(line_start=0, line_end=0)"


def test_drop_keep_skip_empty_none():
    text = doc(20)
    assert execute(text, "drop_doc()") == Result(None, "dropped", "drop_doc", "drop_doc()", 0, [])
    assert execute(text, "keep_doc()\ndrop_doc()\nremove_lines(0, 1)").reason == "drop_doc"
    for prog in ["keep_doc()", "skip_chunk()\nskip_chunk()", "", "```\n```", b""]:
        r = execute(text, prog)
        assert (r.text, r.action, r.reason, r.applied) == (text, "unchanged", "no_edits", "")
    assert execute(text, None) == Result(text, "unchanged", "no_program")


def test_invalid_calls_threshold():
    text = doc(20)
    r = execute(text, "remove_lines(0, 1)\nbogus()")
    assert r.action == "refined" and r.n_invalid == 1 and len(r.errors) == 1
    r = execute(text, "remove_lines(0, 1)\nbogus()\nremove_lines(9, 2)")
    assert (r.text, r.action, r.reason, r.n_invalid, r.applied) == (text, "unchanged", "too_many_invalid", 2, "")
    r = execute(text, "drop_doc()\nbogus()\nbogus()")
    assert r.text == text and r.reason == "too_many_invalid"
    r = execute(text, "remove_lines(0, 1)\nbogus()\nremove_lines(9, 2)", Settings(max_invalid=3))
    assert r.action == "refined"
    r = execute(text, "remove_lines(0, 99)\nremove_lines(25, 26)")  # out of range at execution
    assert r.text == text and r.n_invalid == 2


def test_word_ratio_rule():
    text = doc(50)  # 400 words
    r = execute(text, "remove_lines(0, 47)")  # 16 words left: ratio 0.04
    assert r.text is None and (r.action, r.reason) == ("dropped", "word_ratio")
    assert r.applied == "remove_lines(line_start=0, line_end=47)"
    r = execute(text, "remove_lines(0, 47)", Settings(drop_ratio=0.01))
    assert r.action == "refined"


def test_too_few_words_rule():
    text = doc(3, words=7)  # 21 words
    r = execute(text, "remove_lines(0, 1)")  # 7 words left, ratio 1/3
    assert r.text is None and r.reason == "too_few_words"
    r = execute(doc(3, words=10), "remove_lines(0, 1)")  # exactly 10: dropped (<=)
    assert r.reason == "too_few_words"
    r = execute(doc(3, words=11), "remove_lines(0, 1)")
    assert r.action == "refined"
    r = execute(text, "remove_lines(0, 1)", Settings(min_words=5))
    assert r.action == "refined" and r.text == text.split("\n")[2]


def test_rules_only_for_changed_text():
    short = "two words"
    assert execute(short, "skip_chunk()").text == short
    r = execute(short, "normalize('absent', 'x')")
    assert (r.text, r.action, r.reason) == (short, "kept", "no_effect")
    r = execute("", "remove_lines(0, 0)")
    assert r.action == "kept"


def test_program_object_is_checked_against_the_document():
    prog = parse_program("remove_lines(0, 1)\nremove_lines(40, 41)")
    r = execute(doc(20), prog)
    assert r.action == "refined" and r.n_invalid == 1
    r = execute(doc(20), prog, Settings(max_invalid=1))
    assert r.action == "unchanged"


def test_hand_made_program_is_checked_again():
    bad = [Call("remove_lines", (("line_start", -3), ("line_end", 2))), Call("os.system", ()),
           Call("normalize", (("source_str", "a\nb"),)), Call("remove_lines", (("line_start", "0"), ("line_end", 1)))]
    good = Call("normalize", (("source_str", "w0_0"),))  # target_str defaults to ""
    calls, errors = check_lines(bad + [good], 20)
    assert calls == [good] and len(errors) == 4
    r = execute(doc(20), Program([good]))
    assert r.action == "refined" and "w0_0" not in r.text
    assert r.applied == 'normalize(source_str="w0_0", target_str="")'
    assert execute(doc(20), Program(bad + [good])).action == "unchanged"


def test_growth_cap():
    text = "a " * 5000
    big = "normalize('a', '" + "x" * 1000 + "')"
    r = execute(text, big)  # invalid, not applied; one invalid call is tolerated
    assert r.action == "kept" and r.text == text and r.n_invalid == 1 and r.applied == ""
    r = execute(text, big + "\nremove_lines(0, 0)\n" + big)
    assert r.action == "unchanged" and r.text == text and r.n_invalid == 2
    r = execute(text, "normalize('a', 'xx')")
    assert r.action == "refined"


def test_level_setting():
    r = execute(doc(20), "drop_doc()", Settings(level="chunk"))
    assert r.action == "unchanged" and r.n_invalid == 1


def test_execute_batch():
    texts = [doc(20), doc(20), None, doc(20), doc(3)]
    progs = ["remove_lines(0, 0)", None, "drop_doc()", "x(\ny(", "remove_lines(0,1)"]
    out = execute_batch(texts, progs)
    assert out["action"].to_pylist() == ["refined", "unchanged", "unchanged", "unchanged", "dropped"]
    assert out["reason"].to_pylist() == [None, "no_program", "no_text", "too_many_invalid", "too_few_words"]
    assert out["text"].to_pylist()[1] == doc(20) and out["text"].to_pylist()[4] is None
    assert out["n_invalid"].to_pylist() == [0, 0, 0, 2, 0]
    assert out["applied"].to_pylist()[0] == "remove_lines(line_start=0, line_end=0)"
    assert out["text"].type == pa.string() and out["n_invalid"].type == pa.int32()
    out = execute_batch(pa.array(texts, pa.large_string()), pa.array(progs))
    assert out["text"].type == pa.large_string()
    out = execute_batch(pa.chunked_array([pa.array([doc(20)])]), pa.array([b"keep_doc()"], pa.binary()))
    assert out["action"].to_pylist() == ["unchanged"]
    with pytest.raises(ValueError):
        execute_batch(["a"], [])


# ---------------------------------------------------------------------------------------------
# fuzz

SEED = 20241130
PER_CLASS = 450
DOCS = [doc(1, 12), doc(7), doc(30), doc(120, 12)]
CHARS = list("abc xyz,=()\"'\\;#\n\t[]{}*.-_0123456789") + ["é", "✓", "😀", "\x00", "\udcff", "\r", "\u2028"]


class Gen:
    """Random programs of each class. ``sentinel``: a path hostile programs try to create."""

    def __init__(self, rng: random.Random, sentinel: str):
        self.r, self.s = rng, sentinel
        self.touch = [f"open({self.s!r}, 'w').write('x')", f"__import__('os').system('touch {self.s}')",
                      f"__import__('pathlib').Path({self.s!r}).touch()",
                      "__import__('builtins').__dict__.__setitem__('PWNED', 1)",
                      "globals().__setitem__('PWNED', 1)", "setattr(__import__('builtins'), 'PWNED', 1)"]

    # -- pieces
    def n(self, n_lines: int) -> int:
        return self.r.randrange(max(n_lines, 1))

    def text(self, k: int = 8) -> str:
        return "".join(self.r.choice("abcw_0123456789 ,=()\"'\\é") for _ in range(self.r.randint(1, k)))

    def lit(self, s: str) -> str:
        return self.r.choice([quote, repr])(s)

    def valid_call(self, n_lines: int) -> str:
        r = self.r
        k = r.random()
        if k < 0.45:
            a = self.n(n_lines)
            b = r.randint(a, min(n_lines - 1, a + 10)) if n_lines else a
            return r.choice([f"remove_lines(line_start={a}, line_end={b})", f"remove_lines({a}, {b})",
                             f"remove_lines({a}, line_end={b})", f"remove_lines(line_end={b}, line_start={a})"])
        if k < 0.85:
            a = f"w{self.n(n_lines)}_{r.randrange(8)}" if r.random() < 0.6 else self.text()
            b = self.text(4) if r.random() < 0.7 else ""
            a = a.replace("\n", "") or "w0_0"
            if a == " ":
                a = "w0_1"
            return r.choice([f"normalize(source_str={self.lit(a)}, target_str={self.lit(b)})",
                             f"normalize({self.lit(a)}, {self.lit(b)})", f"normalize({self.lit(a)})"])
        return r.choice(["skip_chunk()", "keep_doc()", "skip_chunk()", "drop_doc()" if r.random() < 0.2 else "keep_doc()"])

    def join(self, parts: list[str]) -> str:
        r = self.r
        out = []
        for p in parts:
            out.append(r.choice(["", " ", "  ", "\t"]) + p + r.choice(["", " ", "\r"]))
            out.append(r.choice(["\n", "\n", "\n\n", "; "]))
        text = "".join(out)
        if r.random() < 0.2:
            text = "```python\n" + text + "\n```"
        return text

    # -- classes
    def valid(self, n):
        return self.join([self.valid_call(n) for _ in range(self.r.randint(1, 6))])

    def strings(self, n):
        junk = self.r.choice([", ", "=", "a=b, c=d", ")", "(", '\\"', "'", "\\\\", "line_end=3", "source_str="])
        return f"normalize(source_str={self.lit('w' + str(self.n(n)) + junk)}, target_str={self.lit(junk)})"

    def imports(self, n):
        return self.r.choice(["import os", "from os import system", "import os; os.system('touch " + self.s + "')",
                              "from builtins import *", "import builtins\nbuiltins.PWNED = 1"])

    def attribute(self, n):
        return self.r.choice([f"os.system('touch {self.s}')", "().__class__.__bases__[0].__subclasses__()",
                              "remove_lines.__globals__['PWNED'] = 1", "drop_doc.__call__()",
                              "normalize(source_str=os.sep)", "sys.modules['os'].system('id')"])

    def dunder_import(self, n):
        t = self.r.choice(self.touch)
        return self.r.choice([t, f"remove_lines(line_start={t}, line_end=2)", f"normalize({t}, 'x')",
                              f"__import__('os').system('touch {self.s}')"])

    def lambdas(self, n):
        t = self.r.choice(self.touch)
        return self.r.choice([f"(lambda: {t})()", f"remove_lines(line_start=(lambda: 1)(), line_end=2)",
                              f"normalize(source_str=(lambda s: s)('a'))", f"drop_doc(lambda: {t})"])

    def comprehensions(self, n):
        t = self.r.choice(self.touch)
        return self.r.choice([f"[{t} for _ in range(1)]", "normalize(source_str=''.join(c for c in 'ab'))",
                              f"remove_lines(*[i for i in (1, 2)])", f"{{{t} for _ in 'a'}}",
                              f"remove_lines(line_start=[{t}][0], line_end=3)"])

    def fstrings(self, n):
        t = self.r.choice(self.touch)
        return self.r.choice([f'normalize(f"{{{t}}}")', f'normalize(source_str="a", target_str=f"{{{t}}}")',
                              f'f"{{{t}}}"', 'normalize(f"w0_0")'])

    def starred(self, n):
        return self.r.choice(["remove_lines(*[1, 2])", "normalize(**{'source_str': 'a'})", "remove_lines(*(0,), 1)",
                              "normalize(*'ab')", "remove_lines(**dict(line_start=0, line_end=1))"])

    def nested_calls(self, n):
        return self.r.choice(["remove_lines(line_start=len(x), line_end=3)", "remove_lines(int('3'), 4)",
                              "normalize(str(1))", "remove_lines(line_start=remove_lines(0, 1), line_end=2)",
                              f"normalize(open({self.s!r}, 'w').name)", "remove_lines(abs(-1), 2)"])

    def names(self, n):
        return self.r.choice(["remove_lines(line_start=a, line_end=b)", "normalize(source_str=x)", "normalize(x, y)",
                              "remove_lines(line_start=(x := 3), line_end=4)", "remove_lines(None, 2)",
                              "normalize(...)", "remove_lines(n, n)"])

    def huge_numbers(self, n):
        return self.r.choice(["remove_lines(0, 10**100)", "remove_lines(0, " + "9" * 40 + ")",
                              "remove_lines(0, " + "9" * 5000 + ")", "remove_lines(1e100, 2)", "remove_lines(0, 2.0)",
                              "remove_lines(True, False)", "remove_lines(0, 0x7fffffffffffffff)", "remove_lines(0, 1j)",
                              "remove_lines(0, 1_000_000_001)", "remove_lines(0b1, 0o7)"])

    def bad_ranges(self, n):
        a, b = self.r.randint(-50, 50), self.r.randint(-50, 50)
        return self.r.choice([f"remove_lines({a}, {b})", f"remove_lines(line_start=-{abs(a)}, line_end={b})",
                              f"remove_lines({max(a, b) + 1}, {min(a, b)})", f"remove_lines(--{abs(a)}, {b})"])

    def out_of_range(self, n):
        a = self.r.randint(n, n + 20)
        return self.r.choice([f"remove_lines({a}, {a + 3})", f"remove_lines(0, {a})", f"remove_lines({n - 1}, {n})"])

    def bad_unicode(self, n):
        r = self.r
        v = self.valid(n)
        k = r.randrange(6)
        if k == 0:
            return v.encode("utf-8") + bytes(r.randrange(128, 256) for _ in range(r.randint(1, 4)))
        if k == 1:
            i = r.randrange(len(v) + 1)
            return v[:i] + r.choice(["\udcff", "\ud800", "\udfff"]) + v[i:]
        if k == 2:
            i = r.randrange(len(v) + 1)
            return v[:i] + "\x00" + v[i:]
        if k == 3:
            return "\ufeff" + v
        if k == 4:
            return 'normalize("\\udcff", "x")\n' + v
        return v.encode("utf-16")

    def unbalanced(self, n):
        v = self.valid_call(n)
        drop = [i for i, c in enumerate(v) if c in "()'\""]
        if drop:
            i = self.r.choice(drop)
            v = v[:i] + v[i + 1:]
        return v + self.r.choice(["", "(", ")", '"', "'", '"""'])

    def deep(self, n):
        k = int(10 ** self.r.uniform(1.7, 5))  # 50 .. 100,000, log-uniform
        return self.r.choice(["(" * k, "(" * k + "1" + ")" * k, "-" * k + "1", "a." * (k // 2) + "b", "[" * k + "]" * k,
                              "remove_lines(" + "(" * (k % 400) + "1" + ")" * (k % 400) + ", 2)", "not " * (k // 4),
                              "x" + "+x" * (k // 2), "lambda: " * (k // 8) + "1", "{" * k])

    def random_bytes(self, n):
        b = self.r.randbytes(self.r.randint(0, 400))
        return b if self.r.random() < 0.5 else b.decode("latin-1")

    def mutated(self, n):
        v = list(self.valid(n))
        for _ in range(self.r.randint(1, 5)):
            op, i = self.r.randrange(3), self.r.randrange(len(v) + 1)
            if op == 0:
                v.insert(i, self.r.choice(CHARS))
            elif v and i < len(v):
                if op == 1:
                    del v[i]
                else:
                    v[i] = self.r.choice(CHARS)
        return "".join(v)

    def mixed(self, n):
        classes = [self.imports, self.attribute, self.dunder_import, self.lambdas, self.names, self.deep,
                   self.unbalanced, self.bad_ranges, self.statements]
        parts = [self.valid_call(n) if self.r.random() < 0.6 else self.r.choice(classes)(n)
                 for _ in range(self.r.randint(2, 8))]
        return "\n".join(parts)

    def statements(self, n):
        t = self.r.choice(self.touch)
        return self.r.choice(["global PWNED\nPWNED = 1", "PWNED = 1", "drop_doc = 1", f"exec({t!r})", f"eval({t!r})",
                              f"open({self.s!r}, 'w')", "breakpoint()", "exit()", f"def drop_doc():\n    {t}",
                              f"class A:\n    x = {t}", f"with open({self.s!r}, 'w') as f:\n    pass", "del builtins",
                              f"if True: {t}", f"@{t}\ndef f(): pass", "assert False", "raise SystemExit(1)",
                              "async def f(): await g()", "yield 1", "return drop_doc()", "keep_doc() if 1 else 2"])

    def unknown_names(self, n):
        return self.r.choice(["remove_line(0, 1)", "normalise('a')", "drop()", "print('x')", "input()",
                              "remove_all()", "skip()", "keepdoc()", "Drop_doc()", "exit_doc()", "getattr(os, 'x')()"])

    def arity(self, n):
        return self.r.choice(["remove_lines()", "remove_lines(0)", "remove_lines(0, 1, 2)", "remove_lines(0, 1, all=True)",
                              "remove_lines(all=True)", "normalize()", "normalize('a', 'b', 'c')",
                              "normalize(source='a')", "skip_chunk(1)", "keep_doc(x=1)", "drop_doc(reason='spam')",
                              "remove_lines(0, line_start=1)", "normalize('a', source_str='b')"])

    def levels(self, n):
        return self.join([self.r.choice(["drop_doc()", "keep_doc()", "skip_chunk()", self.valid_call(n)])
                          for _ in range(self.r.randint(1, 4))])

    def megabyte(self, i: int, n: int):
        if i < 10:
            unit = self.r.choice(["keep_doc()\n", "x", self.valid_call(n) + "\n", "(" * 100])
            return unit * (MAX_CHARS // len(unit) + 1)
        if i == 10:  # a string literal far over max_str
            return "skip_chunk()\nnormalize('" + "w" * (MAX_CHARS - 30) + "')"
        return "keep_doc()  # " + "x" * (MAX_CHARS - 20)  # a megabyte comment


CLASSES = ["valid", "strings", "imports", "attribute", "dunder_import", "lambdas", "comprehensions", "fstrings",
           "starred", "nested_calls", "names", "huge_numbers", "bad_ranges", "out_of_range", "bad_unicode",
           "unbalanced", "deep", "random_bytes", "mutated", "mixed", "statements", "unknown_names", "arity", "levels"]


def expected_text(original: str, applied: str) -> str:
    """Reference result: the applied calls, re-parsed, done line by line (normalize on each line,
    then the ranges removed by original line numbers)."""
    calls = parse_program(applied).calls
    lines = original.split("\n")
    removed = set()
    for c in calls:
        if c.name == "normalize":
            lines = [line.replace(c.arg("source_str"), c.arg("target_str")) for line in lines]
        elif c.name == "remove_lines":
            removed.update(range(c.arg("line_start"), c.arg("line_end") + 1))
    return "\n".join(line for i, line in enumerate(lines) if i not in removed)


def check(text: str, prog, r: Result, settings: Settings) -> None:
    assert r.action in ("refined", "dropped", "unchanged", "kept")
    assert r.n_invalid == len(r.errors)
    for e in r.errors:
        e.encode("utf-8")  # errors go into Arrow columns
    if r.n_invalid >= settings.max_invalid:
        assert r.text is text and r.action == "unchanged" and r.applied == ""
        return
    if r.action == "dropped":
        assert r.text is None
        if r.reason == "drop_doc":
            assert r.applied == "drop_doc()"
            assert any(c.name == "drop_doc" for c in parse_program(prog, n_lines=len(text.split("\n"))).calls)
            return
        assert r.reason in ("word_ratio", "too_few_words")
        new = expected_text(text, r.applied)
        before, after = len(text.split()), len(new.split())
        assert (before and after / before <= settings.drop_ratio) or after <= settings.min_words
        return
    assert r.text is not None
    if r.action in ("unchanged", "kept"):
        assert r.text == text
        return
    assert r.text == expected_text(text, r.applied)
    assert r.text != text and len(r.text.split()) > settings.min_words


def test_fuzz(tmp_path):
    sentinel = str(tmp_path / "pwned")
    rng = random.Random(SEED)
    gen = Gen(rng, sentinel)
    settings = Settings()
    attempts: list[str] = []
    real_compile = builtins.compile
    import ast

    def forbid(name):
        def f(*a, **k):
            attempts.append(name)
            raise RuntimeError(f"{name} called during fuzz")
        return f

    real_import = builtins.__import__

    def import_unicodedata_only(name, *a, **k):
        if name == "unicodedata":  # what the parser itself imports to read a "\N{...}" escape
            return real_import(name, *a, **k)
        attempts.append(f"import {name}")
        raise RuntimeError("import during fuzz")

    def ast_only(source, filename, mode, flags=0, *a, **k):
        if not flags & ast.PyCF_ONLY_AST:
            attempts.append("compile")
            raise RuntimeError("compile to code during fuzz")
        return real_compile(source, filename, mode, flags, *a, **k)

    jobs = [(name, i) for i in range(PER_CLASS) for name in CLASSES] + [("megabyte", i) for i in range(12)]
    programs = []
    for name, i in jobs:
        d = rng.choice(DOCS)
        n = len(d.split("\n"))
        prog = gen.megabyte(i, n) if name == "megabyte" else getattr(gen, name)(n)
        programs.append((name, d, prog))
    assert len(programs) == 24 * PER_CLASS + 12 >= 10_000

    counts = {"refined": 0, "dropped": 0, "unchanged": 0, "kept": 0}
    t0 = time.perf_counter()
    saved = {k: getattr(builtins, k) for k in ("__import__", "eval", "exec", "compile")}
    failures = []
    builtins.__import__, builtins.eval, builtins.exec = import_unicodedata_only, forbid("eval"), forbid("exec")
    builtins.compile = ast_only
    try:
        for name, d, prog in programs:
            try:
                p = parse_program(prog, n_lines=len(d.split("\n")))
                again = parse_program(p.render(), max_chars=10**8)
                if again.errors or again.calls != p.calls:
                    raise ValueError("render does not round-trip")
                r = execute(d, prog, settings)
                check(d, prog, r, settings)
                counts[r.action] += 1
            except BaseException as e:  # noqa: BLE001 - collected and reported below
                failures.append((name, prog, e))
    finally:
        for k, v in saved.items():
            setattr(builtins, k, v)
    elapsed = time.perf_counter() - t0
    assert failures == [], [(n, repr(p)[:200], repr(e)[:300]) for n, p, e in failures[:5]]
    assert attempts == []
    assert not os.path.exists(sentinel)
    assert not hasattr(builtins, "PWNED") and "PWNED" not in globals()
    assert "PWNED" not in vars(sys.modules["curate.refine.program"])
    assert all(counts[a] > 100 for a in counts), counts  # every outcome is exercised
    assert elapsed < 60, elapsed
