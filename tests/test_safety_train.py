"""curate train refuses what is unsafe or wrong before it runs (issue 9): pickled trainer states,
leftover temporary checkpoints, silent config changes on resume, unknown model keys, out-of-range
values, partial mixes, overlapping outputs and bad command-line overrides."""
from __future__ import annotations

import json
import os
import re
import shutil
import textwrap

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from test_train import _cfg, _losses, mixdir  # noqa: E402,F401  (fixtures and helpers, not copied)

from curate.cli import main  # noqa: E402
from curate.core.recipe import RecipeError  # noqa: E402
from curate.core.safety import UserError  # noqa: E402
from curate.train.config import parse_config  # noqa: E402
from curate.train.trainer import STATE_JSON, STATE_PT, clean_temp_folders, run_train  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = {"max_steps": 4, "checkpoint_every": 2, "eval_every": 0, "log_every": 1, "warmup_steps": 1}


def _small(mixdir, out, **over):
    return _cfg(mixdir, out, **{**SMALL, **over})


def _stopped(mixdir, out, **over):
    """A run stopped after its step-2 checkpoint."""
    assert run_train(_small(mixdir, out, **over), quiet=True, stop_at_step=2) == {"stopped_at": 2}
    return os.path.join(out, "checkpoints", "step-0000002")


class _Evil:
    """Unpickling this creates a file: what a checkpoint from elsewhere could do with weights_only=False."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


# ----------------------------------------------------------------------------- 1. weights_only


def test_checkpoint_holds_tensors_in_pt_and_the_rest_in_json(mixdir, tmp_path):
    ckpt = _stopped(mixdir, tmp_path / "run")
    st = torch.load(os.path.join(ckpt, STATE_PT), weights_only=True)
    assert set(st) == {"optimizer", "torch_rng"} and isinstance(st["torch_rng"], torch.Tensor)
    with open(os.path.join(ckpt, STATE_JSON)) as f:
        meta = json.load(f)
    assert meta["step"] == 2 and meta["max_steps"] == 4
    assert meta["settings"]["lr"] == 0.005 and meta["settings"]["model.hidden_size"] == 64


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_pickled_trainer_state_is_refused_and_not_executed(mixdir, tmp_path, how):
    out = tmp_path / "run"
    ckpt = _stopped(mixdir, out)
    marker = tmp_path / "pwned"
    evil = {"optimizer": _Evil(marker), "torch_rng": torch.get_rng_state()}
    if how == "torch.save":
        torch.save(evil, os.path.join(ckpt, STATE_PT))
    else:
        import pickle

        with open(os.path.join(ckpt, STATE_PT), "wb") as f:
            pickle.dump(evil, f)
    assert not marker.exists()
    with pytest.raises(UserError, match="refused: it holds Python objects") as e:
        run_train(_small(mixdir, out), quiet=True)
    assert STATE_PT in str(e.value) and "\n" not in str(e.value)
    assert not marker.exists()  # nothing ran


def test_checkpoint_without_json_state_is_refused(mixdir, tmp_path):
    """A checkpoint of the old format (everything pickled in the .pt) is not loaded with weights_only=False."""
    out = tmp_path / "run"
    ckpt = _stopped(mixdir, out)
    os.remove(os.path.join(ckpt, STATE_JSON))
    with pytest.raises(UserError, match="older curate"):
        run_train(_small(mixdir, out), quiet=True)


# ----------------------------------------------------------------------- 2. temporary folders


def test_save_killed_midway_leaves_temp_folder_that_the_next_run_removes(mixdir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    real_save = torch.save

    def killed(obj, path, *a, **k):
        raise KeyboardInterrupt("killed while writing the checkpoint")

    monkeypatch.setattr(torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        run_train(_small(mixdir, out), quiet=True)
    monkeypatch.setattr(torch, "save", real_save)
    ckpts = out / "checkpoints"
    left = [d for d in os.listdir(ckpts) if d.startswith(".step-0000002.")]
    assert len(left) == 1  # the bug: this stayed forever
    # folders that only look similar are not curate's: left alone
    for name in (".step-0000002.notmine", ".mine", "step-notes"):
        os.makedirs(ckpts / name)
    os.makedirs(out / ".final.0badc0de")  # a final/ whose save was killed
    run_train(_small(mixdir, out), quiet=True)
    assert sorted(os.listdir(ckpts)) == [".mine", ".step-0000002.notmine", "step-0000002", "step-0000004", "step-notes"]
    assert not (out / ".final.0badc0de").exists() and (out / "final" / "model.safetensors").exists()


def test_checkpoint_set_aside_by_a_killed_save_is_put_back(tmp_path):
    ckpts = tmp_path / "checkpoints"
    os.makedirs(ckpts / ".step-0000002.1234abcd.old")  # step-0000002 was renamed away, its successor not yet in
    (ckpts / ".step-0000002.1234abcd.old" / "trainer_state.json").write_text("{}")
    os.makedirs(ckpts / ".step-0000002.9999ffff")  # the successor, incomplete
    os.makedirs(ckpts / "step-0000004")
    os.makedirs(ckpts / ".step-0000004.aaaabbbb.old")  # set aside, but step-0000004 is there: stale
    done = clean_temp_folders(str(tmp_path))
    assert sorted(os.listdir(ckpts)) == ["step-0000002", "step-0000004"]
    assert (ckpts / "step-0000002" / "trainer_state.json").exists()
    assert any("put back" in d for d in done) and sum("removed" in d for d in done) == 2


# --------------------------------------------------------------------- 3. config change on resume


def test_resume_with_changed_settings_is_refused_listing_them(mixdir, tmp_path):
    out = tmp_path / "run"
    _stopped(mixdir, out)
    changed = _small(mixdir, out, lr=0.001, max_steps=6, model={"hidden_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "intermediate_size": 176, "hidden_act": "gelu"})
    with pytest.raises(UserError) as e:
        run_train(changed, quiet=True)
    msg = str(e.value)
    assert "lr: 0.005 -> 0.001" in msg and "max_steps: 4 -> 6" in msg
    assert 'model.hidden_act: "silu" -> "gelu"' in msg and "--allow-config-change" in msg
    assert "micro_batch_size" not in msg  # only what changed
    # nothing was written: the checkpoint is still the newest
    assert sorted(os.listdir(out / "checkpoints")) == ["step-0000002"]
    res = run_train(changed, quiet=True, allow_config_change=True)
    assert res["steps"] == 6
    lrs = {s: r for s, r in ((r["step"], r["lr"]) for r in map(json.loads, open(out / "log.jsonl")) if "lr" in r)}
    assert lrs[6] <= 0.001  # the new schedule from the checkpoint on


def test_resume_with_free_settings_changed_is_exact(mixdir, tmp_path):
    """Logging, evaluation, checkpointing settings and the mix's location may change: the curve is the same."""
    full = tmp_path / "full"
    run_train(_small(mixdir, full), quiet=True)
    part = tmp_path / "part"
    _stopped(mixdir, part)
    moved = tmp_path / "moved-mix"
    shutil.copytree(mixdir, moved)
    run_train(_small(moved, part, log_every=3, eval_every=1, keep_checkpoints=5, checkpoint_every=1,
                     eval_sequences=4, eval_tasks_limit=10, seed=0), quiet=True)
    assert _losses(full) == _losses(part)


