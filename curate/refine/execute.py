"""Execute ProX refining programs on documents, never losing text to a bad program.

:func:`execute` runs one parsed program (see :mod:`curate.refine.program`) on one document:

1. The lines are ``text.split("\\n")``, numbered from 0 over the whole document, as the model saw
   them. Calls whose lines are past the end are invalid.
2. If the program has ``max_invalid`` invalid calls or more, the original text comes back
   (action ``"unchanged"``, reason ``"too_many_invalid"``): a garbled program changes nothing.
   This is checked again after step 5, where a normalization can become invalid.
3. ``drop_doc()`` (with fewer invalid calls) drops the document (action ``"dropped"``, reason
   ``"drop_doc"``); it wins over every other call, as in ProX (``"drop" in program``).
4. A program without ``normalize``/``remove_lines`` calls (``keep_doc()``, ``skip_chunk()``, the
   empty program, ``None``) leaves the text as it is (``"unchanged"``, reason ``"no_edits"``,
   or ``"no_program"`` for ``None``).
5. Every ``normalize`` is applied, in program order, to the whole text: plain substring
   replacement of all (non-overlapping, left to right) occurrences, as ProX's ``str.replace``.
   Neither string may hold a newline (the parser rejects it), so a normalization never changes
   the number of lines and the line numbers of step 6 still point at the lines the model saw;
   and without newlines, replacing in the whole text is the same as replacing line by line.
   ProX re-splits after normalizing, so a newline in its strings would shift line numbers.
   As in ProX, ``normalize`` of a single space is ignored (it would glue all the words together);
   it is not counted as invalid. A normalization that would make the text longer than
   ``max_growth`` times the original (plus 4,096 characters) is invalid and not applied.
6. The lines in the union of the ``remove_lines`` ranges (both ends included), by their original
   numbers, are removed; the rest are joined with ``"\\n"``.
7. If that leaves the text as it was: action ``"kept"``, reason ``"no_effect"``. Otherwise, with
   words counted by whitespace split (``str.split()``): if ``after / before <= drop_ratio`` the
   document is dropped (reason ``"word_ratio"``); else if ``after <= min_words`` it is dropped
   (reason ``"too_few_words"``); else action ``"refined"``. The rules are ProX's
   (``threshold_2=0.95``, ``<= 10`` words) but apply only to texts the program changed: ProX
   also drops a short document whose program only skips, which is a length filter's job here.

Differences from ProX on invalid calls: ProX counts only malformed ``remove_lines`` and
``normalize`` lines and ranges that start past the end (and clamps a range that ends past it);
here every line that is not a valid call of the level counts, including reversed and
out-of-range ranges, and an invalid call is never applied in part.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

import pyarrow as pa

from curate.refine.program import MAX_CHARS, Call, Level, Program, check_lines, parse_program

Action = Literal["refined", "dropped", "unchanged", "kept"]
_SLACK = 4096


@dataclass(frozen=True)
class Settings:
    """Decision rules. ``drop_ratio``: drop a refined text whose word count is at most this
    fraction of the original's; ``min_words``: drop a refined text with at most this many words;
    ``max_invalid``: this many invalid calls or more and the original text is kept;
    ``max_growth``: a normalization may not make the text longer than this times the original;
    ``level``, ``max_chars``: passed to :func:`~curate.refine.program.parse_program`."""

    drop_ratio: float = 0.05
    min_words: int = 10
    max_invalid: int = 2
    max_growth: float = 2.0
    level: Level = "any"
    max_chars: int = MAX_CHARS


@dataclass
class Result:
    """What a program did to one document. ``text``: the new text, the original, or ``None``
    when dropped; ``applied``: canonical text of the calls that decided the outcome (the edits
    applied, or ``drop_doc()``; empty when nothing was applied); ``n_invalid``: invalid calls;
    ``errors``: one reason per invalid call."""

    text: str | None
    action: Action
    reason: str | None
    applied: str = ""
    n_invalid: int = 0
    errors: list[str] = field(default_factory=list)


def execute(text: str, program: str | bytes | Program | None, settings: Settings = Settings()) -> Result:
    """Run ``program`` (source text or a parsed :class:`Program`) on ``text``; see the module
    docstring for the steps. Never raises on a bad program; an invalid one returns ``text``."""
    lines = text.split("\n")
    if program is None:
        return Result(text, "unchanged", "no_program")
    if isinstance(program, Program):
        calls, errors = check_lines(program.calls, len(lines))
        errors = program.errors + errors
    else:
        p = parse_program(program, n_lines=len(lines), level=settings.level, max_chars=settings.max_chars)
        calls, errors = p.calls, p.errors
    if len(errors) >= settings.max_invalid:
        return _unchanged(text, errors)
    if any(c.name == "drop_doc" for c in calls):
        return Result(None, "dropped", "drop_doc", "drop_doc()", len(errors), errors)
    edits = [c for c in calls if c.name in ("normalize", "remove_lines")]
    if not edits:
        return Result(text, "unchanged", "no_edits", "", len(errors), errors)
    new, applied = _apply(text, len(lines), edits, errors, settings)
    if len(errors) >= settings.max_invalid:
        return _unchanged(text, errors)
    return _decide(text, new, "\n".join(c.render() for c in applied), errors, settings)


def _unchanged(text: str, errors: list[str]) -> Result:
    return Result(text, "unchanged", "too_many_invalid", "", len(errors), errors)


def _apply(text: str, n_lines: int, edits: list[Call], errors: list[str],
           settings: Settings) -> tuple[str, list[Call]]:
    """Apply the normalizations in order, then remove the line ranges by original line number.
    Appends to ``errors`` the normalizations that would grow the text too much."""
    limit = int(len(text) * settings.max_growth) + _SLACK
    applied: list[Call] = []
    for c in edits:
        if c.name != "normalize":
            continue
        src, dst = c.arg("source_str"), c.arg("target_str")
        if src == " ":
            continue  # ProX ignores it
        if len(dst) > len(src) and len(text) + text.count(src) * (len(dst) - len(src)) > limit:
            errors.append(f"normalize would make the text longer than {limit} characters: {c.render()[:80]}")
            continue
        text = text.replace(src, dst)
        applied.append(c)
    ranges = [c for c in edits if c.name == "remove_lines"]
    if not ranges:
        return text, applied
    keep = bytearray(b"\x01") * n_lines
    for c in ranges:
        a, b = c.arg("line_start"), c.arg("line_end")
        keep[a : b + 1] = bytes(b - a + 1)
        applied.append(c)
    lines = text.split("\n")
    return "\n".join(line for line, k in zip(lines, keep) if k), applied


def _decide(old: str, new: str, applied: str, errors: list[str], settings: Settings) -> Result:
    """ProX's decision rules on a text the program changed (words: ``str.split()``)."""
    n = len(errors)
    if new == old:
        return Result(old, "kept", "no_effect", applied, n, errors)
    before, after = len(old.split()), len(new.split())
    if before and after / before <= settings.drop_ratio:
        return Result(None, "dropped", "word_ratio", applied, n, errors)
    if after <= settings.min_words:
        return Result(None, "dropped", "too_few_words", applied, n, errors)
    return Result(new, "refined", None, applied, n, errors)


