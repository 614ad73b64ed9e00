"""Trainer configs (YAML), validated whole before anything runs, with file:line messages.

```yaml
data: out/mix                       # the output folder of `curate mix` (manifest.json + shards)
output: out/model
model:                              # transformers LlamaConfig fields; vocab and context come from the mix
  hidden_size: 128
  num_hidden_layers: 2
  num_attention_heads: 4
  intermediate_size: 352
micro_batch_size: 8
grad_accum: 1
max_steps: 300                      # default: one pass over every phase's sequences
lr: 3.0e-3
schedule: cosine                    # cosine | wsd | constant (after linear warmup)
warmup_steps: 20
eval_every: 50                      # held-out loss per domain; 0: only at the end
checkpoint_every: 100               # 0: only at the end
eval_tasks: [../shared/data/eval/arc_easy.jsonl]
reweight: {strategy: linupper}      # loss-based sample reweighting (Sow et al. 2025)
online_mixture: {eta: 0.5}          # Skill-it style online domain weights from held-out losses
selection: {method: mates, stage_steps: 100, reference: ../shared/data/eval/lambada_openai.jsonl}  # MATES
```

**Validation** (``parse_config``, so ``curate train`` refuses a bad config before it reads any data):
every key at every depth is known (a typo gets a did-you-mean and its file:line), every value has
its type and range (``configure``'s conventions: numbers finite and >= 0, ``*_size`` >= 1,
fractions in [0, 1]; then these rules):

* ``micro_batch_size``, ``grad_accum``, ``max_steps`` (or null: one pass over the mix),
  ``eval_sequences``, ``log_every``, ``keep_checkpoints``: integers >= 1; ``eval_tasks_limit``: >= 1
  or null (all records); ``warmup_steps``, ``eval_every``, ``checkpoint_every``,
  ``eval_tasks_every``: integers >= 0, where 0 means "only at the end" (the final evaluation and
  the final checkpoint always happen); ``seed``: an integer >= 0.
* ``lr`` > 0; ``eps`` > 0; ``weight_decay`` >= 0; ``min_lr_ratio`` in [0, 1]; ``decay_fraction`` in
  (0, 1]; ``betas``: two numbers in [0, 1); ``grad_clip`` >= 0, where 0 turns clipping off (the
  gradient norm is still logged).
* ``schedule``: cosine | wsd | constant; ``device``: auto | cpu | cuda | cuda:N; ``dtype``: auto |
  float32 | bfloat16; ``compile``: auto | true | false; ``attn_implementation``: eager | sdpa |
  flash_attention_2 | flash_attention_3 | flex_attention (or a hub kernel, ``org/name``).
* ``reweight``: ``strategy`` none | linupper | quadratic | extremes, ``r`` > 0 (or null: the
  strategy's default), ``warmup_steps`` >= 0. ``online_mixture``: ``eta`` >= 0, ``every`` >= 0 (0:
  at every evaluation), ``min_weight`` in [0, 1] (and at most 1/number of domains, checked against
  the mix), ``graph`` a square matrix (its size is checked against the mix's domains).
  ``selection`` (``curate.mates``): ``method`` mates | random | static, ``stage_steps`` >= 1, ``fraction`` in
  (0, 1], ``temperature`` >= 0, ``probes`` >= 4, ``probe_batch`` >= 1, ``reference`` a jsonl (required for mates),
  ``classifier`` an existing fastText .bin (required for static),
  ``encoder`` tiny | minilm | a local encoder folder, ``holdout_fraction`` in (0, 1).
* ``model``: every key must be a field of transformers' ``LlamaConfig`` (read from the installed
  transformers, plus the legacy ``rope_theta``/``rope_scaling``), with the type of that field's
  default (int, float, bool or str), sizes >= 1, ``hidden_act`` one of transformers' activations,
  ``hidden_size`` divisible by ``num_attention_heads`` (unless ``head_dim`` is given) and
  ``num_attention_heads`` by ``num_key_value_heads``. The trainer sets ``vocab_size`` and the
  ``bos``/``eos``/``pad`` token ids from the mix's tokenizer, so those are refused here;
  ``max_position_embeddings`` is a minimum (the mix's ``seq_length`` when larger); ``dtype`` and
  ``attn_implementation`` belong at the top level. Defaults: ``MODEL_DEFAULTS``. With
  ``init_from`` the model (and its config) come from that checkpoint and ``model:`` is ignored.
* ``data`` must be a finished ``curate mix`` output (``manifest.json`` present, no ``_INCOMPLETE``
  marker) and ``output`` must not overlap it; both are checked when the trainer starts, as are the
  ``eval_tasks`` files (read and checked before the first step, not after the last).

Command-line overrides (``--data``, ``--output``, ``--max-steps``) are checked by the same rules.

**Resume.** A run resumes from the newest checkpoint in ``output/checkpoints/``. The checkpoint
records the settings that decide what the continuation computes (``RESUME_CHECKED`` below, plus
the model's effective LlamaConfig, the effective ``max_steps`` and a fingerprint of the mix), and
a resume with different values is refused, listing each change as ``key: old -> new``, unless
``curate train --allow-config-change`` is given (then the changes are printed and the run goes on
from the checkpoint with the new values; the result is no longer the run either config describes).

* Checked: ``lr``, ``schedule``, ``warmup_steps``, ``min_lr_ratio`` (not for constant),
  ``decay_fraction`` (wsd), ``weight_decay``, ``betas``, ``eps``, ``grad_clip``, the global batch
  ``micro_batch_size x grad_accum x processes`` (the data position is step x batch; with
  reweighting also ``micro_batch_size x processes``, the sequences one softmax spans),
  ``max_steps`` (the cosine/WSD curve and the phase boundaries are functions of it: extending a
  run is a config change), ``reweight.*``,
  ``online_mixture.*``, ``selection.*``, the model's config and the mix. With ``online_mixture``, also ``seed``
  (it draws each batch's domains), ``eval_every`` and ``eval_sequences`` (the held-out losses that
  move the domain weights).
* Free to change: ``output``, ``data`` (the path: the mix may move, its content is what is
  checked), ``init_from`` (the weights come from the checkpoint), ``eval_every`` /
  ``eval_sequences`` / ``seed`` without an online mixture, ``eval_tasks*``, ``log_every``,
  ``checkpoint_every``, ``keep_checkpoints``, and the execution settings ``device``, ``dtype``,
  ``compile``, ``attn_implementation``, ``parallel`` (the run continues, but is then not
  bit-identical to an uninterrupted one). The number of processes (``torchrun``) may change when
  the global batch ``micro_batch_size x grad_accum x processes`` stays the same (the checkpoint
  records ``global_batch`` instead of ``micro_batch_size`` and ``grad_accum``; see
  ``curate.train.distributed``).
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import math
import os
import re
import types
from dataclasses import dataclass, field
from typing import ClassVar

from curate.core.recipe import RecipeError, _load_with_lines, configure, read_text


@dataclass
class ReweightSection:
    strategy: str = "none"  # none | linupper | quadratic | extremes
    r: float | None = None  # temperature; None: the paper's default for the strategy
    warmup_steps: int = 0


@dataclass
class OnlineMixtureSection:
    eta: float = 0.5
    every: int = 0  # steps between weight updates; 0: every eval_every
    min_weight: float = 0.0
    graph: list[list[float]] | None = None  # Skill-it skill graph, row i: how training on domain i helps each domain

    limits: ClassVar[dict] = {"graph": (None, None)}  # entries may be negative (domain i hurts domain j)


@dataclass
class SelectionSection:
    """Model-aware data selection in stages (MATES, Yu et al. 2024): ``curate.mates``."""
    method: str = "mates"  # mates | random (the baseline: the same stages, a uniform draw) | static (fixed classifier scores)
    stage_steps: int = 100  # steps per stage; a stage trains on the selection made at its start
    fraction: float = 0.2  # share of the pool selected per stage (MATES keeps 20%)
    temperature: float = 1.0  # Gumbel-top-k: key = z(score) / temperature + Gumbel noise; 0: plain top-k
    probes: int = 200  # probe documents per stage (one oracle step each)
    probe_batch: int = 1  # > 1: probe that many documents at once with torch.func (equal up to float rounding)
    reference: str | None = None  # jsonl of the target: lambada ({context, continuation}), multiple choice or {text}
    reference_limit: int = 64  # reference records used for the oracle loss
    encoder: str = "tiny"  # influence model: tiny (a small transformer trained here) | minilm | a local encoder folder
    encoder_max_tokens: int = 128
    fit_epochs: int = 10
    fit_lr: float = 1e-3
    fit_batch_size: int = 16
    holdout_fraction: float = 0.1  # probes held out for Spearman (best epoch kept)
    score_batch_size: int = 64
    random_first_stage: bool = True  # MATES warms up on random data: stage 0 is a uniform draw
    classifier: str | None = None  # method static: a fastText quality model (`curate train-scorer quality`)

    limits: ClassVar[dict] = {"temperature": (0, None), "fit_lr": (0, None)}


@dataclass
class TrainConfig:
    data: str
    output: str
    model: dict = field(default_factory=dict)
    init_from: str | None = None
    micro_batch_size: int = 8
    grad_accum: int = 1
    max_steps: int | None = None
    lr: float = 3e-4
    min_lr_ratio: float = 0.1
    schedule: str = "cosine"
    warmup_steps: int = 100
    decay_fraction: float = 0.2  # wsd: the final fraction of steps that decays
    weight_decay: float = 0.1
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    grad_clip: float = 1.0  # 0: no clipping
    seed: int = 0
    eval_every: int = 100  # 0: only at the end
    eval_sequences: int = 64  # held-out sequences per domain at each evaluation
    checkpoint_every: int = 500  # 0: only at the end
    keep_checkpoints: int = 2
    eval_tasks: list[str] = field(default_factory=list)
    eval_tasks_limit: int | None = 500
    eval_tasks_every: int = 0  # 0: only at the end
    log_every: int = 10
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16
    compile: bool | str = "auto"  # auto (on GPU) | true | false
    attn_implementation: str = "sdpa"
    parallel: str = "ddp"  # with several processes (torchrun): ddp (a replica each) | fsdp (sharded): distributed.py
    reweight: ReweightSection = field(default_factory=ReweightSection)
    online_mixture: OnlineMixtureSection | None = None
    selection: SelectionSection | None = None
    source_file: str = "<config>"

    # model: values are LlamaConfig fields, checked by model_problems (not the >= 0 convention of configure)
    limits: ClassVar[dict] = {"model": (None, None)}


SECTIONS = {"reweight": ReweightSection, "online_mixture": OnlineMixtureSection, "selection": SelectionSection}

# the model the trainer builds when `model:` leaves a field out (tiny: a CPU smoke test)
MODEL_DEFAULTS = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=352,
                      tie_word_embeddings=True, rope_theta=10000.0)
# LlamaConfig fields `model:` may not set, and why
MODEL_REFUSED = {
    "vocab_size": "the trainer sets it from the mix's tokenizer",
    "bos_token_id": "the trainer sets it from the mix's tokenizer (its EOS id)",
    "eos_token_id": "the trainer sets it from the mix's tokenizer",
    "pad_token_id": "the trainer sets it from the mix's tokenizer (its EOS id)",
    "dtype": "set the training precision with the top-level dtype:",
    "torch_dtype": "set the training precision with the top-level dtype:",
    "attn_implementation": "use the top-level attn_implementation:",
    "transformers_version": "transformers writes it",
    "architectures": "transformers writes it",
    "model_type": "the trainer always builds a llama model",
}
MODEL_POSITIVE = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                  "head_dim", "max_position_embeddings")
ATTN_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")
REWEIGHT_STRATEGIES = ("none", "linupper", "quadratic", "extremes")

# settings recorded in a checkpoint and compared on resume (see the module docstring); the trainer
# adds the effective max_steps, the model's effective LlamaConfig and a fingerprint of the mix
RESUME_CHECKED = ("lr", "schedule", "warmup_steps", "min_lr_ratio", "decay_fraction", "weight_decay", "betas", "eps",
                  "grad_clip", "micro_batch_size", "grad_accum", "reweight", "online_mixture", "selection")
RESUME_CHECKED_WITH_MIXTURE = ("seed", "eval_every", "eval_sequences")


def resume_settings(cfg: TrainConfig) -> dict:
    """The config values a resume must not change silently, flattened (``reweight.r``) and JSON-ready."""
    out = {}
    for key in RESUME_CHECKED + (RESUME_CHECKED_WITH_MIXTURE if cfg.online_mixture is not None else ()):
        if key == "decay_fraction" and cfg.schedule != "wsd":
            continue
        if key == "min_lr_ratio" and cfg.schedule == "constant":
            continue
        value = getattr(cfg, key)
        if key == "selection" and value is None:
            continue  # checkpoints from before `selection` existed resume unchanged
        if key in SECTIONS:
            if value is None:
                out[key] = None
            else:
                out.update({f"{key}.{k}": v for k, v in vars(value).items()
                            if not (k == "classifier" and v is None)})  # runs from before `static` resume unchanged
            continue
        out[key] = list(value) if isinstance(value, (list, tuple)) else value
    return out


# ------------------------------------------------------------------------------- value checks


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int_at_least(n):
    return lambda v: _is_int(v) and v >= n, f"an integer >= {n}"


_RULES = {  # key: (predicate, what it must be)
    "data": (lambda v: isinstance(v, str) and v.strip() != "", "a folder (the output of `curate mix`)"),
    "output": (lambda v: isinstance(v, str) and v.strip() != "", "a folder"),
    "model": (lambda v: isinstance(v, dict), "a mapping of LlamaConfig fields"),
    "init_from": (lambda v: v is None or (isinstance(v, str) and v.strip() != ""), "a model folder or null"),
    "micro_batch_size": _int_at_least(1),
    "grad_accum": _int_at_least(1),
    "max_steps": (lambda v: v is None or (_is_int(v) and v >= 1), "an integer >= 1 (or null: one pass over the mix)"),
    "lr": (lambda v: _is_num(v) and v > 0, "a number > 0"),
    "min_lr_ratio": (lambda v: _is_num(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "schedule": (lambda v: v in ("cosine", "wsd", "constant"), "cosine, wsd or constant"),
    "warmup_steps": _int_at_least(0),
    "decay_fraction": (lambda v: _is_num(v) and 0 < v <= 1, "a number in (0, 1]"),
    "weight_decay": (lambda v: _is_num(v) and v >= 0, "a number >= 0"),
    "betas": (lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_num(b) and 0 <= b < 1 for b in v),
              "two numbers in [0, 1), e.g. [0.9, 0.95]"),
    "eps": (lambda v: _is_num(v) and v > 0, "a number > 0"),
    "grad_clip": (lambda v: _is_num(v) and v >= 0, "a number >= 0 (0: no clipping)"),
    "seed": (lambda v: _is_int(v) and 0 <= v < 2 ** 63, "an integer >= 0"),
    "eval_every": (lambda v: _is_int(v) and v >= 0, "an integer >= 0 (0: only at the end)"),
    "eval_sequences": _int_at_least(1),
    "checkpoint_every": (lambda v: _is_int(v) and v >= 0, "an integer >= 0 (0: only at the end)"),
    "keep_checkpoints": _int_at_least(1),
    "eval_tasks": (lambda v: isinstance(v, list) and all(isinstance(p, str) and p for p in v), "a list of task files"),
    "eval_tasks_limit": (lambda v: v is None or (_is_int(v) and v >= 1), "an integer >= 1 (or null: every record)"),
    "eval_tasks_every": (lambda v: _is_int(v) and v >= 0, "an integer >= 0 (0: only at the end)"),
    "log_every": _int_at_least(1),
    "parallel": (lambda v: v in ("ddp", "fsdp"), "ddp or fsdp"),
    "device": (lambda v: isinstance(v, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?", v) is not None,
               "auto, cpu, cuda or cuda:N"),
    "dtype": (lambda v: v in ("auto", "float32", "bfloat16"), "auto, float32 or bfloat16"),
    "compile": (lambda v: str(v).lower() in ("auto", "true", "false"), "auto, true or false"),
    "attn_implementation": (lambda v: v in ATTN_IMPLEMENTATIONS or (isinstance(v, str) and re.fullmatch(
        r"[\w.-]+/[\w.-]+(:[\w.-]+)?", v) is not None), " | ".join(ATTN_IMPLEMENTATIONS) + " (or a hub kernel org/name)"),
}
_SECTION_RULES = {
    "reweight": {
        "strategy": (lambda v: v in REWEIGHT_STRATEGIES, ", ".join(REWEIGHT_STRATEGIES[:-1]) + " or extremes"),
        "r": (lambda v: v is None or (_is_num(v) and v > 0), "a number > 0 (or null: the strategy's default)"),
        "warmup_steps": _int_at_least(0),
    },
    "online_mixture": {
        "eta": (lambda v: _is_num(v) and v >= 0, "a number >= 0"),
        "every": (lambda v: _is_int(v) and v >= 0, "an integer >= 0 (0: at every evaluation)"),
        "min_weight": (lambda v: _is_num(v) and 0 <= v <= 1, "a number in [0, 1] (at most 1/number of domains)"),
        "graph": (lambda v: v is None or (isinstance(v, list) and len(v) > 0 and all(
            isinstance(row, list) and len(row) == len(v) and all(_is_num(x) for x in row) for row in v)),
                  "a square matrix of numbers, one row and column per domain (or null)"),
    },
    "selection": {
        "method": (lambda v: v in ("mates", "random", "static"), "mates, random or static"),
        "stage_steps": _int_at_least(1),
        "fraction": (lambda v: _is_num(v) and 0 < v <= 1, "a number in (0, 1]"),
        "temperature": (lambda v: _is_num(v) and v >= 0, "a number >= 0 (0: plain top-k)"),
        "probes": _int_at_least(4),
        "probe_batch": _int_at_least(1),
        "reference": (lambda v: v is None or (isinstance(v, str) and v.strip() != ""), "a jsonl file (or null)"),
        "reference_limit": _int_at_least(1),
        "encoder": (lambda v: isinstance(v, str) and v.strip() != "", "tiny, minilm or a local encoder folder"),
        "encoder_max_tokens": _int_at_least(8),
        "fit_epochs": _int_at_least(1),
        "fit_lr": (lambda v: _is_num(v) and v > 0, "a number > 0"),
        "fit_batch_size": _int_at_least(1),
        "holdout_fraction": (lambda v: _is_num(v) and 0 < v < 1, "a number in (0, 1)"),
        "score_batch_size": _int_at_least(1),
        "random_first_stage": (lambda v: isinstance(v, bool), "true or false"),
        "classifier": (lambda v: v is None or (isinstance(v, str) and v.strip() != ""), "a fastText .bin (or null)"),
    },
}


@functools.lru_cache(maxsize=1)
def llama_fields() -> dict[str, tuple[type | None, bool]] | None:
    """``{field: (type of its default or None, may be null)}`` for transformers' LlamaConfig; None without transformers."""
    try:
        from transformers import LlamaConfig
    except ImportError:
        return None
    params = {n: p for n, p in inspect.signature(LlamaConfig.__init__).parameters.items()
              if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    default = LlamaConfig()
    names = set(params) | {k for k in default.to_dict() if not k.startswith("_")} | {"rope_theta", "rope_scaling"}
    out = {}
    for name in names:
        value = getattr(default, name, None)
        tp = next((t for t in (bool, int, float, str, dict, list) if isinstance(value, t)), None)
        nullable = value is None or (name in params and params[name].default is None)
        out[name] = (tp, nullable)
    out["rope_theta"] = (float, False)  # transformers 5 moved it into rope_parameters; still accepted
    return out


def _activations() -> list[str] | None:
    try:
        from transformers.activations import ACT2FN
    except ImportError:
        return None
    return sorted(ACT2FN)


def model_problems(model: dict) -> list[tuple[tuple, str]]:
    """((key path, problem), ...) for a ``model:`` section, checked against transformers' LlamaConfig."""
    fields = llama_fields()
    if fields is None:  # no transformers: the trainer says how to install it
        return []
    out = []
    for key, value in model.items():
        path = ("model", key)
        if key in MODEL_REFUSED:
            out.append((path, f"model: {key!r} cannot be set here: {MODEL_REFUSED[key]}"))
            continue
        if not isinstance(key, str) or key not in fields or key.startswith("_"):
            close = difflib.get_close_matches(str(key), sorted(k for k in fields if k not in MODEL_REFUSED), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            out.append((path, f"model: unknown LlamaConfig field {key!r}{hint}"))
            continue
        tp, nullable = fields[key]
        if value is None:
            if not nullable:
                out.append((path, f"model: {key} must not be null"))
            continue
        if tp is int and not _is_int(value) or tp is float and not _is_num(value) or \
                tp in (bool, str, dict, list) and not isinstance(value, tp):
            name = {float: "a number", int: "an integer", bool: "true or false", str: "a string", dict: "a mapping",
                    list: "a list"}[tp]
            out.append((path, f"model: {key} must be {name}, got {value!r}"))
            continue
        if key in MODEL_POSITIVE and value < 1:
            out.append((path, f"model: {key} must be >= 1, got {value!r}"))
        elif key in ("rms_norm_eps", "rope_theta") and value <= 0:
            out.append((path, f"model: {key} must be > 0, got {value!r}"))
        elif key == "initializer_range" and value < 0:
            out.append((path, f"model: {key} must be >= 0, got {value!r}"))
        elif key == "attention_dropout" and not 0 <= value < 1:
            out.append((path, f"model: {key} must be in [0, 1), got {value!r}"))
        elif key == "hidden_act":
            acts = _activations()
            if acts is not None and value not in acts:
                close = difflib.get_close_matches(value, acts, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(acts)})"
                out.append((path, f"model: unknown hidden_act {value!r}{hint}"))
    if not out:
        p = {**MODEL_DEFAULTS, **{k: v for k, v in model.items() if v is not None}}
        heads, hidden = p["num_attention_heads"], p["hidden_size"]
        kv = p.get("num_key_value_heads") or heads
        if "head_dim" not in p and hidden % heads:
            out.append((("model", "num_attention_heads"), f"model: hidden_size {hidden} is not divisible by "
                        f"num_attention_heads {heads} (or set head_dim)"))
        if heads % kv:
            out.append((("model", "num_key_value_heads"), f"model: num_attention_heads {heads} is not divisible by "
                        f"num_key_value_heads {kv}"))
    return out


def config_problems(cfg: TrainConfig, where: str | None = None, lines: dict | None = None,
                    overridden: dict | None = None) -> list[str]:
    """Every problem with ``cfg``'s values, each as ``file:line: ...`` (``--flag: ...`` for command-line overrides)."""
    return [text for _, text in _problems(cfg, where, lines, overridden)]


def _problems(cfg, where=None, lines=None, overridden=None) -> list[tuple[tuple, str]]:
    """(key path, ``file:line: problem``) for every problem with ``cfg``'s values."""
    where = where or cfg.source_file
    lines = lines or {}
    overridden = overridden or {}

    def at(path):
        if len(path) == 1 and path[0] in overridden:
            return overridden[path[0]]
        line = lines.get(path, lines.get(path[:1]))
        return f"{where}:{line}" if line else where

    out = []
    for key, (ok, what) in _RULES.items():
        value = getattr(cfg, key)
        if not ok(value):
            out.append(((key,), f"{at((key,))}: {key} must be {what}, got {value!r}"))
    for section, rules in _SECTION_RULES.items():
        obj = getattr(cfg, section)
        if obj is None:
            continue
        for key, (ok, what) in rules.items():
            value = getattr(obj, key, None)
            if not ok(value):
                out.append(((section, key), f"{at((section, key))}: {section}.{key} must be {what}, got {value!r}"))
    if isinstance(cfg.model, dict):
        out += [(path, f"{at(path)}: {msg}") for path, msg in model_problems(cfg.model)]
    sel = getattr(cfg, "selection", None)
    if sel is not None and getattr(sel, "method", None) == "mates" and not getattr(sel, "reference", None):
        out.append((("selection", "reference"), f"{at(('selection',))}: selection.reference is required with method "
                    "mates: the jsonl whose loss the oracle probes (e.g. ../shared/data/eval/lambada_openai.jsonl)"))
    if sel is not None and getattr(sel, "method", None) == "static":
        clf = getattr(sel, "classifier", None)
        if not clf:
            out.append((("selection", "classifier"), f"{at(('selection',))}: selection.classifier is required with "
                        "method static: a fastText quality model (train one with `curate train-scorer quality`)"))
        elif isinstance(clf, str) and "://" not in clf and not os.path.isfile(clf):
            out.append((("selection", "classifier"), f"{at(('selection', 'classifier'))}: selection.classifier: "
                        f"no such file {os.path.abspath(clf)} (train one with `curate train-scorer quality`)"))
    if sel is not None and getattr(cfg, "online_mixture", None) is not None:
        out.append((("selection",), f"{at(('selection',))}: selection and online_mixture both decide what a step "
                    "reads: use one"))
    return out


def check_config(cfg: TrainConfig, overridden: dict | None = None) -> None:
    """Raise a RecipeError listing every problem with ``cfg`` (for configs built or changed in code)."""
    problems = config_problems(cfg, overridden=overridden)
    if problems:
        raise RecipeError(problems)


def _line_of(problem: str) -> int:
    m = re.match(r"[^:]*:(\d+):", problem)
    return int(m.group(1)) if m else 0


def _defaults(cls) -> dict:
    return {f.name: f.default if f.default is not dataclasses.MISSING else
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "<missing>" for f in dataclasses.fields(cls)}


def _raw_view(data: dict, sections: dict) -> types.SimpleNamespace:
    """The values of a config that ``configure`` refused, with defaults, for ``config_problems``."""
    view = _defaults(TrainConfig)
    view.update({k: v for k, v in data.items() if k in view})
    for key, cls in SECTIONS.items():
        value = sections.get(key, view[key])
        if isinstance(value, dict):
            value = types.SimpleNamespace(**{**_defaults(cls), **{k: v for k, v in value.items() if k in _defaults(cls)}})
        elif value is not None and not isinstance(value, cls):
            value = None  # not a mapping: already reported
        view[key] = value if value is not None or key != "reweight" else ReweightSection()
    return types.SimpleNamespace(**view)


def parse_config(text: str, where: str = "<config>", base_dir: str | None = None) -> TrainConfig:
    data, lines = _load_with_lines(text, where)
    if not isinstance(data, dict):
        raise RecipeError([f"{where}:1: a trainer config is a mapping with at least data and output"])
    problems = []
    for key, cls in SECTIONS.items():
        value = data.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            problems.append(f"{where}:{lines.get((key,), 0)}: {key} must be a mapping")
            continue
        obj, errs = configure(cls, value, where, lines, (key,), key)
        problems += errs
        data[key] = obj if obj is not None else value  # the raw mapping when refused: checked below
    sections = {k: data.pop(k) for k in SECTIONS if k in data}
    cfg, errs = configure(TrainConfig, data, where, lines, (), "trainer")
    problems += errs
    if problems:
        # list the trainer's own problems too (for keys configure had nothing to say about), so a
        # config is fixed in one go
        more = [text for path, text in _problems(_raw_view(data, sections), where, lines)
                if not any(p.startswith(text.split(": ", 1)[0] + ":") and f"{path[-1]!r}" in p for p in problems)]
        raise RecipeError(sorted(problems + more, key=_line_of))
    for k, v in sections.items():
        setattr(cfg, k, v if v is not None else (ReweightSection() if k == "reweight" else None))
    cfg.source_file = where
    problems = config_problems(cfg, where, lines)
    if problems:
        raise RecipeError(problems)
    for name in ("data", "output", "init_from"):
        v = getattr(cfg, name)
        if v and "://" not in v:
            setattr(cfg, name, os.path.abspath(v))
    cfg.eval_tasks = [os.path.abspath(p) for p in cfg.eval_tasks]
    if cfg.selection is not None:
        sel = cfg.selection
        if sel.reference and "://" not in sel.reference:
            sel.reference = os.path.abspath(sel.reference)
        if sel.classifier and "://" not in sel.classifier:
            sel.classifier = os.path.abspath(sel.classifier)
        if sel.encoder not in ("tiny", "minilm") and "://" not in sel.encoder:
            sel.encoder = os.path.abspath(sel.encoder)
    return cfg


def load_config(path: str) -> TrainConfig:
    return parse_config(read_text(path, "trainer config"), path)
