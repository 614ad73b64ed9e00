"""Fuzz the three file formats (recipe, mixture spec, trainer config) and the CLI with generated mistakes.

Every mistake must be reported as problems of the form ``FILE:LINE: message`` (a RecipeError, which
the CLI prints one per line with exit code 2): never a traceback, never an accepted mistake.

Mistakes are generated from valid documents by walking every key and value:
  * ``type``:     a value of the wrong type (a word for a number, a number for a word, ...);
  * ``negative``: -7 for a number;
  * ``typo``:     a key with its last letter changed (an unknown key, or an unknown domain);
  * per-stage:    the same three for every parameter of every registered stage;
  * structure:    invalid YAML, wrong shapes, unknown top-level keys, unsafe names.
The count per class is printed with ``-s`` and quoted in the README (Reliability).
"""
import copy
import dataclasses
import os
import re
import typing
from collections import Counter

import pytest
import yaml

from curate.core.recipe import RecipeError, parse_recipe
from curate.core.registry import all_stages, params_of

COUNTS: Counter = Counter()


def _assert_problems(fn, text: str, where: str, expect: str | None, what: str):
    """``fn(text, where)`` must raise RecipeError whose every line is FILE:LINE: ..., mentioning ``expect``."""
    try:
        fn(text, where)
    except RecipeError as e:
        assert e.problems, what
        for p in e.problems:
            assert re.match(rf"^{re.escape(where)}(:\d+)?: \S", p), f"{what}: problem without file:line: {p!r}"
            assert "\n" not in p, f"{what}: a problem spans lines: {p!r}"
        if expect is not None:
            assert any(expect in p for p in e.problems), f"{what}: {expect!r} not named in {e.problems}"
        return
    except Exception as e:  # noqa: BLE001 - this is the point of the test
        pytest.fail(f"{what}: {type(e).__name__} instead of a recipe problem: {e}\n{text}")
    pytest.fail(f"{what}: accepted\n{text}")