def execute_batch(texts: Sequence[str | None] | pa.Array | pa.ChunkedArray,
                  programs: Sequence[str | bytes | None] | pa.Array | pa.ChunkedArray,
                  settings: Settings = Settings()) -> dict[str, pa.Array]:
    """:func:`execute` on each (text, program) pair. Returns arrays ``text`` (string, or
    large_string for a large_string input; null when
    dropped), ``action``, ``reason`` (string, nullable), ``applied`` (string) and ``n_invalid``
    (int32). A null program leaves its text unchanged (reason ``"no_program"``); a null text
    stays null (reason ``"no_text"``)."""
    arrow = isinstance(texts, (pa.Array, pa.ChunkedArray))
    text_type = texts.type if arrow and pa.types.is_large_string(texts.type) else pa.string()
    ts = texts.to_pylist() if arrow else list(texts)
    ps = programs.to_pylist() if isinstance(programs, (pa.Array, pa.ChunkedArray)) else list(programs)
    if len(ts) != len(ps):
        raise ValueError(f"{len(ts)} texts but {len(ps)} programs")
    out: dict[str, list] = {"text": [], "action": [], "reason": [], "applied": [], "n_invalid": []}
    for t, p in zip(ts, ps):
        r = Result(None, "unchanged", "no_text") if t is None else execute(t, p, settings)
        out["text"].append(r.text)
        out["action"].append(r.action)
        out["reason"].append(r.reason)
        out["applied"].append(r.applied)
        out["n_invalid"].append(r.n_invalid)
    return {"text": pa.array(out["text"], type=text_type),
            "action": pa.array(out["action"], type=pa.string()),
            "reason": pa.array(out["reason"], type=pa.string()),
            "applied": pa.array(out["applied"], type=pa.string()),
            "n_invalid": pa.array(out["n_invalid"], type=pa.int32())}


def outcome(res: dict[str, pa.Array], original) -> tuple[pa.Array, "np.ndarray"]:
    """What a stage makes of :func:`execute_batch`'s result: the text of every document (the refined
    one, else the original: a dropped document keeps its text for ``rejected/``) and the drop
    reason per document (``prox_<reason>``, None for the kept ones)."""
    import numpy as np
    import pyarrow.compute as pc

    text = pc.coalesce(res["text"], original)
    reasons = np.array([f"prox_{why or 'drop_doc'}" if act == "dropped" else None
                        for act, why in zip(res["action"].to_pylist(), res["reason"].to_pylist())], dtype=object)
    return text, reasons
