"""Oracle probing (MATES's "local probing"): how much does one optimizer step on a document alone,
from the current checkpoint, lower the loss on a reference set?

For each probe document, from the trainer's state (model, AdamW state, step):

1. the learning rate of the schedule at this step is set, the document's loss (the trainer's
   ``per_sample_loss``, the document alone in its batch) is back-propagated, gradients are clipped
   with the trainer's ``grad_clip`` and one ``optimizer.step()`` is taken, exactly as in training;
2. the reference loss after the step is measured (token-mean next-token loss over the scored tokens
   of the reference set, in batches, eval mode);
3. the state is put back **in memory** (``Snapshot``: parameters, optimizer state, param-group
   settings and the torch RNG copied into preallocated tensors; nothing is reloaded from disk).

The oracle score of a document is ``reference loss before - reference loss after`` (higher: the step
helped the target more). The reference loss is batched over the reference records (exact: causal
masking and an attention mask keep padding out). ``probe`` takes the documents one after the other
(bit-exact: the trainer's own step); ``probe_batched`` (``selection.probe_batch`` > 1) takes several at
once with ``torch.func`` (per-document gradients, clipping and AdamW update on per-document copies of
the parameters, the reference loss vmapped over them): the same computation up to float rounding.

Reference sets (``load_reference``): jsonl files as ``curate.train.evaluate`` reads them, scored on
the tokens a task is about: lambada ``{context, continuation}``: the continuation; multiple choice:
the gold choice after the query; partial (WinoGrande): the continuation after the gold option; or
plain ``{"text": ...}`` records: every token.
"""
from __future__ import annotations

import json
import math
import os
import time

import numpy as np


class Snapshot:
    """The trainer's model + optimizer state, copied in memory and put back with ``restore``."""

    def __init__(self, model, opt):
        import torch

        self.torch = torch
        self.params = [p.detach().clone() for p in model.parameters()]
        self.buffers = [b.detach().clone() for b in model.buffers()]
        self.state = {p: {k: (v.detach().clone() if torch.is_tensor(v) else v) for k, v in st.items()}
                      for p, st in opt.state.items()}
        self.groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
        self.rng = torch.get_rng_state()
        self.cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None

    def restore(self, model, opt) -> None:
        torch = self.torch
        with torch.no_grad():
            for p, s in zip(model.parameters(), self.params):
                p.copy_(s)
            for b, s in zip(model.buffers(), self.buffers):
                b.copy_(s)
        for p in list(opt.state):
            if p not in self.state:
                del opt.state[p]  # state the probe step created (a probe from step 0)
        for p, saved in self.state.items():
            cur = opt.state[p]
            for k in list(cur):
                if k not in saved:
                    del cur[k]
            for k, v in saved.items():
                if torch.is_tensor(v) and torch.is_tensor(cur.get(k)) and cur[k].shape == v.shape \
                        and cur[k].dtype == v.dtype:
                    cur[k].copy_(v)
                else:
                    cur[k] = v.clone() if torch.is_tensor(v) else v
        for g, saved in zip(opt.param_groups, self.groups):
            g.update(saved)
        for p in model.parameters():
            p.grad = None
        torch.set_rng_state(self.rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)


class Reference:
    """Token ids of a reference set, right-padded, with the mask of the scored target tokens."""

    def __init__(self, seqs: list[tuple[list[int], int]], name: str, batch_size: int = 32):
        if not seqs:
            raise ValueError(f"{name}: the reference set has no records")
        self.name = name
        self.batch_size = batch_size
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i][0]))  # little padding per batch
        self.batches = []
        for s in range(0, len(order), batch_size):
            part = [seqs[i] for i in order[s:s + batch_size]]
            T = max(len(ids) for ids, _ in part)
            ids = np.zeros((len(part), T), dtype=np.int64)
            attn = np.zeros((len(part), T), dtype=np.int64)
            scored = np.zeros((len(part), T), dtype=bool)  # scored[b, t]: target ids[b, t] is counted
            for b, (row, n) in enumerate(part):
                ids[b, :len(row)] = row
                attn[b, :len(row)] = 1
                scored[b, len(row) - n:len(row)] = True
            self.batches.append((ids, attn, scored))
        self.n_tokens = int(sum(s.sum() for _, _, s in self.batches))
        self.n_records = len(seqs)

    def loss(self, model, device, amp: bool = False) -> float:
        """Token-mean loss of the scored tokens; the model is left in the mode it was in."""
        import torch

        was = model.training
        model.eval()
        total = 0.0
        with torch.inference_mode():
            for ids, attn, scored in self.batches:
                x = torch.from_numpy(ids).to(device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    logits = model(input_ids=x[:, :-1], attention_mask=torch.from_numpy(attn[:, :-1]).to(device),
                                   use_cache=False).logits
                tok = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), x[:, 1:], reduction="none")
                total += float((tok * torch.from_numpy(scored[:, 1:]).to(device)).sum())
        model.train(was)
        return total / max(self.n_tokens, 1)


