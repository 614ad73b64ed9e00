"""ProX refinement, the model side: prompt formats, chunking with a real tokenizer, the transformers
and OpenAI-compatible backends on a tiny model and an in-thread HTTP server, the rule teacher's
programs, a refiner fine-tuned for a few steps, and (where vLLM is installed) vLLM's greedy output
against transformers'."""
from __future__ import annotations

import importlib.util
import json

import pytest
from conftest import CompletionServer, prose

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from curate.refine import prompts as P  # noqa: E402
from curate.refine.backends import OpenAIBackend, TransformersBackend, make_backend  # noqa: E402
from curate.refine.teacher import RuleTeacher, annotate, chunk_programs, chunk_targets, split_levels  # noqa: E402
from curate.refine.train import main as train_main  # noqa: E402
from curate.refine.train import train_refiner, training_examples  # noqa: E402
from curate.tokenizer import train_tokenizer  # noqa: E402

HAVE_VLLM = importlib.util.find_spec("vllm") is not None


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A curate-trained byte-level BPE tokenizer (no chat template) and a randomly initialised
    two-layer Llama (head_dim 32: vLLM's CPU attention has no kernel for 8) saved with it: what `curate train` writes, only smaller."""
    root = tmp_path_factory.mktemp("refine")
    corpus = root / "corpus.jsonl"
    with open(corpus, "w") as f:
        for i in range(40):
            f.write(json.dumps({"text": prose(i) + "\n[001]remove_lines(line_start=1, line_end=2)\nskip_chunk()"}) + "\n")
    tok = train_tokenizer([str(corpus)], str(root / "model"), vocab_size=400)
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=tok.vocab_size, hidden_size=64, intermediate_size=128,
                                      num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                      max_position_embeddings=4096, bos_token_id=tok.eos_id,
                                      eos_token_id=tok.eos_id, pad_token_id=tok.eos_id)
    transformers.LlamaForCausalLM(config).save_pretrained(root / "model")
    return str(root / "model")


@pytest.fixture(scope="module")
def hf_tok(tiny):
    return transformers.AutoTokenizer.from_pretrained(tiny)


# ------------------------------------------------------------------------------------------ prompts


def test_doc_messages_are_prox_system_and_raw_text():
    text = "Line one.\nLine two."
    assert P.doc_messages(text) == [
        {"role": "system", "content": "You are a helpful, respectful and honest assistant."},
        {"role": "user", "content": text}]
    assert (P.DOC_MAX_NEW_TOKENS, P.CHUNK_MAX_NEW_TOKENS, P.CHUNK_MAX_TOKENS) == (2000, 256, 1500)


def test_doc_messages_truncate_the_text_not_the_template(hf_tok):
    text = " ".join(f"word{i}" for i in range(3000))
    user = P.doc_messages(text, hf_tok, max_tokens=100)[1]["content"]
    assert text.startswith(user) and len(hf_tok(user, add_special_tokens=False)["input_ids"]) <= 100
    assert P.render_prompt(P.doc_messages(text, hf_tok, 100), hf_tok).endswith("<|assistant|>\n")


def test_chunks_number_lines_wrap_doc_and_never_split_a_line(hf_tok):
    lines = [prose(i, n_sentences=1 + i % 4) for i in range(60)] + ["", "last"]
    text = "\n".join(lines)
    chunks = P.chunk_lines(text, hf_tok, max_tokens=400)
    assert len(chunks) > 3
    assert chunks[0].first_line == 0 and chunks[-1].last_line == len(lines) - 1
    for a, b in zip(chunks, chunks[1:]):
        assert b.first_line == a.last_line + 1
    for c in chunks:
        assert c.text.startswith("[doc]\n") and c.text.endswith("\n[/doc]")
        body = c.text[len("[doc]\n"):-len("\n[/doc]")].split("\n")
        assert body == [f"[{i:03d}]{lines[i]}" for i in c.lines]  # whole lines, document-wide indices
        counted = sum(len(hf_tok.encode(line)) for line in body)  # as ProX counts: per line, encode()
        assert counted == c.n_tokens <= 400
    # a chunk stops only where the next line would not fit
    for a, b in zip(chunks, chunks[1:]):
        assert a.n_tokens + len(hf_tok.encode(f"[{b.first_line:03d}]{lines[b.first_line]}")) > 400
    assert [c.text for c in P.chunk_lines(text, hf_tok, max_tokens=10**6)] == [P.wrap_doc("\n".join(
        f"[{i:03d}]{line}" for i, line in enumerate(lines)))]
    assert P.chunk_lines("", hf_tok) == []


