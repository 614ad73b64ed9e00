from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
import pyarrow as pa

from curate.core.keydedup import KeyDedupStage
from curate.core.registry import register
from curate.schema import ID, URL, hash_strings128

TRACKING = ("utm_", "fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid", "yclid", "_hsenc", "_hsmi", "igshid", "ref_src")
DEFAULT_PORTS = {"http": "80", "https": "443"}


def normalize_url(url: str | None, drop_params=TRACKING, ignore_scheme: bool = True) -> str | None:
    """Canonical form of a URL: case-folded scheme and host, no default port, no fragment, no
    trailing slash, tracking parameters removed and the remaining query parameters sorted."""
    if not url or not url.strip():
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return url.strip()
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower().removeprefix("www.")
    port = parts.port if parts.port is not None else None
    netloc = host if port is None or DEFAULT_PORTS.get(scheme) == str(port) else f"{host}:{port}"
    path = parts.path.rstrip("/") or ""
    query = sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                   if not k.lower().startswith(tuple(drop_params)))
    return urlunsplit(("" if ignore_scheme else scheme, netloc, path, urlencode(query), ""))


@register
@dataclass(kw_only=True)
class UrlDedup(KeyDedupStage):
    """Keep one document per normalized URL (scheme, case, trailing slash, tracking parameters); smallest id survives."""

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
