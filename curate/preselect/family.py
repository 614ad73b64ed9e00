"""The model family: loading a causal LM, bits per character of documents, abilities.

Bits per character (as PreSelect): the document's tokens follow one prefix token (BOS, else EOS);
every token is predicted once, in windows of at most ``max_length`` tokens that advance by
``stride`` new tokens, so each prediction after the first window sees at least
``max_length - stride`` tokens of context (a sliding window over the token stream where only the
new tokens are counted). bits = sum of -log2 p(token); bpc = bits / characters of the text.
"""
from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass

import numpy as np

LN2 = math.log(2.0)


def pick_device(device: str = "auto"):
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class LoadedModel:
    path: str
    model: object
    tokenizer: object
    prefix_id: int | None
    max_length: int
    device: object

    def encode(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        return [list(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def load_model(path: str, tokenizer: str | None = None, device: str = "auto", dtype: str = "float32",
               max_length: int | None = None) -> LoadedModel:
    """A causal LM from a local checkpoint folder (``AutoModelForCausalLM.from_pretrained``), in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = pick_device(device)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).to(dev).eval()
    tok = AutoTokenizer.from_pretrained(tokenizer or path)
    prefix = None
    for source in (tok, model.config):
        for attr in ("bos_token_id", "eos_token_id"):
            v = getattr(source, attr, None)
            v = v[0] if isinstance(v, list) and v else v
            if isinstance(v, int) and prefix is None:
                prefix = v
    limit = getattr(model.config, "max_position_embeddings", None) or 2048
    return LoadedModel(path, model, tok, prefix, int(min(max_length or limit, limit)), dev)


_CURRENT: dict[str, LoadedModel] = {}
_LOCK = threading.Lock()


def cached_model(path: str, **kwargs) -> LoadedModel:
    """One model per process at a time: loading another frees the previous one."""
    key = f"{path}\0{sorted(kwargs.items())}"
    with _LOCK:
        if key not in _CURRENT:
            _CURRENT.clear()
            import gc

            gc.collect()
            _CURRENT[key] = load_model(path, **kwargs)
        return _CURRENT[key]


def release_models() -> None:
    with _LOCK:
        _CURRENT.clear()


def windows(n_tokens: int, max_length: int, stride: int):
    """Windows over a sequence of ``n_tokens`` (prefix included): (start, end, first target).

    Targets are positions 1..n-1, in groups of ``stride``; a group [a, b) is predicted from the
    window [max(0, b - max_length), b), which holds position a - 1 since stride < max_length.
    """
    if not 1 <= stride < max_length:
        raise ValueError(f"stride must be between 1 and max_length - 1, got stride {stride}, max_length {max_length}")
    a = 1
    while a < n_tokens:
        b = min(a + stride, n_tokens)
        yield max(0, b - max_length), b, a
        a = b


def document_bits(lm: LoadedModel, token_lists: list[list[int]], stride: int | None = None,
                  batch_size: int = 8) -> np.ndarray:
    """Total bits (-log2 likelihood) of each token list, sliding windows, batched."""
    import torch

    max_length = lm.max_length
    stride = stride or max(1, max_length // 2)
    stride = min(stride, max_length - 1)
    work = []  # (doc, ids of the window, offset of the first target within the window)
    for d, toks in enumerate(token_lists):
        ids = ([lm.prefix_id] if lm.prefix_id is not None else []) + list(toks)
        for s, e, a in windows(len(ids), max_length, stride):
            work.append((d, ids[s:e], a - s))
    bits = np.zeros(len(token_lists), dtype=np.float64)
    work.sort(key=lambda w: len(w[1]))
    with torch.inference_mode():
        for k in range(0, len(work), batch_size):
            chunk = work[k:k + batch_size]
            width = max(len(w[1]) for w in chunk)
            ids = torch.zeros((len(chunk), width), dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            score = torch.zeros((len(chunk), width), dtype=torch.bool)  # positions whose next token is a target
            for r, (_, w, off) in enumerate(chunk):
                ids[r, :len(w)] = torch.tensor(w)
                mask[r, :len(w)] = 1
                score[r, off - 1:len(w) - 1] = True
            ids, mask, score = ids.to(lm.device), mask.to(lm.device), score.to(lm.device)
            logits = lm.model(input_ids=ids, attention_mask=mask).logits
            targets = ids[:, 1:][score[:, :-1]]
            nll = torch.nn.functional.cross_entropy(logits[:, :-1][score[:, :-1]].float(), targets, reduction="none")
            rows = torch.nonzero(score[:, :-1])[:, 0]
            per_row = torch.zeros(len(chunk), dtype=torch.float64, device=nll.device).index_add_(0, rows, nll.double())
            for r, (d, _, _) in enumerate(chunk):
                bits[d] += float(per_row[r]) / LN2
    return bits


def bits_per_char(lm: LoadedModel, texts: list[str], stride: int | None = None, batch_size: int = 8) -> np.ndarray:
    """Bits per character of each text (NaN for an empty text)."""
    bits = document_bits(lm, lm.encode(texts), stride, batch_size)
    chars = np.array([len(t) for t in texts], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(chars > 0, bits / np.maximum(chars, 1), np.nan)


def measure_bpc_ability(lm: LoadedModel, texts: list[str], stride: int | None = None, batch_size: int = 8) -> float:
    """Negative bits per character over a target text set (all characters together): higher is better."""
    bits = document_bits(lm, lm.encode(texts), stride, batch_size)
    return -float(bits.sum() / max(1, sum(len(t) for t in texts)))


def measure_downstream_ability(lm: LoadedModel, tasks: list[str], limit: int | None = None,
                               batch_size: int = 8) -> float:
    """Mean accuracy over the downstream tasks of :mod:`curate.train.evaluate`."""
    from curate.train.evaluate import evaluate_tasks

    res = evaluate_tasks(lm.model, lm.tokenizer, tasks, limit=limit, batch_size=batch_size, device=lm.device)
    accs = [r["acc"] for r in res.values() if "acc" in r]
    if not accs:
        raise ValueError(f"no downstream task could be scored: {', '.join(tasks)}")
    return float(np.mean(accs))


def read_texts(paths: list[str], text_keys: list[str], max_docs: int | None = None) -> list[str]:
    """Texts of jsonl/parquet files: the ``text_keys`` of each record joined by a space."""
    import glob

    from curate.scorers.train import read_rows

    out = []
    for pattern in paths:
        files = sorted(glob.glob(os.path.expanduser(pattern))) or [pattern]
        for f in files:
            rows = read_rows(f, list(text_keys))
            n = len(rows[text_keys[0]])
            for i in range(n):
                parts = [rows[k][i] for k in text_keys if rows[k][i]]
                if parts:
                    out.append(" ".join(str(p) for p in parts))
                if max_docs and len(out) >= max_docs:
                    return out
    return out
