"""``prox_doc`` and ``prox_chunk``: a refining model writes a program per document; curate executes it.

Both are per-batch stages (``Mapper``s that may also drop, with reasons): each worker loads the
model once (``setup``), renders ProX's prompts (:mod:`curate.refine.prompts`), generates greedily
through one backend (:mod:`curate.refine.backends`: ``transformers`` on CPU or GPU, ``vllm`` on GPU,
``openai`` for any OpenAI-compatible server such as ``vllm serve``), and executes the programs with
:mod:`curate.refine.execute` (never ``eval``; an invalid program changes nothing).

* ``prox_doc``: one prompt per document; an output containing ``drop_doc()`` drops it
  (``prox_drop_doc``); the program goes to the ``prox_doc_program`` column, ``prox_doc_cut`` says
  whether the token limit cut it off.
* ``prox_chunk``: the document's lines in chunks of at most ``max_chunk_tokens`` tokens, one prompt
  per chunk; the chunks' programs are combined into the document's program (line numbers are
  document-wide) and executed with ProX's rules: a refined text, a drop (``prox_word_ratio``,
  ``prox_too_few_words``) or the text unchanged. Columns ``prox_chunk_program`` (the calls applied),
  ``prox_chunk_action``, ``prox_chunk_invalid`` (invalid calls in the model's program) and
  ``prox_chunk_cut`` (chunks whose output the token limit cut off: a refiner that loops on one call
  until the limit leaves a cut, invalid last call).

Recipe example (the refiner of ``curate train-refiner``, or any causal LM folder)::

    - prox_doc: {model: models/refiner, backend: transformers, batch_size: 16}
    - prox_chunk: {model: models/refiner, backend: vllm}
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import pyarrow as pa

from curate import schema as S
from curate.core.registry import register
from curate.core.stage import Mapper


@dataclass(kw_only=True)
class _Refiner(Mapper):
    model: str  # a local causal-LM folder (with its tokenizer); with backend openai, the served model's name
    backend: Literal["transformers", "vllm", "openai"] = "transformers"
    tokenizer: str | None = None  # default: the model folder's
    base_url: str | None = None  # openai: the server, e.g. http://127.0.0.1:8000/v1
    served_model: str | None = None  # openai: the model name the server knows (default: model)
    concurrency: int = 8  # openai: requests in flight at once (the server batches them)
    batch_size: int = 16
    device: str = "auto"
    dtype: str = "float32"
    max_new_tokens: int | None = None  # default: ProX's for the level
    num_threads: int | None = None  # transformers on CPU: torch threads (1 is fastest on a busy machine)
    limits: ClassVar[dict] = {"concurrency": (1, None)}

    def __post_init__(self):
        import os

        local = self.model.removeprefix("file://")
        if self.backend != "openai" and "://" not in local and not os.path.isfile(os.path.join(local, "config.json")):
            raise ValueError(f"model: no model folder at {self.model!r} (a folder with config.json and the tokenizer, "
                             "e.g. the output of `curate train-refiner`)")
        if self.backend == "openai" and not self.base_url:
            raise ValueError("backend openai needs base_url (the server, e.g. http://127.0.0.1:8000/v1)")

    def setup(self) -> None:
        from curate.refine.backends import make_backend

        if self.backend == "openai":
            self._backend = make_backend("openai", base_url=self.base_url, model=self.served_model or self.model,
                                         concurrency=self.concurrency)
        elif self.backend == "vllm":
            self._backend = make_backend("vllm", model_path=self.model, dtype=self.dtype)
        else:
            self._backend = make_backend("transformers", model_path=self.model, device=self.device, dtype=self.dtype,
                                         batch_size=self.batch_size, num_threads=self.num_threads)
        from transformers import AutoTokenizer

        self._tok = AutoTokenizer.from_pretrained(self.tokenizer or self.model)

    def _generate(self, prompts: list[str], max_new_tokens: int) -> tuple[list[str], list[bool]]:
        """The outputs and, for each, whether the token limit cut it off."""
        return self._backend.generate_cut(prompts, max_new_tokens) if prompts else ([], [])


@register
@dataclass(kw_only=True)
class ProxDoc(_Refiner):
    """ProX document level: the model writes drop_doc() or keep_doc() for each document."""

    stage: ClassVar[str] = "prox_doc"

    def map(self, batch: pa.RecordBatch):
        from curate.refine.prompts import DOC_MAX_NEW_TOKENS, doc_prompt
        from curate.refine.program import parse_program

        texts = batch.column(S.TEXT).to_pylist()
        outputs, cut = self._generate([doc_prompt(t or "", self._tok) for t in texts],
                                      self.max_new_tokens or DOC_MAX_NEW_TOKENS)
        drop = np.array([any(c.name == "drop_doc" for c in parse_program(o, level="doc").calls) for o in outputs])
        reasons = np.where(drop, "prox_drop_doc", None).astype(object)
        return batch.column(S.TEXT), reasons, {"prox_doc_program": pa.array([o.strip() for o in outputs], type=pa.string()),
                                               "prox_doc_cut": pa.array(cut, type=pa.bool_())}


@register
@dataclass(kw_only=True)
class ProxChunk(_Refiner):
    """ProX chunk level: the model writes remove_lines / normalize / skip_chunk per chunk of lines."""

    stage: ClassVar[str] = "prox_chunk"
    max_chunk_tokens: int = 1500
    drop_ratio: float = 0.05
    min_words: int = 10
    max_invalid: int = 2

    def map(self, batch: pa.RecordBatch):
        from curate.refine.execute import Settings, execute_batch, outcome
        from curate.refine.prompts import CHUNK_MAX_NEW_TOKENS, chunk_prompts, combine_chunk_programs

        texts = batch.column(S.TEXT).to_pylist()
        prompts, owner = [], []
        for i, t in enumerate(texts):
            _, ps = chunk_prompts(t or "", self._tok, self.max_chunk_tokens)
            prompts += ps
            owner += [i] * len(ps)
        outputs, cut = self._generate(prompts, self.max_new_tokens or CHUNK_MAX_NEW_TOKENS)
        n_cut = np.bincount(np.asarray(owner, dtype=np.int64)[np.asarray(cut, dtype=bool)], minlength=len(texts))
        per_doc: list[list[str]] = [[] for _ in texts]
        for i, o in zip(owner, outputs):
            per_doc[i].append(o)
        programs = [combine_chunk_programs(outs) for outs in per_doc]
        res = execute_batch(batch.column(S.TEXT), programs,
                            Settings(drop_ratio=self.drop_ratio, min_words=self.min_words, max_invalid=self.max_invalid))
        text, reasons = outcome(res, batch.column(S.TEXT))
        return (text, reasons,
                {"prox_chunk_program": res["applied"], "prox_chunk_action": res["action"],
                 "prox_chunk_invalid": res["n_invalid"], "prox_chunk_cut": pa.array(n_cut, type=pa.int32())})
