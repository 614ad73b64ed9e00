"""Trainer benchmark: curate's bundled trainer vs a plain Hugging Face ``transformers.Trainer`` loop.

Both train the same tiny Llama (one ``LlamaConfig``, same init seed, fp32, CPU, sdpa attention) on
the same packed sequences, with the same micro batch, number of optimizer steps, AdamW
hyperparameters (lr, betas, eps, weight decay on matrices only), cosine schedule with linear warmup
down to 10% of the peak lr, and gradient clipping at 1.0. Nothing is evaluated or saved during the
run. Each run is its own Python process with the same ``torch.set_num_threads``; the two trainers
alternate (curate first on even repeats, HF first on odd ones) and the table shows medians.

    python bench/bench_trainer.py                         # defaults: 60 steps, 2 repeats (~3 min on 2 cores)
    python bench/bench_trainer.py --steps 40 --repeat 2 --json /tmp/trainer.json
    python bench/bench_trainer.py --hidden 512 --layers 8 --seq-length 512 --batch 4 --threads 1

What is measured:
  tok/s     steady-state training throughput: micro_batch x seq_length tokens per optimizer step, over
            the steps after the first ``--warmup`` (default 10), i.e. the wall time from the end of step
            ``warmup`` to the end of the last step. curate: the per-step ``tokens_per_s`` of its
            ``log.jsonl`` (``log_every: 1``). HF: ``TrainerCallback.on_step_end`` timestamps.
  total s   wall time of the whole process as the parent sees it: interpreter start, imports, model
            build, every step, and what each trainer does at the end (curate saves a final model and a
            checkpoint; HF with ``save_strategy="no"`` saves nothing).
  loss      mean training loss over the last 10 steps; ``step-1 loss`` should agree closely, as both
            start from the same weights (same seed, same config) and read the same first batch. Later
            losses differ a little: HF's warmup starts at lr 0 (step / warmup), curate's at lr / warmup
            ((step + 1) / warmup), so HF trails by about one step. curate keeps ``config.use_cache``
            True while training, HF's Trainer sets it to ``TrainingArguments.use_cache`` (False); the
            table's header says so rather than hiding it.

Data (built once, cached under bench/_work/trainer/): the sample corpus (samples/corpus/*.jsonl*)
plus ../shared/data/web/cc/*.jsonl.gz when present; a byte-level BPE (``--vocab``, default 4096,
``curate.tokenizer.train_tokenizer``) and a one-domain, one-phase ``curate mix`` of
``steps x batch x seq_length`` tokens (no held-out split). curate reads the shards through its own
``MixData``; HF through a ``torch.utils.data.Dataset`` over ``IndexedReader(...).tokens`` returning
``{"input_ids", "labels"}`` (int64) with ``train_sampling_strategy="sequential"``, so both see the
sequences in the same order. HF's optimizer is its default (``adamw_torch_fused`` on torch >= 2.8;
``--hf-optim`` to change it); curate uses ``torch.optim.AdamW`` (foreach) on CPU. No assertions on
timings: the bench prints, and writes every run with ``--json PATH``.
"""
from __future__ import annotations

import time

_T_PROCESS = time.perf_counter()  # before the other imports: a child's startup time counts from here

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORK = os.path.join(HERE, "_work", "trainer")
SHARED_CC = os.path.join(os.path.dirname(ROOT), "shared", "data", "web", "cc")

LR, WARMUP_LR, MIN_LR_RATIO = 1e-3, 10, 0.1
WEIGHT_DECAY, BETAS, EPS, GRAD_CLIP, SEED = 0.1, (0.9, 0.95), 1e-8, 1.0, 0


# ------------------------------------------------------------------------------------ data


def corpus_files() -> list[str]:
    files = sorted(glob.glob(os.path.join(ROOT, "samples", "corpus", "*.jsonl*")))
    files += sorted(glob.glob(os.path.join(SHARED_CC, "*.jsonl.gz")))
    if not files:
        raise SystemExit("no text found: samples/corpus/*.jsonl* is missing")
    return files


