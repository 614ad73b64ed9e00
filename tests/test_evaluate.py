import json
import random

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from curate.train.evaluate import (  # noqa: E402
    Task,
    evaluate_task,
    evaluate_tasks,
    join_pair,
    load_task,
    loglikelihoods,
)

SENTENCES = [
    "the cat sat on the mat",
    "the dog ran to the park",
    "a bird sang in the tree",
    "my friend drove to the city",
    "the baker sold fresh bread",
    "our teacher wrote on the board",
    "the farmer fed the cows",
    "a child played with the ball",
]
WORDS = sorted({w for s in SENTENCES for w in s.split()} | {
    "river", "stone", "green", "window", "music", "paper", "yellow", "garden", "quickly", "table",
})


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _write_jsonl(path, records):
    with open(path, "w") as f:
        for r in records:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return str(path)


def _build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    rng = random.Random(0)
    lines = list(SENTENCES) * 20
    lines += [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(300)]
    lines += ["Question: what is it?\nAnswer: " + rng.choice(WORDS) for _ in range(20)]
    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>"],
        show_progress=False,
    )
    t.train_from_iterator(lines, trainer=trainer)
    return t


@pytest.fixture(scope="module")
def tok():
    return _build_tokenizer()


def _tiny_model(vocab_size, seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    return LlamaForCausalLM(cfg)


@pytest.fixture(scope="module")
def untrained(tok):
    return _tiny_model(tok.get_vocab_size()).eval()


@pytest.fixture(scope="module")
def trained(tok):
    """Tiny model that memorizes SENTENCES (seconds on CPU)."""
    model = _tiny_model(tok.get_vocab_size(), seed=1)
    ids = [e.ids for e in tok.encode_batch(SENTENCES, add_special_tokens=False)]
    T = max(map(len, ids))
    x = torch.zeros((len(ids), T), dtype=torch.long)
    labels = torch.full((len(ids), T), -100, dtype=torch.long)
    attn = torch.zeros((len(ids), T), dtype=torch.long)
    for i, s in enumerate(ids):
        x[i, : len(s)] = torch.tensor(s)
        labels[i, : len(s)] = torch.tensor(s)
        attn[i, : len(s)] = 1
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    model.train()
    for _ in range(150):
        loss = model(input_ids=x, attention_mask=attn, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2, loss.item()
    model.train()  # left in training mode on purpose: evaluation must restore it
    return model


def _reference_ll(model, tok, context, continuation, max_length=None):
    """Unbatched, loop-based reference: one sequence, sum of continuation token log-probs."""
    ctx, cont = join_pair(context, continuation)
    ctx_ids = tok.encode(ctx, add_special_tokens=False).ids
    cont_ids = tok.encode(cont, add_special_tokens=False).ids
    ids = ctx_ids + cont_ids
    if max_length is not None:
        ids = ids[-(max_length + 1):]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids[:-1]])).logits[0]
    logp = torch.log_softmax(logits.double(), dim=-1)
    total = 0.0
    greedy = True
    for k in range(len(ids) - len(cont_ids), len(ids)):
        total += logp[k - 1, ids[k]].item()
        greedy &= int(logits[k - 1].argmax()) == ids[k]
    return total, greedy, len(cont_ids)


# --------------------------------------------------------------------------------------- (a)


def test_batched_loglikelihood_matches_unbatched(tok, untrained):
    rng = random.Random(1)
    reqs = []
    for n_ctx in (1, 3, 9, 25, 2, 30, 5):
        ctx = " ".join(rng.choice(WORDS) for _ in range(n_ctx))
        cont = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6)))
        reqs.append((ctx, cont))
    reqs.append(("Question: what is it?\n", "green paper"))  # context ending in whitespace
    reqs.append(("", "the cat"))  # empty context -> prefix token
    reqs.append(reqs[0])  # duplicate request
    got = loglikelihoods(untrained, tok, reqs, batch_size=3)
    assert len(got) == len(reqs)
    for (ctx, cont), (ll, greedy, n) in zip(reqs[:-2], got):
        ref_ll, ref_greedy, ref_n = _reference_ll(untrained, tok, ctx, cont, max_length=128)
        assert n == ref_n
        assert ll == pytest.approx(ref_ll, abs=1e-4)
        assert greedy == ref_greedy
    # empty context: conditioned on the prefix token (<|endoftext|>, id 0)
    cont_ids = tok.encode(" the cat".strip(), add_special_tokens=False).ids
    ids = [tok.token_to_id("<|endoftext|>")] + cont_ids
    with torch.no_grad():
        logp = torch.log_softmax(untrained(input_ids=torch.tensor([ids[:-1]])).logits[0].double(), -1)
    ref = sum(logp[k - 1, ids[k]].item() for k in range(1, len(ids)))
    assert got[-2][0] == pytest.approx(ref, abs=1e-4)
    assert got[-1] == got[0]
    # batch size does not matter
    for bs in (1, 16):
        other = loglikelihoods(untrained, tok, reqs, batch_size=bs)
        for a, b in zip(got, other):
            assert a[0] == pytest.approx(b[0], abs=1e-4)


