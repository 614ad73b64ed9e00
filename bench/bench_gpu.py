"""Trainer throughput and model FLOPs utilization for the ~125M-parameter example config.

Builds a mix of the benchmark corpus (bench/corpus.py; 32k byte-level BPE, 2,048-token
sequences) large enough for the steps asked, then runs `curate train` with
samples/train-125m.yaml (bf16 autocast + torch.compile on CUDA) and prints steady-state tokens/s
and MFU (6N + 12 L d T FLOPs per token against the GPU's dense bf16 peak; H100/H200: 989 TFLOP/s)
from the trainer's own log. Target: MFU >= 40% on an H100.

    python bench/bench_gpu.py                              # on a GPU: 60 steps of 16 x 2048 tokens
    python bench/bench_gpu.py --device cpu --steps 3 --micro-batch 1 --grad-accum 1 --seq-length 256   # smoke check
"""
from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)
WORK = os.path.join(HERE, "_work", "gpu")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10, help="steps left out of the steady-state figures")
    ap.add_argument("--micro-batch", type=int, default=16)
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--seq-length", type=int, default=2048)
    ap.add_argument("--vocab", type=int, default=32768)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compile", default="auto")
    ap.add_argument("--json")
    args = ap.parse_args()

    import corpus
    import yaml

    from curate.mix.pipeline import run_mix
    from curate.mix.spec import parse_spec
    from curate.tokenizer import train_tokenizer
    from curate.train.config import parse_config
    from curate.train.trainer import Trainer

    files = corpus.build(50)
    tok = os.path.join(WORK, f"tok{args.vocab}")
    if not os.path.exists(os.path.join(tok, "tokenizer.json")):
        train_tokenizer(files, tok, vocab_size=args.vocab, limit_docs=20000)
    need = args.steps * args.micro_batch * args.grad_accum * args.seq_length
    mix = os.path.join(WORK, f"mix-{args.seq_length}-{need}")
    if not os.path.exists(os.path.join(mix, "manifest.json")):
        spec = {"tokenizer": tok, "seq_length": args.seq_length, "total_tokens": need, "seed": 0,
                "domains": {"web": {"path": files, "max_epochs": 100}}, "weights": {"web": 1}}
        run_mix(parse_spec(json.dumps(spec), "bench-gpu"), mix)
    with open(os.path.join(ROOT, "samples", "train-125m.yaml")) as f:
        cfg = yaml.safe_load(f)
    cfg.update(data=mix, output=os.path.join(WORK, "run"), max_steps=args.steps, micro_batch_size=args.micro_batch,
               grad_accum=args.grad_accum, warmup_steps=min(10, args.steps), eval_every=0, checkpoint_every=0,
               log_every=1, device=args.device, compile=args.compile)
    trainer = Trainer(parse_config(json.dumps(cfg), "bench-gpu"), quiet=True)
    n = sum(p.numel() for p in trainer.model.parameters())
    trainer.train()
    with open(os.path.join(cfg["output"], "log.jsonl")) as f:
        recs = [r for r in map(json.loads, f) if "tokens_per_s" in r]
    steady = [r for r in recs if r["step"] > args.warmup] or recs
    tps = sorted(r["tokens_per_s"] for r in steady)[len(steady) // 2]
    mfu = sorted(r.get("mfu", 0.0) for r in steady)[len(steady) // 2] if "mfu" in steady[0] else None
    import torch

    device = torch.cuda.get_device_name() if trainer.device.type == "cuda" else "cpu"
    print(f"model {n / 1e6:.1f}M parameters, {args.micro_batch * args.grad_accum} x {args.seq_length} tokens per step, "
          f"{'bf16' if trainer.amp else 'fp32'}, compile {cfg['compile']}, on {device}")
    print(f"steady state (median over steps > {args.warmup}): {tps:,.0f} tokens/s"
          + (f", MFU {mfu:.1%}" if mfu is not None else ", MFU: n/a (no known GPU peak)"))
    print(f"FLOPs per token {trainer.flops_per_token / 1e6:.0f}M; loss {recs[0]['loss']:.3f} -> {recs[-1]['loss']:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"params": n, "tokens_per_s": tps, "mfu": mfu, "device": device}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
