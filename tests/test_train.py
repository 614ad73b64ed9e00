"""curate train on CPU: loss goes down, exact resume, checkpoints load in transformers, options run."""
from __future__ import annotations

import json
import os
import textwrap

import numpy as np
import pytest
from conftest import two_domain_mix

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from curate.core.recipe import RecipeError  # noqa: E402
from curate.train.config import TrainConfig, parse_config  # noqa: E402
from curate.train.trainer import Trainer, learning_rate, run_train  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def mixdir(tmp_path_factory):
    """Two domains of the sample corpus's paragraphs, tokenized and mixed into 64-token sequences."""
    return two_domain_mix(tmp_path_factory.mktemp("trainmix"), vocab_size=512, seq_length=64, total_tokens=80000,
                          heldout_tokens=2000, phases=[{"name": "base", "fraction": 0.8, "weights": {"x": 0.7, "y": 0.3}},
                                                       {"name": "anneal", "fraction": 0.2, "upsample": {"y": 3}}])


def _cfg(mixdir, out, **over) -> TrainConfig:
    base = {"data": str(mixdir), "output": str(out), "model": {"hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 176}, "micro_batch_size": 8, "max_steps": 40,
            "lr": 0.005, "warmup_steps": 5, "eval_every": 20, "eval_sequences": 16, "checkpoint_every": 20,
            "log_every": 5}
    base.update(over)
    return parse_config(json.dumps(base), "test-config")


def _losses(out):
    with open(os.path.join(out, "log.jsonl")) as f:
        return [(r["step"], r["loss"]) for r in map(json.loads, f) if "loss" in r]


def test_training_lowers_heldout_loss_and_checkpoint_loads(mixdir, tmp_path):
    out = tmp_path / "run"
    res = run_train(_cfg(mixdir, out, max_steps=150, checkpoint_every=50, eval_every=50), quiet=True)
    with open(out / "log.jsonl") as f:
        recs = [json.loads(line) for line in f]
    first, last = recs[0]["heldout"], res["heldout"]
    for d in ("x", "y"):
        assert last[d] < first[d] - 1.0, (d, first[d], last[d])  # from ~ln(512)=6.2 to well below
    assert [r["phase"] for r in recs if "phase" in r][0] == "base" and recs[-2]["phase"] == "anneal"
    assert sum(1 for r in recs if r.get("phase") == "anneal") == 30  # 20% of the sequences -> 20% of the steps
    assert any("tokens_per_s" in r for r in recs)
    # the checkpoint is a plain transformers model folder, with the tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(res["final"])
    tok = AutoTokenizer.from_pretrained(res["final"])
    assert model.config.model_type == "llama" and model.config.vocab_size == 512
    ids = tok("The committee met on Tuesday to discuss", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        out_ids = model.generate(ids, max_new_tokens=5, do_sample=False)
    assert out_ids.shape[1] == ids.shape[1] + 5
    # held-out loss recomputed from the loaded checkpoint equals the trainer's
    from curate.mix.indexed import IndexedReader

    valid = torch.from_numpy(np.asarray(IndexedReader(os.path.join(mixdir, "valid", "x")).tokens[:16], dtype=np.int64))
    with torch.inference_mode():
        loss = model(input_ids=valid, labels=valid).loss.item()
    assert abs(loss - last["x"]) < 1e-3
    assert sorted(os.listdir(out / "checkpoints")) == ["step-0000100", "step-0000150"]  # keep_checkpoints: 2


def test_resume_reproduces_the_uninterrupted_run(mixdir, tmp_path):
    full = tmp_path / "full"
    run_train(_cfg(mixdir, full), quiet=True)
    part = tmp_path / "part"
    stopped = run_train(_cfg(mixdir, part), quiet=True, stop_at_step=20)
    assert stopped == {"stopped_at": 20}
    assert os.path.exists(part / "checkpoints" / "step-0000020" / "trainer_state.pt")
    # a crash between checkpoints leaves log lines past the checkpoint: they are rewritten on resume
    with open(part / "log.jsonl", "a") as f:
        f.write(json.dumps({"step": 23, "loss": 99.0}) + "\n")
    run_train(_cfg(mixdir, part), quiet=True)
    a, b = _losses(full), _losses(part)
    assert [s for s, _ in a] == list(range(1, 41)) == [s for s, _ in b]
    assert a == b  # bit-identical loss curve
    from safetensors.torch import load_file

    wa = load_file(full / "final" / "model.safetensors")
    wb = load_file(part / "final" / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_reweighting_and_online_mixture_run_and_resume(mixdir, tmp_path):
    cfg = _cfg(mixdir, tmp_path / "rw", reweight={"strategy": "linupper", "r": 0.4, "warmup_steps": 10},
               online_mixture={"eta": 2.0, "every": 10}, eval_every=10)
    run_train(cfg, quiet=True, stop_at_step=20)
    res = run_train(_cfg(mixdir, tmp_path / "rw", reweight={"strategy": "linupper", "r": 0.4, "warmup_steps": 10},
                         online_mixture={"eta": 2.0, "every": 10}, eval_every=10), quiet=True)
    with open(tmp_path / "rw" / "log.jsonl") as f:
        recs = [json.loads(line) for line in f]
    mixes = [r["mixture"] for r in recs if "mixture" in r]
    assert len(mixes) == 4 and all(abs(sum(m.values()) - 1) < 1e-9 for m in mixes)
    assert mixes[0] != mixes[-1]
    assert any(r.get("weight_max", 1.0) > 1.0 for r in recs if r.get("step", 0) > 10)
    assert all("weight_max" not in r or r["weight_max"] == 1.0 for r in recs if 0 < r.get("step", 0) <= 10)
    assert res["heldout"]["x"] < recs[0]["heldout"]["x"]
    # the same run without interruption gives the same curve (cursors and weights are resumed)
    run_train(_cfg(mixdir, tmp_path / "rw2", reweight={"strategy": "linupper", "r": 0.4, "warmup_steps": 10},
                   online_mixture={"eta": 2.0, "every": 10}, eval_every=10), quiet=True)
    assert _losses(tmp_path / "rw") == _losses(tmp_path / "rw2")


def test_downstream_tasks_in_results(mixdir, tmp_path):
    task = tmp_path / "tiny_mc.jsonl"
    with open(task, "w") as f:
        for i in range(6):
            f.write(json.dumps({"query": "Question: where do people travel?", "choices": ["to the city", "zq xv"],
                                "gold": i % 2}) + "\n")
    lam = tmp_path / "tiny_lambada.jsonl"
    with open(lam, "w") as f:
        f.write(json.dumps({"context": "The committee met on", "continuation": "Tuesday"}) + "\n")
    res = run_train(_cfg(mixdir, tmp_path / "t", max_steps=10, eval_tasks=[str(task), str(lam)]), quiet=True)
    assert res["tasks"]["tiny_mc"]["n"] == 6 and 0 <= res["tasks"]["tiny_mc"]["acc"] <= 1
    assert "ppl" in res["tasks"]["tiny_lambada"]
    with open(tmp_path / "t" / "results.json") as f:
        assert json.load(f)["tasks"]["tiny_mc"]["n"] == 6


def test_schedules():
    cfg = TrainConfig(data="d", output="o", lr=1.0, min_lr_ratio=0.1, warmup_steps=10, schedule="cosine")
    lrs = [learning_rate(cfg, s, 100) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])) and lrs[-1] == pytest.approx(0.1, abs=0.01)
    cfg.schedule, cfg.decay_fraction = "wsd", 0.2
    lrs = [learning_rate(cfg, s, 100) for s in range(101)]
    assert lrs[10:80] == [1.0] * 70 and lrs[100] == pytest.approx(0.1) and lrs[90] == pytest.approx(0.55)


def test_config_errors_name_lines(mixdir, tmp_path):
    text = textwrap.dedent("""\
        data: x
        output: y
        micro_batch: 4
        reweight: {strategy: linuper}
        schedule: cosine
        """)
    with pytest.raises(RecipeError) as e:
        parse_config(text, "train.yaml")
    assert "train.yaml:3" in str(e.value) and "micro_batch_size" in str(e.value)
    with pytest.raises(RecipeError, match="reweight.strategy"):
        parse_config("data: x\noutput: y\nreweight: {strategy: linuper}\n", "t.yaml")
    with pytest.raises(FileNotFoundError, match="curate mix"):
        Trainer(_cfg(tmp_path, tmp_path / "o"), quiet=True)


def test_bf16_autocast_path_runs_on_cpu(mixdir, tmp_path):
    """The GPU precision path (bf16 autocast) exercised on CPU, where torch supports it too."""
    res = run_train(_cfg(mixdir, tmp_path / "bf16", max_steps=6, dtype="bfloat16", eval_every=3), quiet=True)
    assert np.isfinite(res["heldout"]["x"]) and res["heldout"]["x"] < 6.5


def test_125m_example_config_builds_a_125m_model(mixdir):
    from curate.train.config import load_config
    from curate.train.trainer import MixData, build_model, model_flops_per_token

    cfg = load_config(os.path.join(ROOT, "samples", "train-125m.yaml"))
    data = MixData(str(mixdir))
    data.manifest["tokenizer"]["vocab_size"] = 49152  # the shape with a SmolLM-sized vocabulary
    with torch.device("meta"):
        model = build_model(cfg, data)
    n = sum(p.numel() for p in model.parameters())
    assert 120e6 < n < 140e6, n
    assert model_flops_per_token(model, 2048) > 6 * n
