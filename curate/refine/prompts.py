"""ProX prompts: what the refining model reads and how long it may write.

The formats follow ProX's data-generation scripts (``data_gen/tasks/apply_doc_refining.py`` and
``apply_chunk_refining.py`` in GAIR-NLP/ProX):

* both levels use two chat messages, a system message ``"You are a helpful, respectful and honest
  assistant."`` and a user message, rendered with the model's own chat template and the generation
  prompt (``apply_chat_template(..., add_generation_prompt=True)``); decoding is greedy;
* **document level**: the user message is the raw document; the model writes ``drop_doc()`` or
  ``keep_doc()``; ProX truncates the prompt to 2,000 tokens and lets the model write up to 2,000
  tokens (``DOC_MAX_PROMPT_TOKENS``, ``DOC_MAX_NEW_TOKENS``);
* **chunk level**: the document is split on ``"\\n"`` into lines, each line prefixed with its
  document-wide 0-based index as ``[{i:03d}]`` (no space after the bracket; index 1000 on is four
  digits), and cut into chunks of whole lines: a line joins the current chunk while the chunk's
  token count stays at most ``max_tokens`` (1,500); a line alone longer than that is a chunk of its
  own. A line's token count is ``len(tokenizer.encode("[iii]" + line))``, special tokens included,
  as ProX counts it. Lines are joined with ``"\\n"`` and the chunk is wrapped as
  ``"[doc]\\n" + chunk + "\\n[/doc]"``. The model writes ``remove_lines(line_start=, line_end=)``,
  ``normalize(source_str=, target_str=)`` or ``skip_chunk()``, up to 256 tokens
  (``CHUNK_MAX_NEW_TOKENS``). Each chunk's output is stripped of spaces and the outputs of a
  document are joined with newlines (:func:`combine_chunk_programs`, which also drops ``skip_chunk()``).

Where ProX and this module differ: ProX truncates the doc-level prompt *after* rendering the
template (which can cut the generation prompt off a long document); :func:`doc_messages` truncates
the document text instead, so the rendered prompt always ends with the generation prompt.

A tokenizer without a chat template (a ``curate train`` checkpoint, whose tokenizer is a plain BPE)
is rendered with :data:`PLAIN_CHAT_TEMPLATE`::

    <|system|>
    You are a helpful, respectful and honest assistant.
    <|user|>
    {user message}
    <|assistant|>

(the markers are plain text, not special tokens). :func:`curate.refine.train.train_refiner` saves
this template into the refiner's tokenizer, so the refiner also renders the same way in vLLM.
"""
from __future__ import annotations

from dataclasses import dataclass

SYSTEM_PROMPT = "You are a helpful, respectful and honest assistant."
DOC_MAX_NEW_TOKENS = 2000  # ProX apply_doc_refining.py: SamplingParams(max_tokens=2000)
DOC_MAX_PROMPT_TOKENS = 2000  # ProX apply_doc_refining.py: apply_chat_template(truncation=True, max_length=2000)
CHUNK_MAX_NEW_TOKENS = 256  # ProX apply_chunk_refining.py: SamplingParams(max_tokens=256)
CHUNK_MAX_TOKENS = 1500  # ProX apply_chunk_refining.py: trunc_text(max_token=1500)
LINE_INDEX_DIGITS = 3
SKIP_CHUNK = "skip_chunk()"
DROP_DOC = "drop_doc()"
KEEP_DOC = "keep_doc()"

# The fallback chat template, as jinja (what transformers and vLLM render) and as the Python below.
PLAIN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


@dataclass(frozen=True)
class Chunk:
    """Whole lines ``first_line`` .. ``last_line`` (inclusive, 0-based, document-wide) of a document."""

    first_line: int
    last_line: int
    text: str  # the chunk as the model reads it: "[doc]\n[iii]line\n...\n[/doc]"
    n_tokens: int  # the lines' token count, as ProX counts it

    @property
    def lines(self) -> range:
        return range(self.first_line, self.last_line + 1)


def _messages(user: str) -> list[dict]:
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def _encode(tokenizer, texts: list[str], add_special_tokens: bool = True) -> list[list[int]]:
    if not texts:
        return []
    return tokenizer(texts, add_special_tokens=add_special_tokens)["input_ids"]


