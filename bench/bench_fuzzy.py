"""Fuzzy dedup benchmarks: curate's fuzzy_dedup vs datatrove's MinHash stages and datasketch's MinHashLSH.

    python bench/bench_fuzzy.py quality   # P/R/F1 on ../shared/data/neardup (all, and jaccard_to_truth >= 0.7)
    python bench/bench_fuzzy.py speed     # signatures vs datasketch MinHash.bulk; end to end vs datatrove (>= 50 MB)
    python bench/bench_fuzzy.py scale     # peak memory of the fuzzy dedup run at 1x, 4x, 16x input

Every comparison runs the competitors on the same input in the same run, each job in its own
process (CPU time and peak RSS of that process tree are measured by the parent).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
WORK = os.path.join(HERE, "_work", "fuzzy")
sys.path.insert(0, HERE)
PUNCT = re.compile(r"[^\w\s]+")


# ------------------------------------------------------------------------------ the three methods


def run_curate(jsonl_glob: str, out: str, annotate: bool = True, workers: int = 1, **params) -> dict[str, int]:
    """id -> predicted cluster size (1 = no cluster)."""
    import pyarrow.parquet as pq

    from curate.core.recipe import parse_recipe
    from curate.core.runner import run_recipe

    p = ", ".join(f"{k}: {v}" for k, v in params.items())
    mode = "annotate" if annotate else "drop"
    recipe = parse_recipe(f"input: {{path: '{jsonl_glob}', unique_ids: false}}\noutput: {out}\n"
                          f"stages:\n  - fuzzy_dedup: {{mode: {mode}{', ' + p if p else ''}}}\n", "<bench>")
    run_recipe(recipe, workers=workers)
    if not annotate:
        return {}
    t = pq.read_table(sorted(glob.glob(os.path.join(out, "data", "*.parquet"))), columns=["id", "dup_cluster_size"])
    return {i: (s or 1) for i, s in zip(t.column("id").to_pylist(), t.column("dup_cluster_size").to_pylist())}


def run_datatrove(jsonl_glob: str, out: str, seed: int = 1) -> dict[str, int]:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                                   MinhashDedupFilter, MinhashDedupSignature)
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    def adapter(self, data: dict, path: str, id_in_file) -> dict:
        return {"text": data["text"], "id": data["id"], "metadata": {}}

    folder, pattern = os.path.dirname(jsonl_glob), os.path.basename(jsonl_glob)
    from datatrove.utils.hashing import HashConfig

    # datatrove's default xxhash config passes str to xxhash 4, which refuses it: use its sha1 hashing
    cfg = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8, seed=seed,
                        hash_config=HashConfig(hash_fc="sha1", precision=64))
    kw = dict(tasks=1, workers=1, skip_completed=False)
    sigs, buckets, clusters = (os.path.join(out, x) for x in ("sigs", "buckets", "clusters"))
    reader = lambda: JsonlReader(folder, glob_pattern=pattern, adapter=adapter)  # noqa: E731
    LocalPipelineExecutor([reader(), MinhashDedupSignature(sigs, config=cfg)], logging_dir=f"{out}/l1", **kw).run()
    LocalPipelineExecutor([MinhashDedupBuckets(sigs, buckets, config=cfg)], logging_dir=f"{out}/l2",
                          **dict(kw, tasks=cfg.num_buckets)).run()
    LocalPipelineExecutor([MinhashDedupCluster(buckets, clusters, config=cfg, save_cluster_size=True)],
                          logging_dir=f"{out}/l3", **kw).run()
    LocalPipelineExecutor([reader(), MinhashDedupFilter(clusters, load_cluster_sizes=True,
                                                        exclusion_writer=JsonlWriter(f"{out}/removed")),
                           JsonlWriter(f"{out}/kept")], logging_dir=f"{out}/l4", **kw).run()
    sizes = {}
    for part in ("kept", "removed"):
        for f in glob.glob(os.path.join(out, part, "*.jsonl*")):
            import gzip

            with (gzip.open(f, "rt") if f.endswith(".gz") else open(f)) as fh:
                for line in fh:
                    r = json.loads(line)
                    sizes[r["id"]] = max(2 if part == "removed" else 1, r["metadata"].get("minhash_cluster_size", 1))
    return sizes


def _shingles(text: str, n: int = 5) -> list[bytes]:
    import unicodedata

    words = PUNCT.sub(" ", unicodedata.normalize("NFKC", text).lower()).split()
    if len(words) < n:
        return [" ".join(words).encode()] if words else []
    return [" ".join(words[i : i + n]).encode() for i in range(len(words) - n + 1)]


def datasketch_signatures(texts: list[str], num_perm: int = 128, seed: int = 1):
    from datasketch import MinHash

    sets = [_shingles(t) for t in texts]
    return MinHash.bulk(sets, num_perm=num_perm, seed=seed), sets


def run_datasketch(jsonl_glob: str, threshold: float = 0.7, num_perm: int = 128, seed: int = 1) -> dict[str, int]:
    from datasketch import MinHashLSH

    docs = [json.loads(line) for f in sorted(glob.glob(jsonl_glob)) for line in open(f)]
    mhs, sets = datasketch_signatures([d["text"] for d in docs], num_perm, seed)
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    for i, (m, s) in enumerate(zip(mhs, sets)):
        if s:
            lsh.insert(str(i), m)
    parent = list(range(len(docs)))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, (m, s) in enumerate(zip(mhs, sets)):
        if s:
            for j in lsh.query(m):
                a, b = find(i), find(int(j))
                if a != b:
                    parent[max(a, b)] = min(a, b)
    roots = [find(i) for i in range(len(docs))]
    from collections import Counter

    size = Counter(roots)
    return {d["id"]: size[r] for d, r in zip(docs, roots)}


# -------------------------------------------------------------------------------------- quality


def _prf(pred: dict[str, int], truth: dict[str, str]) -> tuple[float, float, float]:
    from collections import Counter

    csize = Counter(truth.values())
    tp = fp = fn = 0
    for i, c in truth.items():
        p, t = pred.get(i, 1) > 1, csize[c] > 1
        tp += p and t
        fp += p and not t
        fn += t and not p
    prec = tp / (tp + fp) if tp + fp else 1.0
    rec = tp / (tp + fn) if tp + fn else 1.0
    return prec, rec, 2 * prec * rec / (prec + rec) if prec + rec else 0.0


def quality(seeds: int):
    """P/R/F1 per method, mean over ``seeds`` hash seeds (MinHash results vary with the seed)."""
    import numpy as np
    import pyarrow.parquet as pq

    rows = pq.read_table(os.path.join(SHARED, "neardup", "extractions-dev.parquet")).to_pylist()
    results = []
    for label, keep in (("all versions", lambda r: True),
                        ("jaccard_to_truth >= 0.7", lambda r: r["jaccard_to_truth"] is None or r["jaccard_to_truth"] >= 0.7)):
        sub = [r for r in rows if keep(r) and r["text"]]
        folder = os.path.join(WORK, "quality", label.split()[0])
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(os.path.join(folder, "in"))
        with open(os.path.join(folder, "in", "docs.jsonl"), "w") as f:
            for r in sub:
                f.write(json.dumps({"id": r["id"], "text": r["text"]}) + "\n")
        src = os.path.join(folder, "in", "*.jsonl")
        truth = {r["id"]: r["cluster"] for r in sub}
        n_clusters = len(set(truth.values()))
        methods = (("curate fuzzy_dedup (5-gram, 14x8)", lambda s: run_curate(src, f"{folder}/curate", seed=s)),
                   ("curate + verify (Jaccard >= 0.7)", lambda s: run_curate(src, f"{folder}/curate", seed=s, verify="true",
                                                                             verify_threshold=0.7)),
                   ("datatrove MinHash (5-gram, 14x8)", lambda s: run_datatrove(src, f"{folder}/datatrove", seed=s)),
                   ("datasketch MinHashLSH (t=0.7, 128)", lambda s: run_datasketch(src, seed=s)))
        for name, fn in methods:
            scores, t0 = [], time.perf_counter()
            for seed in range(1, seeds + 1):
                scores.append(_prf(fn(seed), truth))
            sc = np.array(scores)
            results.append((label, len(sub), n_clusters, name, sc, (time.perf_counter() - t0) / seeds))
    print(f"mean over {seeds} seeds (F1 range in brackets)")
    print(f"{'subset':24s} {'docs':>5s} {'clust':>5s}  {'method':36s} {'P':>6s} {'R':>6s} {'F1':>6s} {'F1 range':>14s} {'s/run':>6s}")
    for label, n, c, name, sc, secs in results:
        p, r, f1 = sc.mean(axis=0)
        print(f"{label:24s} {n:5d} {c:5d}  {name:36s} {p:6.4f} {r:6.4f} {f1:6.4f} [{sc[:, 2].min():.4f}-{sc[:, 2].max():.4f}] {secs:6.1f}")


# ---------------------------------------------------------------------------------------- speed


def _child(args: list[str]) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{args} failed:\n{proc.stderr[-4000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out.update(wall_s=wall, cpu_s=(after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return out


def job(name: str, src: str, out: str) -> dict:
    if name in ("sig-curate", "sig-datasketch"):
        import pyarrow as pa

        texts = [json.loads(line)["text"] for f in sorted(glob.glob(src)) for line in open(f)]
        t0 = time.process_time()
        if name == "sig-curate":
            from curate.core import minhash

            for s in range(0, len(texts), 4096):
                minhash.signatures(pa.array(texts[s : s + 4096]), 5, 128)
        else:
            for s in range(0, len(texts), 4096):
                datasketch_signatures(texts[s : s + 4096], 128)
        return {"docs": len(texts), "sig_cpu_s": time.process_time() - t0}
    if name == "e2e-curate":
        run_curate(src, out, annotate=False)
        return {}
    if name == "e2e-datatrove":
        run_datatrove(src, out)
        return {}
    raise ValueError(name)


def speed(min_mb: float, only: str | None = None):
    from corpus import build

    paths = build(min_mb)
    src = os.path.join(os.path.dirname(paths[0]), "*.jsonl")
    mb = sum(os.path.getsize(p) for p in paths) / 1e6
    print(f"corpus: {len(paths)} files, {mb:.1f} MB of real text")
    r = {}
    names = ("sig-curate", "sig-datasketch", "e2e-curate", "e2e-datatrove")
    for name in names:
        if only and not name.startswith(only):
            continue
        out = os.path.join(WORK, name)
        shutil.rmtree(out, ignore_errors=True)
        r[name] = _child(["--job", name, "--src", src, "--out", out])
    if "sig-curate" not in r:
        r["sig-curate"] = {"docs": 0}
    n = r["sig-curate"]["docs"]
    if only == "e2e":
        n = None
    print("signatures (5-gram shingling + 128 hashes, one core):")
    for k in ("sig-curate", "sig-datasketch"):
        if n is None or k not in r:
            continue
        print(f"  {k:16s} {r[k]['sig_cpu_s']:7.2f} CPU-s  {n / r[k]['sig_cpu_s']:9,.0f} docs/s  {mb / r[k]['sig_cpu_s']:6.2f} MB/s")
    if "sig-datasketch" in r:
        print(f"  curate / datasketch (MinHash.bulk) = {r['sig-datasketch']['sig_cpu_s'] / r['sig-curate']['sig_cpu_s']:.1f}x  (target >= 2x)")
    if "e2e-curate" not in r:
        return
    print("end to end (read -> fuzzy dedup -> write, 5-gram 14x8, one worker):")
    for k in ("e2e-curate", "e2e-datatrove"):
        print(f"  {k:16s} {r[k]['wall_s']:7.2f} s wall  {r[k]['cpu_s']:7.2f} CPU-s")
    print(f"  datatrove / curate wall time = {r['e2e-datatrove']['wall_s'] / r['e2e-curate']['wall_s']:.1f}x  (target >= 3x)")


# ---------------------------------------------------------------------------------------- scale


def edit_words(text: str, rng) -> str:
    """A near-duplicate of ``text``: about one word in 200 replaced by a random token."""
    words = text.split(" ")
    for _ in range(max(1, len(words) // 200)):
        words[rng.randrange(len(words))] = "edit%d" % rng.randrange(1000)
    return " ".join(words)


def _replicate(paths: list[str], factor: int, folder: str, base_mb: float) -> str:
    """The first base_mb of the corpus, replicated ``factor`` times; copies get small random word edits."""
    os.makedirs(folder, exist_ok=True)
    rng = random.Random(factor)
    docs, size = [], 0
    for p in paths:
        for line in open(p):
            docs.append(json.loads(line))
            size += len(line)
            if size > base_mb * 1e6:
                break
        if size > base_mb * 1e6:
            break
    with open(os.path.join(folder, "docs.jsonl"), "w") as f:
        for k in range(factor):
            for d in docs:
                text = edit_words(d["text"], rng) if k else d["text"]
                f.write(json.dumps({"id": f"{d['id']}#{k}", "text": text}) + "\n")
    return os.path.join(folder, "*.jsonl")


def scale(base_mb: float, workers: int):
    from corpus import build

    paths = build(50)
    print(f"fuzzy dedup peak memory, base {base_mb} MB replicated with small random edits, {workers} worker(s):")
    for factor in (1, 4, 16):
        src = _replicate(paths, factor, os.path.join(WORK, f"scale{factor}"), base_mb)
        mb = os.path.getsize(glob.glob(src)[0]) / 1e6
        out = os.path.join(WORK, f"scale-out{factor}")
        shutil.rmtree(out, ignore_errors=True)
        r = _child(["--job", "scale-run", "--src", src, "--out", out, "--workers", str(workers)])
        print(f"  {factor:3d}x  {mb:7.1f} MB  wall {r['wall_s']:7.1f} s  peak RSS of the largest process {r['peak_mb']:7.0f} MB  "
              f"(driver {r['driver_mb']:.0f} MB, workers {r['worker_mb']:.0f} MB)")


def peak_rss(fn) -> dict:
    """Run ``fn()`` sampling the RSS of this process and its children every 50 ms; peak MB of each kind."""
    import threading

    import psutil

    me = psutil.Process()
    peaks = {"driver": 0, "worker": 0}
    stop = threading.Event()

    def sample():
        while not stop.wait(0.05):
            try:
                peaks["driver"] = max(peaks["driver"], me.memory_info().rss)
                for c in me.children(recursive=True):
                    peaks["worker"] = max(peaks["worker"], c.memory_info().rss)
            except psutil.Error:
                pass

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    result = fn()
    stop.set()
    t.join()
    peaks["driver"] = max(peaks["driver"], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"result": result, "driver_mb": peaks["driver"] / 2**20, "worker_mb": peaks["worker"] / 2**20}


def scale_job(src: str, out: str, workers: int) -> dict:
    r = peak_rss(lambda: run_curate(src, out, annotate=False, workers=workers))
    return {"peak_mb": max(r["driver_mb"], r["worker_mb"]), "driver_mb": r["driver_mb"], "worker_mb": r["worker_mb"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", nargs="?", choices=["quality", "speed", "scale"])
    ap.add_argument("--job")
    ap.add_argument("--src")
    ap.add_argument("--out")
    ap.add_argument("--min-mb", type=float, default=50)
    ap.add_argument("--base-mb", type=float, default=10)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--only", choices=["sig", "e2e"], help="speed: run only the signature or the end-to-end jobs")
    a = ap.parse_args()
    if a.job == "scale-run":
        print(json.dumps(scale_job(a.src, a.out, a.workers)))
    elif a.job:
        print(json.dumps(job(a.job, a.src, a.out)))
    elif a.what == "quality":
        quality(a.seeds)
    elif a.what == "speed":
        speed(a.min_mb, a.only)
    elif a.what == "scale":
        scale(a.base_mb, a.workers)
    else:
        ap.print_help()


if __name__ == "__main__":
    main()
