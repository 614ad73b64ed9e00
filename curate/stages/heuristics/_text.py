"""Shared text statistics for the heuristic rule sets, computed once per batch.

The rule sets (``gopher_quality``, ``gopher_repetition``, ``c4_quality``/``c4_lines``,
``fineweb_quality``) are defined by per-document Python code (DataTrove's reference filters). Here
the same definitions are computed for a whole record batch at once:

* **Lines and paragraphs** are split with Arrow regex kernels, with the exact semantics of
  ``str.splitlines()``, ``str.split("\\n")``, ``re.split("\\n+")`` and ``re.split("\\n{2,}")``, and
  deduplicated per document with polars.
* **Words** are those of the tokenizer the reference filters use (spaCy's blank English
  tokenizer, punctuation being words of its own). The lines are cut at whitespace into *chunks*
  (one polars regex pass); chunks are identified by hash, and each *distinct* chunk of the batch
  is split once: plain runs of letters or digits are one word, a plain (or hyphenated) word with
  opening/closing punctuation is split by a vectorized regex, and only the remaining ones go
  through :class:`WordSplitter` in Python, a re-implementation of the tokenizer's rules (special
  cases, prefixes, suffixes, infixes, URLs), memoized across batches. Words are then indices into
  the batch's vocabulary; per-word properties (length, hash, letters, symbols, punctuation) are
  computed once per vocabulary entry and gathered (numpy).
* **n-grams** are rolling 64-bit hashes of the word hashes; a repeated n-gram is a repeated
  (n-1)-gram followed by one, so each size only looks at the previous size's repeats.

:func:`analyze` returns the :class:`TextStats` of a text array: memoized per process on the
array's buffers, so the rule-set stages that see the same batch (``mode: annotate``, or nothing
dropped) share one analysis, and a batch that a filter left a subset of reuses the words of the
original. Every view of :class:`TextStats` is computed lazily and cached on it.
"""
from __future__ import annotations

import bisect
import itertools
import re
import threading
import unicodedata
from collections import OrderedDict

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

# ------------------------------------------------------------------------------ character classes

#: Python's ``str.isspace`` characters: the separators of ``str.split()`` and of spaCy's chunks.
WHITESPACE = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())

#: "Symbol" characters of the Gopher rules (a word made only of these is not counted as a word):
#: ASCII and common CJK/typographic punctuation, C0/C1 control characters (except tab and newline)
#: and the sentence terminals below.
SYMBOLS = (
    "!/—”:％１〈&(、━\\【#%「」，】；+^]~“《„';’{|∶´[=-`*．（–？！：$～«〉,><》)?）。…@_.\"}►»"
    + "".join(chr(c) for lo, hi in ((0, 9), (11, 13), (13, 32), (127, 160)) for c in range(lo, hi))
)

#: Sentence-terminal punctuation (Unicode Sentence_Terminal as of Unicode 15, plus three Khmer
#: signs): FineWeb's "line ends with punctuation".
TERMINAL_PUNCTUATION = (
    "!.?\u0589\u061d\u061e\u061f\u06d4\u0700\u0701\u0702\u07f9\u0837\u0839\u083d\u083e\u0964\u0965"
    "\u104a\u104b\u1362\u1367\u1368\u166e\u1735\u1736\u17d4\u17d5\u17d6\u17d9\u17da\u1803\u1809"
    "\u1944\u1945\u1aa8\u1aa9\u1aaa\u1aab\u1b5a\u1b5b\u1b5e\u1b5f\u1b7d\u1b7e\u1c3b\u1c3c\u1c7e\u1c7f"
    "\u203c\u203d\u2047\u2048\u2049\u2e2e\u2e3c\u2e53\u2e54\u3002\ua4ff\ua60e\ua60f\ua6f3\ua6f7"
    "\ua876\ua877\ua8ce\ua8cf\ua92f\ua9c8\ua9c9\uaa5d\uaa5e\uaa5f\uaaf0\uaaf1\uabeb\ufe52\ufe56\ufe57"
    "\uff01\uff0e\uff1f\uff61"
    "\U00010a56\U00010a57\U00010f55\U00010f56\U00010f57\U00010f58\U00010f59\U00010f86\U00010f87"
    "\U00010f88\U00010f89\U00011047\U00011048\U000110be\U000110bf\U000110c0\U000110c1\U00011141"
    "\U00011142\U00011143\U000111c5\U000111c6\U000111cd\U000111de\U000111df\U00011238\U00011239"
    "\U0001123b\U0001123c\U000112a9\U0001144b\U0001144c\U000115c2\U000115c3\U000115c9\U000115ca"
    "\U000115cb\U000115cc\U000115cd\U000115ce\U000115cf\U000115d0\U000115d1\U000115d2\U000115d3"
    "\U000115d4\U000115d5\U000115d6\U000115d7\U00011641\U00011642\U0001173c\U0001173d\U0001173e"
    "\U00011944\U00011946\U00011a42\U00011a43\U00011a9b\U00011a9c\U00011c41\U00011c42\U00011ef7"
    "\U00011ef8\U00011f43\U00011f44\U00016a6e\U00016a6f\U00016af5\U00016b37\U00016b38\U00016b44"
    "\U00016e98\U0001bc9f\U0001da88"
)

#: The characters that end a sentence for spaCy's rule-based sentencizer (C4's sentence count).
SENTENCE_PUNCTUATION = (
    "!.?\u0589\u061f\u06d4\u0700\u0701\u0702\u07f9\u0964\u0965\u104a\u104b\u1362\u1367\u1368\u166e"
    "\u1735\u1736\u1803\u1809\u1944\u1945\u1aa8\u1aa9\u1aaa\u1aab\u1b5a\u1b5b\u1b5e\u1b5f\u1c3b\u1c3c"
    "\u1c7e\u1c7f\u203c\u203d\u2047\u2048\u2049\u2e2e\u2e3c\ua4ff\ua60e\ua60f\ua6f3\ua6f7\ua876\ua877"
    "\ua8ce\ua8cf\ua92f\ua9c8\ua9c9\uaa5d\uaa5e\uaa5f\uaaf0\uaaf1\uabeb\ufe52\ufe56\ufe57\uff01\uff0e"
    "\uff1f\uff61\u3002"
    "\U00010a56\U00010a57\U00011047\U00011048\U000110be\U000110bf\U000110c0\U000110c1\U00011141"
    "\U00011142\U00011143\U000111c5\U000111c6\U000111cd\U000111de\U000111df\U00011238\U00011239"
    "\U0001123b\U0001123c\U000112a9\U0001144b\U0001144c\U000115c2\U000115c3\U000115c9\U000115ca"
    "\U000115cb\U000115cc\U000115cd\U000115ce\U000115cf\U000115d0\U000115d1\U000115d2\U000115d3"
    "\U000115d4\U000115d5\U000115d6\U000115d7\U00011641\U00011642\U0001173c\U0001173d\U0001173e"
    "\U00011a42\U00011a43\U00011a9b\U00011a9c\U00011c41\U00011c42\U00016a6e\U00016a6f\U00016af5"
    "\U00016b37\U00016b38\U00016b44\U0001bc9f\U0001da88"
)