def build_data(vocab: int, seq_length: int, tokens: int) -> tuple[str, dict]:
    """Tokenizer + one-domain mix, cached by (inputs, vocab, seq_length, tokens). Returns (mix folder, info)."""
    files = corpus_files()
    tag = f"{len(files)}f-{sum(os.path.getsize(f) for f in files)}b"
    tok_dir = os.path.join(WORK, f"tokenizer-v{vocab}-{tag}")
    mix_dir = os.path.join(WORK, f"mix-v{vocab}-s{seq_length}-t{tokens}-{tag}")
    t0 = time.perf_counter()
    if not os.path.exists(os.path.join(tok_dir, "tokenizer_config.json")):
        from curate.tokenizer import train_tokenizer

        shutil.rmtree(tok_dir, ignore_errors=True)
        train_tokenizer(files, tok_dir, vocab_size=vocab)
    manifest_path = os.path.join(mix_dir, "manifest.json")
    if not os.path.exists(manifest_path):
        from curate.mix.pipeline import run_mix
        from curate.mix.spec import parse_spec

        paths = "".join(f"\n      - {json.dumps(f)}" for f in files)
        spec = parse_spec(f"""
tokenizer: {json.dumps(tok_dir)}
seq_length: {seq_length}
total_tokens: {tokens}
seed: 0
heldout_tokens: 0
domains:
  web:
    path:{paths}
    max_epochs: 1000
phases:
  - {{name: main, fraction: 1.0, weights: {{web: 1.0}}}}
""", where="bench_trainer")
        run_mix(spec, mix_dir)
    with open(manifest_path) as f:
        manifest = json.load(f)
    info = {"files": [os.path.relpath(f, ROOT) for f in files],
            "sequences": manifest["total_sequences"], "seq_length": manifest["seq_length"],
            "vocab_size": manifest["tokenizer"]["vocab_size"],
            "available_tokens": manifest["domains"]["web"]["available_tokens"],
            "build_s": time.perf_counter() - t0}
    return mix_dir, info


# ------------------------------------------------------------------------------ child jobs


def model_params(job: dict) -> dict:
    """The LlamaConfig fields both sides use (curate's build_model fills the same vocab/eos/context)."""
    return {"hidden_size": job["hidden"], "num_hidden_layers": job["layers"], "num_attention_heads": job["heads"],
            "num_key_value_heads": job["heads"], "intermediate_size": job["intermediate"],
            "tie_word_embeddings": True, "rope_theta": 10000.0}


def child_curate(job: dict) -> dict:
    import torch

    torch.set_num_threads(job["threads"])
    from curate.train.config import parse_config
    from curate.train.trainer import Trainer

    out = job["output"]
    shutil.rmtree(out, ignore_errors=True)
    model = "".join(f"\n  {k}: {json.dumps(v)}" for k, v in model_params(job).items())
    cfg = parse_config(f"""
data: {json.dumps(job["data"])}
output: {json.dumps(out)}
model:{model}
micro_batch_size: {job["batch"]}
grad_accum: 1
max_steps: {job["steps"]}
lr: {LR:.1e}
min_lr_ratio: {MIN_LR_RATIO}
schedule: cosine
warmup_steps: {WARMUP_LR}
weight_decay: {WEIGHT_DECAY}
betas: [{BETAS[0]}, {BETAS[1]}]
eps: {EPS:.1e}
grad_clip: {GRAD_CLIP}
seed: {SEED}
eval_every: 0
checkpoint_every: 0
eval_tasks: []
log_every: 1
device: cpu
dtype: float32
compile: "false"
attn_implementation: sdpa
""", where="bench_trainer")
    t_build = time.perf_counter()
    trainer = Trainer(cfg, quiet=True)
    config = trainer.model.config.to_dict()
    t_train = time.perf_counter()
    trainer.train()
    t_end = time.perf_counter()
    with open(os.path.join(out, "log.jsonl")) as f:
        recs = [json.loads(line) for line in f if line.strip()]
    steps = [r for r in recs if "loss" in r and not r.get("final")]
    tokens_per_step = job["batch"] * trainer.data.seq_length
    step_s = [tokens_per_step / r["tokens_per_s"] for r in steps]  # log_every 1: one interval per step
    return {"step_s": step_s, "losses": [r["loss"] for r in steps], "tokens_per_step": tokens_per_step,
            "threads": torch.get_num_threads(), "optimizer": "torch.optim.AdamW (foreach)",
            "config": config, "use_cache_in_training": trainer.model.config.use_cache,
            "n_params": sum(p.numel() for p in trainer.model.parameters()),
            "first_step_s": t_train - _T_PROCESS + step_s[0],  # omits train()'s few ms before its loop
            "startup_s": t_build - _T_PROCESS, "build_s": t_train - t_build, "train_s": t_end - t_train}


