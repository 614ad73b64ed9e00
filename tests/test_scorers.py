"""Scorers: fastText classifiers trained for real on hand-made data, word lists, PII redaction."""
import argparse
import json

import numpy as np
import pyarrow as pa
import pytest
from conftest import PROSE, read_output, write_jsonl

from curate import schema as S
from curate.core.recipe import RecipeError, parse_recipe
from curate.core.stage import apply_rule
from curate.scorers import fasttext_classifier as ftc
from curate.scorers import train as tr
from curate.scorers.pii import PiiRedact, redact
from curate.scorers.toxic_words import ToxicWords

SMALL = dict(epoch=25, lr=0.5, dim=16, bucket=20000, threads=1)

INSULTS = ["idiot", "moron", "stupid", "loser", "pathetic", "worthless", "dumb", "trash", "clown", "fool"]
NICE = ["garden", "library", "recipe", "river", "concert", "museum", "bicycle", "kitchen", "harbor", "meadow"]
VERBS = ["saw", "liked", "visited", "described", "painted", "remembered", "mentioned", "found"]


def toxic_doc(rng) -> str:
    a, b = rng.choice(INSULTS, 2, replace=False)
    return f"You {rng.choice(['are', 'look like', 'sound like'])} a {a} {b}, shut up you {rng.choice(INSULTS)}! I {rng.choice(VERBS)} it."


def clean_doc(rng) -> str:
    a, b = rng.choice(NICE, 2, replace=False)
    return f"We {rng.choice(VERBS)} the {a} near the {b} on {rng.choice(['Monday', 'Sunday', 'a sunny day'])}; it was lovely."


def synthetic(n: int, seed: int):
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        tox = i % 2 == 0
        texts.append(toxic_doc(rng) if tox else clean_doc(rng))
        labels.append(tox)
    return texts, labels


@pytest.fixture(scope="module")
def tox_model(tmp_path_factory):
    texts, labels = synthetic(400, 0)
    path = str(tmp_path_factory.mktemp("models") / "tox.bin")
    metrics = tr.train_classifier(texts, labels, path, seed=3, valid_fraction=0.2, **SMALL)
    return path, metrics


def _batch(texts, ids=None):
    ids = ids or [f"d{i}" for i in range(len(texts))]
    return S.with_key(pa.RecordBatch.from_pydict({"id": ids, "text": texts}), "k")


# ------------------------------------------------------------------------------ training and metrics


def test_roc_auc_matches_pairwise_definition_with_ties():
    rng = np.random.default_rng(1)
    y = rng.random(300) < 0.4
    s = np.round(rng.random(300) + y * 0.3, 1)  # coarse scores: many ties
    pos, neg = s[y], s[~y]
    pairwise = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg))
    assert tr.roc_auc(y, s) == pytest.approx(pairwise)
    assert tr.roc_auc([True, False], [0.9, 0.1]) == 1.0 and tr.roc_auc([True, False], [0.1, 0.9]) == 0.0
    assert tr.roc_auc([True, True], [0.1, 0.9]) is None


def test_train_classifier_holds_out_a_stratified_split_and_measures_it(tox_model):
    path, m = tox_model
    assert m["n_train"] == 320 and m["n_valid"] == 80 and m["n_valid_pos"] == 40
    assert m["auc"] > 0.95 and m["accuracy"] > 0.9
    model = ftc.load_model(path)
    p = ftc.predict_positive(model, ftc.preprocess(["Shut up you worthless MORON!", "We visited the museum; lovely."]).to_pylist())
    assert p[0] > 0.8 and p[1] < 0.2
    with pytest.raises(ValueError, match="both classes"):
        tr.train_classifier(["a b", "c d"], [True, True], path + ".x")


def test_preprocess_is_shared_and_normalizes():
    out = ftc.preprocess(pa.array(["Hello,\nWORLD!!  ok", None, "x" * 50]), max_chars=20).to_pylist()
    assert out == ["hello , world ! ! ok", "", "x" * 20]


def _train_args(**kw):
    parser = tr.add_train_scorer_arguments(argparse.ArgumentParser())
    argv = []
    for k, v in kw.items():
        if k == "kind":
            continue
        for item in v if isinstance(v, list) else [v]:
            argv += [f"--{k.replace('_', '-')}", str(item)]
    return parser.parse_args(([kw["kind"]] if "kind" in kw else []) + argv)