_SYMBOL_SET = frozenset(SYMBOLS) | frozenset(TERMINAL_PUNCTUATION)


def _class(chars) -> str:
    """A regex character class body (works for Python ``re`` and Rust ``regex``) for ``chars``."""
    return "".join(f"\\x{{{ord(c):x}}}" if ord(c) > 0x7F or not c.isalnum() else c for c in sorted(set(chars)))


def _py_class(chars) -> str:
    return "".join(re.escape(c) for c in sorted(set(chars)))


# Rust-regex (polars) patterns
CHUNK_RE = "[^" + _class(WHITESPACE) + "]+"  # a run of non-whitespace: what str.split() yields
_NON_SYMBOL_RE = "[^" + _class(_SYMBOL_SET) + "]"
_ARROW_LINE_BREAKS = r"\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x{85}\x{2028}\x{2029}]"  # str.splitlines()


# ---------------------------------------------------------------------------- the word splitter


def _icon_class() -> str:
    """A Python regex class body for the symbols of category So (emoji, dingbats, arrows...)."""
    out, start, prev = [], None, None
    for cp in range(0xA0, 0x20000):
        if unicodedata.category(chr(cp)) == "So":
            if start is None:
                start = cp
            prev = cp
        elif start is not None:
            out.append((start, prev))
            start = None
    return "".join(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in out)


# Blocks of scripts without case that the tokenizer takes whole as letters (digits and signs
# included): Devanagari to Sinhala, Ethiopic, CJK symbols, CJK compatibility, enclosed ideographs.
_UNCASED_BLOCKS = ((0x0900, 0x0DFF), (0x1200, 0x137F), (0x3000, 0x303F), (0x31C0, 0x31EF), (0x3200, 0x33FF),
                   (0xF900, 0xFAFF), (0xFE30, 0xFE4F), (0x1F200, 0x1F2FF))


def _uncased(c: str) -> bool:
    o = ord(c)
    return any(lo <= o <= hi for lo, hi in _UNCASED_BLOCKS) or unicodedata.category(c)[0] == "M"


def _alpha(c: str) -> bool:
    return c.isalpha() or _uncased(c)


def _lower_or_uncased(c: str) -> bool:
    """A lower-case letter, a letter of a script without case, or a combining mark."""
    return (c.isalpha() and not c.isupper() and not c.istitle()) or _uncased(c)


def _upper_or_uncased(c: str) -> bool:
    return (c.isalpha() and not c.islower()) or _uncased(c)


