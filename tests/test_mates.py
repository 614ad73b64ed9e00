"""MATES (curate.mates): exact probe restore, probe = fresh one-step run, Gumbel-top-k, the influence
model, the staged `curate train` loop end to end with its resume, and the `mates` scorer stage."""
from __future__ import annotations

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from conftest import read_output, two_domain_mix  # noqa: E402

from curate.core.recipe import RecipeError  # noqa: E402
from curate.mates.influence import fit_influence, load_influence, spearman  # noqa: E402
from curate.mates.probe import Snapshot, load_reference, probe, probe_batched  # noqa: E402
from curate.mates.select import gumbel_topk  # noqa: E402
from curate.train.config import parse_config  # noqa: E402
from curate.train.trainer import Trainer, learning_rate, run_train  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A two-domain mix of the sample corpus's paragraphs (64-token sequences) and a lambada-shaped reference."""
    root = tmp_path_factory.mktemp("mates")
    two_domain_mix(root, vocab_size=512, seq_length=64, total_tokens=40000, heldout_tokens=1000,
                   phases=[{"name": "base", "fraction": 1.0, "weights": {"x": 0.5, "y": 0.5}}])
    paras = pq.read_table(root / "y" / "data.parquet").column("text").to_pylist()
    ref = root / "reference.jsonl"
    with open(ref, "w") as f:
        for p in paras[-12:]:
            words = p.split()
            f.write(json.dumps({"context": " ".join(words[:-1]), "continuation": words[-1]}) + "\n")
    return {"mix": str(root / "mix"), "reference": str(ref), "root": root}


