"""Training fastText classifiers: ``curate train-scorer``, table/corpus loaders, held-out metrics.

:func:`train_classifier` (texts + bool labels -> model file + held-out accuracy/ROC AUC), the
loaders :func:`load_labeled` / :func:`load_corpus`, and the ``curate train-scorer`` command
(:func:`add_train_scorer_arguments`, :func:`run_train_scorer`; :func:`main` runs the same command
without the ``curate`` CLI). The model format and text preprocessing are shared with the scoring
stages in :mod:`curate.scorers.fasttext_classifier`.
"""
from __future__ import annotations

import argparse
import difflib
import glob as globmod
import json
import os
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa

from curate.core.safety import NOT_DATA, UserError, resolve_input
from curate.scorers.fasttext_classifier import DEFAULT_MAX_CHARS, KINDS, NEG, POS, predict_positive, preprocess

# ------------------------------------------------------------------------------------ metrics


def roc_auc(labels, scores) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with tied scores given average ranks); None for one class."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    starts = np.flatnonzero(np.concatenate([[True], sorted_s[1:] != sorted_s[:-1]]))
    ends = np.append(starts[1:], len(s))
    avg = (starts + ends + 1) / 2.0  # 1-based average rank of each tie group
    ranks = np.empty(len(s), dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def binary_metrics(labels, scores, threshold: float = 0.5) -> dict:
    y = np.asarray(labels, dtype=bool)
    p = np.asarray(scores, dtype=np.float64) >= threshold
    tp, fp, fn = int((p & y).sum()), int((p & ~y).sum()), int((~p & y).sum())
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else None
    return {"accuracy": float((p == y).mean()) if len(y) else None, "auc": roc_auc(y, scores),
            "precision": precision, "recall": recall, "f1": f1, "threshold": threshold}


def stratified_split(labels, valid_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, valid indices): a seeded split taking ``valid_fraction`` of each class."""
    y = np.asarray(labels, dtype=bool)
    rng = np.random.default_rng(seed)
    train, valid = [], []
    for cls in (True, False):
        idx = np.flatnonzero(y == cls)
        idx = idx[rng.permutation(len(idx))]
        k = int(round(valid_fraction * len(idx)))
        if valid_fraction > 0 and len(idx) >= 2:
            k = min(max(k, 1), len(idx) - 1)
        valid.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(valid))


# ------------------------------------------------------------------------------------ training


_TRAIN_SCRIPT = """
import json, sys
import fasttext
cfg = json.loads(sys.argv[1])
fasttext.FastText.eprint = lambda *a, **k: None
model = fasttext.train_supervised(**cfg["params"])
if cfg["quantize"]:
    model.quantize(input=cfg["params"]["input"], qnorm=True, retrain=False, thread=cfg["params"]["thread"])
model.save_model(cfg["output"])
"""


def _train_subprocess(params: dict, output: str, quantize: bool) -> None:
    """Run ``fasttext.train_supervised`` (and ``quantize``) in a fresh Python process, then save.

    fastText keeps state across trainings in one process: after a number of models have been
    trained, every later training fails with "Encountered NaN." (and results drift with what
    was trained before). A fresh process per model makes training reliable and reproducible.
    """
    import subprocess

    cfg = json.dumps({"params": params, "output": output, "quantize": bool(quantize)})
    proc = subprocess.run([sys.executable, "-c", _TRAIN_SCRIPT, cfg], capture_output=True, text=True)
    if proc.returncode != 0 or not os.path.exists(output):
        err = (proc.stderr or proc.stdout or "").strip().splitlines()
        raise RuntimeError(f"fastText training failed: {err[-1] if err else f'exit code {proc.returncode}'}")
    if params.get("verbose"):
        sys.stderr.write(proc.stderr)


def train_classifier(texts, labels, output_path: str, *, epoch: int = 5, lr: float = 0.1, word_ngrams: int = 2,
                     dim: int = 64, bucket: int = 200_000, min_count: int = 1, seed: int = 0,
                     valid_fraction: float = 0.1, max_chars: int = DEFAULT_MAX_CHARS, preprocess_mode: str = "curate",
                     threads: int | None = None, quantize: bool | None = None, verbose: bool = False) -> dict:
    """Train a binary fastText classifier (``__label__pos`` where ``labels`` is true) and save it.

    A seeded, stratified ``valid_fraction`` of the documents is held out; the model is trained
    on the rest and evaluated on it with the same preprocessing and prediction code as the
    stages. Saves ``output_path`` (quantized when it ends in ``.ftz`` or ``quantize`` is true).
    Returns ``{accuracy, auc, precision, recall, f1, n_train, n_valid, n_train_pos, ...}``
    (accuracy and AUC are None without a held-out split).
    """
    import fasttext

    fasttext.FastText.eprint = lambda *a, **k: None
    y = np.asarray([bool(v) for v in labels], dtype=bool)
    prepped = preprocess(pa.array(list(texts), type=pa.string()), max_chars, preprocess_mode).to_pylist()
    if len(prepped) != len(y):
        raise ValueError(f"{len(prepped)} texts but {len(y)} labels")
    nonblank = np.asarray([bool(t) for t in prepped], dtype=bool)
    idx_all = np.flatnonzero(nonblank)
    y_nb = y[idx_all]
    if y_nb.all() or not y_nb.any():
        raise ValueError(f"training needs documents of both classes (positives: {int(y_nb.sum())}, negatives: {int((~y_nb).sum())})")
    tr, va = stratified_split(y_nb, valid_fraction, seed)
    tr, va = idx_all[tr], idx_all[va]
    order = tr[np.random.default_rng(seed + 1).permutation(len(tr))]  # fastText's SGD wants shuffled input
    quantize = output_path.endswith(".ftz") if quantize is None else quantize
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="curate-fasttext-") as tmp:
        train_file = os.path.join(tmp, "train.txt")
        with open(train_file, "w", encoding="utf-8") as f:
            for i in order:
                f.write(f"{POS if y[i] else NEG} {prepped[i]}\n")
        folder = os.path.dirname(os.path.abspath(output_path))
        os.makedirs(folder, exist_ok=True)
        tmp_out = os.path.join(folder, f".{os.path.basename(output_path)}.tmp")
        params = dict(input=train_file, epoch=int(epoch), lr=float(lr), wordNgrams=int(word_ngrams), dim=int(dim),
                      bucket=int(bucket), minCount=int(min_count), seed=int(seed), loss="softmax",
                      thread=int(threads or os.cpu_count() or 1), verbose=2 if verbose else 0)
        _train_subprocess(params, tmp_out, quantize)
        os.replace(tmp_out, output_path)
        model = fasttext.load_model(output_path)
    seconds = time.time() - t0
    metrics = {"accuracy": None, "auc": None, "precision": None, "recall": None, "f1": None, "threshold": 0.5}
    if len(va):
        p = predict_positive(model, [prepped[i] for i in va])
        metrics = binary_metrics(y[va], p)
    metrics.update(n_train=int(len(tr)), n_valid=int(len(va)), n_train_pos=int(y[tr].sum()),
                   n_valid_pos=int(y[va].sum()), n_blank_skipped=int((~nonblank).sum()), train_seconds=round(seconds, 3),
                   model_bytes=os.path.getsize(output_path))
    return metrics


# ------------------------------------------------------------------------------------ loading training data

COMPRESSIONS = (".gz", ".bz2", ".zst", ".zstd", ".lz4", ".xz")


def _format_of(path: str) -> str:
    name = path.lower()
    for c in COMPRESSIONS:
        if name.endswith(c):
            name = name[: -len(c)]
            break
    for ext, fmt in ((".csv", "csv"), (".tsv", "tsv"), (".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "jsonl"),
                     (".parquet", "parquet"), (".arrow", "arrow"), (".feather", "arrow"), (".txt", "txt")):
        if name.endswith(ext):
            return fmt
    raise ValueError(f"{path}: unknown file type (csv, tsv, jsonl, parquet, arrow or txt, optionally compressed)")


def _stream(path: str):
    compression = "zstd" if path.endswith(".zst") else "detect"
    return pa.input_stream(path, compression=compression)


def expand_paths(patterns) -> list[str]:
    """Sorted files matching each glob (a plain path must exist); ValueError naming a pattern that matches nothing.

    A folder means the data files in it (a ``curate run`` output: its ``data/``); a path in an
    output whose run did not finish (``_INCOMPLETE``) is refused.
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    out = []
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise ValueError(f"a data path must be a file, glob or folder, got {pattern!r}")
        pattern = resolve_input(os.path.expanduser(pattern), "data")
        if os.path.isdir(pattern):
            pattern = os.path.join(pattern, "[!._]*")
        matches = sorted(globmod.glob(pattern))
        files = [m for m in matches if os.path.isfile(m) and os.path.basename(m) not in NOT_DATA]
        if not files:
            raise ValueError(f"{pattern}: no such file" if not globmod.has_magic(pattern) else f"{pattern}: matches no file")
        out += files
    return out


def read_rows(path: str, columns: list[str]) -> dict[str, list]:
    """Columns of a csv/tsv/jsonl/parquet/arrow file (optionally compressed) as Python lists."""
    fmt = _format_of(path)
    if fmt in ("csv", "tsv"):
        import pyarrow.csv as pcsv

        with _stream(path) as f:
            table = pcsv.read_csv(f, parse_options=pcsv.ParseOptions(delimiter="\t" if fmt == "tsv" else ",", newlines_in_values=True),
                                  convert_options=pcsv.ConvertOptions(column_types={c: pa.string() for c in columns}))
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
        table = pq.read_table(path, columns=[c for c in columns if c in names])
    elif fmt == "arrow":
        import pyarrow.feather as feather

        table = feather.read_table(path)
    elif fmt == "jsonl":
        data: dict[str, list] = {c: [] for c in columns}
        with _stream(path) as f:
            for lineno, line in enumerate(f.read().decode("utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
                for c in columns:
                    data[c].append(rec.get(c) if isinstance(rec, dict) else None)
        present = {c for c in columns if any(v is not None for v in data[c])}
        missing = [c for c in columns if c not in present]
        if missing and any(len(v) for v in data.values()):
            raise ValueError(f"{path}: no column {missing[0]!r} in any record")
        return data
    else:
        raise ValueError(f"{path}: a {fmt} file has no columns")
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: no column {missing[0]!r} (columns: {', '.join(table.column_names)})")
    return {c: table.column(c).to_pylist() for c in columns}


def _where_mask(rows: dict[str, list], where: dict | None, n: int, path: str) -> np.ndarray:
    """Row filter: ``{column: [allowed values]}`` (compared as strings) or ``{column: {min: x, max: y}}``."""
    keep = np.ones(n, dtype=bool)
    for col, cond in (where or {}).items():
        vals = rows[col]
        if isinstance(cond, dict):
            unknown = set(cond) - {"min", "max"}
            if unknown:
                raise ValueError(f"{path}: where {col}: only 'min' and 'max' are allowed, got {sorted(unknown)}")
            num = np.array([np.nan if v is None or v == "" else float(v) for v in vals], dtype=np.float64)
            ok = ~np.isnan(num)
            if "min" in cond:
                ok &= num >= float(cond["min"])
            if "max" in cond:
                ok &= num <= float(cond["max"])
        else:
            allowed = {str(v) for v in (cond if isinstance(cond, list) else [cond])}
            ok = np.array([v is not None and str(v) in allowed for v in vals], dtype=bool)
        keep &= ok
    return keep


def _limit(idx: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    if limit is None or len(idx) <= limit:
        return idx
    return np.sort(np.random.default_rng(seed).choice(idx, size=int(limit), replace=False))


def _split_values(values) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str):
        values = values.split(",")
    return [str(v).strip() for v in values if str(v).strip()]


def load_labeled(path, text_column: str, label_column: str, positive, *, where: dict | None = None,
                 limit: int | None = None, seed: int = 0) -> tuple[list[str], list[bool]]:
    """(texts, labels) from labeled tables (csv/tsv/jsonl(.gz)/parquet/arrow; a path, glob or list).

    A row is positive when ``str(label)`` is one of ``positive`` (a list, or a comma-separated
    string), compared case-insensitively. Rows with a null or blank text or a null label are skipped.
    A ``positive`` value that no row has is refused (see :func:`check_positive`).
    """
    texts, labels, _, seen = _load_labeled(path, text_column, label_column, positive, where=where, limit=limit, seed=seed)
    check_positive(positive, seen, label_column, where)
    return texts, labels


def check_positive(positive, seen: dict[str, int], label_column: str = "label", where=None) -> list[str]:
    """Refuse ``positive`` values that match no row's label: all of them, or one close to a label (a typo).

    ``seen`` counts the rows of each label value (casefolded). A value that matches no row and
    resembles none of the labels (``hate`` in a table labelled offensive/neither) is returned as a
    warning, since the table may simply have no row of that class.
    """
    values = _split_values(positive)
    found = ", ".join(f"{v} ({n:,})" for v, n in sorted(seen.items(), key=lambda kv: -kv[1])[:20])
    if seen:
        found = f"the {label_column!r} values are {found}" + (", ..." if len(seen) > 20 else "")
    else:
        found = f"no row has a {label_column!r} value"
    after = " (after where)" if where else ""
    unmatched = [v for v in values if v.casefold() not in seen]
    problems, warnings = [], []
    for v in unmatched:
        close = difflib.get_close_matches(v.casefold(), list(seen), n=1, cutoff=0.6)
        if close:
            problems.append(f"--positive value {v!r} matches no row{after} (did you mean {close[0]!r}?)")
        else:
            warnings.append(f"--positive value {v!r} matches no row{after}")
    if len(unmatched) == len(values):
        problems, warnings = [f"--positive {','.join(values)} matches no row's label{after}" + "".join(
            f" (did you mean {c[0]!r} for {v!r}?)" for v in unmatched
            if (c := difflib.get_close_matches(v.casefold(), list(seen), n=1, cutoff=0.6)))], []
    if problems:
        raise UserError("; ".join(problems) + f"; {found}")
    return [w + f"; {found}" for w in warnings]


def _load_labeled(path, text_column: str, label_column: str, positive, *, where: dict | None = None,
                  limit: int | None = None, seed: int = 0) -> tuple[list[str], list[bool], list[str], dict[str, int]]:
    """:func:`load_labeled` without the check of ``positive``; also the label value of each text, and
    {label value: rows} over every usable row (before ``limit``)."""
    pos = {v.casefold() for v in _split_values(positive)}
    if not pos:
        raise ValueError("positive: give the label values that mark a positive row, e.g. --positive hate,offensive")
    texts, labels, values = [], [], []
    seen: dict[str, int] = {}
    for f in expand_paths(path):
        cols = list(dict.fromkeys([text_column, label_column, *(where or {})]))
        rows = read_rows(f, cols)
        n = len(rows[text_column])
        ok = _where_mask(rows, where, n, f)
        ok &= np.array([isinstance(t, str) and bool(t.strip()) and lab is not None
                        for t, lab in zip(rows[text_column], rows[label_column])], dtype=bool)
        for i in np.flatnonzero(ok):
            key = str(rows[label_column][i]).strip().casefold()
            seen[key] = seen.get(key, 0) + 1
        for i in _limit(np.flatnonzero(ok), limit, seed):
            value = str(rows[label_column][i]).strip().casefold()
            texts.append(rows[text_column][i])
            labels.append(value in pos)
            values.append(value)
    return texts, labels, values, seen


def load_corpus(spec, text_column: str = "text", *, seed: int = 0) -> list[str]:
    """Texts of one corpus: a path/glob (or list), or a dict ``{path, text_column, where, limit, txt_unit}``.

    jsonl/csv/parquet/arrow files give one document per row (``text_column``); ``.txt`` files
    one document per file (``txt_unit: file``) or per non-blank line (``txt_unit: line``).
    """
    if isinstance(spec, dict):
        unknown = set(spec) - {"path", "text_column", "where", "limit", "txt_unit"}
        if unknown:
            raise ValueError(f"corpus {spec.get('path')!r}: unknown keys {sorted(unknown)} (path, text_column, where, limit, txt_unit)")
        if "path" not in spec:
            raise ValueError(f"corpus {spec!r}: no 'path'")
        paths, text_column = spec["path"], spec.get("text_column", text_column)
        where, limit, unit = spec.get("where"), spec.get("limit"), spec.get("txt_unit", "file")
    else:
        paths, where, limit, unit = spec, None, None, "file"
    texts: list[str] = []
    for f in expand_paths(paths):
        if _format_of(f) == "txt":
            with _stream(f) as s:
                content = s.read().decode("utf-8", errors="replace")
            docs = [ln for ln in content.splitlines() if ln.strip()] if unit == "line" else [content]
            texts += [d for d in docs if d.strip()]
            continue
        cols = list(dict.fromkeys([text_column, *(where or {})]))
        rows = read_rows(f, cols)
        ok = _where_mask(rows, where, len(rows[text_column]), f)
        ok &= np.array([isinstance(t, str) and bool(t.strip()) for t in rows[text_column]], dtype=bool)
        texts += [rows[text_column][i] for i in np.flatnonzero(ok)]
    if limit is not None and len(texts) > limit:
        texts = [texts[i] for i in _limit(np.arange(len(texts)), limit, seed)]
    return texts


# ------------------------------------------------------------------------------------ curate train-scorer

TRAIN_SETTINGS = {  # name: (type, default)
    "epoch": (int, 5), "lr": (float, 0.1), "word_ngrams": (int, 2), "dim": (int, 64), "bucket": (int, 200_000),
    "min_count": (int, 1), "seed": (int, 0), "valid_fraction": (float, 0.1), "max_chars": (int, DEFAULT_MAX_CHARS),
    "threads": (int, None), "max_per_class": (int, None),
}
SETTING_RANGES = {  # name: (lowest, highest) allowed; None: no bound
    "epoch": (1, None), "lr": (1e-9, None), "word_ngrams": (1, None), "dim": (1, None), "bucket": (1, None),
    "min_count": (1, None), "valid_fraction": (0.0, 1.0), "max_chars": (1, None), "threads": (1, None),
    "max_per_class": (1, None),
}
RECIPE_KEYS = {"kind", "data", "text_column", "label_column", "positive", "positive_data", "negative_data",
               "output", "quantize", "where", "description"} | set(TRAIN_SETTINGS)
POSITIVE_NAME = {"quality": "high_quality", "toxicity": "toxic", "preselect": "predictive"}
NEGATIVE_NAME = {"quality": "low_quality", "toxicity": "non_toxic", "preselect": "unpredictive"}
# preselect: trained on the labels of `curate preselect label` (--data OUTPUT: its labels.parquet), with
# PreSelect's settings unless given (3 epochs, lr 0.1, word bigrams)
TRAIN_KINDS = KINDS + ("preselect",)
PRESELECT_DEFAULTS = {"epoch": 3, "lr": 0.1, "word_ngrams": 2, "label_column": "label", "positive": "pos"}
STAGE_OF = {"quality": "quality_classifier", "toxicity": "toxicity_classifier", "preselect": "preselect"}


def _preselect_data(path):
    """A `curate preselect label` output folder means its labels.parquet."""
    if isinstance(path, str) and os.path.isdir(path) and os.path.isfile(os.path.join(path, "labels.parquet")):
        return os.path.join(path, "labels.parquet")
    return path


def add_train_scorer_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``curate train-scorer`` (for a subparser)."""
    parser.description = (
        "Train a fastText classifier for the quality_classifier / toxicity_classifier / preselect stages (preselect: --data "
        "the output folder of `curate preselect label`). Either one labeled "
        "table (--data, --text-column, --label-column, --positive) or two corpora (--positive-data, --negative-data), "
        "or a training recipe (--recipe scorers/toxicity.yaml; flags override it). A seeded, stratified part is held "
        "out; its accuracy and ROC AUC are printed and written with the settings to MODEL.json.")
    parser.add_argument("kind", nargs="?", choices=TRAIN_KINDS, help="which classifier (default: the recipe's kind)")
    parser.add_argument("--recipe", help="training recipe YAML (see scorers/README.md)")
    parser.add_argument("--data", action="append", help="labeled table: csv, tsv, jsonl(.gz), parquet (repeatable, globs)")
    parser.add_argument("--text-column", help="text column (default: text)")
    parser.add_argument("--label-column", help="label column of --data (default: label)")
    parser.add_argument("--positive", help="comma-separated label values that make a row positive (toxic / high quality)")
    parser.add_argument("--positive-data", action="append", help="positive corpus: file or glob of jsonl/parquet/csv/txt (repeatable)")
    parser.add_argument("--negative-data", action="append", help="negative corpus: file or glob (repeatable)")
    parser.add_argument("--output", "-o", help="model file (.bin, or .ftz to quantize); default models/KIND.bin")
    parser.add_argument("--quantize", action="store_true", default=None, help="quantize the model (smaller; implied by .ftz)")
    for name, (tp, default) in TRAIN_SETTINGS.items():
        parser.add_argument("--" + name.replace("_", "-"), type=tp, default=None,
                            help=f"(default {default})" if default is not None else "(default: all)")
    return parser


def _load_recipe(path: str) -> dict:
    import yaml

    with open(path) as f:
        try:
            data = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a training recipe is a mapping (kind, data or positive_data/negative_data, ...)")
    unknown = sorted(set(data) - RECIPE_KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown keys {unknown} (known: {', '.join(sorted(RECIPE_KEYS))})")
    return data


def _as_list(v) -> list:
    return [] if v is None else v if isinstance(v, list) else [v]


def resolve_config(args) -> dict:
    """The training configuration: the recipe (if any), overridden by the command-line flags."""
    cfg = _load_recipe(args.recipe) if getattr(args, "recipe", None) else {}
    flags = {"kind": args.kind, "data": args.data, "text_column": args.text_column, "label_column": args.label_column,
             "positive": args.positive, "positive_data": args.positive_data, "negative_data": args.negative_data,
             "output": args.output, "quantize": args.quantize}
    flags.update({k: getattr(args, k, None) for k in TRAIN_SETTINGS})
    cfg.update({k: v for k, v in flags.items() if v is not None})
    if cfg.get("kind") not in TRAIN_KINDS:
        raise ValueError(f"give the classifier kind: {', '.join(TRAIN_KINDS)}")
    if cfg["kind"] == "preselect":
        for k, v in PRESELECT_DEFAULTS.items():
            cfg.setdefault(k, v)
        if cfg.get("data"):
            cfg["data"] = [_preselect_data(d) for d in _as_list(cfg["data"])]
    if args.data is not None:  # flags pick the data source: drop the recipe's other one
        cfg.pop("positive_data", None), cfg.pop("negative_data", None)
    elif args.positive_data is not None or args.negative_data is not None:
        cfg.pop("data", None)
    has_table = bool(cfg.get("data"))
    has_corpora = bool(cfg.get("positive_data")) or bool(cfg.get("negative_data"))
    if has_table == has_corpora:
        raise ValueError("give either --data (one labeled table) or --positive-data and --negative-data (two corpora)")
    if has_corpora and not (cfg.get("positive_data") and cfg.get("negative_data")):
        raise ValueError("two-corpus training needs both --positive-data and --negative-data")
    if has_table and not cfg.get("positive"):
        raise ValueError("--data needs --positive VALUES: the label values of positive rows")
    cfg.setdefault("output", os.path.join("models", f"{cfg['kind']}.bin"))
    if not isinstance(cfg["output"], str) or not cfg["output"]:
        raise ValueError(f"output must be a model file path, got {cfg['output']!r}")
    for k, (tp, default) in TRAIN_SETTINGS.items():
        try:
            cfg[k] = default if cfg.get(k) is None else tp(cfg[k])
        except (TypeError, ValueError):
            raise ValueError(f"{k} must be {tp.__name__}, got {cfg[k]!r}") from None
        low, high = SETTING_RANGES.get(k, (None, None))
        value = cfg[k]
        if value is not None and ((low is not None and value < low) or (high is not None and value > high)):
            bound = (f"between {low} and {high}" if low is not None and high is not None
                     else f"at least {low}" if low is not None else f"at most {high}")
            raise ValueError(f"--{k.replace('_', '-')} must be {bound}, got {value}")
    if cfg["valid_fraction"] >= 1:
        raise ValueError(f"--valid-fraction must be below 1 (the held-out share), got {cfg['valid_fraction']}")
    return cfg


def load_training_data(cfg: dict, report: dict | None = None) -> tuple[list[str], list[bool]]:
    """(texts, labels) of the configured table or corpora; ``report`` (when given) gets ``positive``
    and ``negative`` ({label value or corpus: documents}) and ``warnings``.

    Refuses ``positive`` values that match no row, and data without documents of both classes.
    """
    seed = cfg["seed"]
    report = {} if report is None else report
    report.update(warnings=[])
    if cfg.get("data"):
        texts, labels, values = [], [], []
        checks: dict[tuple, dict] = {}  # (label column, positive values, where) -> {label value: rows}
        for spec in _as_list(cfg["data"]):
            spec = spec if isinstance(spec, dict) else {"path": spec}
            unknown = set(spec) - {"path", "text_column", "label_column", "positive", "where", "limit"}
            if unknown:
                raise ValueError(f"data {spec.get('path')!r}: unknown keys {sorted(unknown)}")
            if "path" not in spec:
                raise ValueError(f"data {spec!r}: no 'path'")
            label_column = spec.get("label_column", cfg.get("label_column", "label"))
            positive, where = spec.get("positive", cfg.get("positive")), spec.get("where", cfg.get("where"))
            t, y, v, seen = _load_labeled(spec["path"], spec.get("text_column", cfg.get("text_column", "text")),
                                          label_column, positive, where=where, limit=spec.get("limit"), seed=seed)
            key = (label_column, tuple(_split_values(positive)), json.dumps(where, sort_keys=True, default=str))
            acc = checks.setdefault(key, {})
            for k, n in seen.items():
                acc[k] = acc.get(k, 0) + n
            texts += t
            labels += y
            values += v
        for (label_column, positive, where), seen in checks.items():
            report["warnings"] += check_positive(list(positive), seen, label_column, json.loads(where))
    else:
        pos, neg = [], []
        for side, out in (("positive_data", pos), ("negative_data", neg)):
            for spec in _as_list(cfg[side]):
                out += load_corpus(spec, cfg.get("text_column", "text"), seed=seed)
        texts, labels = pos + neg, [True] * len(pos) + [False] * len(neg)
        values = ["--positive-data"] * len(pos) + ["--negative-data"] * len(neg)
    cap = cfg.get("max_per_class")
    if cap:
        y = np.asarray(labels, dtype=bool)
        keep = np.sort(np.concatenate([_limit(np.flatnonzero(y), cap, seed), _limit(np.flatnonzero(~y), cap, seed + 1)]))
        texts, labels, values = [texts[i] for i in keep], [labels[i] for i in keep], [values[i] for i in keep]
    report["positive"], report["negative"] = {}, {}
    for value, label in zip(values, labels):
        d = report["positive" if label else "negative"]
        d[value] = d.get(value, 0) + 1
    n_pos, n_neg = sum(report["positive"].values()), sum(report["negative"].values())
    if not n_pos or not n_neg:
        if cfg.get("data"):
            where = " that pass 'where'" if cfg.get("where") or any(isinstance(d, dict) and d.get("where")
                                                                       for d in _as_list(cfg["data"])) else ""
            missing = (f"no row{where} has a --positive label ({', '.join(_split_values(cfg.get('positive')))})"
                       if not n_pos else f"every row{where} has a --positive label: there are no negative rows")
            found = ", ".join(f"{v} ({n:,})" for v, n in {**report["positive"], **report["negative"]}.items())
            raise UserError(f"cannot train on one class: {missing}; the labels used are {found or 'none'}"
                            if texts else "no training documents: the --data rows have no text or no label")
        raise UserError(f"cannot train: {n_pos:,} documents from --positive-data and {n_neg:,} from --negative-data; "
                        "both need documents with text (check --text-column)")
    return texts, labels


def input_files(cfg: dict) -> list[str]:
    """Every file the configured table or corpora read."""
    specs = _as_list(cfg.get("data")) + _as_list(cfg.get("positive_data")) + _as_list(cfg.get("negative_data"))
    files = []
    for spec in specs:
        path = spec.get("path") if isinstance(spec, dict) else spec
        if path is not None:
            files += expand_paths(path)
    return files


def check_model_output(output: str, inputs: list[str]) -> None:
    """Refuse a model path that is a folder, or whose model, sidecar or temporary file would be an input file."""
    if os.path.isdir(output):
        raise UserError(f"--output {output!r} is a folder; give the model file to write, e.g. {os.path.join(output, 'model.bin')}")
    written = {os.path.realpath(p) for p in (output, output + ".json",
                                             os.path.join(os.path.dirname(output), f".{os.path.basename(output)}.tmp"))}
    for f in inputs:
        if os.path.realpath(f) in written:
            raise UserError(f"--output {output!r} would overwrite the input {f!r}; write the model to another file")


def train_from_config(cfg: dict, report: dict | None = None) -> dict:
    """Load the data described by ``cfg``, train, write the model and its ``MODEL.json`` sidecar; returns the sidecar.

    ``report`` (when given) is filled as by :func:`load_training_data`.
    """
    report = {} if report is None else report
    check_model_output(cfg["output"], input_files(cfg))
    texts, labels = load_training_data(cfg, report)
    settings = {k: cfg[k] for k in ("epoch", "lr", "word_ngrams", "dim", "bucket", "min_count", "seed", "valid_fraction", "max_chars")}
    metrics = train_classifier(texts, labels, cfg["output"], threads=cfg.get("threads"), quantize=cfg.get("quantize"), **settings)
    kind = cfg["kind"]
    data = ({"data": cfg["data"], "text_column": cfg.get("text_column", "text"), "label_column": cfg.get("label_column", "label"),
             "positive": _split_values(cfg["positive"]) if not isinstance(cfg["positive"], list) else cfg["positive"]}
            if cfg.get("data") else {"positive_data": cfg["positive_data"], "negative_data": cfg["negative_data"],
                                     "text_column": cfg.get("text_column", "text")})
    data["documents"] = {"positive": report["positive"], "negative": report["negative"]}
    sidecar = {
        "kind": kind,
        "stage": STAGE_OF[kind],
        "score_column": kind,
        "labels": {"__label__pos": POSITIVE_NAME[kind], "__label__neg": NEGATIVE_NAME[kind]},
        "preprocess": {"mode": "curate", "max_chars": cfg["max_chars"]},
        "metrics": metrics,
        "settings": settings | {"loss": "softmax", "quantized": bool(cfg.get("quantize")) or cfg["output"].endswith(".ftz"),
                                "max_per_class": cfg.get("max_per_class")},
        "data": data,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    with open(cfg["output"] + ".json", "w") as f:
        json.dump(sidecar, f, indent=2, default=str)
        f.write("\n")
    return sidecar


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def run_train_scorer(args) -> int:
    """``curate train-scorer``: 0 when trained, 2 on a configuration or data error."""
    report: dict = {}
    try:
        cfg = resolve_config(args)
        print(f"training the {cfg['kind']} classifier ...", file=sys.stderr)
        side = train_from_config(cfg, report)
    except (ValueError, OSError, KeyError, pa.ArrowInvalid, RuntimeError) as e:  # UserError is a ValueError
        for w in report.get("warnings", []):
            print(f"warning: {w}", file=sys.stderr)
        print(f"error: {e}", file=sys.stderr)
        return 2
    for w in report["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    for side_name in ("positive", "negative"):
        counts = report[side_name]
        print(f"{side_name}: {sum(counts.values()):,} documents ("
              + ", ".join(f"{v} {n:,}" for v, n in sorted(counts.items(), key=lambda kv: -kv[1])) + ")")
    m = side["metrics"]
    print(f"{cfg['kind']} classifier: {m['n_train']} training documents ({m['n_train_pos']} positive), "
          f"{m['n_valid']} held out ({m['n_valid_pos']} positive)")
    print(f"held-out accuracy {_fmt(m['accuracy'])}  ROC AUC {_fmt(m['auc'])}  "
          f"precision {_fmt(m['precision'])}  recall {_fmt(m['recall'])}")
    print(f"wrote {cfg['output']} ({m['model_bytes'] / 1e6:.1f} MB) and {cfg['output']}.json")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``curate train-scorer`` without the ``curate`` CLI: ``main(["--recipe", "scorers/toxicity.yaml"])``."""
    parser = add_train_scorer_arguments(argparse.ArgumentParser(prog="curate train-scorer"))
    return run_train_scorer(parser.parse_args(argv))

