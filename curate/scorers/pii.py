"""PII redaction: e-mail addresses and IPv4 / IPv6 addresses are replaced in the text.

Vectorized with Arrow's RE2 kernels (``pc.replace_substring_regex``, ``pc.count_substring_regex``)
over the whole batch. Redactions are counted through Beam metrics (``curate.info`` counters
``pii_redact_emails`` and ``pii_redact_ips``) and, with ``add_scores: true``, per document in the
columns ``pii_emails`` and ``pii_ips``.

Patterns:

* e-mail: ``local@domain.tld`` (ASCII local part of letters, digits and ``._%+-``; a dotted domain
  ending in a letters-only TLD of two or more letters).
* IPv4: four dotted decimal octets 0-255 without leading zeros, not part of a longer dotted
  number or word: ``10.0.0.1``, ``10.0.0.1:8080`` and ``at 10.0.0.1.`` are redacted; version
  numbers such as ``1.2.3``, ``v1.2.3.4`` and ``1.2.3.4.5`` and dates are not.
* IPv6: the full eight-group form, and the ``::`` compressed forms with at least three groups
  (``2001:db8::8a2e:370:7334``), and IPv4-mapped forms (``::ffff:192.0.2.1``), not inside a word.
  Two-group compressed forms (``fe80::1``, ``a::b``) are left alone: they are rarely personal and
  collide with code such as C++'s ``ns::f``; MAC addresses and times (``12:30:45``) never match.

RE2 has no look-around, so a match consumes the character before and after it (kept in the
replacement; the text gets a one-space prefix for the duration, so a match at the very start has
a character before it). Two adjacent addresses separated by one character then need a second
pass, which each pattern gets.

Why this is a ``Scorer`` (and a ``Mapper``): the stage machinery sets every column a scorer
returns, so ``score`` returns the rewritten ``text`` together with the count columns. The
``Mapper`` base would only set ``text``. Replacements must not be blank, so no document can
become empty (the one thing a ``Mapper`` checks). ``map`` is also provided and returns the text.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics

from curate import pieces
from curate.core.registry import register
from curate.core.stage import Mapper, Scorer
from curate.schema import TEXT

EMAIL = r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}"

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_H = r"[0-9A-Fa-f]{1,4}"


def _ipv6_alternatives() -> str:
    alts = [rf"{_H}(?::{_H}){{7}}"]  # full form
    for total in range(7, 2, -1):  # compressed: i groups before '::', j after, i + j >= 3
        for i in range(total, -1, -1):
            j = total - i
            left = rf"{_H}(?::{_H}){{{i - 1}}}" if i else ""
            right = rf"{_H}(?::{_H}){{{j - 1}}}" if j else ""
            alts.append(f"{left}::{right}")
    alts.append(rf"(?:{_H}(?::{_H}){{0,5}})?::(?:{_H}:){{0,5}}{IPV4}")  # IPv4-mapped / embedded
    alts.append(rf"{_H}(?::{_H}){{5}}:{IPV4}")
    return "|".join(alts)


IPV6 = _ipv6_alternatives()
# (boundary before)(address)(boundary after): \1 and \3 are put back by the replacement
# (no '^': Arrow's count_substring_regex lets '^' match again after each match, unlike the replace
# kernel, so the text gets a one-space prefix instead, removed afterwards)
IPV4_PATTERN = rf"([^\pL\pN_.])({IPV4})(\.?(?:[^\pL\pN_.]|$))"
IPV6_PATTERN = rf"([^\pL\pN_.:])({IPV6})([^\pL\pN_:]|$)"


def _replace_counting(text: pa.Array, pattern: str, replacement: str, passes: int) -> tuple[pa.Array, np.ndarray]:
    total = np.zeros(len(text), dtype=np.int64)
    for _ in range(passes):
        counts = pc.fill_null(pc.count_substring_regex(text, pattern), 0).to_numpy(zero_copy_only=False)
        if not counts.any():
            break
        total += counts
        text = pc.replace_substring_regex(text, pattern, replacement)
    return text, total


def redact(text, email: str | None = "<EMAIL>", ip: str | None = "<IP>", ipv6: bool = True):
    """(redacted text, e-mails per document, IP addresses per document). ``None`` skips a kind.

    The batch is redacted a slice at a time (:func:`curate.pieces.plan`), and a document longer
    than a slice a piece at a time, cut after a space or newline (no address spans one, and each
    pattern's boundary before an address is such a character, which a piece gets as its one-space
    prefix): the pieces' texts are joined back and their counts added."""
    if not isinstance(text, (pa.Array, pa.ChunkedArray)):
        text = pa.array(list(text), type=pa.string())
    text = pieces.as_string(text)
    plan = pieces.plan(text, pieces.SLICE_BYTES, b" \n")
    if len(plan) == 1 and plan[0][0] == "docs":
        return _redact(text, email, ip, ipv6)
    n = len(text)
    n_email = np.zeros(n, dtype=np.int64)
    n_ip = np.zeros(n, dtype=np.int64)
    out = []
    for entry in plan:
        if entry[0] == "docs":
            _, a, b = entry
            t, e, i = _redact(text.slice(a, b - a), email, ip, ipv6)
            n_email[a:b], n_ip[a:b] = e, i
            out.append(t)
            continue
        _, d, bounds = entry
        parts = []
        for a, b in zip(bounds[:-1], bounds[1:]):
            t, e, i = _redact(pieces.piece(text, a, b), email, ip, ipv6)
            n_email[d] += e[0]
            n_ip[d] += i[0]
            parts.append(t)
        values = pa.concat_arrays(parts)
        del parts
        list_type = pa.LargeListArray if pa.types.is_large_string(values.type) else pa.ListArray
        offsets = pa.array([0, len(values)], pa.int64() if list_type is pa.LargeListArray else pa.int32())
        out.append(pc.binary_join(list_type.from_arrays(offsets, values), pa.scalar("", values.type)))
        del values
    result = pa.concat_arrays(out) if len(out) > 1 else out[0]
    return result, n_email, n_ip


