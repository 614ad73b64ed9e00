"""Shared text statistics for the heuristic rule sets, computed once per batch.

The rule sets (``gopher_quality``, ``gopher_repetition``, ``c4_quality``/``c4_lines``,
``fineweb_quality``) are published as per-document Python code (DataTrove's reference filters).
Here the same definitions are computed for a whole record batch at once:

* **Words** follow the tokenization the reference filters use (spaCy's blank English tokenizer):
  the text is cut at whitespace into *chunks* (vectorized, polars); each *distinct* chunk of the
  batch that is not a plain run of letters or digits is split into tokens by :class:`WordSplitter`,
  a re-implementation of that tokenizer's rules (punctuation prefixes and suffixes, infixes such as
  hyphens between letters, URLs, contractions and abbreviations). Splits are memoized per process,
  so steady-state batches mostly hit the memo. The flat token table then gets its per-token flags
  (alphabetic, symbol-only, punctuation, sentence-final) and hashes vectorized.
* **Lines and paragraphs** are split with Arrow regex kernels (with the exact semantics of
  ``str.splitlines``, ``str.split("\\n")``, ``re.split("\\n+")`` and ``re.split("\\n{2,}")``) and
  deduplicated per document with polars.
* **n-grams** are rolling 64-bit hashes over the flat token hashes (numpy).

:func:`analyze` returns a :class:`TextStats` for a text array. It is memoized per process on the
array's buffers, so several rule-set stages that see the same batch (``mode: annotate``, or a batch
nothing was dropped from) split it into words and lines once. Every view of :class:`TextStats` is
computed lazily and cached on it.
"""
from __future__ import annotations

import bisect
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
_LINE_BREAKS = "\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]"  # str.splitlines()
_ARROW_LINE_BREAKS = r"\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x{85}\x{2028}\x{2029}]"


# ---------------------------------------------------------------------------- the word splitter


_CATEGORIES: list[str] | None = None