def _cfg(world, out, **over):
    base = {"data": world["mix"], "output": str(out), "model": {"hidden_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 64}, "micro_batch_size": 4, "max_steps": 12, "lr": 5e-3,
            "warmup_steps": 2, "eval_every": 0, "eval_sequences": 4, "checkpoint_every": 0, "log_every": 2,
            "device": "cpu"}  # fp32 on CPU everywhere: the exactness checks compare bit for bit
    base.update(over)
    return parse_config(json.dumps(base), "test-config")


def _state(trainer):
    params = [p.detach().clone() for p in trainer.model.parameters()]
    opt = {i: {k: v.clone() for k, v in st.items()} for i, st in enumerate(trainer.opt.state.values())}
    return params, opt


def _same(a, b):
    (pa_, oa), (pb, ob) = a, b
    assert all(torch.equal(x, y) for x, y in zip(pa_, pb))
    assert oa.keys() == ob.keys()
    for i in oa:
        assert oa[i].keys() == ob[i].keys() and all(torch.equal(oa[i][k], ob[i][k]) for k in oa[i])


def _reference(trainer, world, limit=8):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(trainer.data.manifest["tokenizer"]["path"])
    return load_reference(world["reference"], tok, trainer.data.seq_length, limit=limit)


def test_probe_restores_exactly_and_equals_a_fresh_one_step_run(world, tmp_path):
    out = tmp_path / "run"
    cfg = _cfg(world, out, max_steps=10)
    t = Trainer(cfg, quiet=True)
    t.train(stop_at_step=4)  # some optimizer state
    t.save(str(out / "checkpoints" / "step-0000004"))
    ref = _reference(t, world)
    before = _state(t)
    rows = t.data.rows(0, np.array([3, 17, 40]))
    lr = learning_rate(cfg, t.step, t.max_steps)
    res = probe(t.model, t.opt, rows, ref, lr, cfg.grad_clip, t.device)
    _same(before, _state(t))  # parameters and every optimizer tensor back, bit for bit
    assert res["seconds_per_doc"] > 0 and len(set(np.round(res["after"], 7))) == 3
    assert np.allclose(res["oracle"], res["before"] - res["after"])
    # the second probe (after a restore) equals one step on that doc from the checkpoint read from disk
    fresh = Trainer(cfg, quiet=True)
    fresh.resume(str(out / "checkpoints" / "step-0000004"))
    for g in fresh.opt.param_groups:
        g["lr"] = lr
    from curate.train.reweight import per_sample_loss

    ids = torch.from_numpy(rows[1:2])
    per_sample_loss(fresh.model(input_ids=ids, use_cache=False).logits.float(), ids).mean().backward()
    torch.nn.utils.clip_grad_norm_(list(fresh.model.parameters()), cfg.grad_clip)
    fresh.opt.step()
    assert ref.loss(fresh.model, fresh.device) == pytest.approx(res["after"][1], abs=1e-6)
    # batched with torch.func: the same numbers up to float rounding, the state untouched
    bat = probe_batched(t.model, t.opt, rows, ref, lr, cfg.grad_clip, t.device, batch=2)
    _same(before, _state(t))
    assert np.allclose(bat["after"], res["after"], rtol=0, atol=1e-5) and bat["before"] == res["before"]
    # from step 0 (no optimizer state yet) the restore also removes the state the probe step created
    t0 = Trainer(_cfg(world, tmp_path / "zero"), quiet=True)
    snap0 = _state(t0)
    seq0 = probe(t0.model, t0.opt, rows[:2], ref, 1e-3, 1.0, t0.device)
    _same(snap0, _state(t0))
    assert len(t0.opt.state) == 0
    bat0 = probe_batched(t0.model, t0.opt, rows[:2], ref, 1e-3, 1.0, t0.device, batch=2)
    assert np.allclose(bat0["after"], seq0["after"], rtol=0, atol=1e-5) and len(t0.opt.state) == 0


def test_snapshot_restore_puts_back_rng_and_lr(world, tmp_path):
    t = Trainer(_cfg(world, tmp_path / "s"), quiet=True)
    snap = Snapshot(t.model, t.opt)
    expect = torch.rand(3)
    torch.set_rng_state(snap.rng)
    t.opt.param_groups[0]["lr"] = 123.0
    with torch.no_grad():
        next(t.model.parameters()).add_(1.0)
    snap.restore(t.model, t.opt)
    assert t.opt.param_groups[0]["lr"] != 123.0 and torch.equal(torch.rand(3), expect)


def test_gumbel_top_k_properties():
    scores = np.arange(100, dtype=float)
    top = gumbel_topk(scores, 20, temperature=0)
    assert sorted(top.tolist()) == list(range(80, 100))  # temperature 0: plain top-k
    a = gumbel_topk(scores, 20, 1.0, seed=5)
    assert len(set(a.tolist())) == 20 and np.array_equal(a, gumbel_topk(scores, 20, 1.0, seed=5))
    assert not np.array_equal(a, gumbel_topk(scores, 20, 1.0, seed=6))
    hits_hot, hits_cold, hits_flat = np.zeros(100), np.zeros(100), np.zeros(100)
    for s in range(300):
        hits_hot[gumbel_topk(scores, 20, 0.05, seed=s)] += 1
        hits_cold[gumbel_topk(scores, 20, 100.0, seed=s)] += 1
        hits_flat[gumbel_topk(np.zeros(100), 20, 1.0, seed=s)] += 1
    assert hits_hot[80:].sum() > 0.9 * 300 * 20  # a low temperature concentrates on the best
    hits_mid = np.zeros(100)
    for s in range(300):
        hits_mid[gumbel_topk(scores, 20, 1.0, seed=s)] += 1
    assert spearman(np.arange(100), hits_mid) > 0.9  # inclusion grows with the score
    for h in (hits_cold, hits_flat):  # a high temperature, or equal scores: uniform, 20% each
        assert abs(h.mean() / 300 - 0.2) < 1e-9 and h.min() > 30 and h.max() < 95
    with pytest.raises(ValueError, match="k must be"):
        gumbel_topk(scores, 101)
    with pytest.raises(ValueError, match="finite"):
        gumbel_topk(np.array([1.0, np.nan]), 1)


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 2, 2], [1, 2, 3, 4]) == pytest.approx(0.8944, abs=1e-4)
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_influence_model_learns_a_synthetic_signal(world, tmp_path):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(world["root"], "tok", "tokenizer.json"))
    rng = np.random.default_rng(0)
    n, length = 160, 24
    rows = rng.integers(50, 512, size=(n, length))
    share = rng.random(n)
    rows[rng.random((n, length)) < share[:, None] * 0.8] = 7  # the target: how much of token 7 a row holds
    y = (rows == 7).mean(1) + rng.normal(0, 0.02, n)
    model, info = fit_influence(rows, y, tok, encoder="tiny", max_tokens=length, epochs=10, lr=3e-3,
                                holdout_fraction=0.25, seed=0)
    assert info["holdout"] == 40 and info["train"] == 120
    assert info["spearman"] > 0.7, info["history"]
    assert info["best_epoch"] == max(range(len(info["history"])),
                                     key=lambda i: info["history"][i]["holdout_spearman"]) + 1
    model.save(str(tmp_path / "inf"))
    again = load_influence(str(tmp_path / "inf"), device="cpu")
    assert np.allclose(again.predict_ids(rows[:20]), model.predict_ids(rows[:20]), atol=1e-5)
    # on fresh rows, too (not only the probes it was fitted on)
    fresh = rng.integers(50, 512, size=(60, length))
    fresh_share = rng.random(60)
    fresh[rng.random((60, length)) < fresh_share[:, None] * 0.8] = 7
    assert spearman(again.predict_ids(fresh), (fresh == 7).mean(1)) > 0.7