def test_a_line_over_the_limit_is_a_chunk_of_its_own(hf_tok):
    text = "short one.\n" + "long " * 300 + "\nshort two."
    chunks = P.chunk_lines(text, hf_tok, max_tokens=50)
    assert [(c.first_line, c.last_line) for c in chunks] == [(0, 0), (1, 1), (2, 2)]
    assert chunks[1].n_tokens > 50
    assert "\n[1000]x\n" in P.chunk_lines("\n".join(["x"] * 1200), hf_tok, max_tokens=10**6)[0].text


def test_render_prompt_fallback_equals_the_saved_jinja_template(hf_tok):
    msgs = P.chunk_messages(P.chunk_lines("A line.\nAnother line.", hf_tok)[0])
    assert msgs[1]["content"] == "[doc]\n[000]A line.\n[001]Another line.\n[/doc]"
    plain = P.render_prompt(msgs, hf_tok)
    assert plain == ("<|system|>\nYou are a helpful, respectful and honest assistant.\n<|user|>\n"
                     "[doc]\n[000]A line.\n[001]Another line.\n[/doc]\n<|assistant|>\n")
    tok = transformers.AutoTokenizer.from_pretrained(hf_tok.name_or_path)
    tok.chat_template = P.PLAIN_CHAT_TEMPLATE
    assert P.render_prompt(msgs, tok) == plain
    tok.chat_template = "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}>>{% endif %}"
    assert P.render_prompt(msgs, tok) == f"[system]{P.SYSTEM_PROMPT}[user]{msgs[1]['content']}>>"


def test_combine_chunk_programs():
    outs = [" remove_lines(line_start=0, line_end=3)\nnormalize(source_str=\"a\", target_str=\"b\") ",
            "skip_chunk()", "remove_lines(line_start=40, line_end=41)"]
    assert P.combine_chunk_programs(outs) == ("remove_lines(line_start=0, line_end=3)\n"
                                              "normalize(source_str=\"a\", target_str=\"b\")\n"
                                              "remove_lines(line_start=40, line_end=41)")
    assert P.combine_chunk_programs(["skip_chunk()", " skip_chunk() "]) == ""


# ------------------------------------------------------------------------------------------ backends


def test_transformers_backend_batches_like_one_by_one(tiny, hf_tok):
    prompts = [P.render_prompt(P.chunk_messages(c), hf_tok) for i in range(5)
               for c in P.chunk_lines(prose(i, 1 + i) + "\nMenu\nHome", hf_tok)]
    one = TransformersBackend(tiny, device="cpu", batch_size=1).generate(prompts, 12)
    many = make_backend("transformers", model_path=tiny, device="cpu", batch_size=4).generate(prompts, 12)
    assert many == one and all(isinstance(s, str) for s in one)
    # greedy: the output is the argmax continuation, computed here without generate()
    model, ids = TransformersBackend(tiny, device="cpu").model, hf_tok(prompts[0], add_special_tokens=False)["input_ids"]
    new = []
    with torch.inference_mode():
        for _ in range(12):
            nxt = int(model(torch.tensor([ids + new])).logits[0, -1].argmax())
            if nxt == hf_tok.eos_token_id:
                break
            new.append(nxt)
    assert one[0] == hf_tok.decode(new, skip_special_tokens=True)
    texts, cut = TransformersBackend(tiny, device="cpu", batch_size=4).generate_cut(prompts[:1], 12)
    assert texts == one[:1] and cut == [len(new) == 12]  # cut off: no end of text within the limit
    assert TransformersBackend(tiny, device="cpu").generate([], 5) == []


class _Answers:
    """Echoes the prompt; ``bad`` is a 400; the first ``fail_first`` requests are 503s."""

    def __init__(self):
        self.fail_first = 0

    def __call__(self, path, auth, body):
        if self.fail_first > 0:
            self.fail_first -= 1
            return 503, "busy"
        if body["prompt"] == "bad":
            return 400, '{"error": "bad prompt"}'
        return 200, "skip_chunk()" if "[doc]" in body["prompt"] else f"echo:{body['prompt']}:{body['max_tokens']}"


@pytest.fixture
def server():
    srv = CompletionServer(_Answers())
    yield srv
    srv.close()


def test_openai_backend_round_trip_retries_and_errors(server):
    calls, url = server.calls, server.url
    be = OpenAIBackend(url, "refiner", api_key="k", concurrency=3, backoff=0.01)
    prompts = [f"p{i}" for i in range(7)] + ["[doc]\n[000]x\n[/doc]"]
    assert be.generate(prompts, 256) == [f"echo:p{i}:256" for i in range(7)] + ["skip_chunk()"]
    assert be.generate_cut(["p0", "p1"], 5) == (["echo:p0:5", "echo:p1:5"], [False, False])  # finish_reason "stop"
    path, auth, body = calls[0]
    assert path == "/v1/completions" and auth == "Bearer k"
    assert body["temperature"] == 0 and body["model"] == "refiner"
    server.answer.fail_first = 2  # two 503s, then the answer
    assert OpenAIBackend(url + "/v1", "m", backoff=0.01).generate(["q"], 5) == ["echo:q:5"]
    assert [c[0] for c in calls[-3:]] == ["/v1/completions"] * 3
    with pytest.raises(RuntimeError, match="HTTP 400"):
        OpenAIBackend(url, "m", backoff=0.01).generate(["bad"], 5)
    with pytest.raises(RuntimeError, match="no answer after 2 tries"):
        OpenAIBackend("http://127.0.0.1:9", "m", retries=1, backoff=0.01, timeout=2).generate(["x"], 5)


