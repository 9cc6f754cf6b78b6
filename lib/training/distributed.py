"""Process-group helpers for single-process and `torchrun` (DDP) training.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; without them training runs as one
process, or `spawn_local` starts a group of CPU processes on this machine and sets
the same variables itself (train.processes). Under a launcher the process group
exists even for one process (`torchrun --nproc_per_node=1`), so one GPU runs the
same DDP path as eight. Backend: gloo on CPU; on CUDA nccl for CUDA tensors plus gloo
for CPU tensors (the loop's metric sums are CPU tensors, which nccl refuses).
torch's SyncBatchNorm only runs on accelerators, so on CPU `convert_sync_batchnorm`
swaps in `CpuSyncBatchNorm`, which all-reduces the batch statistics through
autograd-aware collectives.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from lib.errors import UserError


@dataclass(frozen=True)
class DistInfo:
    """rank / world_size over all processes, local_rank on this node; enabled: a
    process group exists (training under a launcher, also with world_size 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    enabled: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    """'auto' -> cuda:<local_rank> when CUDA exists, else cpu; 'cuda' -> cuda:<local_rank>."""
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device("cuda", local_rank) if preference == "cuda" else torch.device(preference)
    except RuntimeError:
        raise UserError(f"train.device '{preference}' is not a device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"train.device={preference} but CUDA is not available; use train.device=cpu")
    return device


def process_group_backend(device: torch.device) -> str:
    """The init_process_group backend for a process training on `device`: gloo on CPU;
    on CUDA nccl for CUDA tensors and gloo for CPU ones."""
    return "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"


def init_distributed(device_preference: str = "auto") -> tuple[DistInfo, torch.device]:
    """Join the process group described by the launcher's environment (torchrun or
    `spawn_local`; a single process without one) and pick this process's device
    (train.device)."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_preference, local_rank)
    if not under_launcher():
        return DistInfo(), device
    info = DistInfo(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), local_rank, enabled=True)
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=process_group_backend(device))
    return info, device


def under_launcher() -> bool:
    """True inside a process group started by torchrun or `spawn_local`."""
    return "WORLD_SIZE" in os.environ


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a local process group)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _exit_with_parent(parent: int) -> None:
    """Stop this process once `parent` is gone (checked every second). torch's spawn
    asks the kernel for a SIGINT on the parent's death, but a process started in the
    background ignores SIGINT, and orphans would go on training and writing into the
    run folder that a rerun resumes from. Checkpoints are written atomically, so
    stopping at any moment loses at most the unfinished save interval."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _local_process(rank: int, world_size: int, port: int, parent: int, fn: Callable, args: tuple) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    fn(*args)


def spawn_local(processes: int, fn: Callable, *args) -> int:
    """Run fn(*args) in `processes` new local processes that form one process group,
    as torchrun --nproc_per_node=processes would; fn must be importable (a module-level
    function) and typically exits through sys.exit. Returns 0, or the exit status of
    the first process that failed (the others are then stopped; 1 for a signal). An
    exception escaping fn is re-raised here with the process's traceback."""
    try:
        mp.spawn(_local_process, args=(processes, free_port(), os.getpid(), fn, args), nprocs=processes, join=True)
    except mp.ProcessExitedException as err:
        return err.exit_code if err.exit_code and err.exit_code > 0 else 1
    return 0


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum of `tensor` over ranks (a copy; the input is left alone)."""
    out = tensor.clone()
    if info.enabled:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose gradient is the sum of the ranks' gradients (every rank's
    output depends on every rank's input)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        out = grad.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out


class CpuSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are over the global batch of all ranks.

    Works on any device (gloo on CPU); equals nn.BatchNorm*d on the concatenated batch.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input, got {input.dim()}D")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(input)
        dims = [0] + list(range(2, input.dim()))
        count = torch.tensor(float(input.numel() // input.shape[1]), dtype=input.dtype, device=input.device)
        stats = torch.cat([input.sum(dims), (input * input).sum(dims), count[None]])
        stats = _AllReduceSum.apply(stats)
        channels = input.shape[1]
        total = stats[-1]
        mean = stats[:channels] / total
        var = (stats[channels: 2 * channels] / total - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var * total / (total - 1).clamp_min(1)
                self.running_mean.mul_(1 - momentum).add_(momentum * mean)
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased)
        shape = [1, channels] + [1] * (input.dim() - 2)
        out = (input - mean.reshape(shape)) * torch.rsqrt(var.reshape(shape) + self.eps)
        if self.affine:
            out = out * self.weight.reshape(shape) + self.bias.reshape(shape)
        return out


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm*d by a synchronised one (torch's on CUDA, ours on CPU)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _convert_cpu(model)


def _convert_cpu(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, CpuSyncBatchNorm):
        new = CpuSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, _convert_cpu(child))
    return module
