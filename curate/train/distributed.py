"""Data-parallel training for ``curate train``: several processes (``torchrun``), one model replica each.

Launch::

    torchrun --standalone --nproc_per_node 8 -m curate train CONFIG     # one machine, 8 GPUs (NCCL)
    torchrun --nproc_per_node 2 -m curate train CONFIG                  # CPU: 2 processes (gloo)
    # parallel: fsdp in CONFIG: the model sharded over the processes instead of one replica each

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; the trainer sees ``WORLD_SIZE > 1``,
joins the process group (NCCL when its device is a GPU, gloo on CPU), puts process ``r`` on
``cuda:LOCAL_RANK`` and wraps the model in ``DistributedDataParallel``. Without those variables
nothing here does anything (one process, world size 1).

What stays the same as one process
----------------------------------
* **Batch.** ``micro_batch_size`` is per process, so one optimizer step reads the *global batch*
  ``micro_batch_size x grad_accum x world_size`` sequences. A run on ``W`` processes computes the
  same losses (up to float summation order) as one process with ``micro_batch_size x W``.
* **Data.** Which sequences a step reads is still a pure function of the step (the global batch of
  step ``s`` is the same slice of the mix as before); each process reads a disjoint part of it
  (``rank_positions``). Micro-batch ``m`` of process ``r`` holds positions
  ``m*M*W + r*M ... + M - 1`` of the global batch (``M`` = micro_batch_size), so micro-batch ``m``
  of all processes together is micro-batch ``m`` of the one-process run with ``M x W``. Every
  sequence of an epoch is therefore read exactly once across processes.
* **Gradient.** DDP averages gradients over processes; each process's loss is the mean over its
  micro-batch divided by ``grad_accum``, so the update is that of the mean over the global batch.
  Loss-based reweighting (``reweight``) gathers the per-sequence losses of all processes first
  (``weighted_loss``), so its weights are the one-process weights too.
* **Evaluation.** Held-out sequences are split over processes and the loss sums all-reduced (every
  process gets the same values, which matters for the online mixture); downstream tasks run on
  rank 0 while the others wait.
* **Checkpoints.** Only rank 0 writes checkpoints, ``log.jsonl``, ``results.json`` and the progress
  bar; every process reads the checkpoint it resumes from. The checkpoint records the global batch
  (``global_batch`` in its settings) instead of ``micro_batch_size`` and ``grad_accum``, so it
  resumes on another number of processes when the global batch is the same (e.g. 2 processes x 8
  -> 1 process x 16 or 4 x 4); otherwise the resume is refused with the numbers that would fit.

FSDP
----
``parallel: fsdp`` in the config shards the model instead of replicating it (FSDP2 ``fully_shard``
on each decoder layer and on the whole model): each process holds ``1/W`` of the parameters,
gradients and optimizer state, and gathers a layer's parameters for its forward and backward. For a
model that does not fit one device (it must fit the CPU memory of each process while it is built;
it is moved to the device layer by layer as it is sharded). The batch, the data and the losses are
those of DDP. Checkpoints hold the whole model and optimizer state, gathered on rank 0, in the form
one process writes, so a run resumes from them with DDP, FSDP or one process alike
(``full_states`` / ``load_full_states``). Evaluation runs on every process (a forward is collective).
``parallel`` may change on resume. Not done: FSDP's own mixed precision (bf16 autocast is used as
with DDP), CPU offload, sharded (per-rank) checkpoints for models whose state does not fit rank
0's CPU memory, and ``torch.compile`` per layer (``compile`` wraps the whole sharded model).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import numpy as np


def env_world_size() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 when unset)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        raise ValueError(f"WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} is not an integer (set by torchrun)") from None


def env_rank() -> int:
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        raise ValueError(f"RANK={os.environ.get('RANK')!r} is not an integer (set by torchrun)") from None


@dataclass
class Dist:
    """This process's place in the job. ``world == 1``: every collective is the identity."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None
    owns_group: bool = False  # this object initialized the process group (and destroys it in close())

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @classmethod
    def start(cls, device_type: str) -> "Dist":
        """Join the torchrun job described by the environment (or an already initialized group)."""
        import torch.distributed as td

        if td.is_available() and td.is_initialized():
            return cls(rank=td.get_rank(), world=td.get_world_size(),
                       local_rank=int(os.environ.get("LOCAL_RANK", td.get_rank())), backend=td.get_backend())
        world = env_world_size()
        if world == 1:
            return cls()
        if not td.is_available():
            raise RuntimeError("WORLD_SIZE > 1 but this torch has no torch.distributed support")
        for var in ("MASTER_ADDR", "MASTER_PORT"):
            if var not in os.environ:
                raise ValueError(f"WORLD_SIZE={world} but {var} is not set: launch multi-process training with "
                                 "torchrun (torchrun --nproc_per_node N -m curate train CONFIG)")
        backend = "nccl" if device_type == "cuda" else "gloo"
        td.init_process_group(backend=backend)
        return cls(rank=td.get_rank(), world=td.get_world_size(),
                   local_rank=int(os.environ.get("LOCAL_RANK", td.get_rank())), backend=backend, owns_group=True)

    # ---- collectives (no-ops for one process)

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as td

            td.barrier()

    def sum(self, values, device=None) -> np.ndarray:
        """Element-wise sum over processes of a float64 vector."""
        values = np.asarray(values, dtype=np.float64)
        if not self.active:
            return values
        import torch
        import torch.distributed as td

        t = torch.from_numpy(values.copy()).to(device or "cpu")
        td.all_reduce(t)
        return t.cpu().numpy()

    def mean(self, value: float, device=None) -> float:
        return float(self.sum([value], device)[0] / self.world) if self.active else float(value)

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every process."""
        if not self.active:
            return obj
        import torch.distributed as td

        box = [obj if self.main else None]
        td.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather(self, tensor):
        """Concatenation over processes, in rank order, of a 1-D tensor of the same length everywhere."""
        if not self.active:
            return tensor
        import torch
        import torch.distributed as td

        parts = [torch.empty_like(tensor) for _ in range(self.world)]
        td.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    def close(self) -> None:
        if self.owns_group:
            import torch.distributed as td

            if td.is_initialized():
                td.barrier()  # every process is done with the group: gloo aborts a peer still talking to it
                td.destroy_process_group()
            self.owns_group = False


# ------------------------------------------------------------------------------------------ data


def rank_positions(micro: int, accum: int, world: int, rank: int) -> np.ndarray:
    """Positions in the global batch (``micro x accum x world`` sequences) that process ``rank`` reads,
    micro-batch after micro-batch: micro-batch ``m`` is ``m*micro*world + rank*micro + [0, micro)``."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside world size {world}")
    m = np.arange(accum, dtype=np.int64)[:, None] * (micro * world) + rank * micro
    return (m + np.arange(micro, dtype=np.int64)[None, :]).reshape(-1)