class WordSplitter:
    """Splits one whitespace-free chunk into words the way spaCy's blank English tokenizer does.

    The algorithm: exact special cases (contractions such as ``don't`` -> ``do n't``, ``I'm``,
    abbreviations such as ``Mr.``, ``e.g.``, times such as ``5pm``, emoticons) are looked up first;
    otherwise punctuation *prefixes* (opening brackets and quotes, currency, ``...``) and *suffixes*
    (closing punctuation, ``'s``, a period after a lower-case letter or a digit, units after a
    number) are peeled off repeatedly, stopping as soon as the remainder is a special case; what is
    left is kept whole if it is a URL, and is otherwise cut at *infixes* (a hyphen or a slash
    between letters, a comma between letters, a period between a lower- and an upper-case letter,
    an operator between digits, ``...``).
    """

    _PUNCT = "…,:;!?¿؟¡()[]{}<>_#*&。？！，、；：～·।،۔؛٪"
    _QUOTES = "'\"”“`‘´’‚,„»«「」『』（）〔〕【】《》〈〉〈〉⟦⟧"
    _CURRENCY = "$£€¥฿₽﷼₴₠₡₢₣₤₥₦₧₨₩₪₫₭₮₯₰₱₲₳₵₶₷₸₹₺₻₼₾₿"
    _UNITS = (
        "km km² km³ m m² m³ dm dm² dm³ cm cm² cm³ mm mm² mm³ ha µm nm yd in ft kg g mg µg t lb oz "
        "m/s km/h kmh mph hPa Pa mbar mb MB kb KB gb GB tb TB T G M K % "
        "км км² км³ м м² м³ дм дм² дм³ см см² см³ мм мм² мм³ нм кг г мг м/с км/ч кПа Па мбар Кб КБ кб "
        "Мб МБ мб Гб ГБ гб Тб"
    ).split()

    def __init__(self):
        icons = _icon_class()
        self._icon = re.compile("[" + icons + "]")
        self._prefix = re.compile(
            r"(?:US\$|C\$|A\$|\.\.+|\+(?![0-9])|[" + _py_class("§%=—–" + self._PUNCT + self._QUOTES + self._CURRENCY) + icons + "])"
        )
        self._suffix_char = frozenset(self._PUNCT + self._QUOTES + "—–")
        self._after_digit = frozenset(self._UNITS) | frozenset(self._CURRENCY) | {"US$", "C$", "A$", "+"}
        self._period_after = frozenset("%²-+|\\" + self._PUNCT + self._QUOTES)
        # infixes; the characters around a period, comma, hyphen or [:<>=/] are checked in _split
        self._infix = re.compile(r"\.\.+|…|[" + icons + r"]|(?<=[0-9])[+\-*^](?=[0-9-])|[.,:<>=/]|---|--|——|[-–—~]")
        self._infix_chars = re.compile(r"[.…+\-*^,–—~:<>=/" + icons + "]")
        self._quote_set = frozenset(self._QUOTES)
        host = "[A-Za-z0-9\u00a1-\uffff]"
        self._url = re.compile(
            r"(?:[\w+\-.]{2,}://)?(?:\S+(?::\S*)?@)?"
            r"(?:(?:[1-9]\d?|1\d\d|2[01]\d|22[0-3])(?:\.(?:1?\d{1,2}|2[0-4]\d|25[0-5])){2}(?:\.(?:[1-9]\d?|1\d\d|2[0-4]\d|25[0-4]))"
            r"|(?:(?:" + host + r"[A-Za-z0-9\u00a1-\uffff_-]{0,62})?" + host + r"\.)+(?P<tld>(?:[a-z]|[^\x00-\x7f\W\d_]){2,63}))"
            r"(?::\d{2,5})?(?:[/?#]\S*)?"
        )
        self.specials = _special_cases()
        # A run of words that spells a special case the way the rules split it without special
        # cases (``z`` ``.`` for ``z.``) is replaced by the special case; only special cases with
        # affixes have such a spelling of two or more words.
        self._patterns: dict[tuple[str, ...], tuple[str, ...]] = {}
        for k, v in self.specials.items():
            plain = self._split(k, {})
            if len(plain) > 1:
                self._patterns.setdefault(plain, v)
        self._max_pattern = max(map(len, self._patterns))
        self._memo: dict[str, tuple[str, ...]] = {}

    def __call__(self, chunk: str) -> tuple[str, ...]:
        memo = self._memo
        out = memo.get(chunk)
        if out is None:
            if len(memo) > 200_000:
                memo.clear()
            out = memo[chunk] = self._split(chunk)
        return out

    _checked_infix = frozenset(".,:<>=/-–—~")

    def _is_url(self, s: str) -> bool:
        if "." not in s:
            return False
        m = self._url.fullmatch(s)
        # the top-level domain is in lower case (so that "end.Start" is no URL)
        return m is not None and not any(ch.isupper() or ch.istitle() for ch in (m.group("tld") or ""))

    def _infix_ok(self, s: str, a: int, b: int) -> bool:
        """Whether the infix ``s[a:b]`` splits here, from the characters around it."""
        if b >= len(s):
            return False
        before, after, c = s[a - 1], s[b], s[a]
        if c == "-" and b == a + 1 and "0" <= before <= "9" and ("0" <= after <= "9" or after == "-"):
            return True  # an operator between digits
        if c == ".":  # "..." always; "." between a lower-case letter and an upper-case one (or quotes)
            return b > a + 1 or ((before in self._quote_set or _lower_or_uncased(before))
                    and (after in self._quote_set or _upper_or_uncased(after)))
        if c == ",":  # between letters
            return _alpha(before) and _alpha(after)
        # a hyphen, or one of : < > = /, after a letter or a digit and before a letter
        return (_alpha(before) or "0" <= before <= "9") and _alpha(after)

    def _prefix_len(self, s: str) -> int:
        m = self._prefix.match(s)
        return m.end() if m else 0

    def _suffix_len(self, s: str) -> int:
        """Length of the suffix to peel off ``s`` (0: none): the leftmost start that reaches the end."""
        n = len(s)
        if not n:
            return 0
        if n >= 2 and s[-1] == "." and s[-2] == ".":
            i = n - 2
            while i > 0 and s[i - 1] == ".":
                i -= 1
            return n - i
        for p in range(max(0, n - 4), n):
            tail = s[p:]
            if p and "0" <= s[p - 1] <= "9" and tail in self._after_digit:
                return n - p
            if p == n - 2 and tail in ("……", "'s", "'S", "’s", "’S"):
                return 2
        last = s[-1]
        if last in self._suffix_char or self._icon.match(last):
            return 1
        if last == "." and n >= 2:
            prev = s[-2]
            if ("0" <= prev <= "9") or prev in self._period_after or _lower_or_uncased(prev):
                return 1
            if n >= 3 and _upper_or_uncased(prev) and _upper_or_uncased(s[-3]):
                return 1
            if n >= 3 and s[-3] == "°" and prev in "FfCcKk":
                return 1
        return 0

    def _split(self, s: str, specials: dict | None = None) -> tuple[str, ...]:
        if specials is None:
            specials = self.specials
        if s in specials:
            return specials[s]
        prefixes: list[str] = []
        suffixes: list[str] = []
        last = -1
        while s and len(s) != last:
            if s in specials:
                break
            last = len(s)
            pre = self._prefix_len(s)
            if pre and s[pre:] in specials:
                prefixes.append(s[:pre])
                s = s[pre:]
                break
            suf = self._suffix_len(s[pre:])
            if suf and s[:-suf] in specials:
                suffixes.append(s[-suf:])
                s = s[:-suf]
                break
            if pre and suf and pre + suf <= len(s):
                prefixes.append(s[:pre])
                suffixes.append(s[-suf:])
                s = s[pre:-suf]
            elif pre:
                prefixes.append(s[:pre])
                s = s[pre:]
            elif suf:
                suffixes.append(s[-suf:])
                s = s[:-suf]
            if s in specials:
                break
        middle: list[str] = []
        if s:
            if s in specials:
                middle = list(specials[s])
            elif self._is_url(s) or not self._infix_chars.search(s):
                middle = [s]
            else:
                start = 0
                for m in self._infix.finditer(s):
                    a, b = m.span()
                    if a == 0:
                        continue
                    c = s[a]
                    if c in self._checked_infix and not self._infix_ok(s, a, b):
                        continue
                    if a != start:
                        middle.append(s[start:a])
                    if a != b:
                        middle.append(s[a:b])
                    start = b
                if s[start:]:
                    middle.append(s[start:])
        tokens = prefixes + middle + suffixes[::-1]
        if len(tokens) > 1 and specials:
            tokens = self._merge_specials(tokens)
        return tuple(tokens)

    def _merge_specials(self, tokens: list[str]) -> list[str]:
        """Replace the runs of words that spell a special case (``z`` ``.`` ``B.`` -> ``z.`` ``B.``,
        ``)`` ``:`` -> the emoticon ``):``), longest run first."""
        patterns, out, i, n = self._patterns, [], 0, len(tokens)
        while i < n:
            for j in range(min(n, i + self._max_pattern), i + 1, -1):
                hit = patterns.get(tuple(tokens[i:j]))
                if hit is not None:
                    out.extend(hit)
                    i = j
                    break
            else:
                out.append(tokens[i])
                i += 1
        return out


