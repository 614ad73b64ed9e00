"""Fine-tune a small causal LM into a ProX refiner: supervised, loss on the program tokens only.

``train_refiner(base_model, annotations, output, level=...)`` reads annotation records (JSON lines)
of either form:

* ``{"text": ..., "program": ...}``: a document and its program (what
  :func:`curate.refine.teacher.annotate` writes, ``level="both"``: the doc call, then the line
  calls). Doc level: the example is the document's prompt (:func:`~curate.refine.prompts.doc_messages`)
  and the program's ``drop_doc()`` / ``keep_doc()`` call (a record without one gives no doc
  example). Chunk level: for a document that is not dropped, one example per chunk
  (:func:`~curate.refine.prompts.chunk_lines`), the chunk's prompt and its share of the program's
  ``remove_lines`` / ``normalize`` calls, ``skip_chunk()`` when it has none
  (:func:`~curate.refine.teacher.chunk_programs`). ``level="both"`` gives both kinds.
* ``{"prompt": ..., "completion": ...}``: a rendered prompt string and the text the model should
  write after it, used as they are, whatever the level.

Each example is the prompt's tokens (no special tokens added: the template writes them), then the
completion's tokens and the end-of-text token; the loss is the cross-entropy of the completion and
end-of-text tokens only. An example longer than ``max_length`` tokens is left out (and counted).
Plain torch loop: AdamW, constant learning rate after a linear warm-up, gradient clipping at 1.0,
examples shuffled each epoch by a generator seeded with ``seed`` (the same seed and data give the
same model on the same machine). The result is saved with ``save_pretrained`` (safetensors) next to
the tokenizer; a tokenizer without a chat template gets :data:`~curate.refine.prompts.PLAIN_CHAT_TEMPLATE`,
the template the prompts were rendered with, so the refiner renders the same way in transformers
and vLLM. ``refiner.json`` beside it records the settings and the losses.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

from curate.refine.prompts import (
    CHUNK_MAX_TOKENS, DOC_MAX_PROMPT_TOKENS, PLAIN_CHAT_TEMPLATE, chunk_messages, doc_messages, has_chat_template,
    render_prompt,
)
from curate.refine.teacher import chunk_targets, split_levels

LEVELS = ("doc", "chunk", "both")


def read_annotations(paths) -> list[dict]:
    """The records of one or more JSON-lines files."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except ValueError as e:
                    raise ValueError(f"{path}:{n}: not JSON ({e})") from None
                if not isinstance(rec, dict) or not ({"text", "program"} <= rec.keys() or
                                                     {"prompt", "completion"} <= rec.keys()):
                    raise ValueError(f"{path}:{n}: a record needs text and program, or prompt and completion")
                out.append(rec)
    return out