def load_reference(path: str, tokenizer, max_length: int, limit: int | None = 64, batch_size: int = 32) -> Reference:
    """A ``Reference`` from a jsonl file (see the module docstring); ``tokenizer``: a ``tokenizers.Tokenizer``.

    Each record is truncated from the left to ``max_length + 1`` tokens (the model sees ``max_length``)."""
    from curate.train.evaluate import LAMBADA, MULTIPLE_CHOICE, PARTIAL, join_pair, load_task

    if not os.path.isfile(path):
        raise FileNotFoundError(f"selection.reference: {path} not found")
    with open(path, encoding="utf-8") as f:
        first = next((line for line in f if line.strip()), None)
    if first is None:
        raise ValueError(f"{path}: no records")
    try:
        is_text = isinstance(json.loads(first), dict) and set(json.loads(first)) >= {"text"} and \
            not {"context", "query", "context_options"} & set(json.loads(first))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:1: invalid JSON: {e}") from None
    pairs = []
    if is_text:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if limit is not None and len(pairs) >= limit:
                    break
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{lineno}: invalid JSON: {e}") from None
                if not isinstance(rec, dict) or not isinstance(rec.get("text"), str) or not rec["text"].strip():
                    raise ValueError(f"{path}:{lineno}: a reference text record needs a non-empty string 'text'")
                pairs.append(("", rec["text"]))
    else:
        task = load_task(path, limit=limit)
        for rec in task.records:
            if task.shape == LAMBADA:
                pairs.append(join_pair(rec["context"], rec["continuation"]))
            elif task.shape == MULTIPLE_CHOICE:
                pairs.append(join_pair(rec["query"], rec["choices"][int(rec["gold"])]))
            elif task.shape == PARTIAL:
                pairs.append(join_pair(rec["context_options"][int(rec["gold"])], rec["continuation"]))
            else:
                raise ValueError(f"{path}: a {task.shape} task cannot be a reference set (use lambada, multiple "
                                 "choice, partial or {text} records)")
    seqs = []
    for ctx, cont in pairs:
        c = tokenizer.encode(ctx, add_special_tokens=False).ids if ctx else []
        x = tokenizer.encode(cont, add_special_tokens=False).ids
        if not x:
            continue
        ids = (c + x)[-(max_length + 1):]
        n = min(len(x), len(ids) - 1)
        if n >= 1:
            seqs.append((ids, n))
    return Reference(seqs, path, batch_size=batch_size)


def probe(model, opt, rows: np.ndarray, reference: Reference, lr: float, grad_clip: float, device,
          amp: bool = False, forward=None) -> dict:
    """Probe each row of ``rows`` (token ids [n, seq_length]); the model and optimizer come back unchanged.

    Returns ``{"before": reference loss at the checkpoint, "after": [n] losses after each doc's step,
    "oracle": before - after, "seconds_per_doc"}``."""
    import torch

    from curate.train.reweight import per_sample_loss

    forward = forward or model
    params = [p for p in model.parameters()]
    snap = Snapshot(model, opt)
    before = reference.loss(model, device, amp)
    after = np.empty(len(rows), dtype=np.float64)
    was = model.training
    model.train()
    t0 = time.perf_counter()
    try:
        for i, row in enumerate(rows):
            for g in opt.param_groups:
                g["lr"] = lr
            ids = torch.from_numpy(np.asarray(row, dtype=np.int64)[None]).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = forward(input_ids=ids, use_cache=False).logits
            per_sample_loss(logits.float(), ids).mean().backward()
            torch.nn.utils.clip_grad_norm_(params, grad_clip or math.inf)
            opt.step()
            opt.zero_grad(set_to_none=True)
            after[i] = reference.loss(model, device, amp)
            snap.restore(model, opt)
    finally:
        snap.restore(model, opt)
        model.train(was)
    seconds = time.perf_counter() - t0
    return {"before": before, "after": after, "oracle": before - after,
            "seconds_per_doc": seconds / max(len(rows), 1)}