def _special_cases() -> dict[str, tuple[str, ...]]:
    """English exceptions of the tokenizer: chunks kept whole or split at fixed places."""
    exc: dict[str, tuple[str, ...]] = {}

    def add(base: str, *parts: str, title: bool = True):
        for b in ([base, base.title()] if title else [base]):
            exc[b + "".join(parts)] = (b,) + parts

    for pron in ["i", "you", "he", "she", "it", "we", "they"]:
        for a in ("'", ""):
            add(pron, a + "ll")
            add(pron, a + "ll", a + "ve")
            add(pron, a + "d")
            add(pron, a + "d", a + "ve")
            if pron == "i":
                add(pron, a + "m")
                add(pron, a + "ma")
            if pron in ("i", "you", "we", "they"):
                add(pron, a + "ve")
            if pron in ("you", "we", "they"):
                add(pron, a + "re")
            if pron in ("he", "she", "it"):
                add(pron, a + "s")
    for w in ["who", "what", "when", "where", "why", "how", "there", "that", "this", "these", "those"]:
        for a in ("'", ""):
            if w not in ("these", "those"):
                add(w, a + "s")
            add(w, a + "ll")
            add(w, a + "ll", a + "ve")
            if w not in ("that", "this"):
                add(w, a + "re")
                add(w, a + "ve")
            add(w, a + "d")
            add(w, a + "d", a + "ve")
    for verb in ["ca", "could", "do", "does", "did", "had", "may", "might", "must", "need", "ought", "sha",
                 "should", "wo", "would"]:
        for a in ("'", ""):
            add(verb, "n" + a + "t")
            add(verb, "n" + a + "t", a + "ve")
    for verb in ["could", "might", "must", "should", "would"]:
        for a in ("'", ""):
            add(verb, a + "ve")
    for verb in ["ai", "are", "is", "was", "were", "have", "has", "dare"]:
        for a in ("'", ""):
            add(verb, "n" + a + "t")
    add("can", "not")
    add("gon", "na")
    add("got", "ta")
    for a in ("'", ""):
        add("not", a + "ve")
        add("y" + a, "all", title=False)
    add("c'm", "on")
    add("let", "'s")
    add("how", "'d", "'y")
    for u in "cfkCFK":  # a temperature: degree sign, unit, period
        exc[f"°{u}."] = ("°", u, ".")
    for h in range(1, 13):
        for p in ("a.m.", "am", "p.m.", "pm"):
            exc[f"{h}{p}"] = (str(h), p)
    # kept whole: abbreviations, single letters with a period, emoticons and a few others
    whole = """a.m. p.m. e.g. E.g. E.G. i.e. I.e. I.E. vs. v.s. co. Co. Corp. Inc. Ltd. Bros. Jr. Messrs.
        Mr. Mrs. Ms. Dr. Prof. Rev. Gen. Gov. Sen. Rep. Adm. St. Mt. Ph.D. D.C. Jan. Feb. Mar. Apr. Jun.
        Jul. Aug. Sep. Sept. Oct. Nov. Dec. Ak. Ala. Ariz. Ark. Calif. Colo. Conn. Del. Fla. Ga. Ia. Id.
        Ill. Ind. Kan. Kans. Ky. La. Mass. Md. Mich. Minn. Miss. Mo. Mont. N.C. N.D. N.H. N.J. N.M. N.Y.
        Neb. Nebr. Nev. Okla. Ore. Pa. S.C. Tenn. Va. Wash. Wis. ä. ö. ü. C++ '' ' — w/o and/or 's 'S 'd 'll 're
        'em 'bout 'nuff 'cause 'cos 'coz 'cuz 'Cause 'Cos 'Coz 'Cuz ol' Ol' ma'am Ma'am o'clock O'clock em ll
        nuff ol Ol doin goin havin lovin nothin nuthin somethin Doin Goin Havin Lovin Nothin Nuthin Somethin
        doin' goin' havin' lovin' nothin' nuthin' somethin' Doin' Goin' Havin' Lovin' Nothin' Nuthin' Somethin'
        ‘s ‘S""".split()
    # emoticons
    whole += r""":) :-) :)) :-)) :))) :-))) (: (-: =) (= :] :-] [: [-: [= =] :o) (o: :} :-} 8) 8-) (-8 ;)
        ;-) (; (-; :( :-( :(( :-(( :((( :-((( ): )-: =( >:( :') :'-) :'( :'-( :/ :-/ =/ =| :| :-| ]= =[ :1
        :P :-P :p :-p :O :-O :o :-o :0 :-0 :() >:o :* :-* :3 :-3 =3 :> :-> :X :-X :x :-x :D :-D ;D ;-D =D
        xD XD xDD XDD 8D 8-D ^_^ ^__^ ^___^ >.< >.> <.< ._. ;_; -_- -__- v.v V.V v_v V_V o_o o_O O_o O_O
        0_o o_0 0_0 o.O O.o O.O o.o 0.0 o.0 0.o @_@ <3 <33 <333 </3 (^_^) (-_-) (._.) (>_<) (*_*) (¬_¬)
        ಠ_ಠ ಠ︵ಠ (ಠ_ಠ) ¯\(ツ)/¯ (╯°□°）╯︵┻━┻ ><(((*>""".split()
    whole += [chr(c) + "." for c in range(ord("a"), ord("z") + 1)]
    for w in whole:
        exc[w] = (w,)
    for w in ["ill", "its", "hell", "shell", "shed", "were", "well", "whore"]:
        exc.pop(w, None)
        exc.pop(w.title(), None)
    for k, v in list(exc.items()):  # typographic apostrophes take the same rules
        if "'" in k:
            exc.setdefault(k.replace("'", "’"), tuple(t.replace("'", "’") for t in v))
    return exc


# ----------------------------------------------------------------------------------------- words

_SPLITTER: WordSplitter | None = None
_MARK_SPECIALS: list[str] = []
_LOCK = threading.Lock()
# A chunk that is one word as it stands (unless a special case): letters (with their combining
# marks), or a number (ASCII digits, with . or , separators).
_SIMPLE_CHUNK_RE = r"^(?:[\p{L}\p{M}]+|[0-9]+(?:[.,][0-9]+)*)$"
# A chunk of letters, possibly hyphenated, with an opening and/or up to two closing punctuation
# marks: the marks and the hyphens are words of their own (a final period only after a lower-case
# or uncased letter, or after a closing mark). Groups: 1 opening mark, 2 hyphenated leading parts,
# 3 last part (4 its final period), 5 closing marks.
_OPENING = "([{\"'“‘”’«»„‚`´"
_CLOSING = ")]}\"'“”‘’«»,;:!?…"
_AFFIXED_CHUNK_RE = (
    r"^([" + _class(_OPENING) + r"]?)((?:\p{L}+-)*)([\p{L}\p{M}]*(?:[\p{L}\p{M}]|[\p{Ll}\p{Lo}\p{Lm}\p{M}](\.)))"
    r"((?:[" + _class(_CLOSING) + r"][" + _class(_CLOSING + ".") + r"]?)?)$"
)
# A number with a closing mark: two words.
_NUMBER_CHUNK_RE = r"^([0-9]+(?:[.,][0-9]+)*)([.,;:])$"