def _sel(world, **over):
    sel = {"method": "mates", "stage_steps": 4, "probes": 8, "reference": world["reference"], "reference_limit": 6,
           "fit_epochs": 2, "fraction": 0.25}
    sel.update(over)
    return sel


def _losses(out):
    with open(os.path.join(out, "log.jsonl")) as f:
        return [(r["step"], r["loss"]) for r in map(json.loads, f) if "loss" in r]


def test_staged_run_end_to_end_and_resume(world, tmp_path):
    full = tmp_path / "full"
    res = run_train(_cfg(world, full, selection=_sel(world)), quiet=True)
    st = res["mates"]["stages"]
    assert [s["method"] for s in st] == ["random", "mates", "mates"] and [s["step"] for s in st] == [0, 4, 8]
    for s in (1, 2):
        d = full / "mates" / f"stage-{s:03d}"
        assert sorted(os.listdir(d)) == ["influence", "probes.jsonl", "scores.npy", "selection.npy", "stage.json"]
        info = json.loads((d / "stage.json").read_text())
        assert info["probes"] == 8 and info["probe_seconds_per_doc"] > 0 and info["selected"] == len(
            np.load(d / "selection.npy"))
        assert "spearman_holdout" in info and info["holdout_probes"] == 2
        probes = [json.loads(line) for line in (d / "probes.jsonl").read_text().splitlines()]
        assert len(probes) == 8 and all(abs(p["oracle"] - (info["reference_loss"] - p["reference_loss_after"])) < 1e-9
                                        for p in probes)
        scores = np.load(d / "scores.npy")
        assert len(scores) == info["pool"] and np.isfinite(scores).all()
    # the steps of a stage read its selection, nothing else
    from curate.mates.staged import StagedTrainer

    st_tr = StagedTrainer(_cfg(world, full, selection=_sel(world)), quiet=True)
    sel1 = np.load(full / "mates" / "stage-001" / "selection.npy")
    allowed = {tuple(r) for r in st_tr.pool_rows(sel1)}
    assert all(tuple(r) in allowed for step in (4, 5, 6, 7) for r in st_tr.batch_rows(step))
    # stopped in the middle of stage 1 (with a checkpoint there), resumed: the same run
    part = tmp_path / "part"
    stopped = run_train(_cfg(world, part, selection=_sel(world), checkpoint_every=6), quiet=True, stop_at_step=6)
    assert stopped == {"stopped_at": 6} and not (part / "mates" / "stage-002").exists()
    run_train(_cfg(world, part, selection=_sel(world), checkpoint_every=6), quiet=True)
    assert _losses(full) == _losses(part)
    for s in range(3):
        for name in ("selection.npy",) + (("scores.npy",) if s else ()):
            assert np.array_equal(np.load(full / "mates" / f"stage-{s:03d}" / name),
                                  np.load(part / "mates" / f"stage-{s:03d}" / name))
    # stopped exactly at a stage boundary: the next stage is made from that checkpoint on resume
    edge = tmp_path / "edge"
    run_train(_cfg(world, edge, selection=_sel(world)), quiet=True, stop_at_step=8)
    assert (edge / "checkpoints" / "step-0000008").exists() and not (edge / "mates" / "stage-002").exists()
    run_train(_cfg(world, edge, selection=_sel(world)), quiet=True)
    assert _losses(full) == _losses(edge)
    assert np.array_equal(np.load(full / "mates" / "stage-002" / "scores.npy"),
                          np.load(edge / "mates" / "stage-002" / "scores.npy"))
    # a resume with other selection settings is refused like any config change
    with pytest.raises(Exception, match="selection.fraction"):
        run_train(_cfg(world, edge, selection=_sel(world, fraction=0.5), max_steps=12), quiet=True)