def test_train_scorer_command_from_a_labeled_csv_and_from_two_corpora(tmp_path, capsys):
    texts, labels = synthetic(200, 5)
    rows = ["row,tweet,label"] + [f'{i},"{t}",{"offensive" if y else "neither"}' for i, (t, y) in enumerate(zip(texts, labels))]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    model = tmp_path / "out" / "tox.bin"
    args = _train_args(kind="toxicity", data=str(tmp_path / "t.csv"), text_column="tweet", label_column="label",
                       positive="hate,Offensive", output=str(model), epoch=25, lr=0.5, dim=16, bucket=20000, threads=1)
    assert tr.run_train_scorer(args) == 0
    printed = capsys.readouterr().out
    assert "held-out accuracy" in printed and "ROC AUC" in printed
    side = json.loads((tmp_path / "out" / "tox.bin.json").read_text())
    assert side["kind"] == "toxicity" and side["labels"]["__label__pos"] == "toxic"
    assert side["metrics"]["n_train"] + side["metrics"]["n_valid"] == 200 and side["metrics"]["auc"] > 0.9
    assert side["settings"]["epoch"] == 25 and side["data"]["positive"] == ["hate", "Offensive"]

    # two corpora: jsonl(.gz) positives, txt negatives (one document per line), via a recipe file
    import gzip

    write_jsonl(tmp_path / "pos.jsonl.gz", [{"body": t} for t, y in zip(texts, labels) if y], opener=gzip.open)
    (tmp_path / "neg.txt").write_text("\n".join(t for t, y in zip(texts, labels) if not y) + "\n")
    (tmp_path / "r.yaml").write_text(
        f"kind: quality\npositive_data: [{{path: '{tmp_path}/pos*.jsonl.gz', text_column: body}}]\n"
        f"negative_data: [{{path: '{tmp_path}/neg.txt', txt_unit: line}}]\noutput: {tmp_path}/q.bin\n"
        "epoch: 25\nlr: 0.5\ndim: 16\nbucket: 20000\nthreads: 1\n")
    assert tr.run_train_scorer(_train_args(recipe=str(tmp_path / "r.yaml"))) == 0
    m = json.loads((tmp_path / "q.bin.json").read_text())["metrics"]
    assert m["n_train"] + m["n_valid"] == 200 and m["auc"] > 0.9

    # configuration errors are reported, not raised
    assert tr.run_train_scorer(_train_args(kind="toxicity", data=str(tmp_path / "t.csv"), text_column="tweet")) == 2
    assert tr.run_train_scorer(_train_args(kind="toxicity", data=str(tmp_path / "missing.csv"), positive="x")) == 2
    assert "no such file" in capsys.readouterr().err


def test_load_labeled_parquet_where_and_limit(tmp_path):
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"t": ["a a", "b b", "c c", "d d", None], "y": [1, 0, 1, 0, 1], "q": [0.9, 0.2, 0.5, 0.95, 1.0]}),
                   tmp_path / "x.parquet")
    texts, labels = tr.load_labeled(str(tmp_path / "x.parquet"), "t", "y", "1")
    assert texts == ["a a", "b b", "c c", "d d"] and labels == [True, False, True, False]
    texts, _ = tr.load_labeled(str(tmp_path / "x.parquet"), "t", "y", [1], where={"q": {"min": 0.8}})
    assert texts == ["a a", "d d"]
    assert len(tr.load_corpus({"path": str(tmp_path / "*.parquet"), "text_column": "t", "limit": 2})) == 2
    with pytest.raises(ValueError, match="no column 'nope'"):
        tr.load_labeled(str(tmp_path / "x.parquet"), "nope", "y", "1")


# ------------------------------------------------------------------------------ classifier stages


def test_classifier_stages_score_and_filter_through_beam(tmp_path, run, tox_model):
    path, _ = tox_model
    rng = np.random.default_rng(11)
    docs = [{"id": f"d{i:02d}", "text": toxic_doc(rng) if i % 3 == 0 else clean_doc(rng) + " " + PROSE[i % len(PROSE)]}
            for i in range(30)]
    write_jsonl(tmp_path / "in.jsonl", docs)
    run(f"""
input: {tmp_path}/in.jsonl
output: {tmp_path}/scored
stages:
  - toxicity_classifier: {{model: {path}, mode: annotate}}
""")
    scored = {r["id"]: r["toxicity"] for r in read_output(tmp_path / "scored").to_pylist()}
    assert len(scored) == 30 and all(0.0 <= v <= 1.0 for v in scored.values())
    assert min(scored[f"d{i:02d}"] for i in range(0, 30, 3)) > max(v for k, v in scored.items() if int(k[1:]) % 3)
    threshold = float(np.median(list(scored.values())))
    res = run(f"""
input: {tmp_path}/in.jsonl
output: {{path: {tmp_path}/filtered, write_rejected: true}}
stages:
  - toxicity_classifier: {{model: {path}, max_score: {threshold}}}
  - quality_classifier: {{model: {path}, positive_label: neg, min_score: 0.0}}
""")
    kept = read_output(tmp_path / "filtered").to_pylist()
    rejected = read_output(tmp_path / "filtered", "rejected").to_pylist()
    assert {r["id"] for r in rejected} == {k for k, v in scored.items() if v > threshold}  # score/filter equivalence
    assert {r["id"] for r in kept} == {k for k, v in scored.items() if v <= threshold}
    assert {r["drop_reason"] for r in rejected} == {"toxic"}
    assert all(abs(r["quality"] - (1 - r["toxicity"])) < 1e-3 for r in kept)  # P(neg) of the same model
    assert res.stats["toxicity_classifier"].dropped == {"toxic": len(rejected)}
    assert res.stats["quality_classifier"].kept == len(kept)


