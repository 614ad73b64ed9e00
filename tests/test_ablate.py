"""`curate ablate`: spec validation, exact equal budgets, paired intervals, caching/resume, determinism.

Real components throughout: the local Beam runner, a BPE tokenizer trained on the sample corpus,
`curate mix`, and a tiny Llama trained for a few steps per arm and seed.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import textwrap

import pytest

from curate.ablate.run import format_table, run_ablation
from curate.ablate.spec import parse_ablate
from curate.ablate.stats import paired_ci
from curate.core.recipe import RecipeError
from curate.core.safety import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "samples", "corpus")
TASKS = os.path.join(ROOT, "samples", "ablate", "tasks.jsonl")

SPEC = """\
pool: {pool}
tokenizer: {{vocab_size: 400}}
seq_length: 32
budget_tokens: 800
seeds: [0, 1]
arms:
  random: {{}}
  fineweb:
    stages:
      - fineweb_quality: {{}}
  ranked:
    stages:
      - gopher_quality: {{mode: annotate, add_scores: true}}
    order_by: gopher_alpha_words_ratio
model: {{hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 64}}
train: {{micro_batch_size: 4, lr: 3.0e-3, warmup_steps: 2, eval_every: 3}}
eval:
  targets:
    web2: {{path: {target}, max_tokens: 256}}
  tasks: [{tasks}]
  tasks_limit: 6
