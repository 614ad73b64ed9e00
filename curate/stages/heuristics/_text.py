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
_LINE_BREAKS = "\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]"  # str.splitlines()
_ARROW_LINE_BREAKS = r"\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x{85}\x{2028}\x{2029}]"


# ---------------------------------------------------------------------------- the word splitter


def _icon_class() -> str:
    """A Python regex class body for the symbols of category So (emoji, dingbats, arrows...)."""
    out, start, prev = [], None, None
    for cp in range(0x2000, 0x20000):  # no So symbol below U+2000 is frequent enough to matter
        if unicodedata.category(chr(cp)) == "So":
            if start is None:
                start = cp
            prev = cp
        elif start is not None:
            out.append((start, prev))
            start = None
    return "\u00a6\u00a9\u00ae\u00b0" + "".join(
        f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in out)


def _lower_or_uncased(c: str) -> bool:
    """A lower-case letter, a letter of a script without case, or a combining mark."""
    return (c.isalpha() and not c.isupper() and not c.istitle()) or unicodedata.category(c)[0] == "M"


def _upper_or_uncased(c: str) -> bool:
    return (c.isalpha() and not c.islower()) or unicodedata.category(c)[0] == "M"


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
        letter = r"[^\W\d_]"
        q = _py_class(self._QUOTES)
        # the period infix (between a lower-case letter or quote and an upper-case letter or quote)
        # is matched loosely here and checked for case in _split
        self._infix = re.compile(
            r"\.\.+|…|[" + icons + r"]"
            r"|(?<=[0-9])[+\-*^](?=[0-9-])"
            r"|(?<=" + letter + "|[" + q + r"])\.(?=" + letter + "|[" + q + r"])"
            r"|(?<=" + letter + r"),(?=" + letter + r")"
            r"|(?<=[^\W_])(?:---|--|——|[-–—~])(?=" + letter + r")"
            r"|(?<=[^\W_])[:<>=/](?=" + letter + r")"
        )
        self._infix_chars = re.compile(r"[.…+\-*^,–—~:<>=/" + icons + "]")
        self._quote_set = frozenset(self._QUOTES)
        host = "[A-Za-z0-9\u00a1-\uffff]"
        self._url = re.compile(
            r"(?:[\w+\-.]{2,}://)?(?:\S+(?::\S*)?@)?"
            r"(?:(?:[1-9]\d?|1\d\d|2[01]\d|22[0-3])(?:\.(?:1?\d{1,2}|2[0-4]\d|25[0-5])){2}(?:\.(?:[1-9]\d?|1\d\d|2[0-4]\d|25[0-4]))"
            r"|(?:(?:" + host + r"[A-Za-z0-9\u00a1-\uffff_-]{0,62})?" + host + r"\.)+(?:[a-z]|[^\x00-\x7f\W\d_]){2,63})"
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
            elif ("." in s and self._url.fullmatch(s)) or not self._infix_chars.search(s):
                middle = [s]
            else:
                start = 0
                for m in self._infix.finditer(s):
                    a, b = m.span()
                    if a == 0:
                        continue
                    if b == a + 1 and s[a] == "." and not (
                        (s[a - 1] in self._quote_set or _lower_or_uncased(s[a - 1]))
                        and (s[b] in self._quote_set or _upper_or_uncased(s[b]))
                    ):
                        continue  # a period between letters splits only lower.Upper
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


# ----------------------------------------------------------------------------------------- words

_SPLITTER: WordSplitter | None = None
_LOCK = threading.Lock()
# A chunk that is one word as it stands (unless a special case): letters (with their combining
# marks), or ASCII digits.
_SIMPLE_CHUNK_RE = r"^(?:[\p{L}\p{M}]+|[0-9]+)$"
# A chunk that is such letters with one opening and/or one closing punctuation mark, which are
# split off as words of their own (a period only after a lower-case or uncased letter).
_AFFIXED_CHUNK_RE = (
    r"^([(\[\"'“‘«„¿¡]?)([\p{L}\p{M}]*(?:[\p{L}\p{M}]|[\p{Ll}\p{Lo}\p{Lm}\p{M}](\.)))"
    r"([)\]}\"'”’»,;:!?…]?)$"
)


def splitter() -> WordSplitter:
    """The process-wide :class:`WordSplitter` (its memo of split chunks is shared by all stages)."""
    global _SPLITTER
    if _SPLITTER is None:
        with _LOCK:
            if _SPLITTER is None:
                ws = WordSplitter()
                ws.special_keys = pl.Series(list(ws.specials), dtype=pl.String)
                _SPLITTER = ws
    return _SPLITTER


def tokenize(texts: pl.Series) -> tuple[np.ndarray, pl.Series]:
    """Words of every text, in order: (index of the text of each word, the words).

    Chunks (runs of non-whitespace) are found with one regex pass over the batch; a chunk that is
    a plain run of letters or of digits is one word. Only the *distinct* other chunks of the batch
    go through the Python :class:`WordSplitter` (memoized across batches): its rules (special
    cases, repeated prefix/suffix peeling, URL check, infix cuts) are sequential per chunk and do
    not map onto one regex.
    """
    ws = splitter()
    chunks = (
        pl.DataFrame({"t": texts})
        .with_row_index("doc")
        .select("doc", pl.col("t").str.extract_all(CHUNK_RE))
        .explode("t")
        .drop_nulls("t")
    )
    distinct = chunks.get_column("t").unique()
    keys = ws.special_keys.implode()
    other = distinct.filter(~distinct.str.contains(_SIMPLE_CHUNK_RE) | distinct.is_in(keys))
    if not len(other):
        words = chunks.rename({"t": "w"})
        return words.get_column("doc").to_numpy().astype(np.int64), words.get_column("w")
    # punctuation around a plain word: split vectorized
    parts = other.str.extract_groups(_AFFIXED_CHUNK_RE).struct.unnest()
    core = parts.get_column("2").str.strip_suffix(".")
    period = parts.get_column("3").is_not_null()
    affixed = (
        parts.get_column("1").is_not_null()
        & ~other.is_in(keys)
        & ~parts.get_column("2").is_in(keys)
        & ~core.is_in(keys)
        & ~(period & (parts.get_column("4") != ""))
    ).to_numpy()
    tables = []
    if affixed.any():
        sel = pl.Series(affixed)
        p = parts.filter(sel).with_columns(b=core.filter(sel), period=period.filter(sel))
        w = p.select(
            pl.concat_list("1", "b", pl.when("period").then(pl.lit(".")).otherwise("4"))
            .list.eval(pl.element().filter(pl.element() != ""))
        ).to_series()
        tables.append(pl.DataFrame({"t": other.filter(sel), "w": w}))
    # everything else: the Python splitter, once per distinct chunk (memoized across batches)
    hard = other.filter(pl.Series(~affixed)).to_list()
    if hard:
        split = [ws(c) for c in hard]
        offsets = np.zeros(len(split) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, split), dtype=np.int64, count=len(split)), out=offsets[1:])
        flat = pa.array(list(itertools.chain.from_iterable(split)), type=pa.large_string())
        tables.append(pl.DataFrame({
            "t": pl.Series(hard, dtype=pl.String),
            "w": pl.from_arrow(pa.LargeListArray.from_arrays(pa.array(offsets), flat)),
        }))
    table = pl.concat(tables) if len(tables) > 1 else tables[0]
    words = (
        chunks.join(table, on="t", how="left", maintain_order="left")
        .select("doc", pl.coalesce("w", pl.concat_list("t")).alias("w"))
        .explode("w")
    )
    return words.get_column("doc").to_numpy().astype(np.int64), words.get_column("w")


