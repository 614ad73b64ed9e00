"""Zero-shot downstream evaluation of a causal LM on jsonl task files.

Each task file holds one JSON object per line, in one of these shapes (detected from the keys of
the first record):

``multiple_choice``  ``{"query": str, "choices": [str, ...], "gold": int}``
    (ARC, BoolQ, COPA, OpenBookQA, PIQA). Every choice is scored by the log-likelihood of the
    choice, joined to the query, given the query. ``acc`` ranks choices by the raw summed
    log-likelihood; ``acc_norm`` ranks them by log-likelihood divided by the choice's length in
    characters, as lm-evaluation-harness does (``completion_len = len(choice)``, the joining
    whitespace not counted).

``partial``  ``{"context_options": [str, ...], "continuation": str, "gold": int}``
    (WinoGrande, "partial evaluation"): the shared continuation is scored given each context
    option and the option under which it is most likely is the prediction; ``acc``.

``lambada``  ``{"context": str, "continuation": str}``
    ``acc``: the fraction of records whose continuation is exactly what greedy decoding gives
    (every continuation token is the argmax of its position). ``ppl``: ``exp(-mean over records of
    the continuation's summed log-likelihood)``, i.e. a per-word perplexity, lm-evaluation-harness's
    definition for LAMBADA.

``generative``  ``{"context", "chain_of_thought", "answer"}`` (GSM8K) needs generation and answer
    extraction; it is loaded but reported as ``unsupported task shape`` instead of scored.

Joining and tokenizing a context and its continuation
-----------------------------------------------------
The continuation is appended with one space unless the context is empty, already ends in
whitespace, or the continuation starts with whitespace (so a query ending in a newline is followed
directly by the choice). Then, as lm-evaluation-harness does, trailing whitespace of the context is
moved to the front of the continuation, and **context and continuation are encoded separately and
the token lists concatenated**. Why separately rather than encoding ``context + continuation`` and
splitting at the context's token count: BPE merges may cross the boundary, so the joint encoding
does not always have the context's tokens as a prefix, and the continuation span would be
ambiguous. Encoding separately makes the scored tokens exactly the continuation's tokens, and the
same for every context (WinoGrande) and every query. Moving the whitespace keeps the split natural
for byte-level BPE / SentencePiece vocabularies, whose word tokens carry their leading space
(``"Ġmat"``): the continuation's encoding is then the one the model saw in running text, because
pre-tokenization never merges across a word boundary anyway. lm-evaluation-harness (causal models)
encodes the whole and splits at the context's token count; on the bundled task files both give the
same tokens for every request, and the same metrics (``bench/eval_parity.py``).

The sequence ``context_ids + continuation_ids`` is truncated from the left so that the model input
(all tokens but the last) fits ``max_length`` (default: the model's ``max_position_embeddings``).
A record with a continuation longer than ``max_length`` cannot be scored: it is left out of the
task's metrics, counted in ``too_long`` and named in a warning (lm-evaluation-harness stops with an
assertion instead; PIQA has choices of up to 396 tokens with the quickstart's 2,048-token vocabulary).
An empty context gets one prefix token (BOS, else EOS) so the first continuation token has
something to be conditioned on. No other special tokens are added.

Requests are deduplicated, sorted by length (longest first, to limit padding), batched with right
padding, and scored with one forward pass per batch; per-token log-probabilities of the
continuations are gathered with vectorized ``log_softmax`` / ``gather`` / masks.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

log = logging.getLogger(__name__)

MULTIPLE_CHOICE = "multiple_choice"
PARTIAL = "partial"
LAMBADA = "lambada"
GENERATIVE = "generative"

# shape -> keys every record of that shape must have
SHAPE_KEYS: dict[str, tuple[str, ...]] = {
    MULTIPLE_CHOICE: ("query", "choices", "gold"),
    PARTIAL: ("context_options", "continuation", "gold"),
    LAMBADA: ("context", "continuation"),
    GENERATIVE: ("context", "answer"),
}
SUPPORTED_SHAPES = (MULTIPLE_CHOICE, PARTIAL, LAMBADA)


@dataclass
class Task:
    name: str
    shape: str
    records: list[dict] = field(default_factory=list)
    path: str | None = None


# ----------------------------------------------------------------------------------------------
# loading


def _task_name(path: str) -> str:
    base = os.path.basename(path)
    for suffix in (".gz", ".jsonl", ".json"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return base


def detect_shape(record: dict) -> str | None:
    keys = set(record)
    if {"query", "choices"} <= keys:
        return MULTIPLE_CHOICE
    if "context_options" in keys:
        return PARTIAL
    if "chain_of_thought" in keys or ("answer" in keys and "continuation" not in keys):
        return GENERATIVE
    if "context" in keys and "continuation" in keys:
        return LAMBADA
    return None


def _check_record(rec: Any, shape: str, where: str) -> None:
    if not isinstance(rec, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    missing = [k for k in SHAPE_KEYS[shape] if k not in rec]
    if missing:
        raise ValueError(
            f"{where}: record of a {shape} task is missing key(s) {missing} (has {sorted(rec)})"
        )
    if shape == GENERATIVE:
        return
    options_key = {MULTIPLE_CHOICE: "choices", PARTIAL: "context_options"}.get(shape)
    if options_key is not None:
        opts = rec[options_key]
        if not isinstance(opts, list) or not opts or not all(isinstance(o, str) for o in opts):
            raise ValueError(f"{where}: {options_key!r} must be a non-empty list of strings")
        gold = rec["gold"]
        if isinstance(gold, bool) or not isinstance(gold, int) or not 0 <= gold < len(opts):
            raise ValueError(
                f"{where}: 'gold' must be an int index into {options_key!r} "
                f"(0..{len(opts) - 1}), got {gold!r}"
            )
    for k in ("query", "continuation", "context"):
        if k in SHAPE_KEYS[shape] and not isinstance(rec[k], str):
            raise ValueError(f"{where}: {k!r} must be a string, got {type(rec[k]).__name__}")
    if "continuation" in SHAPE_KEYS[shape] and not rec["continuation"]:
        raise ValueError(f"{where}: 'continuation' is empty")


def load_task(path, limit: int | None = None) -> Task:
    """Read a jsonl task file (optionally ``.gz``); keep its first ``limit`` records.

    The shape is detected from the keys of the first record; every record is checked against it
    and a bad one raises ``ValueError("<path>:<line>: ...")``.
    """
    path = os.fspath(path)
    opener: Callable = gzip.open if path.endswith(".gz") else open
    shape: str | None = None
    records: list[dict] = []
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if limit is not None and len(records) >= limit:
                break
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: invalid JSON: {e}") from None
            if shape is None:
                if not isinstance(rec, dict):
                    raise ValueError(f"{where}: expected a JSON object, got {type(rec).__name__}")
                shape = detect_shape(rec)
                if shape is None:
                    raise ValueError(
                        f"{where}: cannot detect the task shape from keys {sorted(rec)}; expected "
                        + "; ".join(f"{s}: {list(k)}" for s, k in SHAPE_KEYS.items())
                    )
            _check_record(rec, shape, where)
            records.append(rec)
    if shape is None:
        if limit == 0:
            shape = "empty"
        else:
            raise ValueError(f"{path}: no records")
    return Task(name=_task_name(path), shape=shape, records=records, path=path)


# ----------------------------------------------------------------------------------------------
# tokenizer adapter


class _Encoder:
    """Encode a list of texts to lists of token ids, without special tokens.

    Accepts a ``tokenizers.Tokenizer`` or a transformers tokenizer (anything callable like
    ``tok(texts, add_special_tokens=False)["input_ids"]``).
    """

    _SPECIALS = ("<|endoftext|>", "<s>", "<bos>", "<|begin_of_text|>", "</s>", "<eos>", "<|eos|>")

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        try:
            import tokenizers
        except ImportError:  # pragma: no cover
            tokenizers = None
        if tokenizers is not None and isinstance(tokenizer, tokenizers.Tokenizer):
            self._raw = True
        elif callable(tokenizer):
            self._raw = False
        else:
            raise TypeError(
                "tokenizer must be a tokenizers.Tokenizer or a transformers tokenizer, got "
                f"{type(tokenizer).__name__}"
            )

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        if self._raw:
            return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]
        out = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [list(ids) for ids in out]

    def prefix_token_id(self, model) -> int | None:
        """Token put before an empty context: BOS, else EOS (tokenizer's, then model config's)."""
        tok = self.tokenizer
        if self._raw:
            for s in self._SPECIALS:
                i = tok.token_to_id(s)
                if i is not None:
                    return i
        else:
            for attr in ("bos_token_id", "eos_token_id"):
                i = getattr(tok, attr, None)
                if isinstance(i, int):
                    return i
        cfg = getattr(model, "config", None)
        for attr in ("bos_token_id", "eos_token_id"):
            i = getattr(cfg, attr, None)
            if isinstance(i, list) and i:
                i = i[0]
            if isinstance(i, int):
                return i
        return None


# ----------------------------------------------------------------------------------------------
# log-likelihood of continuations


def join_pair(context: str, continuation: str) -> tuple[str, str]:
    """Add the joining space and move the context's trailing whitespace into the continuation."""
    if context and not context[-1].isspace() and not continuation[:1].isspace():
        continuation = " " + continuation
    stripped = context.rstrip()
    if len(stripped) != len(context):
        continuation = context[len(stripped):] + continuation
        context = stripped
    return context, continuation