def test_left_truncation(tok, untrained):
    ctx = " ".join(WORDS[i % len(WORDS)] for i in range(60))
    cont = "the cat sat on the mat"
    (ll, _, n), = loglikelihoods(untrained, tok, [(ctx, cont)], max_length=16)
    ref_ll, _, ref_n = _reference_ll(untrained, tok, ctx, cont, max_length=16)
    assert n == ref_n and ll == pytest.approx(ref_ll, abs=1e-4)
    # default max_length is max_position_embeddings (128): a long context still runs
    long_ctx = " ".join(WORDS[i % len(WORDS)] for i in range(300))
    (ll2, _, _), = loglikelihoods(untrained, tok, [(long_ctx, cont)])
    ref2, _, _ = _reference_ll(untrained, tok, long_ctx, cont, max_length=128)
    assert ll2 == pytest.approx(ref2, abs=1e-4)
    with pytest.raises(ValueError, match="max_length"):
        loglikelihoods(untrained, tok, [(ctx, cont)], max_length=2)


def test_join_pair():
    assert join_pair("the cat sat on the", "mat") == ("the cat sat on the", " mat")
    assert join_pair("Question: x?\n", "yes") == ("Question: x?", "\nyes")
    assert join_pair("Answer: ", "yes") == ("Answer:", " yes")
    assert join_pair("a", " b") == ("a", " b")
    assert join_pair("", "b") == ("", "b")


# --------------------------------------------------------------------------------------- (b)


def _mc_records():
    recs = []
    for i, s in enumerate(SENTENCES):
        query, answer = s.rsplit(" ", 1)
        for j, other in enumerate(SENTENCES):
            if i == j:
                continue
            wrong = other.rsplit(" ", 1)[1]
            gold = (i + j) % 2
            choices = [answer, wrong] if gold == 0 else [wrong, answer]
            recs.append({"query": query, "choices": choices, "gold": gold})
    return recs


def test_multiple_choice_accuracy(tmp_path, tok, trained, untrained):
    path = _write_jsonl(tmp_path / "cats.jsonl", _mc_records())
    task = load_task(path)
    assert task.name == "cats" and task.shape == "multiple_choice" and len(task.records) == 56

    res = evaluate_task(trained, tok, task, batch_size=16)
    assert res == {"task": "cats", "n": 56, "acc": 1.0, "acc_norm": 1.0}
    assert trained.training  # training mode restored

    # untrained: every (answer, distractor) pair appears both ways round, so a length bias
    # alone gives exactly 0.5; a random model lands near chance
    res0 = evaluate_task(untrained, tok, task)
    assert 0.2 <= res0["acc"] <= 0.8, res0
    assert not untrained.training


def test_partial_scoring(tmp_path, tok, trained):
    recs = []
    for i, s in enumerate(SENTENCES):
        first, rest = s.split(" ", 1)
        other_first = "my" if first != "my" else "the"
        wrong = f"{first} {rest.split(' ', 1)[0]} {other_first}"  # a context the model never saw
        right = f"{first} {rest.split(' ', 1)[0]}"
        cont = rest.split(" ", 1)[1]
        opts = [right, wrong] if i % 2 == 0 else [wrong, right]
        recs.append({"context_options": opts, "continuation": cont, "gold": i % 2})
    task = load_task(_write_jsonl(tmp_path / "wino.jsonl", recs))
    assert task.shape == "partial"
    res = evaluate_task(trained, tok, task)
    assert res == {"task": "wino", "n": 8, "acc": 1.0}


# --------------------------------------------------------------------------------------- (c)