def _paths(doc, prefix=()):
    """Every (key path, value) in a YAML document, depth first."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield prefix + (k,), v
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, prefix + (i,))


def _set(doc, path, value):
    doc = copy.deepcopy(doc)
    node = doc
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return doc


def _rename(doc, path, new_key):
    doc = copy.deepcopy(doc)
    node = doc
    for k in path[:-1]:
        node = node[k]
    node[new_key] = node.pop(path[-1])
    return doc


def _wrong_type(value):
    if isinstance(value, bool):
        return "maybe"
    if isinstance(value, (int, float)):
        return "lots"
    if isinstance(value, str):
        return [1, 2]
    if isinstance(value, list):
        return {"not": "a list"}
    if isinstance(value, dict):
        return 17
    return "x"


def _typo(key: str) -> str:
    return key[:-1] + ("q" if key[-1] != "q" else "z")


def generated_mistakes(doc, skip=(), skip_exact=()):
    """(class, description, mutated document, text a problem must name) for every key and value."""
    for path, value in _paths(doc):
        if any(path[: len(s)] == s for s in skip) or path in skip_exact:
            continue
        label = ".".join(map(str, path))
        key = path[-1]
        if isinstance(key, str):
            yield "typo", f"{label} renamed", _rename(doc, path, _typo(key)), _typo(key)
        yield "type", f"{label} = {_wrong_type(value)!r}", _set(doc, path, _wrong_type(value)), None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            yield "negative", f"{label} = -7", _set(doc, path, -7), None


# ------------------------------------------------------------------------------------- recipes


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "model.bin"
    path.write_bytes(b"a stand-in: only its existence is checked at load time")
    (path.parent / "refiner").mkdir()  # the refinement stages take a model folder
    (path.parent / "refiner" / "config.json").write_text("{}")
    (path.parent / "influence").mkdir()  # mates checks the files of its influence-model folder at load time
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        (path.parent / "influence" / name).write_text("{}")
    (path.parent / "eval.jsonl").write_text('{"text": "an evaluation record"}\n')  # decontaminate's references
    return str(path)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("in")
    (d / "a.jsonl").write_text('{"id": "1", "text": "some words"}\n')
    return str(d)


def _stage_values(cls, model_file):
    """A valid parameter mapping for ``cls`` with every field given (its defaults, required ones filled in)."""
    out = {}
    for f in params_of(cls):
        if f.default is not dataclasses.MISSING:
            v = f.default
        elif f.default_factory is not dataclasses.MISSING:
            v = f.default_factory()
        else:
            v = model_file if f.name == "model" else None
            if f.name == "references":
                v = [os.path.join(os.path.dirname(model_file), "eval.jsonl")]
        if f.name == "model" and v != "lid.176":
            v = model_file
            if cls.__module__.startswith("curate.refine"):
                v = os.path.join(os.path.dirname(model_file), "refiner")
            if cls.__module__.startswith("curate.scorers.mates"):
                v = os.path.join(os.path.dirname(model_file), "influence")
        if v is None or (isinstance(v, (list, dict)) and not v):
            hint = typing.get_type_hints(cls)[f.name]
            args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
            a = args[0]
            v = {int: 3, float: 0.5, str: "text", bool: True}.get(a)
            if typing.get_origin(a) is list:
                v = {str: ["en"], float: [0.0, 1.0]}.get(typing.get_args(a)[0])
            if f.name in ("languages",):
                v = ["en"]
            if f.name in ("word_files", "score_range", "exclude_words", "words", "stop_chars"):
                continue
            if v is None:
                continue
        out[f.name] = v
    return out


def test_recipe_mistakes(inputs, model_file):
    registry = all_stages()
    where = "fuzz-recipe.yaml"
    n = 0
    for stype in registry:
        cls = registry[stype]
        params = _stage_values(cls, model_file)
        base = {"input": {"path": f"{inputs}/a.jsonl", "text_key": "text", "batch_size": 64},
                "output": {"path": f"{inputs}/out", "compression": "zstd"},
                "stages": [{stype: params}]}
        parse_recipe(yaml.safe_dump(base), where)  # the base is valid
        skip = [] if n == 0 else [("input",), ("output",)]  # the input/output sections once
        for klass, what, doc, expect in generated_mistakes(base, skip=skip, skip_exact=[("stages",), ("stages", 0)]):
            if what.startswith(f"stages.0.{stype}.model") and klass == "type" and params.get("model") == "lid.176":
                pass
            _assert_problems(parse_recipe, yaml.safe_dump(doc), where, expect, f"{stype}: {what}")
            COUNTS[f"recipe/{klass}"] += 1
            n += 1
    structural = [
        ("input: [unclosed\n", None), ("\tinput: x\n", None), ("", None), ("- a\n- b\n", None),
        (f"input: {inputs}/a.jsonl\noutput: o\nstagez: []\n", "stagez"),
        (f"input: {inputs}/a.jsonl\noutput: o\nstages: {{lang_id: {{}}}}\n", "stages"),
        (f"input: {inputs}/a.jsonl\noutput: o\nstages: [[lang_id]]\n", "stage 1"),
        (f"input: {inputs}/a.jsonl\noutput: o\nstages: [lang_idd]\n", "lang_id"),
        (f"input: {inputs}/a.jsonl\noutput: o\nstages: [{{lang_id: 3}}]\n", "parameters must be a mapping"),
        (f"input: {inputs}/a.jsonl\noutput: o\nstages: [{{sample: {{name: '..'}}}}]\n", "'..'"),
        (f"input: {inputs}/a.jsonl\noutput: o\nstages: [{{sample: {{name: 'a/b'}}}}]\n", "'a/b'"),
        (f"input: {inputs}/a.jsonl\noutput: o\nstages: [sample, {{sample: {{name: sample}}}}]\n", "unique"),
        (f"input: {inputs}/nothing-*.jsonl\noutput: o\n", "matches no file"),
        (f"input: {inputs}/a.jsonl\n", "output"),
        (f"output: o\n", "input"),
        (f"input: {{path: {inputs}/a.jsonl, format: csv}}\noutput: o\n", "format"),
        (f"input: {inputs}/a.jsonl\noutput: {inputs}\n", "holds the input"),
        (f"input: {inputs}/a.jsonl\noutput: {inputs}/a.jsonl\n", "existing file"),
    ]
    for text, expect in structural:
        _assert_problems(parse_recipe, text, where, expect, f"structure: {text!r}")
        COUNTS["recipe/structure"] += 1
    assert sum(v for k, v in COUNTS.items() if k.startswith("recipe/")) >= 300


# ------------------------------------------------------------------------------- mixture specs


def test_mix_spec_mistakes(tmp_path):
    from curate.mix.spec import parse_spec

    base = yaml.safe_load("""
tokenizer: tok
seq_length: 128
total_tokens: 310000
seed: 0
heldout_tokens: 4000
shard_tokens: 100000
batch_size: 64
domains:
  older: {path: data/a, where: "score >= 0.5", max_epochs: 6}
  recent: {path: data/b, max_epochs: 6}
phases:
  - {name: base, fraction: 0.85, weights: {older: 0.6, recent: 0.4}}
  - {name: anneal, fraction: 0.15, upsample: {recent: 3}}
""")
    where = "fuzz-mix.yaml"
    parse_spec(yaml.safe_dump(base), where)
    for klass, what, doc, expect in generated_mistakes(base):
        _assert_problems(parse_spec, yaml.safe_dump(doc), where, expect, f"mix: {what}")
        COUNTS[f"mix/{klass}"] += 1
    for bad in ("../victim", ".", "a b", "", "valid"):
        doc = _set(base, ("phases", 0, "name"), bad)
        _assert_problems(parse_spec, yaml.safe_dump(doc), where, None, f"mix: phase name {bad!r}")
        COUNTS["mix/names"] += 1
        if bad == "valid":  # reserved for phases only (the held-out split); a domain may be called so
            continue
        doc = _rename(base, ("domains", "older"), bad or "x/y")
        doc = _set(doc, ("phases", 0, "weights"), {bad or "x/y": 0.6, "recent": 0.4})
        _assert_problems(parse_spec, yaml.safe_dump(doc), where, None, f"mix: domain name {bad!r}")
        COUNTS["mix/names"] += 1
    assert sum(v for k, v in COUNTS.items() if k.startswith("mix/")) >= 60


# ----------------------------------------------------------------------------- trainer configs


def test_train_config_mistakes():
    pytest.importorskip("transformers")
    from curate.train.config import parse_config

    base = yaml.safe_load("""