def splitter() -> WordSplitter:
    """The process-wide :class:`WordSplitter` (its memo of split chunks is shared by all stages)."""
    global _SPLITTER
    if _SPLITTER is None:
        with _LOCK:
            if _SPLITTER is None:
                ws = WordSplitter()
                ws.special_keys = pl.Series(list(ws.specials), dtype=pl.String)
                # special cases spelled by closing marks (plus "……", a suffix of its own)
                marks = set(_CLOSING + ".")
                _MARK_SPECIALS.extend(k for k in ws.specials if len(k) > 1 and set(k) <= marks)
                _MARK_SPECIALS.extend(["……", ".."])
                _SPLITTER = ws
    return _SPLITTER


class Words:
    """The words of a sequence of texts (a batch's documents or lines), as flat arrays.

    ``group``: index of the text of each word (ascending); ``ref``: index of each word in
    ``vocab``, the words of the batch's distinct chunks (a word occurring in several distinct
    chunks appears several times there). Per-word properties are computed once per ``vocab`` entry
    and gathered.
    """

    def __init__(self, group: np.ndarray, ref: np.ndarray, vocab: pl.Series, n_groups: int):
        self.group, self.ref, self.vocab, self.n_groups = group, ref, vocab, n_groups
        self.start = np.searchsorted(group, np.arange(n_groups + 1))  # words of text i: start[i]:start[i+1]
        self._memo: dict = {}

    def __len__(self):
        return len(self.group)

    def _get(self, key, fn):
        try:
            return self._memo[key]
        except KeyError:
            out = self._memo[key] = fn()
            return out

    def regrouped(self, group: np.ndarray, n_groups: int) -> "Words":
        """The same words, grouped differently (e.g. lines -> documents), sharing their properties."""
        out = Words(group, self.ref, self.vocab, n_groups)
        out._memo = self._memo  # per-word and per-vocabulary properties do not depend on the grouping
        return out

    def per_vocab(self, name: str, fn) -> np.ndarray:
        """``fn(vocab)`` (one value per vocabulary entry), memoized."""
        return self._get(("vocab", name), lambda: fn(self.vocab))

    def per_word(self, name: str, fn) -> np.ndarray:
        """``fn(vocab)`` gathered to every word."""
        return self._get(("word", name), lambda: self.per_vocab(name, fn)[self.ref])

    @property
    def length(self) -> np.ndarray:
        return self.per_word("length", lambda v: v.str.len_chars().to_numpy().astype(np.int64))

    @property
    def hash(self) -> np.ndarray:
        return self.per_word("hash", lambda v: v.hash(seed=7).to_numpy())

    def per_group(self, mask: np.ndarray | None = None, weights: np.ndarray | None = None) -> np.ndarray:
        group = self.group if mask is None else self.group[mask]
        w = None if weights is None else (weights if mask is None else weights[mask])
        out = np.bincount(group, weights=w, minlength=self.n_groups)
        return out if weights is not None else out.astype(np.int64)


def _expand(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenated ranges ``starts[i] : starts[i] + counts[i]``."""
    ends = np.cumsum(counts)
    return np.arange(ends[-1] if len(ends) else 0) - np.repeat(ends - counts - starts, counts)


def tokenize(texts: pl.Series) -> Words:
    """The words of every text, in order.

    Chunks (runs of non-whitespace) are found with one regex pass over the batch and identified by
    hash. Each *distinct* chunk is split once: a run of letters or a number is one word; a plain or
    hyphenated word with an opening and/or closing punctuation marks, or a number with a closing
    mark, is split with a regex (vectorized); only the rest (about 10% of the distinct chunks of
    web text) go through the Python :class:`WordSplitter`, memoized across batches, whose rules
    (special cases, repeated prefix/suffix peeling, URL check, infix cuts) are sequential per chunk
    and do not map onto one regex.
    """
    n = len(texts)
    ch = (
        pl.DataFrame({"t": texts})
        .with_row_index("g")
        .select("g", pl.col("t").str.extract_all(CHUNK_RE))
        .explode("t")
        .drop_nulls("t")
    )
    group = ch.get_column("g").to_numpy().astype(np.int64)
    chunk = ch.get_column("t")
    if not len(chunk):
        return Words(group, np.zeros(0, dtype=np.int64), pl.Series([], dtype=pl.String), n)
    h = chunk.hash(seed=11)
    first = h.is_first_distinct()
    distinct, dh = chunk.filter(first), h.filter(first)
    cid = h.replace_strict(dh, pl.Series(np.arange(len(dh), dtype=np.int64)), return_dtype=pl.Int64).to_numpy()

    ws = splitter()
    keys = ws.special_keys.implode()
    counts = np.ones(len(distinct), dtype=np.int64)  # words per distinct chunk
    pieces = []  # (distinct chunk indices, their words as a list Series)
    other_idx = np.flatnonzero((~distinct.str.contains(_SIMPLE_CHUNK_RE) | distinct.is_in(keys)).to_numpy())
    if len(other_idx):
        other = distinct.gather(other_idx)
        # punctuation around a plain (or hyphenated) word, or after a number: split vectorized
        affixed, lists = _split_affixed(other, keys)
        if affixed.any():
            pieces.append((other_idx[affixed], lists))
        # everything else: the Python splitter
        hard_idx = other_idx[~affixed]
        if len(hard_idx):
            split = [ws(c) for c in other.gather(np.flatnonzero(~affixed)).to_list()]
            offsets = np.zeros(len(split) + 1, dtype=np.int64)
            np.cumsum(np.fromiter(map(len, split), dtype=np.int64, count=len(split)), out=offsets[1:])
            flat = pa.array(list(itertools.chain.from_iterable(split)), type=pa.large_string())
            pieces.append((hard_idx, pl.from_arrow(pa.LargeListArray.from_arrays(pa.array(offsets), flat))))
    # the vocabulary: the words of each distinct chunk, in chunk order
    for idx, lists in pieces:
        counts[idx] = lists.list.len().to_numpy()
    voff = np.concatenate(([0], np.cumsum(counts)))
    source = [distinct]
    gather = np.empty(voff[-1], dtype=np.int64)
    single = np.ones(len(distinct), dtype=bool)
    base = len(distinct)
    for idx, lists in pieces:
        single[idx] = False
        flat = lists.explode()
        gather[_expand(voff[idx], counts[idx])] = base + np.arange(len(flat))
        source.append(flat)
        base += len(flat)
    gather[voff[:-1][single]] = np.flatnonzero(single)
    vocab = pl.concat(source).gather(gather) if pieces else distinct
    # every occurrence of a chunk: its words
    occ_counts = counts[cid]
    return Words(np.repeat(group, occ_counts), _expand(voff[cid], occ_counts), vocab, n)


def _split_affixed(chunks: pl.Series, keys: pl.Series) -> tuple[np.ndarray, pl.Series]:
    """(mask, words of the masked chunks) for the chunks of the two simple affixed forms above,
    unless a special case is involved (the tokenizer stops peeling marks off at a special case, and
    merges marks that spell one, such as ``''`` or ``):``)."""
    word_form = chunks.str.contains(_AFFIXED_CHUNK_RE).to_numpy()
    mask = chunks.str.contains(_NUMBER_CHUNK_RE).to_numpy() & ~word_form
    if word_form.any():
        idx = np.flatnonzero(word_form)
        sub = chunks.gather(idx)
        parts = sub.str.extract_groups(_AFFIXED_CHUNK_RE).struct.unnest()
        g = {k: parts.get_column(str(k)) for k in (1, 2, 3, 5)}
        ok = ~g[3].str.strip_suffix(".").is_in(keys)
        # neither what is left after peeling marks off, nor the last part with its marks, is a
        # special case
        for left in (g[1] + g[2] + g[3], g[2] + g[3], g[3]):
            for k in range(3):
                ok &= ~(left + (g[5].str.slice(0, k) if k < 2 else g[5])).is_in(keys)
        ok &= ~g[5].str.contains_any(_MARK_SPECIALS)
        ok &= ~(parts.get_column("4").is_not_null() & g[5].str.starts_with("."))
        ok &= ~((g[2] != "") & g[3].str.contains(r"^\p{M}"))  # a hyphen splits only before a letter
        mask[idx] = ok.to_numpy()
    mask &= ~chunks.is_in(keys).to_numpy()
    if not mask.any():
        return mask, pl.Series([], dtype=pl.List(pl.String))
    # in these forms the words are: the number, the runs of letters, and every other character
    return mask, chunks.filter(pl.Series(mask)).str.extract_all(r"[0-9]+(?:[.,][0-9]+)*|[\p{L}\p{M}]+|.")


def sentence_counts(texts: pl.Series) -> np.ndarray:
    """Sentences per text as spaCy's rule-based sentencizer counts them (blank English pipeline)."""
    return count_sentences(tokenize(texts))


