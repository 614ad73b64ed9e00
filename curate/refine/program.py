"""Parse ProX refining programs safely, with Python's :mod:`ast` and nothing that runs code.

A ProX program (Zhou et al. 2024, "Programming Every Example") is what a small language model
writes for one document: a few calls, one per line (``;`` also separates calls). The calls:

==============================================  =====  =====================================
call                                            level  meaning
==============================================  =====  =====================================
``drop_doc()``                                  doc    drop the whole document
``keep_doc()``                                  doc    keep the document as it is
``skip_chunk()``                                chunk  leave this chunk as it is
``remove_lines(line_start=a, line_end=b)``      chunk  remove lines ``a`` to ``b``, **both
                                                       included** (ProX: ``range(a, b + 1)``)
``normalize(source_str=s, target_str=t)``       chunk  replace every occurrence of ``s`` by
                                                       ``t`` (``t`` defaults to ``""``)
==============================================  =====  =====================================

Line numbers are 0-based over the whole document (the model saw each line as ``[{i:03d}]line``).
Arguments may be given by keyword, as ProX writes them, or by position in the order above
(``remove_lines(3, 7)``, ``normalize("a", "b")``), or mixed.

How a program is read (:func:`parse_program`):

* The text is parsed with :func:`ast.parse` only. Nothing is evaluated: an argument must be a
  ``str`` or ``int`` constant node (a ``-`` or ``+`` in front of an int is read so that a negative
  line number is *reported*); its value is read from the node. Anything else (a name, an
  attribute, a nested call, an f-string, ``*args``, a comprehension, an import, an assignment...)
  is an invalid call with a reason. ProX instead splits the text at ``(``, ``,`` and ``=``, which
  breaks on a comma or ``=`` inside a string; here ``normalize("a, b=c", "x")`` is read right.
* Markdown code fence lines (```` ``` ````, ```` ```python ````), blank lines and the white space
  around each line are ignored.
* Each invalid call is one error (a string: ``"line N: reason: snippet"``) and does not stop the
  others. If the whole text is not valid Python, it is read again line by line, so that one bad
  line is one invalid call. After ``max_errors`` errors the rest is not read (one more error
  says so).
* Values are checked: line numbers are ints in ``0 .. MAX_INT`` with ``line_start <= line_end``
  and, when ``n_lines`` is given, ``line_end < n_lines``; ``source_str`` is not empty; strings
  are at most ``max_str`` characters, valid Unicode (no lone surrogates) and hold no newline, so
  that a normalization can never move line numbers (see :mod:`curate.refine.execute`).
* Hostile input never raises: a text over ``max_chars`` characters is one error and no calls;
  bytes are decoded as UTF-8 (bad bytes make their lines invalid); NUL bytes, lone surrogates,
  deep nesting (``RecursionError``/``MemoryError`` inside ``ast.parse``) and huge numbers make
  their lines invalid.
"""
from __future__ import annotations

import ast
import re
import warnings
from dataclasses import dataclass, field
from typing import Literal, Union

Level = Literal["doc", "chunk", "any"]
Value = Union[int, str]

#: Largest line number accepted.
MAX_INT = 10**9
#: Longest string argument accepted (characters).
MAX_STR = 100_000
#: Longest program text accepted (characters; bytes for a ``bytes`` program).
MAX_CHARS = 1_000_000
#: Errors after which the rest of a program is not read.
MAX_ERRORS = 100

#: name -> parameters as (name, type, default); ``None`` default means required.
SIGNATURES: dict[str, tuple[tuple[str, type, Value | None], ...]] = {
    "drop_doc": (),
    "keep_doc": (),
    "skip_chunk": (),
    "remove_lines": (("line_start", int, None), ("line_end", int, None)),
    "normalize": (("source_str", str, None), ("target_str", str, "")),
}
DOC_CALLS = frozenset({"drop_doc", "keep_doc"})
CHUNK_CALLS = frozenset({"remove_lines", "normalize", "skip_chunk"})
_ALLOWED: dict[str, frozenset[str]] = {"doc": DOC_CALLS, "chunk": CHUNK_CALLS, "any": DOC_CALLS | CHUNK_CALLS}
_FENCE = re.compile(r"\s*```[\w+.-]*\s*")


@dataclass(frozen=True)
class Call:
    """One valid call, in keyword form: ``args`` holds every parameter as ``(name, value)`` pairs
    in signature order (``normalize`` always has its ``target_str``)."""

    name: str
    args: tuple[tuple[str, Value], ...] = ()

    def arg(self, key: str) -> Value:
        """The value of parameter ``key``."""
        for k, v in self.args:
            if k == key:
                return v
        for p, _, default in SIGNATURES.get(self.name, ()):
            if p == key and default is not None:
                return default
        raise KeyError(key)

    def render(self) -> str:
        """Canonical source: keyword form, strings double-quoted; it parses back to this call."""
        given = dict(self.args)
        pairs = [(p, given.get(p, d)) for p, _, d in SIGNATURES.get(self.name, ()) if p in given or d is not None]
        pairs += [(k, v) for k, v in self.args if k not in dict(pairs)]  # hand-made extras, as given
        inner = ", ".join(f"{k}={quote(v) if isinstance(v, str) else v}" for k, v in pairs)
        return f"{self.name}({inner})"


