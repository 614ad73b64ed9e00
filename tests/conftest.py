import glob
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.core.recipe import parse_recipe
from curate.core.runner import run_recipe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROSE = [
    "The river had risen overnight, and by morning the lower fields were a sheet of brown water that reflected the low clouds.",
    "Engineers measured the load on each beam twice, once in the cold of the early morning and again in the heat of the afternoon.",
    "She kept a notebook of every recipe she tried, with the oven temperature, the baking time and a short verdict in the margin.",
    "Volunteers counted the birds along the coast every spring, and their records now span more than forty years of careful work.",
    "The library reopened after the renovation with longer hours, a quiet reading room and a small workshop for repairing old books.",
    "A good compiler error message names the file, the line and the reason, and ideally suggests what the programmer meant to write.",
]


def prose(i: int, n_sentences: int = 6) -> str:
    return " ".join(PROSE[(i + k) % len(PROSE)] for k in range(n_sentences)) + f" Document number {i}."


def write_jsonl(path, records, opener=open):
    with opener(path, "wt") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    return str(path)


def read_output(out_dir, part="data") -> pa.Table:
    files = sorted(glob.glob(os.path.join(out_dir, part, "*.parquet")))
    if not files:
        return pa.table({})
    return pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")


def run_text(recipe_text: str, workers: int = 1):
    recipe = parse_recipe(recipe_text, "<test>")
    return run_recipe(recipe, workers=workers)


@pytest.fixture
def run():
    return run_text


class CompletionServer:
    """An OpenAI-compatible ``/v1/completions`` server in a thread, for the refinement tests: a real
    HTTP round trip whose answers come from ``answer(path, authorization, body) -> (status, text)``
    or ``(status, text, finish_reason)`` (default ``"stop"``; ``"length"``: cut off by ``max_tokens``).
    Every request is recorded in ``calls`` as (path, authorization, body)."""

    def __init__(self, answer):
        import http.server
        import threading

        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                auth = self.headers.get("Authorization")
                server.calls.append((self.path, auth, body))
                status, text, *finish = server.answer(self.path, auth, body)
                choice = {"index": 0, "text": text, "finish_reason": finish[0] if finish else "stop"}
                data = (json.dumps({"choices": [choice]}) if status == 200 else text).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.answer, self.calls = answer, []
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a module: tiny models gain nothing from intra-op threads, and on a busy
    2-core machine the synchronisation costs many times the work."""
    torch = pytest.importorskip("torch")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def two_domain_mix(root, *, vocab_size: int, seq_length: int, total_tokens: int, heldout_tokens: int, phases: list,
                   files=("web-0.jsonl", "web-1.jsonl"), weights=None):
    """The sample corpus's paragraphs (over 40 characters) split into two domains ``x`` and ``y``, a BPE
    tokenizer trained on them and a ``curate mix`` of them in ``root/mix`` (returned)."""
    from curate.mix.pipeline import run_mix
    from curate.mix.spec import parse_spec
    from curate.tokenizer import train_tokenizer

    paras = []
    for name in files:
        with open(os.path.join(ROOT, "samples", "corpus", name)) as f:
            for line in f:
                paras += [p for p in json.loads(line)["text"].split("\n") if len(p) > 40]
    half = len(paras) // 2
    for name, part in (("x", paras[:half]), ("y", paras[half:])):
        os.makedirs(root / name)
        pq.write_table(pa.table({"id": [f"{name}{i}" for i in range(len(part))], "text": part}),
                       root / name / "data.parquet")
    train_tokenizer([str(root / "x"), str(root / "y")], str(root / "tok"), vocab_size=vocab_size)
    spec = parse_spec(json.dumps({
        "tokenizer": str(root / "tok"), "seq_length": seq_length, "total_tokens": total_tokens, "seed": 1,
        "heldout_tokens": heldout_tokens, "domains": {"x": {"path": str(root / "x")}, "y": {"path": str(root / "y")}},
        "phases": phases}))
    run_mix(spec, str(root / "mix"))
    return root / "mix"
