"""``curate train``: a Llama-style decoder trained with plain torch on the shards of ``curate mix``.

* **Model**: ``transformers.LlamaForCausalLM`` from the config's ``model`` section; vocabulary size,
  EOS id and context length come from the mix's manifest. Checkpoints are written with
  ``save_pretrained`` (safetensors) next to the tokenizer, so ``AutoModelForCausalLM`` /
  ``AutoTokenizer`` and vLLM load them as they are.
* **Data**: phases in the order of the manifest. Each phase gets a share of the steps equal to its
  share of the sequences, and inside a phase the (already shuffled) sequences are read in order,
  wrapping when the run is longer than the data. Which sequences a step reads is a pure function
  of the step, so the data position is the step number and resuming is exact.
* **Optimization**: AdamW, linear warmup then cosine, WSD (warmup-stable-decay) or constant; the
  learning rate is a pure function of the step. Gradient clipping and accumulation. bf16 autocast
  and ``torch.compile`` when a GPU is present, fp32 on CPU.
* **Checkpoints**: ``checkpoints/step-N/`` holds the model, tokenizer, ``trainer_state.pt`` (tensors
  only: optimizer state, torch RNG state; read back with ``torch.load(weights_only=True)``, so a
  checkpoint from elsewhere cannot run code) and ``trainer_state.json`` (step, online-mixture
  weights and cursors, and the settings the run was started with). Written to a temporary folder
  (``.step-N.<hex>``) and renamed, so a crash leaves either the whole checkpoint or none; the next
  run removes such leftovers (and puts back a checkpoint that a crash left set aside). A re-run
  resumes from the newest checkpoint and reproduces the uninterrupted loss curve; it refuses a
  config whose optimizer, schedule, batch, model or data settings changed (each listed as
  ``key: old -> new``) unless ``allow_config_change`` (``curate train --allow-config-change``).
  Which keys are checked: ``curate.train.config``.
* **Evaluation**: held-out loss per domain every ``eval_every`` steps (the ``valid/`` split of the
  mix), downstream tasks (multiple-choice log-likelihood, LAMBADA) at the end or every
  ``eval_tasks_every`` steps. Everything lands in ``log.jsonl``; a progress bar shows tokens/s.
* **Options**: loss-based sample reweighting (``reweight``) and a Skill-it style online mixture
  (``online_mixture``: sequences are drawn per domain with weights updated from held-out losses).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import re
import shutil
import sys
import time
import uuid
from dataclasses import asdict

import numpy as np

from curate.core.safety import UserError, check_complete, check_output
from curate.mix.indexed import IndexedReader
from curate.train.config import MODEL_DEFAULTS, TrainConfig, check_config, resume_settings
from curate.train.distributed import (Dist, as_float, batch_hint, batch_settings, full_states, load_full_states,
                                      rank_positions, upgrade_settings, wrap)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
STATE_PT = "trainer_state.pt"  # tensors only (optimizer, RNG): loaded with weights_only=True
STATE_JSON = "trainer_state.json"  # everything else
STATE_FORMAT = 2
# the temporary folders of Trainer.save: `.step-0000020.1a2b3c4d` (being written) and `... .old` (set aside)
TEMP_NAME = re.compile(r"^\.(step-\d+|final)\.[0-9a-f]{8}(\.old)?$")
# LlamaConfig fields that do not change what a resumed run computes (or that transformers writes)
_MODEL_UNCHECKED = ("transformers_version", "architectures", "dtype", "torch_dtype", "use_cache", "output_attentions",
                    "output_hidden_states", "return_dict", "attn_implementation")
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12, "L40": 181e12}


def _torch():
    try:
        import torch
        import transformers
    except ImportError:
        raise SystemExit("curate train needs torch and transformers: pip install 'curate[train]' "
                         "(for a CPU-only torch, install torch from https://download.pytorch.org/whl/cpu first)") from None
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    return torch


# -------------------------------------------------------------------------------------- data


def _is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def cache_root() -> str:
    """Where remote mixes are copied: ``$CURATE_CACHE_DIR``, else ``~/.cache/curate``."""
    return os.environ.get("CURATE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "curate")


def local_mix(folder: str, log=None) -> tuple[str, str | None]:
    """(local folder, local tokenizer.json or None) of the mix in ``folder``.

    A local mix is used where it is. A remote one (gs://, any Beam filesystem) is copied first, because
    the trainer memory-maps the shards: into ``cache_root()/mix/<sha256 of manifest.json>``, the files
    the manifest names (shards, held-out shards, the manifest) plus the tokenizer it names, streamed
    through FileSystems into a temporary folder that is renamed when complete. A later run with the
    same manifest reuses the copy; a changed mix has another manifest, so another folder.
    """
    folder = folder.removeprefix("file://")
    if not _is_remote(folder):
        return folder, None
    from curate.io.readers import exists, open_raw, read_bytes

    base = folder.rstrip("/")
    data = read_bytes(base + "/manifest.json")
    digest = hashlib.sha256(data).hexdigest()
    manifest = json.loads(data)
    dest = os.path.join(cache_root(), "mix", digest[:32])
    tok_remote = (manifest.get("tokenizer") or {}).get("path") or ""
    tok_local = os.path.join(dest, "_tokenizer", "tokenizer.json") if _is_remote(tok_remote) else None
    say = log or (lambda msg: None)
    if os.path.exists(os.path.join(dest, "manifest.json")):
        say(f"data: {folder} is remote; using its local copy {dest} (manifest sha256 {digest[:12]})")
        return dest, tok_local
    files = [(base + "/" + name, os.path.join(dest, *name.split("/"))) for name in _mix_files(manifest)]
    if tok_local:
        tok_dir = tok_remote.rsplit("/", 1)[0]
        files.append((tok_remote, tok_local))
        for name in TOKENIZER_FILES[1:]:
            if exists(tok_dir + "/" + name):
                files.append((tok_dir + "/" + name, os.path.join(dest, "_tokenizer", name)))
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = f"{dest}.{uuid.uuid4().hex[:8]}.tmp"
    t0, total = time.time(), 0
    try:
        for src, dst in files:
            local = tmp + dst[len(dest):]
            os.makedirs(os.path.dirname(local), exist_ok=True)
            if dst.endswith(".domains.npy") and not exists(src):
                continue  # optional sidecar
            with open_raw(src) as fin, open(local, "wb") as fout:
                shutil.copyfileobj(fin, fout, 8 << 20)
            total += os.path.getsize(local)
        with open(os.path.join(tmp, "manifest.json"), "wb") as f:  # the manifest last, byte for byte
            f.write(data)
        try:
            os.replace(tmp, dest)
        except OSError:  # another run copied it first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"data: {folder} is remote; copied {len(files)} files ({total / 2**20:,.1f} MiB) in {time.time() - t0:.1f}s to "
        f"the local cache {dest} (keyed by the manifest's sha256 {digest[:12]}; the trainer memory-maps shards)")
    return dest, tok_local


def _mix_files(manifest: dict) -> list[str]:
    """The shard files a mix's manifest names (relative paths), without the manifest itself."""
    prefixes = [p for ph in manifest.get("phases", []) for p in ph.get("shards", [])]
    prefixes += [v["prefix"] for v in manifest.get("valid", {}).values()]
    for p in prefixes:
        if not isinstance(p, str) or p.startswith("/") or ".." in p.split("/"):
            raise ValueError(f"manifest.json names a shard outside the mix folder: {p!r}")
    return [p + ext for p in prefixes for ext in (".bin", ".idx", ".domains.npy")]


class MixData:
    """The shards of one `curate mix` output, addressed by (phase, sequence index within phase).

    A remote mix (gs://) is read from a local copy (``local_mix``)."""

    def __init__(self, folder: str, log=None):
        source = folder
        folder, tok_local = local_mix(folder, log)
        path = os.path.join(folder, "manifest.json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} not found: point data: at the output folder of `curate mix`")
        with open(path) as f:
            self.manifest = json.load(f)
        if tok_local:  # the tokenizer that checkpoints get and evaluation uses: the local copy
            self.manifest["tokenizer"]["path"] = tok_local
        self.source = source
        self.folder = folder
        self.seq_length = self.manifest["seq_length"]
        self.domains = self.manifest["domain_names"]
        self.phases = []
        for ph in self.manifest["phases"]:
            readers = [IndexedReader(os.path.join(folder, p)) for p in ph["shards"]]
            sizes = np.array([len(r) for r in readers], dtype=np.int64)
            doms = np.concatenate([r.domains for r in readers]) if readers else np.zeros(0, np.int16)
            self.phases.append({"name": ph["name"], "readers": readers, "starts": np.concatenate([[0], np.cumsum(sizes)]),
                                "n": int(sizes.sum()), "domains": doms})
        self.total = sum(p["n"] for p in self.phases)
        if self.total == 0:
            raise ValueError(f"{folder}: the mix holds no sequences")
        self.valid = {d: IndexedReader(os.path.join(folder, v["prefix"])) for d, v in self.manifest.get("valid", {}).items()}

    def rows(self, phase: int, idx: np.ndarray) -> np.ndarray:
        ph = self.phases[phase]
        idx = np.asarray(idx) % ph["n"]
        shard = np.searchsorted(ph["starts"], idx, side="right") - 1
        out = np.empty((len(idx), self.seq_length), dtype=np.int64)
        for s in np.unique(shard):
            sel = shard == s
            out[sel] = ph["readers"][s].tokens[idx[sel] - ph["starts"][s]]
        return out

    def phase_steps(self, max_steps: int) -> np.ndarray:
        """First step of each phase (and the end): steps shared in proportion to sequences."""
        sizes = np.array([p["n"] for p in self.phases], dtype=np.float64)
        return np.rint(np.concatenate([[0], np.cumsum(sizes)]) / sizes.sum() * max_steps).astype(np.int64)


# ------------------------------------------------------------------------------------ schedule


def learning_rate(cfg: TrainConfig, step: int, max_steps: int) -> float:
    """Linear warmup to ``lr``, then cosine / WSD decay to ``lr * min_lr_ratio`` (or constant)."""
    warm = min(cfg.warmup_steps, max(max_steps - 1, 0))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    low = cfg.lr * cfg.min_lr_ratio
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "cosine":
        t = (step - warm) / max(1, max_steps - warm)
        return low + (cfg.lr - low) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    decay_start = max(warm, int(round(max_steps * (1 - cfg.decay_fraction))))
    if step < decay_start:
        return cfg.lr
    t = (step - decay_start) / max(1, max_steps - decay_start)
    return cfg.lr - (cfg.lr - low) * min(t, 1.0)


# ------------------------------------------------------------------------------------- trainer


def _latest_checkpoint(output: str) -> str | None:
    folder = os.path.join(output, "checkpoints")
    if not os.path.isdir(folder):
        return None
    done = sorted(d for d in os.listdir(folder) if re.fullmatch(r"step-\d+", d) and any(
        os.path.exists(os.path.join(folder, d, f)) for f in (STATE_PT, STATE_JSON)))
    return os.path.join(folder, done[-1]) if done else None


def clean_temp_folders(output: str) -> list[str]:
    """Tidy what a save killed midway left in ``output`` and ``output/checkpoints``; what was done, in words.

    Only curate's own temporary names (``TEMP_NAME``) are touched. A folder being written
    (``.step-N.<hex>``) is incomplete: removed. A checkpoint set aside while its replacement was
    renamed in (``.step-N.<hex>.old``) is complete: put back when the checkpoint is missing,
    removed otherwise.
    """
    done = []
    for parent in (output, os.path.join(output, "checkpoints")):
        if not os.path.isdir(parent):
            continue
        for name in sorted(os.listdir(parent), key=lambda n: n.endswith(".old")):  # tmp first, then set-aside
            m = TEMP_NAME.match(name)
            path = os.path.join(parent, name)
            if not m or os.path.islink(path) or not os.path.isdir(path):
                continue
            target = os.path.join(parent, m.group(1))
            if m.group(2) and not os.path.exists(target):
                os.replace(path, target)
                done.append(f"put back {target} (set aside by a checkpoint save that did not finish)")
                continue
            shutil.rmtree(path)
            done.append(f"removed {path} (left by a checkpoint save that did not finish)")
    return done


def mix_fingerprint(manifest: dict) -> str:
    """What in a mix decides the sequences a step reads (not where the mix lies): a short hash."""
    tok = manifest.get("tokenizer", {})
    key = {"seq_length": manifest.get("seq_length"), "domains": manifest.get("domain_names"),
           "tokenizer": [tok.get("sha256"), tok.get("vocab_size"), tok.get("eos_id")],
           "phases": [[p.get("name"), p.get("shards"), p.get("sequences")] for p in manifest.get("phases", [])],
           "valid": {d: v.get("sequences") for d, v in sorted(manifest.get("valid", {}).items())}}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _json_ready(value):
    return json.loads(json.dumps(value, default=str))


def config_changes(old: dict, new: dict) -> list[str]:
    """``key: old -> new`` for every setting that differs (model fields only one side knows are skipped:
    they come from another transformers version, not from the config)."""
    out = []
    for key in sorted(set(old) | set(new)):
        if key.startswith("model.") and (key not in old or key not in new):
            continue
        a, b = old.get(key, "(unset)"), new.get(key, "(unset)")
        if a != b and key == "data":
            out.append(f"data: the mix's content differs (fingerprint {a} -> {b})")
        elif a != b:
            out.append(f"{key}: {json.dumps(a) if a != '(unset)' else a} -> {json.dumps(b) if b != '(unset)' else b}")
    return out


def preflight(cfg: TrainConfig) -> None:
    """Everything about ``cfg`` that can be checked before a model is built: values, data, output, task files."""
    check_config(cfg)
    data = cfg.data
    check_complete(data, "data")
    if _is_remote(cfg.output):
        raise UserError(f"output {cfg.output!r}: the trainer writes checkpoints to a local folder; give a local output "
                        "(copy the final model up afterwards)")
    if _is_remote(data):
        from curate.io.readers import exists

        if not exists(data.rstrip("/") + "/manifest.json"):
            raise FileNotFoundError(f"{data.rstrip('/')}/manifest.json not found: {data!r} is not a finished `curate mix` "
                                    "output (the mix writes manifest.json last); point data: at the output folder of "
                                    "`curate mix`, or re-run the mix")
    elif not os.path.isdir(data):
        raise FileNotFoundError(f"data {data!r}: no such folder: point data: (or --data) at the output folder of "
                                "`curate mix`")
    elif not os.path.exists(os.path.join(data, "manifest.json")):
        raise FileNotFoundError(f"{os.path.join(data, 'manifest.json')} not found: {data!r} is not a finished "
                                "`curate mix` output (the mix writes manifest.json last); point data: at the output "
                                "folder of `curate mix`, or re-run the mix")
    check_output(cfg.output, [data], "output")
    if cfg.init_from and "://" not in cfg.init_from and not os.path.exists(os.path.join(cfg.init_from, "config.json")):
        raise FileNotFoundError(f"init_from {cfg.init_from!r}: no config.json there (give a model folder written by "
                                "save_pretrained, e.g. a `final/` of an earlier run)")
    if cfg.eval_tasks:
        from curate.train.evaluate import load_task

        for path in cfg.eval_tasks:
            if not os.path.isfile(path):
                raise FileNotFoundError(f"eval_tasks: {path} not found")
            load_task(path, limit=cfg.eval_tasks_limit)  # a bad record fails now, not after training


def build_model(cfg: TrainConfig, data: MixData):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    if cfg.init_from:
        return AutoModelForCausalLM.from_pretrained(cfg.init_from, torch_dtype=torch.float32,
                                                    attn_implementation=cfg.attn_implementation)
    tok = data.manifest["tokenizer"]
    params = dict(MODEL_DEFAULTS)
    params.update(cfg.model)
    heads = params["num_attention_heads"]
    params.setdefault("num_key_value_heads", heads)
    params.update(vocab_size=tok["vocab_size"], max_position_embeddings=max(params.get("max_position_embeddings", 0),
                                                                              data.seq_length),
                  bos_token_id=tok["eos_id"], eos_token_id=tok["eos_id"], pad_token_id=tok["eos_id"])
    try:
        config = LlamaConfig(**params)
    except TypeError as e:
        raise ValueError(f"{cfg.source_file}: model: {e}") from None
    config._attn_implementation = cfg.attn_implementation
    torch.manual_seed(cfg.seed)
    return LlamaForCausalLM(config)


def model_flops_per_token(model, seq_length: int) -> float:
    """6 N + 12 L d T (PaLM appendix B): N = parameters doing matmuls (input embedding excluded)."""
    c = model.config
    n = sum(p.numel() for p in model.parameters())
    if not c.tie_word_embeddings:
        n -= model.get_input_embeddings().weight.numel()
    return 6 * n + 12 * c.num_hidden_layers * c.hidden_size * seq_length


class Trainer:
    def __init__(self, cfg: TrainConfig, quiet: bool = False, allow_config_change: bool = False):
        self.torch = torch = _torch()
        preflight(cfg)
        self.cfg = cfg
        self.quiet = quiet
        self.allow_config_change = allow_config_change
        self.data = MixData(cfg.data, log=self._print)
        if cfg.device == "auto":
            self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            if cfg.device.startswith("cuda") and not torch.cuda.is_available():
                raise UserError(f"device: {cfg.device}, but torch sees no CUDA device (use device: auto or cpu)")
            self.device = torch.device(cfg.device)
        # several processes (torchrun): join the job; process r trains on cuda:LOCAL_RANK (see distributed.py)
        self.dist = Dist.start(self.device.type)
        if self.dist.active and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
        if not self.dist.main:
            self.quiet = True  # rank 0 prints, logs and writes checkpoints
        gpu = self.device.type == "cuda"
        self.amp = (cfg.dtype == "bfloat16") or (cfg.dtype == "auto" and gpu)
        self.micro = cfg.micro_batch_size
        self.batch = cfg.micro_batch_size * cfg.grad_accum * self.dist.world  # the global batch
        self.positions = rank_positions(cfg.micro_batch_size, cfg.grad_accum, self.dist.world, self.dist.rank)
        self.max_steps = cfg.max_steps or max(1, self.data.total // self.batch)
        self.bounds = self.data.phase_steps(self.max_steps)
        # fsdp: the model is sharded over the processes (moved to the device layer by layer as it is sharded)
        self.fsdp = self.dist.active and cfg.parallel == "fsdp"
        self.model = build_model(cfg, self.data)
        if not self.fsdp:
            self.model = self.model.to(self.device)
        self.ddp = wrap(self.model, self.dist, self.device, cfg.parallel)
        self.forward = self.ddp
        if str(cfg.compile).lower() == "true" or (str(cfg.compile).lower() == "auto" and gpu):
            self.forward = torch.compile(self.ddp)
        # evaluation runs on the bare model when DDP wraps it (processes evaluate different sequences)
        self.eval_forward = self.forward if not self.dist.active or self.fsdp else self.model
        decay = [p for n, p in self.model.named_parameters() if p.ndim >= 2]
        no_decay = [p for n, p in self.model.named_parameters() if p.ndim < 2]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                      {"params": no_decay, "weight_decay": 0.0}],
                                     lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, fused=gpu or None)
        from curate.train.reweight import ReweightConfig

        rw = cfg.reweight
        self.reweight = ReweightConfig(strategy=rw.strategy, warmup_steps=rw.warmup_steps,
                                       **({"r": rw.r} if rw.r is not None else {})).validate()
        self.mixture = None
        self.cursors = None
        if cfg.online_mixture is not None:
            from curate.train.mixfit import OnlineMixture

            if not self.data.valid:
                raise ValueError("online_mixture needs held-out data per domain: set heldout_tokens in the mixture spec")
            self.mixture = OnlineMixture(self.data.domains, self._phase_shares(0), eta=cfg.online_mixture.eta,
                                         min_weight=cfg.online_mixture.min_weight,
                                         graph=np.array(cfg.online_mixture.graph) if cfg.online_mixture.graph else None)
            self.cursors = np.zeros((len(self.data.phases), len(self.data.domains)), dtype=np.int64)
        self.step = 0
        self.flops_per_token = model_flops_per_token(self.model, self.data.seq_length)
        self.peak = next((v for k, v in PEAK_FLOPS.items() if gpu and k in torch.cuda.get_device_name()), None)

    # ---- data position: a pure function of the step (plus cursors in online-mixture mode)

    def _phase_of(self, step: int) -> int:
        return int(np.searchsorted(self.bounds, step, side="right") - 1)

    def _phase_shares(self, phase: int) -> dict[str, float]:
        doms = self.data.phases[phase]["domains"]
        counts = np.bincount(doms, minlength=len(self.data.domains)).astype(float)
        return dict(zip(self.data.domains, (counts / max(counts.sum(), 1)).tolist()))

    def batch_rows(self, step: int) -> np.ndarray:
        """The sequences this process trains on at ``step`` (all of the global batch with one process)."""
        p, idx = self.batch_index(step)
        return self.data.rows(p, idx if not self.dist.active else idx[self.positions])

    def batch_index(self, step: int) -> tuple[int, np.ndarray]:
        """(phase, indices in the phase) of the global batch of ``step``, the same on every process."""
        p = self._phase_of(step)
        first = (step - self.bounds[p]) * self.batch
        if self.mixture is None:
            return p, np.arange(first, first + self.batch)
        ph = self.data.phases[p]
        w = np.array([self.mixture.weights[d] for d in self.data.domains])
        rng = np.random.default_rng([self.cfg.seed, step])
        available = np.array([(ph["domains"] == j).any() for j in range(len(w))])
        w = np.where(available, w, 0)
        pick = rng.choice(len(w), size=self.batch, p=w / w.sum())
        idx = np.empty(self.batch, dtype=np.int64)
        if "by_domain" not in ph:
            ph["by_domain"] = [np.flatnonzero(ph["domains"] == j) for j in range(len(w))]
        for j in np.unique(pick):
            sel = pick == j
            positions = ph["by_domain"][j]
            take = self.cursors[p, j] + np.arange(sel.sum())
            idx[sel] = positions[take % len(positions)]
            self.cursors[p, j] += sel.sum()
        return p, idx

    # ---- evaluation

    def evaluate_heldout(self) -> dict[str, float]:
        torch = self.torch
        out = {}
        self.model.eval()
        sums = []  # (loss sum, tokens) per domain; with several processes each takes every world-th micro-batch
        # FSDP: no_grad, as gathered parameters must not become inference tensors
        with torch.no_grad() if self.fsdp else torch.inference_mode():
            for d, reader in self.data.valid.items():
                rows = np.asarray(reader.tokens[: self.cfg.eval_sequences], dtype=np.int64)
                total, n = 0.0, 0
                step = self.micro * self.dist.world
                for start in range(0, len(rows), step):
                    i = start + self.dist.rank * self.micro
                    if i >= len(rows) and not self.fsdp:
                        break
                    # FSDP: a forward gathers parameters from every process, so all run every round
                    ids = torch.from_numpy(rows[i:i + self.micro] if i < len(rows) else rows[:1]).to(self.device)
                    with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                        logits = self.eval_forward(input_ids=ids, use_cache=False).logits
                    if i >= len(rows):
                        continue
                    loss = torch.nn.functional.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                                                             ids[:, 1:].reshape(-1), reduction="sum")
                    total += loss.item()
                    n += ids[:, 1:].numel()
                sums += [total, n]
        sums = self.dist.sum(sums, self.device)  # every process gets the same losses (the online mixture uses them)
        for k, d in enumerate(self.data.valid):
            out[d] = float(sums[2 * k] / max(sums[2 * k + 1], 1))
        self.model.train()
        return out

    def evaluate_tasks(self) -> dict:
        if not self.cfg.eval_tasks:
            return {}
        from curate.tokenizer import load_tokenizer
        from curate.train.evaluate import evaluate_tasks

        res = None
        if self.dist.main or self.fsdp:  # DDP: on rank 0, the others wait; FSDP: all (forwards are collective)
            tok = load_tokenizer(os.path.dirname(self.data.manifest["tokenizer"]["path"]))
            res = evaluate_tasks(self.model, tok.tokenizer, self.cfg.eval_tasks, limit=self.cfg.eval_tasks_limit,
                                 batch_size=self.micro * 2, max_length=self.data.seq_length)
        return res if self.fsdp else self.dist.broadcast(res)

    # ---- checkpoints

    def settings(self) -> dict:
        """What a resume compares (see ``curate.train.config``): checked config keys, the effective
        max_steps, the model's effective LlamaConfig and the mix's fingerprint."""
        out = resume_settings(self.cfg)
        # the global batch, not micro_batch_size and grad_accum: another number of processes may resume
        out = batch_settings(out, self.cfg.micro_batch_size, self.cfg.grad_accum, self.dist.world,
                             self.reweight.strategy != "none")
        out["max_steps"] = self.max_steps
        out["data"] = mix_fingerprint(self.data.manifest)
        for k, v in self.model.config.to_dict().items():
            if not k.startswith("_") and k not in _MODEL_UNCHECKED:
                out[f"model.{k}"] = v
        return _json_ready(out)

    def save(self, folder: str, state: bool = True) -> None:
        """Write a checkpoint (rank 0 writes; under FSDP every process must call it: the states are gathered)."""
        torch = self.torch
        model_sd = opt_sd = None
        if self.fsdp:
            model_sd, opt_sd = full_states(self.model, self.opt, state)
        if not self.dist.main:
            return
        parent = os.path.dirname(folder)
        os.makedirs(parent, exist_ok=True)
        tmp = os.path.join(parent, f".{os.path.basename(folder)}.{uuid.uuid4().hex[:8]}")  # TEMP_NAME
        self.model.save_pretrained(tmp, safe_serialization=True, **({"state_dict": model_sd} if self.fsdp else {}))
        if self.fsdp:  # save_pretrained names the class fully_shard made (FSDPLlamaForCausalLM)
            with open(os.path.join(tmp, "config.json")) as f:
                conf = json.load(f)
            conf["architectures"] = [next(c.__name__ for c in type(self.model).__mro__
                                          if not c.__name__.startswith("FSDP"))]
            with open(os.path.join(tmp, "config.json"), "w") as f:
                json.dump(conf, f, indent=2, sort_keys=True)
        tok_dir = os.path.dirname(self.data.manifest["tokenizer"]["path"])
        for name in TOKENIZER_FILES:
            if os.path.exists(os.path.join(tok_dir, name)):
                shutil.copy(os.path.join(tok_dir, name), tmp)
        if state:
            tensors = {"optimizer": opt_sd if self.fsdp else self.opt.state_dict(), "torch_rng": torch.get_rng_state()}
            if self.device.type == "cuda":
                tensors["cuda_rng"] = torch.cuda.get_rng_state_all()
            torch.save(tensors, os.path.join(tmp, STATE_PT))
            meta = {"format": STATE_FORMAT, "step": self.step, "max_steps": self.max_steps,
                    "mixture": self.mixture.state_dict() if self.mixture else None,
                    "cursors": self.cursors.tolist() if self.cursors is not None else None,
                    "settings": self.settings(), "config": _json_ready(asdict(self.cfg)), "world_size": self.dist.world}
            with open(os.path.join(tmp, STATE_JSON), "w") as f:
                json.dump(meta, f, indent=1)
        if os.path.exists(folder):  # set the old one aside, rename the new one in, then delete the old one
            old = os.path.join(parent, f".{os.path.basename(folder)}.{uuid.uuid4().hex[:8]}.old")
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old)
        else:
            os.replace(tmp, folder)

    def _prune(self) -> None:
        folder = os.path.join(self.cfg.output, "checkpoints")
        done = sorted(d for d in os.listdir(folder) if re.fullmatch(r"step-\d+", d))
        for d in done[: max(0, len(done) - self.cfg.keep_checkpoints)]:
            shutil.rmtree(os.path.join(folder, d), ignore_errors=True)

    def _load_tensors(self, path: str) -> dict:
        """``trainer_state.pt`` read with ``weights_only=True``: tensors and plain containers, never code."""
        torch = self.torch
        try:
            st = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            m = re.search(r"GLOBAL (\S+)", str(e)) or re.search(r"Unsupported [^\n]*", str(e))
            detail = f" (it asks for {m.group(1)})" if m and m.groups() else f" ({m.group(0).strip()})" if m else ""
            raise UserError(f"{path}: refused: it holds Python objects, not only tensors, and loading it could run "
                            f"code{detail}; curate writes tensors only. If you did not write this checkpoint, delete "
                            "its folder") from None
        except (RuntimeError, EOFError, OSError, ValueError) as e:
            raise UserError(f"{path}: cannot be read ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                            "delete this checkpoint folder to resume from an earlier one") from None
        if not isinstance(st, dict) or not isinstance(st.get("optimizer"), dict) or \
                not isinstance(st.get("torch_rng"), torch.Tensor):
            raise UserError(f"{path}: not a curate trainer state (expected optimizer and torch_rng)")
        return st

    def resume(self, folder: str) -> None:
        torch = self.torch
        from safetensors.torch import load_model

        meta_path = os.path.join(folder, STATE_JSON)
        if not os.path.exists(meta_path) or not os.path.exists(os.path.join(folder, STATE_PT)):
            raise UserError(f"{folder}: no {STATE_JSON} and {STATE_PT} pair: written by an older curate (whose "
                            "checkpoints cannot be loaded safely) or damaged; start a new output folder, or delete "
                            "this checkpoint folder to resume from an earlier one")
        bad = UserError(f"{meta_path}: not a trainer state this curate writes (format {STATE_FORMAT})")
        try:
            with open(meta_path) as f:
                meta = json.load(f)
            step, settings = int(meta["step"]), meta["settings"]
        except (ValueError, KeyError, TypeError):
            raise bad from None
        if meta.get("format") != STATE_FORMAT or not isinstance(settings, dict) or step < 0:
            raise bad
        settings = upgrade_settings(settings)  # written before multi-process training: micro_batch_size, grad_accum
        changes = config_changes(settings, self.settings())
        if changes and not self.allow_config_change:
            hint = batch_hint(settings, self.dist.world, meta.get("world_size")) \
                if any(c.startswith(("global_batch:", "reweight_group:")) for c in changes) else ""
            raise UserError(f"{folder} was written with other settings: " + "; ".join(changes) + hint + ". Resume "
                            "with the same config, start a new output folder, or pass --allow-config-change to go on "
                            "with the new values")
        if changes:
            print("note: resuming with changed settings (--allow-config-change): " + "; ".join(changes), file=sys.stderr)
        st = self._load_tensors(os.path.join(folder, STATE_PT))
        try:
            if self.fsdp:  # whole states into the shards
                from safetensors.torch import load_file

                load_full_states(self.model, self.opt, load_file(os.path.join(folder, "model.safetensors")),
                                 st["optimizer"])
            else:
                load_model(self.model, os.path.join(folder, "model.safetensors"), device=str(self.device))
                self.opt.load_state_dict(st["optimizer"])
        except (RuntimeError, ValueError, KeyError, OSError) as e:
            raise UserError(f"{folder}: the checkpoint does not fit this config's model: "
                            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        torch.set_rng_state(st["torch_rng"])
        if self.device.type == "cuda" and st.get("cuda_rng"):
            torch.cuda.set_rng_state_all(st["cuda_rng"])
        if self.mixture is not None and meta.get("mixture") is not None:
            eta, min_weight, graph = self.mixture.eta, self.mixture.min_weight, self.mixture.graph
            try:
                self.mixture.load_state_dict(meta["mixture"])
                cursors = np.array(meta["cursors"], dtype=np.int64)
            except (ValueError, KeyError, TypeError) as e:
                raise UserError(f"{meta_path}: online-mixture state does not fit this mix: {e}") from None
            # the weights and step come from the checkpoint, the settings from this config (they only
            # differ with --allow-config-change)
            self.mixture.eta, self.mixture.min_weight, self.mixture.graph = eta, min_weight, graph
            if cursors.shape != self.cursors.shape:
                raise UserError(f"{meta_path}: cursors of shape {cursors.shape}, this mix needs {self.cursors.shape}")
            self.cursors = cursors
        self.step = step

    # ---- the loop

    def train(self, stop_at_step: int | None = None) -> dict:
        torch = self.torch
        from curate.train.distributed import no_sync, weighted_loss
        from curate.train.reweight import per_sample_loss

        cfg = self.cfg
        main = self.dist.main  # rank 0 writes the log, checkpoints and results; every process reads checkpoints
        if main:
            os.makedirs(cfg.output, exist_ok=True)
            for what in clean_temp_folders(cfg.output):
                self._print(what)
        self.dist.barrier()
        log_path = os.path.join(cfg.output, "log.jsonl")
        ckpt = _latest_checkpoint(cfg.output)
        if ckpt:
            self.resume(ckpt)
            if main:
                _truncate_log(log_path, self.step)
            self._print(f"resumed from {ckpt} at step {self.step}")
        elif main and os.path.exists(log_path):
            os.remove(log_path)
        log = open(log_path, "a") if main else None
        tokens_per_step = self.batch * self.data.seq_length
        n_params = sum(p.numel() for p in self.model.parameters())
        self._print(f"model: {n_params / 1e6:.2f}M parameters, {self.max_steps} steps x {self.batch} sequences x "
                    f"{self.data.seq_length} tokens on {self.device} ({'bf16' if self.amp else 'fp32'})"
                    + (f" x {self.dist.world} processes ({self.dist.backend}, {cfg.parallel}, {self.micro} x "
                       f"{cfg.grad_accum} sequences each)" if self.dist.active else "") + "; "
                    f"phases: " + ", ".join(f"{p['name']} steps {self.bounds[i]}-{self.bounds[i + 1]}"
                                             for i, p in enumerate(self.data.phases)))

        def write(rec):
            if log is not None:
                log.write(json.dumps(rec) + "\n")
                log.flush()

        if self.step == 0 and self.data.valid:
            write({"step": 0, "tokens": 0, "heldout": self.evaluate_heldout()})
        for i, ph in enumerate(self.data.phases):
            passes = (self.bounds[i + 1] - self.bounds[i]) * self.batch / max(ph["n"], 1)
            if passes > 1.0001 and self.mixture is None:
                self._print(f"note: the run is longer than the mix: phase {ph['name']} is read {passes:.2f} times "
                            "(its sequences repeat; mix more tokens to avoid that)")
        progress = _Progress(self.max_steps, self.step, quiet=self.quiet)
        self.model.train()
        t_last, steps_since = time.perf_counter(), 0
        final_eval = {}
        try:
            while self.step < self.max_steps:
                if stop_at_step is not None and self.step >= stop_at_step:
                    return {"stopped_at": self.step}
                step = self.step
                lr = learning_rate(cfg, step, self.max_steps)
                for g in self.opt.param_groups:
                    g["lr"] = lr
                rows = self.batch_rows(step)
                total_loss, weights = 0.0, None
                for m in range(cfg.grad_accum):
                    ids = torch.from_numpy(rows[m * self.micro:(m + 1) * self.micro]).to(self.device, non_blocking=True)
                    with no_sync(self.ddp, last=m == cfg.grad_accum - 1):  # DDP: all-reduce once per step
                        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                            logits = self.forward(input_ids=ids, use_cache=False).logits
                        per = per_sample_loss(logits.float(), ids)
                        loss, weights = weighted_loss(per, self.reweight, step, self.dist)
                        (loss / cfg.grad_accum).backward()
                    total_loss += per.mean().item() / cfg.grad_accum
                total_loss = self.dist.mean(total_loss, self.device)  # the mean over the global batch
                norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip or math.inf)  # 0: off
                self.opt.step()
                self.opt.zero_grad(set_to_none=True)
                self.step += 1
                steps_since += 1
                rec = {"step": self.step, "tokens": self.step * tokens_per_step, "phase": self.data.phases[self._phase_of(step)]["name"],
                       "loss": total_loss, "lr": lr, "grad_norm": as_float(norm)}
                if self.reweight.strategy != "none" and weights is not None:
                    rec["weight_max"] = float(weights.max())
                if self.step % cfg.log_every == 0 or self.step == self.max_steps:
                    if self.device.type == "cuda":
                        torch.cuda.synchronize()
                    now = time.perf_counter()
                    tps = steps_since * tokens_per_step / (now - t_last)
                    rec["tokens_per_s"] = tps
                    if self.peak:
                        rec["mfu"] = tps * self.flops_per_token / (self.peak * self.dist.world)
                    t_last, steps_since = now, 0
                if cfg.eval_every and (self.step % cfg.eval_every == 0 or self.step == self.max_steps) and self.data.valid:
                    rec["heldout"] = self.evaluate_heldout()
                    if self.mixture is not None and (not cfg.online_mixture.every or self.step % cfg.online_mixture.every == 0):
                        rec["mixture"] = self.mixture.update(rec["heldout"])
                if cfg.eval_tasks_every and self.step % cfg.eval_tasks_every == 0 and self.step != self.max_steps:
                    rec["tasks"] = self.evaluate_tasks()
                write(rec)
                progress.update(self.step, rec)
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.step != self.max_steps:
                    self.save(os.path.join(cfg.output, "checkpoints", f"step-{self.step:07d}"))  # rank 0 writes
                    if main:
                        self._prune()
        finally:
            progress.close()
        final_eval["heldout"] = self.evaluate_heldout() if self.data.valid else {}
        final_eval["tasks"] = self.evaluate_tasks()
        write({"step": self.step, "final": True, **final_eval})
        final = os.path.join(cfg.output, "final")
        summary = None
        self.save(final, state=False)  # rank 0 writes
        self.save(os.path.join(cfg.output, "checkpoints", f"step-{self.step:07d}"))
        if main:
            log.close()
            self._prune()
            with open(log_path) as f:
                start = next((r["heldout"] for r in map(json.loads, f) if r.get("step") == 0 and "heldout" in r), {})
            summary = {"steps": self.step, "tokens": self.step * tokens_per_step, "final": final,
                       "heldout_start": start, **final_eval}
            with open(os.path.join(cfg.output, "results.json"), "w") as f:
                json.dump(summary, f, indent=2)
        return self.dist.broadcast(summary)  # the others wait until rank 0 has written everything

    def _print(self, msg: str) -> None:
        if not self.quiet:
            print(msg, file=sys.stderr)


def _truncate_log(path: str, step: int) -> None:
    """Keep the log lines up to ``step``: a resumed run rewrites the rest exactly."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        keep = [line for line, rec in ((line, json.loads(line)) for line in f if line.strip())
                if rec.get("step", 0) <= step and not rec.get("final")]
    with open(path, "w") as f:
        f.writelines(keep)


class _Progress:
    def __init__(self, total: int, done: int, quiet: bool):
        self.bar = None
        self.quiet = quiet
        if quiet:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                            TimeRemainingColumn(), transient=False)
        self.task = self.bar.add_task("train", total=total, completed=done, info="")
        self.bar.start()

    def update(self, step: int, rec: dict) -> None:
        if self.bar is None:
            return
        info = f"loss {rec['loss']:.3f}"
        if "tokens_per_s" in rec:
            self.last_tps = rec["tokens_per_s"]
        if getattr(self, "last_tps", None):
            info += f"  {self.last_tps:,.0f} tok/s"
        if "heldout" in rec:
            info += "  held-out " + " ".join(f"{d} {v:.3f}" for d, v in rec["heldout"].items())
        self.bar.update(self.task, completed=step, info=info)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def run_train(cfg: TrainConfig, quiet: bool = False, stop_at_step: int | None = None,
              allow_config_change: bool = False) -> dict:
    if getattr(cfg, "selection", None) is not None:  # staged data selection (MATES): curate.mates.staged
        from curate.mates.staged import run_staged

        return run_staged(cfg, quiet=quiet, stop_at_step=stop_at_step, allow_config_change=allow_config_change)
    trainer = Trainer(cfg, quiet=quiet, allow_config_change=allow_config_change)
    try:
        return trainer.train(stop_at_step=stop_at_step)
    finally:
        trainer.dist.close()  # leaves the process group when this run joined it (torchrun)
