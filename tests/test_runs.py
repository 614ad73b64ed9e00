"""Whole runs: determinism, worker counts, crash and re-run, the CLI, the Dataflow graph."""
import hashlib
import glob
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import prose, read_output, write_jsonl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _corpus(tmp_path, n_files=3, n=400):
    for f in range(n_files):
        docs = [{"id": f"f{f}-{i}", "text": prose(i % 97 + f * (i % 2), 4 + i % 5)} for i in range(n)]
        write_jsonl(tmp_path / f"c{f}.jsonl", docs)


def _recipe(tmp_path, out):
    return f"""
input: {{path: {tmp_path}/c*.jsonl, batch_size: 100, split_bytes: 50000}}
output: {{path: {out}, write_rejected: true}}
stages:
  - length_filter: {{min_words: 60}}
  - exact_dedup: {{}}
  - sample: {{fraction: 0.8, seed: 3}}
"""


def _digest(out):
    h = hashlib.sha256()
    for part in ("data", "rejected", "errors"):
        for f in sorted(glob.glob(os.path.join(out, part, "*.parquet"))):
            t = read_output_file(f)
            h.update(os.path.basename(f).encode())
            h.update(repr(t.to_pylist()).encode())
    return h.hexdigest()


def read_output_file(f):
    import pyarrow.parquet as pq

    return pq.read_table(f)


def test_same_result_twice_and_with_two_workers(tmp_path, run):
    _corpus(tmp_path)
    r1 = run(_recipe(tmp_path, tmp_path / "o1"))
    run(_recipe(tmp_path, tmp_path / "o2"))
    run(_recipe(tmp_path, tmp_path / "o3"), workers=2)
    assert r1.stats["exact_dedup"].n_dropped > 0 and r1.stats["sample"].n_dropped > 0
    d1 = _digest(tmp_path / "o1")
    assert d1 == _digest(tmp_path / "o2") == _digest(tmp_path / "o3")
    ids = read_output(tmp_path / "o1").column("id").to_pylist()
    assert len(ids) == len(set(ids)) == r1.stats["write"].kept


def test_killed_run_then_rerun_gives_the_uninterrupted_result(tmp_path, run):
    _corpus(tmp_path, n_files=4, n=1500)
    (tmp_path / "r.yaml").write_text(_recipe(tmp_path, tmp_path / "killed"))
    run(_recipe(tmp_path, tmp_path / "clean"))
    proc = subprocess.Popen([sys.executable, "-m", "curate.cli", "run", str(tmp_path / "r.yaml"), "--quiet"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and not glob.glob(str(tmp_path / "killed" / "_tmp" / "*" / "*.arrow")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(tmp_path / "killed" / "stats.json")  # it really died midway
    run(_recipe(tmp_path, tmp_path / "killed"))
    assert _digest(tmp_path / "killed") == _digest(tmp_path / "clean")


def test_cli_help_validate_and_run(tmp_path):
    for cmd in (["--help"], ["run", "--help"], ["validate", "--help"], ["stages", "--help"]):
        r = subprocess.run([sys.executable, "-m", "curate.cli", *cmd], capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 0 and "usage" in r.stdout
    write_jsonl(tmp_path / "c0.jsonl", [{"id": str(i), "text": prose(i)} for i in range(30)])
    (tmp_path / "r.yaml").write_text(f"input: {tmp_path}/c0.jsonl\noutput: {tmp_path}/out\nstages:\n  - length_filter: {{min_word: 3}}\n")
    r = subprocess.run([sys.executable, "-m", "curate.cli", "run", str(tmp_path / "r.yaml")], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "did you mean 'min_words'" in r.stderr
    (tmp_path / "r.yaml").write_text(f"input: {tmp_path}/c0.jsonl\noutput: {tmp_path}/out\nstages:\n  - length_filter: {{min_words: 3}}\n")
    r = subprocess.run([sys.executable, "-m", "curate.cli", "run", str(tmp_path / "r.yaml"), "--quiet"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "length_filter" in r.stdout and "ledger balanced: 30 in = 30 written" in r.stdout
    assert os.path.exists(tmp_path / "out" / "stats.json")


def test_dataflow_dry_run_builds_the_graph_offline(tmp_path):
    pytest.importorskip("apache_beam.runners.dataflow.internal.apiclient")
    pytest.importorskip("build")
    r = subprocess.run(
        [sys.executable, "-m", "curate.cli", "run", "pipelines/quickstart.yaml", "--runner", "DataflowRunner",
         "--project", "my-proj-123", "--region", "us-central1", "--temp_location", "gs://my-bucket/tmp",
         "--input", "gs://my-bucket/never-listed/*.jsonl.gz", "--output", "gs://my-bucket/out", "--dry_run=True"],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "dry run on DataflowRunner" in r.stdout
    for stage in ("read", "input_ids", "lang_id", "length_filter", "exact_dedup", "sample", "write"):
        assert stage in r.stdout
