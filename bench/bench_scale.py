"""Scale benchmark: the quickstart cascade (dedup + rule sets) on 0.25, 1 and 4 GB of real text.

The base is the real-text corpus of bench/corpus.py (../shared data and Debian's documentation),
replicated with random word edits so that the copies are real near-duplicates, not exact ones.
Each size runs `curate run pipelines/quickstart.yaml --workers 2` in its own process, in this one
run, and reports:

  * seconds per GB (wall) and CPU-seconds per GB;
  * peak RSS of the driver and of the largest worker process (sampled every 50 ms);
  * scratch bytes written per input byte (batches materialized for the global stages plus
    shuffle payloads spilled to scratch; from the run's own counters in stats.json);
  * documents in / written, and the ledger.

Target: memory flat across sizes, time linear, the corpus written to scratch once.

    python bench/bench_scale.py                  # 0.25, 1 and 4 GB
    python bench/bench_scale.py --sizes 0.05,0.2 # a quick look
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORK = os.path.join(HERE, "_work", "scale")
sys.path.insert(0, HERE)


def replicate(target_gb: float, folder: str, shards: int = 8) -> tuple[str, int]:
    """The base corpus, copied until ``target_gb``; every copy after the first gets ~0.5% of its words edited."""
    from bench_fuzzy import edit_words
    from corpus import build

    paths = build(50)
    docs = [json.loads(line) for p in paths for line in open(p)]
    os.makedirs(folder, exist_ok=True)
    target = int(target_gb * 1e9)
    rng = random.Random(0)
    files = [open(os.path.join(folder, f"part-{i:02d}.jsonl"), "w") for i in range(shards)]
    written, k = 0, 0
    while written < target:
        for j, d in enumerate(docs):
            text = edit_words(d["text"], rng) if k else d["text"]
            line = json.dumps({"id": f"{d['id']}#{k}", "text": text, "url": d.get("url")}) + "\n"
            files[j % shards].write(line)
            written += len(line)
            if written >= target:
                break
        k += 1
    for f in files:
        f.close()
    return os.path.join(folder, "*.jsonl"), written


def run_job(src: str, out: str, workers: int, without: list[str] = (), rejected: bool = True) -> dict:
    """Run the quickstart recipe (minus the stages in ``without``) in this process, sampling the RSS of it
    and its workers."""
    from bench_fuzzy import peak_rss

    from curate.core.recipe import load_recipe
    from curate.core.runner import run_recipe

    recipe = load_recipe(os.path.join(ROOT, "pipelines", "quickstart.yaml"), [src], out)
    recipe.stages = [(n, obj) for n, obj in recipe.stages if n not in without]
    recipe.output.write_rejected = recipe.output.write_rejected and rejected
    r = peak_rss(lambda: run_recipe(recipe, workers=workers))
    res = r["result"]
    return {"docs_in": res.stats["read"].n_in, "docs_out": res.stats["write"].kept, "ledger_ok": not res.problems,
            "materialized": res.info.get("scratch_bytes_materialized", 0), "spilled": res.info.get("scratch_bytes_spilled", 0),
            "driver_mb": r["driver_mb"], "worker_mb": r["worker_mb"]}


def child(src: str, out: str, workers: int, without: list[str] = (), rejected: bool = True) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--job", "--src", src, "--out", out, "--workers", str(workers),
                           *(["--without", *without] if without else []), *([] if rejected else ["--no-rejected"])],
                          capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-4000:])
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    r.update(wall_s=wall, cpu_s=(after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="0.25,1,4", help="GB of input, comma-separated")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--job", action="store_true")
    ap.add_argument("--src")
    ap.add_argument("--out")
    ap.add_argument("--keep", action="store_true", help="keep the generated inputs")
    ap.add_argument("--without", nargs="+", default=[], help="drop these stages from the recipe (to see what costs memory)")
    ap.add_argument("--no-rejected", action="store_true", help="do not write the dropped documents")
    a = ap.parse_args()
    if a.job:
        print(json.dumps(run_job(a.src, a.out, a.workers, a.without, not a.no_rejected)))
        return
    print(f"quickstart cascade (pipelines/quickstart.yaml{' without ' + ', '.join(a.without) if a.without else ''}"
          f"{', no rejected/' if a.no_rejected else ''}), "
          f"--workers {a.workers}, real text replicated with edits")
    print(f"{'input':>8} {'docs in':>10} {'written':>9} {'wall s':>8} {'s/GB':>7} {'CPU-s/GB':>9} "
          f"{'driver MB':>10} {'worker MB':>10} {'scratch/input':>14}  ledger")
    for gb in (float(x) for x in a.sizes.split(",")):
        folder = os.path.join(WORK, f"in-{gb:g}")
        shutil.rmtree(folder, ignore_errors=True)
        src, nbytes = replicate(gb, folder)
        out = os.path.join(WORK, f"out-{gb:g}")
        shutil.rmtree(out, ignore_errors=True)
        r = child(src, out, a.workers, a.without, not a.no_rejected)
        size = nbytes / 1e9
        print(f"{size:7.2f}G {r['docs_in']:>10,} {r['docs_out']:>9,} {r['wall_s']:8.1f} {r['wall_s'] / size:7.0f} "
              f"{r['cpu_s'] / size:9.0f} {r['driver_mb']:10.0f} {r['worker_mb']:10.0f} "
              f"{(r['materialized'] + r['spilled']) / nbytes:8.2f} ({r['materialized'] / nbytes:.2f}+{r['spilled'] / nbytes:.2f})"
              f"  {'ok' if r['ledger_ok'] else 'DOES NOT BALANCE'}", flush=True)
        if not a.keep:
            shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
