"""The labeling config (YAML), validated whole before anything runs, with file:line messages.

```yaml
input: {path: ../shared/data/web/html-pages.parquet, html_key: html}   # as a recipe's input
output: out/preselect-labels        # or --output
models:                             # the family: at least 2 (PreSelect uses 6+), distinct abilities
  - {name: small-a, path: out/family/a/final}               # a local checkpoint folder
  - {name: smollm2, path: models/smollm2-135m, ability: -1.05}   # ability given: higher is better
  - {name: smol-gguf, path: models/SmolLM2-135M-Instruct.Q4_1.gguf,   # a .gguf file: converted once (needs `gguf`)
     dtype: bfloat16, max_length: 512, stride: 448, batch_size: 8}   # per-model overrides of the settings below
ability:                            # how missing abilities are measured
  measure: bpc                      # bpc: -bits per character on `target` | downstream: mean accuracy on `tasks`
  target: [../shared/data/eval/lambada_openai.jsonl]
  text_keys: [context, continuation]
  max_docs: 200
sample_fraction: 1.0                # share of the input documents labeled (seeded hash of the id)
heldout_fraction: 0.1               # share kept out of the labels (for evaluating the scorer)
max_chars: 4000                     # each document is cut to its first max_chars characters
max_length: 256                     # window in tokens (default: the model's context)
stride: 128                         # new tokens per window (default: max_length / 2)
batch_size: 16                      # windows per forward pass
label_fraction: 0.25                # positives = this share of the labeled documents; negatives as many
device: auto                        # auto | cpu | cuda | cuda:N
dtype: float32                      # float32 | bfloat16 | float16
seed: 0
```
"""
from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field
from typing import Literal

from curate.core.recipe import RecipeError, _load_with_lines, configure, read_text
from curate.io.readers import InputSpec

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class ModelSpec:
    name: str
    path: str
    ability: float | None = None
    tokenizer: str | None = None
    # per-model overrides of the config's settings (a big model may want a longer window, bfloat16, smaller batches)
    dtype: str | None = None
    max_length: int | None = None
    stride: int | None = None
    batch_size: int | None = None
    limits = {"ability": (None, None), "max_length": (2, None), "stride": (1, None)}  # ability may be negative (-bpc)

    def settings(self, cfg: "LabelConfig") -> dict:
        """This model's effective dtype, max_length, stride and batch_size (its own, else the config's)."""
        return {k: getattr(self, k) if getattr(self, k) is not None else getattr(cfg, k)
                for k in ("dtype", "max_length", "stride", "batch_size")}


@dataclass
class AbilitySpec:
    measure: Literal["bpc", "downstream"] = "bpc"
    target: list[str] = field(default_factory=list)
    text_keys: list[str] = field(default_factory=lambda: ["text"])
    max_docs: int | None = 200
    tasks: list[str] = field(default_factory=list)
    limit: int | None = 200


@dataclass
class LabelConfig:
    input: dict
    models: list
    output: str | None = None
    ability: dict | None = None
    sample_fraction: float = 1.0
    heldout_fraction: float = 0.1
    max_chars: int = 4000
    max_length: int | None = None
    stride: int | None = None
    batch_size: int = 16
    label_fraction: float = 0.25
    device: str = "auto"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    seed: int = 0
    source_file: str = field(default="<config>", repr=False)

    limits = {"input": (None, None), "models": (None, None), "ability": (None, None),  # checked section by section
              "label_fraction": (0, 0.5), "max_length": (2, None), "stride": (1, None), "max_chars": (1, None)}


def _expand(p: str, base: str) -> str:
    p = os.path.expanduser(p)
    return p if "://" in p or os.path.isabs(p) else os.path.normpath(os.path.join(base, p))


