"""Tokenizers: train a byte-level BPE on curated text, load any ``tokenizer.json``.

A trained tokenizer is written as a folder that both ``tokenizers.Tokenizer.from_file`` and
transformers' ``AutoTokenizer.from_pretrained`` load: ``tokenizer.json`` plus a small
``tokenizer_config.json`` naming the end-of-text token. Paths may be local or on any Beam
filesystem (gs://): files are read and written through ``FileSystems``. Nothing is downloaded
from a hub; a hub name is rejected with a clear message.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np

EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>", "<|im_end|>")
DEFAULT_EOS = "<|endoftext|>"
PAD = "<|pad|>"


@dataclass
class LoadedTokenizer:
    """A ``tokenizers.Tokenizer`` with what the mix and the trainer need to know about it."""

    tokenizer: object
    path: str  # the tokenizer.json
    eos_id: int
    eos_token: str
    sha256: str
    stats: dict | None = None  # set by train_tokenizer: files, docs (used), skipped ({reason: records})

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def token_dtype(self):
        """Smallest integer type Megatron's indexed dataset supports that holds every id."""
        return np.uint16 if self.vocab_size <= 65535 else np.int32

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        # encode_batch_fast skips character offsets, which nothing here uses (about 15% less CPU)
        encode = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)
        return [e.ids for e in encode(texts, add_special_tokens=False)]


def _remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _tokenizer_file(path: str) -> str:
    if _remote(path):
        from curate.io.readers import exists

        file = path if path.endswith(".json") else path.rstrip("/") + "/tokenizer.json"
        if not exists(file):
            raise FileNotFoundError(f"tokenizer not found: {file}. Give a tokenizer.json or a folder holding one "
                                    "(train one with `curate train-tokenizer`); nothing is downloaded from a hub.")
        return file
    path = path.removeprefix("file://")
    if os.path.isdir(path):
        path = os.path.join(path, "tokenizer.json")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"tokenizer not found: {path}. Give a local tokenizer.json or a folder holding one "
            "(train one with `curate train-tokenizer`); nothing is downloaded from a hub.")
    return path


def load_tokenizer(path: str, eos_token: str | None = None) -> LoadedTokenizer:
    """The tokenizer at ``path`` (a tokenizer.json or a folder holding one; local or gs://)."""
    from tokenizers import Tokenizer

    from curate.io.readers import exists, read_bytes

    file = _tokenizer_file(path)
    data = read_bytes(file)
    try:
        tok = Tokenizer.from_str(data.decode("utf-8"))
    except Exception as e:  # noqa: BLE001 - the library's message is not helpful on its own
        raise ValueError(f"{file}: not a tokenizers tokenizer.json ({e})") from e
    if eos_token is None:
        cfg = file.rsplit("/", 1)[0] + "/tokenizer_config.json" if _remote(file) else \
            os.path.join(os.path.dirname(file), "tokenizer_config.json")
        if exists(cfg):
            try:
                value = json.loads(read_bytes(cfg)).get("eos_token")
            except (ValueError, AttributeError) as e:
                raise ValueError(f"{cfg}: not a valid tokenizer_config.json ({e})") from None
            eos_token = value.get("content") if isinstance(value, dict) else value
    if eos_token is None:
        eos_token = next((t for t in EOS_CANDIDATES if tok.token_to_id(t) is not None), None)
    if eos_token is None or tok.token_to_id(eos_token) is None:
        raise ValueError(f"{file}: no end-of-text token found (looked for {eos_token or ', '.join(EOS_CANDIDATES)}); "
                         "name it with eos_token")
    return LoadedTokenizer(tok, file, tok.token_to_id(eos_token), eos_token, hashlib.sha256(data).hexdigest())


def iter_texts(inputs: list[str], text_key: str = "text", limit_docs: int | None = None,
               stats: dict | None = None) -> Iterator[str]:
    """Texts of every document in jsonl/parquet/arrow/WARC inputs, through curate's readers.

    Streams: one record batch is held at a time. ``stats``, when given, is filled as it goes:
    ``files`` (the paths read), ``docs`` (texts yielded) and ``skipped`` ({reason: records}: records
    the readers refused, e.g. ``missing field 'text'``, and blank texts).
    """
    from curate.io.readers import InputSpec, list_files, read_in_process

    stats = {} if stats is None else stats
    stats.update(files=[], docs=0, skipped={})
    spec = InputSpec(path=list(inputs), text_key=text_key, unique_ids=False)
    files = list_files(spec.path)
    if not files:
        raise FileNotFoundError(f"no input files match {', '.join(inputs)}")
    stats["files"] = [path for path, _ in files]
    skipped = stats["skipped"]
    for _, batch in read_in_process(files, spec, skipped):
        for text in batch.column("text").to_pylist():
            if text:
                yield text
                stats["docs"] += 1
                if limit_docs is not None and stats["docs"] >= limit_docs:
                    return