def _chars_where(pred, limit: int = 0x30000) -> str:
    """A Python regex class body for the code points below ``limit`` whose category satisfies ``pred``."""
    global _CATEGORIES
    if _CATEGORIES is None:
        _CATEGORIES = [unicodedata.category(chr(cp)) for cp in range(0x30000)]
    out, start, prev = [], None, None
    for cp, cat in enumerate(_CATEGORIES[:limit]):
        if pred(cat):
            if start is None:
                start = cp
            prev = cp
        elif start is not None:
            out.append((start, prev))
            start = None
    if start is not None:
        out.append((start, prev))
    return "".join(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in out)


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

    def __init__(self):
        alpha = _chars_where(lambda c: c[0] in "LM")
        lower = _chars_where(lambda c: c in ("Ll", "Lo", "Lm") or c[0] == "M")
        upper = _chars_where(lambda c: c in ("Lu", "Lt", "Lo", "Lm") or c[0] == "M")
        icons = _chars_where(lambda c: c == "So")
        punct = "…,:;!?¿؟¡()[]{}<>_#*&。？！，、；：～·।،۔؛٪"
        quotes = "'\"”“`‘´’‚,„»«「」『』（）〔〕【】《》〈〉〈〉⟦⟧"
        currency = "$£€¥฿₽﷼₴₠₡₢₣₤₥₦₧₨₩₪₫₭₮₯₰₱₲₳₵₶₷₸₹₺₻₼₾₿"
        units = (
            "km km² km³ m m² m³ dm dm² dm³ cm cm² cm³ mm mm² mm³ ha µm nm yd in ft kg g mg µg t lb oz "
            "m/s km/h kmh mph hPa Pa mbar mb MB kb KB gb GB tb TB T G M K %"
        ).split()
        units += "км км² км³ м м² м³ дм дм² дм³ см см² см³ мм мм² мм³ нм кг г мг м/с км/ч кПа Па мбар Кб КБ кб Мб МБ мб Гб ГБ гб Тб".split()
        # prefixes: one punctuation character, a run of periods, or a currency sign
        self._prefix = re.compile(
            r"(?:US\$|C\$|A\$|\.\.+|\+(?![0-9])|[" + _py_class("§%=—–" + punct + quotes + currency) + icons + "])"
        )
        unit_alt = "|".join(re.escape(u) for u in sorted(units, key=len, reverse=True))
        cur_alt = "|".join(re.escape(c) for c in ["US$", "C$", "A$"] + list(currency))
        p_q = _py_class(punct + quotes + "|\\")
        # suffixes, tried from the leftmost possible start (as a regex search anchored at the end)
        self._suffix = re.compile(
            r"(?:\.\.+|……|['’][sS]"
            r"|(?<=[0-9])(?:" + cur_alt + "|" + unit_alt + r")"
            r"|(?<=[0-9])\+|(?<=°[FfCcKk])\."
            r"|(?<=[0-9" + lower + r"%²\-+" + p_q + r"])\."
            r"|(?<=[" + upper + "][" + upper + r"])\."
            r"|[" + _py_class(punct + quotes + "—–") + icons + r"])$"
        )
        self._infix = re.compile(
            r"\.\.+|…|[" + icons + r"]"
            r"|(?<=[0-9])[+\-*^](?=[0-9-])"
            r"|(?<=[" + lower + _py_class(quotes) + r"])\.(?=[" + upper + _py_class(quotes) + r"])"
            r"|(?<=[" + alpha + r"]),(?=[" + alpha + r"])"
            r"|(?<=[" + alpha + r"0-9])(?:---|--|——|[-–—~])(?=[" + alpha + r"])"
            r"|(?<=[" + alpha + r"0-9])[:<>=/](?=[" + alpha + r"])"
        )
        host = "[A-Za-z0-9\u00a1-\uffff]"
        self._url = re.compile(
            r"(?:[\w+\-.]{2,}://)?(?:\S+(?::\S*)?@)?"
            r"(?:(?:[1-9]\d?|1\d\d|2[01]\d|22[0-3])(?:\.(?:1?\d{1,2}|2[0-4]\d|25[0-5])){2}(?:\.(?:[1-9]\d?|1\d\d|2[0-4]\d|25[0-4]))"
            r"|(?:(?:" + host + r"[A-Za-z0-9\u00a1-\uffff_-]{0,62})?" + host + r"\.)+[" + lower + r"]{2,63})"
            r"(?::\d{2,5})?(?:[/?#]\S*)?"
        )
        self.specials = _special_cases()
        self._max_special_tokens = 6
        self._memo: dict[str, tuple[str, ...]] = {}

    def __call__(self, chunk: str) -> tuple[str, ...]:
        memo = self._memo
        out = memo.get(chunk)
        if out is None:
            if len(memo) > 1_000_000:
                memo.clear()
            out = memo[chunk] = self._split(chunk)
        return out

    def _prefix_len(self, s: str) -> int:
        m = self._prefix.match(s)
        return m.end() if m else 0

    def _suffix_len(self, s: str) -> int:
        m = self._suffix.search(s)
        return len(s) - m.start() if m else 0

    def _split(self, s: str) -> tuple[str, ...]:
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
            elif self._url.fullmatch(s):
                middle = [s]
            else:
                start = 0
                for m in self._infix.finditer(s):
                    a, b = m.span()
                    if a == 0:
                        continue
                    if a != start:
                        middle.append(s[start:a])
                    if a != b:
                        middle.append(s[a:b])
                    start = b
                if s[start:]:
                    middle.append(s[start:])
        tokens = prefixes + middle + suffixes[::-1]
        if len(tokens) > 1:
            tokens = self._merge_specials(tokens)
        return tuple(tokens)

    def _merge_specials(self, tokens: list[str]) -> list[str]:
        """Runs of tokens that spell a special case (``z.`` ``B.``, an emoticon such as ``):``) are
        re-split as that special case, longest run first."""
        specials, out, i, n = self.specials, [], 0, len(tokens)
        while i < n:
            for j in range(min(n, i + self._max_special_tokens), i + 1, -1):
                joined = "".join(tokens[i:j])
                if joined in specials:
                    out.extend(specials[joined])
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
    for h in range(1, 13):
        for p in ("a.m.", "am", "p.m.", "pm"):
            exc[f"{h}{p}"] = (str(h), p)
    # kept whole: abbreviations, single letters with a period, emoticons and a few others
    whole = """a.m. p.m. e.g. E.g. E.G. i.e. I.e. I.E. vs. v.s. co. Co. Corp. Inc. Ltd. Bros. Jr. Messrs.
        Mr. Mrs. Ms. Dr. Prof. Rev. Gen. Gov. Sen. Rep. Adm. St. Mt. Ph.D. D.C. Jan. Feb. Mar. Apr. Jun.
        Jul. Aug. Sep. Sept. Oct. Nov. Dec. Ak. Ala. Ariz. Ark. Calif. Colo. Conn. Del. Fla. Ga. Ia. Id.
        Ill. Ind. Kan. Kans. Ky. La. Mass. Md. Mich. Minn. Miss. Mo. Mont. N.C. N.D. N.H. N.J. N.M. N.Y.
        Neb. Nebr. Nev. Okla. Ore. Pa. S.C. Tenn. Va. Wash. Wis. ä. ö. ü. C++ '' 'em 'cause 'bout 'nuff
        ol' y' and/or""".split()
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