def _model_max_length(model) -> int | None:
    cfg = getattr(model, "config", None)
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        v = getattr(cfg, attr, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def _model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover
        return torch.device("cpu")


def _score_batch(model, batch: list[tuple[list[int], int]], device) -> tuple[list[float], list[bool]]:
    """One forward pass over ``[(token_ids, n_continuation), ...]``.

    ``token_ids`` is the (already truncated) context + continuation; the model input is
    ``token_ids[:-1]``. Returns the summed log-likelihood of the last ``n_continuation`` tokens and
    whether each of them is the argmax of its position.
    """
    B = len(batch)
    lens = torch.tensor([len(ids) - 1 for ids, _ in batch], dtype=torch.long)  # input lengths
    ncont = torch.tensor([n for _, n in batch], dtype=torch.long)
    T = int(lens.max())
    C = int(ncont.max())

    # right padding: the causal mask keeps padding from influencing real positions
    seqs = [torch.as_tensor(ids, dtype=torch.long) for ids, _ in batch]
    targets_full = pad_sequence(seqs, batch_first=True, padding_value=0)  # [B, T + 1]
    inputs = targets_full[:, :T]
    attn = (torch.arange(T).unsqueeze(0) < lens.unsqueeze(1)).long()
    inputs = inputs * attn

    logits = model(input_ids=inputs.to(device), attention_mask=attn.to(device)).logits  # [B, T, V]

    # logits at input position p predict token p + 1; the continuation's j-th token sits at
    # position lens - ncont + 1 + j of the full sequence, predicted at lens - ncont + j.
    j = torch.arange(C).unsqueeze(0)  # [1, C]
    mask = j < ncont.unsqueeze(1)  # [B, C]
    pos = (lens - ncont).unsqueeze(1) + j  # [B, C]
    pos = torch.where(mask, pos, torch.zeros_like(pos))
    targets = torch.gather(targets_full, 1, pos + 1)  # [B, C]

    pos_d, targets_d, mask_d = pos.to(logits.device), targets.to(logits.device), mask.to(logits.device)
    rows = torch.arange(B, device=logits.device).unsqueeze(1)
    sel = logits[rows, pos_d].float()  # [B, C, V]: only the scored positions
    logp = torch.log_softmax(sel, dim=-1)
    tok_lp = torch.gather(logp, 2, targets_d.unsqueeze(-1)).squeeze(-1)  # [B, C]
    ll = (tok_lp * mask_d).sum(dim=1)
    greedy = ((sel.argmax(dim=-1) == targets_d) | ~mask_d).all(dim=1)
    return ll.cpu().tolist(), greedy.cpu().tolist()


def loglikelihoods(
    model,
    tokenizer,
    requests: Sequence[tuple[str, str]],
    batch_size: int = 16,
    max_length: int | None = None,
    device=None,
    too_long: str = "raise",
) -> list[tuple[float, bool, int] | None]:
    """Score ``(context, continuation)`` pairs.

    Returns, per request, ``(sum log p(continuation tokens | context), is_greedy, n_tokens)``.
    The continuation is joined to the context as described in the module docstring. A
    continuation of more than ``max_length`` tokens cannot be scored: ``too_long="raise"`` raises
    ValueError (naming the request), ``"skip"`` gives None for that request.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    enc = _Encoder(tokenizer)
    if max_length is None:
        max_length = _model_max_length(model)
    if max_length is not None and max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    if device is None:
        device = _model_device(model)

    pairs = [join_pair(c, x) for c, x in requests]
    texts = sorted({t for p in pairs for t in p})
    ids_of = dict(zip(texts, enc.encode(texts)))
    prefix_id = None

    seqs: dict[tuple[int, ...], int] = {}  # unique (ids + (n_cont,)) -> index into uniq
    uniq: list[tuple[list[int], int]] = []
    which: list[int] = []
    for ctx, cont in pairs:
        ctx_ids, cont_ids = ids_of[ctx], ids_of[cont]
        if not cont_ids:
            raise ValueError(f"continuation {cont!r} encodes to no tokens")
        if not ctx_ids:
            if prefix_id is None:
                prefix_id = enc.prefix_token_id(model)
                if prefix_id is None:
                    raise ValueError(
                        "empty context and no BOS/EOS token to condition the continuation on"
                    )
            ctx_ids = [prefix_id]
        ids = ctx_ids + cont_ids
        if max_length is not None:
            if len(cont_ids) > max_length:
                if too_long == "skip":
                    which.append(-1)
                    continue
                raise ValueError(
                    f"request {len(which) + 1}: continuation of {len(cont_ids)} tokens does not fit "
                    f"max_length={max_length}"
                )
            ids = ids[-(max_length + 1):]
        key = tuple(ids) + (len(cont_ids),)
        k = seqs.get(key)
        if k is None:
            k = seqs[key] = len(uniq)
            uniq.append((ids, len(cont_ids)))
        which.append(k)

    results: list[tuple[float, bool] | None] = [None] * len(uniq)
    order = sorted(range(len(uniq)), key=lambda i: -len(uniq[i][0]))

    was_training = getattr(model, "training", False)
    model.eval()
    try:
        # no_grad for a model sharded by FSDP: its gathered parameters must not become inference tensors
        with torch.no_grad() if type(model).__name__.startswith("FSDP") else torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                ll, greedy = _score_batch(model, [uniq[i] for i in idx], device)
                for i, a, g in zip(idx, ll, greedy):
                    results[i] = (float(a), bool(g))
    finally:
        if was_training:
            model.train()
    return [(results[k][0], results[k][1], uniq[k][1]) if k >= 0 else None for k in which]


# ----------------------------------------------------------------------------------------------
# tasks


def _argmax(xs: Iterable[float]) -> int:
    return int(np.argmax(np.asarray(list(xs), dtype=np.float64)))


def evaluate_task(model, tokenizer, task: Task, batch_size: int = 16, max_length=None, device=None) -> dict:
    """Evaluate one task. Returns ``{"task", "n", "acc", "acc_norm"}`` (multiple choice),
    ``{"task", "n", "acc"}`` (partial), ``{"task", "n", "acc", "ppl"}`` (lambada), or
    ``{"task", "n", "skipped": "unsupported task shape ..."}`` for shapes that need generation. ``n``
    counts the records scored; records whose continuation is longer than ``max_length`` tokens are
    left out and counted in ``too_long`` (present only when there are some)."""
    n = len(task.records)
    if task.shape not in SUPPORTED_SHAPES:
        msg = f"unsupported task shape {task.shape!r} (only {', '.join(SUPPORTED_SHAPES)} are scored)"
        log.warning("skipping %s: %s", task.name, msg)
        return {"task": task.name, "n": n, "skipped": msg}
    if n == 0:
        return {"task": task.name, "n": 0}

    def score(reqs):
        return loglikelihoods(model, tokenizer, reqs, batch_size=batch_size, max_length=max_length, device=device,
                              too_long="skip")

    def left_out(bad: list[int]) -> dict:
        """Records with a continuation longer than max_length are left out of the metrics (lm_eval stops
        on them with an assertion): counted in ``too_long``, with a warning naming the first."""
        if not bad:
            return {}
        log.warning("%s: %d of %d records have a continuation longer than max_length=%s tokens (first: record %d); "
                    "left out of the metrics", task.path or task.name, len(bad), len(task.records), max_length,
                    bad[0] + 1)
        return {"too_long": len(bad)}

    if task.shape == LAMBADA:
        res = score([(r["context"], r["continuation"]) for r in task.records])
        bad = [i for i, x in enumerate(res) if x is None]
        res = [x for x in res if x is not None]
        if not res:
            return {"task": task.name, "n": 0, **left_out(bad)}
        acc = float(np.mean([g for _, g, _ in res]))
        ppl = math.exp(-float(np.mean([ll for ll, _, _ in res])))
        return {"task": task.name, "n": len(res), "acc": acc, "ppl": ppl, **left_out(bad)}

    if task.shape == MULTIPLE_CHOICE:
        reqs = [(r["query"], c) for r in task.records for c in r["choices"]]
    else:  # PARTIAL
        reqs = [(o, r["continuation"]) for r in task.records for o in r["context_options"]]
    res = score(reqs)

    correct = correct_norm = 0
    k = 0
    bad = []
    for i, r in enumerate(task.records):
        opts = r["choices"] if task.shape == MULTIPLE_CHOICE else r["context_options"]
        scored = res[k:k + len(opts)]
        k += len(opts)
        if any(x is None for x in scored):
            bad.append(i)
            continue
        lls = [ll for ll, _, _ in scored]
        correct += _argmax(lls) == r["gold"]
        if task.shape == MULTIPLE_CHOICE:
            # lm-evaluation-harness acc_norm: divide by the choice's length in characters
            correct_norm += _argmax(ll / max(len(c), 1) for ll, c in zip(lls, opts)) == r["gold"]
    n -= len(bad)
    if n == 0:
        return {"task": task.name, "n": 0, **left_out(bad)}
    out = {"task": task.name, "n": n, "acc": correct / n}
    if task.shape == MULTIPLE_CHOICE:
        out["acc_norm"] = correct_norm / n
    return {**out, **left_out(bad)}


def evaluate_tasks(
    model,
    tokenizer,
    paths,
    limit: int | None = None,
    batch_size: int = 16,
    max_length: int | None = None,
    device=None,
) -> dict[str, dict]:
    """Load and evaluate every task file in ``paths``; ``{task name: result}`` in path order."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    from curate.core.progress import Step

    out: dict[str, dict] = {}
    paths = list(paths)
    for i, p in enumerate(paths):
        task = load_task(p, limit=limit)
        key = task.name if task.name not in out else os.fspath(p)
        with Step(f"eval: task {i + 1} of {len(paths)}, {task.name}", unit="examples") as step:
            out[key] = evaluate_task(model, tokenizer, task, batch_size=batch_size, max_length=max_length, device=device)
            step.n = out[key].get("n", 0)
            step.detail = ", ".join(f"{m} {out[key][m]:.3f}" for m in ("acc", "acc_norm") if m in out[key])
    return out
