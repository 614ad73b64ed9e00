"""URL normalization for ``url_dedup``: ours against ``courlan`` (bundled with trafilatura) and ``yarl``.

    python bench/bench_url_norm.py            # the real URLs of ../shared, variants, timing
    python bench/bench_url_norm.py --repeat 5

URLs: ../shared/data/web/html-pages.parquet (1,172), the WARC samples' ``WARC-Target-URI`` (with
their ``<...>`` brackets) and the Common Crawl jsonl samples' ``metadata.url``.

Correctness: for every real URL, variants that name the same resource are made (host upper-cased,
host as unicode / punycode, percent-escapes lower-cased, an unreserved character percent-encoded,
``/./`` and ``x/../`` inserted, the default port added, a fragment added) and each normalizer's
key of the variant is compared with its key of the original; a good normalizer unifies all of them.
Also: which ones raise (port 99999) instead of returning a key. Timing: microseconds per URL.

``courlan`` and ``yarl`` are compared only when installed (``yarl`` is not a dependency of curate).
"""
from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data", "web")
sys.path.insert(0, ROOT)

from curate.stages.url_dedup import normalize_url  # noqa: E402


def real_urls() -> list[str]:
    urls = []
    pages = os.path.join(SHARED, "html-pages.parquet")
    if os.path.exists(pages):
        import pyarrow.parquet as pq

        urls += [u for u in pq.read_table(pages, columns=["url"]).column("url").to_pylist() if u]
    for path in sorted(glob.glob(os.path.join(SHARED, "warc", "*.warc.gz"))):
        from fastwarc.warc import ArchiveIterator, WarcRecordType

        with open(path, "rb") as f:
            urls += [r.headers.get("WARC-Target-URI") for r in ArchiveIterator(f, record_types=WarcRecordType.response)]
    for path in sorted(glob.glob(os.path.join(SHARED, "cc", "*.jsonl.gz"))):
        with gzip.open(path) as f:
            urls += [json.loads(line).get("metadata", {}).get("url") for line in f]
    return [u for u in urls if u]


def variants(url: str) -> list[tuple[str, str]]:
    from urllib.parse import urlsplit, urlunsplit

    u = url.strip().removeprefix("<").removesuffix(">")
    p = urlsplit(u)
    if not p.netloc:  # not a URL with a host (the parquet's "hard::..." test names): no variants
        return []
    host = p.hostname or ""
    out = [("host upper-case", urlunsplit((p.scheme, p.netloc.upper(), p.path, p.query, "")))]
    try:
        uni = host.encode("ascii").decode("idna")
    except UnicodeError:
        uni = host
    if uni != host:
        out.append(("unicode host", urlunsplit((p.scheme, p.netloc.replace(host, uni), p.path, p.query, ""))))
    elif not host.isascii():
        out.append(("punycode host", urlunsplit((p.scheme, p.netloc.replace(host, host.encode("idna").decode()), p.path,
                                                 p.query, ""))))
    if "%" in p.path:
        import re

        out.append(("lower-case %xx", urlunsplit((p.scheme, p.netloc, re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(),
                                                                             p.path), p.query, ""))))
    if "-" in p.path:
        out.append(("encoded unreserved", urlunsplit((p.scheme, p.netloc, p.path.replace("-", "%2D", 1), p.query, ""))))
    path = p.path or "/"
    out.append(("dot segments", urlunsplit((p.scheme, p.netloc, "/./x/.." + path, p.query, ""))))
    if p.port is None and p.scheme in ("http", "https"):
        port = {"http": 80, "https": 443}[p.scheme]
        out.append(("default port", urlunsplit((p.scheme, f"{p.netloc}:{port}", p.path, p.query, ""))))
    out.append(("fragment", urlunsplit((p.scheme, p.netloc, p.path, p.query, "top"))))
    return out


def normalizers():
    found = {"curate": lambda u: normalize_url(u, ignore_scheme=False)}
    try:
        import courlan

        found["courlan"] = lambda u: courlan.normalize_url(u.strip().removeprefix("<").removesuffix(">"), strict=True,
                                                           trailing_slash=False)
    except ImportError:
        pass
    try:
        import yarl

        found["yarl"] = lambda u: str(yarl.URL(u.strip().removeprefix("<").removesuffix(">")).with_fragment(None))
    except ImportError:
        pass
    return found


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--n", type=int, default=200_000, help="URLs timed (the real ones, repeated)")
    args = ap.parse_args()
    urls = real_urls()
    if not urls:
        sys.exit(f"no URLs found under {SHARED}")
    norms = normalizers()
    print(f"{len(urls):,} real URLs ({sum(u.startswith('<') for u in urls)} in <...>); normalizers: {', '.join(norms)}")

    print("\nvariants unified with the original (higher is better):")
    kinds: dict[str, dict[str, list[int]]] = {}
    for u in urls:
        for kind, v in variants(u):
            for name, f in norms.items():
                try:
                    same = f(u) == f(v)
                except Exception:  # noqa: BLE001
                    same = False
                k = kinds.setdefault(kind, {}).setdefault(name, [0, 0])
                k[0] += same
                k[1] += 1
    print(f"  {'variant':<20}" + "".join(f"{n:>16}" for n in norms))
    for kind, per in kinds.items():
        print(f"  {kind:<20}" + "".join(f"{per[n][0]:>8,}/{per[n][1]:<7,}" for n in norms))

    print("\nIDN pairs (the real URLs have no unicode host; unified, higher is better):")
    pairs = [("http://bücher.de/a", "http://xn--bcher-kva.de/a"), ("https://münchen.de/", "https://xn--mnchen-3ya.de/"),
             ("http://例え.テスト/p", "http://xn--r8jz45g.xn--zckzah/p"), ("http://BÜCHER.de/", "http://b%C3%BCcher.de/"),
             ("http://[0:0::1]:8080/", "http://[::1]:8080/")]
    row = []
    for name, f in norms.items():
        ok = 0
        for a, b in pairs:
            try:
                ok += f(a) == f(b)
            except Exception:  # noqa: BLE001
                pass
        row.append(f"{name}: {ok}/{len(pairs)}")
    print("  " + "; ".join(row))

    print("\nbad URLs (an error is wanted, not a key):")
    for bad in ("http://example.com:99999/x", "http://[::1/x", "http://ex\u2028ample.com:abc/"):
        row = []
        for name, f in norms.items():
            try:
                row.append(f"{name}: {f(bad)!r}")
            except Exception as e:  # noqa: BLE001
                row.append(f"{name}: {type(e).__name__}")
        print(f"  {bad!r:<34} " + "; ".join(row))

    print(f"\ntiming over {args.n:,} URLs (best of {args.repeat}):")
    timed = (urls * (args.n // len(urls) + 1))[: args.n]
    base = None
    for name, f in norms.items():
        best = float("inf")
        for _ in range(args.repeat):
            t = time.perf_counter()
            for u in timed:
                try:
                    f(u)
                except Exception:  # noqa: BLE001
                    pass
            best = min(best, time.perf_counter() - t)
        base = base or best
        print(f"  {name:<10} {best:7.2f} s  {best / args.n * 1e6:6.2f} us/URL  {base / best:5.2f}x curate's speed")


if __name__ == "__main__":
    main()