"""


def make_spec(tmp, **over):
    pool = tmp / "pool"
    pool.mkdir(exist_ok=True)
    shutil.copy(os.path.join(CORPUS, "web-0.jsonl"), pool / "web-0.jsonl")
    text = SPEC.format(pool=pool / "web-0.jsonl", target=os.path.join(CORPUS, "web-2.jsonl.gz"), tasks=TASKS)
    return parse_ablate(text, str(tmp / "ablate.yaml"), base_dir=str(tmp))


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ablate")
    spec = make_spec(tmp)
    out = tmp / "out"
    result = run_ablation(spec, str(out))
    return spec, out, result


# ------------------------------------------------------------------------------------ validation


def test_spec_problems_have_file_lines_and_suggestions(tmp_path):
    text = textwrap.dedent(f"""\
        pool: {CORPUS}/web-0.jsonl
        tokenizer: {{vocab_size: 400}}
        budget_token: 800
        seeds: [0, 0]
        arms:
          random: {{}}
          "../evil": {{}}
          rules:
            stages:
              - fineweb_qualty: {{}}
              - gopher_quality: {{min_stop_word: 2}}
            order_bye: x
        model: {{hidden_size: 32}}
        train: {{micro_batch_size: 4, lrr: 0.1}}
        eval:
          targets:
            t: {{path: {tmp_path}/missing.jsonl}}
        """)
    with pytest.raises(RecipeError) as e:
        parse_ablate(text, "a.yaml", base_dir=str(tmp_path))
    msg = str(e.value)
    assert "a.yaml:3: ablation spec: unknown key 'budget_token' (did you mean 'budget_tokens'?)" in msg
    assert "a.yaml:1: missing required key 'budget_tokens'" in msg
    assert "a.yaml:4: seeds must be a list of distinct integers" in msg
    assert "a.yaml:7: arm name '../evil' is not a valid name" in msg
    assert "a.yaml:10: arm 'rules': unknown stage 'fineweb_qualty' (did you mean 'fineweb_quality'?)" in msg
    assert "a.yaml:11: arm 'rules': stage 'gopher_quality': unknown parameter 'min_stop_word' (did you mean 'min_stop_words'?)" in msg
    assert "a.yaml:12: arm 'rules': unknown key 'order_bye' (did you mean 'order_by'?)" in msg
    assert "a.yaml:14: train: unknown key 'lrr' (did you mean 'lr'?)" in msg
    assert "a.yaml:17: target 't':" in msg and "is not a file" in msg


def test_baseline_must_be_an_arm_and_budget_fit_a_batch(tmp_path):
    spec = make_spec(tmp_path)  # the valid spec parses
    assert spec.max_steps == (800 - 32) // (4 * 32)
    text = SPEC.format(pool=os.path.join(CORPUS, "web-0.jsonl"), target=os.path.join(CORPUS, "web-2.jsonl.gz"), tasks=TASKS)
    with pytest.raises(RecipeError, match=r"s.yaml:\d+: the baseline arm 'randm' is not among the arms \(did you mean 'random'\?\)"):
        parse_ablate(text + "baseline: randm\n", "s.yaml")
    with pytest.raises(RecipeError, match="budget_tokens 100 is less than one batch plus one sequence"):
        parse_ablate(text.replace("budget_tokens: 800", "budget_tokens: 100"), "s.yaml")


def test_cli_exit_2_on_a_bad_spec(tmp_path, capsys):
    from curate.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("pool: nowhere/*.jsonl\narms: {random: {}}\n")
    assert main(["ablate", str(bad), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "ablation spec error" in err and "bad.yaml:1: pool: 'nowhere/*.jsonl' matches no file" in err


def test_output_overlapping_the_pool_is_refused(tmp_path):
    spec = make_spec(tmp_path)
    spec.pool["path"] = [str(tmp_path / "pool")]  # a folder: everything below it is read
    with pytest.raises(UserError, match="lies inside"):
        run_ablation(spec, str(tmp_path / "pool" / "ablate"))
    assert not (tmp_path / "pool" / "ablate").exists()


# ------------------------------------------------------------------------------------- statistics


def test_paired_ci_on_constructed_numbers():
    # differences 0.5, 1.0, 1.5: mean 1, sd 0.5, t(0.975, 2) = 4.302653 -> half width 1.242070
    r = paired_ci({0: 1.0, 1: 2.0, 2: 3.0}, {0: 0.5, 1: 1.0, 2: 1.5})
    assert r["n"] == 3 and r["mean"] == pytest.approx(1.0)
    assert r["lo"] == pytest.approx(1 - 4.302653 * 0.5 / math.sqrt(3), abs=1e-5)
    assert r["hi"] == pytest.approx(1 + 4.302653 * 0.5 / math.sqrt(3), abs=1e-5)
    assert not r["significant"]  # the interval contains 0
    # consistent differences: 0.9, 1.0, 1.1 -> [0.7516, 1.2484], significant
    r = paired_ci({0: 1.9, 1: 2.0, 2: 2.1}, {0: 1.0, 1: 1.0, 2: 1.0})
    assert r["lo"] == pytest.approx(1 - 4.302653 * 0.1 / math.sqrt(3), abs=1e-5) and r["significant"]
    # pairing is by seed: only seeds present in both count; one pair gives no interval
    r = paired_ci({0: 2.0, 5: 9.0}, {0: 1.0, 1: 7.0})
    assert r["n"] == 1 and r["lo"] is None and not r["significant"]


# ------------------------------------------------------------------------------------ the loop


def test_every_arm_trains_on_exactly_the_budget(ablation):
    spec, out, result = ablation
    assert set(result["arms"]) == {"random", "fineweb", "ranked"}
    trained = set()
    for name, arm in result["arms"].items():
        assert arm["tokens"] == spec.budget_tokens, name  # realized by the mix, exactly
        sel = arm["selection"]
        assert sel["tokens_selected"] >= spec.budget_tokens
        manifest = json.load(open(out / arm["folder"] / next(p for p in os.listdir(out / arm["folder"])
                                                            if p.startswith("mix-") and not p.endswith(".json")) / "manifest.json"))
        assert manifest["phases"][0]["realized_tokens"] == spec.budget_tokens
        assert manifest["domains"]["train"]["epochs_total"] <= 1.0  # nothing repeats
        for run in arm["runs"].values():
            assert run["steps"] == spec.max_steps
            trained.add(run["trained_tokens"])
            assert run["curves"]["web2"][0][0] == 0 and run["curves"]["web2"][-1][0] == spec.max_steps
    assert trained == {spec.max_steps * 4 * 32}  # the same number of training tokens in every run
    # the rules filter dropped documents; the ranked arm took the best-scored ones first
    assert result["arms"]["fineweb"]["selection"]["documents_in_arm"] < result["arms"]["random"]["selection"]["documents_in_arm"]
    assert "score_cutoff" in result["arms"]["ranked"]["selection"]
    # the table, ablate.json and the plot
    assert (out / "ablate.json").exists() and (out / "ablate.png").stat().st_size > 1000
    table = format_table(result)
    assert "loss/web2 (lower is better)" in table and "tasks/acc (higher is better)" in table
    assert "significant" in table and "(baseline)" in table
    assert set(result["metrics"]) >= {"loss/web2", "tasks/acc", "tasks/acc_norm"}
    d = result["arms"]["fineweb"]["diff"]["loss/web2"]
    assert d["n"] == 2 and d["lo"] <= d["mean"] <= d["hi"]


def test_rerun_is_cached_and_a_lost_run_retrains_identically(ablation):
    spec, out, result = ablation
    again = run_ablation(spec, str(out))
    assert again["trained_runs"] == 0
    assert format_table(again) == format_table(result)
    # remove one seed's run: only it trains again, and it reproduces the same numbers (same spec + seed)
    arm = result["arms"]["fineweb"]
    run_root = out / arm["folder"] / "runs"
    (key,) = os.listdir(run_root)
    shutil.rmtree(run_root / key / "seed-1")
    third = run_ablation(spec, str(out))
    assert third["trained_runs"] == 1
    assert third["arms"]["fineweb"]["runs"]["1"]["metrics"] == arm["runs"]["1"]["metrics"]
    assert format_table(third) == format_table(result)
    # a changed budget is another arm definition: new folders, the old ones stay
    assert len(os.listdir(out / "arms")) == 3


def test_a_task_that_cannot_fit_fails_before_training(tmp_path):
    spec = make_spec(tmp_path)
    task = tmp_path / "long.jsonl"
    task.write_text(json.dumps({"query": "Pick one:", "choices": ["word " * 80, "no"], "gold": 1}) + "\n")
    spec.tasks = [str(task)]
    with pytest.raises(UserError, match="does not fit seq_length 32"):
        run_ablation(spec, str(tmp_path / "out"))
    assert not (tmp_path / "out" / "arms").exists()


# ------------------------------------------------------------------- leaks and validate_spec


def _train_fasttext(tmp, name: str, positive: str, negative: str) -> str:
    """A real fastText quality model (`curate train-scorer`), with its MODEL.json naming the training files."""
    from curate.cli import main

    model = str(tmp / f"{name}.bin")
    assert main(["train-scorer", "quality", "--positive-data", positive, "--negative-data", negative,
                 "--output", model, "--epoch", "2", "--valid-fraction", "0.2"]) == 0
    assert os.path.isfile(model + ".json")
    return model


CLASSIFIER_ARM = """\
  classifier:
    stages:
      - quality_classifier: {{model: {model}, min_score: 0.0}}
    order_by: quality
