"""The ``curate`` command line."""
from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings


def _quiet(verbose: bool = False):
    """Hide Beam's and Google's import-time warnings and worker INFO lines unless -v."""
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        return
    warnings.filterwarnings("ignore")
    logging.getLogger().setLevel(logging.ERROR)
    logging.getLogger("apache_beam").setLevel(logging.ERROR)
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _problems(title: str, e) -> int:
    """Print a RecipeError's problems under ``title`` on stderr; the exit code for bad input."""
    print(title, file=sys.stderr)
    for line in e.problems:
        print("  " + line, file=sys.stderr)
    return 2


def _console(stderr: bool = False):
    """A rich console that does not wrap lines at 80 columns when not on a terminal."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 200, soft_wrap=not stream.isatty())


def _run_and_report(recipe, args, beam_args) -> int:
    from curate.api import run_recipe  # the Python API's: plugin modules reach --workers processes
    from curate.core.report import print_summary
    from curate.core.runner import LedgerError

    try:
        res = run_recipe(recipe, runner=args.runner, workers=args.workers, beam_args=beam_args,
                         show_progress=not args.quiet, max_error_rate=args.max_error_rate)
    except LedgerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    print_summary(res, _console())
    if res.failed:
        print(f"error: the run mostly failed ({'; '.join(res.failed)}); see the top errors above and "
              f"{recipe.output.path}/errors/. The output is marked _INCOMPLETE. Raise --max-error-rate to accept it.",
              file=sys.stderr)
        return 4
    return 0


def cmd_run(args, beam_args) -> int:
    from curate.core.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.input, args.output, check_inputs=True)
    if args.write_rejected:
        recipe.output.write_rejected = True
    if args.limit is not None:
        recipe.input.limit = args.limit
    return _run_and_report(recipe, args, beam_args)


def cmd_score(args, beam_args) -> int:
    from curate.score import score_recipe

    options = {k: v for k, v in (("text_key", args.text_key), ("id_key", args.id_key), ("html_key", args.html_key)) if v}
    recipe = score_recipe(args.input, args.scorer, args.output, **options)
    if args.limit is not None:
        recipe.input.limit = args.limit
    return _run_and_report(recipe, args, beam_args)


def cmd_inspect(args, beam_args) -> int:
    from curate.inspect import inspect

    try:
        inspect(args.path, args.output, args.column, console=_console(), as_json=args.json)
    except (FileNotFoundError, ValueError) as e:  # UserError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def cmd_train_scorer(args, beam_args) -> int:
    from curate.scorers.train import run_train_scorer

    return run_train_scorer(args)


def cmd_preselect(args, beam_args) -> int:
    from curate.core.recipe import RecipeError
    from curate.preselect.config import load_config
    from curate.preselect.label import print_summary, run_label

    try:
        cfg = load_config(args.config, args.output)
    except RecipeError as e:
        return _problems("preselect config error", e)
    if args.validate:
        print(f"{args.config}: ok ({len(cfg.models)} models)")
        return 0
    summary = run_label(cfg, runner=args.runner, workers=args.workers, beam_args=beam_args)
    print_summary(summary)
    print(f"wrote {cfg.output}/losses/*.parquet, labels.parquet, heldout.parquet, summary.json")
    return 0


def cmd_refine(args, beam_args) -> int:
    from curate.refine.apply import refine_recipe

    params = {k: v for k, v in (("id_key", args.program_id_key), ("program_key", args.program_key),
                                ("drop_ratio", args.drop_ratio), ("min_words", args.min_words),
                                ("max_invalid", args.max_invalid)) if v is not None}
    recipe = refine_recipe(args.input, args.programs, args.output, **params)
    return _run_and_report(recipe, args, beam_args)


def cmd_decontaminate_report(args, beam_args) -> int:
    from curate.stages.decontaminate import print_report, report

    summary = report(args.input, args.references, args.output, reference_fields=args.reference_fields,
                     ngram=args.ngram, min_ngram=args.min_ngram, text_key=args.text_key, id_key=args.id_key,
                     max_examples=args.max_examples)
    print_report(summary, args.output)
    return 0


PASSTHROUGH = ("fit-mixture", "train-refiner", "annotate-refiner")  # commands with their own argument parser


def _passthrough(sub, name: str, fn, help: str) -> None:
    """A subcommand whose arguments (``--help`` included) go whole to its own parser."""
    assert name in PASSTHROUGH
    p = sub.add_parser(name, help=help, add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(fn=fn)


def cmd_train_refiner(args, beam_args) -> int:
    from curate.refine.train import main as train_refiner_main

    return train_refiner_main(list(args.rest) + list(beam_args))


def cmd_annotate_refiner(args, beam_args) -> int:
    from curate.refine.teacher import main as annotate_main

    return annotate_main(list(args.rest) + list(beam_args))


def cmd_train_tokenizer(args, beam_args) -> int:
    from curate.tokenizer import train_tokenizer

    try:
        tok = train_tokenizer(args.input, args.output, vocab_size=args.vocab_size, min_frequency=args.min_frequency,
                              text_key=args.text_key, limit_docs=args.limit_docs)
    except (FileNotFoundError, ValueError) as e:  # UserError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    stats = tok.stats or {}
    skipped = sum((stats.get("skipped") or {}).values())
    n_files = len(stats.get("files") or [])
    print(f"trained on {stats.get('docs', 0):,} documents from {n_files:,} file{'s' if n_files != 1 else ''}"
          + (f" ({skipped:,} records skipped: {', '.join(sorted(stats['skipped']))})" if skipped else "")
          + (f" (--limit-docs {args.limit_docs})" if args.limit_docs and stats.get("docs") == args.limit_docs else ""))
    print(f"tokenizer: {tok.vocab_size:,} tokens, eos {tok.eos_token!r} = {tok.eos_id} -> {args.output}/tokenizer.json "
          f"(sha256 {tok.sha256[:12]})")
    return 0


def cmd_mix(args, beam_args) -> int:
    from curate.core.recipe import RecipeError
    from curate.mix.pipeline import plan_mix, run_mix
    from curate.mix.spec import load_spec

    if args.output is None and not args.plan:
        print("error: curate mix needs --output (or --plan, to print the plan without writing anything)", file=sys.stderr)
        return 2
    if args.seed is not None and args.seed < 0:
        print(f"error: --seed must be >= 0, got {args.seed}", file=sys.stderr)
        return 2
    try:
        spec = load_spec(args.spec)
    except RecipeError as e:
        return _problems("mixture spec error", e)
    if args.seed is not None:
        spec.seed = args.seed
    try:
        if args.plan:
            res = plan_mix(spec, args.output, runner=args.runner, workers=args.workers, beam_args=beam_args)
        else:
            res = run_mix(spec, args.output, runner=args.runner, workers=args.workers, beam_args=beam_args)
    except (FileNotFoundError, ValueError) as e:  # MixError and UserError are ValueErrors
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(res.summary())
    return 0


def cmd_train(args, beam_args) -> int:
    from curate.core.recipe import RecipeError
    from curate.train.config import config_problems, load_config

    try:
        cfg = load_config(args.config)
    except RecipeError as e:
        return _problems("trainer config error", e)
    overridden = {}
    for key, flag in (("data", "--data"), ("output", "--output"), ("max_steps", "--max-steps")):
        value = getattr(args, key)
        if value is not None:
            if key != "max_steps" and value.strip():
                value = value if "://" in value else os.path.abspath(value)
            setattr(cfg, key, value)
            overridden[key] = flag
    problems = config_problems(cfg, overridden=overridden)  # the file passed load_config: these are the flags'
    if args.stop_at_step is not None and args.stop_at_step < 1:
        problems.append(f"--stop-at-step must be an integer >= 1, got {args.stop_at_step}")
    if not problems and "data" in overridden and "://" not in cfg.data and not os.path.isdir(cfg.data):
        problems.append(f"--data {args.data!r}: no such folder (give the output folder of `curate mix`)")
    if problems:
        for line in problems:
            print(f"error: {line}", file=sys.stderr)
        return 2
    from curate.train.trainer import run_train

    try:
        res = run_train(cfg, quiet=args.quiet, stop_at_step=args.stop_at_step,
                        allow_config_change=args.allow_config_change)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if os.environ.get("RANK", "0") != "0":  # torchrun: rank 0 prints the summary
        return 0
    if "stopped_at" in res:
        print(f"stopped at step {res['stopped_at']} (--stop-at-step); run again to resume")
        return 0
    print(f"trained {res['steps']} steps ({res['tokens']:,} tokens) -> {res['final']}")
    start = res.get("heldout_start", {})
    for d, v in res.get("heldout", {}).items():
        print(f"  held-out loss {d}: " + (f"{start[d]:.4f} at step 0 -> " if d in start else "") + f"{v:.4f}")
    for name, r in res.get("tasks", {}).items():
        print("  " + name + ": " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                             for k, v in r.items() if k != "task"))
    return 0


def cmd_ablate(args, beam_args) -> int:
    from curate.ablate.run import cli_main
    from curate.core.recipe import RecipeError

    if args.workers < 1:
        print(f"error: --workers must be >= 1, got {args.workers}", file=sys.stderr)
        return 2
    try:
        return cli_main(args, beam_args)
    except RecipeError as e:
        return _problems("ablation spec error", e)


def cmd_fit_mixture(args, beam_args) -> int:
    from curate.train.mixfit import cli_main

    return cli_main(list(args.rest) + list(beam_args))


def _kind_of(path: str) -> str:
    """recipe | mix | train | ablate, from the top-level keys of a YAML file (the parsers report what is wrong)."""
    import yaml

    from curate.core.recipe import read_text

    try:
        data = yaml.safe_load(read_text(path, "file"))
    except yaml.YAMLError:
        return "recipe"  # the recipe parser reports the YAML error with its line
    keys = set(data) if isinstance(data, dict) else set()
    if keys & {"arms", "budget_tokens"}:
        return "ablate"
    if keys & {"domains", "phases", "seq_length", "tokenizer"}:
        return "mix"
    if keys & {"data", "model", "lr", "max_steps", "micro_batch_size"}:
        return "train"
    return "recipe"


def cmd_validate(args, beam_args) -> int:
    """The same checks as the command that runs the file, without running anything."""
    kind = args.kind or _kind_of(args.recipe)
    if kind == "ablate":
        from curate.ablate.spec import validate_spec

        problems = validate_spec(args.recipe)
        if problems:
            print("ablation spec error", file=sys.stderr)
            for p in problems:
                print(f"  {p}", file=sys.stderr)
            return 2
        print(f"{args.recipe}: ok (ablation spec)")
        return 0
    if kind == "mix":
        from curate.mix.spec import load_spec

        from curate.mix.pipeline import check_inputs
        from curate.tokenizer import load_tokenizer

        spec = load_spec(args.recipe)
        check_inputs(spec, None)
        load_tokenizer(spec.tokenizer, spec.eos_token)
        print(f"{args.recipe}: ok (mixture spec: {len(spec.domains)} domains, {len(spec.phases)} phases)")
        return 0
    if kind == "train":
        from curate.train.config import load_config
        from curate.train.trainer import preflight

        cfg = load_config(args.recipe)
        preflight(cfg)
        print(f"{args.recipe}: ok (trainer config: data {cfg.data}, output {cfg.output})")
        return 0
    from curate.core.recipe import load_recipe

    r = load_recipe(args.recipe, check_inputs=True)
    print(f"{args.recipe}: ok ({len(r.stages)} stages: {', '.join(n for n, _ in r.stages)})")
    return 0


def cmd_stats_merge(args, beam_args) -> int:
    import json

    from curate.core.report import merge_stats, print_stats
    from curate.core.safety import UserError

    merged = merge_stats(args.runs, allow_mismatch=args.allow_mismatch)
    if args.output:
        from curate.io.readers import is_local
        from curate.io.writers import write_bytes

        target = os.path.realpath(args.output) if is_local(args.output) else args.output
        if is_local(args.output) and os.path.isdir(target):
            raise UserError(f"--output {args.output!r} is a folder; give the file to write (e.g. merged-stats.json)")
        if any((os.path.realpath(f) if is_local(f) else f) == target for f in merged["merged_from"]):
            raise UserError(f"--output {args.output!r} is one of the stats.json files read; choose another file")
        write_bytes(args.output if "://" in args.output else os.path.abspath(args.output),
                    (json.dumps(merged, indent=2) + "\n").encode())
    if args.json:
        print(json.dumps(merged, indent=2))
    else:
        print_stats(merged, _console(), title=f"curate stats merge: {merged['runs']} runs")
        if args.output:
            print(f"merged stats: {args.output}")
    return 0


def cmd_stages(args, beam_args) -> int:
    import typing

    from curate.core.recipe import _type_name
    from curate.core.registry import StageLoadError, all_stages, origin, params_of, plugin_clashes

    registry = all_stages()
    for name in sorted(registry):
        try:
            cls = registry[name]
        except StageLoadError as e:  # a broken plugin is listed with why, the others still are
            print(f"{name}  [cannot load]  {e}")
            continue
        where = origin(name)
        print(f"{name}  [{cls.kind}]  {cls.describe()}" + ("" if where == "built-in" else f"  ({where})"))
        hints = typing.get_type_hints(cls)
        for f in params_of(cls):
            import dataclasses

            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                default = "required"
            print(f"    {f.name}: {_type_name(hints[f.name])} = {default!r}")
    for line in plugin_clashes():
        print(f"ignored plugin stage: {line}")
    print("a recipe may also name any stage class as 'package.module:Class'")
    return 0


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {v}")
    return v


# commands whose unknown options are Beam pipeline options (checked by name against Beam's own parser)
BEAM_COMMANDS = ("run", "score", "mix", "preselect", "refine")


def _beam_parser():
    from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

    parser = _BeamArgumentParser(allow_abbrev=False)
    seen = {}
    for cls in PipelineOptions.__subclasses__():
        seen.setdefault(str(cls), cls)
    for cls in seen.values():
        cls._add_argparse_args(parser)  # the same registry PipelineOptions.get_all_options uses
    return parser


def check_beam_args(rest: list[str], sub: argparse.ArgumentParser) -> list[str]:
    """``rest`` when every token is a Beam pipeline option (by its full name) or its value; else a UserError
    naming the first unknown token, with a did-you-mean over curate's and Beam's option names."""
    import difflib

    from curate.core.safety import UserError

    if not rest:
        return []
    parser = _beam_parser()
    _, unknown = parser.parse_known_args(rest)
    if not unknown:
        return rest
    ours = [o for a in sub._actions for o in a.option_strings if o.startswith("--")]
    beam = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
    token = unknown[0]
    if not token.startswith("-"):
        raise UserError(f"unexpected argument {token!r}: quote globs (--input 'data/*.jsonl') or give one value per option")
    name = token.split("=", 1)[0]
    close = difflib.get_close_matches(name, ours + beam, n=1, cutoff=0.6)
    if not close and "_" in name:
        close = difflib.get_close_matches(name.replace("_", "-"), ours, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise UserError(f"unknown option {name}{hint}; curate's options: {' '.join(sorted(set(ours) - {'--help'}))}; "
                    "anything else must be a Beam pipeline option (see --help)")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = any(a in ("-v", "--verbose") for a in argv)
    argv = [a for a in argv if a not in ("-v", "--verbose")]
    _quiet(verbose)
    parser = argparse.ArgumentParser(prog="curate", description="Data curation for LLM pretraining corpora, on Apache Beam. "
                                     "-v anywhere: show Beam's logs and full tracebacks.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run a recipe", description=(
        "Run a YAML recipe. Unknown options are passed to Beam as pipeline options, e.g. "
        "--runner DataflowRunner --project P --region R --temp_location gs://B/tmp [--dry_run=True]."))
    p.add_argument("recipe", help="recipe YAML file (see pipelines/)")
    p.add_argument("--input", action="extend", nargs="+", help="input files or globs; override the recipe's input.path")
    p.add_argument("--output", help="output folder; overrides the recipe's output")
    p.add_argument("--runner", default=None, help="Beam runner; default: the embedded in-process runner")
    p.add_argument("--workers", type=_positive_int, default=1, help="local worker processes (default 1)")
    p.add_argument("--write-rejected", action="store_true", help="also write dropped documents with their reasons")
    p.add_argument("--limit", type=_positive_int, default=None, metavar="N", help=(
        "try the recipe on a sample: read only the first N documents (files in sorted order, records in file "
        "order); stats.json records the limit"))
    p.add_argument("--max-error-rate", type=_fraction, default=0.5, help=(
        "exit non-zero (4) when more than this share of any stage's documents are errors (default 0.5)"))
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("score", help="add score columns to a dataset, dropping nothing", description=(
        "Run scorers over INPUT in annotate mode and write it with one column per score. "
        "--scorer takes any stage name (see `curate stages`), with =MODEL for model-based ones: "
        "--scorer lang_id --scorer gopher_quality --scorer toxicity_classifier=models/toxicity.bin"))
    p.add_argument("input", nargs="+", help="input files or globs (jsonl, parquet, arrow, warc)")
    p.add_argument("--scorer", action="append", required=True, metavar="NAME[=MODEL]")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--text-key", help="input field holding the text (default: text)")
    p.add_argument("--id-key", help="input field holding the id (default: id)")
    p.add_argument("--html-key", help="input field of raw HTML to extract")
    p.add_argument("--limit", type=_positive_int, default=None, metavar="N",
                   help="score only the first N documents (files in sorted order, records in file order)")
    p.add_argument("--runner", default=None)
    p.add_argument("--workers", type=_positive_int, default=1)
    p.add_argument("--max-error-rate", type=_fraction, default=0.5)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmd_score)

    p = sub.add_parser("inspect", help="score distributions, drop rates at thresholds, histograms", description=(
        "Print per-column quantiles and drop-rate-at-threshold tables of a scored dataset, "
        "and write histograms (PNG) and an HTML page."))
    p.add_argument("path", help="output folder of `curate score`/`curate run` (one that finished), a folder of Parquet "
                   "files, or a Parquet file")
    p.add_argument("--column", action="append", help="only these columns (repeatable)")
    p.add_argument("--output", help="report folder (default: PATH/inspect); it may not hold the data read")
    p.add_argument("--json", action="store_true", help=(
        "print the summary (per column n, nulls, p1/p50/p99, the stage's default thresholds and the share they "
        "drop; skipped columns; value counts) as JSON instead of the tables; the report is written as usual"))
    p.set_defaults(fn=cmd_inspect)

    p = sub.add_parser("train-scorer", help="train a fastText quality, toxicity or preselect classifier", description=(
        "Train from a labeled table (--data FILE --text-column C --label-column L --positive VALUES) or from two "
        "corpora (--positive-data/--negative-data); prints held-out accuracy and ROC AUC."))
    try:
        from curate.scorers.train import add_train_scorer_arguments

        add_train_scorer_arguments(p)
    except ImportError:
        pass
    p.set_defaults(fn=cmd_train_scorer)

    p = sub.add_parser("preselect", help="PreSelect: label documents by the predictive strength of a model family",
                       description="PreSelect (Shum et al. 2025). `curate preselect label CONFIG --output DIR` computes "
                       "each family model's bits per character on a document sample (a Beam job), the predictive "
                       "strength of each document and balanced labels; then `curate train-scorer preselect --data DIR`.")
    pre = p.add_subparsers(dest="preselect_command", required=True)
    q = pre.add_parser("label", help="per-model bits per character, predictive strength, balanced labels")
    q.add_argument("config", help="labeling config YAML (see curate/preselect/config.py)")
    q.add_argument("--output", default=None, help="output folder; overrides the config's output")
    q.add_argument("--validate", action="store_true", help="only check the config")
    q.add_argument("--runner", default=None)
    q.add_argument("--workers", type=_positive_int, default=1)
    q.set_defaults(fn=cmd_preselect)

    p = sub.add_parser("refine", help="ProX refinement: execute per-document programs (drop_doc, remove_lines, normalize)",
                       description="ProX (Zhou et al. 2024). `curate refine apply INPUT --programs FILE.jsonl --output DIR` "
                       "executes given programs without a model (rows {\"id\": ..., \"program\": \"...\"}: what a "
                       "refining model would emit for the whole document, lines numbered from 0). Refined documents "
                       "go to data/, dropped ones to rejected/ with their reason; an invalid program changes nothing.")
    ref = p.add_subparsers(dest="refine_command", required=True)
    q = ref.add_parser("apply", help="execute given programs on the documents they name")
    q.add_argument("input", nargs="+", help="input files or globs (jsonl, parquet, arrow, warc)")
    q.add_argument("--programs", action="extend", nargs="+", required=True, help="jsonl/parquet files of id + program")
    q.add_argument("--output", required=True, help="output folder")
    q.add_argument("--program-id-key", help="field of the program rows holding the document id (default: id)")
    q.add_argument("--program-key", help="field of the program rows holding the program (default: program)")
    q.add_argument("--drop-ratio", type=_fraction, help="drop when words after / before <= this (default 0.05)")
    q.add_argument("--min-words", type=_positive_int, help="drop a refined text of at most this many words (default 10)")
    q.add_argument("--max-invalid", type=_positive_int, help="this many invalid calls or more: keep the text (default 2)")
    q.add_argument("--runner", default=None)
    q.add_argument("--workers", type=_positive_int, default=1)
    q.add_argument("--max-error-rate", type=_fraction, default=0.5)
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(fn=cmd_refine)

    _passthrough(sub, "annotate-refiner", cmd_annotate_refiner,
                 "ProX programs derived from curate's rules: training data for a refiner")
    _passthrough(sub, "train-refiner", cmd_train_refiner, "fine-tune a small causal LM into a ProX refiner")

    p = sub.add_parser("decontaminate-report", help="which evaluation set leaked into which documents (shared n-grams)",
                       description=(
        "Scan INPUT for word n-grams of the evaluation sets given by --references (jsonl or parquet files or globs; "
        "one benchmark per file) and write OUTPUT/leaks.jsonl (per document and benchmark: id, matches, the n-grams, "
        "the benchmark's records) and OUTPUT/summary.json, and print a summary. The same matching as the "
        "decontaminate stage."))
    p.add_argument("input", nargs="+", help="input files, globs or folders (jsonl, parquet, arrow, warc)")
    p.add_argument("--references", action="extend", nargs="+", required=True, help="evaluation files or globs")
    p.add_argument("--reference-fields", action="extend", nargs="+", default=None, metavar="FIELD",
                   help="fields of the reference records that hold text (strings or lists of strings; default: text)")
    p.add_argument("--ngram", type=_positive_int, default=13, help="n-gram length in words (default 13)")
    p.add_argument("--min-ngram", type=_positive_int, default=None,
                   help="reference texts of at least this many (but fewer than --ngram) words count whole (default: off)")
    p.add_argument("--text-key", default="text", help="input field holding the text (default: text)")
    p.add_argument("--id-key", default="id", help="input field holding the id (default: id)")
    p.add_argument("--max-examples", type=_positive_int, default=5, help="n-grams listed per document and benchmark")
    p.add_argument("--output", required=True, help="report folder")
    p.set_defaults(fn=cmd_decontaminate_report)

    p = sub.add_parser("train-tokenizer", help="train a byte-level BPE tokenizer on curated text", description=(
        "Train a byte-level BPE (HF tokenizers) on the text of INPUT (jsonl/parquet/arrow/warc files or globs) "
        "and write OUTPUT/tokenizer.json plus tokenizer_config.json (AutoTokenizer loads the folder)."))
    p.add_argument("input", nargs="+", help="input files, globs or folders (a `curate run` output folder means its data/)")
    p.add_argument("--vocab-size", type=int, default=32000, help="at least 258 (256 bytes + 2 special tokens)")
    p.add_argument("--min-frequency", type=int, default=2, help="0 or more")
    p.add_argument("--text-key", default="text", help="the field holding the text (default: text)")
    p.add_argument("--limit-docs", type=int, default=None, help="train on the first N documents only (N >= 1)")
    p.add_argument("--output", required=True, help="output folder")
    p.set_defaults(fn=cmd_train_tokenizer)

    p = sub.add_parser("mix", help="tokenize, sample and pack curated data into training shards", description=(
        "Follow a mixture spec (see pipelines/mix-*.yaml): tokenize each domain, sample it to its target per phase "
        "(whole epochs + a seeded hash-chosen fraction), pack into fixed-length sequences with EOS between "
        "documents, shuffle within each phase and write Megatron .bin/.idx shards plus manifest.json. "
        "Unknown options go to Beam (e.g. --runner DataflowRunner ...)."))
    p.add_argument("spec", help="mixture spec YAML")
    p.add_argument("--output", default=None, help="output folder (required unless --plan)")
    p.add_argument("--plan", action="store_true", help=(
        "count the tokens of every domain and print the plan (per phase and domain: requested tokens, share, "
        "epochs; per domain: available and held-out tokens) without writing shards or a manifest"))
    p.add_argument("--seed", type=int, default=None, help="override the spec's seed")
    p.add_argument("--runner", default=None)
    p.add_argument("--workers", type=_positive_int, default=1)
    p.set_defaults(fn=cmd_mix)

    p = sub.add_parser("train", help="train a Llama-style model on the shards of `curate mix`", description=(
        "The bundled trainer: LlamaForCausalLM from the config's model section, AdamW, warmup + cosine/WSD, "
        "phases in order, checkpoints with save_pretrained and exact resume, held-out loss per domain, "
        "downstream multiple-choice evaluation. See samples/train-quickstart.yaml."))
    p.add_argument("config", help="trainer config YAML")
    p.add_argument("--data", help="override data: (a `curate mix` output folder)")
    p.add_argument("--output", help="override output:")
    p.add_argument("--max-steps", dest="max_steps", type=int, default=None)
    p.add_argument("--stop-at-step", type=int, default=None, help="stop after this step's checkpoint (for testing resume)")
    p.add_argument("--allow-config-change", action="store_true",
                   help="resume even though the optimizer, schedule, batch, model or data settings differ from the "
                        "checkpoint's (the changes are listed; see curate/train/config.py for which keys count)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("ablate", help="does a selector beat random? equal-token arms, proxy models, paired CIs",
                       description=(
        "Run an ablation spec (see samples/ablate-quickstart.yaml): per arm select exactly budget_tokens from the pool "
        "(top by a score column, or a seeded random sample after the arm's stages), mix, train the proxy model once per "
        "seed, evaluate held-out loss on the targets and downstream accuracy; print mean ± std per arm and the paired "
        "difference to the baseline with a 95% t-interval; write ablate.json and ablate.png. Cached: a re-run skips "
        "finished arms and seeds."))
    p.add_argument("spec", help="ablation spec YAML")
    p.add_argument("--output", required=True, help="output folder (arms, runs, ablate.json, ablate.png)")
    p.add_argument("--runner", default=None)
    p.add_argument("--workers", type=_positive_int, default=1)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmd_ablate)

    _passthrough(sub, "fit-mixture", cmd_fit_mixture, "fit the CMR scaling law to small runs; print the critical mixture ratio")

    p = sub.add_parser("validate", help="check a recipe, mixture spec or trainer config without running it", description=(
        "Run every check that `curate run`, `curate mix` or `curate train` makes before starting, and nothing else. "
        "The kind of file is told from its keys; --kind names it."))
    p.add_argument("recipe", help="recipe, mixture spec or trainer config (YAML)")
    p.add_argument("--kind", choices=("recipe", "mix", "train", "ablate"), default=None)
    p.set_defaults(fn=cmd_validate)

    p = sub.add_parser("stats", help="work with the stats.json of runs (merge)")
    st = p.add_subparsers(dest="stats_command", required=True)
    q = st.add_parser("merge", help="sum the per-stage ledgers of several runs", description=(
        "Sum the per-stage in / kept / dropped per reason / flagged / errors of several runs' stats.json into one "
        "(e.g. the shards of a corpus run separately); runs of different recipes are refused unless --allow-mismatch."))
    q.add_argument("runs", nargs="+", help="output folders of `curate run`/`curate score`, or their stats.json files")
    q.add_argument("--output", help="write the merged stats to this JSON file")
    q.add_argument("--json", action="store_true", help="print the merged stats as JSON instead of the table")
    q.add_argument("--allow-mismatch", action="store_true",
                   help="sum runs of different recipes or stages anyway, matching stages by name")
    q.set_defaults(fn=cmd_stats_merge)

    p = sub.add_parser("stages", help="list the stages and their parameters")
    p.set_defaults(fn=cmd_stages)

    args, rest = parser.parse_known_args(argv)
    if rest and args.command not in BEAM_COMMANDS + PASSTHROUGH:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    subparser = sub.choices.get(args.command)
    nested = getattr(args, f"{args.command}_command", None)  # e.g. `refine apply`: that parser's options
    if nested and subparser is not None:
        for action in subparser._actions:
            if isinstance(action, argparse._SubParsersAction) and nested in action.choices:
                subparser = action.choices[nested]
    return _dispatch(args, rest, subparser, verbose)


def _dispatch(args, rest, subparser, verbose: bool) -> int:
    """Run the command; a user error is one line on stderr and exit 2, never a traceback."""
    from curate.core.recipe import RecipeError
    from curate.core.safety import UserError

    titles = {"mix": "mixture spec error", "train": "trainer config error"}
    try:
        beam_args = check_beam_args(rest, subparser) if args.command in BEAM_COMMANDS else rest
        return args.fn(args, beam_args)
    except RecipeError as e:
        if verbose:
            raise
        return _problems(titles.get(args.command, "recipe error"), e)
    except (UserError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, ValueError, KeyError,
            ImportError) as e:
        if verbose:
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a failure inside the job (a worker's exception): one line, the rest with -v
        if verbose:
            raise
        last = str(e).strip().splitlines()[-1] if str(e).strip() else ""
        print(f"error: {type(e).__name__}: {last[:500]} (run again with -v for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