@dataclass
class Program:
    """The valid calls of a program, in order, and one error string per invalid call."""

    calls: list[Call] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def n_invalid(self) -> int:
        """Number of invalid calls (errors)."""
        return len(self.errors)

    def render(self) -> str:
        """Canonical text of the valid calls, one per line."""
        return "\n".join(c.render() for c in self.calls)


def quote(s: str) -> str:
    """``s`` as a double-quoted Python string literal that parses back to ``s`` (non-printable
    characters, lone surrogates included, are written as escapes)."""
    if s.isprintable() and '"' not in s and "\\" not in s:
        return f'"{s}"'
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            o = ord(ch)
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


def parse_program(text: str | bytes | None, *, n_lines: int | None = None, level: Level = "any",
                  max_chars: int = MAX_CHARS, max_str: int = MAX_STR,
                  max_errors: int = MAX_ERRORS) -> Program:
    """Parse a program (see the module docstring). ``n_lines``: the document's line count, to
    check line numbers against; ``level``: which calls are allowed (``"doc"``: ``drop_doc``,
    ``keep_doc``; ``"chunk"``: ``remove_lines``, ``normalize``, ``skip_chunk``; ``"any"``: all).
    ``None`` is the empty program. Never raises on any program text (an unknown ``level`` is
    a ``ValueError``)."""
    if level not in _ALLOWED:
        raise ValueError(f"level must be 'doc', 'chunk' or 'any', not {level!r}")
    prog = Program()
    if text is None:
        return prog
    if not isinstance(text, (str, bytes)):
        prog.errors.append(f"program is not text: {type(text).__name__}")
        return prog
    if len(text) > max_chars:
        prog.errors.append(f"program is {len(text)} characters long, over the limit of {max_chars}")
        return prog
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")  # bad bytes -> lone surrogates -> invalid lines
    text = text.removeprefix("\ufeff")
    lines = ["" if _FENCE.fullmatch(line) else line.strip() for line in text.split("\n")]
    reader = _Reader(prog, n_lines, _ALLOWED[level], max_str, max_errors)
    whole = "\n".join(lines)
    tree = _parse(whole)
    if tree is not None:
        reader.statements(tree.body, lines, 0)
        return prog
    for i, line in enumerate(lines):  # not valid as a whole: one line at a time
        if reader.full():
            break
        if not line:
            continue
        tree = None if len(line) == len(whole) else _parse(line)
        if tree is None:
            reader.error(i + 1, _why_not(line), line)
        else:
            reader.statements(tree.body, [line], i)
    return prog


def check_lines(calls: list[Call], n_lines: int) -> tuple[list[Call], list[str]]:
    """The calls that are valid in a document of ``n_lines`` lines, and one error for each one
    that is not (for a :class:`Program` parsed without ``n_lines``, or built by hand: the names
    and values are checked again too)."""
    ok, errors = [], []
    for c in calls:
        why = _value_error(c) or _range_error(c, n_lines)
        if why:
            errors.append(f"{why}: {c.render()}")
        else:
            ok.append(c)
    return ok, errors