def count_sentences(words: Words, mask: np.ndarray | None = None) -> np.ndarray:
    """Sentences per text of ``words`` (only the words where ``mask``, if given).

    A sentence ends after a word that is a sentence-final character (``.``, ``!``, ``?``...); the
    next one starts at the first following word that is not punctuation. So a text has 1 + (number
    of words that are not punctuation and follow a sentence end) sentences (0 without words).
    """
    final = words.per_word("sentence_final", lambda v: v.is_in(_SENTENCE_PUNCTUATION_LIST).to_numpy())
    punct = words.per_word("punctuation", lambda v: v.str.contains(r"^\p{P}+$").to_numpy()) | final
    group = words.group
    if mask is not None:
        group, final, punct = group[mask], final[mask], punct[mask]
    n = words.n_groups
    if len(group) == 0:
        return np.zeros(n, dtype=np.int64)
    decisive = final | ~punct  # words that set the state: a sentence end (True) or a plain word (False)
    idx = np.arange(len(group))
    last = np.maximum.accumulate(np.where(decisive, idx, -1))
    prev = np.concatenate(([-1], last[:-1]))  # the last decisive word before each word
    prev_ok = prev >= 0
    prev_ok[prev_ok] = group[prev[prev_ok]] == group[prev_ok]
    starts = ~punct & prev_ok & final[np.maximum(prev, 0)]
    n_words = np.bincount(group, minlength=n)
    return np.where(n_words > 0, 1 + np.bincount(group[starts], minlength=n), 0).astype(np.int64)


_SENTENCE_PUNCTUATION_LIST = pl.Series(list(SENTENCE_PUNCTUATION)).implode()


# ------------------------------------------------------------------------------ per-batch analysis

