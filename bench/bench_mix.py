"""Tokenize-and-pack benchmark: `curate mix` vs datatrove's DocumentTokenizer (+ DocumentTokenizerMerger).

Every job runs on the same >= 50 MB of real text (bench/corpus.py) with the SAME byte-level BPE
(32k vocabulary, trained once with curate.tokenizer.train_tokenizer on the corpus and cached under
bench/_work/mix/), each in its own process, one after the other, in this one run. Throughput is
corpus tokens (documents + one EOS each) per CPU-second of the job's process (user + sys of the
child and everything it waited for, from os.wait4), i.e. tokens/s per core; peak RSS comes from the
same rusage. The load average is printed before every measured run; the job order alternates
between repeats and the table shows the run with the least CPU time.

    python bench/bench_mix.py                       # ~5 minutes on 2 cores
    python bench/bench_mix.py --repeat 3 --json out.json
    python bench/bench_mix.py --profile             # also cProfile curate's mix in-process (one run)
    python bench/bench_mix.py --variants            # also time tokenizer call variants (batch size, _fast, threads)

Jobs:
  curate-mix          `curate mix SPEC --output DIR`: one domain (the corpus, max_epochs 1), one phase,
                      total_tokens = every token of the corpus, seq_length 2048, heldout 0, 1 local worker:
                      read jsonl, tokenize, hash, scratch Arrow; plan; select, shuffle, pack, write .bin/.idx
  datatrove-tokenize  JsonlReader -> DocumentTokenizer(tokenizer.json, eos_token, shuffle_documents=True),
                      tasks=1, workers=1: tokenize, write .ds, shuffle documents into a new .ds
  datatrove-merge     DocumentTokenizerMerger on that output (shuffles and merges into the final .ds)
  hf-tokenize         the floor: pyarrow.json.read_json + Tokenizer.encode_batch(1024 docs), ids -> numpy,
                      no output (what any tokenize step must at least spend)
  *-startup           curate-mix / datatrove-tokenize on 200 documents: the fixed cost per run
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORK = os.path.join(HERE, "_work", "mix")
sys.path.insert(0, HERE)
EOS = "<|endoftext|>"
SEQ_LENGTH = 2048
TINY_DOCS = 200


# ------------------------------------------------------------------------------------- setup


def ensure_tokenizer(paths: list[str]) -> str:
    """The cached byte-level BPE (trained on the whole corpus); returns its folder."""
    folder = os.path.join(WORK, "tokenizer")
    if not os.path.exists(os.path.join(folder, "tokenizer_config.json")):
        from curate.tokenizer import train_tokenizer

        t0 = time.perf_counter()
        tmp = folder + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        train_tokenizer(paths, tmp, vocab_size=32000)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
        print(f"trained the 32k byte-level BPE on the corpus in {time.perf_counter() - t0:.0f}s -> {folder}")
    return folder


def count_tokens(tok_folder: str, paths: list[str], cache_key: str) -> dict:
    """Independent count: documents with text, and sum over them of (tokens + 1 EOS). Cached."""
    from curate.tokenizer import load_tokenizer

    tok = load_tokenizer(tok_folder)
    cache = os.path.join(WORK, f"count-{cache_key}.json")
    key = {"sha256": tok.sha256, "files": [[os.path.basename(p), os.path.getsize(p)] for p in paths]}
    if os.path.exists(cache):
        with open(cache) as f:
            got = json.load(f)
        if got["key"] == key:
            return got
    docs = tokens = 0
    for p in paths:
        with open(p) as f:
            texts = [t for t in (json.loads(line).get("text") for line in f) if t]
        for i in range(0, len(texts), 1024):
            for e in tok.tokenizer.encode_batch_fast(texts[i:i + 1024], add_special_tokens=False):
                tokens += len(e.ids) + 1
        docs += len(texts)
    got = {"key": key, "documents": docs, "tokens_with_eos": tokens, "eos_id": tok.eos_id}
    with open(cache, "w") as f:
        json.dump(got, f)
    return got


def job_setup(corpus_glob: str) -> dict:
    paths = sorted(glob.glob(corpus_glob))
    os.makedirs(WORK, exist_ok=True)
    tok_folder = ensure_tokenizer(paths)
    tiny = os.path.join(WORK, "tiny", "tiny.jsonl")
    os.makedirs(os.path.dirname(tiny), exist_ok=True)
    with open(paths[0]) as src, open(tiny, "w") as dst:
        for _ in range(TINY_DOCS):
            dst.write(src.readline())
    return {"tokenizer": tok_folder, "tiny_path": tiny, "full": count_tokens(tok_folder, paths, "corpus"),
            "tiny": count_tokens(tok_folder, [tiny], "tiny")}


def write_spec(name: str, corpus_glob: str, tok_folder: str, total_tokens: int) -> str:
    path = os.path.join(WORK, f"spec-{name}.yaml")
    with open(path, "w") as f:
        f.write(f"tokenizer: '{tok_folder}'\nseq_length: {SEQ_LENGTH}\ntotal_tokens: {total_tokens}\nseed: 0\n"
                f"heldout_tokens: 0\ndomains:\n  web: {{path: '{corpus_glob}', max_epochs: 1}}\nweights: {{web: 1}}\n")
    return path


# ------------------------------------------------------------------------------ jobs (in a child)


def job_datatrove_tokenize(corpus_glob: str, out: str, tok_file: str) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.tokens import DocumentTokenizer

    folder, pattern = os.path.dirname(corpus_glob), os.path.basename(corpus_glob)
    LocalPipelineExecutor([JsonlReader(folder, glob_pattern=pattern),
                           DocumentTokenizer(os.path.join(out, "tokenized"), tokenizer_name_or_path=tok_file,
                                             eos_token=EOS, seed=0)],  # shuffle_documents=True is its default
                          logging_dir=os.path.join(out, "logs"), tasks=1, workers=1, skip_completed=False).run()
    return _ds_stats(os.path.join(out, "tokenized"))


def job_datatrove_merge(out: str) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.tokens import DocumentTokenizerMerger

    shutil.rmtree(os.path.join(out, "merged"), ignore_errors=True)
    LocalPipelineExecutor([DocumentTokenizerMerger(os.path.join(out, "tokenized"), os.path.join(out, "merged"),
                                                   save_filename="merged", seed=0, progress=False)],
                          logging_dir=os.path.join(out, "logs-merge"), tasks=1, workers=1, skip_completed=False).run()
    return _ds_stats(os.path.join(out, "merged"))


def _ds_stats(folder: str) -> dict:
    ds = sorted(glob.glob(os.path.join(folder, "*.ds")))
    return {"files": len(ds), "tokens_out": sum(os.path.getsize(p) for p in ds) // 2,  # uint16 tokens
            "docs_out": sum(os.path.getsize(p + ".index") for p in ds) // 8}


def job_hf_tokenize(corpus_glob: str, tok_file: str) -> dict:
    import numpy as np
    import pyarrow.json as pj
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tok_file)
    tokens = docs = 0
    for path in sorted(glob.glob(corpus_glob)):
        texts = pj.read_json(path).column("text").to_pylist()
        for i in range(0, len(texts), 1024):
            enc = tok.encode_batch([t for t in texts[i:i + 1024] if t], add_special_tokens=False)
            ids = np.fromiter((t for e in enc for t in e.ids), dtype=np.uint16)
            tokens += len(ids) + len(enc)
            docs += len(enc)
    return {"tokens_out": tokens, "docs_out": docs}


def job_variants(corpus_glob: str, tok_file: str, n_files: int = 2) -> dict:
    """Tokenization call variants on the first n_files of the corpus, timed in this process (CPU time)."""
    import itertools

    import numpy as np
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tok_file)
    texts = [json.loads(line)["text"] for p in sorted(glob.glob(corpus_glob))[:n_files] for line in open(p)]

    def variant(bs: int, fast: bool, conv: str):
        n = 0
        for i in range(0, len(texts), bs):
            batch = texts[i:i + bs]
            encs = (tok.encode_batch_fast if fast else tok.encode_batch)(batch, add_special_tokens=False)
            ids = [e.ids for e in encs]
            if conv == "genexpr":  # as curate's _Tokenize does
                np.fromiter((t for x in ids for t in x), dtype=np.uint16)
            elif conv == "chain":
                np.fromiter(itertools.chain.from_iterable(ids), dtype=np.uint16)
            n += sum(map(len, ids))
        return n

    out = {}
    for label, bs, fast, conv in [("encode_batch, 1024 docs/batch (curate today)", 1024, False, "genexpr"),
                                  ("encode_batch, 10000 docs/batch (datatrove's)", 10000, False, "genexpr"),
                                  ("encode_batch_fast, 1024", 1024, True, "genexpr"),
                                  ("encode_batch_fast, 10000", 10000, True, "genexpr"),
                                  ("encode_batch_fast, 10000, itertools.chain", 10000, True, "chain"),
                                  ("encode_batch, 1024 (again: drift check)", 1024, False, "genexpr")]:
        c0 = time.process_time()
        n = variant(bs, fast, conv)
        cpu = time.process_time() - c0
        out[label] = {"cpu_s": cpu, "tokens": n, "load1": os.getloadavg()[0]}
    return out


# ------------------------------------------------------------------------------------ measuring


def run_measured(name: str, argv: list[str]) -> dict:
    """Run argv as a child; CPU (user+sys) and peak RSS of that child alone, from os.wait4."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.pop("CURATE_PROGRESS_DIR", None)
    load = os.getloadavg()
    print(f"  load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} -> {name}", flush=True)
    log = os.path.join(WORK, f"{name}.log")
    with open(log, "w") as fh:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    with open(log) as fh:
        text = fh.read()
    if proc.returncode != 0:
        raise RuntimeError(f"job {name} failed (exit {proc.returncode}):\n{text[-4000:]}")
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "user_s": ru.ru_utime, "sys_s": ru.ru_stime,
            "max_rss_mb": ru.ru_maxrss / 1024, "load1": load[0], "log": text}