def test_lambada(tmp_path, tok, trained, untrained):
    recs = [dict(zip(("context", "continuation"), s.rsplit(" ", 1))) for s in SENTENCES]
    task = load_task(_write_jsonl(tmp_path / "lambada_tiny.jsonl", recs))
    assert task.shape == "lambada"
    res = evaluate_task(trained, tok, task, batch_size=3)
    assert set(res) == {"task", "n", "acc", "ppl"}
    assert res["n"] == 8 and res["acc"] == 1.0
    assert 1.0 <= res["ppl"] < 1.5
    res0 = evaluate_task(untrained, tok, task)
    assert res0["acc"] < 0.5 and res0["ppl"] > 50
    # ppl = exp(-mean per-record continuation log-likelihood)
    lls = loglikelihoods(trained, tok, [(r["context"], r["continuation"]) for r in recs])
    import math
    assert res["ppl"] == pytest.approx(math.exp(-sum(ll for ll, _, _ in lls) / len(lls)))


# --------------------------------------------------------------------------------------- (d)


def test_shape_errors(tmp_path):
    good = {"query": "q", "choices": ["a", "b"], "gold": 0}
    p = _write_jsonl(tmp_path / "bad.jsonl", [good, good, {"query": "q", "choices": ["a"]}])
    with pytest.raises(ValueError, match=r"bad\.jsonl:3: .*missing key\(s\) \['gold'\]"):
        load_task(p)
    assert len(load_task(p, limit=2).records) == 2  # the bad line is never read

    p = _write_jsonl(tmp_path / "unknown.jsonl", [{"text": "hello"}])
    with pytest.raises(ValueError, match=r"unknown\.jsonl:1: cannot detect the task shape"):
        load_task(p)

    p = _write_jsonl(tmp_path / "json.jsonl", [good, "{not json"])
    with pytest.raises(ValueError, match=r"json\.jsonl:2: invalid JSON"):
        load_task(p)

    p = _write_jsonl(tmp_path / "gold.jsonl", [good, {"query": "q", "choices": ["a", "b"], "gold": 2}])
    with pytest.raises(ValueError, match=r"gold\.jsonl:2: 'gold'"):
        load_task(p)

    p = _write_jsonl(tmp_path / "lam.jsonl", [{"context": "a", "continuation": "b"}, {"context": "a"}])
    with pytest.raises(ValueError, match=r"lam\.jsonl:2: .*'continuation'"):
        load_task(p)


def test_gsm8k_unsupported(tmp_path, tok, untrained):
    gsm = _write_jsonl(tmp_path / "gsm8k.jsonl", [
        {"context": "What is 2+2?", "chain_of_thought": "2+2=<<2+2=4>>4", "answer": "4"},
    ] * 3)
    task = load_task(gsm)
    assert task.shape == "generative"
    res = evaluate_task(untrained, tok, task)
    assert res["task"] == "gsm8k" and res["n"] == 3 and "unsupported task shape" in res["skipped"]

    mc = _write_jsonl(tmp_path / "mc.jsonl", _mc_records())
    out = evaluate_tasks(untrained, tok, [gsm, mc], limit=4)
    assert list(out) == ["gsm8k", "mc"]
    assert "unsupported task shape" in out["gsm8k"]["skipped"]
    assert out["mc"]["n"] == 4 and set(out["mc"]) == {"task", "n", "acc", "acc_norm"}


# --------------------------------------------------------------------------------------- (e)


def test_raw_and_transformers_tokenizer_agree(tmp_path, tok, trained):
    from transformers import PreTrainedTokenizerFast

    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok)
    reqs = [("the cat sat on the", "mat"), ("Question: what is it?\n", "green"), ("a bird", "sang in")]
    raw = loglikelihoods(trained, tok, reqs)
    hf = loglikelihoods(trained, hf_tok, reqs)
    for a, b in zip(raw, hf):
        assert a[0] == pytest.approx(b[0], abs=1e-6) and a[1:] == b[1:]

    path = _write_jsonl(tmp_path / "cats.jsonl", _mc_records())
    assert evaluate_tasks(trained, hf_tok, [path]) == evaluate_tasks(trained, tok, [path])


def test_bad_tokenizer(untrained):
    with pytest.raises(TypeError, match="tokenizer"):
        loglikelihoods(untrained, object(), [("a", "b")])


def test_empty_task(tok, untrained):
    res = evaluate_task(untrained, tok, Task(name="x", shape="lambada", records=[]))
    assert res == {"task": "x", "n": 0}