def parse_config(text: str, where: str = "<config>", output: str | None = None, check_paths: bool = True) -> LabelConfig:
    """Validate a labeling config; RecipeError with every problem (file:line) when it is wrong.

    Relative paths are relative to the current directory (as recipes).
    """
    data, lines = _load_with_lines(text, where)
    if not isinstance(data, dict):
        raise RecipeError([f"{where}:1: a preselect config is a mapping with input, models and output"])
    problems: list[str] = []
    raw = dict(data)
    if output is not None:
        raw["output"] = output
    for key in ("input", "models"):
        if key not in raw:
            problems.append(f"{where}:1: missing required key {key!r}")
    if isinstance(raw.get("input"), (str, list)):
        raw["input"] = {"path": raw["input"]}
    cfg, errs = configure(LabelConfig, {k: v for k, v in raw.items() if k != "source_file"}, where, lines, (), "preselect")
    problems += [e for e in errs if "missing required parameter" not in e]
    if cfg is None:  # go on checking the sections, so that every problem is reported at once
        if not isinstance(raw.get("input", {}), dict) or not isinstance(raw.get("models", []), list) \
                or not isinstance(raw.get("ability"), (dict, type(None))):
            raise RecipeError(sorted(set(problems), key=_line_of))
        cfg = LabelConfig(input=raw.get("input", {}), models=raw.get("models", []), ability=raw.get("ability"),
                          output=raw.get("output") if isinstance(raw.get("output"), str) else "<invalid>")
    cfg.source_file = where
    # input
    inp = dict(cfg.input)
    if "path" not in inp:
        problems.append(f"{where}:{lines.get(('input',), 1)}: input needs a 'path' (a glob or a list of globs)")
    else:
        if isinstance(inp["path"], str):
            inp["path"] = [inp["path"]]
        spec, errs = configure(InputSpec, inp, where, lines, ("input",), "input")
        problems += errs
        if spec is not None:
            spec.path = [_expand(p, os.getcwd()) for p in spec.path]
            if check_paths:
                for i, p in enumerate(spec.path):
                    if "://" not in p and not glob.glob(p):
                        line = lines.get(("input", "path", i), lines.get(("input", "path"), lines.get(("input",), 1)))
                        problems.append(f"{where}:{line}: input: no file matches {p}")
            cfg.input = spec
    # models
    specs = []
    if not isinstance(cfg.models, list) or len(cfg.models) < 2:
        problems.append(f"{where}:{lines.get(('models',), 1)}: models must be a list of at least 2 models (name, path, ability)")
    else:
        seen = {}
        for i, m in enumerate(cfg.models):
            at = lines.get(("models", i), lines.get(("models",), 1))
            if not isinstance(m, dict):
                problems.append(f"{where}:{at}: models[{i}] must be a mapping with name and path")
                continue
            spec, errs = configure(ModelSpec, m, where, lines, ("models", i), f"models[{i}]")
            problems += errs
            if spec is None:
                continue
            if not NAME.match(spec.name):
                problems.append(f"{where}:{lines.get(('models', i, 'name'), at)}: models[{i}]: name {spec.name!r} must be "
                                "letters, digits, '_', '.', '-'")
            if spec.name in seen:
                problems.append(f"{where}:{lines.get(('models', i, 'name'), at)}: models[{i}]: name {spec.name!r} is "
                                f"already used by models[{seen[spec.name]}]")
            seen.setdefault(spec.name, i)
            spec.path = _expand(spec.path, os.getcwd())
            pline = lines.get(('models', i, 'path'), at)
            if spec.path.lower().endswith(".gguf"):
                from curate.models.gguf import gguf_available

                if check_paths and not os.path.isfile(spec.path):
                    problems.append(f"{where}:{pline}: models[{i}]: no GGUF file at {spec.path}")
                elif not gguf_available():
                    problems.append(f"{where}:{pline}: models[{i}]: {spec.path} is a GGUF file, which needs the 'gguf' "
                                    "package (pip install gguf), or convert it first: python -m curate.models.gguf "
                                    "FILE.gguf FOLDER, and name the folder")
            elif check_paths and not os.path.isfile(os.path.join(spec.path, "config.json")):
                problems.append(f"{where}:{pline}: models[{i}]: {spec.path} is not a model folder (no config.json; a "
                                "`curate train` checkpoint such as out/model/final, a transformers folder, or a .gguf file)")
            if spec.dtype is not None and spec.dtype not in ("float32", "bfloat16", "float16"):
                problems.append(f"{where}:{lines.get(('models', i, 'dtype'), at)}: models[{i}]: dtype must be float32, "
                                f"bfloat16 or float16, got {spec.dtype!r}")
            if spec.tokenizer:
                spec.tokenizer = _expand(spec.tokenizer, os.getcwd())
            specs.append(spec)
        cfg.models = specs
    # abilities
    given = [m.ability for m in specs if m.ability is not None]
    if cfg.ability is not None:
        ab, errs = configure(AbilitySpec, cfg.ability, where, lines, ("ability",), "ability")
        problems += errs
        if ab is not None:
            at = lines.get(("ability",), 1)
            if ab.measure == "bpc" and not ab.target:
                problems.append(f"{where}:{at}: ability: measure bpc needs target (text files: jsonl or parquet)")
            if ab.measure == "downstream" and not ab.tasks:
                problems.append(f"{where}:{at}: ability: measure downstream needs tasks (eval jsonl files)")
            ab.target = [_expand(p, os.getcwd()) for p in ab.target]
            ab.tasks = [_expand(p, os.getcwd()) for p in ab.tasks]
            for key in ("target", "tasks"):
                for i, p in enumerate(getattr(ab, key)):
                    if check_paths and not glob.glob(p):
                        problems.append(f"{where}:{lines.get(('ability', key, i), at)}: ability: no file matches {p}")
        cfg.ability = ab
    elif specs and len(given) < len(specs):
        missing = [m.name for m in specs if m.ability is None]
        problems.append(f"{where}:{lines.get(('models',), 1)}: models {', '.join(missing)} have no ability: give "
                        "each model's ability, or an 'ability' section to measure them (measure: bpc | downstream)")
    elif specs and len(set(given)) < 2:
        problems.append(f"{where}:{lines.get(('models',), 1)}: the abilities are all equal ({given[0]}): predictive "
                        "strength needs models of different abilities")
    if cfg.output is None:
        problems.append(f"{where}:1: no output folder: set output or pass --output")
    ml, st = raw.get("max_length"), raw.get("stride")
    if isinstance(ml, int) and isinstance(st, int) and st >= ml:
        problems.append(f"{where}:{lines.get(('stride',), 1)}: stride ({st}) must be below max_length ({ml})")
    for i, m in enumerate(specs):
        mml = m.max_length if m.max_length is not None else ml
        mst = m.stride if m.stride is not None else st
        if (m.max_length is not None or m.stride is not None) and isinstance(mml, int) and isinstance(mst, int) \
                and mst >= mml:
            problems.append(f"{where}:{lines.get(('models', i), 1)}: models[{i}]: stride ({mst}) must be below "
                            f"max_length ({mml})")
    if not re.match(r"^(auto|cpu|cuda(:\d+)?|mps)$", cfg.device):
        problems.append(f"{where}:{lines.get(('device',), 1)}: device must be auto, cpu, cuda or cuda:N, got {cfg.device!r}")
    if cfg.heldout_fraction >= 1:
        problems.append(f"{where}:{lines.get(('heldout_fraction',), 1)}: heldout_fraction must be below 1")
    if cfg.sample_fraction <= 0:
        problems.append(f"{where}:{lines.get(('sample_fraction',), 1)}: sample_fraction must be above 0")
    if problems:
        raise RecipeError(sorted(set(problems), key=_line_of))
    cfg.output = os.path.abspath(cfg.output)
    return cfg


def _line_of(problem: str) -> int:
    m = re.match(r"^[^:]*:(\d+):", problem)
    return int(m.group(1)) if m else 0


def load_config(path: str, output: str | None = None, check_paths: bool = True) -> LabelConfig:
    return parse_config(read_text(path, "preselect config"), path, output, check_paths)
