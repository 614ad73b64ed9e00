"""Every command on a real GCS JSON API: the gcp-storage-emulator, in memory, on a free local port.

The emulator is started once for the module (a bucket of its own) and stopped at the end;
STORAGE_EMULATOR_HOST points this process and every subprocess (CLI runs, Beam worker processes)
at it. Each output on gs:// is compared with the same command's output on local disk: rows by
id, mix shards byte for byte, training losses exactly. Nothing may be left under the temp
location or an output's ``_tmp``.
"""
from __future__ import annotations

import bz2
import gzip
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from conftest import read_output

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "samples", "corpus")
SAMPLES = ("web-0.jsonl", "web-1.jsonl", "web-2.jsonl.gz")
BUCKET = "curate-test"
GS = f"gs://{BUCKET}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module", autouse=True)
def emulator(tmp_path_factory):
    if importlib.util.find_spec("gcp_storage_emulator") is None:
        pytest.skip("gcp-storage-emulator is not installed (pip install -e '.[test]'): no GCS API to test against")
    if importlib.util.find_spec("apache_beam.io.gcp.gcsio") is None or importlib.util.find_spec("google.cloud.storage") is None:
        pytest.skip("Beam's GCS filesystem is not installed (pip install -e '.[gcp]')")
    port = _free_port()
    log = tmp_path_factory.mktemp("emulator") / "emulator.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen([sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1", "--port",
                                 str(port), "--in-memory", "--default-bucket", BUCKET, "-q"], stdout=f, stderr=f)
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"the GCS emulator did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
    mp = pytest.MonkeyPatch()
    mp.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")  # this process and every subprocess
    mp.setenv("CURATE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    from curate.io import readers

    readers._emulator_without_credentials()  # the module may have been imported before the variable was set
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        mp.undo()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        try:  # forget the "no credentials" decision made for the emulator
            from apache_beam.internal.gcp import auth

            auth._Credentials._credentials_init = False
        except ImportError:
            pass


# ------------------------------------------------------------------------------------------ helpers


def upload(local: str, remote: str) -> None:
    from curate.io.writers import write_bytes

    with open(local, "rb") as f:
        write_bytes(remote, f.read())


def upload_tree(local: str, remote: str) -> None:
    for folder, _, names in os.walk(local):
        for name in names:
            rel = os.path.relpath(os.path.join(folder, name), local).replace(os.sep, "/")
            upload(os.path.join(folder, name), f"{remote}/{rel}")


def listing(prefix: str) -> list[str]:
    from curate.io.readers import match_paths

    return sorted(p[len(prefix) + 1:] for p in match_paths(prefix.rstrip("/") + "/**"))


def gs_table(folder: str) -> pa.Table:
    from curate.io.readers import match_paths, read_bytes

    files = sorted(match_paths(folder + "/*.parquet"))
    if not files:
        return pa.table({})
    return pa.concat_tables([pq.read_table(pa.BufferReader(read_bytes(f))) for f in files], promote_options="default")


def by_id(table: pa.Table, columns=None) -> list[dict]:
    rows = table.select(columns).to_pylist() if columns else table.to_pylist()
    return sorted(rows, key=lambda r: (r["id"], json.dumps(r, sort_keys=True, default=str)))


def cli(*argv, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "curate.cli", *map(str, argv)], capture_output=True, text=True, cwd=ROOT,
                       timeout=600)
    if check:
        assert r.returncode == 0, r.stderr[-3000:]
    return r


def main(*argv) -> int:
    from curate.cli import main as curate_main

    return curate_main([str(a) for a in argv])


@pytest.fixture(scope="module")
def raw():
    """The sample corpus on gs://, copied byte for byte (web-2.jsonl.gz stays one gzip layer)."""
    for name in SAMPLES:
        upload(os.path.join(CORPUS, name), f"{GS}/raw/{name}")
    return f"{GS}/raw"


# ------------------------------------------------------------------------------- compressed inputs