def test_vllm_backend_names_the_extra_when_missing():
    if HAVE_VLLM:
        pytest.skip("vllm is installed here")
    with pytest.raises(ImportError, match=r"curate\[vllm\]"):
        make_backend("vllm", model_path="/nonexistent")
    with pytest.raises(ValueError, match="unknown backend"):
        make_backend("nope")


@pytest.mark.skipif(not HAVE_VLLM, reason="vllm is not installed")
def test_vllm_greedy_equals_transformers(tiny, hf_tok, monkeypatch):
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    from curate.refine.backends import VLLMBackend

    prompts = [P.render_prompt(P.chunk_messages(c), hf_tok) for i in range(4)
               for c in P.chunk_lines(prose(i, 1 + i) + "\nMenu", hf_tok)]
    hf, hf_cut = TransformersBackend(tiny, device="cpu", batch_size=1).generate_cut(prompts, 16)
    vl = VLLMBackend(tiny, dtype="float32", enforce_eager=True, max_model_len=1024)
    try:
        got, cut = vl.generate_cut(prompts, 16)
    finally:
        vl.close()
    assert got == hf and any(got) and cut == hf_cut


# ------------------------------------------------------------------------------------------ teacher

JS = "Please enable JavaScript in your browser to see this content."
LOREM = "Lorem ipsum dolor sit amet, consectetur adipiscing elit."


def test_teacher_removes_the_lines_c4_would_remove():
    lines = [prose(0), JS, "Menu", "", "Home | About | Contact", prose(1), LOREM, prose(2), "", "Share this"]
    ranges = RuleTeacher().removed_ranges(["\n".join(lines)])[0]
    assert ranges == [(1, 4), (6, 6), (9, 9)]  # the blank line 3 goes with its neighbours; line 8 stays
    prog = annotate(["\n".join(lines)], level="chunk")[0]
    assert prog == ("remove_lines(line_start=1, line_end=4)\nremove_lines(line_start=6, line_end=6)\n"
                    "remove_lines(line_start=9, line_end=9)")
    assert annotate([prose(3)], level="chunk") == [""]


def test_teacher_document_level():
    good = "\n".join([prose(0), JS, prose(1)])
    junk = "\n".join(["Menu", "Home", "Login"])
    numbers = "\n".join(["1 2 3 4 5 6 7 8 9 10 11 12."] * 20)  # gopher: not enough alphabetic words
    assert annotate([good, junk, numbers], level="doc") == ["keep_doc()", "drop_doc()", "drop_doc()"]
    both = annotate([good, junk], level="both")
    assert both == ["keep_doc()\nremove_lines(line_start=1, line_end=1)", "drop_doc()"]
    assert split_levels(both[0]) == ("keep_doc()", ["remove_lines(line_start=1, line_end=1)"])
    assert RuleTeacher(doc_rules=[]).annotate([numbers], "doc") == ["keep_doc()"]


def test_chunk_targets_cut_ranges_at_chunk_edges(hf_tok):
    lines = [prose(i, 2) for i in range(12)]
    text = "\n".join(lines)
    chunks = P.chunk_lines(text, hf_tok, max_tokens=150)
    assert len(chunks) >= 3
    a = chunks[0].last_line
    prog = f"keep_doc()\nremove_lines(line_start={a}, line_end={a + 1})\nnormalize(source_str=\"number 11.\", target_str=\"\")"
    got = chunk_targets(text, prog, hf_tok, max_tokens=150)
    targets = [t for _, t in got]
    assert targets[0] == f"remove_lines(line_start={a}, line_end={a})"
    assert targets[1] == f"remove_lines(line_start={a + 1}, line_end={a + 1})"
    assert targets[-1].startswith("normalize(") and all(t == "skip_chunk()" for t in targets[2:-1])
    assert chunk_programs(chunks, ["not a call(", "remove_lines(line_start=x)"]) == ["skip_chunk()"] * len(chunks)


# ------------------------------------------------------------------------------------------ training


