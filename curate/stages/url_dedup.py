"""``url_dedup``: one document per normalized URL.

``normalize_url`` gives the canonical form used as the key. It follows RFC 3986 section 6
(syntax-based normalization) plus the usual crawl conventions:

* scheme and host case-folded; a unicode host (``bücher.de``, or percent-encoded) becomes its
  IDNA punycode (``xn--bcher-kva.de``, UTS #46 with the ``idna`` package, else Python's IDNA 2003
  codec); a trailing dot and a leading ``www.`` are dropped; IPv6 hosts are compressed (``[::1]``);
* default ports dropped (80 for http, 443 for https, 21 for ftp); a port that is not a number or
  is out of range raises ``ValueError`` (``url_dedup`` sends that document to errors);
* user info and fragment dropped;
* path: percent-encodings upper-cased (``%3a`` -> ``%3A``), encoded unreserved characters decoded
  (``%7E`` -> ``~``), other characters that may not appear raw (spaces, non-ASCII) encoded as
  UTF-8, dot segments removed (``/a/./b/../c`` -> ``/a/c``), trailing slash removed;
* query: tracking parameters removed, the rest decoded, sorted and re-encoded in one form.

``courlan.normalize_url`` (bundled with trafilatura) was compared on the real WARC and Common Crawl
URLs (``bench/bench_url_norm.py``): it turns punycode into unicode instead of the other way, keeps
``%3a`` lower case and ``%7E`` encoded, removes only leading ``..`` segments, keeps fragments and
silently accepts port 99999, so it is not used for keys. ``yarl`` does most of the job but is not a
dependency of curate.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import numpy as np
import pyarrow as pa

from curate.core.keydedup import KeyDedupStage
from curate.core.registry import register
from curate.schema import ID, URL, hash_strings128

TRACKING = ("utm_", "fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid", "yclid", "_hsenc", "_hsmi", "igshid", "ref_src")
DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21, "ws": 80, "wss": 443}

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PCT = re.compile(r"%([0-9A-Fa-f]{2})")
# what may stay raw in a normalized path: unreserved, sub-delims, ':', '@', '/' and '%' (escapes)
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"
_NEEDS_QUOTE = re.compile(r'[^\x21-\x7e]|["<>\\^`{|}]')  # non-ASCII, space, controls, characters never raw in a URI


def _pct(m: re.Match) -> str:
    c = chr(int(m.group(1), 16))
    return c if c in _UNRESERVED else "%" + m.group(1).upper()


def remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4: ``/a/./b/../c`` -> ``/a/c``; ``..`` above the root is dropped."""
    if "." not in path:
        return path
    segs = path.split("/")
    if not any(s in (".", "..") for s in segs):
        return path
    out: list[str] = []
    for s in segs[1:] if path.startswith("/") else segs:
        if s == ".":
            continue
        if s == "..":
            if out:
                out.pop()
            continue
        out.append(s)
    if segs[-1] in (".", ".."):
        out.append("")  # "/a/b/.." is the folder "/a/"
    return ("/" if path.startswith("/") else "") + "/".join(out)


def normalize_path(path: str) -> str:
    if "%" in path:
        path = _PCT.sub(_pct, path)
    if _NEEDS_QUOTE.search(path):
        path = quote(path, safe=_PATH_SAFE)
    return remove_dot_segments(path)


def normalize_host(host: str) -> str:
    """Lower-case ASCII host: punycode for unicode labels, compressed IPv6, no trailing dot."""
    if not host:
        return host
    if ":" in host:  # urlsplit only leaves a ':' in a bracketed IPv6 host
        addr, _, zone = host.partition("%")
        try:
            return f"[{ipaddress.IPv6Address(addr).compressed}{'%' + zone if zone else ''}]"
        except ValueError:
            raise ValueError(f"invalid IPv6 host {host!r}") from None
    if "%" in host:
        from urllib.parse import unquote

        host = unquote(host, errors="strict").lower()
    host = host.rstrip(".")
    if host.isascii():
        return host
    try:
        import idna

        return idna.encode(host, uts46=True).decode("ascii")
    except ImportError:
        pass
    except idna.IDNAError:
        pass  # not valid IDNA 2008 (symbols, emoji): Python's IDNA 2003 codec, like browsers' fallback
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError as e:
        raise ValueError(f"invalid host {host!r}: {e}") from None


def normalize_url(url: str | None, drop_params=TRACKING, ignore_scheme: bool = True) -> str | None:
    """Canonical form of a URL (see the module doc); None for an empty one. Raises ValueError for a
    URL that cannot be parsed (bad port, bad IPv6 or IDNA host)."""
    if not url or not url.strip():
        return None
    url = url.strip()
    if url.startswith("<") and url.endswith(">"):
        url = url[1:-1].strip()
    parts = urlsplit(url)  # ValueError: "Invalid IPv6 URL"
    scheme = parts.scheme.lower()
    host = normalize_host(parts.hostname or "")
    if host.startswith("www."):
        host = host[4:]
    port = parts.port  # ValueError: "Port out of range 0-65535", "Port could not be cast to integer value"
    netloc = host if port is None or DEFAULT_PORTS.get(scheme) == port else f"{host}:{port}"
    path = normalize_path(parts.path).rstrip("/")
    query = ""
    if parts.query:
        drop = tuple(drop_params)
        query = urlencode(sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                                 if not k.lower().startswith(drop)))
    return urlunsplit(("" if ignore_scheme else scheme, netloc, path, query, ""))


@register
@dataclass(kw_only=True)
class UrlDedup(KeyDedupStage):
    """Keep one document per normalized URL (``normalize_url``: case, IDNA, percent-encoding, dot segments, default
    port, trailing slash, tracking parameters); smallest id survives. A URL that cannot be parsed is an error."""

    stage = "url_dedup"
    reason = "url_duplicate"
    ignore_scheme: bool = True
    tracking_params: list[str] = field(default_factory=lambda: list(TRACKING))
    partitions: int | None = None  # default: derived from the input's size
    mode: Literal["drop", "annotate"] = "drop"

    def keys(self, batch):
        # per-URL parsing is a Python loop: urllib's parser has no vectorized equivalent. A URL that cannot be
        # parsed raises here, and the base sends that document alone to errors with the reason.
        drop = tuple(self.tracking_params)
        norm = [normalize_url(u, drop, self.ignore_scheme) for u in batch.column(URL).to_pylist()]
        valid = np.array([u is not None for u in norm], dtype=bool)
        return hash_strings128(pa.array([u or "" for u in norm], type=pa.string())), valid, batch.column(ID)