def child_hf(job: dict) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(job["threads"])
    import transformers
    from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainerCallback, TrainingArguments

    from curate.mix.indexed import IndexedReader

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    with open(os.path.join(job["data"], "manifest.json")) as f:
        manifest = json.load(f)
    (phase,) = manifest["phases"]
    readers = [IndexedReader(os.path.join(job["data"], p)) for p in phase["shards"]]

    class Shards(torch.utils.data.Dataset):
        def __init__(self):
            self.starts = np.cumsum([0] + [len(r) for r in readers])

        def __len__(self):
            return int(self.starts[-1])

        def __getitem__(self, i):
            s = int(np.searchsorted(self.starts, i, side="right") - 1)
            ids = torch.from_numpy(np.asarray(readers[s].tokens[i - self.starts[s]], dtype=np.int64))
            return {"input_ids": ids, "labels": ids.clone()}

    class StepTimes(TrainerCallback):
        def __init__(self):
            self.times, self.threads = [], None

        def on_step_end(self, args, state, control, **kw):
            self.times.append(time.perf_counter())
            self.threads = torch.get_num_threads()

    tok = manifest["tokenizer"]
    params = model_params(job)
    params.update(vocab_size=tok["vocab_size"], max_position_embeddings=manifest["seq_length"],
                  bos_token_id=tok["eos_id"], eos_token_id=tok["eos_id"], pad_token_id=tok["eos_id"])
    out = job["output"]
    shutil.rmtree(out, ignore_errors=True)
    t_build = time.perf_counter()
    config = LlamaConfig(**params)
    config._attn_implementation = "sdpa"
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config)
    built_config = model.config.to_dict()  # before Trainer(), which sets use_cache = args.use_cache (False)
    losses = []
    model.register_forward_hook(lambda mod, inp, o: losses.append(o.loss.detach()))
    timer = StepTimes()
    kw = {} if job["hf_optim"] == "default" else {"optim": job["hf_optim"]}
    args = TrainingArguments(
        output_dir=out, per_device_train_batch_size=job["batch"], gradient_accumulation_steps=1,
        max_steps=job["steps"], learning_rate=LR, lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": MIN_LR_RATIO}, warmup_steps=WARMUP_LR, weight_decay=WEIGHT_DECAY,
        adam_beta1=BETAS[0], adam_beta2=BETAS[1], adam_epsilon=EPS, max_grad_norm=GRAD_CLIP,
        seed=SEED, data_seed=SEED, train_sampling_strategy="sequential",
        save_strategy="no", eval_strategy="no", report_to=[], logging_steps=10 ** 9,
        dataloader_num_workers=0, dataloader_pin_memory=False, use_cpu=True, disable_tqdm=True, **kw)
    trainer = Trainer(model=model, args=args, train_dataset=Shards(), callbacks=[timer])
    t_train = time.perf_counter()
    trainer.train()
    t_end = time.perf_counter()
    opt = trainer.optimizer
    opt = getattr(opt, "optimizer", opt)
    defaults = opt.defaults
    impl = "fused" if defaults.get("fused") else "foreach" if defaults.get("foreach") is not False else "for-loop"
    starts = [t_train] + timer.times[:-1]
    return {"step_s": [b - a for a, b in zip(starts, timer.times)], "losses": [float(x) for x in losses],
            "tokens_per_step": job["batch"] * manifest["seq_length"], "threads": timer.threads,
            "optimizer": f"{type(opt).__module__}.{type(opt).__name__} ({impl}; optim={args.optim})",
            "config": built_config, "use_cache_in_training": model.config.use_cache,
            "n_params": sum(p.numel() for p in model.parameters()),
            "first_step_s": timer.times[0] - _T_PROCESS,
            "startup_s": t_build - _T_PROCESS, "build_s": t_train - t_build, "train_s": t_end - t_train}


# ---------------------------------------------------------------------------------- parent