# -------------------------------------------------------------------------------------- the model


def wrap(model, dist: Dist, device, strategy: str = "ddp"):
    """``DistributedDataParallel(model)`` for several processes; ``model`` itself for one.

    DDP: buffers are not broadcast at each forward (the Llama buffers are constants), so processes
    may run different numbers of evaluation forwards on the bare model.

    FSDP (``strategy: fsdp``): ``fully_shard`` (FSDP2) on every decoder layer, then on the whole
    model, in place; returns the model itself. A model still on the CPU is moved to ``device`` one
    layer at a time as it is sharded, so no device ever holds all of it. Every forward then gathers
    parameters from all processes: every process must run the same forwards (evaluation too).
    """
    if not dist.active:
        return model
    if strategy == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(device.type, (dist.world,))
        for layer in getattr(getattr(model, "model", None), "layers", None) or []:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index if device.index is not None else dist.local_rank] if device.type == "cuda" else None
    return DDP(model, device_ids=ids, broadcast_buffers=False)


def no_sync(ddp_model, last: bool):
    """Skip the gradient all-reduce on all but the last micro-batch of a step."""
    if last or not hasattr(ddp_model, "no_sync"):
        return contextlib.nullcontext()
    return ddp_model.no_sync()


def weighted_loss(per, cfg, step: int, dist: Dist):
    """``curate.train.reweight.weighted_loss`` over the micro-batch of *all* processes.

    Returns (this process's loss to backpropagate, the weights of the whole micro-batch). With one
    process it is ``reweight.weighted_loss``. With several, the per-sequence losses are all-gathered
    (detached), the weights computed over the gathered micro-batch as one process would, and each
    process backpropagates ``mean(w_local * loss_local)``; DDP's gradient average over processes
    then gives the gradient of the one-process ``mean(w * loss)``.
    """
    from curate.train.reweight import sample_weights, weighted_loss as one

    if not dist.active or cfg.strategy == "none" or step < cfg.warmup_steps:
        return one(per, cfg, step)
    full = dist.all_gather(per.detach())
    weights = sample_weights(full, cfg.strategy, cfg.r)
    n = per.shape[0]
    local = weights[dist.rank * n:(dist.rank + 1) * n]
    return (local.to(per.dtype) * per).mean(), weights


