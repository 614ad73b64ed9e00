"""PreSelect: bits per character, predictive strength, balanced labels, config, labeling job, scorer, stage.

Real components only: a byte-level BPE trained here, tiny LlamaForCausalLM models trained for
different numbers of steps (their abilities), real fastText, the embedded Beam runner.
"""
import json
import math
import random

import numpy as np
import pyarrow.parquet as pq
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from curate.cli import main as cli_main  # noqa: E402
from curate.core.recipe import RecipeError  # noqa: E402
from curate.preselect import family  # noqa: E402
from curate.preselect.config import parse_config  # noqa: E402
from curate.preselect.strength import balanced_labels, predictive_strength  # noqa: E402

from conftest import prose, read_output, write_jsonl  # noqa: E402

WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa".split()


def gibberish(i: int, n: int = 60) -> str:
    r = random.Random(i)
    return " ".join("".join(r.choice("qxzjkvwy") for _ in range(r.randint(2, 7))) for _ in range(n))


def wordlist(i: int, n: int = 50) -> str:
    r = random.Random(1000 + i)
    return " ".join(r.choice(WORDS) for _ in range(n)) + "."


def docs(n: int = 60) -> list[dict]:
    out = []
    for i in range(n):
        text = [prose(i, 3), gibberish(i), wordlist(i)][i % 3]
        out.append({"id": f"d{i:03d}", "text": text})
    return out


