"""Run an ablation: per arm select exactly the token budget, mix, train the proxy once per seed, evaluate.

Output folder (``--output``)::

    tokenizer-<key>/                   the tokenizer trained on the pool (tokenizer: {vocab_size: N})
    arms/<arm>-<key>/curated/          the arm's stages run over the pool (`curate run` output)
    arms/<arm>-<key>/selected/         exactly the budget: documents in score / seeded random order
    arms/<arm>-<key>/selection.json    documents and tokens taken
    arms/<arm>-<key>/mix/              `curate mix` of the selection (one domain), held-out targets in valid/
    arms/<arm>-<key>/runs/<key>/seed-N/  one `curate train` run (train.yaml, log.jsonl, results.json)
    ablate.json, ablate.png            the table and the learning curves

``<key>`` hashes everything the step depends on (arm definition, pool files, budget, tokenizer,
sequence length, selection seed; for runs also the model, trainer settings and evaluation), so a
re-run skips every finished step and a changed definition gets a new folder.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import sys
import time

import numpy as np

from curate.ablate.spec import AblateSpec, Arm, Target
from curate.ablate.stats import mean_std, paired_ci
from curate.core.safety import UserError, check_name, check_output

LOWER_IS_BETTER = ("loss/", "/ppl")


def _key(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def pool_fingerprint(spec: AblateSpec) -> dict:
    """The pool's reader settings and, for local files, every file's path, size and mtime."""
    files = []
    for pattern in spec.pool["path"]:
        if "://" in pattern and not pattern.startswith("file://"):
            files.append([pattern])
            continue
        local = pattern.removeprefix("file://")
        found = glob.glob(os.path.join(local, "**") if os.path.isdir(local) else local, recursive=True)
        for f in sorted(found):
            if os.path.isfile(f):
                st = os.stat(f)
                files.append([f, st.st_size, st.st_mtime_ns])
    return {"settings": {k: v for k, v in spec.pool.items() if k != "path"}, "files": files}


def _say(log, msg: str) -> None:
    if log:
        log(msg)


# ----------------------------------------------------------------------------------- tokenizer


def get_tokenizer(spec: AblateSpec, output: str, pool_fp: dict, log=None):
    from curate.tokenizer import load_tokenizer, train_tokenizer

    if spec.tokenizer:
        return load_tokenizer(spec.tokenizer)
    folder = os.path.join(output, f"tokenizer-{_key([pool_fp, spec.tokenizer_vocab])}")
    if os.path.exists(os.path.join(folder, "tokenizer.json")):
        return load_tokenizer(folder)
    _say(log, f"tokenizer: training a {spec.tokenizer_vocab:,}-token BPE on the pool -> {folder}")
    train_tokenizer(spec.pool["path"], folder + ".tmp", vocab_size=spec.tokenizer_vocab,
                    text_key=spec.pool.get("text_key", "text"))
    os.replace(folder + ".tmp", folder)
    return load_tokenizer(folder)


# -------------------------------------------------------------------------------------- targets


def _target_texts(t: Target) -> list[str]:
    """Texts of a target file: ``text_key``, or (auto) text / context + continuation / query + gold choice."""
    if t.path.endswith(".parquet"):
        import pyarrow.parquet as pq

        records = pq.read_table(t.path).to_pylist()
    else:
        import gzip

        opener = gzip.open if t.path.endswith(".gz") else open
        with opener(t.path, "rt") as f:
            records = [json.loads(line) for line in f if line.strip()]
    out = []
    for r in records:
        if t.text_key != "auto":
            v = r.get(t.text_key)
        elif isinstance(r.get("text"), str):
            v = r["text"]
        elif isinstance(r.get("context"), str) and isinstance(r.get("continuation"), str):
            v = r["context"] + " " + r["continuation"]
        elif isinstance(r.get("query"), str) and isinstance(r.get("choices"), list) and isinstance(r.get("gold"), int):
            v = r["query"] + " " + str(r["choices"][r["gold"]])
        elif isinstance(r.get("context_options"), list) and isinstance(r.get("gold"), int):
            v = str(r["context_options"][r["gold"]]) + " " + str(r.get("continuation", ""))
        else:
            v = None
        if isinstance(v, str) and v.strip():
            out.append(v)
    if not out:
        raise UserError(f"target {t.name!r}: no text found in {t.path} (set text_key:)")
    return out


def pack_target(t: Target, tok, seq_length: int) -> np.ndarray:
    """The target's first ``max_tokens`` tokens (documents in file order, EOS after each) as sequences."""
    need = (t.max_tokens // seq_length) * seq_length
    flat: list[int] = []
    texts = _target_texts(t)
    for i in range(0, len(texts), 256):
        for ids in tok.encode_batch(texts[i:i + 256]):
            if ids:
                flat += ids + [tok.eos_id]
        if len(flat) >= need:
            break
    n = min(len(flat), need) // seq_length
    if n == 0:
        raise UserError(f"target {t.name!r}: fewer than {seq_length} tokens in {t.path}")
    return np.asarray(flat[: n * seq_length], dtype=tok.token_dtype).reshape(n, seq_length)


def check_tasks(spec: AblateSpec, tok) -> None:
    """Fail before any training when a task's continuation cannot fit one sequence (the evaluation would
    fail after the first run's training)."""
    from curate.train.evaluate import LAMBADA, MULTIPLE_CHOICE, PARTIAL, join_pair, load_task

    for path in spec.tasks:
        task = load_task(path, limit=spec.tasks_limit)
        pairs = []
        for r in task.records:
            if task.shape == MULTIPLE_CHOICE:
                pairs += [(r["query"], c) for c in r["choices"]]
            elif task.shape == PARTIAL:
                pairs += [(o, r["continuation"]) for o in r["context_options"]]
            elif task.shape == LAMBADA:
                pairs.append((r["context"], r["continuation"]))
        longest = 0
        for i in range(0, len(pairs), 512):
            conts = [join_pair(c, x)[1] for c, x in pairs[i:i + 512]]
            longest = max([longest] + [len(ids) for ids in tok.encode_batch(conts)])
        if longest > spec.seq_length - 1:
            raise UserError(f"task {task.name} ({path}): a continuation of {longest} tokens does not fit seq_length "
                            f"{spec.seq_length} (the evaluation context); raise seq_length, lower tasks_limit or drop the task")


# ------------------------------------------------------------------------------------ one arm


def arm_key(spec: AblateSpec, arm: Arm, pool_fp: dict, tok) -> str:
    return _key({"stages": arm.stages, "order_by": arm.order_by, "ascending": arm.ascending, "pool": pool_fp,
                 "budget": spec.budget_tokens, "tokenizer": tok.sha256, "seq_length": spec.seq_length,
                 "selection_seed": spec.selection_seed})


def curate_arm(spec: AblateSpec, arm: Arm, folder: str, runner=None, workers: int = 1, beam_args=None, log=None) -> str:
    """Run the arm's stages over the pool into ``folder`` (skipped when a finished run is there)."""
    import yaml

    from curate.core.recipe import parse_recipe
    from curate.core.runner import run_recipe
    from curate.core.safety import SUCCESS

    if os.path.exists(os.path.join(folder, SUCCESS)):
        return folder
    text = yaml.safe_dump({"input": spec.pool, "output": folder, "stages": arm.stages}, sort_keys=False)
    recipe = parse_recipe(text, f"{spec.source_file} (arm {arm.name!r})")
    res = run_recipe(recipe, runner=runner, workers=workers, beam_args=beam_args)
    kept = res.stats["write"].n_in if "write" in res.stats else None
    _say(log, f"arm {arm.name}: curated the pool in {res.seconds:.1f}s" + (f" ({kept:,} documents kept)" if kept is not None else ""))
    return folder


def select_budget(spec: AblateSpec, arm: Arm, curated: str, folder: str, tok) -> dict:
    """Write exactly enough documents for the budget into ``folder/data``: in ``order_by`` order (best
    first) or in a seeded random order. Tokens count as the mix counts them (EOS after each document);
    the last document is the one that reaches the budget (the mix cuts it at the budget)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import xxhash

    files = sorted(glob.glob(os.path.join(curated, "data", "*.parquet")))
    cols = ["id", "text"] + ([arm.order_by] if arm.order_by else [])
    ids, texts, scores = [], [], []
    for f in files:
        names = pq.read_schema(f).names
        if arm.order_by and arm.order_by not in names:
            raise UserError(f"arm {arm.name!r}: order_by column {arm.order_by!r} is not in the curated data (columns: "
                            f"{', '.join(n for n in names if n not in ('text',))}); a filter keeps its score column with "
                            "add_scores: true")
        t = pq.read_table(f, columns=cols)
        ids += t.column("id").to_pylist()
        texts += t.column("text").to_pylist()
        if arm.order_by:
            scores += t.column(arm.order_by).to_pylist()
    rkey = [xxhash.xxh64_intdigest(f"{spec.selection_seed}:{i}".encode()) for i in ids]
    if arm.order_by:
        sign = 1.0 if arm.ascending else -1.0
        order = sorted(range(len(ids)), key=lambda j: (scores[j] is None or scores[j] != scores[j],
                                                       sign * (scores[j] or 0.0), rkey[j], ids[j]))
    else:
        order = sorted(range(len(ids)), key=lambda j: (rkey[j], ids[j]))
    take, total = [], 0
    for i in range(0, len(order), 512):
        chunk = order[i:i + 512]
        for j, toks in zip(chunk, tok.encode_batch([texts[j] for j in chunk])):
            if not toks:
                continue  # the mix drops documents without tokens
            take.append(j)
            total += len(toks) + 1
            if total >= spec.budget_tokens:
                break
        if total >= spec.budget_tokens:
            break
    if total < spec.budget_tokens:
        raise UserError(f"arm {arm.name!r}: its documents hold only {total:,} tokens, less than budget_tokens "
                        f"{spec.budget_tokens:,}; lower budget_tokens or loosen the arm's stages")
    os.makedirs(os.path.join(folder, "data"), exist_ok=True)
    table = pa.table({"id": [ids[j] for j in take], "text": [texts[j] for j in take]})
    pq.write_table(table, os.path.join(folder, "data", "part-0.parquet.tmp"))
    os.replace(os.path.join(folder, "data", "part-0.parquet.tmp"), os.path.join(folder, "data", "part-0.parquet"))
    info = {"documents_in_arm": len(ids), "documents_selected": len(take), "tokens_selected": total,
            "fraction_of_arm_documents": len(take) / max(len(ids), 1)}
    if arm.order_by and take:
        info["score_cutoff"] = scores[take[-1]]
    return info


def mix_arm(spec: AblateSpec, selected: str, folder: str, tok, targets: dict[str, np.ndarray], runner=None,
            workers: int = 1, beam_args=None) -> dict:
    """`curate mix` of the selection (one domain, exactly the budget), plus the targets as held-out splits."""
    import yaml

    from curate.mix.indexed import write_indexed
    from curate.mix.pipeline import run_mix
    from curate.mix.spec import parse_spec

    text = yaml.safe_dump({
        "tokenizer": tok.path, "seq_length": spec.seq_length, "total_tokens": spec.budget_tokens,
        "seed": spec.selection_seed, "heldout_tokens": 0, "shard_tokens": max(1 << 25, 2 * spec.budget_tokens),
        "domains": {"train": {"path": os.path.join(selected, "data"), "max_epochs": 1.0}},
        "weights": {"train": 1.0}}, sort_keys=False)
    res = run_mix(parse_spec(text, f"{spec.source_file} (mix)"), folder, runner=runner, workers=workers, beam_args=beam_args)
    manifest = res.manifest
    for name, seqs in targets.items():
        write_indexed(os.path.join(folder, "valid", name), seqs)
        manifest.setdefault("valid", {})[name] = {"prefix": f"valid/{name}", "sequences": int(len(seqs)),
                                                  "tokens": int(seqs.size), "target": True}
    with open(os.path.join(folder, "manifest.json.tmp"), "w") as f:
        json.dump(manifest, f, indent=2)
    os.replace(os.path.join(folder, "manifest.json.tmp"), os.path.join(folder, "manifest.json"))
    ph = manifest["phases"][0]
    return {"realized_tokens": ph["realized_tokens"], "packed_tokens": ph["packed_tokens"],
            "sequences": manifest["total_sequences"]}


def train_config(spec: AblateSpec, mix: str, out: str, seed: int, n_target_seqs: int) -> dict:
    steps = spec.max_steps
    cfg = {"checkpoint_every": 0, "eval_every": max(1, steps // 10), "log_every": max(1, steps // 10),
           "eval_sequences": max(n_target_seqs, 1), "warmup_steps": max(1, steps // 10)}
    cfg.update(spec.train)
    cfg.update({"data": mix, "output": out, "model": spec.model, "max_steps": steps, "seed": seed,
                "eval_tasks": spec.tasks, "eval_tasks_limit": spec.tasks_limit})
    return cfg


def train_seed(cfg: dict, folder: str, log=None) -> dict:
    """One proxy run (skipped when results.json is there); returns its metrics and learning curves."""
    import yaml

    from curate.train.config import parse_config
    from curate.train.trainer import run_train

    results = os.path.join(folder, "results.json")
    if not os.path.exists(results):
        os.makedirs(folder, exist_ok=True)
        text = yaml.safe_dump(cfg, sort_keys=True)
        with open(os.path.join(folder, "train.yaml"), "w") as f:
            f.write(text)
        t0 = time.time()
        run_train(parse_config(text, os.path.join(folder, "train.yaml")), quiet=True)
        _say(log, f"  trained {cfg['max_steps']} steps (seed {cfg['seed']}) in {time.time() - t0:.1f}s")
    with open(results) as f:
        res = json.load(f)
    metrics = {f"loss/{k}": float(v) for k, v in sorted((res.get("heldout") or {}).items())}
    for task, r in (res.get("tasks") or {}).items():
        for k in ("acc", "acc_norm", "ppl"):
            if isinstance(r.get(k), (int, float)):
                metrics[f"{task}/{k}"] = float(r[k])
    curves: dict[str, list] = {}
    with open(os.path.join(folder, "log.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            if "heldout" in rec and not rec.get("final"):
                for k, v in rec["heldout"].items():
                    curves.setdefault(k, []).append([rec["step"], v])
    return {"metrics": metrics, "curves": curves, "steps": res.get("steps"), "trained_tokens": res.get("tokens")}


# ----------------------------------------------------------------------------------- the loop


def run_ablation(spec: AblateSpec, output: str, runner=None, workers: int = 1, beam_args=None, log=None) -> dict:
    """Every arm, every seed; cached and resumable. Returns the ablate.json dict (also written)."""
    output = os.path.abspath(output)
    check_output(output, spec.pool["path"], "--output")
    for name in list(spec.arms) + list(spec.targets):
        bad = check_name(name, "name")
        if bad:
            raise UserError(bad)
    os.makedirs(output, exist_ok=True)
    t_start = time.time()
    pool_fp = pool_fingerprint(spec)
    tok = get_tokenizer(spec, output, pool_fp, log)
    targets = {name: pack_target(t, tok, spec.seq_length) for name, t in spec.targets.items()}
    n_target = max((len(s) for s in targets.values()), default=0)
    check_tasks(spec, tok)
    eval_key = _key({"targets": {n: hashlib.sha256(s.tobytes()).hexdigest() for n, s in targets.items()}})
    trained = 0
    arms_out: dict[str, dict] = {}
    for arm in spec.arms.values():
        key = arm_key(spec, arm, pool_fp, tok)
        folder = os.path.join(output, "arms", f"{arm.name}-{key}")
        os.makedirs(folder, exist_ok=True)
        sel_path = os.path.join(folder, "selection.json")
        if os.path.exists(sel_path):
            with open(sel_path) as f:
                selection = json.load(f)
        else:
            curated = curate_arm(spec, arm, os.path.join(folder, "curated"), runner, workers, beam_args, log)
            selection = select_budget(spec, arm, curated, os.path.join(folder, "selected"), tok)
            with open(sel_path + ".tmp", "w") as f:
                json.dump(selection, f, indent=2)
            os.replace(sel_path + ".tmp", sel_path)
            _say(log, f"arm {arm.name}: selected {selection['documents_selected']:,} of {selection['documents_in_arm']:,} "
                      f"documents, {selection['tokens_selected']:,} tokens")
        mix_path = os.path.join(folder, f"mix-{eval_key}.json")
        mix_dir = os.path.join(folder, f"mix-{eval_key}")
        if os.path.exists(mix_path):
            with open(mix_path) as f:
                mix = json.load(f)
        else:
            mix = mix_arm(spec, os.path.join(folder, "selected"), mix_dir, tok, targets, runner, workers, beam_args)
            with open(mix_path, "w") as f:
                json.dump(mix, f, indent=2)
        run_key = _key({"model": spec.model, "train": spec.train, "steps": spec.max_steps, "tasks": spec.tasks,
                        "tasks_limit": spec.tasks_limit, "eval": eval_key})
        runs = {}
        for seed in spec.seeds:
            run_dir = os.path.join(folder, "runs", run_key, f"seed-{seed}")
            if not os.path.exists(os.path.join(run_dir, "results.json")):
                _say(log, f"arm {arm.name}: training seed {seed}")
                trained += 1
            runs[str(seed)] = train_seed(train_config(spec, mix_dir, run_dir, seed, n_target), run_dir, log)
        arms_out[arm.name] = {"folder": os.path.relpath(folder, output), "tokens": mix["realized_tokens"],
                              "trained_tokens": next(iter(runs.values()))["trained_tokens"], "selection": selection,
                              "definition": {"stages": arm.stages, "order_by": arm.order_by, "ascending": arm.ascending},
                              "runs": runs}
    result = summarize(spec, arms_out)
    result["trained_runs"] = trained
    result["seconds"] = round(time.time() - t_start, 1)
    with open(os.path.join(output, "ablate.json"), "w") as f:
        json.dump(result, f, indent=2)
    from curate.ablate.plot import plot_curves

    result["plot"] = plot_curves(result, os.path.join(output, "ablate.png"))
    return result


def summarize(spec: AblateSpec, arms: dict) -> dict:
    """Mean ± std per arm and metric, and the paired difference to the baseline with its 95% t-interval."""
    metrics = sorted({m for a in arms.values() for r in a["runs"].values() for m in r["metrics"]},
                     key=lambda m: (not m.startswith("loss/"), m))
    base = arms[spec.baseline]
    for name, a in arms.items():
        a["mean"], a["std"], a["diff"] = {}, {}, {}
        for m in metrics:
            per_seed = {s: r["metrics"][m] for s, r in a["runs"].items() if m in r["metrics"]}
            a["mean"][m], a["std"][m] = mean_std(list(per_seed.values()))
            if name != spec.baseline:
                b = {s: r["metrics"][m] for s, r in base["runs"].items() if m in r["metrics"]}
                a["diff"][m] = paired_ci(per_seed, b)
    return {"spec": spec.source_file, "baseline": spec.baseline, "budget_tokens": spec.budget_tokens,
            "seq_length": spec.seq_length, "seeds": spec.seeds, "steps": spec.max_steps, "metrics": metrics,
            "targets": list(spec.targets), "model": spec.model, "arms": arms}


def format_table(result: dict) -> str:
    """The terminal table: per metric, each arm's mean ± std and its paired difference to the baseline."""
    lines = [f"ablation: {len(result['arms'])} arms x {len(result['seeds'])} seeds, {result['budget_tokens']:,} tokens per "
             f"arm ({result['steps']} steps of {result['seq_length']}-token sequences); differences are arm - "
             f"{result['baseline']}, paired by seed, 95% t-interval (n-1 df)"]
    width = max(len(a) for a in result["arms"]) + 2
    for m in result["metrics"]:
        better = "lower" if any(x in m for x in LOWER_IS_BETTER) else "higher"
        lines.append("")
        lines.append(f"{m} ({better} is better)")
        lines.append(f"  {'arm':<{width}} {'tokens':>10}  {'mean ± std':>18}  difference to {result['baseline']} [95% CI]")
        for name, a in result["arms"].items():
            mean, std = a["mean"].get(m), a["std"].get(m)
            cell = f"{mean:.4f} ± {std:.4f}" if mean is not None else "-"
            d = a["diff"].get(m)
            if name == result["baseline"]:
                diff = "(baseline)"
            elif not d or d["lo"] is None:
                diff = f"{d['mean']:+.4f} (one seed: no interval)" if d else "-"
            else:
                verdict = "significant" if d["significant"] else "not significant"
                diff = f"{d['mean']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}] {verdict}"
            lines.append(f"  {name:<{width}} {a['tokens']:>10,}  {cell:>18}  {diff}")
    return "\n".join(lines)


def cli_main(args, beam_args) -> int:
    from curate.ablate.spec import load_ablate

    spec = load_ablate(args.spec)
    log = None if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    result = run_ablation(spec, args.output, runner=args.runner, workers=args.workers, beam_args=beam_args, log=log)
    print(format_table(result))
    print(f"\nwrote {os.path.join(os.path.abspath(args.output), 'ablate.json')}" +
          (f" and {result['plot']}" if result.get("plot") else "") +
          f" ({result['trained_runs']} runs trained now, {result['seconds']}s)")
    return 0