def input_fields(path: str) -> list[str]:
    """The field (column) names of the first record of one input file; [] when they cannot be read."""
    from curate.io.readers import InputSpec, _line_chunks, detect_format, open_raw, split_file

    try:
        fmt = detect_format(path)
        if fmt == "parquet":
            import pyarrow.parquet as pq

            with open_raw(path) as f:
                return list(pq.ParquetFile(f).schema_arrow.names)
        if fmt == "arrow":
            import pyarrow as pa

            with open_raw(path) as f:
                try:
                    return list(pa.ipc.open_file(f).schema.names)
                except pa.ArrowInvalid:
                    f.seek(0)
                    return list(pa.ipc.open_stream(f).schema.names)
        if fmt == "jsonl":
            shard = split_file(0, path, 0, InputSpec(path=[path]))[0]
            for chunk in _line_chunks(shard):
                for line in chunk.splitlines():
                    if line.strip():
                        record = json.loads(line)
                        return list(record) if isinstance(record, dict) else []
    except Exception:  # noqa: BLE001 - only used to explain an error
        return []
    return []


def _no_documents(inputs: list[str], text_key: str, stats: dict) -> str:
    """Why no document was read, in one line: the key, the fields the input has, what was skipped."""
    files = stats.get("files") or []
    fields = input_fields(files[0]) if files else []
    where = f"{len(files)} input file{'s' if len(files) != 1 else ''} ({', '.join(inputs)})"
    skipped = stats.get("skipped") or {}
    if fields and text_key not in fields:
        return (f"no documents with text in field {text_key!r} in {where}: the input's fields are "
                f"{', '.join(fields)}; give the text field with --text-key")
    if skipped:
        reasons = ", ".join(f"{n:,} {reason}" for reason, n in sorted(skipped.items(), key=lambda kv: -kv[1])[:3])
        return f"no usable documents with text in field {text_key!r} in {where} (skipped: {reasons})"
    return f"no documents in {where}: the input is empty"


def train_tokenizer(inputs: list[str], output: str, vocab_size: int = 32000, min_frequency: int = 2,
                    text_key: str = "text", limit_docs: int | None = None,
                    special_tokens: tuple[str, ...] = (DEFAULT_EOS, PAD), model_max_length: int = 2048) -> LoadedTokenizer:
    """Byte-level BPE (GPT-2 style pre-tokenization): every byte is in the alphabet, so no text is unknown.

    ``inputs`` are files, globs or folders; a ``curate run`` output folder means its ``data/``, and
    an output whose run did not finish is refused. The texts are streamed to the trainer. The
    returned tokenizer's ``stats`` say how many documents were used and how many were skipped.
    """
    import itertools

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from curate.core.safety import UserError, check_output, resolve_input

    if not inputs:
        raise UserError("give at least one input file, glob or folder")
    if vocab_size < 256 + len(special_tokens):
        raise UserError(f"--vocab-size {vocab_size} is smaller than the 256 byte symbols plus {len(special_tokens)} "
                        f"special tokens: give at least {256 + len(special_tokens)}")
    if min_frequency < 0:
        raise UserError(f"--min-frequency must be 0 or more, got {min_frequency}")
    if limit_docs is not None and limit_docs < 1:
        raise UserError(f"--limit-docs must be at least 1, got {limit_docs}")
    if not text_key:
        raise UserError("--text-key must not be empty")
    inputs = [resolve_input(p) for p in inputs]
    check_output(output, inputs)
    stats: dict = {}
    texts = iter_texts(inputs, text_key, limit_docs, stats)
    first = next(texts, None)  # read up to the first document before training: refuse an input without any
    if first is None:
        raise UserError(_no_documents(inputs, text_key, stats))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                                  special_tokens=list(special_tokens),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    from curate.core.progress import Step

    with Step(f"train-tokenizer: read documents and learn {vocab_size:,} tokens") as step:
        def counted(it):
            for text in it:
                step.update(1)
                yield text

        tok.train_from_iterator(counted(itertools.chain([first], texts)), trainer=trainer)
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": special_tokens[0], "bos_token": special_tokens[0],
              "unk_token": None, "pad_token": special_tokens[1] if len(special_tokens) > 1 else special_tokens[0],
              "model_max_length": model_max_length, "clean_up_tokenization_spaces": False}
    files = {"tokenizer.json": tok.to_str(pretty=True).encode(),
             "tokenizer_config.json": json.dumps(config, indent=2).encode(),
             "special_tokens_map.json": json.dumps({k: config[k] for k in ("eos_token", "bos_token", "pad_token")},
                                                   indent=2).encode()}
    if _remote(output):
        from curate.io.writers import join, write_bytes

        for name, data in files.items():  # each atomically (a temporary name, then a rename)
            write_bytes(join(output, name), data)
    else:
        output = output.removeprefix("file://")
        os.makedirs(output, exist_ok=True)
        for name, data in files.items():
            with open(os.path.join(output, name), "wb") as f:
                f.write(data)
    loaded = load_tokenizer(output)
    loaded.stats = stats
    return loaded