def test_train_refiner_lowers_loss_and_saves_a_loadable_model(tiny, tmp_path):
    texts = ["\n".join([prose(i, 1), JS, "Menu", prose(i + 1, 1)]) for i in range(6)] + ["Menu\nHome"]
    records = [{"text": t, "program": p} for t, p in zip(texts, RuleTeacher(doc_rules=[]).annotate(texts, "both"))]
    assert records[0]["program"] == "keep_doc()\nremove_lines(line_start=1, line_end=2)"
    assert records[-1]["program"] == "drop_doc()"
    path = tmp_path / "ann.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    tok = transformers.AutoTokenizer.from_pretrained(tiny)
    ex = training_examples(records, tok, level="both")
    assert sorted(c for _, c in ex) == ["drop_doc()"] + ["keep_doc()"] * 6 + ["remove_lines(line_start=1, line_end=2)"] * 6
    assert sum(1 for p, _ in ex if "[doc]" in p) == 6  # the dropped document gives no chunk example
    out = tmp_path / "refiner"
    res = train_refiner(tiny, str(path), str(out), level="both", epochs=40, lr=5e-3, batch_size=4, seed=1,
                        max_length=1024, device="cpu")
    losses = res["losses"]
    assert res["examples"] == len(ex) and res["skipped_too_long"] == 0 and res["steps"] == 40 * 4
    assert sum(losses[-5:]) / 5 < 0.3 * sum(losses[:5]) / 5, losses
    model = transformers.AutoModelForCausalLM.from_pretrained(out)
    tok2 = transformers.AutoTokenizer.from_pretrained(out)
    assert tok2.chat_template == P.PLAIN_CHAT_TEMPLATE and model.config.model_type == "llama"
    # the refiner writes the teacher's programs for a training document, from the prompts it trained on
    chunk = P.render_prompt(P.chunk_messages(P.chunk_lines(texts[0], tok2)[0]), tok2)
    doc = P.render_prompt(P.doc_messages(texts[0], tok2), tok2)
    assert chunk in [p for p, _ in ex] and doc in [p for p, _ in ex]
    got = TransformersBackend(str(out), device="cpu").generate([chunk, doc], 30)
    assert got == ["remove_lines(line_start=1, line_end=2)", "keep_doc()"]
    # the same seed gives the same steps
    res2 = train_refiner(tiny, records, str(tmp_path / "again"), level="both", epochs=1, lr=5e-3, batch_size=4,
                         seed=1, max_length=1024, device="cpu")
    assert res2["losses"] == losses[:len(res2["losses"])]


def test_train_refiner_cli_and_bad_records(tiny, tmp_path, capsys):
    path = tmp_path / "pc.jsonl"
    path.write_text(json.dumps({"prompt": "<|user|>\nhi\n<|assistant|>\n", "completion": "keep_doc()"}) + "\n")
    assert train_main([tiny, str(path), "-o", str(tmp_path / "r"), "--epochs", "5", "--max-steps", "2", "--device", "cpu",
                       "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 2 and summary["examples"] == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        train_refiner(tiny, str(bad), str(tmp_path / "r2"))


def test_teacher_programs_parse_and_execute_to_what_c4_lines_keeps():
    import pyarrow as pa

    from curate import schema as S
    from curate.core.stage import apply_rule
    from curate.refine.execute import execute
    from curate.refine.program import parse_program
    from curate.stages.heuristics.c4 import C4Lines

    docs = ["\n".join([prose(i), JS, "Menu", "", "  Home  ", prose(i + 1), "Privacy policy and terms of use apply.",
                       prose(i + 2, 2), "", "Share", ""]) for i in range(4)]
    programs = annotate(docs, level="chunk")
    kept = apply_rule(C4Lines(), S.with_key(pa.RecordBatch.from_pydict({"id": [str(i) for i in range(4)],
                                                                        "text": docs}), "k"))[0]
    for doc, program, c4 in zip(docs, programs, kept.column("text").to_pylist()):
        assert parse_program(program, n_lines=len(doc.split("\n")), level="chunk").errors == []
        res = execute(doc, program)
        assert res.action == "refined"
        assert [line.strip() for line in res.text.split("\n") if line.strip()] == c4.split("\n")


def test_annotate_files_writes_training_records(tmp_path, tiny):
    from curate.refine.teacher import main as annotate_main

    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(
        ["\n".join([prose(0), JS, prose(1)]), "Menu\nHome\nLogin"])))
    out = tmp_path / "ann.jsonl"
    assert annotate_main([str(src), "-o", str(out)]) == 0
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["program"] for r in recs] == ["keep_doc()\nremove_lines(line_start=1, line_end=1)", "drop_doc()"]
    tok = transformers.AutoTokenizer.from_pretrained(tiny)
    assert [c for _, c in training_examples(recs, tok, level="chunk")] == ["remove_lines(line_start=1, line_end=1)"]