class Words:
    """The words of a batch as flat arrays: ``doc`` (ascending), ``word``, ``length``, ``hash``."""

    def __init__(self, doc: np.ndarray, word: pl.Series, n_docs: int):
        self.doc, self.word, self.n_docs = doc, word, n_docs
        self.length = word.str.len_chars().to_numpy().astype(np.int64)
        self.start = np.searchsorted(doc, np.arange(n_docs + 1))  # words of doc i: start[i]:start[i+1]
        self._hash = None

    def __len__(self):
        return len(self.doc)

    @property
    def hash(self) -> np.ndarray:
        if self._hash is None:
            self._hash = self.word.hash(seed=7).to_numpy()
        return self._hash

    def per_doc(self, mask: np.ndarray | None = None, weights: np.ndarray | None = None) -> np.ndarray:
        doc = self.doc if mask is None else self.doc[mask]
        w = None if weights is None else (weights if mask is None else weights[mask])
        out = np.bincount(doc, weights=w, minlength=self.n_docs)
        return out if weights is not None else out.astype(np.int64)


def sentence_counts(texts: pl.Series) -> np.ndarray:
    """Sentences per text as spaCy's rule-based sentencizer counts them (blank English pipeline)."""
    group, word = tokenize(texts)
    return count_sentences(group, word, len(texts))