def training_examples(records: list[dict], tokenizer, level: str = "chunk",
                      max_chunk_tokens: int = CHUNK_MAX_TOKENS) -> list[tuple[str, str]]:
    """(prompt string, completion) pairs for ``level`` from annotation records (see the module docstring)."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    out = []
    for rec in records:
        if "prompt" in rec and "completion" in rec:
            out.append((rec["prompt"], rec["completion"]))
            continue
        text, program = rec["text"], rec["program"]
        doc_call, calls = split_levels(program)
        if level in ("doc", "both") and doc_call is not None:
            out.append((render_prompt(doc_messages(text, tokenizer, DOC_MAX_PROMPT_TOKENS), tokenizer), doc_call))
        if level in ("chunk", "both") and doc_call != "drop_doc()":
            for chunk, target in chunk_targets(text, "\n".join(calls), tokenizer, max_chunk_tokens):
                out.append((render_prompt(chunk_messages(chunk), tokenizer), target))
    return out


def _encode_examples(examples, tok, max_length: int):
    """[(input ids, number of prompt tokens)], and how many examples were too long."""
    prompts = tok([p for p, _ in examples], add_special_tokens=False)["input_ids"] if examples else []
    comps = tok([c for _, c in examples], add_special_tokens=False)["input_ids"] if examples else []
    out, skipped = [], 0
    for p, c in zip(prompts, comps):
        ids = list(p) + list(c) + [tok.eos_token_id]
        if len(ids) > max_length:
            skipped += 1
            continue
        out.append((ids, len(p)))
    return out, skipped


def train_refiner(base_model: str, annotations, output: str, *, level: str = "chunk", epochs: float = 1.0,
                  lr: float = 1e-4, batch_size: int = 8, max_length: int = 2048, seed: int = 0, device: str = "auto",
                  warmup_steps: int = 0, max_steps: int | None = None, max_chunk_tokens: int = CHUNK_MAX_TOKENS,
                  log=None) -> dict:
    """Fine-tune ``base_model`` (a local transformers causal-LM folder with its tokenizer, e.g. a
    ``curate train`` checkpoint) on ``annotations`` (a JSON-lines path, a list of paths, or a list
    of records) and save the refiner to ``output``. Returns a summary: examples, skipped, steps,
    losses (per step), seconds, output."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from curate.refine.backends import resolve_device

    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    if batch_size < 1 or max_length < 2 or epochs <= 0 or lr <= 0:
        raise ValueError("batch_size >= 1, max_length >= 2, epochs > 0 and lr > 0 are needed")
    records = annotations if isinstance(annotations, list) and (not annotations or isinstance(annotations[0], dict)) \
        else read_annotations(annotations)
    device = resolve_device(device)
    tok = AutoTokenizer.from_pretrained(base_model)
    if tok.eos_token_id is None:
        raise ValueError(f"{base_model}: the tokenizer has no end-of-text token")
    if not has_chat_template(tok):
        tok.chat_template = PLAIN_CHAT_TEMPLATE
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    examples = training_examples(records, tok, level, max_chunk_tokens)
    encoded, skipped = _encode_examples(examples, tok, max_length)
    if not encoded:
        raise ValueError(f"no training example: {len(records)} records gave {len(examples)} examples for level "
                         f"{level!r}, {skipped} of them longer than max_length {max_length}")

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32).to(device)
    model.train()
    if model.generation_config.eos_token_id is None:
        model.generation_config.eos_token_id = tok.eos_token_id
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = pad_id
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    steps_per_epoch = math.ceil(len(encoded) / batch_size)
    total = max(1, math.ceil(steps_per_epoch * epochs))
    if max_steps is not None:
        total = min(total, max_steps)
    gen = torch.Generator().manual_seed(seed)
    order: list[int] = []
    losses: list[float] = []
    t0 = time.time()
    for step in range(total):
        if len(order) < batch_size:
            order += torch.randperm(len(encoded), generator=gen).tolist()
        idx, order = order[:batch_size], order[batch_size:]
        batch = [encoded[i] for i in idx]
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, (ids, n_prompt) in enumerate(batch):
            t = torch.tensor(ids, dtype=torch.long)
            input_ids[r, :len(ids)] = t
            mask[r, :len(ids)] = 1
            labels[r, n_prompt:len(ids)] = t[n_prompt:]
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / warmup_steps) if warmup_steps else lr
        out = model(input_ids=input_ids.to(device), attention_mask=mask.to(device), labels=labels.to(device))
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(out.loss.detach()))
        if log is not None:
            log(f"step {step + 1}/{total} loss {losses[-1]:.4f}")
    model.eval()
    os.makedirs(output, exist_ok=True)
    model.save_pretrained(output, safe_serialization=True)
    tok.save_pretrained(output)
    summary = {"output": output, "base_model": base_model, "level": level, "records": len(records),
               "examples": len(encoded), "skipped_too_long": skipped, "steps": total, "epochs": epochs, "lr": lr,
               "batch_size": batch_size, "max_length": max_length, "seed": seed, "device": device,
               "seconds": round(time.time() - t0, 3), "losses": losses}
    with open(os.path.join(output, "refiner.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="curate train-refiner",
                                description="Fine-tune a small causal LM into a ProX refiner (loss on the program tokens).")
    p.add_argument("base_model", help="a local transformers causal-LM folder with its tokenizer (e.g. a curate train checkpoint)")
    p.add_argument("annotations", nargs="+", help="JSON-lines files of {text, program} or {prompt, completion} records")
    p.add_argument("-o", "--output", required=True, help="folder for the refiner")
    p.add_argument("--level", choices=LEVELS, default="chunk")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=2048)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--max-chunk-tokens", type=int, default=CHUNK_MAX_TOKENS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    res = train_refiner(a.base_model, a.annotations, a.output, level=a.level, epochs=a.epochs, lr=a.lr,
                        batch_size=a.batch_size, max_length=a.max_length, seed=a.seed, device=a.device,
                        warmup_steps=a.warmup_steps, max_steps=a.max_steps, max_chunk_tokens=a.max_chunk_tokens,
                        log=None if a.quiet else (lambda m: print(m, file=sys.stderr)))
    losses = res.pop("losses")
    res["first_loss"], res["last_loss"] = losses[0], losses[-1]
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
