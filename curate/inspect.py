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


# ------------------------------------------------------------------------- the stages' own thresholds

# score column -> the parameters of the stage that decide on it: (stage, parameter, "min" | "max", key).
# "min" drops documents below the value, "max" above it (the comparisons of each stage's ``filter``);
# ``key`` picks one entry of a mapping parameter (gopher_repetition's n-gram thresholds). The values
# themselves are read from the registered classes' defaults, never written here.
_THRESHOLD_PARAMS: dict[str, list[tuple]] = {
    "n_chars": [("length_filter", "min_chars", "min"), ("length_filter", "max_chars", "max")],
    "n_words": [("length_filter", "min_words", "min"), ("length_filter", "max_words", "max")],
    "lang_score": [("lang_id", "min_score", "min")],
    "gopher_word_count": [("gopher_quality", "min_doc_words", "min"), ("gopher_quality", "max_doc_words", "max")],
    "gopher_mean_word_length": [("gopher_quality", "min_avg_word_length", "min"),
                                ("gopher_quality", "max_avg_word_length", "max")],
    "gopher_hash_ratio": [("gopher_quality", "max_symbol_word_ratio", "max")],
    "gopher_ellipsis_ratio": [("gopher_quality", "max_symbol_word_ratio", "max")],
    "gopher_bullet_lines_ratio": [("gopher_quality", "max_bullet_lines_ratio", "max")],
    "gopher_ellipsis_lines_ratio": [("gopher_quality", "max_ellipsis_lines_ratio", "max")],
    "gopher_alpha_words_ratio": [("gopher_quality", "min_alpha_words_ratio", "min")],
    "gopher_stop_words": [("gopher_quality", "min_stop_words", "min")],
    "gopher_dup_para_frac": [("gopher_repetition", "dup_para_frac", "max")],
    "gopher_dup_para_char_frac": [("gopher_repetition", "dup_para_char_frac", "max")],
    "gopher_dup_line_frac": [("gopher_repetition", "dup_line_frac", "max")],
    "gopher_dup_line_char_frac": [("gopher_repetition", "dup_line_char_frac", "max")],
    **{f"gopher_top_{n}_gram_char_frac": [("gopher_repetition", "top_ngrams", "max", n)] for n in range(2, 5)},
    **{f"gopher_dup_{n}_gram_char_frac": [("gopher_repetition", "dup_ngrams", "max", n)] for n in range(5, 11)},
    "fineweb_line_punct_ratio": [("fineweb_quality", "line_punct_thr", "min")],
    "fineweb_short_line_ratio": [("fineweb_quality", "short_line_thr", "max")],
    "fineweb_char_dup_ratio": [("fineweb_quality", "char_duplicates_ratio", "max")],
    "fineweb_list_ratio": [("fineweb_quality", "new_line_ratio", "max")],
    "c4_num_sentences": [("c4_quality", "min_num_sentences", "min")],
    "c4_lorem_ipsum_lines": [("c4_quality", "filter_lorem_ipsum", "max")],  # on: any such line drops (> 0)
    "c4_curly_bracket_lines": [("c4_quality", "filter_curly_bracket", "max")],
    "quality": [("quality_classifier", "min_score", "min")],
    "preselect": [("preselect", "min_score", "min")],
    "toxicity": [("toxicity_classifier", "max_score", "max")],
    "toxic_words_fraction": [("toxic_words", "max_fraction", "max")],
}


def _default(cls, name: str):
    import dataclasses

    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
    return None


def default_thresholds() -> dict[str, list[dict]]:
    """Per score column, the default thresholds of the stage that adds it: [{stage, param, kind, value}].

    ``kind`` is "min" (the stage drops values below) or "max" (drops values above). A check that is off
    by default (a None default, e.g. ``length_filter.max_chars``) is left out; a stage that is not
    registered (an optional extra not installed) is skipped.
    """
    from curate.core.registry import all_stages

    registry = all_stages()
    out: dict[str, list[dict]] = {}
    for column, params in _THRESHOLD_PARAMS.items():
        for stage, param, kind, *key in params:
            cls = registry.get(stage)
            if cls is None:
                continue
            value = _default(cls, param)
            if key and isinstance(value, dict):
                value, param = value.get(key[0]), f"{param}[{key[0]}]"
            if isinstance(value, bool):
                value = 0 if value else None  # a switch: on means any such line drops the document
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            out.setdefault(column, []).append(dict(stage=stage, param=param, kind=kind, value=float(value)))
    return out