def run_child(side: str, job: dict) -> dict:
    job = dict(job, output=os.path.join(WORK, f"run-{side}"))
    spec = os.path.join(WORK, f"job-{side}.json")
    with open(spec, "w") as f:
        json.dump(job, f)
    env = dict(os.environ)
    env.pop("CURATE_PROGRESS_DIR", None)
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", side, "--job", spec],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{side} run failed:\n{proc.stderr[-4000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    w = job["warmup"]
    timed = r["step_s"][w:]
    r["steps_run"] = len(r["step_s"])
    r["timed_steps"] = len(timed)
    r["tokens_per_s"] = r["tokens_per_step"] * len(timed) / sum(timed)
    r["tokens_per_s_p50"] = r["tokens_per_step"] / statistics.median(timed)
    r["loadavg_1m_before"] = load
    r["ms_per_step"] = 1000 * sum(timed) / len(timed)
    r["loss_first"] = r["losses"][0]
    r["loss_last10"] = statistics.fmean(r["losses"][-10:])
    r["total_s"] = wall
    return r


CONFIG_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "intermediate_size",
               "vocab_size", "max_position_embeddings", "tie_word_embeddings", "rope_parameters", "rope_theta",
               "rms_norm_eps", "hidden_act", "initializer_range", "attention_bias", "mlp_bias", "use_cache",
               "bos_token_id", "eos_token_id", "pad_token_id", "dtype", "torch_dtype")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=60, help="optimizer steps per run (default 60)")
    ap.add_argument("--warmup", type=int, default=10, help="first steps left out of the timing (default 10)")
    ap.add_argument("--repeat", type=int, default=2, help="runs per trainer; the table shows medians (default 2)")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--intermediate", type=int, default=None, help="default: 688 for hidden 256, else ~2.7 x hidden")
    ap.add_argument("--seq-length", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8, help="micro batch (sequences per step, no accumulation)")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="torch.set_num_threads for both (default: all cores)")
    ap.add_argument("--hf-optim", default="default", help="TrainingArguments.optim for HF (default: HF's own default)")
    ap.add_argument("--json", help="write the configuration, every run and the summary here")
    ap.add_argument("--child", choices=["curate", "hf"], help=argparse.SUPPRESS)
    ap.add_argument("--job", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        with open(a.job) as f:
            job = json.load(f)
        print(json.dumps((child_curate if a.child == "curate" else child_hf)(job)))
        return
    if a.steps <= a.warmup + 1:
        raise SystemExit(f"--steps must exceed --warmup + 1 ({a.warmup + 1})")
    intermediate = a.intermediate or (688 if a.hidden == 256 else int(round(a.hidden * 8 / 3 / 16)) * 16)
    os.makedirs(WORK, exist_ok=True)
    sys.path.insert(0, ROOT)
    tokens = a.steps * a.batch * a.seq_length
    data, info = build_data(a.vocab, a.seq_length, tokens)
    print(f"data: {', '.join(info['files'])}\n"
          f"  {info['available_tokens']:,} tokens of text, vocab {info['vocab_size']:,}; "
          f"mix: {info['sequences']:,} sequences of {info['seq_length']} ({info['build_s']:.1f}s, cached in "
          f"{os.path.relpath(WORK, ROOT)})")
    job = {"data": data, "steps": a.steps, "warmup": a.warmup, "batch": a.batch, "hidden": a.hidden, "layers": a.layers,
           "heads": a.heads, "intermediate": intermediate, "threads": a.threads, "hf_optim": a.hf_optim}
    runs = {"curate": [], "hf": []}
    for i in range(a.repeat):
        for side in (("curate", "hf") if i % 2 == 0 else ("hf", "curate")):
            r = run_child(side, job)
            runs[side].append(r)
            print(f"  repeat {i + 1}/{a.repeat} {side:6s}: {r['tokens_per_s']:7,.0f} tok/s "
                  f"(p50 step {r['tokens_per_s_p50']:7,.0f})"
                  f"  {r['ms_per_step']:7.1f} ms/step  total {r['total_s']:5.1f}s  loss(last10) {r['loss_last10']:.4f}"
                  f"  [load avg before {r['loadavg_1m_before']:.2f}]", flush=True)

    c0, h0 = runs["curate"][0], runs["hf"][0]
    diff = {k: (c0["config"].get(k), h0["config"].get(k)) for k in CONFIG_KEYS
            if c0["config"].get(k) != h0["config"].get(k)}
    med = {side: {k: statistics.median(r[k] for r in rs)
                  for k in ("tokens_per_s", "tokens_per_s_p50", "ms_per_step", "total_s", "first_step_s", "startup_s",
                            "build_s", "train_s", "loss_first", "loss_last10")} for side, rs in runs.items()}
    for side, rs in runs.items():
        med[side]["tokens_per_s_min"] = min(r["tokens_per_s"] for r in rs)
        med[side]["tokens_per_s_max"] = max(r["tokens_per_s"] for r in rs)
    ratio = med["curate"]["tokens_per_s"] / med["hf"]["tokens_per_s"]
    ratio_p50 = med["curate"]["tokens_per_s_p50"] / med["hf"]["tokens_per_s_p50"]
    ratio_total = med["curate"]["total_s"] / med["hf"]["total_s"]

    print(f"\nmodel: Llama {c0['n_params'] / 1e6:.2f}M params (hidden {a.hidden}, {a.layers} layers, {a.heads} heads, "
          f"intermediate {intermediate}, vocab {info['vocab_size']}, tied), fp32, sdpa, CPU")
    print(f"run: {a.steps} steps x {a.batch} seqs x {a.seq_length} tokens = {c0['tokens_per_step']:,} tokens/step; "
          f"timed: steps {a.warmup + 1}-{a.steps}; {a.repeat} repeat(s), medians; torch threads: "
          f"curate {c0['threads']}, HF {h0['threads']} (cores: {os.cpu_count()})")
    print(f"optimizers: curate {c0['optimizer']}; HF {h0['optimizer']}")
    print("model configs as built: " + ("identical" if not diff else "DIFFER: " + ", ".join(
        f"{k} curate={c!r} hf={h!r}" for k, (c, h) in diff.items())))
    print(f"config.use_cache while training: curate {c0['use_cache_in_training']}, HF {h0['use_cache_in_training']}"
          + ("  (HF's Trainer sets it from TrainingArguments.use_cache, default False)"
             if c0["use_cache_in_training"] != h0["use_cache_in_training"] else "") + "\n")
    hdr = (f"{'trainer':12s} {'tok/s':>8s} {'min..max':>15s} {'p50-step tok/s':>15s} {'ms/step':>8s} {'total s':>8s} "
           f"{'to step 1 s':>12s} {'step-1 loss':>12s} {'loss last10':>12s}")
    print(hdr)
    print("-" * len(hdr))
    for side, name in (("curate", "curate"), ("hf", "hf-trainer")):
        m = med[side]
        span = f"{m['tokens_per_s_min']:,.0f}..{m['tokens_per_s_max']:,.0f}"
        print(f"{name:12s} {m['tokens_per_s']:8,.0f} {span:>15s} {m['tokens_per_s_p50']:15,.0f} "
              f"{m['ms_per_step']:8.1f} "
              f"{m['total_s']:8.1f} {m['first_step_s']:12.1f} {m['loss_first']:12.4f} {m['loss_last10']:12.4f}")
    print("-" * len(hdr))
    print(f"{'curate / HF':12s} {ratio:7.3f}x {'':>15s} {ratio_p50:14.3f}x {'':>8s} {ratio_total:7.3f}x")
    print(f"\nthroughput ratio curate / HF Trainer: {ratio:.3f}x (mean over timed steps), "
          f"{ratio_p50:.3f}x (median step)")
    print("tok/s: timed tokens / timed wall time; p50-step tok/s: tokens per step / median step time (less\n"
          "  sensitive to other processes on the machine). to step 1 s: from the child's first line to the end of\n"
          "  optimizer step 1 (imports, data, model, optimizer, one step). total s: the child process's whole wall\n"
          "  time, including interpreter start and each trainer's end-of-run work (curate saves final/ and a\n"
          "  checkpoint; HF saves nothing). Losses: HF's warmup starts at lr 0 (step/warmup), curate's at\n"
          "  lr/warmup ((step+1)/warmup), so HF's loss curve trails curate's by about one step.")
    if a.json:
        config = c0["config"]
        for rs in runs.values():
            for r in rs:
                r.pop("config", None)
        summary = {**med, "ratio_tokens_per_s": ratio, "ratio_tokens_per_s_p50": ratio_p50,
                   "ratio_total_s": ratio_total}
        with open(a.json, "w") as f:
            json.dump({"args": vars(a), "intermediate": intermediate, "data": info, "config_diff": diff,
                       "config": config, "summary": summary, "runs": runs}, f, indent=2)
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
