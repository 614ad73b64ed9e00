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

Sharing is explicit: an :class:`Analysis` is made per call (per batch) and handed to the rule
sets (:class:`RuleSet`), which ``Analysis.run`` serves in one pass; the ``web_quality`` stage runs
several rule sets on one analysis. Nothing is cached across calls, so concurrent bundles on a
multi-threaded worker never see each other's analysis (only the word splitter's memo of split
chunks, keyed by the chunk's text, is process-wide).

Memory is bounded by the text analyzed at once, not by the batch or the document: a batch is
analyzed a slice of whole documents at a time (a :class:`TextStats` per slice, views computed
lazily and cached on it), and a document longer than a slice in pieces cut after a newline, whose
counts add up; the statistics of such a document that are not sums (duplicate lines and
paragraphs, n-grams, distinct words) are computed from compact data (:func:`doc_duplicates`,
:class:`WordTable`, :func:`ngram_stats`), with the same results.
"""
from __future__ import annotations

import itertools
import re
import threading
import unicodedata

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from curate import pieces

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


# ------------------------------------------------------------------------------ per-slice analysis

class TextStats:
    """Lazily computed, memoized statistics of one text array: a *slice* of a batch (whole
    documents, or one piece of a document cut at a line break, see :class:`Analysis`). It lives for
    one call and is never shared across calls or threads."""

    def __init__(self, text: pa.Array):
        if isinstance(text, pa.ChunkedArray):
            text = text.chunk(0) if text.num_chunks == 1 else text.combine_chunks()  # one chunk: no copy
        self.text = text
        self.n = len(text)
        self._memo: dict = {}

    def memo(self, key, fn):
        """``fn()`` computed once per slice under ``key`` (rule sets add their own views this way)."""
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
        return self.memo("n_chars", lambda: _np(pc.fill_null(pc.utf8_length(self.text), 0)).astype(np.int64))

    def count(self, sub: str) -> np.ndarray:
        """Non-overlapping occurrences of ``sub`` per document (``str.count``)."""
        return self.memo(("count", sub), lambda: self.series.str.count_matches(sub, literal=True).to_numpy().astype(np.int64))

    @property
    def line_words(self) -> Words:
        """The words of every line of ``lines("splitlines")`` (grouped by line). Line breaks are
        whitespace, so a document's words are its lines' words, in order."""
        return self.memo("line_words", lambda: tokenize(self.lines("splitlines")[1]))

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

    def words_present(self, vocabulary: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """The distinct (document, index in ``vocabulary``) pairs of the words of ``vocabulary`` that
        occur (case-sensitive), as two arrays."""
        vocabulary = tuple(dict.fromkeys(vocabulary))

        def make():
            w = self.words
            if not vocabulary:
                return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
            which = w.per_word(("in", vocabulary), lambda v: v.replace_strict(
                list(vocabulary), list(range(len(vocabulary))), default=-1, return_dtype=pl.Int64).to_numpy())
            hit = which >= 0
            pairs = np.unique(w.group[hit] * len(vocabulary) + which[hit])
            return pairs // len(vocabulary), pairs % len(vocabulary)

        return self.memo(("words_present", vocabulary), make)

    def distinct_words_in(self, vocabulary: tuple[str, ...]) -> np.ndarray:
        """Per document: how many distinct words of ``vocabulary`` occur (case-sensitive)."""
        return np.bincount(self.words_present(vocabulary)[0], minlength=self.n).astype(np.int64)

    def word_refs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(index of every word in the vocabulary, in order; hash and length of each vocabulary
        entry): what the n-gram statistics of a document cut into pieces are computed from (see
        :class:`WordTable` and :func:`ngram_stats`)."""
        w = self.words
        return (w.ref, w.per_vocab("hash", lambda v: v.hash(seed=7).to_numpy()),
                w.per_vocab("length", lambda v: v.str.len_chars().to_numpy().astype(np.int64)))

    # ---- lines and paragraphs

    def lines(self, how: str) -> tuple[np.ndarray, pl.Series]:
        """(document index, line) for every line of every document, flat.

        ``splitlines``: ``str.splitlines()``; ``newline``: ``str.split("\\n")``; ``newline_nonblank``:
        the same without whitespace-only lines; ``newlines``: ``re.split("\\n+")``; ``paragraphs``:
        ``re.split("\\n{2,}", text.strip())``.
        """
        return self.memo(("lines", how), lambda: _split_lines(self.text, how, self.series))

    def duplicates(self, how: str) -> dict[str, np.ndarray]:
        """Per document, over its lines (see :meth:`lines`): ``units`` (how many), ``dup`` (how many
        equal an earlier one of the same document) and ``dup_chars`` (their total length)."""
        return self.memo(("duplicates", how), lambda: _duplicates(*self.lines(how), self.n))

    # ---- word n-grams

    def _repeated(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Word positions (ascending) where an n-gram starts that occurs at least twice in its
        document, with the n-gram keys (64-bit rolling hashes of the words, salted with the
        document). A repeated n-gram is a repeated (n-1)-gram followed by another repeated
        (n-1)-gram, so each size only hashes the previous size's survivors."""

        def make():
            w = self.words
            m = len(w)
            if n == 1:
                pos = np.arange(m)
                key = w.hash ^ (w.group.astype(np.uint64) * _SALT)
            elif n == 2:  # from all word pairs (filtering by repeated words first does not pay)
                pos = np.flatnonzero(w.group[1:] == w.group[:-1]) if m > 1 else np.zeros(0, dtype=np.int64)
                key = (w.hash[pos] ^ (w.group[pos].astype(np.uint64) * _SALT)) * _MULT + w.hash[pos + 1]
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
            scan = _DupScan(len(self.words), n)
            scan.feed(self.words.group[p], p, f, self._ngram_chars(p, n))
            for d, t in scan.totals.items():
                out[d] = t
            return out

        return self.memo(("dup_ngram", n), make)


_MULT = np.uint64(0x9E3779B97F4A7C15)
_SALT = np.uint64(0xC2B2AE3D27D4EB4F)
_M64 = (1 << 64) - 1


def _split_lines(text: pa.Array, how: str, series: pl.Series | None = None) -> tuple[np.ndarray, pl.Series]:
    """(document index, line) for every line of every text of ``text`` (see :meth:`TextStats.lines`)."""
    if how == "splitlines":
        parts = pc.split_pattern_regex(text, _ARROW_LINE_BREAKS)
        # splitlines() yields no empty line after a final line break (and none for "")
        ends = _np(pc.match_substring_regex(text, "(?:" + _ARROW_LINE_BREAKS + ")$")) | (_np(pc.fill_null(pc.binary_length(text), 0)) == 0)
    elif how in ("newline", "newline_nonblank"):
        parts, ends = pc.split_pattern(text, "\n"), None
    elif how == "newlines":
        parts, ends = pc.split_pattern_regex(text, "\n+"), None
    elif how == "paragraphs":
        if series is None:
            series = pl.from_arrow(text).fill_null("")
        stripped = series.str.strip_chars(WHITESPACE).to_arrow()
        parts, ends = pc.split_pattern_regex(stripped, "\n{2,}"), None
        del stripped
    else:
        raise ValueError(f"unknown line split {how!r}")
    if isinstance(parts, pa.ChunkedArray):
        parts = parts.chunk(0) if parts.num_chunks == 1 else parts.combine_chunks()  # one chunk: no copy
    doc = _np(pc.list_parent_indices(parts)).astype(np.int64)
    lines = pl.from_arrow(parts.flatten())
    keep = None
    if ends is not None and ends.any():
        offsets = _np(parts.offsets)
        last = offsets[1:] - 1 - offsets[0]
        keep = np.ones(len(doc), dtype=bool)
        keep[last[ends & (offsets[1:] > offsets[:-1])]] = False
    del parts
    if how == "newline_nonblank":
        nonblank = (lines.str.strip_chars(WHITESPACE).str.len_bytes() > 0).to_numpy()
        keep = nonblank if keep is None else keep & nonblank
    if keep is not None:
        doc, lines = doc[keep], lines.filter(pl.Series(keep))
    return doc, lines


def _duplicates(doc: np.ndarray, lines: pl.Series, n: int) -> dict[str, np.ndarray]:
    first = pl.DataFrame({"d": doc, "l": lines}).select(pl.struct("d", "l").is_first_distinct()).to_series().to_numpy()
    dup = ~first
    length = lines.filter(pl.Series(dup)).str.len_chars().to_numpy().astype(np.float64)
    return {
        "units": np.bincount(doc, minlength=n).astype(np.int64),
        "dup": np.bincount(doc[dup], minlength=n).astype(np.int64),
        "dup_chars": np.bincount(doc[dup], weights=length, minlength=n).astype(np.int64),
    }


_SCAN_CHUNK = 1 << 16


class _DupScan:
    """The Gopher duplicate n-gram scan, fed the positions (ascending word positions below ``m``)
    whose n-gram occurred before, with the position of its first occurrence, in order and in as
    many calls as convenient; ``totals``: the counted characters per document.

    The scan is sequential (a counted duplicate hides the next n-1 positions, which changes what
    later positions see), so it runs in Python, but only over these positions, which are few
    outside of repetitive documents, a chunk at a time (no Python list of all of them), with two
    byte masks over the word positions: ``jumped`` (hidden by a counted duplicate) and ``kept`` (a
    first occurrence that was jumped over while a later occurrence of its n-gram was remembered)."""

    def __init__(self, m: int, n: int):
        self.n = n
        self.jumped, self.kept = bytearray(m + n), bytearray(m + n)
        self.mark = b"\x01" * (n - 1)
        self.skip_until = -1
        self.totals: dict[int, int] = {}

    def feed(self, docs, pos, first, lengths):
        jumped, kept, mark, n, totals = self.jumped, self.kept, self.mark, self.n, self.totals
        skip_until = self.skip_until
        for a in range(0, len(pos), _SCAN_CHUNK):
            b = a + _SCAN_CHUNK
            for d, c, f, length in zip(docs[a:b].tolist(), pos[a:b].tolist(), first[a:b].tolist(), lengths[a:b].tolist()):
                if c < skip_until:
                    continue  # jumped over
                if not jumped[f] or kept[f]:
                    totals[d] = totals.get(d, 0) + length
                    jumped[c + 1 : c + n] = mark
                    skip_until = c + n
                else:
                    kept[f] = 1  # its first occurrence was jumped over: this one is new
        self.skip_until = skip_until


def _np(arr) -> np.ndarray:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.chunk(0) if arr.num_chunks == 1 else arr.combine_chunks()  # one chunk: no copy
    return arr.to_numpy(zero_copy_only=False)


# -------------------------------------------------------------- n-grams of a document cut into pieces

class WordTable:
    """The words of a document cut into pieces, as int32 ids into a table of distinct word hashes
    (with their lengths): 4 bytes per word instead of a hash and a length. Words are told apart by
    their 64-bit hash, as the n-gram keys do."""

    def __init__(self):
        self.hash = np.zeros(0, dtype=np.uint64)  # by id
        self.length = np.zeros(0, dtype=np.int32)  # by id
        self._sorted = np.zeros(0, dtype=np.uint64)  # the hashes, sorted
        self._sorted_id = np.zeros(0, dtype=np.int32)
        self._ids: list[np.ndarray] = []

    def add(self, ref: np.ndarray, vocab_hash: np.ndarray, vocab_length: np.ndarray):
        """Append the words of a piece (see :meth:`TextStats.word_refs`)."""
        uh, first, inv = np.unique(vocab_hash, return_index=True, return_inverse=True)
        at = np.searchsorted(self._sorted, uh)
        found = at < len(self._sorted)
        found[found] = self._sorted[at[found]] == uh[found]
        ids = np.empty(len(uh), dtype=np.int32)
        ids[found] = self._sorted_id[at[found]]
        new = np.flatnonzero(~found)
        if len(new):
            ids[new] = np.arange(len(self.hash), len(self.hash) + len(new), dtype=np.int32)
            self.hash = np.concatenate((self.hash, uh[new]))
            self.length = np.concatenate((self.length, vocab_length[first[new]].astype(np.int32)))
            order = np.argsort(self.hash, kind="stable")
            self._sorted, self._sorted_id = self.hash[order], order.astype(np.int32)
        self._ids.append(ids[inv.reshape(-1)[ref]])

    def ids(self) -> np.ndarray:
        """The id of every word, in order (the pieces' arrays are released as they are copied)."""
        return _concat_freeing(self._ids, np.int32)


_PART = 1 << 20  # n-grams grouped at once (memory: about 50 bytes each)
_CHUNK = 1 << 22  # word positions looked at once
_MIX = np.uint64(0xD6E8FEB86659FD93)


def _candidates(m: int, n: int, rep_prev):
    """Ascending chunks of the word positions where an n-gram may be repeated: every n-gram for
    n <= 2, else those where the (n-1)-grams at p and p+1 are both repeated."""
    last = m - n + 1  # n-grams start below this
    for a in range(0, max(last, 0), _CHUNK):
        b = min(a + _CHUNK, last)
        if rep_prev is None:
            yield np.arange(a, b, dtype=np.int64)
        else:
            yield np.flatnonzero(rep_prev[a:b] & rep_prev[a + 1 : b + 1]) + a


def _ngram_keys(ids: np.ndarray, hv: np.ndarray, pos: np.ndarray, n: int, salt: np.uint64) -> np.ndarray:
    """The keys of :meth:`TextStats._repeated` (rolling hashes of the word hashes ``hv[ids]``)."""
    key = hv[ids[pos]] ^ salt
    for j in range(1, n):
        key *= _MULT
        key += hv[ids[pos + j]]
    return key


def _top_bits(x: np.ndarray, bits: int) -> np.ndarray:
    return (x * _MIX) >> np.uint64(64 - bits)


def _groups(ids: np.ndarray, hv: np.ndarray, m: int, n: int, rep_prev, salt):
    """(positions, keys) of the candidate n-grams, in groups of about ``_PART`` that hold every
    occurrence of their n-grams: grouped by their first word's hash (a byte per word position
    says which group), and a group that is still too large (a frequent first word) by the n-gram
    keys, whose keys are then computed again per part."""
    if rep_prev is None:
        n_cand = max(m - n + 1, 0)
    else:
        n_cand = sum(len(c) for c in _candidates(m, n, rep_prev))
    bits = min(int(np.ceil(np.log2(n_cand / _PART))), 15) if n_cand > _PART else 0
    if bits:
        label = np.full(m, (1 << 16) - 1 if bits > 7 else 255, dtype=np.uint16 if bits > 7 else np.uint8)
        for c in _candidates(m, n, rep_prev):
            label[c] = _top_bits(hv[ids[c]], bits)
    for part in range(1 << bits):
        if bits:
            pos = np.concatenate([np.flatnonzero(label[a : a + _CHUNK] == part) + a for a in range(0, m, _CHUNK)])
        else:
            pos = np.concatenate(list(_candidates(m, n, rep_prev)) or [np.zeros(0, np.int64)])
        if len(pos) <= _PART + _PART // 2:
            if len(pos):
                yield pos, _ngram_keys(ids, hv, pos, n, salt)
            continue
        sub = int(np.ceil(np.log2(len(pos) / _PART)))
        for k in range(1 << sub):
            key = _ngram_keys(ids, hv, pos, n, salt)
            sel = np.flatnonzero(_top_bits(key, sub) == np.uint64(k))
            if len(sel):
                yield pos[sel], key[sel]
            del key, sel


def ngram_stats(ids: np.ndarray, hv: np.ndarray, lv: np.ndarray, group: int, top, dup) -> tuple[dict, dict]:
    """({n: top n-gram characters}, {n: duplicate n-gram characters}) of one document from its
    words (``ids`` into a :class:`WordTable` of hashes ``hv`` and lengths ``lv``): the values of
    :meth:`TextStats.top_ngram_chars` and :meth:`TextStats.dup_ngram_chars` (same keys, same
    rules), for a document too large to analyze at once (``group``: its index in the batch, which
    salts the keys).

    Memory: the ids, a bit and an int32 per word, and about ``_PART`` n-grams at a time (see
    :func:`_groups`); equal keys are found by sorting."""
    m = len(ids)
    top, dup = sorted(set(top)), sorted(set(dup))
    top_out, dup_out = {n: 0 for n in top}, {n: 0 for n in dup}
    want = set(top) | set(dup)
    if not want or m == 0:
        return top_out, dup_out
    salt = np.uint64((group * int(_SALT)) & _M64)
    rep_prev = None
    for n in range(1 if 1 in want else 2, max(want) + 1):
        if n > m:
            break
        rep = np.zeros(m + 1, dtype=bool) if (2 <= n < max(want)) else None
        first = np.full(m, -1, dtype=np.int32) if n in dup else None
        best = None  # (count, -position) of the most frequent n-gram
        for pos, key in _groups(ids, hv, m, n, rep_prev, salt):
            order = np.argsort(key)
            ks = key[order]
            del key
            ps = pos[order]
            del pos, order
            head = np.empty(len(ks), dtype=bool)
            head[0] = True
            np.not_equal(ks[1:], ks[:-1], out=head[1:])
            del ks
            starts = np.flatnonzero(head)
            counts = np.diff(np.append(starts, len(ps)))
            multi = np.flatnonzero(counts >= 2)
            if not len(multi):
                continue
            earliest = np.minimum.reduceat(ps, starts)  # of each n-gram
            if n in top_out:
                c, p = counts[multi], earliest[multi]
                i = np.lexsort((p, -c))[0]
                if best is None or (int(c[i]), -int(p[i])) > best:
                    best = (int(c[i]), -int(p[i]))
            if rep is not None or first is not None:
                run = np.cumsum(head, dtype=np.int32) - 1
                repeated = counts[run] >= 2
                if rep is not None:
                    rep[ps[repeated]] = True
                if first is not None:
                    first[ps[repeated]] = earliest[run[repeated]]
                del run, repeated
            del ps, head, starts, counts, earliest
        if n in top_out:
            if best is not None:
                p = -best[1]
                top_out[n] = best[0] * (int(lv[ids[p : p + n]].sum()) + n - 1)
            else:
                top_out[n] = int(lv[ids[:n]].sum()) + n - 1
        if first is not None:
            scan = _DupScan(m, n)
            for a in range(0, m, _SCAN_CHUNK * 16):
                p = np.flatnonzero(first[a : a + _SCAN_CHUNK * 16] >= 0) + a
                f = first[p].astype(np.int64)
                later = p != f
                p, f = p[later], f[later]
                if len(p):
                    chars = lv[ids[p]].astype(np.int64)
                    for j in range(1, n):
                        chars += lv[ids[p + j]]
                    scan.feed(np.zeros(len(p), dtype=np.int64), p, f, chars)
            dup_out[n] = scan.totals.get(0, 0)
            del first, scan
        rep_prev = rep
        pieces.release_memory()
    return top_out, dup_out


# ------------------------------------------------------------------------------------- the analysis

#: Text analyzed at once: a batch is analyzed in slices of whole documents of about this size, and
#: a longer document in pieces of about ``PIECE_BYTES`` cut after a line break (see :class:`Analysis`).
SLICE_BYTES = pieces.SLICE_BYTES
PIECE_BYTES = 1 << 20


class RuleSet:
    """What a heuristic rule set measures, in three parts, so that one :class:`Analysis` serves
    several rule sets in one pass over a batch (the ``web_quality`` stage) and bounds its memory:

    * :meth:`needs`: the per-document statistics that are not sums over lines or words (duplicate
      lines, n-grams, distinct words), as keys for :class:`Measures`;
    * :meth:`slice_sums`: per text of a :class:`TextStats` slice, the counts that add up over the
      pieces of a document (words, lines of a kind, characters...);
    * :meth:`columns`: the score columns, from the summed counts and the :class:`Measures`.
    """

    def needs(self) -> list[tuple]:
        return []

    def slice_sums(self, st: TextStats) -> dict[str, np.ndarray]:
        return {}

    def columns(self, sums: dict[str, np.ndarray], m: "Measures") -> dict[str, pa.Array]:
        raise NotImplementedError

    def score(self, batch: pa.RecordBatch, analysis: "Analysis | None" = None) -> dict[str, pa.Array]:
        """The score columns of ``batch``; ``analysis``: an :class:`Analysis` of the batch to use
        (one is made for this call otherwise)."""
        return (analysis if analysis is not None else Analysis.of(batch)).run([self])[0]


class Measures:
    """The per-document statistics named by :meth:`RuleSet.needs`, and the character counts."""

    def __init__(self, n: int, n_chars: np.ndarray):
        self.n, self.n_chars = n, n_chars
        self._v: dict = {}

    def _put(self, need, where, value):
        if need[0] == "duplicates":
            slot = self._v.setdefault(need, {k: np.zeros(self.n, dtype=np.int64) for k in ("units", "dup", "dup_chars")})
            for k in slot:
                slot[k][where] = value[k]
        else:
            self._v.setdefault(need, np.zeros(self.n, dtype=np.int64))[where] = value

    def duplicates(self, how: str) -> dict[str, np.ndarray]:
        return self._v[("duplicates", how)]

    def top_ngram_chars(self, n: int) -> np.ndarray:
        return self._v[("top_ngram", n)]

    def dup_ngram_chars(self, n: int) -> np.ndarray:
        return self._v[("dup_ngram", n)]

    def distinct_words_in(self, vocabulary) -> np.ndarray:
        return self._v[("distinct_words", tuple(dict.fromkeys(vocabulary)))]


def _measure(st: TextStats, need):
    kind = need[0]
    if kind == "duplicates":
        return st.duplicates(need[1])
    if kind == "top_ngram":
        return st.top_ngram_chars(need[1])
    if kind == "dup_ngram":
        return st.dup_ngram_chars(need[1])
    if kind == "distinct_words":
        return st.distinct_words_in(need[1])
    raise ValueError(f"unknown measure {need!r}")


def _add(sums: dict, values: dict, where, n: int):
    for k, v in values.items():
        v = np.asarray(v)
        acc = sums.get(k)
        if acc is None:
            acc = sums[k] = np.zeros(n, dtype=np.float64 if v.dtype.kind == "f" else np.int64)
        if isinstance(where, slice):
            acc[where] += v
        else:
            acc[where] += v.sum()


_BLANK_RE = "^[" + _class(WHITESPACE) + "]*$"


def doc_duplicates(doc: pa.Array, how: str) -> dict[str, int]:
    """:meth:`TextStats.duplicates` of a one-document array (``units``, ``dup``, ``dup_chars``),
    without copying its text: the units are byte ranges of the data buffer (found with numpy),
    compared by their 128-bit XXH3 hashes, measured by Arrow over a zero-copy array. For a
    document cut into pieces (lines and paragraphs may span the cuts)."""
    from curate.schema import hash_spans128

    off, data = pieces.offsets(doc)
    s, e = int(off[0]), int(off[1])
    if how == "paragraphs":
        s, e = _strip_bounds(data, s, e)
    nl = np.concatenate([np.flatnonzero(data[a : min(e, a + (1 << 24))] == 10) + a for a in range(s, e, 1 << 24)] or [np.zeros(0, np.int64)])
    if how in ("newline", "newline_nonblank"):
        sep_start, sep_end = nl, nl + 1
    elif how in ("newlines", "paragraphs"):
        if len(nl):
            brk = np.flatnonzero(np.diff(nl) != 1)
            sep_start = nl[np.concatenate(([0], brk + 1))]
            sep_end = nl[np.concatenate((brk, [len(nl) - 1]))] + 1
            if how == "paragraphs":
                long = sep_end - sep_start >= 2
                sep_start, sep_end = sep_start[long], sep_end[long]
        else:
            sep_start = sep_end = nl
    else:
        raise ValueError(f"unknown line split {how!r}")
    del nl
    start = np.concatenate(([s], sep_end)).astype(np.int64)
    length = np.concatenate((sep_start, [e])).astype(np.int64) - start
    # the units with their separators: contiguous, so one zero-copy Arrow array holds them
    values = pa.Array.from_buffers(pa.large_string(), len(start), [None, pa.py_buffer(np.concatenate((start, [e]))), doc.buffers()[2]])
    chars = _np(pc.utf8_length(values)) - np.concatenate((sep_end - sep_start, [0]))
    if how == "newline_nonblank":
        keep = ~_np(pc.match_substring_regex(values, _BLANK_RE))
        start, length, chars = start[keep], length[keep], chars[keep]
    del values
    units = len(start)
    if not units:
        return {"units": 0, "dup": 0, "dup_chars": 0}
    hashes = hash_spans128(data, start, length)
    order = np.lexsort((hashes[:, 1], hashes[:, 0]))  # stable: equal units in document order
    hs = hashes[order]
    head = np.ones(units, dtype=bool)
    head[1:] = (hs[1:] != hs[:-1]).any(axis=1)
    dup = np.zeros(units, dtype=bool)
    dup[order[~head]] = True
    return {"units": units, "dup": int(dup.sum()), "dup_chars": int(chars[dup].sum())}


def _strip_bounds(data: np.ndarray, s: int, e: int) -> tuple[int, int]:
    """The byte range of ``data[s:e]`` (UTF-8) without its leading and trailing ``WHITESPACE``."""
    a = s
    while a < e:
        txt = bytes(data[a : min(e, a + (1 << 16))]).decode("utf-8", "ignore")  # a cut character is left for later
        rest = txt.lstrip(WHITESPACE)
        if rest:
            a += len(txt[: len(txt) - len(rest)].encode())
            break
        a += len(txt.encode())
    else:
        return s, s
    b = e
    while b > a:
        lo = max(a, b - (1 << 16))
        while lo > a and (data[lo] & 0xC0) == 0x80:
            lo -= 1  # start at a character
        txt = bytes(data[lo:b]).decode("utf-8")
        rest = txt.rstrip(WHITESPACE)
        if rest:
            b -= len(txt[len(rest):].encode())
            break
        b = lo
    return a, b


def _concat_freeing(parts: list[np.ndarray], dtype) -> np.ndarray:
    """``np.concatenate(parts)``, emptying ``parts`` as it goes (the memory stays about the total)."""
    out = np.empty(sum(len(p) for p in parts), dtype=dtype)
    at = 0
    parts.reverse()
    while parts:
        p = parts.pop()
        out[at : at + len(p)] = p
        at += len(p)
        del p
    return out


class Analysis:
    """The statistics the heuristic rule sets need, for one batch of texts.

    Made for one call (``Analysis.of(batch)``) and handed to the rule sets explicitly:
    ``analysis.run([rule_set, ...])`` gives each rule set's score columns from one pass over the
    batch, so rule sets that run together (the ``web_quality`` stage) split the text into lines and
    words once; ``rule_set.score(batch, analysis)`` does the same for one rule set. Nothing is kept
    across calls: two batches, or two threads, never see each other's analysis.

    The batch is analyzed a *slice* at a time (a :class:`TextStats` of consecutive whole documents
    of about :data:`SLICE_BYTES` together), so the memory of the word and line arrays is bounded by
    the slice, not the batch. A longer document is cut into pieces of about :data:`PIECE_BYTES`
    right after a newline (no line, word or "..." spans a cut); the counts that are sums over lines
    or words add up over its pieces; its duplicate lines and paragraphs are found on the whole
    document without copying it (:func:`doc_duplicates`: byte ranges compared by 128-bit hashes),
    its distinct stop words are the union of its pieces', and its n-gram statistics come from one
    int32 word id per word (:class:`WordTable`, :func:`ngram_stats`). The results are the same as
    for the document analyzed at once (tests cut documents into pieces of a few bytes to check).
    """

    def __init__(self, text, slice_bytes: int | None = None, piece_bytes: int | None = None):
        self.text = pieces.as_string(text)
        self.n = len(self.text)
        self.slice_bytes = SLICE_BYTES if slice_bytes is None else max(1, int(slice_bytes))
        self.piece_bytes = min(self.slice_bytes, PIECE_BYTES) if piece_bytes is None else max(1, int(piece_bytes))
        self._plan = None
        self._whole: TextStats | None = None  # a batch analyzed in one slice: kept for later runs

    @classmethod
    def of(cls, batch: pa.RecordBatch, slice_bytes: int | None = None, piece_bytes: int | None = None) -> "Analysis":
        from curate.schema import TEXT

        return cls(batch.column(TEXT), slice_bytes, piece_bytes)

    @property
    def n_chars(self) -> np.ndarray:
        return _np(pc.fill_null(pc.utf8_length(self.text), 0)).astype(np.int64)

    def plan(self) -> list[tuple]:
        """The slices (:func:`curate.pieces.plan`; a long document is cut after a newline)."""
        if self._plan is None:
            self._plan = pieces.plan(self.text, self.slice_bytes, b"\n", piece_size=self.piece_bytes)
        return self._plan

    def _piece(self, a: int, b: int) -> pa.Array:
        return pieces.piece(self.text, a, b)

    def _slice_stats(self, a: int, b: int) -> TextStats:
        if a == 0 and b == self.n:
            if self._whole is None:
                self._whole = TextStats(self.text)
            return self._whole
        return TextStats(self.text.slice(a, b - a))

    # ---- measuring

    def run(self, rule_sets) -> list[dict[str, pa.Array]]:
        """The score columns of each of ``rule_sets`` (:class:`RuleSet`), in one pass over the batch."""
        rule_sets = list(rule_sets)
        needs = list(dict.fromkeys(need for rs in rule_sets for need in rs.needs()))
        n = self.n
        sums = [{} for _ in rule_sets]
        measures = Measures(n, self.n_chars)
        plan = self.plan()
        # duplicate lines of documents cut into pieces: on the whole document, first (nothing else is held)
        for kind, d, bounds in (e for e in plan if e[0] == "pieces"):
            for need in needs:
                if need[0] == "duplicates":
                    measures._put(need, d, doc_duplicates(self._piece(bounds[0], bounds[-1]), need[1]))
                    pieces.release_memory()
        for entry in plan:
            if entry[0] == "docs":
                _, a, b = entry
                st = self._slice_stats(a, b)
                for s, rs in zip(sums, rule_sets):
                    _add(s, rs.slice_sums(st), slice(a, b), n)
                for need in needs:
                    measures._put(need, slice(a, b), _measure(st, need))
                del st
            else:
                self._run_pieces(entry[1], entry[2], rule_sets, needs, sums, measures)
        return [rs.columns(s, measures) for s, rs in zip(sums, rule_sets)]

    def _run_pieces(self, d, bounds, rule_sets, needs, sums, measures):
        """Sums and measures of document ``d``, cut at ``bounds``."""
        n = self.n
        top = [need[1] for need in needs if need[0] == "top_ngram"]
        dup = [need[1] for need in needs if need[0] == "dup_ngram"]
        vocabularies = [need for need in needs if need[0] == "distinct_words"]
        table, present = WordTable(), {need: [] for need in vocabularies}
        for a, b in zip(bounds[:-1], bounds[1:]):
            st = TextStats(self._piece(a, b))
            for s, rs in zip(sums, rule_sets):
                _add(s, rs.slice_sums(st), d, n)
            if top or dup:
                table.add(*st.word_refs())
            for need in vocabularies:
                present[need].append(st.words_present(need[1])[1])
            del st
        for need in vocabularies:
            measures._put(need, d, len(np.unique(np.concatenate(present[need]))) if present[need] else 0)
        pieces.release_memory()
        if top or dup:
            ids = table.ids()
            top_chars, dup_chars = ngram_stats(ids, table.hash, table.length, d, top, dup)
            del ids, table
            pieces.release_memory()
            for k, v in top_chars.items():
                measures._put(("top_ngram", k), d, v)
            for k, v in dup_chars.items():
                measures._put(("dup_ngram", k), d, v)

    def join_rows(self, fn, sep: str = "\n") -> pa.Array:
        """Per document, the text ``fn`` makes of it: ``fn(st)`` gives, for each text of a slice, a
        string and whether it counts (a large_string array and a bool array); a document cut into
        pieces gets the strings of its pieces that count, joined with ``sep``."""
        out = []
        for entry in self.plan():
            if entry[0] == "docs":
                texts, _ = fn(self._slice_stats(entry[1], entry[2]))
                out.append(texts)
                continue
            _, d, bounds = entry
            parts = []
            for a, b in zip(bounds[:-1], bounds[1:]):
                texts, counts = fn(TextStats(self._piece(a, b)))
                if counts[0]:
                    parts.append(texts.slice(0, 1))
            values = pa.concat_arrays(parts) if parts else pa.array([], pa.large_string())
            del parts
            lists = pa.LargeListArray.from_arrays(pa.array([0, len(values)], pa.int64()), values)
            out.append(pc.binary_join(lists, pa.scalar(sep, pa.large_string())))
            del values, lists
        if not out:
            return pa.array([], pa.large_string())
        return pa.concat_arrays(out) if len(out) > 1 else out[0]


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
