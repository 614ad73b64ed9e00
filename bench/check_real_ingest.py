"""Extra check on real data: ingest with HTML extraction from ../shared, ledger must balance.

    python bench/check_real_ingest.py

Runs two recipes with the real runner: the 1,172 pages of ../shared/data/web/html-pages.parquet
(raw HTML in column `html`, extracted with trafilatura) and the Common Crawl WARC samples, each
followed by lang_id (annotate) and exact_dedup, and prints the per-stage summary of each.
"""
from __future__ import annotations

import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(os.path.dirname(os.path.dirname(HERE)), "shared", "data", "web")

RECIPES = {
    "html-pages": f"""
input: {{path: {SHARED}/html-pages.parquet, html_key: html}}
output: OUT
stages:
  - lang_id: {{mode: annotate}}
  - exact_dedup: {{}}
""",
    "warc": f"""
input: {{path: '{SHARED}/warc/*.warc.gz'}}
output: OUT
stages:
  - lang_id: {{mode: annotate}}
  - exact_dedup: {{}}
""",
}


def main() -> int:
    from curate.core.recipe import parse_recipe
    from curate.core.report import print_summary
    from curate.core.runner import run_recipe

    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in RECIPES.items():
            recipe = parse_recipe(text.replace("OUT", os.path.join(tmp, name)), f"<{name}>")
            res = run_recipe(recipe)  # raises LedgerError if the ledger does not balance
            print_summary(res)
            ok &= not res.problems and res.stats["write"].kept > 0
    print("real-data ingest:", "OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
