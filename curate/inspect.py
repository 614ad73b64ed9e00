"""``curate inspect``: score distributions, drop rates at thresholds, histograms.

Reads the Parquet output of ``curate score`` (or of any run) column by column, streaming record
batches (only the score columns and text lengths are held), and reports for every numeric column
its quantiles and, at each of those thresholds, the share of documents and of characters that a
``min``-style filter (drop below) or a ``max``-style filter (drop above) would remove. String
columns with few values (``lang``) get value counts. Writes ``histograms/<column>.png`` and an
``index.html`` that shows them with the tables, so a threshold can be picked by looking.

Column names and values come from the data: PNG names go through ``safe_filename`` and every
string in the page is HTML-escaped, so the report is written only inside its folder and a
column name cannot inject markup. A partial input (a run that did not finish) is refused, and
the report folder may not overlap the files it reads.

The input and the report may be on any Beam filesystem (gs://): remote Parquet files are streamed
through ``FileSystems`` (only the columns read), and a remote report is drawn in a local temporary
folder and copied up file by file.
"""
from __future__ import annotations

import difflib
import glob
import html
import os
import urllib.parse

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from curate import schema as S
from curate.core.safety import (UserError, check_complete, check_output, is_curate_output, is_remote, resolve_input,
                                 safe_filename)

QUANTILES = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)
SKIP = {S.ID, S.TEXT, S.SOURCE, S.URL, "drop_stage", "drop_reason"}


def _files(path: str) -> list[str]:
    """The Parquet files to read: ``path`` itself, or those of a folder (a curate output means its ``data/``).

    Refuses a path in an output whose run did not finish (``_INCOMPLETE``).
    """
    if is_remote(path):
        return _remote_files(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file or folder: {path}")
    path = resolve_input(path)
    if os.path.isfile(path):
        return [path]
    for pattern in (os.path.join(path, "data", "*.parquet"), os.path.join(path, "*.parquet"), os.path.join(path, "**", "*.parquet")):
        files = sorted(glob.glob(pattern, recursive=True))
        if files:
            for folder in sorted({os.path.dirname(f) for f in files}):
                check_complete(folder)  # a partial output nested below ``path``
            return files
    raise FileNotFoundError(f"no Parquet files under {path}")


def _remote_files(path: str) -> list[str]:
    """``_files`` on an object store (gs://), where a folder is a name prefix."""
    from curate.io.readers import exists, match_paths

    check_complete(path)
    if path.endswith(".parquet") and exists(path):
        return [path]
    path = resolve_input(path).rstrip("/")
    for pattern in (path + "/data/*.parquet", path + "/*.parquet", path + "/**.parquet"):
        files = sorted(f for f in match_paths(pattern) if not f.rsplit("/", 1)[-1].startswith("."))
        if files:
            for folder in sorted({f.rsplit("/", 1)[0] for f in files}):
                check_complete(folder)
            return files
    raise FileNotFoundError(f"no Parquet files under {path}")


def collect(path: str, columns: list[str] | None = None) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, dict]]:
    """Numeric columns as float arrays, per-document character counts, and value counts of small string columns."""
    return _collect(_files(path), columns)


