"""MATES closed loop: staged model-aware selection vs a uniform draw, at equal tokens and steps, 3+ seeds.

    .venv/bin/python bench/mates_loop.py                       # quickstart mix (out/mix), 3 seeds
    .venv/bin/python bench/mates_loop.py --seeds 0 1 2 3 4 --steps 400 --out out/mates-loop

Both arms run ``curate train`` with a ``selection:`` block on the same mix, model, schedule and
seeds; the only difference is ``method: mates`` vs ``method: random`` (every stage a uniform draw
of the same size; stage 0 is a uniform draw in both arms). The reference set the oracle probes is
LAMBADA's first ``--reference-limit`` records; the **held-out target** is other LAMBADA records
(``--target-limit`` of them, after those), never probed: its token-mean continuation loss on the
final model, plus LAMBADA accuracy on them and the downstream tasks (multiple-choice accuracy).
Printed: per-stage Spearman of the influence model on held-out probes, each metric's mean ± std
per arm, and the paired difference mates - random (t-interval over seeds, ``curate.ablate.stats``),
with the compute the selection itself took (probing, fitting, scoring) next to training's.
Runs already finished in ``--out`` are reused (delete the folder to redo them).
Needs ../shared/data/eval (LAMBADA and the task files) and a mix (quickstart: ``samples/quickstart.sh``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

EVAL = os.path.join(os.path.dirname(ROOT), "shared", "data", "eval")


def split_lambada(out: str, ref_n: int, target_n: int) -> tuple[str, str]:
    with open(os.path.join(EVAL, "lambada_openai.jsonl")) as f:
        lines = [line for line in f if line.strip()]
    os.makedirs(out, exist_ok=True)
    ref, tgt = os.path.join(out, "reference.jsonl"), os.path.join(out, "lambada_heldout.jsonl")
    with open(ref, "w") as f:
        f.writelines(lines[:ref_n])
    with open(tgt, "w") as f:
        f.writelines(lines[ref_n:ref_n + target_n])
    return ref, tgt


def run_arm(args, arm: str, seed: int, ref: str, tasks: list[str]) -> dict:
    import torch

    from curate.train.config import parse_config
    from curate.train.trainer import run_train

    folder = os.path.join(args.out, f"{arm}-seed{seed}")
    done = os.path.join(folder, "results.json")
    if os.path.exists(done):
        with open(done) as f:
            res = json.load(f)
        if "mates" in res:
            return res
    torch.manual_seed(seed)
    cfg = parse_config(json.dumps({
        "data": args.data, "output": folder, "seed": seed,
        "model": {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 352},
        "micro_batch_size": 8, "max_steps": args.steps, "lr": 3e-3, "schedule": "cosine", "warmup_steps": 20,
        "eval_every": 0, "eval_sequences": 32, "checkpoint_every": 0, "log_every": 10, "device": args.device,
        "eval_tasks": tasks, "eval_tasks_limit": args.tasks_limit,
        "selection": {"method": arm, "stage_steps": args.stage_steps, "fraction": args.fraction,
                      "temperature": args.temperature, "probes": args.probes, "reference": ref,
                      "reference_limit": args.reference_limit, "encoder": args.encoder, "fit_epochs": args.fit_epochs}}),
        f"mates_loop:{arm}:{seed}")
    t0 = time.perf_counter()
    res = run_train(cfg, quiet=True)
    res["wall_seconds"] = time.perf_counter() - t0
    with open(done, "w") as f:
        json.dump(res, f, indent=2)
    return res


def target_loss(final: str, target: str, limit: int) -> float:
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    from curate.mates.probe import load_reference

    model = AutoModelForCausalLM.from_pretrained(final, dtype=torch.float32)
    tok = Tokenizer.from_file(os.path.join(final, "tokenizer.json"))
    ref = load_reference(target, tok, model.config.max_position_embeddings, limit=limit)
    return ref.loss(model, torch.device("cpu"))


def metrics_of(res: dict, folder: str, target: str, limit: int) -> dict:
    m = {"target_loss": target_loss(os.path.join(folder, "final"), target, limit)}
    accs = []
    for name, r in (res.get("tasks") or {}).items():
        if isinstance(r, dict) and "acc" in r:
            m[f"{name}/acc"] = r["acc"]
            if name != "lambada_heldout":
                accs.append(r["acc"])
    if accs:
        m["downstream_mean_acc"] = sum(accs) / len(accs)
    for d, v in (res.get("heldout") or {}).items():
        m[f"mix_heldout/{d}"] = v
    return m


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=os.path.join(ROOT, "out", "mix"))
    p.add_argument("--out", default=os.path.join(ROOT, "out", "mates-loop"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--stage-steps", type=int, default=75)
    p.add_argument("--fraction", type=float, default=0.2)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--probes", type=int, default=160)
    p.add_argument("--reference-limit", type=int, default=32)
    p.add_argument("--target-limit", type=int, default=500)
    p.add_argument("--encoder", default="tiny")
    p.add_argument("--fit-epochs", type=int, default=10)
    p.add_argument("--tasks", nargs="*", default=["arc_easy", "copa", "winogrande", "openbook_qa"])
    p.add_argument("--tasks-limit", type=int, default=300)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from curate.ablate.stats import mean_std, paired_ci

    args.data, args.out = os.path.abspath(args.data), os.path.abspath(args.out)
    ref, target = split_lambada(args.out, args.reference_limit, args.target_limit)
    tasks = [target] + [os.path.join(EVAL, f"{t}.jsonl") for t in args.tasks]
    table: dict[str, dict[int, dict]] = {"random": {}, "mates": {}}
    info: dict[str, dict[int, dict]] = {"random": {}, "mates": {}}
    for seed in args.seeds:
        for arm in ("random", "mates"):
            t0 = time.perf_counter()
            res = run_arm(args, arm, seed, ref, tasks)
            folder = os.path.join(args.out, f"{arm}-seed{seed}")
            table[arm][seed] = metrics_of(res, folder, target, args.target_limit)
            info[arm][seed] = res["mates"]
            print(f"{arm} seed {seed}: target loss {table[arm][seed]['target_loss']:.4f} "
                  f"({time.perf_counter() - t0:.0f}s)", file=sys.stderr, flush=True)

    lines = [f"MATES closed loop: {args.steps} steps x 8 x 128 tokens per run, stages of {args.stage_steps} steps, "
             f"{args.fraction:g} of the pool per stage (temperature {args.temperature:g}), {args.probes} probes per "
             f"stage, encoder {args.encoder}, seeds {args.seeds}", ""]
    lines.append("Influence model: Spearman on held-out probes, per stage (mates arm)")
    lines.append("| seed | " + " | ".join(f"stage {st['stage']} (step {st['step']})" for st in info["mates"][args.seeds[0]]["stages"]
                                            if st["method"] == "mates") + " |")
    lines.append("|---" * (1 + sum(st["method"] == "mates" for st in info["mates"][args.seeds[0]]["stages"])) + "|")
    for seed in args.seeds:
        lines.append(f"| {seed} | " + " | ".join(f"{st['spearman_holdout']:.3f}" for st in info["mates"][seed]["stages"]
                                                 if st["method"] == "mates") + " |")
    probe_ms = [st["probe_seconds_per_doc"] * 1000 for s in args.seeds for st in info["mates"][s]["stages"]
                if "probe_seconds_per_doc" in st]
    sel_s = [info["mates"][s]["selection_seconds"] for s in args.seeds]
    lines.append("")
    lines.append(f"Probe cost: {sum(probe_ms) / len(probe_ms):.0f} ms per document (one step + the reference loss); "
                 f"selection work per mates run {sum(sel_s) / len(sel_s):.0f}s (probe + fit + score)")
    lines.append("")
    keys = sorted({k for arm in table.values() for m in arm.values() for k in m},
                  key=lambda k: (k != "target_loss", k != "downstream_mean_acc", k))
    lines.append("| metric | random (mean ± std) | mates (mean ± std) | mates - random (paired, 95% CI) | significant |")
    lines.append("|---|---|---|---|---|")
    summary = {}
    for k in keys:
        r = {s: table["random"][s][k] for s in args.seeds if k in table["random"][s]}
        m = {s: table["mates"][s][k] for s in args.seeds if k in table["mates"][s]}
        (rm, rs), (mm, ms) = mean_std(list(r.values())), mean_std(list(m.values()))
        ci = paired_ci(m, r)
        summary[k] = {"random": r, "mates": m, "diff": ci}
        interval = f"{ci['mean']:+.4f} [{ci['lo']:+.4f}, {ci['hi']:+.4f}]" if ci["lo"] is not None else f"{ci['mean']:+.4f}"
        lines.append(f"| {k} | {rm:.4f} ± {rs:.4f} | {mm:.4f} ± {ms:.4f} | {interval} | "
                     f"{'yes' if ci['significant'] else 'no'} |")
    lines.append("")
    lines.append("(target_loss and mix_heldout: lower is better; accuracies: higher is better. 'no': the paired "
                 "95% interval contains 0, the difference is not significant at this scale.)")
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump({"args": vars(args), "metrics": summary, "stages": info}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