def _redact(text: pa.Array, email, ip, ipv6):
    n = len(text)
    n_email = np.zeros(n, dtype=np.int64)
    n_ip = np.zeros(n, dtype=np.int64)
    if email is not None:
        rep = email.replace("\\", "\\\\")
        text, n_email = _replace_counting(text, EMAIL, rep, passes=1)
    if ip is not None:
        rep = ip.replace("\\", "\\\\")
        text = pc.binary_join_element_wise(pa.scalar(" ", text.type), text, pa.scalar("", text.type))
        if ipv6:
            text, c6 = _replace_counting(text, IPV6_PATTERN, rf"\1{rep}\3", passes=2)
            n_ip += c6
        text, c4 = _replace_counting(text, IPV4_PATTERN, rf"\1{rep}\3", passes=2)
        n_ip += c4
        text = pc.utf8_slice_codeunits(text, 1)
    return text, n_email, n_ip


@register
@dataclass(kw_only=True)
class PiiRedact(Scorer, Mapper):
    """Redact e-mail and IP addresses in the text; counts per document with add_scores."""

    stage = "pii_redact"
    kind = "mapper"
    emails: bool = True
    ips: bool = True
    ipv6: bool = True
    email_replacement: str = "<EMAIL>"
    ip_replacement: str = "<IP>"
    add_scores: bool = False

    def __post_init__(self):
        for name in ("email_replacement", "ip_replacement"):
            if not getattr(self, name).strip():
                raise ValueError(f"pii_redact: {name} must not be blank")

    def setup(self):
        self._emails = Metrics.counter("curate.info", f"{self.stage}_emails")
        self._ips = Metrics.counter("curate.info", f"{self.stage}_ips")

    def _redact(self, batch):
        if getattr(self, "_emails", None) is None:
            self.setup()
        text, n_email, n_ip = redact(batch.column(TEXT), self.email_replacement if self.emails else None,
                                     self.ip_replacement if self.ips else None, self.ipv6)
        self._emails.inc(int(n_email.sum()))
        self._ips.inc(int(n_ip.sum()))
        return text, n_email, n_ip

    def score(self, batch):
        text, n_email, n_ip = self._redact(batch)
        out = {TEXT: text}
        if self.add_scores:
            out["pii_emails"] = pa.array(n_email, type=pa.int32())
            out["pii_ips"] = pa.array(n_ip, type=pa.int32())
        return out

    def map(self, batch):
        return self._redact(batch)[0]

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_emails", None), state.pop("_ips", None)
        return state
