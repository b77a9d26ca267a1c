"""Timing and memory measurement: medians of synchronized reps, peak memory, copy bandwidth.

On a GPU each rep is timed with CUDA events after warm-up; on CPU with ``time.perf_counter``
(CPU times say nothing about GPU kernels). Memory is measured on CUDA only.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, Optional

import torch

from ..errors import UserError

COPY_BUFFER_MIB = {"cuda": 256, "cpu": 64}


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str) -> None:
    """Raises UserError for a CUDA device without CUDA (``--device`` checks this while the
    arguments are parsed; this is for library callers)."""
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}, but CUDA is not available")


def synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_reps_ms(step: Callable, reset: Callable, device: str, warmup: int, reps: int) -> list:
    """Milliseconds of each of ``reps`` calls of ``step`` after ``warmup`` untimed ones; ``reset``
    runs before each call, outside the timed region."""
    for _ in range(warmup):
        reset()
        step()
    synchronize(device)
    if torch.device(device).type == "cuda":
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(reps)]
        for start, end in events:
            reset()
            start.record()
            step()
            end.record()
        torch.cuda.synchronize(device)
        return [start.elapsed_time(end) for start, end in events]
    times = []
    for _ in range(reps):
        reset()
        begin = time.perf_counter()
        step()
        times.append((time.perf_counter() - begin) * 1e3)
    return times


def allocated_bytes(device: str) -> Optional[int]:
    """What PyTorch's allocator holds on ``device`` now; None off CUDA."""
    return torch.cuda.memory_allocated(device) if torch.device(device).type == "cuda" else None


def peak_memory_mib(step: Callable, reset: Callable, device: str,
                    baseline_bytes: Optional[int] = None) -> Optional[float]:
    """Memory allocated at peak by one call of ``step`` beyond ``baseline_bytes`` (default: what
    was allocated just before the call), in MiB; None off CUDA."""
    if torch.device(device).type != "cuda":
        return None
    reset()
    synchronize(device)
    before = torch.cuda.memory_allocated(device) if baseline_bytes is None else baseline_bytes
    torch.cuda.reset_peak_memory_stats(device)
    step()
    synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def copy_bandwidth_gbps(device: str, reps: int = 10) -> float:
    """Device-to-device ``dst.copy_(src)`` bandwidth in GB/s, counting the read and the write."""
    numel = COPY_BUFFER_MIB.get(torch.device(device).type, 64) * 2**20 // 4
    src = torch.rand(numel, device=device)
    dst = torch.empty_like(src)
    times = time_reps_ms(lambda: dst.copy_(src), lambda: None, device, warmup=3, reps=reps)
    return 2 * src.numel() * src.element_size() / (statistics.median(times) * 1e-3) / 1e9