def _collect(files: list[str], columns: list[str] | None = None):
    try:
        if any(is_remote(f) for f in files):
            from curate.io.readers import arrow_filesystem

            dataset = ds.dataset(files, format="parquet", filesystem=arrow_filesystem())
        else:
            dataset = ds.dataset(files, format="parquet")
    except (pa.ArrowException, OSError) as e:
        raise UserError(f"cannot read the input as Parquet: {e}") from None
    schema = dataset.schema
    numeric = [f.name for f in schema if f.name not in SKIP and (pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_boolean(f.type))]
    strings = [f.name for f in schema if f.name not in SKIP and pa.types.is_string(f.type)]
    if columns:
        usable = numeric + strings
        for c in columns:
            if c in usable:
                continue
            if c in schema.names:
                raise UserError(f"--column {c!r} has type {schema.field(c).type}, not a number or a string "
                                f"(columns to inspect: {', '.join(usable) or 'none'})")
            close = difflib.get_close_matches(c, usable, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UserError(f"--column {c!r} is not in the input ({hint}columns to inspect: {', '.join(usable) or 'none'})")
        numeric = [c for c in numeric if c in columns]
        strings = [c for c in strings if c in columns]
    values: dict[str, list] = {c: [] for c in numeric}
    chars: list[np.ndarray] = []
    counts: dict[str, dict] = {c: {} for c in strings}
    read = numeric + strings + ([S.TEXT] if S.TEXT in schema.names else [])
    for batch in _batches(dataset, read):
        for c in numeric:
            values[c].append(batch.column(c).cast(pa.float64()).to_numpy(zero_copy_only=False))
        if S.TEXT in batch.schema.names:
            chars.append(pc.fill_null(pc.utf8_length(batch.column(S.TEXT)), 0).to_numpy(zero_copy_only=False))
        for c in strings:
            vc = pc.value_counts(batch.column(c))
            d = counts[c]
            for item in vc.to_pylist():
                d[item["values"]] = d.get(item["values"], 0) + item["counts"]
            if len(d) > 1000:  # free text, not a category
                counts[c] = None
                strings = [s for s in strings if s != c]
    cols = {c: np.concatenate(v) if v else np.zeros(0) for c, v in values.items()}
    n = len(next(iter(cols.values()))) if cols else 0
    char_arr = np.concatenate(chars) if chars else np.ones(n)
    return cols, char_arr, {c: d for c, d in counts.items() if d}


def _batches(dataset, columns: list[str]):
    """The dataset's record batches, streamed; a corrupt file is a UserError, not a traceback."""
    it = dataset.to_batches(columns=columns, batch_size=65536)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except (pa.ArrowException, OSError) as e:
            raise UserError(f"cannot read the input as Parquet: {e}") from None
        yield batch


def quantile_table(x: np.ndarray, chars: np.ndarray) -> list[dict]:
    ok = ~np.isnan(x)
    x, w = x[ok], chars[ok]
    if not len(x):
        return []
    total_docs, total_chars = len(x), float(w.sum()) or 1.0
    order = np.argsort(x, kind="stable")
    xs, cw = x[order], np.cumsum(w[order])
    rows = []
    for q in QUANTILES:
        t = float(np.quantile(x, q))
        below = int(np.searchsorted(xs, t, side="left"))
        above = total_docs - int(np.searchsorted(xs, t, side="right"))
        chars_below = float(cw[below - 1]) if below else 0.0
        chars_above = float(cw[-1] - cw[total_docs - above - 1]) if above and total_docs - above - 1 >= 0 else (float(cw[-1]) if above else 0.0)
        rows.append(dict(quantile=q, threshold=t, docs_below=below / total_docs, chars_below=chars_below / total_chars,
                         docs_above=above / total_docs, chars_above=chars_above / total_chars))
    return rows


def _histogram(x: np.ndarray, name: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = x[~np.isnan(x)]
    fig, ax = plt.subplots(figsize=(6.4, 3.4), dpi=100)
    if len(x):
        lo, hi = np.quantile(x, [0.0, 0.995]) if len(np.unique(x)) > 50 else (x.min(), x.max())
        ax.hist(np.clip(x, lo, hi), bins=60 if hi > lo else 1, color="#4C72B0")
        for q, style in ((0.1, ":"), (0.5, "--"), (0.9, ":")):
            ax.axvline(np.quantile(x, q), color="#C44E52", linestyle=style, linewidth=1)
    title = str(name).replace("$", r"\$")  # a '$' in a column name would start matplotlib mathtext
    ax.set_title(f"{title}  (n={len(x):,}; dotted: p10/p90, dashed: median)", fontsize=9)
    ax.set_ylabel("documents")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _esc(value) -> str:
    """A data-derived string for HTML text or a quoted attribute."""
    return html.escape(str(value), quote=True)


def _png_name(name: str, used: set[str]) -> str:
    """``histograms/<safe name>.png``, unique among ``used``."""
    base = safe_filename(name)
    stem, i = base, 1
    while stem in used:
        i += 1
        stem = f"{base}-{i}"
    used.add(stem)
    return f"histograms/{stem}.png"


def _default_output(path: str) -> str:
    """``PATH/inspect``; for a file, ``inspect`` beside it, or in its run's folder when it lies in a run's ``data/``."""
    if is_remote(path):
        if not path.endswith(".parquet"):
            return path.rstrip("/") + "/inspect"
        folder = path.rsplit("/", 1)[0]
        if folder.rsplit("/", 1)[-1] == "data" and is_curate_output(folder.rsplit("/", 1)[0]):
            folder = folder.rsplit("/", 1)[0]
        return folder + "/inspect"
    if os.path.isdir(path):
        return os.path.join(path, "inspect")
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.basename(folder) == "data" and is_curate_output(os.path.dirname(folder)):
        folder = os.path.dirname(folder)  # never write the report into a data folder that runs read
    return os.path.join(os.path.relpath(folder) if not os.path.isabs(path) else folder, "inspect")


def inspect(path: str, output: str | None = None, columns: list[str] | None = None, console=None) -> str:
    """Print the tables and write ``OUTPUT/index.html`` and ``OUTPUT/histograms/*.png``; returns the index path.

    ``output`` defaults to ``PATH/inspect`` (for a Parquet file: ``inspect`` in its folder, or in its
    run's folder when the file is in a run's ``data/``); it must not hold the files read.
    """
    from rich.console import Console
    from rich.text import Text

    console = console or Console()
    files = _files(path)
    output = output or _default_output(path)
    check_output(output, files)
    cols, chars, counts = _collect(files, columns)
    if is_remote(output):  # drawn locally, then each file copied up
        import tempfile

        from curate.io.writers import join, write_bytes

        with tempfile.TemporaryDirectory(prefix="curate-inspect-") as local:
            _report(path, local, files, cols, chars, counts, console, quiet_path=True)
            for folder, _, names in os.walk(local):
                for name in sorted(names):
                    rel = os.path.relpath(os.path.join(folder, name), local).replace(os.sep, "/")
                    with open(os.path.join(folder, name), "rb") as f:
                        write_bytes(join(output, rel), f.read())
        index = join(output, "index.html")
        console.print(Text(f"report: {index}"))
        return index
    return _report(path, output, files, cols, chars, counts, console)


def _report(path: str, output: str, files, cols, chars, counts, console, quiet_path: bool = False) -> str:
    from rich.table import Table
    from rich.text import Text

    os.makedirs(os.path.join(output, "histograms"), exist_ok=True)
    used: set[str] = set()
    sections = []
    n_docs = len(chars)
    console.print(f"[bold]{n_docs:,} documents[/], {float(chars.sum()):,.0f} characters, {len(cols)} numeric columns")
    for name, x in cols.items():
        rows = quantile_table(x, chars)
        t = Table(title=Text(name), title_justify="left")
        for h in ("quantile", "threshold", "drop < t: docs", "chars", "drop > t: docs", "chars"):
            t.add_column(h, justify="right")
        for r in rows:
            t.add_row(f"{r['quantile']:.2f}", f"{r['threshold']:.4g}", f"{r['docs_below']:.1%}", f"{r['chars_below']:.1%}",
                      f"{r['docs_above']:.1%}", f"{r['chars_above']:.1%}")
        console.print(t)
        png = _png_name(name, used)
        _histogram(x, name, os.path.join(output, *png.split("/")))
        trs = "".join(
            f"<tr><td>{r['quantile']:.2f}</td><td>{r['threshold']:.4g}</td><td>{r['docs_below']:.1%}</td><td>{r['chars_below']:.1%}</td>"
            f"<td>{r['docs_above']:.1%}</td><td>{r['chars_above']:.1%}</td></tr>" for r in rows)
        sections.append(f"<h2>{_esc(name)}</h2><img src=\"{_esc(urllib.parse.quote(png))}\" alt=\"{_esc(name)}\"><table><tr><th>quantile</th><th>threshold t</th>"
                        f"<th>docs &lt; t</th><th>chars &lt; t</th><th>docs &gt; t</th><th>chars &gt; t</th></tr>{trs}</table>")
    for name, d in counts.items():
        top = sorted(d.items(), key=lambda kv: -kv[1])[:15]
        total = sum(d.values())
        t = Table(title=Text(f"{name} (top values)"), title_justify="left")
        t.add_column("value")
        t.add_column("docs", justify="right")
        t.add_column("share", justify="right")
        for v, c in top:
            t.add_row(Text(str(v)), f"{c:,}", f"{c / total:.1%}")
        console.print(t)
        trs = "".join(f"<tr><td>{_esc(v)}</td><td>{c:,}</td><td>{c / total:.1%}</td></tr>" for v, c in top)
        sections.append(f"<h2>{_esc(name)}</h2><table><tr><th>value</th><th>docs</th><th>share</th></tr>{trs}</table>")
    page = ("<!doctype html><meta charset='utf-8'><title>curate inspect</title><style>body{font-family:sans-serif;margin:2em}"
            "table{border-collapse:collapse;margin-bottom:2em}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}</style>"
            f"<h1>curate inspect: {_esc(path)}</h1><p>{n_docs:,} documents. 'docs &lt; t': share removed by a filter that "
            "drops scores below t; 'docs &gt; t': share removed by one that drops scores above t.</p>" + "".join(sections))
    index = os.path.join(output, "index.html")
    with open(index, "w") as f:
        f.write(page)
    if not quiet_path:
        console.print(Text(f"report: {index}"))
    return index