def dropped_share(x: np.ndarray, thresholds: list[dict]) -> float | None:
    """Share of the (non-null) documents that ``thresholds`` would drop: below a min or above a max."""
    x = x[~np.isnan(x)]
    if not thresholds or not len(x):
        return None
    drop = np.zeros(len(x), dtype=bool)
    for t in thresholds:
        drop |= (x < t["value"]) if t["kind"] == "min" else (x > t["value"])
    return float(drop.mean())


def column_kind(x: np.ndarray) -> str | None:
    """"all null" or "constant <v>" for a column not worth a histogram; None otherwise."""
    ok = x[~np.isnan(x)]
    if not len(ok):
        return "all null"
    lo, hi = float(ok.min()), float(ok.max())
    return f"constant {lo:.6g}" if lo == hi else None


def summarize(cols: dict[str, np.ndarray], chars: np.ndarray, counts: dict[str, dict]) -> dict:
    """The one-screen summary, as data: per numeric column n, nulls, p1/p50/p99 and the share the
    stage's default thresholds drop; skipped columns with why; per ``<stage>_reason`` column (what
    ``curate score`` adds for a filter) the share that stage flags with its configured parameters."""
    thresholds = default_thresholds()
    columns, skipped = [], {}
    for name, x in cols.items():
        ok = x[~np.isnan(x)]
        why = column_kind(x)
        if why:
            skipped[name] = why
            continue
        p1, p50, p99 = (float(v) for v in np.quantile(ok, [0.01, 0.5, 0.99]))
        th = thresholds.get(name, [])
        columns.append(dict(column=name, n=int(len(ok)), nulls=int(len(x) - len(ok)), p1=p1, p50=p50, p99=p99,
                            min=float(ok.min()), max=float(ok.max()), thresholds=th,
                            dropped_at_default=dropped_share(x, th)))
    flagged = {}
    for name, d in counts.items():
        if name.endswith("_reason"):
            total = sum(d.values())
            n_flagged = sum(c for v, c in d.items() if v is not None)
            flagged[name[: -len("_reason")]] = dict(column=name, flagged=n_flagged, share=n_flagged / total if total else 0.0,
                                                   reasons={str(v): c for v, c in d.items() if v is not None})
    for name, d in counts.items():
        if len([v for v in d if v is not None]) <= 1 and not name.endswith("_reason"):
            values = [v for v in d if v is not None]
            skipped[name] = f"constant {values[0]!r}" if values else "all null"
    return dict(documents=int(len(chars)), characters=float(chars.sum()), columns=columns, flagged=flagged,
                skipped=skipped)


