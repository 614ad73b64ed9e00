"""The ProX refiner loop on real web text, offline: rule-teacher annotations -> fine-tuned refiner ->
agreement with the teacher on held-out documents (per line), and throughput of the transformers backend.

Used by ``scorers/build-refiner.sh``; each subcommand writes one output and is a step of that script:

    python bench/refine_loop.py prep  --pool DIR [DIR...] --out W      # W/docs-{train,heldout}.jsonl, annotations
    python bench/refine_loop.py agree --model M --docs W/docs-heldout.jsonl --json W/agree-M.json ...
    python bench/refine_loop.py report W                                 # the figures, as markdown

Split: a document is held out when ``sha1(id) mod 100 < 20`` (stable, 80/20).
Annotations: ``RuleTeacher().annotate(texts, level="chunk")`` (C4 line rules -> ``remove_lines``),
one ``{"id", "text", "program"}`` record per training document.

Agreement: the held-out documents go through the ``prox_chunk`` stage itself
(``curate.refine.stages.ProxChunk``: the recipe stage's ``setup()`` and ``map()``, the code a recipe
``- prox_chunk: {...}`` runs), in batches; its raw per-chunk outputs are recorded as well (by wrapping
the stage's ``_generate``) so invalid calls can be counted: the stage's ``prox_chunk_program`` column
holds only the calls that were applied. Per line (``text.split("\\n")``), "removed" by the refiner =
covered by a valid ``remove_lines`` call of its combined program (parsed with
``curate.refine.program.parse_program(level="chunk", n_lines=...)``), whatever the executor then
decided for the whole document; "removed" by the teacher = in ``RuleTeacher.removed_ranges``.
Reported: accuracy, precision, recall, F1 of "removed" over all lines and over non-blank lines,
documents with at least one invalid call, actions of the stage, docs/s and chunks/s (wall time of
``map()``, model loading excluded).
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def heldout(doc_id: str, percent: int = 20) -> bool:
    return int(hashlib.sha1(doc_id.encode("utf-8")).hexdigest(), 16) % 100 < percent


def read_pool(dirs: list[str]) -> list[dict]:
    import pyarrow.parquet as pq

    docs = []
    for d in dirs:
        files = sorted(glob.glob(os.path.join(d, "data", "*.parquet"))) if os.path.isdir(d) else [d]
        for f in files:
            t = pq.read_table(f, columns=["id", "text"])
            docs += [{"id": i, "text": x} for i, x in zip(t.column("id").to_pylist(), t.column("text").to_pylist()) if x]
    docs.sort(key=lambda r: r["id"])
    return docs


def write_jsonl(path: str, rows) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def read_jsonl(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def cmd_prep(a) -> None:
    from curate.refine.teacher import RuleTeacher

    docs = read_pool(a.pool)
    if a.max_chars:
        for d in docs:  # cut at a line boundary so the teacher's line numbers stay whole lines
            if len(d["text"]) > a.max_chars:
                cut = d["text"].rfind("\n", 0, a.max_chars)
                d["text"] = d["text"][: cut if cut > 0 else a.max_chars]
    os.makedirs(a.out, exist_ok=True)
    train = [d for d in docs if not heldout(d["id"])]
    held = [d for d in docs if heldout(d["id"])]
    teacher = RuleTeacher()
    stats = {"documents": len(docs), "train": len(train), "heldout": len(held), "max_chars": a.max_chars}
    for name, part in (("train", train), ("heldout", held)):
        progs = teacher.annotate([d["text"] for d in part], level="chunk")
        write_jsonl(os.path.join(a.out, f"docs-{name}.jsonl"), part)
        write_jsonl(os.path.join(a.out, f"annotations-{name}.jsonl"),
                    [{"id": d["id"], "text": d["text"], "program": p} for d, p in zip(part, progs)])
        lines = sum(d["text"].count("\n") + 1 for d in part)
        removed = sum(b - a_ + 1 for d in part for a_, b in teacher.removed_ranges([d["text"]])[0])
        stats[f"{name}_lines"] = lines
        stats[f"{name}_teacher_removed_lines"] = removed
        stats[f"{name}_docs_with_removal"] = sum(1 for p in progs if p)
    with open(os.path.join(a.out, "prep.json"), "w") as f:
        json.dump(stats, f, indent=1)
    print(json.dumps(stats))


def removed_lines_of(program: str, n_lines: int) -> tuple[set[int], int]:
    """(lines covered by valid remove_lines calls, number of invalid calls)."""
    from curate.refine.program import parse_program

    p = parse_program(program, level="chunk", n_lines=n_lines)
    out: set[int] = set()
    for c in p.calls:
        if c.name == "remove_lines":
            out.update(range(c.arg("line_start"), c.arg("line_end") + 1))
    return out, len(p.errors)


def prf(tp: int, fp: int, fn: int, tn: int) -> dict:
    n = tp + fp + fn + tn
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {"lines": n, "tp": tp, "fp": fp, "fn": fn, "tn": tn, "accuracy": round((tp + tn) / n, 4) if n else None,
            "precision": round(prec, 4), "recall": round(rec, 4), "f1": round(f1, 4),
            "teacher_removed_share": round((tp + fn) / n, 4) if n else None,
            "refiner_removed_share": round((tp + fp) / n, 4) if n else None}


def cmd_agree(a) -> None:
    import numpy as np
    import pyarrow as pa
    import torch

    from curate import schema as S
    from curate.refine.prompts import combine_chunk_programs
    from curate.refine.stages import ProxChunk
    from curate.refine.teacher import RuleTeacher

    if a.threads:
        torch.set_num_threads(a.threads)
    docs = read_jsonl(a.docs)[a.offset:][: a.limit or None]
    stage = ProxChunk(model=a.model, backend="transformers", batch_size=a.batch_size,
                      max_chunk_tokens=a.max_chunk_tokens, max_new_tokens=a.max_new_tokens)
    t0 = time.time()
    stage.setup()
    load_s = time.time() - t0
    raw: list[str] = []
    orig = stage._generate

    def recording(prompts, max_new_tokens):
        outs = orig(prompts, max_new_tokens)
        raw.extend(outs)
        return outs

    stage._generate = recording
    teacher = RuleTeacher()
    per_doc = []
    gen_s = 0.0
    for b in range(0, len(docs), a.docs_per_batch):
        part = docs[b:b + a.docs_per_batch]
        batch = S.with_key(pa.RecordBatch.from_pydict({"id": pa.array([d["id"] for d in part], pa.string()),
                                                       "text": pa.array([d["text"] for d in part], pa.string())}),
                           "agree")
        start = len(raw)
        from curate.refine.prompts import chunk_lines
        n_chunks = [len(chunk_lines(d["text"], stage._tok, a.max_chunk_tokens)) for d in part]
        t1 = time.time()
        res = stage.map(batch)
        gen_s += time.time() - t1
        _text, reasons, cols = res
        outs = raw[start:]
        assert len(outs) == sum(n_chunks), (len(outs), n_chunks)
        pos = 0
        for d, k, reason, action, applied in zip(part, n_chunks, list(reasons), cols["prox_chunk_action"].to_pylist(),
                                                 cols["prox_chunk_program"].to_pylist()):
            program = combine_chunk_programs(outs[pos:pos + k])
            chunk_outs = outs[pos:pos + k]
            pos += k
            n_lines = d["text"].count("\n") + 1
            ref, n_invalid = removed_lines_of(program, n_lines)
            tea = {i for s, e in teacher.removed_ranges([d["text"]])[0] for i in range(s, e + 1)}
            per_doc.append({"id": d["id"], "chunks": k, "n_lines": n_lines, "refiner": sorted(ref), "teacher": sorted(tea),
                            "n_invalid": n_invalid, "action": action, "reason": reason, "applied": applied,
                            "raw": chunk_outs})
        print(f"  {len(per_doc)}/{len(docs)} docs, {gen_s:.0f}s", file=sys.stderr, flush=True)
    # per line
    counts = {"all": [0, 0, 0, 0], "nonblank": [0, 0, 0, 0]}
    for d, r in zip(docs, per_doc):
        ref, tea = set(r["refiner"]), set(r["teacher"])
        for i, line in enumerate(d["text"].split("\n")):
            x, y = i in ref, i in tea
            k = 0 if (x and y) else 1 if x else 2 if y else 3
            counts["all"][k] += 1
            if line.strip():
                counts["nonblank"][k] += 1
    actions: dict[str, int] = {}
    for r in per_doc:
        actions[r["action"]] = actions.get(r["action"], 0) + 1
    chunks = sum(r["chunks"] for r in per_doc)
    exact = sum(1 for r in per_doc if r["refiner"] == r["teacher"])
    out = {"model": a.model, "docs": len(per_doc), "chunks": chunks, "max_chunk_tokens": a.max_chunk_tokens,
           "batch_size": a.batch_size, "threads": torch.get_num_threads(), "load_s": round(load_s, 2),
           "generate_s": round(gen_s, 2), "docs_per_s": round(len(per_doc) / gen_s, 4),
           "chunks_per_s": round(chunks / gen_s, 4),
           "per_line_all": prf(*counts["all"]), "per_line_nonblank": prf(*counts["nonblank"]),
           "docs_with_invalid_program": sum(1 for r in per_doc if r["n_invalid"]),
           "share_docs_invalid_program": round(sum(1 for r in per_doc if r["n_invalid"]) / max(1, len(per_doc)), 4),
           "docs_line_sets_equal_teacher": exact, "actions": actions}
    with open(a.json + ".docs.jsonl", "w", encoding="utf-8") as f:
        for r in per_doc:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    with open(a.json, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out))


def cmd_heldout_pool(a) -> None:
    """The held-out documents as a pool (W/pool-heldout.jsonl) and the refiner's whole-document programs for them
    (W/programs-heldout.jsonl: the agreement step's per-chunk outputs, combined as prox_chunk combines them), for a
    reduced closed loop whose refined arm is ``prox_apply`` (same executor and ProX rules as prox_chunk)."""
    from curate.refine.prompts import combine_chunk_programs

    w = a.work
    docs = read_jsonl(os.path.join(w, "docs-heldout.jsonl"))
    progs = {}
    for f in sorted(glob.glob(os.path.join(w, "agree-refiner-*.json.docs.jsonl"))):
        for r in read_jsonl(f):
            progs[r["id"]] = combine_chunk_programs(r["raw"])
    missing = [d["id"] for d in docs if d["id"] not in progs]
    if missing:
        raise SystemExit(f"no refiner program for {len(missing)} held-out documents (run the agreement step on all)")
    write_jsonl(os.path.join(w, "pool-heldout.jsonl"), [{"id": d["id"], "text": d["text"]} for d in docs])
    write_jsonl(os.path.join(w, "programs-heldout.jsonl"), [{"id": d["id"], "program": progs[d["id"]]} for d in docs])
    print(f"{len(docs)} documents, {sum(len(d['text']) for d in docs)} characters")


def cmd_report(a) -> None:
    """The figures of a build folder, as markdown."""
    w = os.path.join(a.out, "work")
    out = []
    prep = json.load(open(os.path.join(w, "prep.json")))
    out.append(f"Documents: {prep['documents']} (train {prep['train']}, held out {prep['heldout']}); teacher removes "
               f"{prep['train_teacher_removed_lines']}/{prep['train_lines']} train lines, "
               f"{prep['heldout_teacher_removed_lines']}/{prep['heldout_lines']} held-out lines.")
    for name in ("refiner", "refiner-more"):
        rj = os.path.join(a.out, name, "refiner.json")
        if not os.path.exists(rj):
            continue
        r = json.load(open(rj))
        ls = r["losses"]
        k = max(1, len(ls) // 10)
        out.append(f"{name}: {r['base_model']} fine-tuned {r['steps']} steps x batch {r['batch_size']} "
                   f"(lr {r['lr']}, {r['examples']} chunk examples available, {r['skipped_too_long']} too long), "
                   f"{r['seconds']:.0f} s ({r['seconds'] / r['steps']:.1f} s/step); loss first {k} steps "
                   f"{sum(ls[:k]) / k:.3f} -> last {k} steps {sum(ls[-k:]) / k:.3f}.")
    rows = []
    for f in sorted(glob.glob(os.path.join(w, "agree-*.json"))):
        g = json.load(open(f))
        parts = ("per_line_all",) if "refiner-" in f else ("per_line_all", "per_line_nonblank")
        for part in parts:
            m = g[part]
            rows.append(f"| {os.path.basename(f)[6:-5]} | {part[9:]} | {g['docs']} | {m['lines']} | {m['accuracy']} | "
                        f"{m['precision']} | {m['recall']} | {m['f1']} | {m['teacher_removed_share']} | "
                        f"{m['refiner_removed_share']} | {g['share_docs_invalid_program']} | {g['docs_per_s']} | "
                        f"{g['chunks_per_s']} |")
    runs = [json.load(open(f)) for f in sorted(glob.glob(os.path.join(w, "agree-refiner-*.json")))]
    for part in ("per_line_all", "per_line_nonblank") if len(runs) > 1 else ():
        pooled = [sum(g[part][k] for g in runs) for k in ("tp", "fp", "fn", "tn")]
        m = prf(*pooled)
        docs = sum(g["docs"] for g in runs)
        inv = sum(g["docs_with_invalid_program"] for g in runs)
        secs = sum(g["generate_s"] for g in runs)
        chunks = sum(g["chunks"] for g in runs)
        rows.append(f"| refiner, all parts | {part[9:]} | {docs} | {m['lines']} | {m['accuracy']} | {m['precision']} | "
                    f"{m['recall']} | {m['f1']} | {m['teacher_removed_share']} | {m['refiner_removed_share']} | "
                    f"{round(inv / docs, 4)} | {round(docs / secs, 4)} | {round(chunks / secs, 4)} |")
    if rows:
        out.append("")
        out.append("| model | lines | docs | n lines | accuracy | precision | recall | F1 | teacher removed | "
                   "refiner removed | docs w/ invalid call | docs/s | chunks/s |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        out += rows
    print("\n".join(out))


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("prep")
    s.add_argument("--pool", nargs="+", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--max-chars", type=int, default=0)
    s = sub.add_parser("agree")
    s.add_argument("--model", required=True)
    s.add_argument("--docs", required=True)
    s.add_argument("--json", required=True)
    s.add_argument("--limit", type=int, default=0)
    s.add_argument("--offset", type=int, default=0, help="skip the first OFFSET documents")
    s.add_argument("--batch-size", type=int, default=8)
    s.add_argument("--docs-per-batch", type=int, default=8)
    s.add_argument("--max-chunk-tokens", type=int, default=256)
    s.add_argument("--max-new-tokens", type=int, default=None)
    s.add_argument("--threads", type=int, default=0)
    s = sub.add_parser("heldout-pool")
    s.add_argument("work")
    s = sub.add_parser("report")
    s.add_argument("out")
    a = p.parse_args(argv)
    {"prep": cmd_prep, "agree": cmd_agree, "heldout-pool": cmd_heldout_pool, "report": cmd_report}[a.cmd](a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
