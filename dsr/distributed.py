"""Data-parallel training on torch.distributed: one process per device, launched by torchrun.

``torchrun --nproc_per_node=N -m dsr train ...`` runs the one training loop in N processes
(NCCL between GPUs, gloo between CPU processes). What a run computes does not depend on N,
up to the order of floating-point sums:

* each global batch of ``batch_size`` examples is cut into N contiguous shards, one per rank
  (``Data.batches(shard=...)``); augmentation is drawn for the whole global batch, so an
  example is cropped and flipped the same way whatever N is;
* a rank's loss is the sum of its examples' losses times N / (global batch), so the mean over
  ranks that DDP takes of the gradients is the gradient of the global batch's mean loss, also
  for an epoch's last, shorter batch;
* batch norm normalises with the statistics of the global batch: torch's ``SyncBatchNorm`` on
  GPUs; on CPUs, where it does not run, :class:`SyncBatchNormCPU`, the same computation with
  ``all_reduce``. (The DSR paper does not say how its multi-GPU ImageNet runs treated batch
  norm; per-GPU statistics would make the result depend on the number of GPUs.)
* masks: every rank runs the method's update with the same generator state on the same weights
  and gradients, so all ranks take the same decisions. After every update rank 0 broadcasts its
  masks, sparse weights, their momentum and the method's state anyway, as a guard against
  non-deterministic kernels (a GPU sum that lands on the other side of a threshold); the
  reallocation log records whether any rank had differed (``ranks_agreed``). A method that
  changes masks every step but logs less often (DeepR: once per epoch) is checked and guarded
  at its log entries. DSR's ``nonzero()`` / ``randperm`` calls synchronise with the host, but
  only on update steps;
* rank 0 alone writes files; on resume every rank reads the checkpoint (a multi-node run needs
  a run folder on a shared file system).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Context:
    """This process's place in the process group (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1

    @property
    def shard(self) -> tuple[int, int]:
        return self.rank, self.world

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def context() -> Context:
    if not (dist.is_available() and dist.is_initialized()):
        return Context()
    return Context(dist.get_rank(), dist.get_world_size())


def init_from_env(device: str) -> str:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1) and return this
    process's device: ``cuda:<LOCAL_RANK>`` for a CUDA device, else ``device`` unchanged."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    if str(device).startswith("cuda"):
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return device


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if context().world > 1:
        dist.barrier()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (``obj`` itself when not distributed)."""
    if context().world == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, 0)
    return box[0]


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over ranks, in place (``t`` itself when not distributed)."""
    if context().world > 1:
        dist.all_reduce(t)
    return t


class SyncBatchNormCPU(nn.modules.batchnorm._BatchNorm):
    """Batch norm over the examples of all ranks, for CPU tensors (torch's SyncBatchNorm takes
    GPU tensors only). Two differentiable all-reduces: sums and counts for the mean, then the
    squared deviations for the (biased) variance; running statistics as ``nn.BatchNorm``."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and context().world > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        dims = [0, *range(2, x.dim())]
        shape = [1, x.shape[1]] + [1] * (x.dim() - 2)
        count = torch.full((1,), x.numel() // x.shape[1], dtype=x.dtype)
        sums = all_reduce(torch.cat([x.sum(dims), count]))  # (C + 1,)
        n = sums[-1]
        mean = sums[:-1] / n  # (C,)
        var = all_reduce((x - mean.view(shape)).pow(2).sum(dims)) / n  # (C,), biased
        self.update_running_stats(mean.detach(), var.detach() * n / (n - 1))
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y

    @torch.no_grad()
    def update_running_stats(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        if not self.track_running_stats:
            return
        self.num_batches_tracked += 1
        f = self.momentum if self.momentum is not None else 1.0 / int(self.num_batches_tracked)
        self.running_mean.mul_(1 - f).add_(mean, alpha=f)
        self.running_var.mul_(1 - f).add_(unbiased_var, alpha=f)


def sync_batch_norm(model: nn.Module, device: str) -> nn.Module:
    """Replace every batch norm of ``model`` in place by a synchronised one that holds the same
    parameters and buffers (state-dict keys unchanged)."""
    if torch.device(device).type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(
            child, SyncBatchNormCPU
        ):
            sync = SyncBatchNormCPU(
                child.num_features, child.eps, child.momentum, child.affine,
                child.track_running_stats,
            )  # fmt: skip
            if child.affine:
                sync.weight, sync.bias = child.weight, child.bias
            if child.track_running_stats:
                sync.running_mean, sync.running_var = child.running_mean, child.running_var
                sync.num_batches_tracked = child.num_batches_tracked
            sync.train(child.training)
            setattr(model, name, sync)
        else:
            sync_batch_norm(child, device)
    return model


def wrap(model: nn.Module, device: str) -> nn.Module:
    """``model`` with synchronised batch norm inside DistributedDataParallel. Buffers are not
    broadcast every step: masks change only on updates (see :func:`sync_after_update`) and the
    batch-norm statistics are the same on every rank by construction."""
    from torch.nn.parallel import DistributedDataParallel

    sync_batch_norm(model, device)
    dev = torch.device(device)
    ids = None
    if dev.type == "cuda":
        ids = [dev.index if dev.index is not None else torch.cuda.current_device()]
    return DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)


@torch.no_grad()
def sync_after_update(method, optimizer: torch.optim.Optimizer) -> bool:
    """Give every rank rank 0's masks, sparse weights, their momentum and the method's state;
    return True if every rank held rank 0's masks already (the methods are deterministic, so
    anything else points at a non-deterministic kernel)."""
    if method.masks is None:
        return True
    differ = torch.zeros(1, dtype=torch.int64, device=method.masks.masks[0].device)
    for t in method.masks.tensors:
        ref = t.mask.to(torch.uint8)  # gloo has no bool
        dist.broadcast(ref, 0)
        differ += (ref.bool() != t.mask).sum()
        t.mask.copy_(ref.bool())
        dist.broadcast(t.weight.data, 0)
        buf = optimizer.state.get(t.weight, {}).get("momentum_buffer")
        if buf is not None:
            dist.broadcast(buf, 0)
    method.load_state_dict(broadcast_object(method.state_dict()))
    dist.all_reduce(differ)
    return int(differ) == 0
