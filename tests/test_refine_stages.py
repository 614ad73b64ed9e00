"""`prox_doc` / `prox_chunk` on the real runner, with the model answering over a real HTTP round trip
(an OpenAI-compatible server in a thread that plays a refining model by rule: it drops documents about
spam and removes the menu lines it is shown), so every decision of the stages is checked exactly.
The transformers and vLLM backends themselves are tested in test_refine_backends.py."""
from __future__ import annotations

import glob
import json
import os
import re

import pyarrow.parquet as pq
import pytest
from conftest import CompletionServer, prose

pytest.importorskip("transformers")

from curate.core.recipe import parse_recipe  # noqa: E402
from curate.core.runner import run_recipe  # noqa: E402
from curate.tokenizer import train_tokenizer  # noqa: E402


def _refiner(path, auth, body):
    """Plays a refining model by rule: drops documents about spam, removes the menu lines it is shown."""
    prompt = body["prompt"]
    if "[doc]" in prompt:  # chunk level: remove every numbered line that starts with "Menu"
        if "Loop" in prompt:  # a refiner stuck on one call until the token limit cuts the last one off
            return 200, "remove_lines(line_start=0, line_end=0)\n" * 3 + "remove_lines(line_st", "length"
        nums = [int(m) for m in re.findall(r"^\[(\d{3,})\]Menu", prompt, flags=re.M)]
        return 200, "\n".join(f"remove_lines(line_start={n}, line_end={n})" for n in nums) or "skip_chunk()"
    return 200, "drop_doc()" if "spam" in prompt else "keep_doc()"


@pytest.fixture(scope="module")
def server():
    srv = CompletionServer(_refiner)
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    root = tmp_path_factory.mktemp("tok")
    with open(root / "c.jsonl", "w") as f:
        for i in range(30):
            f.write(json.dumps({"text": prose(i)}) + "\n")
    train_tokenizer([str(root / "c.jsonl")], str(root / "tok"), vocab_size=300)
    return str(root / "tok")


def _docs(path):
    docs = [
        {"id": "1", "text": "Menu Home About\n" + prose(1) + "\nMenu Contact\n" + prose(2)},
        {"id": "2", "text": "Buy spam now, the best spam in town.\n" + prose(3)},
        {"id": "3", "text": prose(4) + "\n" + prose(5)},
        {"id": "4", "text": "Menu A\nMenu B\nshort tail"},  # refined to three words: too few, dropped
        {"id": "5", "text": "Loop line\n" + prose(6)},  # the "model" loops: one cut-off call, the rest applies
    ]
    with open(path, "w") as f:
        for d in docs:
            f.write(json.dumps(d) + "\n")
    return docs


def _rows(folder):
    return {r["id"]: r for f in sorted(glob.glob(os.path.join(folder, "*.parquet"))) for r in pq.read_table(f).to_pylist()}


def test_prox_doc_then_chunk_through_the_runner(server, tokenizer, tmp_path):
    docs = _docs(tmp_path / "d.jsonl")
    out = tmp_path / "out"
    common = f"model: refiner, backend: openai, base_url: '{server.url}/v1', tokenizer: '{tokenizer}'"
    recipe = parse_recipe(f"input: {{path: {tmp_path / 'd.jsonl'}}}\noutput: {{path: {out}, write_rejected: true}}\n"
                          f"stages:\n  - prox_doc: {{{common}}}\n  - prox_chunk: {{{common}, max_chunk_tokens: 40}}\n", "<t>")
    server.calls.clear()
    res = run_recipe(recipe)
    data, rejected = _rows(out / "data"), _rows(out / "rejected")
    assert rejected["2"]["drop_reason"] == "prox_drop_doc"
    assert data["1"]["text"] == prose(1) + "\n" + prose(2)  # both menu lines gone, by their document-wide numbers
    assert data["1"]["prox_chunk_action"] == "refined" and data["1"]["prox_chunk_invalid"] == 0
    assert data["1"]["prox_chunk_program"] == ("remove_lines(line_start=0, line_end=0)\n"
                                               "remove_lines(line_start=2, line_end=2)")
    assert data["3"]["text"] == docs[2]["text"] and data["3"]["prox_doc_program"] == "keep_doc()"
    assert rejected["4"]["drop_reason"] == "prox_too_few_words"
    assert data["5"]["text"] == prose(6) and data["5"]["prox_chunk_invalid"] == 1 and data["5"]["prox_chunk_cut"] == 1
    assert all(data[i]["prox_chunk_cut"] == 0 for i in ("1", "3")) and data["3"]["prox_doc_cut"] is False
    assert res.stats["prox_doc"].dropped == {"prox_drop_doc": 1}
    assert res.stats["prox_chunk"].dropped == {"prox_too_few_words": 1}
    assert not res.problems  # the ledger balances at every stage
    chunked = [body["prompt"] for _, _, body in server.calls if "[doc]" in body["prompt"]]
    assert len(chunked) > 3  # 40-token chunks: documents were cut into several prompts
    assert all(re.search(r"^\[\d{3}\]", p, flags=re.M) for p in chunked)


def test_openai_concurrency_is_passed_and_checked(server, tokenizer, tmp_path):
    from curate.refine.stages import ProxChunk

    stage = ProxChunk(model="refiner", backend="openai", base_url=f"{server.url}/v1", tokenizer=tokenizer, concurrency=3)
    stage.setup()
    assert stage._backend.concurrency == 3
    text = (f"input: {{path: {tmp_path / 'd.jsonl'}}}\noutput: {{path: {tmp_path / 'o'}}}\nstages:\n"
            f"  - prox_chunk: {{model: refiner, backend: openai, base_url: 'http://x/v1', concurrency: 0}}\n")
    with pytest.raises(Exception, match=r"<t>:4.*concurrency.*>= 1"):
        parse_recipe(text, "<t>")