def test_staged_run_with_batched_probes(world, tmp_path):
    res = run_train(_cfg(world, tmp_path / "b", max_steps=8, selection=_sel(world, probe_batch=4)), quiet=True)
    info = json.loads((tmp_path / "b" / "mates" / "stage-001" / "stage.json").read_text())
    assert [s["method"] for s in res["mates"]["stages"]] == ["random", "mates"] and info["probe_batch"] == 4
    assert len((tmp_path / "b" / "mates" / "stage-001" / "probes.jsonl").read_text().splitlines()) == 8


def test_random_method_is_a_uniform_draw_of_the_same_size(world, tmp_path):
    res = run_train(_cfg(world, tmp_path / "r", max_steps=8, selection=_sel(world, method="random")), quiet=True)
    st = res["mates"]["stages"]
    assert [s["method"] for s in st] == ["random", "random"]
    a = np.load(tmp_path / "r" / "mates" / "stage-000" / "selection.npy")
    b = np.load(tmp_path / "r" / "mates" / "stage-001" / "selection.npy")
    assert len(a) == len(b) == st[0]["selected"] and len(set(a)) == len(a) and not np.array_equal(np.sort(a), np.sort(b))


def test_static_method_selects_by_fixed_classifier_scores_and_resumes(world, tmp_path):
    """method static: a real fastText model scores the pool once; temperature 0 is exactly the top fraction."""
    from tokenizers import Tokenizer

    from curate.mates.staged import StagedTrainer
    from curate.scorers.fasttext_classifier import load_model, predict_positive, preprocess
    from curate.scorers.train import train_classifier

    x = pq.read_table(world["root"] / "x" / "data.parquet").column("text").to_pylist()
    y = pq.read_table(world["root"] / "y" / "data.parquet").column("text").to_pylist()
    clf = str(tmp_path / "q.bin")
    train_classifier(x + y, [True] * len(x) + [False] * len(y), clf, epoch=5, lr=0.5, dim=16, bucket=5000,
                     valid_fraction=0.0, threads=1)
    sel = {"method": "static", "stage_steps": 4, "fraction": 0.25, "temperature": 0, "classifier": clf}
    full = tmp_path / "full"
    res = run_train(_cfg(world, full, selection=sel), quiet=True)
    assert [s["method"] for s in res["mates"]["stages"]] == ["random", "static", "static"]
    scores = np.load(full / "mates" / "stage-001" / "scores.npy")
    assert np.array_equal(scores, np.load(full / "mates" / "stage-002" / "scores.npy"))  # scored once, fixed
    assert scores.std() > 0.01 and len(np.unique(scores)) > 0.9 * len(scores)
    # the scores are the classifier's P(pos) of each pool sequence, detokenized (EOS between documents: a newline)
    tr = StagedTrainer(_cfg(world, full, selection=sel), quiet=True)
    tok = Tokenizer.from_file(tr.data.manifest["tokenizer"]["path"])
    eos = tok.id_to_token(int(tr.data.manifest["tokenizer"]["eos_id"]))
    idx = np.array([0, 7, len(scores) - 1])
    texts = [tok.decode(r.tolist(), skip_special_tokens=False).replace(eos, "\n") for r in tr.pool_rows(idx)]
    expect = predict_positive(load_model(clf), preprocess(texts).to_pylist())
    assert np.allclose(scores[idx], expect, atol=1e-6)
    k = int(round(0.25 * len(scores)))
    for s in (1, 2):  # temperature 0: exactly the top fraction, in a shuffled order
        chosen = np.load(full / "mates" / f"stage-{s:03d}" / "selection.npy")
        rest = np.setdiff1d(np.arange(len(scores)), chosen)
        assert len(chosen) == len(set(chosen.tolist())) == k and scores[chosen].min() >= scores[rest].max()
    # stopped inside stage 1, resumed: the same run
    part = tmp_path / "part"
    assert run_train(_cfg(world, part, selection=sel, checkpoint_every=6), quiet=True, stop_at_step=6) == {"stopped_at": 6}
    run_train(_cfg(world, part, selection=sel, checkpoint_every=6), quiet=True)
    assert _losses(full) == _losses(part)
    for s in range(3):
        assert np.array_equal(np.load(full / "mates" / f"stage-{s:03d}" / "selection.npy"),
                              np.load(part / "mates" / f"stage-{s:03d}" / "selection.npy"))
    # the classifier is required, and must exist (file:line of the config)
    with pytest.raises(RecipeError, match="selection.classifier is required with method static"):
        _cfg(world, tmp_path / "c", selection={"method": "static"})
    text = f"data: {world['mix']}\noutput: {tmp_path / 'c'}\nselection:\n  method: static\n  classifier: {tmp_path}/no.bin\n"
    with pytest.raises(RecipeError, match=r"cfg.yaml:5: selection.classifier: no such file .*no.bin"):
        parse_config(text, "cfg.yaml")


