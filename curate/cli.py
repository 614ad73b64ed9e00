"""The ``curate`` command line."""
from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings


def _quiet():
    warnings.filterwarnings("ignore")
    logging.getLogger().setLevel(logging.ERROR)
    logging.getLogger("apache_beam").setLevel(logging.ERROR)
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def _problems(title: str, e) -> int:
    """Print a RecipeError's problems under ``title`` on stderr; the exit code for bad input."""
    print(title, file=sys.stderr)
    for line in e.problems:
        print("  " + line, file=sys.stderr)
    return 2


def cmd_run(args, beam_args) -> int:
    from rich.console import Console

    from curate.core.recipe import RecipeError, load_recipe
    from curate.core.report import print_summary
    from curate.core.runner import LedgerError, run_recipe

    console = Console(width=None if sys.stdout.isatty() else 120)
    err = Console(stderr=True)
    try:
        recipe = load_recipe(args.recipe, args.input, args.output, check_inputs=True)
    except RecipeError as e:
        err.print("[red]recipe error[/]", highlight=False)
        for line in e.problems:
            err.print("  " + line, highlight=False, markup=False)
        return 2
    if args.write_rejected:
        recipe.output.write_rejected = True
    try:
        res = run_recipe(recipe, runner=args.runner, workers=args.workers, beam_args=beam_args, show_progress=not args.quiet)
    except LedgerError as e:
        err.print(f"[red]{e}[/]")
        return 3
    except FileNotFoundError as e:
        err.print(f"[red]error:[/] {e}", markup=True, highlight=False)
        return 2
    print_summary(res, console)
    return 0


def cmd_score(args, beam_args) -> int:
    from rich.console import Console

    from curate.core.recipe import RecipeError
    from curate.core.report import print_summary
    from curate.core.runner import run_recipe
    from curate.score import score_recipe

    err = Console(stderr=True)
    options = {k: v for k, v in (("text_key", args.text_key), ("id_key", args.id_key), ("html_key", args.html_key)) if v}
    try:
        recipe = score_recipe(args.input, args.scorer, args.output, **options)
    except RecipeError as e:
        for line in e.problems:
            err.print(line, markup=False, highlight=False)
        return 2
    res = run_recipe(recipe, runner=args.runner, workers=args.workers, beam_args=beam_args, show_progress=not args.quiet)
    print_summary(res, Console(width=None if sys.stdout.isatty() else 120))
    return 0


def cmd_inspect(args, beam_args) -> int:
    from curate.inspect import inspect

    try:
        inspect(args.path, args.output, args.column)
    except (FileNotFoundError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def cmd_train_scorer(args, beam_args) -> int:
    from curate.scorers.train import run_train_scorer

    return run_train_scorer(args)


def cmd_train_tokenizer(args, beam_args) -> int:
    from curate.tokenizer import train_tokenizer

    try:
        tok = train_tokenizer(args.input, args.output, vocab_size=args.vocab_size, min_frequency=args.min_frequency,
                              text_key=args.text_key, limit_docs=args.limit_docs)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"tokenizer: {tok.vocab_size:,} tokens, eos {tok.eos_token!r} = {tok.eos_id} -> {args.output}/tokenizer.json "
          f"(sha256 {tok.sha256[:12]})")
    return 0


def cmd_mix(args, beam_args) -> int:
    from curate.core.recipe import RecipeError
    from curate.mix.pipeline import run_mix
    from curate.mix.spec import load_spec

    try:
        spec = load_spec(args.spec)
    except RecipeError as e:
        return _problems("mixture spec error", e)
    if args.seed is not None:
        spec.seed = args.seed
    try:
        res = run_mix(spec, args.output, runner=args.runner, workers=args.workers, beam_args=beam_args)
    except (FileNotFoundError, ValueError) as e:  # MixError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(res.summary())
    return 0


def cmd_train(args, beam_args) -> int:
    from curate.core.recipe import RecipeError
    from curate.train.config import load_config

    try:
        cfg = load_config(args.config)
    except RecipeError as e:
        return _problems("trainer config error", e)
    for key in ("data", "output", "max_steps"):
        value = getattr(args, key)
        if value is not None:
            setattr(cfg, key, os.path.abspath(value) if key != "max_steps" else value)
    from curate.train.trainer import run_train

    try:
        res = run_train(cfg, quiet=args.quiet, stop_at_step=args.stop_at_step)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
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


def cmd_fit_mixture(args, beam_args) -> int:
    from curate.train.mixfit import cli_main

    return cli_main(list(args.rest) + list(beam_args))


