"""Loss-based per-sample reweighting of a training batch.

Implements the instance-level strategies of Sow et al., "Dynamic Loss-Based Sample Reweighting for
Improved Large Language Model Pretraining" (ICLR 2025; reference code: github
sowmaster/Sample-Level-Loss-Reweighting-ICLR-2025, ``src/trainer.py``). Each step:

1. Normalize the batch's per-sample losses to h in [-1, 1] using the in-batch min and max:
   ``h = (2 l - l_max - l_min) / (l_max - l_min)`` (the code's ``h_func`` with delta = 1; the range
   is clamped below at 1e-6 as there, so a batch of equal losses gets h = 0 and uniform weights).
2. Score each sample with the strategy's f(h):

   - ``linupper``:  f = min(h + 1, 1). Weight grows linearly with loss up to the middle of the
     batch's loss range and is capped there: low-loss (already learned, redundant) samples are
     down-weighted, while the hardest ones cannot grab an unbounded share. The paper's best strategy.
   - ``quadratic``: f = 1 - h^2 (``mid`` in the code). Favors medium-loss samples, down-weights
     both the easiest and the hardest (possibly noisy) samples.
   - ``extremes``:  f = |h|. Favors both tails, the easiest and the hardest samples.
   - ``none``:      uniform weights, i.e. the plain mean.

3. Turn scores into weights with the closed form of the KL-regularized problem
   ``max_w  sum_i w_i f_i - r KL(w || uniform)`` over the simplex: ``w = softmax(f / r)``, scaled by
   the batch size so that the weights average to 1 and ``(w * losses).mean()`` is the weighted loss
   (the code multiplies ``sum(w * loss)`` by the global batch size the same way). The temperature
   ``r`` (``kl_reg`` in the code) sets the sharpness: as r grows the weights approach uniform; as it
   shrinks they concentrate on the highest-scoring samples. The weight ratio between the best and
   the worst scored sample is at most exp(1/r) since f spans at most [0, 1].

Weights are computed without gradient (they are constants in the backward pass), and only after a
warm-up (``burnout_steps`` in the code, 1000 there) during which the plain mean is used. The
defaults follow the reference configs: r = 0.4 (``kl_reg`` in the LinUpper / Extremes runs).
Differences from the reference code: losses here are per-sequence token means and the unweighted
loss is their plain mean (the code token-weights sequences by their number of active targets), and
the min/max are over the losses passed in: under data parallelism the code all-gathers the losses of
every rank first, which a caller can do before calling :func:`sample_weights`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

STRATEGIES = ("none", "linupper", "quadratic", "extremes")
DEFAULT_R = 0.4
_MIN_RANGE = 1e-6  # lower clamp on (l_max - l_min), as in the reference code

_SCORES = {
    "linupper": lambda h: torch.clamp(h + 1.0, max=1.0),
    "quadratic": lambda h: 1.0 - h * h,
    "extremes": lambda h: h.abs(),
}


def _check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown reweighting strategy {strategy!r}; valid strategies: {', '.join(STRATEGIES)}")


def _check_r(r: float) -> None:
    try:
        ok = not isinstance(r, (bool, str)) and math.isfinite(float(r)) and float(r) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"reweighting temperature r must be a finite number > 0, got {r!r}")


@dataclass
class ReweightConfig:
    strategy: str = "none"  # none|linupper|quadratic|extremes
    r: float = DEFAULT_R  # temperature: larger is closer to uniform
    warmup_steps: int = 0  # steps (step < warmup_steps) that use the plain mean

    def validate(self) -> "ReweightConfig":
        _check_strategy(self.strategy)
        _check_r(self.r)
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an integer >= 0, got {self.warmup_steps!r}")
        return self


def sample_weights(losses: torch.Tensor, strategy: str, r: float) -> torch.Tensor:
    """Detached, non-negative weights of ``losses``' shape (1-D) that average to 1.

    ``losses`` are per-sample mean token losses. No host synchronization happens here.
    """
    _check_strategy(strategy)
    _check_r(r)
    if losses.ndim != 1:
        raise ValueError(f"losses must be a 1-D tensor of per-sample losses, got shape {tuple(losses.shape)}")
    loss = losses.detach()
    loss = loss.float() if not loss.is_floating_point() or loss.element_size() < 4 else loss
    if strategy == "none" or loss.numel() == 0:
        return torch.ones_like(loss)
    lo, hi = loss.min(), loss.max()
    h = ((loss - lo) - (hi - loss)) / torch.clamp(hi - lo, min=_MIN_RANGE)  # (2l - l_max - l_min) / range
    return torch.softmax(_SCORES[strategy](h) / r, dim=0) * loss.numel()


def weighted_loss(per_sample_loss: torch.Tensor, cfg: ReweightConfig, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(scalar loss to backpropagate, weights used). Uniform weights while ``step < cfg.warmup_steps``."""
    if cfg.strategy == "none" or step < cfg.warmup_steps:
        _check_strategy(cfg.strategy)
        weights = torch.ones_like(per_sample_loss.detach())
    else:
        weights = sample_weights(per_sample_loss, cfg.strategy, cfg.r)
    return (weights.to(per_sample_loss.dtype) * per_sample_loss).mean(), weights


def per_sample_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Per-sequence mean next-token cross-entropy for a causal LM.

    ``logits`` [B, T, V] and ``labels`` [B, T]; position t's logits predict ``labels[:, t + 1]``.
    Targets equal to ``ignore_index`` are left out of both sum and count; a row with no target left
    gets loss 0. Returns a [B] tensor that keeps the graph.
    """
    if logits.ndim != 3 or labels.shape != logits.shape[:2]:
        raise ValueError(f"expected logits [B, T, V] and labels [B, T], got {tuple(logits.shape)} and {tuple(labels.shape)}")
    b, t, v = logits.shape
    targets = labels[:, 1:]
    tok = F.cross_entropy(
        logits[:, :-1].reshape(-1, v), targets.reshape(-1), ignore_index=ignore_index, reduction="none"
    ).view(b, t - 1)
    count = (targets != ignore_index).sum(dim=1).clamp(min=1)
    return tok.sum(dim=1) / count.to(tok.dtype)