def _train_steps(model, ids_list, steps: int, lr: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        k = int(torch.randint(len(ids_list), (1,), generator=g))
        ids = torch.tensor([ids_list[k][:64]])
        loss = model(input_ids=ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


@pytest.fixture(scope="module")
def family_dir(tmp_path_factory):
    """A tokenizer and four tiny Llamas trained 0, 10, 40 and 120 steps on prose (abilities 0, 1, 2, 3)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from curate.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("family")
    corpus = write_jsonl(root / "corpus.jsonl", docs(60))
    train_tokenizer([corpus], str(root / "tok"), vocab_size=400, min_frequency=1)
    tok = AutoTokenizer.from_pretrained(str(root / "tok"))
    train_ids = [tok(prose(i, 4), add_special_tokens=False)["input_ids"] for i in range(40)]
    models = []
    for k, steps in enumerate([0, 10, 40, 120]):
        torch.manual_seed(k)
        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                          num_attention_heads=2, max_position_embeddings=128, bos_token_id=tok.eos_token_id,
                          eos_token_id=tok.eos_token_id)
        model = LlamaForCausalLM(cfg)
        _train_steps(model, train_ids, steps, 1e-2, seed=k)
        path = root / f"m{k}"
        model.save_pretrained(path)
        tok.save_pretrained(path)
        models.append({"name": f"m{k}", "path": str(path), "ability": float(k)})
    return {"root": root, "corpus": corpus, "models": models}


# ------------------------------------------------------------------------------------ bits per character


def test_windows_predict_every_token_once_with_enough_context():
    for n, L, s in [(1, 8, 4), (2, 8, 4), (9, 8, 4), (37, 8, 3), (100, 16, 15), (20, 4, 1)]:
        seen = []
        for start, end, a in family.windows(n, L, s):
            assert end - start <= L and start <= a - 1  # the token before the first target is in the window
            assert end - a <= s and a - start >= min(L - s, a)  # at least L - s tokens of context (or all there is)
            seen += list(range(a, end))
        assert seen == list(range(1, n))
    with pytest.raises(ValueError):
        list(family.windows(10, 8, 8))


def test_bits_per_char_match_a_direct_token_by_token_computation(family_dir):
    m = family_dir["models"][2]
    lm = family.load_model(m["path"], device="cpu", max_length=16)
    texts = [prose(1, 2), gibberish(3, 8), "a", "Short text."]
    stride = 5
    got = family.bits_per_char(lm, texts, stride=stride, batch_size=3)
    for text, bpc in zip(texts, got):
        ids = [lm.prefix_id] + lm.tokenizer(text, add_special_tokens=False)["input_ids"]
        bits = 0.0
        with torch.no_grad():
            for start, end, a in family.windows(len(ids), 16, stride):
                for t in range(a, end):  # each token alone, from its own window's context, unbatched
                    logits = lm.model(input_ids=torch.tensor([ids[start:t]])).logits[0, -1]
                    bits -= float(torch.log_softmax(logits.double(), -1)[ids[t]]) / math.log(2)
        assert bpc == pytest.approx(bits / len(text), rel=1e-4)
    # a context that holds the whole document: the same as one plain forward pass
    lm_long = family.load_model(m["path"], device="cpu", max_length=128)
    text = prose(2, 1)[:150]
    ids = torch.tensor([[lm_long.prefix_id] + lm_long.tokenizer(text, add_special_tokens=False)["input_ids"]])
    assert 16 < ids.shape[1] <= 128
    with torch.no_grad():
        nll = float(lm_long.model(input_ids=ids, labels=ids).loss) * (ids.shape[1] - 1)
    assert family.bits_per_char(lm_long, [text])[0] == pytest.approx(nll / math.log(2) / len(text), rel=1e-4)
    assert np.isnan(family.bits_per_char(lm_long, [""])[0])


def test_trained_family_orders_by_training_on_prose(family_dir):
    """The fixture's abilities are real: more training, fewer bits per character on held-out prose."""
    texts = [prose(i, 3) for i in range(50, 56)]
    abil = [family.measure_bpc_ability(family.load_model(m["path"], device="cpu"), texts) for m in family_dir["models"]]
    assert abil == sorted(abil)


# ------------------------------------------------------------------------------------ S(d) and labels


def test_predictive_strength_on_constructed_losses():
    abilities = [3.0, 2.0, 1.0]  # model 0 is the best
    losses = np.array([
        [0.5, 0.6, 0.7],   # same order as the abilities: S = 1
        [0.7, 0.6, 0.5],   # reversed: S = 0
        [0.6, 0.5, 0.7],   # models 0 and 1 swapped: 2 of 3 pairs agree
        [0.5, 0.5, 0.7],   # a tie counts half: (0.5 + 1 + 1) / 3
        [0.5, np.nan, 0.7],  # only the pair (0, 2) is left
        [np.nan, np.nan, 0.3],
    ])
    s = predictive_strength(losses, abilities)
    np.testing.assert_allclose(s[:5], [1.0, 0.0, 2 / 3, 2.5 / 3, 1.0])
    assert np.isnan(s[5])
    # models of equal ability form no pair
    np.testing.assert_allclose(predictive_strength([[0.1, 0.9, 0.5]], [2.0, 2.0, 1.0]), [0.5])
    with pytest.raises(ValueError):
        predictive_strength([[0.1, 0.2]], [1.0, 1.0])


def test_balanced_labels_take_the_top_and_bottom_and_never_split_a_tie():
    rng = np.random.default_rng(0)
    s = np.concatenate([np.ones(30), rng.uniform(0.1, 0.9, 50), np.zeros(5), [np.nan] * 5])
    keys = [f"k{i}" for i in range(len(s))]
    lab = balanced_labels(s, keys, 0.2, seed=1)
    pos, neg = s[lab == 1], s[lab == 0]
    assert len(pos) == len(neg) == 17  # floor(0.2 * 85 valid)
    assert (pos == 1).all()  # enough documents with S = 1
    assert pos.min() > neg.max() and np.isfinite(neg).all()
    assert (lab[-5:] == -1).all()
    assert (balanced_labels(s, keys, 0.2, seed=1) == lab).all()  # deterministic
    assert not (balanced_labels(s, keys, 0.2, seed=2) == lab).all()  # ties at S = 1 broken by the seeded hash
    # a boundary inside a tie: k shrinks so that no S value is on both sides
    s = np.array([1, 0.5, 0.5, 0.5, 0.5, 0.5, 0])
    lab = balanced_labels(s, list("abcdefg"), 0.5)  # k = 3 would put S = 0.5 on both sides
    assert (lab == 1).sum() == (lab == 0).sum() == 1 and lab[0] == 1 and lab[6] == 0
    lab = balanced_labels([1, 1, 0.5, 0.5, 0.5, 0.5, 0], list("abcdefg"), 0.5)
    assert (lab == 1).sum() == (lab == 0).sum() == 2 and (lab[:2] == 1).all()
    assert (balanced_labels([0.5] * 10, list("abcdefghij"), 0.5) == -1).all()


# ------------------------------------------------------------------------------------ config


def _config(tmp_path, family_dir, extra: str = "", models: str | None = None) -> str:
    if models is None:
        models = "".join(f"  - {{name: {m['name']}, path: {m['path']}, ability: {m['ability']}}}\n" for m in family_dir["models"])
    path = tmp_path / "preselect.yaml"
    path.write_text(f"input: {{path: {family_dir['corpus']}}}\noutput: {tmp_path / 'labels'}\nmodels:\n{models}{extra}")
    return str(path)


def test_config_errors_name_file_and_line(tmp_path, family_dir, capsys):
    m = family_dir["models"]
    text = (f"input: {{path: {tmp_path}/nothing-*.jsonl}}\n"
            "output: out\n"
            "models:\n"
            f"  - {{name: a, path: {m[0]['path']}, ability: -1.5}}\n"
            f"  - {{name: a, path: {tmp_path}/missing}}\n"
            "  - {name: c, path: x, abilty: 2}\n"
            "stride: 300\n"
            "max_length: 100\n"
            "label_fraction: 0.7\n"
            "batch_sise: 4\n")
    with pytest.raises(RecipeError) as e:
        parse_config(text, "p.yaml")
    msgs = "\n".join(e.value.problems)
    assert "p.yaml:1: input: no file matches" in msgs
    assert "p.yaml:5: models[1]: name 'a' is already used by models[0]" in msgs
    assert "p.yaml:5: models[1]:" in msgs and "not a model folder" in msgs
    assert "p.yaml:6: models[2]: unknown parameter 'abilty' (did you mean 'ability'?)" in msgs
    assert "p.yaml:7: stride (300) must be below max_length (100)" in msgs
    assert "p.yaml:9: preselect: parameter 'label_fraction' must be <= 0.5" in msgs
    assert "p.yaml:10: preselect: unknown parameter 'batch_sise' (did you mean 'batch_size'?)" in msgs
    # abilities: missing without a measure, or all equal
    with pytest.raises(RecipeError, match="have no ability"):
        parse_config(f"input: {family_dir['corpus']}\noutput: o\nmodels:\n  - {{name: a, path: {m[0]['path']}}}\n"
                     f"  - {{name: b, path: {m[1]['path']}, ability: 1}}\n", "p.yaml")
    with pytest.raises(RecipeError, match="all equal"):
        parse_config(f"input: {family_dir['corpus']}\noutput: o\nmodels:\n  - {{name: a, path: {m[0]['path']}, ability: 1}}\n"
                     f"  - {{name: b, path: {m[1]['path']}, ability: 1}}\n", "p.yaml")
    with pytest.raises(RecipeError, match="measure bpc needs target"):
        parse_config(f"input: {family_dir['corpus']}\noutput: o\nmodels:\n  - {{name: a, path: {m[0]['path']}}}\n"
                     f"  - {{name: b, path: {m[1]['path']}}}\nability: {{measure: bpc}}\n", "p.yaml")
    # the command: the problems on stderr, exit 2
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    assert cli_main(["preselect", "label", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "preselect config error" in err and "bad.yaml:6:" in err
    assert cli_main(["preselect", "label", _config(tmp_path, family_dir), "--validate"]) == 0


# ------------------------------------------------------------------------------------ the job, the scorer, the stage


def test_label_job_scorer_and_stage_end_to_end(tmp_path, family_dir, capsys):
    extra = "max_length: 32\nstride: 16\nbatch_size: 4\nlabel_fraction: 0.25\nheldout_fraction: 0.2\ndevice: cpu\n"
    cfg_path = _config(tmp_path, family_dir, extra)
    out = tmp_path / "labels"
    assert cli_main(["preselect", "label", cfg_path, "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "throughput:" in printed and "documents x models / s" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["documents"] == 60 and summary["ability_measure"] == "given"
    assert (out / "_SUCCESS").exists()

    # per-model losses equal a direct computation; S recomputed from them
    losses = read_output(str(out), "losses").sort_by("id")
    assert losses.num_rows == 60
    texts = losses.column("text").to_pylist()
    cols = []
    for m in family_dir["models"]:
        lm = family.load_model(m["path"], device="cpu", max_length=32)
        direct = family.bits_per_char(lm, texts, stride=16, batch_size=7)
        got = losses.column(f"bpc_{m['name']}").to_numpy()
        np.testing.assert_allclose(got, direct, rtol=1e-4)
        cols.append(got)
    np.testing.assert_allclose(losses.column("strength").to_numpy(),
                               predictive_strength(np.stack(cols, 1), [m["ability"] for m in family_dir["models"]]))

    labels = pq.read_table(out / "labels.parquet")
    heldout = pq.read_table(out / "heldout.parquet")
    lab = labels.column("label").to_pylist()
    assert lab.count("pos") == lab.count("neg") > 0
    assert summary["labeled"] == {"pos": lab.count("pos"), "neg": lab.count("neg")}
    s = dict(zip(labels.column("id").to_pylist(), labels.column("strength").to_pylist()))
    assert min(s[i] for i, l in zip(labels.column("id").to_pylist(), lab) if l == "pos") > \
        max(s[i] for i, l in zip(labels.column("id").to_pylist(), lab) if l == "neg")
    assert not set(heldout.column("id").to_pylist()) & set(s)  # held-out documents are never labeled
    assert heldout.num_rows == summary["heldout_documents"] > 0

    # the scorer: PreSelect's fastText settings by default
    model = tmp_path / "preselect.bin"
    assert cli_main(["train-scorer", "preselect", "--data", str(out), "--output", str(model), "--valid-fraction", "0"]) == 0
    side = json.loads((tmp_path / "preselect.bin.json").read_text())
    assert side["stage"] == "preselect" and side["score_column"] == "preselect"
    assert side["settings"]["epoch"] == 3 and side["settings"]["word_ngrams"] == 2 and side["settings"]["lr"] == 0.1
    assert side["data"]["documents"]["positive"] == {"pos": lab.count("pos")}

    # the stage, then the global top-10%-of-characters selection on its column
    from conftest import run_text

    scored = tmp_path / "scored"
    res = run_text(f"input: {{path: {family_dir['corpus']}}}\noutput: {scored}\nstages:\n"
                   f"  - preselect: {{model: {model}, mode: annotate}}\n"
                   f"  - quality_select: {{score_column: preselect, top_char_fraction: 0.1}}\n")
    assert not res.failed
    kept = read_output(str(scored))
    scores = kept.column("preselect").to_numpy()
    assert 0 < kept.num_rows < 60 and ((scores >= 0) & (scores <= 1)).all()
    chars = sum(len(t) for t in kept.column("text").to_pylist())
    total = sum(len(d["text"]) for d in docs(60))
    assert chars >= 0.1 * total
    from curate.scorers.fasttext_classifier import load_model, predict_positive, preprocess

    ft = load_model(str(model))
    all_scores = predict_positive(ft, preprocess([d["text"] for d in docs(60)]).to_pylist())
    kept_ids = set(kept.column("id").to_pylist())
    dropped = [p for d, p in zip(docs(60), all_scores) if d["id"] not in kept_ids]
    assert scores.min() >= max(dropped) - 1e-4  # the highest-scoring documents are the ones kept
