"""curate train on several processes (torchrun, gloo on CPU): the same losses as one process with the same
global batch, every sequence read once per epoch across processes, resume from a multi-process checkpoint."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import two_domain_mix

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
if not torch.distributed.is_available():  # pragma: no cover
    pytest.skip("this torch has no torch.distributed", allow_module_level=True)

from curate.core.safety import UserError  # noqa: E402
from curate.train.config import parse_config  # noqa: E402
from curate.train.distributed import rank_positions  # noqa: E402
from curate.train.trainer import Trainer, run_train  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def mixdir(tmp_path_factory):
    """Two domains of the sample corpus's paragraphs mixed into 32-token sequences."""
    return two_domain_mix(tmp_path_factory.mktemp("ddpmix"), files=("web-0.jsonl",), vocab_size=300, seq_length=32,
                          total_tokens=12000, heldout_tokens=600,
                          phases=[{"name": "base", "fraction": 0.75, "weights": {"x": 0.6, "y": 0.4}},
                                  {"name": "anneal", "fraction": 0.25, "upsample": {"y": 3}}])


def _settings(mixdir, out, micro, accum, **over) -> dict:
    base = {"data": str(mixdir), "output": str(out), "model": MODEL, "micro_batch_size": micro, "grad_accum": accum,
            "max_steps": 8, "lr": 0.01, "warmup_steps": 2, "eval_every": 4, "eval_sequences": 8,
            "checkpoint_every": 4, "log_every": 1, "reweight": {"strategy": "linupper", "warmup_steps": 2},
            "online_mixture": {"eta": 0.5}}
    base.update(over)
    return base


def _cfg(mixdir, out, micro, accum, **over):
    return parse_config(json.dumps(_settings(mixdir, out, micro, accum, **over)), "test-config")


def _log(out) -> list[dict]:
    with open(os.path.join(out, "log.jsonl")) as f:
        return [json.loads(line) for line in f]


def _curve(out) -> dict[int, tuple]:
    return {r["step"]: (r["loss"], r["grad_norm"], r["weight_max"]) for r in _log(out) if "loss" in r}


WORKER = textwrap.dedent("""
    # one torchrun process; for each config: stop at step 4 (a checkpoint), then resume in a new trainer to the end
    import sys
    import torch
    import torch.distributed as td
    from curate.cli import main

    torch.set_num_threads(1)
    td.init_process_group("gloo")  # joined once (starting processes is the slow part); every run uses it
    for cfg in sys.argv[1:]:
        assert main(["train", cfg, "--quiet", "--stop-at-step", "4"]) == 0
        assert main(["train", cfg, "--quiet"]) == 0
    td.barrier()  # both processes are done before the group goes (gloo aborts a peer still using it)
    td.destroy_process_group()
""")


def test_rank_positions_read_every_sequence_once_per_epoch(mixdir, tmp_path):
    for micro, accum, world in ((2, 2, 2), (3, 1, 4), (1, 5, 3)):
        parts = [rank_positions(micro, accum, world, r) for r in range(world)]
        assert sorted(np.concatenate(parts).tolist()) == list(range(micro * accum * world))  # a partition
        for m in range(accum):  # micro-batch m of all ranks, in rank order, is micro-batch m of one process
            joined = np.concatenate([p[m * micro:(m + 1) * micro] for p in parts])
            assert joined.tolist() == list(range(m * micro * world, (m + 1) * micro * world))
    with pytest.raises(ValueError, match="rank 2 outside world size 2"):
        rank_positions(1, 1, 2, 2)
    # over an epoch of a phase, the sequences the two ranks read are each sequence of the phase once
    tr = Trainer(_cfg(mixdir, tmp_path / "t", 2, 2, max_steps=None, online_mixture=None), quiet=True)
    n, batch = tr.data.phases[0]["n"], 8
    tr.batch = batch
    steps = n // batch
    read = [tr.batch_index(s)[1][rank_positions(2, 2, 2, r)] for s in range(steps) for r in range(2)]
    read = np.concatenate(read)
    assert len(read) == len(np.unique(read)) == steps * batch and read.max() < n


def test_two_processes_equal_one_process_and_resume_across_world_sizes(mixdir, tmp_path):
    # one process, global batch 8 = 4 sequences x 2 accumulation steps, reweighting over groups of 4
    ref = tmp_path / "one"
    run_train(_cfg(mixdir, ref, 4, 2), quiet=True)
    want = _curve(ref)
    assert sorted(want) == list(range(1, 9))

    # two processes (gloo) x 2 sequences x 2 accumulation steps: the same global batch, with DDP (a replica
    # each) and with FSDP (the model sharded); each stopped at step 4 and resumed from that checkpoint
    runs = {"ddp": tmp_path / "ddp", "fsdp": tmp_path / "fsdp"}
    configs = []
    for how, out in runs.items():
        configs.append(tmp_path / f"{how}.json")
        configs[-1].write_text(json.dumps(_settings(mixdir, out, 2, 2, parallel=how)))
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(worker), *map(str, configs)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("stopped at step 4") == 2 and proc.stdout.count("trained 8 steps") == 2  # rank 0 prints
    for how, out in runs.items():
        got = _curve(out)
        assert [r["step"] for r in _log(out) if "loss" in r] == list(range(1, 9)), how  # rank 0 writes, once
        for step in range(1, 9):
            np.testing.assert_allclose(got[step], want[step], rtol=1e-5, err_msg=f"{how} step {step}")
        heldout = [r["heldout"] for r in _log(out) if "heldout" in r]
        for a, b in zip(heldout, [r["heldout"] for r in _log(ref) if "heldout" in r], strict=True):
            np.testing.assert_allclose([a["x"], a["y"]], [b["x"], b["y"]], rtol=1e-5, err_msg=how)
        meta = json.loads((out / "checkpoints" / "step-0000004" / "trainer_state.json").read_text())
        assert meta["world_size"] == 2 and meta["settings"]["global_batch"] == 8
        assert meta["settings"]["reweight_group"] == 4 and "micro_batch_size" not in meta["settings"]
        # the final model loads in transformers as it is, with the one-process weights
        model = transformers.AutoModelForCausalLM.from_pretrained(out / "final")
        single = transformers.AutoModelForCausalLM.from_pretrained(ref / "final")
        for (name, a), (_, b) in zip(model.state_dict().items(), single.state_dict().items()):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=f"{how} {name}")

        # the two-process checkpoint resumes on one process with the same global batch: the same curve
        one = tmp_path / f"{how}-resumed-one"
        os.makedirs(one / "checkpoints")
        shutil.copytree(out / "checkpoints" / "step-0000004", one / "checkpoints" / "step-0000004")
        run_train(_cfg(mixdir, one, 4, 2), quiet=True)
        again = _curve(one)
        assert sorted(again) == [5, 6, 7, 8]
        for step in range(5, 9):
            np.testing.assert_allclose(again[step], want[step], rtol=1e-5, err_msg=f"{how} step {step}")

    # another global batch is refused, with the numbers that would fit
    other = tmp_path / "resumed-other"
    os.makedirs(other / "checkpoints")
    shutil.copytree(runs["ddp"] / "checkpoints" / "step-0000004", other / "checkpoints" / "step-0000004")
    with pytest.raises(UserError) as e:
        run_train(_cfg(mixdir, other, 2, 2), quiet=True)
    msg = str(e.value)
    assert "global_batch: 8 -> 4" in msg and "written by 2 processes" in msg
    assert "micro_batch_size x grad_accum = 8" in msg
