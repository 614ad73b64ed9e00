"""Trainer configs (YAML), validated whole before anything runs, with file:line messages.

```yaml
data: out/mix                       # the output folder of `curate mix` (manifest.json + shards)
output: out/model
model:                              # any transformers LlamaConfig field; vocab and context come from the mix
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
eval_every: 50                      # held-out loss per domain
checkpoint_every: 100
eval_tasks: [../shared/data/eval/arc_easy.jsonl]
reweight: {strategy: linupper}      # loss-based sample reweighting (Sow et al. 2025)
online_mixture: {eta: 0.5}          # Skill-it style online domain weights from held-out losses
```
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

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
    grad_clip: float = 1.0
    seed: int = 0
    eval_every: int = 100
    eval_sequences: int = 64  # held-out sequences per domain at each evaluation
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    eval_tasks: list[str] = field(default_factory=list)
    eval_tasks_limit: int | None = 500
    eval_tasks_every: int = 0  # 0: only at the end
    log_every: int = 10
    device: str = "auto"  # auto | cpu | cuda
    dtype: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16
    compile: str = "auto"  # auto (on GPU) | true | false
    attn_implementation: str = "sdpa"
    reweight: ReweightSection = field(default_factory=ReweightSection)
    online_mixture: OnlineMixtureSection | None = None
    source_file: str = "<config>"

    def __post_init__(self):
        if self.schedule not in ("cosine", "wsd", "constant"):
            raise ValueError(f"schedule must be cosine, wsd or constant, got {self.schedule!r}")
        if self.micro_batch_size < 1 or self.grad_accum < 1:
            raise ValueError("micro_batch_size and grad_accum must be >= 1")
        if self.dtype not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"dtype must be auto, float32 or bfloat16, got {self.dtype!r}")
        if str(self.compile).lower() not in ("auto", "true", "false"):
            raise ValueError(f"compile must be auto, true or false, got {self.compile!r}")
        if not 0 < self.decay_fraction <= 1:
            raise ValueError("decay_fraction must be in (0, 1]")


SECTIONS = {"reweight": ReweightSection, "online_mixture": OnlineMixtureSection}


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
        data[key] = obj
    sections = {k: data.pop(k) for k in SECTIONS if k in data}
    cfg, errs = configure(TrainConfig, data, where, lines, (), "trainer")
    problems += errs
    if problems:
        raise RecipeError(problems)
    for k, v in sections.items():
        setattr(cfg, k, v if v is not None else (ReweightSection() if k == "reweight" else None))
    if cfg.reweight.strategy not in ("none", "linupper", "quadratic", "extremes"):
        raise RecipeError([f"{where}:{lines.get(('reweight', 'strategy'), 0)}: reweight.strategy must be none, "
                           f"linupper, quadratic or extremes, got {cfg.reweight.strategy!r}"])
    cfg.source_file = where
    for name in ("data", "output", "init_from"):
        v = getattr(cfg, name)
        if v and "://" not in v:
            setattr(cfg, name, os.path.abspath(v))
    cfg.eval_tasks = [os.path.abspath(p) for p in cfg.eval_tasks]
    return cfg


def load_config(path: str) -> TrainConfig:
    return parse_config(read_text(path, "trainer config"), path)