def test_cli_allow_config_change_flag(mixdir, tmp_path, capsys):
    out = tmp_path / "run"
    _stopped(mixdir, out)
    cfg = tmp_path / "train.yaml"
    base = {"data": str(mixdir), "output": str(out), "model": {"hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 176}, "micro_batch_size": 8, "lr": 0.002,
            "eval_sequences": 16, **SMALL}
    cfg.write_text(json.dumps(base))
    assert main(["train", str(cfg), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lr: 0.005 -> 0.002" in err and "Traceback" not in err
    assert main(["train", str(cfg), "--quiet", "--allow-config-change"]) == 0
    captured = capsys.readouterr()
    assert "trained 4 steps" in captured.out and "lr: 0.005 -> 0.002" in captured.err


# ----------------------------------------------------------------------------- 4. model keys


def test_unknown_model_key_is_refused_with_line_and_suggestion():
    text = textwrap.dedent("""\
        data: x
        output: y
        model:
          hidden_size: 64
          hiden_act: gelu
        """)
    with pytest.raises(RecipeError) as e:
        parse_config(text, "t.yaml")
    assert "t.yaml:5" in str(e.value) and "'hiden_act'" in str(e.value) and "did you mean 'hidden_act'" in str(e.value)


@pytest.mark.parametrize("line,expect", [
    ("hidden_size: 64.0", "hidden_size must be an integer"),
    ("hidden_size: true", "hidden_size must be an integer"),
    ("rms_norm_eps: '1e-5'", "rms_norm_eps must be a number"),
    ("tie_word_embeddings: 1", "tie_word_embeddings must be true or false"),
    ("hidden_act: 1", "hidden_act must be a string"),
    ("hidden_act: gelu_neww", "did you mean 'gelu_new'"),
    ("num_hidden_layers: 0", "num_hidden_layers must be >= 1"),
    ("rope_theta: -1.0", "rope_theta must be > 0"),
    ("attention_dropout: 1.5", "attention_dropout must be in [0, 1)"),
    ("vocab_size: 100", "the trainer sets it from the mix's tokenizer"),
    ("eos_token_id: 0", "the trainer sets it"),
    ("dtype: bfloat16", "top-level dtype"),
    ("num_attention_heads: 5", "not divisible by num_attention_heads"),
    ("num_key_value_heads: 3", "not divisible by num_key_value_heads"),
])
def test_model_values_are_type_and_range_checked(line, expect):
    text = f"data: x\noutput: y\nmodel:\n  hidden_size: 64\n  {line}\n"
    if line.startswith("hidden_size"):
        text = f"data: x\noutput: y\nmodel:\n  {line}\n"
    with pytest.raises(RecipeError) as e:
        parse_config(text, "t.yaml")
    assert expect in str(e.value) and "t.yaml:" in str(e.value), str(e.value)


def test_valid_model_keys_pass():
    cfg = parse_config("data: x\noutput: y\nmodel: {hidden_size: 64, num_attention_heads: 4, num_key_value_heads: 2, "
                       "rope_theta: 500000, hidden_act: gelu, attention_bias: true, max_position_embeddings: 4096, "
                       "rms_norm_eps: 1.0e-5, initializer_range: 0.02, head_dim: null}\n", "t.yaml")
    assert cfg.model["rope_theta"] == 500000
    for sample in ("train-quickstart.yaml", "train-125m.yaml"):  # the shipped configs stay valid
        from curate.train.config import load_config
        from test_train import ROOT

        load_config(os.path.join(ROOT, "samples", sample))


# ----------------------------------------------------------------------------- 5. value ranges


# configure's conventions (numbers >= 0, *_size >= 1, fractions in [0, 1]) or the trainer's own
# rules may catch a value first: either way the message names the key, the bound and the line
@pytest.mark.parametrize("line,expect", [
    ("lr: 0", r"lr must be a number > 0"),
    ("lr: .nan", r"'?lr'? must be a (finite )?number"),
    ("warmup_steps: -1", r"warmup_steps'? must be (an integer )?>= 0"),
    ("max_steps: 0", r"max_steps must be an integer >= 1"),
    ("micro_batch_size: 0", r"micro_batch_size'? must be (an integer )?>= 1"),
    ("grad_accum: 0", r"grad_accum must be an integer >= 1"),
    ("eval_every: -1", r"eval_every'? must be (an integer )?>= 0"),
    ("checkpoint_every: -5", r"checkpoint_every'? must be (an integer )?>= 0"),
    ("keep_checkpoints: 0", r"keep_checkpoints must be an integer >= 1"),
    ("grad_clip: -1", r"grad_clip'? must be (a number )?>= 0"),
    ("betas: [0.9, 1.0]", r"betas must be two numbers in \[0, 1\)"),
    ("betas: [0.9]", r"betas must be two numbers in \[0, 1\)"),
    ("weight_decay: -0.1", r"weight_decay'? must be (a number )?>= 0"),
    ("min_lr_ratio: 1.5", r"min_lr_ratio must be a number in \[0, 1\]"),
    ("decay_fraction: 0", r"decay_fraction must be a number in \(0, 1\]"),
    ("eps: 0", r"eps must be a number > 0"),
    ("eval_sequences: 0", r"eval_sequences must be an integer >= 1"),
    ("eval_tasks_limit: 0", r"eval_tasks_limit must be an integer >= 1"),
    ("log_every: 0", r"log_every must be an integer >= 1"),
    ("seed: -1", r"seed'? must be (an integer )?>= 0"),
    ("device: gpu", r"device must be auto, cpu, cuda or cuda:N"),
    ("schedule: linear", r"schedule must be cosine, wsd or constant"),
    ("dtype: fp16", r"dtype must be auto, float32 or bfloat16"),
    ("compile: maybe", r"compile must be auto, true or false"),
    ("attn_implementation: fast", r"attn_implementation must be eager"),
    ("reweight: {r: 0}", r"reweight.r must be a number > 0"),
    ("reweight: {warmup_steps: -2}", r"warmup_steps'? must be (an integer )?>= 0"),
    ("reweight: {strategi: linupper}", r"did you mean 'strategy'"),
    ("online_mixture: {eta: -1}", r"eta'? must be (a number )?>= 0"),
    ("online_mixture: {every: -1}", r"every'? must be (an integer )?>= 0"),
    ("online_mixture: {min_weight: 2}", r"online_mixture.min_weight must be a number in \[0, 1\]"),
    ("online_mixture: {graph: [[1, 0]]}", r"online_mixture.graph must be a square matrix"),
    ("betas: 0.9", r"parameter 'betas' must be list of float"),
])
def test_config_values_are_range_checked_with_line(line, expect):
    text = f"data: x\noutput: y\nlr: 0.001\n{line}\n" if not line.startswith("lr") else f"data: x\noutput: y\n{line}\n"
    n = text.count("\n")  # the line under test is the last one
    with pytest.raises(RecipeError) as e:
        parse_config(text, "t.yaml")
    assert re.search(expect, str(e.value)), str(e.value)
    assert f"t.yaml:{n}:" in str(e.value), str(e.value)


def test_every_problem_is_listed_at_once():
    with pytest.raises(RecipeError) as e:
        parse_config("data: x\noutput: y\nlr: -1\nlog_every: 0\nmodel: {hiden_size: 3}\n", "t.yaml")
    assert [p.split(":")[1] for p in e.value.problems] == ["3", "4", "5"]


def test_zero_means_off_where_documented(mixdir, tmp_path):
    """eval_every 0, checkpoint_every 0 (only at the end) and grad_clip 0 (no clipping) run."""
    res = run_train(_small(mixdir, tmp_path / "run", eval_every=0, checkpoint_every=0, grad_clip=0.0,
                           compile=False), quiet=True)
    assert res["steps"] == 4 and os.listdir(tmp_path / "run" / "checkpoints") == ["step-0000004"]
    norms = [r["grad_norm"] for r in map(json.loads, open(tmp_path / "run" / "log.jsonl")) if "grad_norm" in r]
    assert len(norms) == 4 and all(n > 0 for n in norms)


# ----------------------------------------------------------------------- 6. data and output


def test_partial_mix_is_refused(mixdir, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(mixdir, partial)
    (partial / "_INCOMPLETE").write_text("curate mix: being written\n")
    with pytest.raises(UserError, match="did not finish"):
        run_train(_small(partial, tmp_path / "o1"), quiet=True)
    no_manifest = tmp_path / "no-manifest"
    shutil.copytree(mixdir, no_manifest)
    os.remove(no_manifest / "manifest.json")
    with pytest.raises(FileNotFoundError, match="not a finished `curate mix` output"):
        run_train(_small(no_manifest, tmp_path / "o2"), quiet=True)
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_output_overlapping_data_is_refused(mixdir, tmp_path):
    mix = tmp_path / "mix"
    shutil.copytree(mixdir, mix)
    with pytest.raises(UserError, match="lies inside"):
        run_train(_small(mix, mix / "model"), quiet=True)
    with pytest.raises(UserError, match="holds the input"):
        run_train(_small(mix, tmp_path), quiet=True)
    with pytest.raises(UserError, match="holds the input"):
        run_train(_small(mix, mix), quiet=True)
    assert not (mix / "model").exists() and not (mix / "log.jsonl").exists()


def test_missing_eval_task_is_refused_before_training(mixdir, tmp_path):
    with pytest.raises(FileNotFoundError, match="eval_tasks"):
        run_train(_small(mixdir, tmp_path / "run", eval_tasks=[str(tmp_path / "nope.jsonl")]), quiet=True)
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- 7. CLI overrides


@pytest.mark.parametrize("args,expect", [
    (["--max-steps", "0"], "--max-steps: max_steps must be an integer >= 1"),
    (["--max-steps", "-5"], "--max-steps: max_steps must be an integer >= 1"),
    (["--data", "does/not/exist"], "--data 'does/not/exist': no such folder"),
    (["--stop-at-step", "0"], "--stop-at-step must be an integer >= 1"),
])
def test_cli_overrides_are_validated(mixdir, tmp_path, capsys, args, expect):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(json.dumps({"data": str(mixdir), "output": str(tmp_path / "out"), **SMALL}))
    assert main(["train", str(cfg), "--quiet", *args]) == 2
    err = capsys.readouterr().err
    assert expect in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()