def as_float(value) -> float:
    """A scalar tensor (a DTensor under FSDP: its full value) as a Python float."""
    if hasattr(value, "full_tensor"):
        value = value.full_tensor()
    return float(value)


# ---------------------------------------------------------------------------------- checkpoints


def _opt_names(model, opt) -> list[str]:
    """Parameter names in the order ``opt.state_dict()`` numbers them (group after group)."""
    name_of = {id(p): n for n, p in model.named_parameters()}
    return [name_of[id(p)] for g in opt.param_groups for p in g["params"]]


def full_states(model, opt, with_optimizer: bool):
    """(model state dict, optimizer state dict) of an FSDP model, whole, on the CPU of rank 0 (None
    elsewhere). Collective: every process calls it. The optimizer state is in ``opt.state_dict()``'s
    form (parameters numbered), the form one process writes, so a checkpoint does not depend on how it
    was trained."""
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_optimizer_state_dict)

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    msd = get_model_state_dict(model, options=options)
    if msd and getattr(getattr(model, "config", None), "tie_word_embeddings", False):
        msd.pop("lm_head.weight", None)  # the embedding's copy: save_pretrained of one process leaves it out too
    osd = get_optimizer_state_dict(model, opt, options=options) if with_optimizer else None
    if osd:
        index = {n: i for i, n in enumerate(_opt_names(model, opt))}
        osd = {"state": {index[n]: v for n, v in osd["state"].items()},
               "param_groups": [{**g, "params": [index[n] for n in g["params"]]} for g in osd["param_groups"]]}
    return msd or None, osd or None


def load_full_states(model, opt, model_sd: dict, opt_sd: dict) -> None:
    """Load whole state dicts (as one process writes them) into an FSDP model and its optimizer; every
    process calls it with the same dicts."""
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                         set_optimizer_state_dict)

    options = StateDictOptions(full_state_dict=True)
    tied = {n for n in model.state_dict() if n not in model_sd}
    if tied - {"lm_head.weight"}:
        raise KeyError(f"the checkpoint has no {sorted(tied)[0]!r}")
    set_model_state_dict(model, model_sd, options=StateDictOptions(full_state_dict=True, strict=False))
    names = _opt_names(model, opt)
    osd = {"state": {names[int(i)]: v for i, v in opt_sd["state"].items()},
           "param_groups": [{**g, "params": [names[int(i)] for i in g["params"]]} for g in opt_sd["param_groups"]]}
    set_optimizer_state_dict(model, opt, osd, options=options)


def batch_settings(settings: dict, micro: int, accum: int, world: int, reweighted: bool) -> dict:
    """Replace ``micro_batch_size`` and ``grad_accum`` in a checkpoint's settings by what decides the
    computation: ``global_batch`` (the data position is step x global batch) and, with reweighting,
    ``reweight_group`` (the sequences whose losses share one softmax: micro_batch_size x world)."""
    out = {k: v for k, v in settings.items() if k not in ("micro_batch_size", "grad_accum")}
    out["global_batch"] = micro * accum * world
    if reweighted:
        out["reweight_group"] = micro * world
    return out


def upgrade_settings(old: dict) -> dict:
    """Settings of a checkpoint written before multi-process training (one process, micro_batch_size
    and grad_accum recorded) in the form ``batch_settings`` gives."""
    if "global_batch" in old or "micro_batch_size" not in old:
        return old
    micro, accum = old.get("micro_batch_size"), old.get("grad_accum", 1)
    if not isinstance(micro, int) or not isinstance(accum, int):
        return old
    reweighted = old.get("reweight.strategy") not in (None, "none")
    return batch_settings(old, micro, accum, 1, reweighted)


def batch_hint(old: dict, world: int, old_world: int | None) -> str:
    """What to set so the global batch of a checkpoint is kept on ``world`` processes."""
    gb = old.get("global_batch")
    if not isinstance(gb, int):
        return ""
    was = f" (written by {old_world} process{'es' if old_world != 1 else ''})" if old_world else ""
    if gb % world:
        return (f". The checkpoint's global batch of {gb} sequences{was} cannot be split over {world} processes: "
                f"resume on a number of processes that divides {gb}")
    return (f". The checkpoint's global batch is {gb} sequences{was}: on {world} process{'es' if world != 1 else ''} "
            f"set micro_batch_size x grad_accum = {gb // world}")