def _parse(src: str) -> ast.Module | None:
    """``ast.parse(src)``, or ``None`` for anything it cannot parse (syntax, NUL bytes,
    surrogates, nesting too deep, numbers too long)."""
    try:
        with warnings.catch_warnings():  # invalid escapes etc. warn (or raise under -W error)
            warnings.simplefilter("ignore")
            return ast.parse(src, mode="exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError, UnicodeError, OverflowError):
        return None
    except Exception:  # noqa: BLE001 - any other parser failure is an invalid program too
        return None


def _why_not(line: str) -> str:
    """Why a line could not be parsed."""
    if "\x00" in line:
        return "NUL byte"
    if not _encodable(line):
        return "not valid Unicode (bad byte or lone surrogate)"
    return "not a valid call (syntax)"


def _encodable(s: str) -> bool:
    try:
        s.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _snippet(src: str, limit: int = 60) -> str:
    """A short, printable, UTF-8-safe excerpt of ``src`` for an error message."""
    s = src[:limit].encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    return s + ("..." if len(src) > limit else "")


class _Reader:
    """Turns parsed statements into calls and errors of one program."""

    def __init__(self, prog: Program, n_lines: int | None, allowed: frozenset[str], max_str: int,
                 max_errors: int):
        self.prog, self.n_lines, self.allowed = prog, n_lines, allowed
        self.max_str, self.max_errors = max_str, max(1, max_errors)

    def full(self) -> bool:
        return len(self.prog.errors) >= self.max_errors

    def error(self, lineno: int, why: str, src: str) -> None:
        if len(self.prog.errors) == self.max_errors - 1:
            self.prog.errors.append(f"line {lineno}: {self.max_errors} errors or more, the rest is not read")
        elif not self.full():
            self.prog.errors.append(f"line {lineno}: {why}: {_snippet(src)}")

    def statements(self, body: list[ast.stmt], lines: list[str], first: int) -> None:
        """Read each statement; ``lines`` is the parsed source, its line 1 is program line ``first + 1``."""
        for stmt in body:
            if self.full():
                return
            k = getattr(stmt, "lineno", 1)
            src = lines[k - 1] if 0 < k <= len(lines) else ""
            call, why = self.call(stmt)
            if call is None:
                self.error(first + k, why, src)
            else:
                self.prog.calls.append(call)

    def call(self, stmt: ast.stmt) -> tuple[Call | None, str]:
        """The call of one statement, or ``(None, reason)``."""
        if not isinstance(stmt, ast.Expr) or not isinstance(stmt.value, ast.Call):
            what = stmt.value if isinstance(stmt, ast.Expr) else stmt
            return None, f"not a call ({type(what).__name__})"
        node = stmt.value
        if not isinstance(node.func, ast.Name):
            return None, f"function must be a plain name, not {type(node.func).__name__}"
        name = node.func.id
        if name not in SIGNATURES:
            return None, f"unknown function {name!r}"
        if name not in self.allowed:
            return None, f"{name} is not allowed at this level"
        args, why = self.bind(name, node)
        if args is None:
            return None, why
        c = Call(name, args)
        why = _range_error(c, self.n_lines) or ""
        return (None, why) if why else (c, "")

    def bind(self, name: str, node: ast.Call) -> tuple[tuple[tuple[str, Value], ...] | None, str]:
        """Match positional and keyword arguments to the signature of ``name`` and check them."""
        params = SIGNATURES[name]
        if len(node.args) > len(params):
            return None, f"{name} takes {len(params)} arguments, got {len(node.args)} positional"
        given: dict[str, ast.expr] = {}
        for (p, _, _), a in zip(params, node.args):
            given[p] = a
        names = {p for p, _, _ in params}
        for kw in node.keywords:
            if kw.arg is None:
                return None, "**kwargs is not allowed"
            if kw.arg not in names:
                return None, f"{name} has no parameter {kw.arg!r}"
            if kw.arg in given:
                return None, f"parameter {kw.arg!r} given twice"
            given[kw.arg] = kw.value
        out: list[tuple[str, Value]] = []
        for p, typ, default in params:
            if p not in given:
                if default is None:
                    return None, f"{name} needs {p}"
                out.append((p, default))
                continue
            value, why = self.value(given[p], typ)
            if why:
                return None, f"{p}: {why}"
            out.append((p, value))
        return tuple(out), ""

    def value(self, node: ast.expr, typ: type) -> tuple[Value | None, str]:
        """The literal value of an argument node (read from a Constant, never evaluated)."""
        sign = 1
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) \
                and isinstance(node.operand, ast.Constant) and type(node.operand.value) is int:
            sign = -1 if isinstance(node.op, ast.USub) else 1
            node = node.operand
        if isinstance(node, ast.Starred):
            return None, "*args is not allowed"
        if not isinstance(node, ast.Constant):
            return None, f"must be a literal, not {type(node).__name__}"
        v = node.value
        if type(v) is not typ:  # bool is not int here
            return None, f"must be {typ.__name__}, not {type(v).__name__}"
        if typ is int:
            v = sign * v
            if v < 0:
                return None, f"{v} is negative"
            if v > MAX_INT:
                return None, f"{v if v < 10**30 else 'number'} is over {MAX_INT}"
            return v, ""
        if len(v) > self.max_str:
            return None, f"string of {len(v)} characters is over {self.max_str}"
        if "\n" in v:
            return None, "string holds a newline"
        if not _encodable(v):
            return None, "string is not valid Unicode (lone surrogate)"
        return v, ""


def _value_error(c: Call) -> str | None:
    """Why a hand-made call's name or values are not ones :func:`parse_program` would accept."""
    params = SIGNATURES.get(c.name)
    if params is None:
        return f"unknown function {c.name!r}"
    given = dict(c.args)
    if not set(given) <= {p for p, _, _ in params}:
        return f"{c.name} has unknown parameters"
    for p, typ, default in params:
        v = given.get(p, default)
        if type(v) is not typ:
            return f"{p} must be {typ.__name__}"
        if typ is int and not 0 <= v <= MAX_INT:
            return f"{p} is out of range"
        if typ is str and ("\n" in v or not _encodable(v)):
            return f"{p} holds a newline or is not valid Unicode"
    return None


def _range_error(c: Call, n_lines: int | None) -> str | None:
    """Why a call's own values do not fit together or in ``n_lines`` lines, or ``None``."""
    if c.name == "normalize":
        return "source_str is empty" if c.arg("source_str") == "" else None
    if c.name != "remove_lines":
        return None
    a, b = c.arg("line_start"), c.arg("line_end")
    if a > b:
        return f"line_start {a} is after line_end {b}"
    if n_lines is not None and b >= n_lines:
        return f"line_end {b} is past the last line ({n_lines - 1})"
    return None