def cmd_validate(args, beam_args) -> int:
    from curate.core.recipe import RecipeError, load_recipe

    try:
        r = load_recipe(args.recipe, check_inputs=True)
    except RecipeError as e:
        for line in e.problems:
            print(line, file=sys.stderr)
        return 2
    print(f"{args.recipe}: ok ({len(r.stages)} stages: {', '.join(n for n, _ in r.stages)})")
    return 0


def cmd_stages(args, beam_args) -> int:
    import typing

    from curate.core.recipe import _type_name
    from curate.core.registry import all_stages, params_of

    for name, cls in sorted(all_stages().items()):
        print(f"{name}  [{cls.kind}]  {cls.describe()}")
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
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="curate", description="Data curation for LLM pretraining corpora, on Apache Beam.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run a recipe", description=(
        "Run a YAML recipe. Unknown options are passed to Beam as pipeline options, e.g. "
        "--runner DataflowRunner --project P --region R --temp_location gs://B/tmp [--dry_run=True]."))
    p.add_argument("recipe", help="recipe YAML file (see pipelines/)")
    p.add_argument("--input", action="append", help="input glob; overrides the recipe's input.path (repeatable)")
    p.add_argument("--output", help="output folder; overrides the recipe's output")
    p.add_argument("--runner", default=None, help="Beam runner; default: the embedded in-process runner")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    p.add_argument("--write-rejected", action="store_true", help="also write dropped documents with their reasons")
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
    p.add_argument("--runner", default=None)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmd_score)

    p = sub.add_parser("inspect", help="score distributions, drop rates at thresholds, histograms", description=(
        "Print per-column quantiles and drop-rate-at-threshold tables of a scored dataset, "
        "and write histograms (PNG) and an HTML page."))
    p.add_argument("path", help="output folder of `curate score`/`curate run`, or a Parquet file")
    p.add_argument("--column", action="append", help="only these columns (repeatable)")
    p.add_argument("--output", help="report folder (default: PATH/inspect)")
    p.set_defaults(fn=cmd_inspect)

    p = sub.add_parser("train-scorer", help="train a fastText quality or toxicity classifier", description=(
        "Train from a labeled table (--data FILE --text-column C --label-column L --positive VALUES) or from two "
        "corpora (--positive-data/--negative-data); prints held-out accuracy and ROC AUC."))
    try:
        from curate.scorers.train import add_train_scorer_arguments

        add_train_scorer_arguments(p)
    except ImportError:
        pass
    p.set_defaults(fn=cmd_train_scorer)

    p = sub.add_parser("train-tokenizer", help="train a byte-level BPE tokenizer on curated text", description=(
        "Train a byte-level BPE (HF tokenizers) on the text of INPUT (jsonl/parquet/arrow/warc files or globs) "
        "and write OUTPUT/tokenizer.json plus tokenizer_config.json (AutoTokenizer loads the folder)."))
    p.add_argument("input", nargs="+", help="input files or globs")
    p.add_argument("--vocab-size", type=int, default=32000)
    p.add_argument("--min-frequency", type=int, default=2)
    p.add_argument("--text-key", default="text")
    p.add_argument("--limit-docs", type=int, default=None, help="train on the first N documents only")
    p.add_argument("--output", required=True, help="output folder")
    p.set_defaults(fn=cmd_train_tokenizer)

    p = sub.add_parser("mix", help="tokenize, sample and pack curated data into training shards", description=(
        "Follow a mixture spec (see pipelines/mix-*.yaml): tokenize each domain, sample it to its target per phase "
        "(whole epochs + a seeded hash-chosen fraction), pack into fixed-length sequences with EOS between "
        "documents, shuffle within each phase and write Megatron .bin/.idx shards plus manifest.json. "
        "Unknown options go to Beam (e.g. --runner DataflowRunner ...)."))
    p.add_argument("spec", help="mixture spec YAML")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=None, help="override the spec's seed")
    p.add_argument("--runner", default=None)
    p.add_argument("--workers", type=int, default=1)
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
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("fit-mixture", help="fit the CMR scaling law to small runs; print the critical mixture ratio",
                       add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(fn=cmd_fit_mixture)

    p = sub.add_parser("validate", help="check a recipe without running it")
    p.add_argument("recipe")
    p.set_defaults(fn=cmd_validate)

    p = sub.add_parser("stages", help="list the stages and their parameters")
    p.set_defaults(fn=cmd_stages)

    args, rest = parser.parse_known_args(argv)
    if rest and args.command not in ("run", "score", "mix", "fit-mixture"):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    _quiet()
    return args.fn(args, rest)


if __name__ == "__main__":
    sys.exit(main())