def _histogram(x: np.ndarray, name: str, path: str, thresholds: list[dict] = ()) -> str:
    """Draw the PNG; returns the clipping note ("" when the whole range is drawn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = x[~np.isnan(x)]
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    note = ""
    if len(x):
        lo, hi = (np.quantile(x, [0.0, 0.995]) if len(np.unique(x)) > 50 else (x.min(), x.max()))
        n_clipped = int((x > hi).sum())
        if n_clipped:  # the long tail is drawn in the last bin, and said so
            note = (f"clipped at p99.5 = {hi:.4g}: {n_clipped:,} document{'s' if n_clipped != 1 else ''} above "
                    f"(max {x.max():.4g}) {'are' if n_clipped != 1 else 'is'} in the last bin")
        ax.hist(np.clip(x, lo, hi), bins=60 if hi > lo else 1, color="#4C72B0")
        for q, style in ((0.1, ":"), (0.5, "--"), (0.9, ":")):
            ax.axvline(np.quantile(x, q), color="#888888", linestyle=style, linewidth=1)
        for t in thresholds:
            v = t["value"]
            label = f"{t['stage']}.{t['param']} = {v:.4g} ({'drops below' if t['kind'] == 'min' else 'drops above'})"
            if lo <= v <= hi:
                ax.axvline(v, color="#C44E52", linewidth=1.5, label=label)
            else:  # off the drawn range: said in the legend, not drawn at a wrong place
                ax.plot([], [], color="#C44E52", linewidth=1.5, label=label + ", off the axis")
        if thresholds:
            ax.legend(fontsize=7, loc="upper right")
    title = str(name).replace("$", r"\$")  # a '$' in a column name would start matplotlib mathtext
    ax.set_title(f"{title}  (n={len(x):,}; grey dotted: p10/p90, dashed: median; red: default threshold)", fontsize=8)
    ax.set_ylabel("documents")
    if note:
        ax.set_xlabel(note.replace("$", r"\$"), fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return note


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


def inspect(path: str, output: str | None = None, columns: list[str] | None = None, console=None,
            as_json: bool = False) -> str:
    """Print the summary and tables and write ``OUTPUT/index.html``, ``OUTPUT/summary.json`` and
    ``OUTPUT/histograms/*.png``; returns the index path. ``as_json``: print the summary as JSON instead.

    ``output`` defaults to ``PATH/inspect`` (for a Parquet file: ``inspect`` in its folder, or in its
    run's folder when the file is in a run's ``data/``); it must not hold the files read.
    """
    import io

    from rich.console import Console
    from rich.text import Text

    console = console or Console()
    shown = Console(file=io.StringIO()) if as_json else console  # --json: only the JSON on stdout
    files = _files(path)
    output = output or _default_output(path)
    check_output(output, files)
    cols, chars, counts = _collect(files, columns)
    summary = summarize(cols, chars, counts)
    if is_remote(output):  # drawn locally, then each file copied up
        import tempfile

        from curate.io.writers import join, write_bytes

        with tempfile.TemporaryDirectory(prefix="curate-inspect-") as local:
            _report(path, local, summary, cols, chars, counts, shown, quiet_path=True)
            for folder, _, names in os.walk(local):
                for name in sorted(names):
                    rel = os.path.relpath(os.path.join(folder, name), local).replace(os.sep, "/")
                    with open(os.path.join(folder, name), "rb") as f:
                        write_bytes(join(output, rel), f.read())
        index = join(output, "index.html")
        shown.print(Text(f"report: {index}"))
    else:
        index = _report(path, output, summary, cols, chars, counts, shown)
    if as_json:
        import json

        console.file.write(json.dumps(dict(summary, input=path, report=index), indent=2) + "\n")
    return index


def _num(v: float) -> str:
    return f"{v:.4g}"


def _threshold_text(th: list[dict]) -> str:
    return ", ".join(f"{'<' if t['kind'] == 'min' else '>'} {t['value']:.4g} ({t['stage']}.{t['param']})" for t in th)


def _summary_table(summary: dict):
    from rich.table import Table
    from rich.text import Text

    t = Table(title=Text(f"summary: {summary['documents']:,} documents, {summary['characters']:,.0f} characters"),
              title_justify="left")
    for h in ("column", "n", "nulls", "p1", "p50", "p99", "default drops", "dropped"):
        t.add_column(h, justify="left" if h in ("column", "default drops") else "right")
    for c in summary["columns"]:
        share = c["dropped_at_default"]
        t.add_row(Text(c["column"]), f"{c['n']:,}", f"{c['nulls']:,}", _num(c["p1"]), _num(c["p50"]), _num(c["p99"]),
                  Text(_threshold_text(c["thresholds"]) or "-"), "-" if share is None else f"{share:.1%}")
    return t


def _report(path: str, output: str, summary: dict, cols, chars, counts, console, quiet_path: bool = False) -> str:
    import json

    from rich.table import Table
    from rich.text import Text

    os.makedirs(os.path.join(output, "histograms"), exist_ok=True)
    used: set[str] = set()
    sections = []
    n_docs = summary["documents"]
    skipped = summary["skipped"]
    # 1. the one-screen summary
    console.print(_summary_table(summary))
    for stage, f in summary["flagged"].items():
        console.print(Text(f"{stage}: flags {f['flagged']:,} documents ({f['share']:.1%}) with its parameters "
                           f"(column {f['column']})"))
    if skipped:
        console.print(Text("skipped: " + ", ".join(f"{k} ({v})" for k, v in skipped.items())))
    srows = "".join(
        f"<tr><td>{_esc(c['column'])}</td><td>{c['n']:,}</td><td>{c['nulls']:,}</td><td>{_num(c['p1'])}</td>"
        f"<td>{_num(c['p50'])}</td><td>{_num(c['p99'])}</td><td>{_esc(_threshold_text(c['thresholds']) or '-')}</td>"
        f"<td>{'-' if c['dropped_at_default'] is None else format(c['dropped_at_default'], '.1%')}</td></tr>"
        for c in summary["columns"])
    head = ("<h2>summary</h2><table><tr><th>column</th><th>n</th><th>nulls</th><th>p1</th><th>p50</th><th>p99</th>"
            f"<th>stage default drops</th><th>dropped at default</th></tr>{srows}</table>")
    if summary["flagged"]:
        head += "<ul>" + "".join(f"<li>{_esc(stage)}: flags {f['flagged']:,} documents ({f['share']:.1%}) with its "
                                 f"parameters (column {_esc(f['column'])})</li>" for stage, f in summary["flagged"].items()) + "</ul>"
    if skipped:
        head += "<p>skipped: " + ", ".join(f"{_esc(k)} ({_esc(v)})" for k, v in skipped.items()) + "</p>"
    # 2. per column: quantiles, drop rates at each, histogram with the default thresholds drawn
    by_name = {c["column"]: c for c in summary["columns"]}
    for name, x in cols.items():
        if name in skipped:
            continue
        rows = quantile_table(x, chars)
        th = by_name[name]["thresholds"]
        t = Table(title=Text(name), title_justify="left")
        for h in ("quantile", "threshold", "drop < t: docs", "chars", "drop > t: docs", "chars"):
            t.add_column(h, justify="right")
        for r in rows:
            t.add_row(f"{r['quantile']:.2f}", f"{r['threshold']:.4g}", f"{r['docs_below']:.1%}", f"{r['chars_below']:.1%}",
                      f"{r['docs_above']:.1%}", f"{r['chars_above']:.1%}")
        console.print(t)
        png = _png_name(name, used)
        default = (f"<p>default threshold: {_esc(_threshold_text(th))}; drops {by_name[name]['dropped_at_default']:.1%} "
                   "of the documents</p>") if th else ""
        note = _histogram(x, name, os.path.join(output, *png.split("/")), th)
        if note:
            default += f"<p><small>{_esc(note)}</small></p>"
        trs = "".join(
            f"<tr><td>{r['quantile']:.2f}</td><td>{r['threshold']:.4g}</td><td>{r['docs_below']:.1%}</td><td>{r['chars_below']:.1%}</td>"
            f"<td>{r['docs_above']:.1%}</td><td>{r['chars_above']:.1%}</td></tr>" for r in rows)
        sections.append(f"<h2>{_esc(name)}</h2>{default}<img src=\"{_esc(urllib.parse.quote(png))}\" alt=\"{_esc(name)}\">"
                        "<table><tr><th>quantile</th><th>threshold t</th>"
                        f"<th>docs &lt; t</th><th>chars &lt; t</th><th>docs &gt; t</th><th>chars &gt; t</th></tr>{trs}</table>")
    # 3. categorical columns: value counts (nulls counted as "(null)")
    categorical = {}
    for name, d in counts.items():
        if name in skipped:
            continue
        top = sorted(d.items(), key=lambda kv: -kv[1])[:15]
        total = sum(d.values())
        categorical[name] = {"(null)" if v is None else str(v): c for v, c in top}
        t = Table(title=Text(f"{name} (top values)"), title_justify="left")
        t.add_column("value")
        t.add_column("docs", justify="right")
        t.add_column("share", justify="right")
        for v, c in top:
            t.add_row(Text("(null)" if v is None else str(v)), f"{c:,}", f"{c / total:.1%}")
        console.print(t)
        trs = "".join(f"<tr><td>{'<i>(null)</i>' if v is None else _esc(v)}</td><td>{c:,}</td><td>{c / total:.1%}</td></tr>"
                      for v, c in top)
        sections.append(f"<h2>{_esc(name)} (top values)</h2><table><tr><th>value</th><th>docs</th><th>share</th></tr>"
                        f"{trs}</table>")
    summary["categorical"] = categorical
    page = ("<!doctype html><meta charset='utf-8'><title>curate inspect</title><style>body{font-family:sans-serif;margin:2em}"
            "table{border-collapse:collapse;margin-bottom:2em}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}</style>"
            f"<h1>curate inspect: {_esc(path)}</h1><p>{n_docs:,} documents. 'docs &lt; t': share removed by a filter that "
            "drops scores below t; 'docs &gt; t': share removed by one that drops scores above t. 'dropped at default': "
            "the share the stage that adds the column drops with its default parameters (the red lines in the "
            "histograms).</p>" + head + "".join(sections))
    index = os.path.join(output, "index.html")
    with open(index, "w") as f:
        f.write(page)
    with open(os.path.join(output, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    if not quiet_path:
        console.print(Text(f"report: {index}"))
    return index