def truncate_to_tokens(text: str, tokenizer, max_tokens: int) -> str:
    """``text`` cut to its first ``max_tokens`` tokens (no special tokens); unchanged when it fits."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=tokenizer.is_fast)
    ids = enc["input_ids"]
    if len(ids) <= max_tokens:
        return text
    if tokenizer.is_fast:
        return text[: enc["offset_mapping"][max_tokens - 1][1]]
    return tokenizer.decode(ids[:max_tokens])


def doc_messages(text: str, tokenizer=None, max_tokens: int | None = DOC_MAX_PROMPT_TOKENS) -> list[dict]:
    """The document-level chat messages: ProX's system message and the raw document.

    With a ``tokenizer``, the document is cut to its first ``max_tokens`` tokens first."""
    if tokenizer is not None and max_tokens is not None:
        text = truncate_to_tokens(text, tokenizer, max_tokens)
    return _messages(text)


def number_line(index: int, line: str) -> str:
    return f"[{index:0{LINE_INDEX_DIGITS}d}]{line}"


def wrap_doc(body: str) -> str:
    return f"[doc]\n{body}\n[/doc]"


def chunk_lines(text: str, tokenizer, max_tokens: int = CHUNK_MAX_TOKENS) -> list[Chunk]:
    """The document cut into chunks of whole numbered lines (ProX's ``trunc_text``); an empty text has none."""
    if text == "":
        return []
    lines = [number_line(i, line) for i, line in enumerate(text.split("\n"))]
    counts = [len(ids) for ids in _encode(tokenizer, lines)]
    chunks: list[Chunk] = []
    start, total = 0, 0

    def close(end: int, n: int):
        chunks.append(Chunk(start, end - 1, wrap_doc("\n".join(lines[start:end])), n))

    for i, n in enumerate(counts):
        if i > start and total + n > max_tokens:
            close(i, total)
            start, total = i, 0
        total += n
        if total > max_tokens:  # a line alone over the limit: a chunk of its own
            close(i + 1, total)
            start, total = i + 1, 0
    if start < len(lines):
        close(len(lines), total)
    return chunks


def chunk_messages(chunk: Chunk | str) -> list[dict]:
    """The chunk-level chat messages: ProX's system message and the ``[doc]``-wrapped numbered lines."""
    return _messages(chunk.text if isinstance(chunk, Chunk) else chunk)


def render_plain(messages: list[dict], add_generation_prompt: bool = True) -> str:
    """:data:`PLAIN_CHAT_TEMPLATE` rendered in Python (same string as the jinja)."""
    out = "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in messages)
    return out + ("<|assistant|>\n" if add_generation_prompt else "")


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_prompt(messages: list[dict], tokenizer=None) -> str:
    """The prompt string the model reads: the tokenizer's own chat template with the generation
    prompt, or :data:`PLAIN_CHAT_TEMPLATE` when it has none (or no tokenizer is given)."""
    if tokenizer is not None and has_chat_template(tokenizer):
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return render_plain(messages)


def doc_prompt(text: str, tokenizer) -> str:
    return render_prompt(doc_messages(text, tokenizer), tokenizer)


def chunk_prompts(text: str, tokenizer, max_tokens: int = CHUNK_MAX_TOKENS) -> tuple[list[Chunk], list[str]]:
    """(chunks, their rendered prompts) of one document."""
    chunks = chunk_lines(text, tokenizer, max_tokens)
    return chunks, [render_prompt(chunk_messages(c), tokenizer) for c in chunks]


def program_calls(program: str) -> list[str]:
    """The non-empty lines of a program, each stripped of surrounding whitespace."""
    return [line.strip() for line in program.split("\n") if line.strip()]


def combine_chunk_programs(outputs: list[str]) -> str:
    """The whole-document program from its chunks' outputs, in chunk order: each output stripped of
    spaces (as ProX does), the calls joined with newlines, ``skip_chunk()`` left out. A document whose
    chunks were all skipped has the empty program."""
    calls = []
    for out in outputs:
        calls.extend(c for c in program_calls(out.strip(" ")) if c.replace(" ", "") != SKIP_CHUNK)
    return "\n".join(calls)