def test_missing_model_is_a_recipe_error_naming_the_path(tmp_path):
    with pytest.raises(ValueError, match="model file not found: .*nope.bin"):
        ftc.QualityClassifier(model=str(tmp_path / "nope.bin"))
    with pytest.raises(RecipeError) as e:
        parse_recipe(f"input: {tmp_path}/x.jsonl\noutput: {tmp_path}/o\nstages:\n  - toxicity_classifier: {{model: {tmp_path}/nope.bin}}\n",
                     "r.yaml", check_inputs=False)
    assert "nope.bin" in str(e.value.problems)
    with pytest.raises(RecipeError) as e:
        parse_recipe(f"input: {tmp_path}/x.jsonl\noutput: {tmp_path}/o\nstages:\n  - quality_classifier: {{}}\n", "r.yaml", check_inputs=False)
    assert "missing required parameter 'model'" in str(e.value.problems)


# ------------------------------------------------------------------------------ quality_select


def test_threshold_bucket():
    hist = np.array([10, 0, 30, 60])
    assert ftc.threshold_bucket(hist, 0.6) == 3 and ftc.threshold_bucket(hist, 0.61) == 2
    assert ftc.threshold_bucket(hist, 1.0) == 0 and ftc.threshold_bucket(hist, 0.0) == 4
    assert ftc.threshold_bucket(np.zeros(4, np.int64), 0.5) == 0


def test_quality_select_keeps_the_top_fraction_of_characters(tmp_path, run, tox_model):
    rng = np.random.default_rng(2)
    docs = []
    for i in range(400):
        n = int(rng.integers(20, 400))
        docs.append({"id": f"q{i:03d}", "text": ("word " * n).strip(), "quality": float(rng.random())})
    write_jsonl(tmp_path / "a.jsonl", docs[:250])
    write_jsonl(tmp_path / "b.jsonl", docs[250:])
    res = run(f"""
input: {{path: '{tmp_path}/*.jsonl', batch_size: 64}}
output: {{path: {tmp_path}/out, write_rejected: true}}
stages:
  - quality_select: {{top_char_fraction: 0.3}}
""")
    total = sum(len(d["text"]) for d in docs)
    kept = read_output(tmp_path / "out").to_pylist()
    rejected = read_output(tmp_path / "out", "rejected").to_pylist()
    kept_chars = sum(len(r["text"]) for r in kept)
    assert 0.3 * total <= kept_chars <= 0.3 * total + 2000  # overshoot: at most one score bucket (1e-4 wide)
    assert min(r["quality"] for r in kept) >= max(r["quality"] for r in rejected)
    assert len(kept) + len(rejected) == 400 and {r["drop_reason"] for r in rejected} == {"below_top_fraction"}
    assert res.stats["quality_select"].dropped == {"below_top_fraction": len(rejected)}
    assert res.info["quality_select_chars_kept"] == kept_chars and res.info["quality_select_chars_total"] == total

    # with a model: scores are computed in the stage (P(toxic) here), same guarantees
    path, _ = tox_model
    rng = np.random.default_rng(4)
    write_jsonl(tmp_path / "m.jsonl", [{"id": f"m{i:02d}", "text": toxic_doc(rng) if i % 2 else clean_doc(rng)} for i in range(40)])
    run(f"""
input: {tmp_path}/m.jsonl
output: {tmp_path}/out2
stages:
  - quality_select: {{model: {path}, top_char_fraction: 0.5, mode: annotate}}
""")
    out = read_output(tmp_path / "out2").to_pylist()
    sel = [r for r in out if r["quality_select_reason"] is None]
    assert len(out) == 40 and sum(len(r["text"]) for r in sel) >= 0.5 * sum(len(r["text"]) for r in out)
    assert min(r["quality"] for r in sel) >= max(r["quality"] for r in out if r["quality_select_reason"])
    assert sum(int(r["id"][1:]) % 2 for r in sel) >= 0.8 * len(sel)  # the toxic half scores highest


