"""GGUF -> transformers conversion (curate.models.gguf), on a tiny llama written with the gguf package's writer.

Real components only: a random tiny LlamaForCausalLM is written to a GGUF file the way llama.cpp's
converter writes it (q/k rows permuted for its rotary layout, a byte-level BPE vocabulary, a chat
template), converted back, and the logits are compared with the original model's.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from curate.models.gguf import MARKER, GGUFError, cached_conversion, convert_gguf  # noqa: E402

CHAT = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"


def _byte_vocab():
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    merges = ["Ġ t", "h e", "Ġt he"]
    tokens = chars + ["Ġt", "he", "Ġthe", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    types = [1] * (len(tokens) - 3) + [3, 3, 3]
    return tokens, types, merges


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k row order (convert_hf_to_gguf.LlamaModel.permute)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _tiny_llama(vocab_size: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5,
                      rope_theta=10000.0, tie_word_embeddings=False, bos_token_id=vocab_size - 3,
                      eos_token_id=vocab_size - 1)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # norms away from 1, so that a lost norm weight would show
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.2 * torch.randn_like(p))
    return model


def _write_gguf(model, path: str, tokens, types, merges) -> None:
    cfg = model.config
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("tiny-test-llama")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(len(tokens) - 2)
    w.add_eos_token_id(len(tokens) - 1)
    w.add_unk_token_id(len(tokens) - 3)
    w.add_chat_template(CHAT)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    per_layer = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
                 "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
                 "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for name, t in model.state_dict().items():
        arr = t.detach().float().numpy().copy()
        if name in names:
            out = names[name]
        else:
            layer, rest = name.removeprefix("model.layers.").split(".", 1)
            part = rest.removesuffix(".weight")
            out = f"blk.{layer}.{per_layer[part]}.weight"
            if part == "self_attn.q_proj":
                arr = _permute(arr, cfg.num_attention_heads)
            elif part == "self_attn.k_proj":
                arr = _permute(arr, cfg.num_key_value_heads)
        w.add_tensor(out, np.ascontiguousarray(arr, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("gguf")
    tokens, types, merges = _byte_vocab()
    model = _tiny_llama(len(tokens))
    path = str(d / "tiny-llama.F32.gguf")
    _write_gguf(model, path, tokens, types, merges)
    return model, path, d


def test_convert_gives_the_same_logits(tiny):
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    source, path, d = tiny
    out = str(d / "converted")
    assert convert_gguf(path, out) == out
    files = set(os.listdir(out))
    assert {"config.json", "model.safetensors", "tokenizer.json", MARKER} <= files
    cfg = json.load(open(os.path.join(out, "config.json")))
    assert "quantization_config" not in cfg and cfg["model_type"] == "llama" and cfg["architectures"] == ["LlamaForCausalLM"]

    converted = AutoModelForCausalLM.from_pretrained(out).eval()  # plain transformers: no gguf_file
    assert isinstance(converted, LlamaForCausalLM) and converted.dtype == torch.float32
    tok = AutoTokenizer.from_pretrained(out)
    ids = tok("the theme of the thesis", return_tensors="pt", add_special_tokens=False).input_ids
    assert ids.shape[1] > 3 and int(ids.max()) < source.config.vocab_size
    assert tok.convert_tokens_to_ids("Ġthe") in ids[0].tolist()  # the merges came through
    with torch.no_grad():
        want = source(ids).logits
        got = converted(ids).logits
        via_gguf = AutoModelForCausalLM.from_pretrained(str(d), gguf_file=os.path.basename(path)).eval()(ids).logits
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5), float((got - want).abs().max())
    assert torch.equal(got, via_gguf)
    # the chat template and special tokens survive
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert text == "<|im_start|>user\nhi<|im_end|>\n"
    assert tok.eos_token == "<|im_end|>"


def test_cached_conversion_converts_once(tiny):
    _, path, d = tiny
    root = str(d / "cache")
    first = cached_conversion(path, root)
    stamp = os.path.getmtime(os.path.join(first, "model.safetensors"))
    assert cached_conversion(path, root) == first
    assert os.path.getmtime(os.path.join(first, "model.safetensors")) == stamp
    assert os.path.basename(first).startswith("tiny-llama.F32-")


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(GGUFError, match="no GGUF file"):
        convert_gguf(str(tmp_path / "nope.gguf"), str(tmp_path / "out"))


def test_preselect_config_takes_a_gguf_path(tiny, tmp_path):
    from curate.preselect.config import parse_config

    _, path, _ = tiny
    inp = tmp_path / "docs.jsonl"
    inp.write_text('{"text": "the theme"}\n')
    cfg = parse_config(f"""
input: {inp}
output: {tmp_path / 'out'}
models:
  - {{name: a, path: {path}, ability: 1.0, dtype: bfloat16, max_length: 32, stride: 16, batch_size: 4}}
  - {{name: b, path: {path}, ability: 0.5}}
max_length: 64
stride: 32
""")
    assert cfg.models[0].settings(cfg) == {"dtype": "bfloat16", "max_length": 32, "stride": 16, "batch_size": 4}
    assert cfg.models[1].settings(cfg) == {"dtype": "float32", "max_length": 64, "stride": 32, "batch_size": 16}


def test_preselect_label_with_a_gguf_model(tiny, tmp_path):
    """A two-model family named by .gguf files: converted once under OUTPUT/gguf, then labeled."""
    from curate.preselect.config import parse_config
    from curate.preselect.label import run_label

    _, path, _ = tiny
    inp = tmp_path / "docs.jsonl"
    inp.write_text("".join(json.dumps({"id": f"d{i}", "text": "the theme " * (i + 1)}) + "\n" for i in range(8)))
    out = tmp_path / "labels"
    cfg = parse_config(f"""
input: {inp}
output: {out}
models:
  - {{name: a, path: {path}, ability: 1.0}}
  - {{name: b, path: {path}, ability: 0.5, max_length: 16, stride: 4}}
max_length: 32
stride: 16
heldout_fraction: 0.0
""")
    summary = run_label(cfg, log=lambda m: None)
    assert summary["documents"] == 8
    conv = [m["path"] for m in summary["models"]]
    assert conv[0] == conv[1] and conv[0].startswith(str(out / "gguf")) and summary["models"][0]["gguf"] == path
    assert len(os.listdir(out / "gguf")) == 1
    bpc = [m["mean_bpc"] for m in summary["models"]]
    assert all(np.isfinite(bpc)) and bpc[0] > 0