def test_selection_config_is_checked(world, tmp_path):
    with pytest.raises(RecipeError, match="selection.reference is required"):
        _cfg(world, tmp_path / "c", selection={"method": "mates"})
    with pytest.raises(RecipeError, match="did you mean 'stage_steps'"):
        _cfg(world, tmp_path / "c", selection=_sel(world, stage_stepz=3))
    with pytest.raises(RecipeError, match="fraction"):
        _cfg(world, tmp_path / "c", selection=_sel(world, fraction=0))
    with pytest.raises(RecipeError, match="online_mixture"):
        _cfg(world, tmp_path / "c", selection=_sel(world), online_mixture={"eta": 0.5})
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"context": "a b", "continuation": "c"}\n{"context": 3}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        run_train(_cfg(world, tmp_path / "c", selection=_sel(world, reference=str(bad))), quiet=True)


def test_mates_scorer_stage_in_a_pipeline(world, tmp_path, run):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(world["root"], "tok", "tokenizer.json"))
    rows = np.random.default_rng(1).integers(0, 512, size=(16, 16))
    model, _ = fit_influence(rows, rows[:, 0].astype(float), tok, encoder="tiny", max_tokens=16, epochs=1)
    model.save(str(tmp_path / "inf"))
    texts = ["The committee met on Tuesday.", "", "Rivers rise in spring and the fields flood."]
    with open(tmp_path / "in.jsonl", "w") as f:
        for i, t in enumerate(texts):
            f.write(json.dumps({"id": str(i), "text": t}) + "\n")
    res = run(f"input: {tmp_path}/in.jsonl\noutput: {tmp_path}/out\nstages:\n"
              f"  - mates: {{model: {tmp_path}/inf, device: cpu}}\n")
    table = read_output(str(tmp_path / "out"))
    got = dict(zip(table.column("id").to_pylist(), table.column("mates").to_pylist()))
    assert set(got) <= {"0", "1", "2"} and "0" in got and "2" in got
    expect = load_influence(str(tmp_path / "inf"), device="cpu").predict_texts([texts[0], texts[2]])
    assert got["0"] == pytest.approx(float(expect[0]), abs=1e-5) and got["2"] == pytest.approx(float(expect[1]), abs=1e-5)
    assert res is not None
    with pytest.raises(RecipeError, match="no config.json"):
        run(f"input: {tmp_path}/in.jsonl\noutput: {tmp_path}/out2\nstages:\n  - mates: {{model: {tmp_path}}}\n")