def probe_batched(model, opt, rows: np.ndarray, reference: Reference, lr: float, grad_clip: float, device,
                  amp: bool = False, batch: int = 8) -> dict:
    """``probe`` for ``batch`` documents at a time, with ``torch.func``: the same computation, vectorized.

    Per-document gradients (``vmap(grad)``), per-document clipping (``clip_grad_norm_``'s formula),
    the AdamW update written out (decoupled weight decay, bias corrections, eps after the square
    root, as ``torch.optim.AdamW``) on a per-document copy of the parameters and optimizer moments,
    and the reference loss of every copy (``vmap`` over the parameter sets). Mathematically the
    sequential probe; numerically equal up to float rounding (another summation order), so it is an
    option (``selection.probe_batch``), not the default. Memory: ``batch`` copies of parameters and
    AdamW moments. The model and optimizer are not modified.
    """
    import torch
    from torch.func import functional_call, grad, vmap

    names = [n for n, _ in model.named_parameters()]
    params = {n: p.detach() for n, p in model.named_parameters()}
    group_of = {}
    for g in opt.param_groups:
        for p in g["params"]:
            group_of[id(p)] = g
    buffers = {n: b for n, b in model.named_buffers()}
    clip = grad_clip if grad_clip else math.inf

    def doc_loss(p, x):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = functional_call(model, (p, buffers), (x[None],), {"use_cache": False}).logits
        return torch.nn.functional.cross_entropy(logits[0, :-1].float(), x[1:])

    ref_batches = [(torch.from_numpy(ids).to(device), torch.from_numpy(attn).to(device),
                    torch.from_numpy(scored[:, 1:]).to(device)) for ids, attn, scored in reference.batches]

    def ref_sum(p):
        total = 0.0
        for x, attn, scored in ref_batches:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = functional_call(model, (p, buffers), (x[:, :-1],),
                                         {"attention_mask": attn[:, :-1], "use_cache": False}).logits
            tok = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), x[:, 1:], reduction="none")
            total = total + (tok * scored).sum()
        return total

    was = model.training
    model.train()
    before = reference.loss(model, device, amp)
    model.train()
    after = np.empty(len(rows), dtype=np.float64)
    t0 = time.perf_counter()
    by_name = dict(model.named_parameters())
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="There is a performance drop because we have not yet implemented "
                                    "the batching rule")  # sdpa on CPU under vmap: a loop, still correct
            for s in range(0, len(rows), batch):
                ids = torch.from_numpy(np.asarray(rows[s:s + batch], dtype=np.int64)).to(device)
                b = len(ids)
                grads = vmap(grad(doc_loss), in_dims=(None, 0), randomness="same")(params, ids)
                norm = torch.sqrt(sum((grads[n].float() ** 2).reshape(b, -1).sum(1) for n in names))
                coef = torch.clamp(clip / (norm + 1e-6), max=1.0)
                new = {}
                for n in names:
                    p = by_name[n]
                    g_ = group_of[id(p)]
                    beta1, beta2 = g_["betas"]
                    st = opt.state.get(p, {})
                    gb = grads[n] * coef.view(-1, *([1] * p.ndim)).to(grads[n].dtype)
                    step = float(st["step"]) + 1 if "step" in st else 1.0
                    m = st["exp_avg"] if "exp_avg" in st else torch.zeros_like(p)
                    v = st["exp_avg_sq"] if "exp_avg_sq" in st else torch.zeros_like(p)
                    m2 = m.unsqueeze(0).lerp(gb, 1 - beta1)
                    v2 = v.unsqueeze(0) * beta2 + gb * gb * (1 - beta2)
                    bc1, bc2 = 1 - beta1 ** step, 1 - beta2 ** step
                    denom = v2.sqrt() / math.sqrt(bc2) + g_["eps"]
                    base = p.detach().unsqueeze(0) * (1 - lr * g_["weight_decay"])
                    new[n] = base - (lr / bc1) * m2 / denom
                with torch.no_grad():
                    model.eval()
                    sums = vmap(ref_sum, randomness="same")(new)
                    model.train()
                after[s:s + b] = (sums.double() / max(reference.n_tokens, 1)).cpu().numpy()
    finally:
        model.train(was)
    seconds = time.perf_counter() - t0
    return {"before": before, "after": after, "oracle": before - after,
            "seconds_per_doc": seconds / max(len(rows), 1)}