# ------------------------------------------------------------------------------ toxic_words


def test_toxic_words_whole_words_case_phrases_and_user_lists(tmp_path):
    (tmp_path / "de.txt").write_text("# German\nScheiße\nblöde Kuh\n")
    rule = ToxicWords(words=["Dummkopf"], word_files=[str(tmp_path / "de.txt")], max_fraction=0.1)
    texts = [
        "What a SHIT day, honestly.",                      # default English list, case-insensitive: 1/5
        "The class assessment was a classic passage.",     # 'ass' only inside words: 0
        "no blow job jokes here please",                   # phrase (2 words): 2/6
        "Du bist ein Dummkopf und eine blöde Kuh!",        # user word + user phrase, non-ASCII: 3/8
        "f.u.c.k this",                                    # entry with inner punctuation: 4 tokens of 5
        "Scheiße",
    ]
    out, mask, reasons = apply_rule(rule, _batch(texts))
    frac = out.column("toxic_words_fraction").to_pylist()
    assert frac == pytest.approx([1 / 5, 0, 2 / 6, 3 / 8, 4 / 5, 1.0])
    assert mask.tolist() == [False, True, False, False, False, False]
    assert reasons[0] == "toxic_words"
    only_user = ToxicWords(words=["Dummkopf"], default_words=False, max_fraction=0.0)
    _, mask, _ = apply_rule(only_user, _batch(["what a shit day", "so ein dummkopf"]))
    assert mask.tolist() == [True, False]
    excl = ToxicWords(exclude_words=["SHIT"], max_fraction=0.0)
    _, mask, _ = apply_rule(excl, _batch(["what a shit day"]))
    assert mask.tolist() == [True]
    with pytest.raises(ValueError, match="no words"):
        ToxicWords(default_words=False)
    with pytest.raises(ValueError, match="not found: .*missing.txt"):
        ToxicWords(word_files=[str(tmp_path / "missing.txt")])


# ------------------------------------------------------------------------------ pii_redact


def test_pii_redact_emails_and_ips_and_leaves_version_numbers():
    texts = [
        "Write to Jane.Doe+news@mail.example.co.uk or to ops@example.org.",
        "Servers 10.0.0.1 192.168.1.254:8080 and [2001:db8::8a2e:370:7334] failed; also ::ffff:192.0.2.1",
        "Upgrade from 1.2.3 to 2.0.10, see v1.2.3.4 and 1.2.3.4.5; not 300.1.1.1, not std::vector or 12:30:45.",
        "No PII here.",
    ]
    rule = PiiRedact(add_scores=True)
    out, mask, _ = apply_rule(rule, _batch(texts))
    red = out.column("text").to_pylist()
    assert red[0] == "Write to <EMAIL> or to <EMAIL>."
    assert red[1] == "Servers <IP> <IP>:8080 and [<IP>] failed; also <IP>"
    assert red[2] == texts[2] and red[3] == texts[3]
    assert out.column("pii_emails").to_pylist() == [2, 0, 0, 0]
    assert out.column("pii_ips").to_pylist() == [0, 4, 0, 0]
    assert mask.all()
    text, _, n_ip = redact(pa.array(["1.1.1.1 2.2.2.2 3.3.3.3", "ab 1.1.1.1,2.2.2.2."]), ip="[X]")
    assert text.to_pylist() == ["[X] [X] [X]", "ab [X],[X]."] and n_ip.tolist() == [3, 2]
    with pytest.raises(ValueError):
        PiiRedact(ip_replacement=" ")


def test_pii_redact_through_beam(tmp_path, run):
    write_jsonl(tmp_path / "a.jsonl", [{"id": "a", "text": "mail me at a@b.io from 8.8.8.8"}, {"id": "b", "text": "version 3.11.2"}])
    res = run(f"input: {tmp_path}/a.jsonl\noutput: {tmp_path}/out\nstages:\n  - pii_redact: {{email_replacement: '[email]'}}\n")
    out = {r["id"]: r for r in read_output(tmp_path / "out").to_pylist()}
    assert out["a"]["text"] == "mail me at [email] from <IP>" and out["b"]["text"] == "version 3.11.2"
    assert "pii_emails" not in out["a"] and res.stats["pii_redact"].kept == 2
    assert res.info["pii_redact_emails"] == 1 and res.info["pii_redact_ips"] == 1
