"""Chunk-level ProX refinement throughput: documents per second of the transformers backend on CPU,
and, where vLLM is importable, vLLM's offline engine on the same model and prompts.

    .venv/bin/python bench/bench_refine.py                       # builds data and model, transformers only
    VLLM_CPU_KVCACHE_SPACE=1 /work/vllm-env/bin/python bench/bench_refine.py   # + vLLM (vllm-cpu env)
    python bench/bench_refine.py --docs 64 --max-new-tokens 256,32 --batch-size 8 --json /tmp/refine.json
    # a served model (e.g. the vllm-cpu environment's OpenAI server) against transformers in this process:
    python bench/bench_refine.py --model out/refiner-build/refiner --max-chunk-tokens 128 \
        --openai http://127.0.0.1:8011/v1 --max-new-tokens 256 --threads 2 --docs 12

What is timed: for each document, cutting it into numbered chunks (``chunk_lines``, 1,500 tokens),
rendering each chunk's prompt, greedy generation of every chunk's program (``--max-new-tokens``;
ProX's limit is 256), and joining each document's programs (``combine_chunk_programs``). Model
loading is timed apart (``load s``). docs/s = documents / wall time of all that; ``gen tok/s`` =
generated tokens (the programs re-tokenized, end-of-text excluded) / the same time.

The model: ``--model PATH`` (any refiner folder), or by default a quickstart-sized Llama (hidden
128, 2 layers, 4 heads of 32, intermediate 352: the shape of ``samples/train-quickstart.yaml``,
with 2,048 positions so that a 1,500-token chunk fits) over a byte-level BPE of 4,096 tokens trained
on the bench documents, randomly initialised (seed 0) and, with ``--train-steps N``, fine-tuned N
steps on the rule teacher's programs (:mod:`curate.refine.teacher`). An untrained model seldom
writes its end-of-text token, so every chunk writes the full ``--max-new-tokens``: the worst case;
a trained refiner writes short programs (``remove_lines(...)`` is about 15 tokens).

The documents: the main text (``curate.io.html.extract_text``, trafilatura) of the first ``--docs``
pages of ``../shared/data/web/html-pages.parquet`` that give at least 200 characters, cached in
``bench/_work/refine/docs.jsonl`` with the model, so a run in an environment without trafilatura
(the vllm-cpu one) reads the same documents and model. Both backends get the same prompt strings;
the bench reports whether their programs are equal (they should be: greedy, float32). vLLM keeps
its prefix cache on (``enable_prefix_caching``: chunks share the system prompt) but the cache is
emptied before each measurement, so a second ``--max-new-tokens`` value does not find its prompts
cached. ``--threads 1`` is much faster for transformers on a shared, busy CPU (see
``TransformersBackend(num_threads=...)``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
WORK = os.path.join(ROOT, "bench", "_work", "refine")
HTML = os.path.join(ROOT, "..", "shared", "data", "web", "html-pages.parquet")


def load_docs(n: int) -> list[str]:
    path = os.path.join(WORK, "docs.jsonl")
    docs = []
    if os.path.exists(path):
        with open(path) as f:
            docs = [json.loads(line)["text"] for line in f]
    if len(docs) < n:
        import pyarrow.parquet as pq

        from curate.io.html import extract_text

        t = pq.read_table(HTML, columns=["html", "url"])
        docs = []
        for html, url in zip(t.column("html").to_pylist(), t.column("url").to_pylist()):
            text = extract_text(html, url)
            if text and len(text) >= 200:
                docs.append(text)
            if len(docs) >= max(n, 64):
                break
        os.makedirs(WORK, exist_ok=True)
        with open(path, "w") as f:
            for d in docs:
                f.write(json.dumps({"text": d}) + "\n")
    return docs[:n]


def build_model(docs: list[str], train_steps: int) -> str:
    out = os.path.join(WORK, f"model-steps{train_steps}")
    if os.path.exists(os.path.join(out, "config.json")):
        return out
    import torch
    import transformers

    from curate.tokenizer import train_tokenizer

    base = os.path.join(WORK, "model-steps0")
    if not os.path.exists(os.path.join(base, "config.json")):
        os.makedirs(WORK, exist_ok=True)
        corpus = os.path.join(WORK, "tok-corpus.jsonl")
        with open(corpus, "w") as f:
            for d in docs:
                f.write(json.dumps({"text": d}) + "\n")
        tok = train_tokenizer([corpus], base, vocab_size=4096)
        torch.manual_seed(0)
        config = transformers.LlamaConfig(
            vocab_size=tok.vocab_size, hidden_size=128, intermediate_size=352, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=2048, tie_word_embeddings=True,
            bos_token_id=tok.eos_id, eos_token_id=tok.eos_id, pad_token_id=tok.eos_id)
        transformers.LlamaForCausalLM(config).save_pretrained(base)
    if train_steps == 0:
        return base
    from curate.refine.teacher import annotate
    from curate.refine.train import train_refiner

    records = [{"text": d, "program": p} for d, p in zip(docs, annotate(docs, level="both"))]
    res = train_refiner(base, records, out, level="chunk", max_steps=train_steps, epochs=1000, lr=3e-3,
                        batch_size=4, max_length=2048, seed=0, device="cpu")
    print(f"refiner: {res['steps']} steps on {res['examples']} chunk examples, loss {res['losses'][0]:.3f} -> "
          f"{res['losses'][-1]:.3f}, {res['seconds']:.0f} s", flush=True)
    return out


CHUNK_TOKENS = 1500  # ProX's; --max-chunk-tokens


def refine(backend, tok, docs: list[str], max_new_tokens: int) -> tuple[list[str], int, int]:
    """(whole-document programs, chunks, generated tokens)."""
    from curate.refine.prompts import chunk_prompts, combine_chunk_programs

    per_doc, prompts = [], []
    for d in docs:
        _, ps = chunk_prompts(d, tok, CHUNK_TOKENS)
        per_doc.append(len(ps))
        prompts += ps
    outs = backend.generate(prompts, max_new_tokens)
    n_tokens = sum(len(x) for x in tok(outs, add_special_tokens=False)["input_ids"]) if outs else 0
    programs, pos = [], 0
    for k in per_doc:
        programs.append(combine_chunk_programs(outs[pos:pos + k]))
        pos += k
    return programs, len(prompts), n_tokens


def run_backend(name: str, make, tok, docs, max_new: list[int]) -> list[dict]:
    t0 = time.perf_counter()
    be = make()
    be.generate(["warm up"], 2)  # loads the model / starts the engine
    load = time.perf_counter() - t0
    rows = []
    for m in max_new:
        if name == "vllm":  # each measurement from a cold prefix cache: no prompt was seen before
            be.llm.reset_prefix_cache()
        t0 = time.perf_counter()
        programs, chunks, n_tok = refine(be, tok, docs, m)
        dt = time.perf_counter() - t0
        rows.append({"backend": name, "max_new_tokens": m, "docs": len(docs), "chunks": chunks, "seconds": dt,
                     "docs_per_s": len(docs) / dt, "gen_tok_per_s": n_tok / dt, "gen_tokens": n_tok,
                     "load_s": load, "programs": programs})
        print(f"{name:>12}  max_new {m:>4}  {len(docs)} docs {chunks} chunks  {dt:7.1f} s  "
              f"{len(docs) / dt:7.3f} docs/s  {n_tok / dt:8.1f} gen tok/s  (load {load:.1f} s)", flush=True)
    be.close()
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=32)
    p.add_argument("--model", default=None, help="a refiner folder (default: build the quickstart-sized model)")
    p.add_argument("--train-steps", type=int, default=0, help="fine-tune the built model this many steps first")
    p.add_argument("--max-new-tokens", default="256,32", help="comma-separated; ProX's chunk limit is 256")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--no-transformers", action="store_true")
    p.add_argument("--no-vllm", action="store_true")
    p.add_argument("--openai", default=None, metavar="URL",
                   help="also time an OpenAI-compatible server serving --model (e.g. vLLM's), 8 requests in flight")
    p.add_argument("--max-chunk-tokens", type=int, default=1500, help="chunk size (ProX: 1,500 tokens)")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    global CHUNK_TOKENS
    CHUNK_TOKENS = a.max_chunk_tokens
    import importlib.util

    import torch
    import transformers

    from curate.refine.backends import OpenAIBackend, TransformersBackend, VLLMBackend

    if a.threads:
        torch.set_num_threads(a.threads)
    max_new = [int(x) for x in a.max_new_tokens.split(",")]
    docs = load_docs(a.docs)
    model = a.model or build_model(docs, a.train_steps)
    tok = transformers.AutoTokenizer.from_pretrained(model)
    print(f"model {model}  torch {torch.__version__} threads {torch.get_num_threads()}  transformers "
          f"{transformers.__version__}  {len(docs)} docs, {sum(map(len, docs)) / len(docs):.0f} chars on average",
          flush=True)
    rows = []
    if not a.no_transformers:
        rows += run_backend("transformers", lambda: TransformersBackend(model, device="cpu", dtype="float32",
                                                                         batch_size=a.batch_size), tok, docs, max_new)
    have_vllm = importlib.util.find_spec("vllm") is not None
    if have_vllm and not a.no_vllm:
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        rows += run_backend("vllm", lambda: VLLMBackend(model, dtype="float32", enforce_eager=True, max_model_len=2048),
                            tok, docs, max_new)
    elif not have_vllm:
        print("vllm is not importable here (run with /work/vllm-env/bin/python for the in-process comparison)")
    if a.openai:
        rows += run_backend("openai", lambda: OpenAIBackend(a.openai, model, concurrency=8), tok, docs, max_new)
    for other in ("vllm", "openai"):
        for m in max_new:
            hf = next((r for r in rows if r["backend"] == "transformers" and r["max_new_tokens"] == m), None)
            vl = next((r for r in rows if r["backend"] == other and r["max_new_tokens"] == m), None)
            if hf and vl:
                same = sum(x == y for x, y in zip(hf["programs"], vl["programs"]))
                print(f"max_new {m}: {other} / transformers docs/s = {vl['docs_per_s'] / hf['docs_per_s']:.2f}x; "
                      f"programs equal for {same}/{len(docs)} documents", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump([{k: v for k, v in r.items() if k != "programs"} for r in rows], f, indent=1)
    return 0


if __name__ == "__main__":  # vLLM starts processes: keep the main guard
    sys.exit(main())