def _docs(patterns, split_bytes=128 << 20):
    from curate.io.readers import InputSpec, list_files, read_shard, split_file

    spec = InputSpec(path=list(patterns), split_bytes=split_bytes)
    docs, errors, shards = [], [], 0
    for i, (path, size) in enumerate(list_files(spec.path)):
        for shard in split_file(i, path, size, spec):
            shards += 1
            for kind, item in read_shard(shard, spec):
                if kind == "batch":
                    docs += zip(item.column("id").to_pylist(), item.column("text").to_pylist())
                else:
                    errors += item.errors
    return sorted(docs), errors, shards


def test_compressed_inputs_read_the_same_however_they_were_uploaded(raw, tmp_path):
    """The issue's 414 errors: web-2.jsonl.gz copied with ``FileSystems.create`` (Beam's AUTO compression
    gzips a .gz name again) was read as gzip bytes. Compression is now told from the content, layers
    are all removed, and a compressed file is never split into byte ranges, whatever its name."""
    from apache_beam.io.filesystems import FileSystems

    text = gzip.decompress(open(os.path.join(CORPUS, "web-2.jsonl.gz"), "rb").read())
    want, errors, _ = _docs([os.path.join(CORPUS, "web-2.jsonl.gz")])
    assert len(want) == 114 and not errors
    with open(os.path.join(CORPUS, "web-2.jsonl.gz"), "rb") as src, FileSystems.create(f"{GS}/odd/twice.jsonl.gz") as dst:
        dst.write(src.read())  # the copy: AUTO compression, so gzip(gzip(text))
    from curate.io.writers import write_bytes

    write_bytes(f"{GS}/odd/encoded.jsonl", gzip.compress(text))  # gsutil cp -Z: gzip bytes under a .jsonl name
    write_bytes(f"{GS}/odd/web.jsonl.bz2", bz2.compress(text[: len(text) // 2]) + bz2.compress(text[len(text) // 2:]))
    write_bytes(f"{GS}/odd/web.jsonl.zst", zstandard.ZstdCompressor().compress(text))
    (tmp_path / "web.jsonl.bz2").write_bytes(bz2.compress(text))
    for pattern in (f"{GS}/odd/twice.jsonl.gz", f"{GS}/odd/web.jsonl.bz2", f"{GS}/odd/web.jsonl.zst",
                    str(tmp_path / "web.jsonl.bz2"), f"{raw}/web-2.jsonl.gz"):
        got, errors, shards = _docs([pattern])
        assert (got, errors, shards) == (want, [], 1), pattern
    # a compressed file is one shard even when its name says plain text and it is larger than split_bytes
    got, errors, shards = _docs([f"{GS}/odd/encoded.jsonl"], split_bytes=4096)
    assert (got, errors, shards) == (want, [], 1)
    # a folder on a bucket (a name prefix) means the files in it
    from curate.io.readers import list_files

    assert [p.rsplit("/", 1)[1] for p, _ in list_files([raw])] == list(SAMPLES)
    # plain text on gs:// is split into byte ranges, and reads the same
    local, _, n_local = _docs([os.path.join(CORPUS, "web-0.jsonl")], split_bytes=20000)
    remote, errors, n_remote = _docs([f"{raw}/web-0.jsonl"], split_bytes=20000)
    assert remote == local and not errors and n_remote == n_local > 5


# ---------------------------------------------------------------------------------------- curate run


@pytest.fixture(scope="module")
def local_quickstart(tmp_path_factory):
    from curate.core.recipe import load_recipe
    from curate.core.runner import run_recipe

    out = tmp_path_factory.mktemp("local") / "curated"
    recipe = load_recipe(os.path.join(ROOT, "pipelines", "quickstart.yaml"), [os.path.join(CORPUS, "*.jsonl*")], str(out))
    res = run_recipe(recipe)
    assert res.stats["read"].n_in == 342 and not res.problems
    return out


@pytest.fixture(scope="module")
def curated(raw, local_quickstart):
    """The issue's reproduction, with two worker processes: the quickstart recipe, every path on gs://."""
    r = cli("run", "pipelines/quickstart.yaml", "--input", f"{raw}/*.jsonl*", "--output", f"{GS}/curated",
            "--temp_location", f"{GS}/tmp", "--workers", 2, "--quiet")
    assert "ledger balanced: 342 in = 191 written + 151 dropped + 0 errors" in r.stdout, r.stdout
    return f"{GS}/curated"


def test_run_on_gcs_equals_the_local_run_and_leaves_no_scratch(curated, local_quickstart):
    assert by_id(gs_table(f"{curated}/data")) == by_id(read_output(local_quickstart))
    cols = ["id", "drop_stage", "drop_reason"]
    assert by_id(gs_table(f"{curated}/rejected"), cols) == by_id(read_output(local_quickstart, "rejected"), cols)
    files = listing(curated)
    assert "_SUCCESS" in files and "stats.json" in files and "_INCOMPLETE" not in files
    assert not [f for f in files if f.startswith("_tmp")], files
    assert listing(f"{GS}/tmp") == []
    from curate.io.readers import read_bytes

    stats = json.loads(read_bytes(f"{curated}/stats.json"))
    local = json.loads((local_quickstart / "stats.json").read_text())
    assert stats["stages"] == local["stages"] and stats["ledger_ok"]


def test_concurrent_runs_whose_outputs_share_a_name(raw, tmp_path):
    """gs://B/web/out and gs://B/code/out with one --temp_location: scratch folders are per run."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("input: in.jsonl\noutput: out\nstages:\n  - length_filter: {min_words: 50}\n"
                      "  - exact_dedup: {}\n  - url_dedup: {}\n")
    from curate.core.recipe import load_recipe
    from curate.core.runner import run_recipe

    jobs = {"web": "web-0.jsonl", "code": "web-1.jsonl"}
    want = {}
    for name, file in jobs.items():
        res = run_recipe(load_recipe(str(recipe), [os.path.join(CORPUS, file)], str(tmp_path / name)))
        assert res.stats["exact_dedup"].n_dropped + res.stats["url_dedup"].n_dropped > 0  # the global stages did work
        want[name] = by_id(read_output(tmp_path / name))
    procs = {name: subprocess.Popen(
        [sys.executable, "-m", "curate.cli", "run", str(recipe), "--input", f"{raw}/{file}", "--output", f"{GS}/{name}/out",
         "--temp_location", f"{GS}/shared-tmp", "--quiet"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True) for name, file in jobs.items()}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-3000:]
        assert by_id(gs_table(f"{GS}/{name}/out/data")) == want[name], name
        assert not [f for f in listing(f"{GS}/{name}/out") if f.startswith("_tmp")]
    assert listing(f"{GS}/shared-tmp") == []


def test_failed_run_removes_its_scratch_and_stays_incomplete(raw, monkeypatch, tmp_path):
    from curate.core.recipe import load_recipe
    from curate.core.runner import run_recipe
    from curate.io import writers

    def broken(self, batch):
        raise RuntimeError("disk full")

    (tmp_path / "r.yaml").write_text("input: x\noutput: y\nstages:\n  - exact_dedup: {}\n")
    recipe = load_recipe(str(tmp_path / "r.yaml"), [f"{raw}/web-1.jsonl"], f"{GS}/failed")
    monkeypatch.setattr(writers.WriteBatches, "process", broken)
    with pytest.raises(Exception, match="disk full"):
        run_recipe(recipe, beam_args=["--temp_location", f"{GS}/fail-tmp"])
    assert listing(f"{GS}/fail-tmp") == []
    assert "_INCOMPLETE" in listing(f"{GS}/failed")
    recipe = load_recipe(str(tmp_path / "r.yaml"), [f"{raw}/web-1.jsonl"], f"{GS}/failed2")
    with pytest.raises(Exception, match="disk full"):
        run_recipe(recipe)  # no --temp_location: OUTPUT/_tmp/<run id>
    assert [f for f in listing(f"{GS}/failed2") if f.startswith("_tmp")] == []


def test_remote_output_not_written_by_curate_is_refused(raw, tmp_path):
    from curate.core.runner import claim_output
    from curate.core.safety import UserError
    from curate.io.writers import write_bytes

    write_bytes(f"{GS}/theirs/data/mine.parquet", b"not ours")
    with pytest.raises(UserError, match="was not written by curate"):
        claim_output(f"{GS}/theirs")
    claim_output(f"{GS}/nothing-here")


def test_jsonl_files_of_a_row_count_on_gcs_equal_the_local_ones(raw, tmp_path):
    """output.format jsonl.gz in files of 40 rows through Beam's FileSystems: committed by rename, nothing left over."""
    from curate.core.recipe import load_recipe
    from curate.core.runner import run_recipe
    from curate.io.readers import read_bytes

    (tmp_path / "r.yaml").write_text("input: {path: x, batch_size: 16}\noutput: {path: y, format: jsonl, compression: gzip,"
                                     " file_rows: 40}\nstages:\n  - exact_dedup: {}\n")
    local = run_recipe(load_recipe(str(tmp_path / "r.yaml"), [os.path.join(CORPUS, "web-1.jsonl")], str(tmp_path / "out")))
    remote = run_recipe(load_recipe(str(tmp_path / "r.yaml"), [f"{raw}/web-1.jsonl"], f"{GS}/jsonl-out"))
    assert remote.stats["write"].kept == local.stats["write"].kept > 40
    files = listing(f"{GS}/jsonl-out/data")
    assert files and all(f.startswith("part-") and f.endswith(".jsonl.gz") for f in files), files  # no .inprogress
    rows = [json.loads(line) for f in files for line in gzip.decompress(read_bytes(f"{GS}/jsonl-out/data/{f}")).splitlines()]
    want = [json.loads(line) for f in sorted((tmp_path / "out" / "data").iterdir())
            for line in gzip.decompress(f.read_bytes()).splitlines()]
    assert sorted(rows, key=lambda r: r["id"]) == sorted(want, key=lambda r: r["id"])
    assert len(files) <= -(-len(rows) // 40) + 1


def test_remote_runner_refuses_local_paths_in_one_line(tmp_path):
    for argv in (["--input", os.path.join(CORPUS, "*.jsonl*"), "--output", f"{GS}/x"],
                 ["--input", f"{GS}/raw/*.jsonl*", "--output", str(tmp_path / "out")]):
        r = cli("run", "pipelines/quickstart.yaml", "--runner", "DataflowRunner", "--project", "p", "--region", "r",
                "--temp_location", f"{GS}/tmp", *argv, check=False)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert "is a path on this machine, but --runner DataflowRunner runs on workers that cannot see it" in r.stderr
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------- score and inspect


def test_score_and_inspect_on_gcs(raw, tmp_path, capsys):
    scorers = ["--scorer", "lang_id", "--scorer", "gopher_quality"]
    assert main("score", os.path.join(CORPUS, "*.jsonl*"), *scorers, "--output", tmp_path / "scored", "--quiet") == 0
    assert main("score", f"{raw}/*.jsonl*", *scorers, "--output", f"{GS}/scored", "--quiet") == 0
    assert by_id(gs_table(f"{GS}/scored/data")) == by_id(read_output(tmp_path / "scored"))
    capsys.readouterr()
    assert main("inspect", tmp_path / "scored", "--output", tmp_path / "report") == 0
    local = capsys.readouterr().out
    assert main("inspect", f"{GS}/scored") == 0  # the default report folder: gs://.../scored/inspect
    remote = capsys.readouterr().out
    assert "lang_score" in remote and remote.split("report:")[0] == local.split("report:")[0]
    assert f"report: {GS}/scored/inspect/index.html" in remote
    files = listing(f"{GS}/scored/inspect")
    assert files == sorted(os.path.relpath(os.path.join(d, f), tmp_path / "report").replace(os.sep, "/")
                           for d, _, fs in os.walk(tmp_path / "report") for f in fs)
    assert "histograms/lang_score.png" in files


# ------------------------------------------------------------------ train-tokenizer, mix and train


def _spec(tok, curated, raw, temp=None):
    return {"tokenizer": tok, "seq_length": 64, "total_tokens": 30000, "seed": 5, "heldout_tokens": 1000,
            "shard_tokens": 12000,
            "domains": {"curated": {"path": curated, "max_epochs": 4}, "raw": {"path": f"{raw}/*.jsonl*", "max_epochs": 4}},
            "phases": [{"name": "base", "fraction": 0.75, "weights": {"curated": 0.5, "raw": 0.5}},
                       {"name": "anneal", "fraction": 0.25, "upsample": {"curated": 3}}]}


def _files(root: str) -> dict[str, bytes]:
    from curate.io.readers import read_bytes

    if root.startswith("gs://"):
        return {f: read_bytes(f"{root}/{f}") for f in listing(root) if f.endswith((".bin", ".idx", ".npy"))}
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            if n.endswith((".bin", ".idx", ".npy")):
                out[os.path.relpath(os.path.join(d, n), root).replace(os.sep, "/")] = open(os.path.join(d, n), "rb").read()
    return out


@pytest.fixture(scope="module")
def mixes(raw, curated, local_quickstart, tmp_path_factory):
    """train-tokenizer and mix, once locally and once with every path on gs://."""
    root = tmp_path_factory.mktemp("mixes")
    assert main("train-tokenizer", local_quickstart, "--vocab-size", 400, "--output", root / "tok") == 0
    assert main("train-tokenizer", curated, "--vocab-size", 400, "--output", f"{GS}/tok") == 0
    (root / "local.yaml").write_text(json.dumps(_spec(str(root / "tok"), str(local_quickstart), CORPUS)))
    (root / "gcs.yaml").write_text(json.dumps(_spec(f"{GS}/tok", curated, raw)))
    assert main("mix", root / "local.yaml", "--output", root / "mix") == 0
    assert main("mix", root / "gcs.yaml", "--output", f"{GS}/mix", "--temp_location", f"{GS}/mix-tmp", "--workers", 2) == 0
    return root


def test_train_tokenizer_reads_and_writes_gcs(mixes):
    from curate.io.readers import read_bytes

    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert read_bytes(f"{GS}/tok/{name}") == (mixes / "tok" / name).read_bytes(), name


def test_mix_on_gcs_writes_the_same_shards_and_no_scratch(mixes):
    from curate.io.readers import read_bytes

    local, remote = _files(str(mixes / "mix")), _files(f"{GS}/mix")
    assert local and remote == local
    manifest = json.loads(read_bytes(f"{GS}/mix/manifest.json"))
    assert manifest["tokenizer"]["path"] == f"{GS}/tok/tokenizer.json"
    assert manifest["phases"] == json.loads((mixes / "mix" / "manifest.json").read_text())["phases"]
    files = listing(f"{GS}/mix")
    assert "_SUCCESS" in files and not [f for f in files if f.startswith("_tmp")]
    assert listing(f"{GS}/mix-tmp") == []


def test_train_reads_the_mix_from_gcs(mixes, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = {"model": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64},
               "micro_batch_size": 4, "max_steps": 6, "lr": 0.005, "warmup_steps": 2, "eval_every": 3,
               "eval_sequences": 4, "checkpoint_every": 6, "log_every": 1}
        losses = {}
        for name, data in (("local", mixes / "mix"), ("gcs", f"{GS}/mix")):
            (tmp_path / f"{name}.yaml").write_text(json.dumps(dict(cfg, data=str(data), output=str(tmp_path / name))))
            capsys.readouterr()
            assert main("train", tmp_path / f"{name}.yaml") == 0
            err = capsys.readouterr().err
            if name == "gcs":
                assert f"data: {GS}/mix is remote; copied" in err and "local cache" in err, err
            with open(tmp_path / name / "log.jsonl") as f:
                losses[name] = [(r["step"], r.get("loss"), r.get("heldout")) for r in map(json.loads, f)]
            assert (tmp_path / name / "final" / "tokenizer.json").exists()
        assert losses["gcs"] == losses["local"] and len(losses["local"]) > 5
        assert main("train", tmp_path / "gcs.yaml", "--output", tmp_path / "again", "--max-steps", 2) == 0
        assert "using its local copy" in capsys.readouterr().err  # the cache, keyed by the manifest's hash
    finally:
        torch.set_num_threads(old)


def test_partitions_derive_from_the_remote_input_size(raw):
    from curate.core.runner import derive_partitions

    assert derive_partitions([raw + "/*.jsonl*"]) == 4  # a few hundred KB: the minimum, from a real listing
    assert derive_partitions([raw + "/*.jsonl*"], bytes_per_partition=1 << 10) > 4
    assert derive_partitions(["gs://no-such-bucket-here/x/*.jsonl"]) == 64  # unlistable here: the read reports it