def count_sentences(group: np.ndarray, word: pl.Series, n: int) -> np.ndarray:
    """Sentences per group of words (``group``: ascending group index of each word).

    A sentence ends after a word that is a sentence-final character (``.``, ``!``, ``?``...); the
    next one starts at the first following word that is not punctuation. So a group has 1 + (number
    of words that are not punctuation and follow a sentence end) sentences (0 without words).
    """
    if len(group) == 0:
        return np.zeros(n, dtype=np.int64)
    final = word.is_in(_SENTENCE_PUNCTUATION_LIST).to_numpy()
    punct = word.str.contains(r"^\p{P}+$").to_numpy() | final
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

LINE_SPLITS = ("splitlines", "newline", "newline_nonblank", "newlines", "paragraphs")


class TextStats:
    """Lazily computed, memoized statistics of one text array (one batch)."""

    def __init__(self, text: pa.Array):
        self.text = text
        self.n = len(text)
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
        return self.memo(("count", sub), lambda: _np(pc.count_substring(self.text, sub)))

    @property
    def line_words(self) -> tuple[np.ndarray, pl.Series]:
        """(index into ``lines("splitlines")`` of each word, the words): the words of every line.
        Line breaks are whitespace, so a document's words are its lines' words, in order."""
        return self.memo("line_words", lambda: tokenize(self.lines("splitlines")[1]))

    @property
    def words(self) -> Words:
        def make():
            line, word = self.line_words
            return Words(self.lines("splitlines")[0][line], word, self.n)

        return self.memo("words", make)

    @property
    def word_counts(self) -> dict[str, np.ndarray]:
        """Per document: ``words`` (all), ``alpha`` (with a letter), ``non_symbol`` (with a character
        that is not a symbol) and ``non_symbol_chars`` (their total length)."""

        def make():
            w = self.words
            alpha = w.word.str.contains(r"\p{L}").to_numpy()
            non_symbol = w.word.str.contains(_NON_SYMBOL_RE).to_numpy()
            return {
                "words": w.per_doc(),
                "alpha": w.per_doc(alpha),
                "non_symbol": w.per_doc(non_symbol),
                "non_symbol_chars": w.per_doc(non_symbol, w.length.astype(np.float64)).astype(np.int64),
            }

        return self.memo("word_counts", make)

    def distinct_words_in(self, vocabulary: tuple[str, ...]) -> np.ndarray:
        """Per document: how many distinct words of ``vocabulary`` occur (case-sensitive)."""

        def make():
            w = self.words
            hit = w.word.is_in(list(vocabulary)).to_numpy()
            if not hit.any():
                return np.zeros(self.n, dtype=np.int64)
            pairs = pl.DataFrame({"d": w.doc[hit], "w": w.word.filter(pl.Series(hit))}).unique()
            return np.bincount(pairs.get_column("d").to_numpy(), minlength=self.n).astype(np.int64)

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
            if n == 1:
                pos = np.arange(m)
                key = w.hash ^ (w.doc.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F))
            else:
                prev, prev_key = self._repeated(n - 1)
                follows = np.zeros(m + 1, dtype=bool)
                follows[prev] = True
                ok = follows[prev + 1] & (prev + n - 1 < m)
                ok[ok] = w.doc[prev[ok] + n - 1] == w.doc[prev[ok]]
                pos = prev[ok]
                key = prev_key[ok] * np.uint64(0x9E3779B97F4A7C15) + w.hash[pos + n - 1]
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
                d = w.doc[p]
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
            _dup_scan(self.words.doc[p].tolist(), p.tolist(), f.tolist(), self._ngram_chars(p, n).tolist(), n, out)
            return out

        return self.memo(("dup_ngram", n), make)


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
_CACHE_SIZE = 4


def analyze(text) -> TextStats:
    """The :class:`TextStats` of a text array, shared by every stage that sees the same array.

    Keyed by the array's buffers (addresses, offset, length); the entry holds the array, so the
    buffers cannot be freed and reused by another batch while it is cached.
    """
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    key = (str(text.type), text.offset, len(text)) + tuple(b.address if b is not None else 0 for b in text.buffers())
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
    stats = TextStats(text)
    with _LOCK:
        _CACHE[key] = stats
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return stats


# --------------------------------------------------------------------------------- rule helpers


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` as float64, 0 where both are 0 and inf where only ``den`` is."""
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
