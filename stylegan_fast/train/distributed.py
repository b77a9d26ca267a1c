"""Data parallelism over ``torch.distributed`` for runs launched by ``torchrun`` (or not).

Every rank holds full copies of G and D, runs its own share of each batch, and before each
optimizer step the gradients are averaged over ranks with one all-reduce per network::

    grad = (1 / W) * sum over ranks of grad_rank

which is what DistributedDataParallel computes. It is done explicitly rather than with the DDP
wrapper because one D step calls D several times (fakes, reals, and R1's double backward) and
gradient accumulation spans several forward passes; DDP's reducer expects one forward per backward.
Without ``torchrun`` (no ``WORLD_SIZE`` in the environment) everything runs in one process and no
process group is created.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.distributed as dist

from ..errors import UserError


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def choose_device(requested: str, local_rank: int) -> torch.device:
    """'auto': this rank's GPU if there is one, else the CPU; 'cuda' means this rank's GPU."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {requested!r}, but no CUDA GPU is visible to torch")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return device


def init(requested_device: str) -> World:
    """Join the process group that ``torchrun`` describes in the environment (nccl on GPU, gloo
    on CPU), or run alone."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    device = choose_device(requested_device, int(os.environ.get("LOCAL_RANK", "0")))
    if "WORLD_SIZE" in os.environ and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                device_id=device if device.type == "cuda" else None)
    rank = dist.get_rank() if dist.is_initialized() else 0
    return World(rank, size, device)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast_module(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if dist.is_initialized():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)


def average_gradients(params: Iterable[torch.nn.Parameter], world: World) -> None:
    """Average ``.grad`` over ranks in one flat all-reduce (missing grads count as zero)."""
    params = [p for p in params if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if world.size == 1:
        return
    flat = torch.cat([p.grad.flatten() for p in params])
    dist.all_reduce(flat)
    flat /= world.size
    offset = 0
    for p in params:
        p.grad.copy_(flat[offset:offset + p.numel()].view_as(p.grad))
        offset += p.numel()


def sum_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """``values`` summed over ranks (a copy; the input itself without a process group)."""
    if dist.is_initialized():
        values = values.clone()
        dist.all_reduce(values)
    return values


def start_max_over_ranks(values: torch.Tensor) -> dist.Work:
    """Start replacing ``values`` in place by their elementwise maximum over ranks (needs a
    process group); returns the work to ``wait()`` for."""
    return dist.all_reduce(values, op=dist.ReduceOp.MAX, async_op=True)


def gather_objects(obj) -> list:
    """Every rank's ``obj``, in rank order (on every rank)."""
    if not dist.is_initialized():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