class TextStats:
    """Lazily computed, memoized statistics of one text array (one batch)."""

    def __init__(self, text: pa.Array, ids: pa.Array | None = None):
        self.text, self.ids = text, ids
        self.n = len(text)
        self.parent = None  # (TextStats, keep mask): this batch is that one after a filter
        self.reused_words = False  # the words were taken from the parent
        self._memo: dict = {}

    def memo(self, key, fn):
        """``fn()`` computed once per batch under ``key`` (rule sets add their own views this way)."""
        try:
            return self._memo[key]
        except KeyError:
            out = self._memo[key] = fn()
            return out

    @property
    def series(self) -> pl.Series:
        return self.memo("series", lambda: pl.from_arrow(self.text).fill_null(""))

    @property
    def n_chars(self) -> np.ndarray:
        return self.memo("n_chars", lambda: _np(pc.utf8_length(self.text)))

    def count(self, sub: str) -> np.ndarray:
        """Non-overlapping occurrences of ``sub`` per document (``str.count``)."""
        return self.memo(("count", sub), lambda: self.series.str.count_matches(sub, literal=True).to_numpy().astype(np.int64))

    @property
    def line_words(self) -> Words:
        """The words of every line of ``lines("splitlines")`` (grouped by line). Line breaks are
        whitespace, so a document's words are its lines' words, in order."""

        def make():
            if self.parent is None:
                return tokenize(self.lines("splitlines")[1])
            parent, keep = self.parent
            self.parent, self.reused_words = None, True  # do not hold on to the parent batch any longer
            line_keep = keep[parent.lines("splitlines")[0]]
            new_index = np.cumsum(line_keep) - 1
            words = parent.line_words
            word_keep = line_keep[words.group]
            out = Words(new_index[words.group[word_keep]], words.ref[word_keep], words.vocab, int(line_keep.sum()))
            out._memo = {k: v for k, v in words._memo.items() if k[0] == "vocab"}
            return out

        return self.memo("line_words", make)

    @property
    def words(self) -> Words:
        """The words of every document (grouped by document)."""
        return self.memo("words", lambda: self.line_words.regrouped(self.lines("splitlines")[0][self.line_words.group], self.n))

    @property
    def word_counts(self) -> dict[str, np.ndarray]:
        """Per document: ``words`` (all), ``alpha`` (with a letter), ``non_symbol`` (with a character
        that is not a symbol) and ``non_symbol_chars`` (their total length)."""

        def make():
            w = self.words
            alpha = w.per_word("alpha", lambda v: v.str.contains(r"\p{L}").to_numpy())
            non_symbol = w.per_word("non_symbol", lambda v: v.str.contains(_NON_SYMBOL_RE).to_numpy())
            return {
                "words": w.per_group(),
                "alpha": w.per_group(alpha),
                "non_symbol": w.per_group(non_symbol),
                "non_symbol_chars": w.per_group(non_symbol, w.length.astype(np.float64)).astype(np.int64),
            }

        return self.memo("word_counts", make)

    def distinct_words_in(self, vocabulary: tuple[str, ...]) -> np.ndarray:
        """Per document: how many distinct words of ``vocabulary`` occur (case-sensitive)."""

        vocabulary = tuple(dict.fromkeys(vocabulary))

        def make():
            w = self.words
            if not vocabulary:
                return np.zeros(self.n, dtype=np.int64)
            which = w.per_word(("in", vocabulary), lambda v: v.replace_strict(
                list(vocabulary), list(range(len(vocabulary))), default=-1, return_dtype=pl.Int64).to_numpy())
            hit = which >= 0
            pairs = np.unique(w.group[hit] * len(vocabulary) + which[hit])
            return np.bincount(pairs // len(vocabulary), minlength=self.n).astype(np.int64)

        return self.memo(("distinct_words_in", vocabulary), make)

    # ---- lines and paragraphs

    def lines(self, how: str) -> tuple[np.ndarray, pl.Series]:
        """(document index, line) for every line of every document, flat.

        ``splitlines``: ``str.splitlines()``; ``newline``: ``str.split("\\n")``; ``newline_nonblank``:
        the same without whitespace-only lines; ``newlines``: ``re.split("\\n+")``; ``paragraphs``:
        ``re.split("\\n{2,}", text.strip())``.
        """
        return self.memo(("lines", how), lambda: self._lines(how))

    def _lines(self, how: str):
        text = self.text
        if how == "splitlines":
            parts = pc.split_pattern_regex(text, _ARROW_LINE_BREAKS)
            # splitlines() yields no empty line after a final line break (and none for "")
            ends = _np(pc.match_substring_regex(text, "(?:" + _ARROW_LINE_BREAKS + ")$")) | (self.n_chars == 0)
        elif how in ("newline", "newline_nonblank"):
            parts, ends = pc.split_pattern(text, "\n"), None
        elif how == "newlines":
            parts, ends = pc.split_pattern_regex(text, "\n+"), None
        elif how == "paragraphs":
            stripped = self.series.str.strip_chars(WHITESPACE).to_arrow()
            parts, ends = pc.split_pattern_regex(stripped, "\n{2,}"), None
        else:
            raise ValueError(f"unknown line split {how!r}")
        if isinstance(parts, pa.ChunkedArray):
            parts = parts.combine_chunks()
        doc = _np(pc.list_parent_indices(parts)).astype(np.int64)
        lines = pl.from_arrow(parts.flatten())
        keep = None
        if ends is not None and ends.any():
            offsets = _np(parts.offsets)
            last = offsets[1:] - 1 - offsets[0]
            keep = np.ones(len(doc), dtype=bool)
            keep[last[ends & (offsets[1:] > offsets[:-1])]] = False
        if how == "newline_nonblank":
            nonblank = (lines.str.strip_chars(WHITESPACE).str.len_bytes() > 0).to_numpy()
            keep = nonblank if keep is None else keep & nonblank
        if keep is not None:
            doc, lines = doc[keep], lines.filter(pl.Series(keep))
        return doc, lines

    def duplicates(self, how: str) -> dict[str, np.ndarray]:
        """Per document, over its lines (see :meth:`lines`): ``units`` (how many), ``dup`` (how many
        equal an earlier one of the same document) and ``dup_chars`` (their total length)."""

        def make():
            doc, lines = self.lines(how)
            first = pl.DataFrame({"d": doc, "l": lines}).select(pl.struct("d", "l").is_first_distinct()).to_series().to_numpy()
            dup = ~first
            length = lines.str.len_chars().to_numpy().astype(np.float64)
            return {
                "units": np.bincount(doc, minlength=self.n).astype(np.int64),
                "dup": np.bincount(doc[dup], minlength=self.n).astype(np.int64),
                "dup_chars": np.bincount(doc[dup], weights=length[dup], minlength=self.n).astype(np.int64),
            }

        return self.memo(("duplicates", how), make)

    # ---- word n-grams

    def _repeated(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Word positions (ascending) where an n-gram starts that occurs at least twice in its
        document, with the n-gram keys (64-bit rolling hashes of the words, salted with the
        document). A repeated n-gram is a repeated (n-1)-gram followed by another repeated
        (n-1)-gram, so each size only hashes the previous size's survivors."""

        def make():
            w = self.words
            m = len(w)
            salt = np.uint64(0xC2B2AE3D27D4EB4F)
            if n == 1:
                pos = np.arange(m)
                key = w.hash ^ (w.group.astype(np.uint64) * salt)
            elif n == 2:  # from all word pairs (filtering by repeated words first does not pay)
                pos = np.flatnonzero(w.group[1:] == w.group[:-1]) if m > 1 else np.zeros(0, dtype=np.int64)
                key = (w.hash[pos] ^ (w.group[pos].astype(np.uint64) * salt)) * _MULT + w.hash[pos + 1]
            else:
                prev, prev_key = self._repeated(n - 1)
                follows = np.zeros(m + 1, dtype=bool)
                follows[prev] = True
                ok = follows[prev + 1] & (prev + n - 1 < m)
                ok[ok] = w.group[prev[ok] + n - 1] == w.group[prev[ok]]
                pos = prev[ok]
                key = prev_key[ok] * _MULT + w.hash[pos + n - 1]
            if not len(pos):
                return pos, key
            rep = pl.Series(key, dtype=pl.UInt64).is_duplicated().to_numpy()
            return pos[rep], key[rep]

        return self.memo(("repeated", n), make)

    def _ngram_chars(self, pos: np.ndarray, n: int) -> np.ndarray:
        """Characters of the words of the n-grams starting at ``pos`` (spaces not counted)."""
        csum = self.memo("word_csum", lambda: np.concatenate(([0], np.cumsum(self.words.length))))
        return csum[pos + n] - csum[pos]

    def top_ngram_chars(self, n: int) -> np.ndarray:
        """Per document: characters covered by its most frequent word n-gram (the n-gram joined with
        spaces, times its count; the earliest n-gram wins ties); 0 without any n-gram."""

        def make():
            w = self.words
            out = np.zeros(self.n, dtype=np.int64)
            has = np.flatnonzero(np.diff(w.start) >= n)
            if not len(has):
                return out
            first = w.start[has]  # without a repeated n-gram: the document's first n-gram, once
            out[has] = self._ngram_chars(first, n) + n - 1
            pos, key = self._repeated(n)
            if len(pos):
                agg = pl.DataFrame({"k": key, "p": pos}).group_by("k").agg(pl.len().alias("c"), pl.col("p").min())
                p = agg.get_column("p").to_numpy()
                c = agg.get_column("c").to_numpy().astype(np.int64)
                d = w.group[p]
                order = np.lexsort((p, -c, d))  # per document: highest count, then earliest
                d, p, c = d[order], p[order], c[order]
                head = np.concatenate(([True], d[1:] != d[:-1]))
                out[d[head]] = c[head] * (self._ngram_chars(p[head], n) + n - 1)
            return out

        return self.memo(("top_ngram", n), make)

    def dup_ngram_chars(self, n: int) -> np.ndarray:
        """Per document: characters of the words in duplicated n-grams, counted the Gopher way: scan
        the n-grams left to right; one seen before adds its characters and the scan jumps past it
        (the n-grams it jumps over are not remembered)."""

        def make():
            out = np.zeros(self.n, dtype=np.int64)
            pos, key = self._repeated(n)
            if not len(pos):
                return out
            f = pl.DataFrame({"k": key, "p": pos}).select(pl.col("p").min().over("k")).to_series().to_numpy()
            later = pos != f
            p, f = pos[later], f[later]
            # The scan is sequential (a counted duplicate hides the next n-1 positions, which
            # changes what later positions see), so it runs in Python, but only over the positions
            # whose n-gram occurred before, which are few outside of repetitive documents.
            _dup_scan(self.words.group[p].tolist(), p.tolist(), f.tolist(), self._ngram_chars(p, n).tolist(), n, out)
            return out

        return self.memo(("dup_ngram", n), make)


_MULT = np.uint64(0x9E3779B97F4A7C15)


def _dup_scan(docs, pos, first, lengths, n, out):
    cur, skip_until, starts, ends, seen, total = -1, -1, [], [], set(), 0
    for d, c, f, length in zip(docs, pos, first, lengths):
        if d != cur:
            if cur >= 0:
                out[cur] = total
            cur, skip_until, starts, ends, seen, total = d, -1, [], [], set(), 0
        if c < skip_until:
            continue  # jumped over
        i = bisect.bisect_right(starts, f) - 1
        first_jumped = i >= 0 and f < ends[i]
        if not first_jumped or f in seen:
            total += length
            starts.append(c + 1)
            ends.append(c + n)
            skip_until = c + n
        else:
            seen.add(f)  # its first occurrence was jumped over: this one is new
    if cur >= 0:
        out[cur] = total


def _np(arr) -> np.ndarray:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr.to_numpy(zero_copy_only=False)


# ------------------------------------------------------------------------------------ the cache

_CACHE: OrderedDict = OrderedDict()
_CACHE_SIZE = 3  # batches whose analysis is kept
_CACHE_BYTES = 96 << 20  # ... as long as their text stays under this (the latest one is always kept)


def analyze(text, ids=None) -> TextStats:
    """The :class:`TextStats` of a text array, shared by every stage that sees the same array.

    Keyed by the array's buffers (addresses, offset, length); the entry holds the array, so the
    buffers cannot be freed and reused by another batch while it is cached. When ``ids`` (the
    batch's document ids) are given and the batch is what is left of a cached batch after a
    filter dropped some documents (same ids in the same order, same texts), its words are taken
    from the cached batch instead of being split again.
    """
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    key = (str(text.type), text.offset, len(text)) + tuple(b.address if b is not None else 0 for b in text.buffers())
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
        candidates = list(reversed(_CACHE.values()))
    stats = TextStats(text, ids)
    if ids is not None and len(text):
        stats.parent = _find_parent(stats, candidates)
    with _LOCK:
        _CACHE[key] = stats
        size = sum(s.text.nbytes for s in _CACHE.values())
        while len(_CACHE) > 1 and (len(_CACHE) > _CACHE_SIZE or size > _CACHE_BYTES):
            size -= _CACHE.popitem(last=False)[1].text.nbytes
    return stats


def _find_parent(stats: TextStats, candidates: list[TextStats]):
    """(cached stats, keep mask) of which ``stats``' batch is a filtered subset, or None."""
    new_ids = pl.from_arrow(stats.ids)
    for old in candidates:
        if old.ids is None or old.n <= stats.n or "line_words" not in old._memo:
            continue
        old_ids = pl.from_arrow(old.ids)
        keep = old_ids.is_in(new_ids.implode()).fill_null(False).to_numpy()
        if keep.sum() != stats.n or not old_ids.filter(pl.Series(keep)).equals(new_ids):
            continue
        if not pc.all(pc.equal(old.text.filter(pa.array(keep)), stats.text)).as_py():
            continue
        return old, keep
    return None


# --------------------------------------------------------------------------------- rule helpers


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` as float64; 0 where both are 0, inf where only ``den`` is 0."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = num / den
    out[(den == 0) & (num == 0)] = 0.0
    return out


def column(values: np.ndarray) -> pa.Array:
    return pa.array(values)


def scores_np(scores: dict, name: str) -> np.ndarray:
    return _np(scores[name])


def first_failure(n: int, checks) -> tuple[np.ndarray, np.ndarray]:
    """(keep mask, reasons) from ``(failed mask or None, reason)`` checks in order: a document
    takes the reason of the first check it fails."""
    reasons = np.full(n, None, dtype=object)
    for bad, why in checks:
        if bad is not None:
            reasons[np.asarray(bad, dtype=bool) & (reasons == None)] = why  # noqa: E711
    return reasons == None, reasons  # noqa: E711


def below(values: np.ndarray, threshold) -> np.ndarray | None:
    """Failed mask of a minimum (None: the check is off)."""
    return None if threshold is None else values < threshold


def above(values: np.ndarray, threshold) -> np.ndarray | None:
    """Failed mask of a maximum (None: the check is off)."""
    return None if threshold is None else values > threshold


def analyze_batch(batch: pa.RecordBatch) -> TextStats:
    """:func:`analyze` of a batch's text, with its ids when it has an ``id`` column."""
    from curate.schema import ID, TEXT

    names = batch.schema.names
    return analyze(batch.column(TEXT), batch.column(ID) if ID in names else None)
