"""GGUF checkpoints (llama.cpp's format) to plain transformers folders.

``convert_gguf(gguf_path, output_dir)`` loads a ``.gguf`` file with transformers' GGUF reader
(``from_pretrained(folder, gguf_file=name)``: the tensors are de-quantized to float32, the
tokenizer and its chat template are rebuilt from the GGUF metadata), copies the weights into a
fresh model of the same architecture (``LlamaForCausalLM`` for llama files) built from a config
without the GGUF ``quantization_config``, and ``save_pretrained``s model (safetensors, float32) and
tokenizer into ``output_dir``. The folder then loads in plain transformers (and vLLM) without the
``gguf`` package. A quantized file (Q4_1 ...) stays as lossy as it was: the float32 weights are
the de-quantized ones, bit for bit.

Needs the ``gguf`` package (and transformers) at conversion time only::

    python -m curate.models.gguf MODEL.gguf OUTPUT_DIR

``cached_conversion(gguf_path, cache_root)`` converts once into ``cache_root/<stem>-<key>`` (the key
hashes the file's absolute path, size and modification time) and reuses that folder afterwards.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile

MARKER = "curate_gguf_source.json"


class GGUFError(ValueError):
    """A GGUF file that cannot be converted (missing package, file, or unsupported architecture)."""


def gguf_available() -> bool:
    try:
        import gguf  # noqa: F401
    except ImportError:
        return False
    return True


def _require_gguf() -> None:
    if not gguf_available():
        raise GGUFError("reading a .gguf model needs the 'gguf' package: pip install gguf (or convert it elsewhere with "
                        "`python -m curate.models.gguf MODEL.gguf OUTPUT_DIR` and name the folder)")


def convert_gguf(gguf_path: str, output_dir: str) -> str:
    """Convert ``gguf_path`` into a transformers folder ``output_dir`` (float32 weights, tokenizer, chat template).

    Written to a temporary sibling folder and renamed into place, so a crash never leaves a half
    folder behind. Returns ``output_dir``.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    _require_gguf()
    gguf_path = os.path.abspath(os.path.expanduser(gguf_path))
    if not os.path.isfile(gguf_path):
        raise GGUFError(f"no GGUF file at {gguf_path}")
    folder, name = os.path.split(gguf_path)
    try:
        config = AutoConfig.from_pretrained(folder, gguf_file=name)
        source = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    except (ValueError, KeyError, RuntimeError, OSError) as e:
        raise GGUFError(f"transformers cannot read {gguf_path}: {e}") from e
    # a fresh model of the same class, from a config that no longer says "gguf"
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = "float32"
    config._name_or_path = os.path.basename(output_dir.rstrip("/"))
    fresh = type(source)(config).to(torch.float32)
    state = {k: v.detach().to(torch.float32).contiguous() for k, v in source.state_dict().items()}
    missing, unexpected = fresh.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and getattr(config, "tie_word_embeddings", False))]
    if missing or unexpected:
        raise GGUFError(f"{gguf_path}: weights do not match {type(fresh).__name__}: missing {missing[:5]}, "
                        f"unexpected {unexpected[:5]}")
    if getattr(config, "tie_word_embeddings", False):
        fresh.tie_weights()
    fresh.eval()
    if getattr(fresh, "generation_config", None) is not None and getattr(source, "generation_config", None) is not None:
        fresh.generation_config = source.generation_config
    parent = os.path.dirname(os.path.abspath(output_dir)) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".gguf-", dir=parent)
    try:
        fresh.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        st = os.stat(gguf_path)
        with open(os.path.join(tmp, MARKER), "w") as f:
            json.dump({"gguf": gguf_path, "size": st.st_size, "mtime": st.st_mtime,
                       "architecture": type(fresh).__name__, "dtype": "float32"}, f, indent=2)
            f.write("\n")
        if os.path.exists(output_dir):
            shutil.rmtree(output_dir)
        os.replace(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return output_dir


def cache_key(gguf_path: str) -> str:
    p = os.path.abspath(os.path.expanduser(gguf_path))
    st = os.stat(p)
    return hashlib.sha256(f"{p}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:12]


def cached_conversion(gguf_path: str, cache_root: str, log=None) -> str:
    """The converted folder of ``gguf_path`` under ``cache_root`` (converted on first use)."""
    stem = os.path.basename(gguf_path)
    stem = stem[:-5] if stem.lower().endswith(".gguf") else stem
    out = os.path.join(cache_root, f"{stem}-{cache_key(gguf_path)}")
    if os.path.isfile(os.path.join(out, MARKER)) and os.path.isfile(os.path.join(out, "config.json")):
        return out
    if log:
        log(f"  converting {gguf_path} -> {out} (once)")
    return convert_gguf(gguf_path, out)


def is_gguf(path: str) -> bool:
    return str(path).lower().endswith(".gguf")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] in ("-h", "--help"):
        print("usage: python -m curate.models.gguf MODEL.gguf OUTPUT_DIR\n\n" + __doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    try:
        out = convert_gguf(argv[0], argv[1])
    except GGUFError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out} (transformers folder, float32)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
