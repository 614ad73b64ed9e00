"""curate's downstream evaluation against lm-evaluation-harness on the same model and prompts (when lm_eval is
installed), and records whose continuation does not fit the context left out and counted."""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import random

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from curate.train import evaluate as ev  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = ("the cat sat on mat dog ran to park a bird sang in tree my friend drove city baker sold fresh bread "
         "river stone green window music paper yellow garden quickly table question answer what is it").split()

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_and_tok(tmp_path_factory):
    """A tiny random Llama and a byte-level BPE, saved and loaded back as transformers objects."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    rng = random.Random(0)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(400)]
    lines += ["Question: what is it?\nAnswer: " + rng.choice(WORDS) for _ in range(20)]
    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    t.train_from_iterator(lines, trainer=trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                             show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=t, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                  pad_token="<|endoftext|>")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=t.get_vocab_size(), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=64,
                                         bos_token_id=0, eos_token_id=0, pad_token_id=0)).eval()
    return model, tok


def _write(path, records) -> str:
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    return str(path)


def _tasks(tmp_path) -> list[str]:
    rng = random.Random(1)

    def words(k):
        return " ".join(rng.choice(WORDS) for _ in range(k))

    mc = [{"query": f"Question: {words(6)}?", "choices": [words(rng.randint(1, 4)) for _ in range(4)],
           "gold": rng.randrange(4)} for _ in range(12)]
    nl = [{"query": f"Question: {words(5)}?\n", "choices": [words(2), words(3)], "gold": rng.randrange(2)}
          for _ in range(8)]  # queries ending in whitespace (PIQA's form): no space added
    wino = [{"context_options": [f"{words(4)} cat", f"{words(4)} dog"], "continuation": words(3),
             "gold": rng.randrange(2)} for _ in range(8)]
    lam = [{"context": words(rng.randint(5, 60)), "continuation": rng.choice(WORDS)} for _ in range(10)]
    return [_write(tmp_path / "mc.jsonl", mc), _write(tmp_path / "nl.jsonl", nl),
            _write(tmp_path / "wino.jsonl", wino), _write(tmp_path / "lam.jsonl", lam)]


def test_records_that_do_not_fit_are_left_out_and_counted(model_and_tok, tmp_path, caplog):
    model, tok = model_and_tok
    long_choice = " ".join(["river"] * 40)
    path = _write(tmp_path / "long.jsonl", [
        {"query": "Question: what is it?", "choices": ["cat", "dog"], "gold": 0},
        {"query": "Question: what is it?", "choices": ["cat", long_choice], "gold": 1},
        {"query": "Question: the bird?", "choices": ["tree", "park"], "gold": 1}])
    task = ev.load_task(path)
    with caplog.at_level(logging.WARNING, logger="curate.train.evaluate"):
        res = ev.evaluate_task(model, tok, task, max_length=16)
    assert res["n"] == 2 and res["too_long"] == 1
    assert f"{path}: 1 of 3 records" in caplog.text and "record 2" in caplog.text
    # the same metrics as the task without that record
    short = ev.Task(task.name, task.shape, [task.records[0], task.records[2]], path)
    assert {k: v for k, v in ev.evaluate_task(model, tok, short, max_length=16).items() if k != "too_long"} == \
        {k: v for k, v in res.items() if k != "too_long"}
    with pytest.raises(ValueError, match=r"request 3: continuation of \d+ tokens does not fit max_length=16"):
        ev.loglikelihoods(model, tok, [("a", "cat"), ("b", "dog"), ("c", long_choice)], max_length=16)
    lam = ev.load_task(_write(tmp_path / "lam-long.jsonl", [{"context": "the", "continuation": long_choice}]))
    assert ev.evaluate_task(model, tok, lam, max_length=16) == {"task": "lam-long", "n": 0, "too_long": 1}


def test_same_results_as_lm_evaluation_harness(model_and_tok, tmp_path):
    pytest.importorskip("lm_eval")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    spec = importlib.util.spec_from_file_location("eval_parity", os.path.join(ROOT, "bench", "eval_parity.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    model, tok = model_and_tok
    tasks = [ev.load_task(p) for p in _tasks(tmp_path)]
    yamls = tmp_path / "yaml"
    os.makedirs(yamls)
    names = {}
    for t in tasks:
        name, text = bench.task_yaml(t, 8)
        (yamls / f"{name}.yaml").write_text(text)
        names[t.name] = name
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=4, max_length=48, device="cpu")
    out = lm_eval.simple_evaluate(model=lm, tasks=list(names.values()), bootstrap_iters=0, log_samples=True,
                                  task_manager=TaskManager(include_path=str(yamls), include_defaults=False))
    for t in tasks:
        ours = ev.evaluate_task(model, tok, t, batch_size=4, max_length=48)
        theirs = out["results"][names[t.name]]
        assert ours["acc"] == pytest.approx(theirs["acc,none"]), t.name
        if t.shape == ev.MULTIPLE_CHOICE:
            assert ours["acc_norm"] == pytest.approx(theirs["acc_norm,none"]), t.name
        if t.shape == ev.LAMBADA:
            assert ours["ppl"] == pytest.approx(theirs["perplexity,none"], rel=1e-4)
        # per request: the same log-likelihood (to float noise of another batch composition)
        smp = sorted(out["samples"][names[t.name]], key=lambda s: s["doc_id"])
        lm_ll = [float(r[0]) for s in smp for r in (s["filtered_resps"] if t.shape != ev.LAMBADA
                                                     else s["filtered_resps"][:1])]
        mine = [ll for ll, _, _ in ev.loglikelihoods(model, tok, bench.requests_of(t), batch_size=4, max_length=48)]
        assert len(mine) == len(lm_ll) and max(abs(a - b) for a, b in zip(mine, lm_ll)) < 1e-4, t.name
