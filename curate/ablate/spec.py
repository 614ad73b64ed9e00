"""Ablation specs: which selectors to compare against random, at what budget, with which proxy model.

```yaml
pool: out/quickstart                 # curated output folder(s) or any input curate reads; or {path:, text_key:, html_key:, ...}
tokenizer: out/tokenizer             # a tokenizer folder / tokenizer.json, or {vocab_size: 2000}: trained on the pool
seq_length: 128
budget_tokens: 60_000                # tokens each arm trains on (selected exactly; EOS after each document counts)
seeds: [0, 1]                        # one proxy run per seed and arm (init and data order)
selection_seed: 0                    # the random order of documents (random arm; ties)
baseline: random                     # the arm the others are compared with
arms:
  random: {}                         # no stages: a seeded random sample of the pool
  fineweb: {stages: [fineweb_quality: {}]}                    # the rule filter, then random order among survivors
  classifier:                        # ranked: the top documents by a score column, until the budget is met
    stages: [quality_classifier: {model: models/quality.bin, min_score: 0.0, add_scores: true}]
    order_by: quality
model: {hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 176}
train: {micro_batch_size: 8, lr: 3.0e-3, warmup_steps: 5, eval_every: 10}   # trainer keys (optimizer, schedule, eval)
eval:
  targets:                           # held-out loss on these texts (jsonl/parquet), in the trainer's log
    lambada: {path: ../shared/data/eval/lambada_openai.jsonl, max_tokens: 16384}
  tasks: [../shared/data/eval/arc_easy.jsonl]                 # downstream accuracy (curate/train/evaluate.py)
  tasks_limit: 200
```

Everything is checked before anything runs; each problem is reported with its file:line.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field

import yaml

from curate.core.recipe import RecipeError, _abs, _check, _input_problems, _load_with_lines, _type_name, configure, read_text
from curate.core.registry import all_stages
from curate.core.safety import check_name

TOP_KEYS = ("pool", "tokenizer", "seq_length", "budget_tokens", "seeds", "selection_seed", "baseline", "arms", "model",
            "train", "eval")
ARM_KEYS = ("stages", "order_by", "ascending")
EVAL_KEYS = ("targets", "tasks", "tasks_limit")
TARGET_KEYS = ("path", "text_key", "max_tokens")
# trainer keys an ablation may set (data, output, max_steps, seed and eval_tasks are the ablation's own)
TRAIN_KEYS = ("micro_batch_size", "grad_accum", "lr", "min_lr_ratio", "schedule", "warmup_steps", "decay_fraction",
              "weight_decay", "betas", "eps", "grad_clip", "eval_every", "eval_sequences", "log_every", "device", "dtype",
              "compile", "attn_implementation", "checkpoint_every", "keep_checkpoints", "reweight")
POOL_KEYS = ("path", "format", "text_key", "id_key", "url_key", "html_key", "source", "batch_size", "extract")


@dataclass
class Arm:
    name: str
    stages: list = field(default_factory=list)  # raw recipe stage items, as in a recipe
    order_by: str | None = None  # a score column: take documents from the best down
    ascending: bool = False


@dataclass
class Target:
    name: str
    path: str
    text_key: str = "auto"  # auto: text, else context + continuation, else query + the gold choice
    max_tokens: int = 16384


@dataclass
class AblateSpec:
    source_file: str
    pool: dict  # an input section of a recipe (path: list of absolute globs)
    tokenizer: str | None  # a path, or None: train one on the pool
    tokenizer_vocab: int
    seq_length: int
    budget_tokens: int
    seeds: list[int]
    selection_seed: int
    baseline: str
    arms: dict[str, Arm]
    model: dict
    train: dict
    targets: dict[str, Target]
    tasks: list[str]
    tasks_limit: int | None

    @property
    def batch(self) -> int:
        return int(self.train.get("micro_batch_size", 8)) * int(self.train.get("grad_accum", 1))

    @property
    def max_steps(self) -> int:
        """Steps every run takes: the budget less one sequence (the packing tail), in whole batches."""
        return (self.budget_tokens - self.seq_length) // (self.batch * self.seq_length)


def _unknown(keys, known, where, lines, path, what) -> list[str]:
    out = []
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
            out.append(f"{where}:{lines.get(path + (key,), lines.get(path, 1))}: {what}: unknown key {key!r}{hint}")
    return out


def _int(data, key, where, lines, problems, default=None, low=0):
    v = data.get(key, default)
    if v is None and default is None and key not in data:
        problems.append(f"{where}:1: missing required key {key!r}")
        return None
    if not isinstance(v, int) or isinstance(v, bool) or v < low:
        problems.append(f"{where}:{lines.get((key,), 1)}: {key} must be an integer >= {low}, got {v!r}")
        return None
    return v


def check_stages(items, where: str, lines: dict, path: tuple, what: str) -> list[str]:
    """The problems of a list of recipe stage items (``- name: {params}``), as ``curate run`` reports them."""
    if not isinstance(items, list):
        return [f"{where}:{lines.get(path, 1)}: {what}: stages is a list of '- name: {{params}}' items"]
    problems, registry = [], all_stages()
    for i, item in enumerate(items):
        line = lines.get(path + (i,), lines.get(path, 1))
        if isinstance(item, str):
            item = {item: {}}
        if not isinstance(item, dict) or len(item) != 1:
            problems.append(f"{where}:{line}: {what}: stage {i + 1}: each stage is one 'name: {{params}}' mapping")
            continue
        (stype, params), = item.items()
        if stype not in registry:
            close = difflib.get_close_matches(str(stype), list(registry), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{where}:{line}: {what}: unknown stage {stype!r}{hint}")
            continue
        params = dict(params or {}) if isinstance(params, dict) or params is None else params
        if not isinstance(params, dict):
            problems.append(f"{where}:{line}: {what}: stage {stype!r}: parameters must be a mapping, got {params!r}")
            continue
        name = params.pop("name", None)
        if name is not None and check_name(name, "stage name"):
            problems.append(f"{where}:{line}: {what}: {check_name(name, 'stage name')}")
        _, errs = configure(registry[stype], params, where, lines, path + (i, stype), f"{what}: stage {stype!r}")
        problems += errs
    return problems


def _text_source(path: str) -> list[str]:
    problems = _input_problems(path, "auto")
    return problems


def parse_ablate(text: str, where: str = "<ablate spec>", base_dir: str | None = None) -> AblateSpec:
    """Parse and check an ablation spec; a RecipeError lists every problem with its file:line."""
    data, lines = _load_with_lines(text, where)
    if not isinstance(data, dict):
        raise RecipeError([f"{where}:1: an ablation spec is a mapping with pool, tokenizer, budget_tokens, arms, model, eval"])
    base = base_dir or os.getcwd()

    def absolute(p: str) -> str:
        return p if "://" in p or os.path.isabs(p) else os.path.normpath(os.path.join(base, p))

    problems = _unknown(data, TOP_KEYS, where, lines, (), "ablation spec")
    for key in ("pool", "tokenizer", "budget_tokens", "arms", "eval"):
        if key not in data:
            problems.append(f"{where}:1: missing required key {key!r}")

    # pool
    pool = data.get("pool")
    if isinstance(pool, (str, list)):
        pool = {"path": pool}
        lines[("pool", "path")] = lines.get(("pool",), 1)
    pool_spec = None
    if "pool" in data:
        if not isinstance(pool, dict) or "path" not in pool:
            problems.append(f"{where}:{lines.get(('pool',), 1)}: pool needs a path (a glob, a folder or a list of them)")
        else:
            problems += _unknown(pool, POOL_KEYS, where, lines, ("pool",), "pool")
            paths = pool["path"] if isinstance(pool["path"], list) else [pool["path"]]
            if not paths or not all(isinstance(p, str) and p for p in paths):
                problems.append(f"{where}:{lines.get(('pool', 'path'), 1)}: pool: path must be a glob or a list of globs")
            else:
                for p in paths:
                    problems += [f"{where}:{lines.get(('pool', 'path'), 1)}: pool: {m.replace(repr(absolute(p)), repr(p))}"
                                 for m in _input_problems(absolute(p), pool.get("format", "auto"))]
                paths = [absolute(p) for p in paths]
                pool_spec = {**{k: v for k, v in pool.items() if k in POOL_KEYS}, "path": paths}

    # tokenizer
    tok, tok_vocab = data.get("tokenizer"), 0
    tok_line = lines.get(("tokenizer",), 1)
    if isinstance(tok, dict):
        problems += _unknown(tok, ("vocab_size",), where, lines, ("tokenizer",), "tokenizer")
        v = tok.get("vocab_size")
        if not isinstance(v, int) or isinstance(v, bool) or v < 260:
            problems.append(f"{where}:{tok_line}: tokenizer: vocab_size must be an integer >= 260 (a byte-level BPE trained "
                            f"on the pool), got {v!r}")
        else:
            tok_vocab = v
        if isinstance(pool, dict) and pool.get("html_key"):
            problems.append(f"{where}:{tok_line}: tokenizer: a pool of raw HTML (html_key) has no text to train a tokenizer "
                            "on; curate the pool first (`curate run`) and name that output, or give a tokenizer path")
        tok = None
    elif isinstance(tok, str) and tok:
        tok = absolute(tok)
        cand = tok if tok.endswith(".json") else os.path.join(tok, "tokenizer.json")
        if "://" not in tok and not os.path.exists(cand):
            problems.append(f"{where}:{tok_line}: tokenizer {data['tokenizer']!r}: no tokenizer.json there (run "
                            "`curate train-tokenizer`, or write tokenizer: {vocab_size: N} to train one on the pool)")
    elif "tokenizer" in data:
        problems.append(f"{where}:{tok_line}: tokenizer must be a path or {{vocab_size: N}}, got {tok!r}")
        tok = None

    seq_length = _int(data, "seq_length", where, lines, problems, default=128, low=2)
    budget = _int(data, "budget_tokens", where, lines, problems, default=0, low=1) if "budget_tokens" in data else None
    selection_seed = _int(data, "selection_seed", where, lines, problems, default=0)
    seeds = data.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = list(range(seeds)) if seeds >= 1 else seeds
    if (not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
            or len(set(seeds)) != len(seeds)):
        problems.append(f"{where}:{lines.get(('seeds',), 1)}: seeds must be a list of distinct integers >= 0 (or a count), "
                        f"got {data.get('seeds')!r}")
        seeds = [0]

    # arms
    arms: dict[str, Arm] = {}
    raw_arms = data.get("arms")
    if "arms" in data and (not isinstance(raw_arms, dict) or not raw_arms):
        problems.append(f"{where}:{lines.get(('arms',), 1)}: arms is a mapping of arm name -> {{stages: [...], order_by: col}}")
        raw_arms = {}
    for name, arm in (raw_arms or {}).items():
        line = lines.get(("arms", name), 1)
        bad = check_name(name, "arm name")
        if bad:
            problems.append(f"{where}:{line}: {bad}")
            continue
        arm = {} if arm is None else arm
        if not isinstance(arm, dict):
            problems.append(f"{where}:{line}: arm {name!r}: give a mapping ({{}} for a random sample, or stages / order_by)")
            continue
        problems += _unknown(arm, ARM_KEYS, where, lines, ("arms", name), f"arm {name!r}")
        stages = arm.get("stages") or []
        problems += check_stages(stages, where, lines, ("arms", name, "stages"), f"arm {name!r}")
        order_by = arm.get("order_by")
        if order_by is not None and (not isinstance(order_by, str) or not order_by):
            problems.append(f"{where}:{lines.get(('arms', name, 'order_by'), line)}: arm {name!r}: order_by must be a column name")
        asc = arm.get("ascending", False)
        if not isinstance(asc, bool):
            problems.append(f"{where}:{lines.get(('arms', name, 'ascending'), line)}: arm {name!r}: ascending must be true or false")
        arms[name] = Arm(name, stages if isinstance(stages, list) else [], order_by, bool(asc))
    baseline = data.get("baseline", "random")
    if arms and baseline not in arms:
        close = difflib.get_close_matches(str(baseline), list(arms), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (arms: {', '.join(arms)})"
        problems.append(f"{where}:{lines.get(('baseline',), lines.get(('arms',), 1))}: the baseline arm {baseline!r} is not "
                        f"among the arms{hint}; add e.g. 'random: {{}}' or set baseline:")

    # model and train
    from curate.train.config import TrainConfig, config_problems, model_problems

    model = data.get("model") or {}
    if not isinstance(model, dict):
        problems.append(f"{where}:{lines.get(('model',), 1)}: model is a mapping of LlamaConfig fields")
        model = {}
    for path, msg in model_problems(model):
        key = path[-1] if path else None
        problems.append(f"{where}:{lines.get(('model', key), lines.get(('model',), 1))}: model: {msg}")
    train = data.get("train") or {}
    if not isinstance(train, dict):
        problems.append(f"{where}:{lines.get(('train',), 1)}: train is a mapping of trainer settings ({', '.join(TRAIN_KEYS)})")
        train = {}
    problems += _unknown(train, TRAIN_KEYS, where, lines, ("train",), "train")
    train = {k: v for k, v in train.items() if k in TRAIN_KEYS and k != "reweight"}
    cfg, errs = configure(TrainConfig, {"data": "-", "output": "-", **train}, where, lines, ("train",), "train")
    problems += errs
    if cfg is not None:
        problems += [f"{where}:{lines.get(('train',), 1)}: train: {p}" for p in config_problems(cfg)]

    # evaluation
    targets: dict[str, Target] = {}
    tasks: list[str] = []
    tasks_limit = 200
    ev = data.get("eval")
    if "eval" in data and not isinstance(ev, dict):
        problems.append(f"{where}:{lines.get(('eval',), 1)}: eval is a mapping with targets and/or tasks")
        ev = {}
    ev = ev or {}
    problems += _unknown(ev, EVAL_KEYS, where, lines, ("eval",), "eval")
    raw_t = ev.get("targets") or {}
    if not isinstance(raw_t, dict):
        problems.append(f"{where}:{lines.get(('eval', 'targets'), 1)}: eval: targets is a mapping of name -> path or {{path:, text_key:, max_tokens:}}")
        raw_t = {}
    for name, t in raw_t.items():
        line = lines.get(("eval", "targets", name), 1)
        bad = check_name(name, "target name")
        if bad:
            problems.append(f"{where}:{line}: {bad}")
            continue
        if isinstance(t, str):
            t = {"path": t}
        if not isinstance(t, dict) or not isinstance(t.get("path"), str):
            problems.append(f"{where}:{line}: target {name!r}: give a path (jsonl or parquet text)")
            continue
        problems += _unknown(t, TARGET_KEYS, where, lines, ("eval", "targets", name), f"target {name!r}")
        p = absolute(t["path"])
        if not os.path.isfile(p):
            problems.append(f"{where}:{line}: target {name!r}: {t['path']!r} is not a file")
        mt = t.get("max_tokens", 16384)
        if not isinstance(mt, int) or isinstance(mt, bool) or (seq_length and mt < seq_length):
            problems.append(f"{where}:{lines.get(('eval', 'targets', name, 'max_tokens'), line)}: target {name!r}: max_tokens "
                            f"must be an integer >= seq_length ({seq_length}), got {mt!r}")
            mt = 16384
        tk = t.get("text_key", "auto")
        if not isinstance(tk, str) or not tk:
            problems.append(f"{where}:{line}: target {name!r}: text_key must be a field name")
            tk = "auto"
        targets[name] = Target(name, p, tk, mt)
    raw_tasks = ev.get("tasks") or []
    ok, raw_tasks = _check(raw_tasks, list[str])
    if not ok:
        problems.append(f"{where}:{lines.get(('eval', 'tasks'), 1)}: eval: tasks must be {_type_name(list[str])}")
        raw_tasks = []
    for i, t in enumerate(raw_tasks):
        p = absolute(t)
        if not os.path.isfile(p):
            problems.append(f"{where}:{lines.get(('eval', 'tasks', i), 1)}: eval: task file {t!r} not found")
        tasks.append(p)
    tasks_limit = ev.get("tasks_limit", 200)
    if tasks_limit is not None and (not isinstance(tasks_limit, int) or isinstance(tasks_limit, bool) or tasks_limit < 1):
        problems.append(f"{where}:{lines.get(('eval', 'tasks_limit'), 1)}: eval: tasks_limit must be an integer >= 1 or null")
    if "eval" in data and not targets and not tasks:
        problems.append(f"{where}:{lines.get(('eval',), 1)}: eval: name at least one target (held-out loss) or task")

    # a selector trained on the evaluation's own text would win by leaking it: refuse such an arm
    evaluated = {**{f"target {n!r}": t.path for n, t in targets.items()},
                 **{f"task {os.path.basename(t)!r}": t for t in tasks}}
    for name, arm in arms.items():
        for _, stage_model, mline in _stage_models(arm.stages, lines, ("arms", name, "stages")):
            problems += [f"{where}:{mline}: arm {name!r}: {msg}" for msg in leak_problems(absolute(stage_model), evaluated)]

    spec = AblateSpec(where, pool_spec or {}, tok if isinstance(tok, str) else None, tok_vocab, seq_length or 128,
                      budget or 0, seeds, selection_seed or 0, baseline, arms, model, train, targets, tasks,
                      tasks_limit if isinstance(tasks_limit, int) else None)
    if not problems and budget and seq_length:
        if spec.max_steps < 1:
            problems.append(f"{where}:{lines.get(('budget_tokens',), 1)}: budget_tokens {budget:,} is less than one batch plus "
                            f"one sequence ({spec.batch} x {seq_length} + {seq_length} tokens); raise it or lower "
                            "micro_batch_size")
    if problems:
        raise RecipeError(problems)
    return spec


def load_ablate(path: str) -> AblateSpec:
    return parse_ablate(read_text(path, "ablation spec"), path, base_dir=os.getcwd())


# ------------------------------------------------------------------------- leaks of evaluation text


def _stage_models(items, lines: dict, path: tuple):
    """(stage index, model path, line) of every stage item that names a model file (``model:``)."""
    for i, item in enumerate(items if isinstance(items, list) else []):
        if not isinstance(item, dict) or len(item) != 1:
            continue
        (stype, params), = item.items()
        model = params.get("model") if isinstance(params, dict) else None
        if isinstance(model, str) and model:
            yield i, model, lines.get(path + (i, stype, "model"), lines.get(path + (i,), lines.get(path, 1)))


def training_files(model: str) -> dict[str, list[str]]:
    """The files a fastText model was trained on, by role, from the ``MODEL.json`` that `curate train-scorer`
    writes next to it (its ``data`` section: positive_data, negative_data, data); {} when there is none.

    Paths in ``MODEL.json`` are as they were given to train-scorer (relative ones: to the folder it ran
    in, which is taken to be the current one); globs are expanded.
    """
    import glob
    import json

    sidecar = model + ".json"
    if "://" in model or not os.path.isfile(sidecar):
        return {}
    try:
        with open(sidecar) as f:
            data = (json.load(f) or {}).get("data") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    out: dict[str, list[str]] = {}
    for role in ("positive_data", "negative_data", "data"):
        entries = data.get(role) or []
        for e in entries if isinstance(entries, list) else [entries]:
            p = e.get("path") if isinstance(e, dict) else e
            for q in p if isinstance(p, list) else [p]:
                if not isinstance(q, str):
                    continue
                q = os.path.expanduser(q)
                found = glob.glob(q) or [q]
                out.setdefault(role, []).extend(os.path.realpath(x) for x in found)
    return out


def leak_problems(model: str, evaluated: dict[str, str]) -> list[str]:
    """Problems when ``model`` was trained on a file the ablation evaluates on (``evaluated``: label -> path)."""
    files = training_files(model)
    if not files:
        return []
    real = {os.path.realpath(p): label for label, p in evaluated.items()}
    out = []
    for role, paths in files.items():
        for p in sorted(set(paths)):
            if p in real:
                out.append(f"its model {model} was trained on {p} ({role} in {model}.json), which is the evaluation's "
                           f"{real[p]}: the arm would be scored on text its selector was trained on (a leak); retrain "
                           "the model without that file (see samples/ablate/quality-heldout.yaml) or evaluate on other text")
    return out


def validate_spec(path: str, output: str | None = None) -> list[str]:
    """Every problem `curate ablate PATH` would stop on before training, as file:line messages; [] when none.

    Nothing runs and nothing is written: the spec itself (:func:`parse_ablate`, including the leak
    check of every arm's model), each arm's stages as the recipe the arm runs (missing model files,
    stage parameters), the targets' text, and with a tokenizer path also what needs tokens (each
    target holds a sequence, each task continuation fits seq_length). With ``output``, that it does
    not overlap the pool. A tokenizer trained on the pool ({vocab_size: N}) is not trained here: the
    token checks then run at the start of the ablation.
    """
    import yaml

    from curate.core.recipe import parse_recipe
    from curate.core.safety import UserError, check_output

    try:
        spec = load_ablate(path)
    except RecipeError as e:
        return list(e.problems) if hasattr(e, "problems") else [str(e)]
    problems: list[str] = []
    for arm in spec.arms.values():
        text = yaml.safe_dump({"input": spec.pool, "output": os.path.join(output or os.getcwd(), "_validate"),
                               "stages": arm.stages}, sort_keys=False)
        try:
            parse_recipe(text, f"{path} (arm {arm.name!r})")
        except RecipeError as e:
            problems += list(e.problems) if hasattr(e, "problems") else [str(e)]
    from curate.ablate import run as R

    for t in spec.targets.values():
        try:
            R._target_texts(t)
        except (UserError, OSError, ValueError) as e:
            problems.append(f"{path}: {e}")
    if spec.tokenizer:
        try:
            from curate.tokenizer import load_tokenizer

            tok = load_tokenizer(spec.tokenizer)
            for t in spec.targets.values():
                R.pack_target(t, tok, spec.seq_length)
            R.check_tasks(spec, tok)
        except (UserError, OSError, ValueError) as e:
            problems.append(f"{path}: {e}")
    if output:
        try:
            check_output(os.path.abspath(output), spec.pool["path"], "--output")
        except UserError as e:
            problems.append(f"{path}: {e}")
    return problems


def dump(obj) -> str:
    return yaml.safe_dump(obj, sort_keys=True)
