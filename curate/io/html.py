"""HTML to text with trafilatura (main content, boilerplate removed)."""
from __future__ import annotations

import logging

logging.getLogger("trafilatura").setLevel(logging.CRITICAL)
logging.getLogger("htmldate").setLevel(logging.CRITICAL)

DEFAULTS = dict(include_comments=False, include_tables=True, favor_precision=False, deduplicate=False)


def extract_text(html: str | bytes, url: str | None = None, **options) -> str | None:
    """Main text of an HTML page, or None when nothing could be extracted.

    ``options`` are passed to ``trafilatura.extract`` (``include_tables``, ``favor_precision``, ...).
    """
    import trafilatura

    if isinstance(html, bytes):
        html = _decode(html)
    if not html or not html.strip():
        return None
    kw = {**DEFAULTS, **options}
    return trafilatura.extract(html, url=url, output_format="txt", with_metadata=False, **kw)


def _decode(data: bytes) -> str:
    """Decode page bytes: declared/BOM utf-8 first, then a charset guess."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    head = data[:2048].lower()
    for marker in (b"charset=", b'charset="'):
        i = head.find(marker)
        if i >= 0:
            cs = head[i + len(marker) : i + len(marker) + 20].split(b'"')[0].split(b";")[0].split(b">")[0].strip(b"\"' /")
            try:
                return data.decode(cs.decode("ascii"), errors="replace")
            except (LookupError, UnicodeDecodeError):
                break
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    return str(best) if best is not None else data.decode("utf-8", errors="replace")