"""


def _spec_with_classifier(tmp, model: str, name: str = "spec.yaml") -> str:
    pool = tmp / "pool"
    pool.mkdir(exist_ok=True)
    shutil.copy(os.path.join(CORPUS, "web-0.jsonl"), pool / "web-0.jsonl")
    text = SPEC.format(pool=pool / "web-0.jsonl", target=os.path.join(CORPUS, "web-2.jsonl.gz"), tasks=TASKS)
    text = text.replace("model: {hidden_size", CLASSIFIER_ARM.format(model=model) + "model: {hidden_size")
    path = tmp / name
    path.write_text(text)
    return str(path)


def test_a_classifier_trained_on_a_target_is_refused_and_validate_spec_says_so(tmp_path):
    from curate.ablate.spec import load_ablate, training_files, validate_spec

    target = os.path.join(CORPUS, "web-2.jsonl.gz")  # the spec's held-out loss target
    leaky = _train_fasttext(tmp_path, "leaky", target, os.path.join(CORPUS, "web-1.jsonl"))
    assert os.path.realpath(target) in training_files(leaky)["positive_data"]
    path = _spec_with_classifier(tmp_path, leaky)
    with pytest.raises(RecipeError, match=r"spec.yaml:\d+: arm 'classifier': its model .*leaky.bin was trained on .*"
                                          r"web-2.jsonl.gz \(positive_data .*\), which is the evaluation's target 'web2'"):
        parse_ablate(open(path).read(), path, base_dir=str(tmp_path))
    problems = validate_spec(path)
    assert len(problems) == 1 and "a leak" in problems[0]
    with pytest.raises(RecipeError):  # and `curate ablate` stops there, before anything runs
        run_ablation(load_ablate(path), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_validate_spec_clean_and_broken(tmp_path):
    from curate.ablate.spec import validate_spec

    clean = _train_fasttext(tmp_path, "clean", os.path.join(CORPUS, "web-0.jsonl"), os.path.join(CORPUS, "web-1.jsonl"))
    path = _spec_with_classifier(tmp_path, clean)
    assert validate_spec(path, output=str(tmp_path / "out")) == []
    assert not (tmp_path / "out").exists()  # nothing written
    # a missing model file: the arm's recipe check (as `curate run` would report it)
    broken = _spec_with_classifier(tmp_path, str(tmp_path / "missing.bin"), "broken.yaml")
    problems = validate_spec(broken)
    assert problems and any("missing.bin" in p for p in problems), problems
    # an output inside the pool folder
    spec_text = open(path).read().replace(str(tmp_path / "pool" / "web-0.jsonl"), str(tmp_path / "pool"))
    (tmp_path / "spec2.yaml").write_text(spec_text)
    problems = validate_spec(str(tmp_path / "spec2.yaml"), output=str(tmp_path / "pool" / "abl"))
    assert any("lies inside" in p for p in problems), problems
    # with a tokenizer path, the token checks run too (a task continuation longer than seq_length)
    from curate.tokenizer import train_tokenizer

    train_tokenizer([os.path.join(CORPUS, "web-0.jsonl")], str(tmp_path / "tok"), vocab_size=300)
    tiny = open(path).read().replace("tokenizer: {vocab_size: 400}", f"tokenizer: {tmp_path / 'tok'}") \
        .replace("seq_length: 32", "seq_length: 4").replace("budget_tokens: 800", "budget_tokens: 2000")
    (tmp_path / "spec3.yaml").write_text(tiny)
    problems = validate_spec(str(tmp_path / "spec3.yaml"))
    assert any("does not fit seq_length" in p for p in problems), problems