def run_curate(name: str, spec: str) -> dict:
    out = os.path.join(WORK, name)
    shutil.rmtree(out, ignore_errors=True)
    curate = os.path.join(os.path.dirname(sys.executable), "curate")
    argv = [curate, "mix", spec, "--output", out] if os.path.exists(curate) else \
        [sys.executable, "-m", "curate.cli", "mix", spec, "--output", out]
    r = run_measured(name, argv)
    with open(os.path.join(out, "manifest.json")) as f:
        m = json.load(f)
    ph, dom = m["phases"][0], m["domains"]["web"]
    bins = glob.glob(os.path.join(out, "**", "*.bin"), recursive=True)
    r.update(tokens_out=ph["realized_tokens"], packed_tokens=ph["packed_tokens"], sequences=m["total_sequences"],
             docs_out=dom["documents_tokenized"], available=dom["available_tokens"],
             bin_tokens=sum(os.path.getsize(p) for p in bins) // 2)
    r.pop("log")
    return r


def run_child(name: str, job: str, corpus_glob: str, out: str, tok_file: str, clean: bool = True) -> dict:
    if clean:
        shutil.rmtree(out, ignore_errors=True)
    r = run_measured(name, [sys.executable, __file__, "--job", job, "--corpus", corpus_glob, "--out", out,
                            "--tok", tok_file])
    r.update(json.loads(r.pop("log").strip().splitlines()[-1]))
    return r


def profile_curate(spec_path: str, top: int = 30) -> dict:
    """cProfile of run_mix in this process (Beam's FnApiRunner runs the bundles on this thread)."""
    import cProfile
    import pstats

    from curate.mix.pipeline import run_mix
    from curate.mix.spec import load_spec

    out = os.path.join(WORK, "curate-profile")
    shutil.rmtree(out, ignore_errors=True)
    prof = cProfile.Profile()
    c0, t0 = time.process_time(), time.perf_counter()
    prof.enable()
    run_mix(load_spec(spec_path), out)
    prof.disable()
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    st = pstats.Stats(prof)
    rows = []
    for (file, line, fn), (cc, nc, tt, ct, _) in st.stats.items():
        rows.append({"func": f"{os.path.basename(file)}:{line}:{fn}", "file": file, "calls": nc, "tottime": tt,
                     "cumtime": ct})
    total = sum(r["tottime"] for r in rows)

    def cum(pred) -> float:
        return max((r["cumtime"] for r in rows if pred(r)), default=0.0)

    def tot(pred) -> float:
        return sum(r["tottime"] for r in rows if pred(r))

    # attribution: cumulative time of the curate functions that do each part of the work; the two
    # process() methods of the mix DoFns share a name, so tell them apart by line number
    procs = sorted((r for r in rows if r["func"].endswith(":process") and r["file"].endswith("mix/pipeline.py")),
                   key=lambda r: int(r["func"].split(":")[1]))
    parts = {
        "pass 1 DoFn (_Tokenize.process), of which:": procs[0]["cumtime"] if procs else 0.0,
        "  encode_batch (HF tokenizers + Encoding.ids)": cum(lambda r: r["func"].endswith(":encode_batch")
                                                           and r["file"].endswith("curate/tokenizer.py")),
        "  ids -> numpy (np.fromiter generators)": tot(lambda r: "<genexpr>" in r["func"]
                                                          and r["file"].endswith("mix/pipeline.py")),
        "read jsonl (read_shard)": cum(lambda r: r["func"].endswith(":read_shard") and r["file"].endswith("readers.py")),
        "select (_Select.process)": procs[1]["cumtime"] if len(procs) > 1 else 0.0,
        "pack (pack)": cum(lambda r: r["func"].endswith(":pack") and r["file"].endswith("mix/pipeline.py")),
        "write .bin/.idx (write_indexed)": cum(lambda r: r["func"].endswith(":write_indexed")),
        "run_mix (everything)": cum(lambda r: r["func"].endswith(":run_mix")),
    }
    print(f"\ncProfile of curate mix in-process: {cpu:.1f} CPU-s, {wall:.1f} s wall, "
          f"{total:.1f} s profiled on this thread (native tokenizer threads not included)")
    for k, v in parts.items():
        print(f"  {k:48s} {v:7.2f} s  {100 * v / max(total, 1e-9):5.1f}%")
    print(f"\n  top {top} functions by own time:")
    for r in sorted(rows, key=lambda r: -r["tottime"])[:top]:
        print(f"  {r['tottime']:7.2f} s own {r['cumtime']:7.2f} s cum {r['calls']:>9,}  {r['func']}")
    return {"cpu_s": cpu, "wall_s": wall, "profiled_s": total, "parts": parts,
            "top": [{k: r[k] for k in ("func", "calls", "tottime", "cumtime")}
                    for r in sorted(rows, key=lambda r: -r["tottime"])[:top]]}


# ------------------------------------------------------------------------------------------ main


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--job")
    ap.add_argument("--corpus")
    ap.add_argument("--out")
    ap.add_argument("--tok")
    ap.add_argument("--min-mb", type=float, default=50)
    ap.add_argument("--repeat", type=int, default=2, help="runs per job (order alternates); the table shows the least CPU")
    ap.add_argument("--no-floor", action="store_true", help="skip the hf-tokenize floor job")
    ap.add_argument("--profile", action="store_true", help="also cProfile one curate mix in-process")
    ap.add_argument("--variants", action="store_true",
                    help="also time tokenizer call variants (batch size, encode_batch_fast, 1 vs all rayon threads)")
    ap.add_argument("--json", help="write all measurements here")
    a = ap.parse_args()
    if a.job:
        jobs = {
            "datatrove-tokenize": lambda: job_datatrove_tokenize(a.corpus, a.out, a.tok),
            "datatrove-merge": lambda: job_datatrove_merge(a.out),
            "hf-tokenize": lambda: job_hf_tokenize(a.corpus, a.tok),
            "setup": lambda: job_setup(a.corpus),
            "variants": lambda: job_variants(a.corpus, a.tok),
            "profile": lambda: profile_curate(a.out),
        }
        print(json.dumps(jobs[a.job]()))
        return

    from corpus import build

    paths = build(a.min_mb)
    corpus_dir = os.path.dirname(paths[0])
    corpus_glob = os.path.join(corpus_dir, "*.jsonl")
    mb = sum(os.path.getsize(p) for p in paths) / 1e6
    os.makedirs(WORK, exist_ok=True)
    # setup in a child: a parent that held the corpus in memory would lend its RSS to every child's
    # ru_maxrss (Linux records the pre-exec high-water mark of the forked copy)
    proc = subprocess.run([sys.executable, __file__, "--job", "setup", "--corpus", corpus_glob], cwd=ROOT,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"setup failed:\n{proc.stderr[-4000:]}")
    lines = proc.stdout.strip().splitlines()
    for line in lines[:-1]:
        print(line)  # e.g. "trained the 32k byte-level BPE ..."
    setup = json.loads(lines[-1])
    tok_folder, full, small, tiny = setup["tokenizer"], setup["full"], setup["tiny"], setup["tiny_path"]
    tok_file = os.path.join(tok_folder, "tokenizer.json")
    spec_full = write_spec("full", corpus_glob, tok_folder, full["tokens_with_eos"])
    spec_tiny = write_spec("tiny", tiny, tok_folder, small["tokens_with_eos"])
    n_tok, n_docs = full["tokens_with_eos"], full["documents"]
    print(f"corpus: {len(paths)} jsonl files, {mb:.1f} MB, {n_docs:,} documents, {n_tok:,} tokens incl. one EOS per "
          f"document (32k byte-level BPE, {tok_file})")
    print(f"CPUs: {os.cpu_count()}; repeats: {a.repeat} (order alternates); numbers: the run with the least CPU time")

    dt_out = os.path.join(WORK, "datatrove")
    dt_tiny = os.path.join(WORK, "datatrove-tiny")
    units = [
        ("curate", lambda: {"curate-mix": run_curate("curate-mix", spec_full)}),
        ("datatrove", lambda: {"datatrove-tokenize": run_child("datatrove-tokenize", "datatrove-tokenize", corpus_glob, dt_out, tok_file),
                               "datatrove-merge": run_child("datatrove-merge", "datatrove-merge", corpus_glob, dt_out, tok_file,
                                                            clean=False)}),
    ]
    if not a.no_floor:
        units.append(("floor", lambda: {"hf-tokenize": run_child("hf-tokenize", "hf-tokenize", corpus_glob, dt_out + "-floor", tok_file)}))
    units += [
        ("curate-startup", lambda: {"curate-startup": run_curate("curate-startup", spec_tiny)}),
        ("datatrove-startup", lambda: {"datatrove-startup": run_child("datatrove-startup", "datatrove-tokenize", tiny, dt_tiny, tok_file)}),
    ]
    runs: dict[str, list[dict]] = {}
    for rep in range(a.repeat):
        order = units if rep % 2 == 0 else units[::-1]
        print(f"repeat {rep + 1}/{a.repeat}: {', '.join(u for u, _ in order)}", flush=True)
        for _, fn in order:
            for name, r in fn().items():
                r["repeat"] = rep
                runs.setdefault(name, []).append(r)
    best = {name: min(rs, key=lambda r: r["cpu_s"]) for name, rs in runs.items()}
    dt_sum = {k: best["datatrove-tokenize"][k] + best["datatrove-merge"][k] for k in ("wall_s", "cpu_s")}
    dt_sum.update(max_rss_mb=max(best["datatrove-tokenize"]["max_rss_mb"], best["datatrove-merge"]["max_rss_mb"]),
                  tokens_out=best["datatrove-merge"]["tokens_out"], docs_out=best["datatrove-merge"]["docs_out"])
    table = dict(best)
    table["datatrove tok+merge"] = dt_sum

    print(f"\n{'job':20s} {'wall s':>7s} {'cpu s':>7s} {'cpu range':>13s} {'ktok/cpu-s':>10s} {'MB/cpu-s':>8s} "
          f"{'peak RSS':>9s} {'tokens out':>12s} {'docs out':>8s}")
    for name in ("curate-mix", "datatrove-tokenize", "datatrove-merge", "datatrove tok+merge", "hf-tokenize",
                 "curate-startup", "datatrove-startup"):
        if name not in table:
            continue
        r = table[name]
        cpus = [x["cpu_s"] for x in runs.get(name, [])]
        rng = f"{min(cpus):.1f}-{max(cpus):.1f}" if cpus else ""
        if name.endswith("startup"):
            print(f"{name:20s} {r['wall_s']:7.2f} {r['cpu_s']:7.2f} {rng:>13s} {'(' + str(TINY_DOCS) + ' docs: fixed cost)':>19s} "
                  f"{r['max_rss_mb']:7.0f}MB {r['tokens_out']:12,} {r['docs_out']:8,}")
            continue
        rate = "" if name == "datatrove-merge" else f"{n_tok / r['cpu_s'] / 1e3:10,.0f}"
        mbr = "" if name == "datatrove-merge" else f"{mb / r['cpu_s']:8.2f}"
        print(f"{name:20s} {r['wall_s']:7.2f} {r['cpu_s']:7.2f} {rng:>13s} {rate:>10s} {mbr:>8s} {r['max_rss_mb']:7.0f}MB "
              f"{r['tokens_out']:12,} {r['docs_out']:8,}")

    cm, dtt = best["curate-mix"], best["datatrove-tokenize"]
    ratio_tok = dtt["cpu_s"] / cm["cpu_s"]
    ratio_all = dt_sum["cpu_s"] / cm["cpu_s"]
    print(f"\ntokens per CPU-second, curate mix / datatrove: {ratio_tok:.2f}x vs DocumentTokenizer alone, "
          f"{ratio_all:.2f}x vs DocumentTokenizer + DocumentTokenizerMerger  (>1: curate faster)")
    cs, ds = best["curate-startup"], best["datatrove-startup"]
    marg_c = (n_tok / (cm["cpu_s"] - cs["cpu_s"])) if cm["cpu_s"] > cs["cpu_s"] else float("nan")
    marg_d = (n_tok / (dtt["cpu_s"] - ds["cpu_s"])) if dtt["cpu_s"] > ds["cpu_s"] else float("nan")
    print(f"fixed start-up (a {TINY_DOCS}-document run): curate {cs['cpu_s']:.1f} CPU-s, datatrove {ds['cpu_s']:.1f} CPU-s; "
          f"marginal rate beyond it: curate {marg_c / 1e3:,.0f} ktok/cpu-s, datatrove tokenize {marg_d / 1e3:,.0f} ktok/cpu-s "
          f"({marg_c / marg_d:.2f}x)")
    if "hf-tokenize" in best:
        fl = best["hf-tokenize"]
        print(f"floor (read + encode_batch only): {fl['cpu_s']:.1f} CPU-s = {100 * fl['cpu_s'] / cm['cpu_s']:.0f}% of curate mix, "
              f"{100 * fl['cpu_s'] / dtt['cpu_s']:.0f}% of datatrove tokenize")

    # correctness of the counts
    checks = {
        "curate available == corpus tokens+EOS": cm["available"] == n_tok,
        "curate realized == corpus tokens+EOS": cm["tokens_out"] == n_tok,
        "curate documents == corpus documents": cm["docs_out"] == n_docs,
        "curate .bin tokens == packed tokens": cm["bin_tokens"] == cm["packed_tokens"],
        "datatrove tokenize tokens == corpus tokens+EOS": dtt["tokens_out"] == n_tok,
        "datatrove merged tokens == corpus tokens+EOS": best["datatrove-merge"]["tokens_out"] == n_tok,
        "datatrove documents == corpus documents": dtt["docs_out"] == n_docs,
    }
    print(f"tokens: corpus {n_tok:,}; curate realized {cm['tokens_out']:,}, packed into {cm['sequences']:,} x {SEQ_LENGTH} = "
          f"{cm['packed_tokens']:,} (the tail under one sequence, {cm['tokens_out'] - cm['packed_tokens']:,}, is dropped); "
          f"datatrove {dtt['tokens_out']:,} ({best['datatrove-merge']['tokens_out']:,} merged)")
    for k, ok in checks.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {k}")

    variants = None
    if a.variants:
        variants = {}
        print(f"\ntokenizer call variants on 2 of the {len(paths)} files, CPU-s of the whole process (rayon threads included):")
        for threads in ("all", "1"):
            env = dict(os.environ, HF_HUB_OFFLINE="1")
            if threads == "1":
                env["RAYON_NUM_THREADS"] = "1"
            load = os.getloadavg()
            print(f"  load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} -> variants, rayon threads: {threads}", flush=True)
            proc = subprocess.run([sys.executable, __file__, "--job", "variants", "--corpus", corpus_glob, "--tok", tok_file],
                                  cwd=ROOT, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                raise RuntimeError(f"variants failed:\n{proc.stderr[-4000:]}")
            variants[threads] = json.loads(proc.stdout.strip().splitlines()[-1])
        labels = list(variants["all"])
        print(f"  {'variant':46s} {'threads: all':>20s} {'threads: 1':>20s}")
        for label in labels:
            cells = [f"{v[label]['cpu_s']:6.2f}s {v[label]['tokens'] / v[label]['cpu_s'] / 1e3:5.0f}kt/s" for v in variants.values()]
            print(f"  {label:46s} {cells[0]:>20s} {cells[1]:>20s}")

    prof = None
    if a.profile:
        load = os.getloadavg()
        print(f"\n  load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} -> cProfile of curate mix (in a child)", flush=True)
        proc = subprocess.run([sys.executable, __file__, "--job", "profile", "--out", spec_full], cwd=ROOT,
                              capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
        if proc.returncode != 0:
            raise RuntimeError(f"profile failed:\n{proc.stderr[-4000:]}")
        lines = proc.stdout.strip().splitlines()
        print("\n".join(lines[:-1]))
        prof = json.loads(lines[-1])
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"corpus": {"files": len(paths), "mb": mb, "documents": n_docs, "tokens_with_eos": n_tok,
                                  "tokenizer": tok_file},
                       "cpus": os.cpu_count(), "repeat": a.repeat, "runs": runs, "best": table,
                       "ratios": {"curate_over_datatrove_tokenize": ratio_tok, "curate_over_datatrove_tok_merge": ratio_all,
                                  "marginal_curate_over_datatrove_tokenize": marg_c / marg_d},
                       "checks": checks, "profile": prof, "variants": variants}, f, indent=2, default=float)
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
