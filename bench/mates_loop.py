"""MATES closed loop: staged model-aware selection vs a uniform draw, at equal tokens and steps, 3+ seeds.

    .venv/bin/python bench/mates_loop.py                       # quickstart mix (out/mix), 3 seeds
    .venv/bin/python bench/mates_loop.py --seeds 0 1 2 3 4 --steps 400 --out out/mates-loop
    .venv/bin/python bench/mates_loop.py --seeds 0 1 2 3 4 --arms random mates static --classifier models/quality-ablate.bin

Every arm runs ``curate train`` with a ``selection:`` block on the same mix, model, schedule and
seeds; the only difference is the method: ``mates``, ``random`` (every stage a uniform draw of the
same size) or ``static`` (the reference without a model in the loop: a fastText quality classifier,
``--classifier``, scores the pool once and every stage draws by Gumbel-top-k on those fixed scores);
stage 0 is a uniform draw in every arm. The default arms are all three when the classifier file
exists (``curate train-scorer --recipe samples/ablate/quality-heldout.yaml``: trained on no
evaluation file), else random and mates. The reference set the oracle probes is
LAMBADA's first ``--reference-limit`` records; the **held-out target** is other LAMBADA records
(``--target-limit`` of them, after those), never probed: its token-mean continuation loss on the
final model, plus LAMBADA accuracy on them and the downstream tasks (multiple-choice accuracy).
Printed: per-stage Spearman of the influence model on held-out probes, each metric's mean ± std
per arm, and the paired difference of each arm minus random (t-interval over seeds, ``curate.ablate.stats``),
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
                      "reference_limit": args.reference_limit, "encoder": args.encoder, "fit_epochs": args.fit_epochs,
                      **({"classifier": args.classifier} if arm == "static" else {})}}),
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
    p.add_argument("--arms", nargs="+", choices=["random", "mates", "static"], default=None,
                   help="default: all three when --classifier exists, else random and mates")
    p.add_argument("--classifier", default=os.path.join(ROOT, "models", "quality-ablate.bin"),
                   help="fastText quality model of the static arm")
    args = p.parse_args(argv)
    args.classifier = os.path.abspath(args.classifier)
    if args.arms is None:
        args.arms = ["random", "mates"] + (["static"] if os.path.isfile(args.classifier) else [])
        if "static" not in args.arms:
            print(f"note: no static arm: {args.classifier} not found (curate train-scorer --recipe "
                  "samples/ablate/quality-heldout.yaml writes models/quality-ablate.bin)", file=sys.stderr)
    elif "static" in args.arms and not os.path.isfile(args.classifier):
        p.error(f"--arms static needs --classifier: {args.classifier} not found")
    if "random" not in args.arms:
        p.error("--arms must include random (the baseline every other arm is compared with)")
    import torch

    torch.set_num_threads(args.threads)
    from curate.ablate.stats import mean_std, paired_ci

    args.data, args.out = os.path.abspath(args.data), os.path.abspath(args.out)
    ref, target = split_lambada(args.out, args.reference_limit, args.target_limit)
    tasks = [target] + [os.path.join(EVAL, f"{t}.jsonl") for t in args.tasks]
    arms = [a for a in ("random", "mates", "static") if a in args.arms]
    table: dict[str, dict[int, dict]] = {a: {} for a in arms}
    info: dict[str, dict[int, dict]] = {a: {} for a in arms}
    for seed in args.seeds:
        for arm in arms:
            t0 = time.perf_counter()
            res = run_arm(args, arm, seed, ref, tasks)
            folder = os.path.join(args.out, f"{arm}-seed{seed}")
            table[arm][seed] = metrics_of(res, folder, target, args.target_limit)
            info[arm][seed] = res["mates"]
            print(f"{arm} seed {seed}: target loss {table[arm][seed]['target_loss']:.4f} "
                  f"({time.perf_counter() - t0:.0f}s)", file=sys.stderr, flush=True)

    lines = [f"MATES closed loop: {args.steps} steps x 8 x 128 tokens per run, stages of {args.stage_steps} steps, "
             f"{args.fraction:g} of the pool per stage (temperature {args.temperature:g}), {args.probes} probes per "
             f"stage, encoder {args.encoder}, seeds {args.seeds}, arms {arms}", ""]
    if "mates" in arms:
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
    if "static" in arms:
        import numpy as np

        sel_mean, pool_mean, rho = [], [], []
        overlap: dict[str, list[float]] = {}
        for seed in args.seeds:
            for st in info["static"][seed]["stages"]:
                if st["method"] != "static":
                    continue
                stage = f"stage-{st['stage']:03d}"
                d = os.path.join(args.out, f"static-seed{seed}", "mates", stage)
                with open(os.path.join(d, "stage.json")) as f:
                    full = json.load(f)
                sel_mean.append(full["selected_score_mean"])
                pool_mean.append(full["pool_score_mean"])
                chosen = {a: os.path.join(args.out, f"{a}-seed{seed}", "mates", stage, "selection.npy") for a in arms}
                for a, b in (("static", "random"), ("mates", "random"), ("static", "mates")):
                    if a in arms and b in arms and os.path.exists(chosen[a]) and os.path.exists(chosen[b]):
                        x, y = np.load(chosen[a]), np.load(chosen[b])
                        overlap.setdefault(f"{a}/{b}", []).append(len(np.intersect1d(x, y)) / len(x))
                other = os.path.join(args.out, f"mates-seed{seed}", "mates", stage, "scores.npy")
                if "mates" in arms and os.path.exists(other):
                    from curate.mates.influence import spearman

                    rho.append(spearman(np.load(os.path.join(d, "scores.npy")), np.load(other)))
        lines.append("")
        lines.append(f"Static selector ({os.path.relpath(args.classifier, ROOT)}): mean P(high quality) of the selected "
                     f"sequences {sum(sel_mean) / len(sel_mean):.3f} vs the pool {sum(pool_mean) / len(pool_mean):.3f}"
                     + (f"; Spearman of its scores vs the influence model's (same seed and stage): "
                        f"{sum(rho) / len(rho):+.3f}" if rho else ""))
        if overlap:
            lines.append("Shared selections, same seed and stage (every arm draws its Gumbel noise from the same seed, "
                         f"so selections overlap beyond the chance level {args.fraction:g}): "
                         + ", ".join(f"{k} {sum(v) / len(v):.2f}" for k, v in overlap.items()))
    lines.append("")
    keys = sorted({k for arm in table.values() for m in arm.values() for k in m},
                  key=lambda k: (k != "target_loss", k != "downstream_mean_acc", k))
    others = [a for a in arms if a != "random"]
    lines.append("| metric | " + " | ".join(f"{a} (mean ± std)" for a in arms) + " | "
                 + " | ".join(f"{a} - random (paired, 95% CI) | significant" for a in others) + " |")
    lines.append("|---" * (1 + len(arms) + 2 * len(others)) + "|")
    summary = {}
    for k in keys:
        vals = {a: {s: table[a][s][k] for s in args.seeds if k in table[a][s]} for a in arms}
        cells = ["{:.4f} ± {:.4f}".format(*mean_std(list(vals[a].values()))) for a in arms]
        summary[k] = dict(vals)
        for a in others:
            ci = paired_ci(vals[a], vals["random"])
            summary[k][f"{a}-random"] = ci
            if a == "mates":
                summary[k]["diff"] = ci  # as before the static arm
            interval = f"{ci['mean']:+.4f} [{ci['lo']:+.4f}, {ci['hi']:+.4f}]" if ci["lo"] is not None else f"{ci['mean']:+.4f}"
            cells += [interval, "yes" if ci["significant"] else "no"]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
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