data: out/mix
output: out/model
model: {hidden_size: 128, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 352, rms_norm_eps: 1.0e-5}
micro_batch_size: 8
grad_accum: 1
max_steps: 300
lr: 3.0e-3
schedule: cosine
warmup_steps: 20
weight_decay: 0.1
grad_clip: 1.0
eval_every: 50
eval_sequences: 32
checkpoint_every: 100
keep_checkpoints: 2
log_every: 10
reweight: {strategy: linupper, warmup_steps: 10}
online_mixture: {eta: 0.5, min_weight: 0.05}
""")
    where = "fuzz-train.yaml"
    parse_config(yaml.safe_dump(base), where)
    for klass, what, doc, expect in generated_mistakes(base):
        _assert_problems(parse_config, yaml.safe_dump(doc), where, expect, f"train: {what}")
        COUNTS[f"train/{klass}"] += 1
    assert sum(v for k, v in COUNTS.items() if k.startswith("train/")) >= 60


# ------------------------------------------------------------------------------------ the CLI


CLI_MISTAKES = [
    ["run"], ["run", "nope.yaml"], ["run", "{recipe}", "--wokers", "2"], ["run", "{recipe}", "--workers", "0"],
    ["run", "{recipe}", "--workers", "two"], ["run", "{recipe}", "--outptu", "x"], ["run", "{recipe}", "--write_rejected"],
    ["run", "{recipe}", "--input"], ["run", "{recipe}", "--input", "{tmp}/none*.jsonl"],
    ["run", "{recipe}", "--output", "{tmp}/a.jsonl"], ["run", "{recipe}", "--output", "{tmp}"],
    ["run", "{recipe}", "--max-error-rate", "1.5"], ["run", "{recipe}", "-x"],
    ["validate", "nope.yaml"], ["validate", "{tmp}/a.jsonl"], ["validate", "{recipe}", "extra"],
    ["score", "{tmp}/a.jsonl", "--output", "{tmp}/s"], ["score", "{tmp}/a.jsonl", "--scorer", "lang_idd", "--output", "{tmp}/s"],
    ["score", "{tmp}/a.jsonl", "--scorer", "length_filter=model.bin", "--output", "{tmp}/s"],
    ["score", "{tmp}/none.jsonl", "--scorer", "length_filter", "--output", "{tmp}/s"],
    ["score", "{tmp}/a.jsonl", "--scorer", "length_filter", "--output", "{tmp}"],
    ["mix", "nope.yaml", "--output", "{tmp}/m"], ["mix", "{recipe}", "--output", "{tmp}/m"],
    ["mix", "nope.yaml", "--output", "{tmp}/m", "--sed", "1"],
    ["train", "nope.yaml"], ["train", "{recipe}"], ["train", "nope.yaml", "--max-steps", "x"],
    ["inspect", "{tmp}/nothing"], ["inspect", "{tmp}/a.jsonl"],
    ["train-tokenizer", "{tmp}/none.jsonl", "--output", "{tmp}/t"],
    ["train-tokenizer", "{tmp}/a.jsonl", "--output", "{tmp}/t", "--text-key", "body"],
    ["train-tokenizer", "{tmp}/a.jsonl", "--output", "{tmp}/t", "--vocab-size", "-1"],
    ["train-scorer", "--data", "{tmp}/none.csv", "--output", "{tmp}/m.bin"],
    ["stages", "extra"], ["nonsense"], ["fit-mixture", "{tmp}/none"],
]


def test_cli_mistakes(tmp_path, capsys):
    from curate.cli import main

    (tmp_path / "a.jsonl").write_text('{"id": "1", "text": "one two three"}\n')
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"input: {tmp_path}/a.jsonl\noutput: {tmp_path}/out\n")
    for argv in CLI_MISTAKES:
        argv = [a.format(tmp=tmp_path, recipe=recipe) for a in argv]
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse's own usage errors
            rc = e.code
        except Exception as e:  # noqa: BLE001
            pytest.fail(f"{argv}: {type(e).__name__}: {e}")
        err = capsys.readouterr().err
        assert rc == 2, f"{argv}: exit {rc}\n{err}"
        assert "Traceback" not in err and err.strip(), f"{argv}:\n{err}"
        assert not (tmp_path / "out").exists(), argv
        COUNTS["cli"] += 1


def test_zz_report_counts(capsys):
    with capsys.disabled():
        print("\nmistakes tried: " + ", ".join(f"{k} {v}" for k, v in sorted(COUNTS.items()))
              + f"; total {sum(COUNTS.values())}")
