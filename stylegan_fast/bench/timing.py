"""Timing and memory measurement: call time, kernel time, host time, peak memory, copy bandwidth.

* Call time (:func:`time_reps_ms`): the call as a user makes it. On a GPU each rep is timed with
  CUDA events after warm-up; on CPU with ``time.perf_counter`` (CPU times say nothing about GPU
  kernels). On an idle GPU a small case's event pair times the host (Python, dispatch, launches)
  more than its kernels.
* Kernel time (:func:`kernel_time_ms`, CUDA only): device time per call, from replays of a CUDA
  graph of many back-to-back calls, cycling through several input sets so that the calls do not
  all hit L2 (docs/benchmarks.md says exactly how).
* Host time (:func:`host_times_us`): per-call time of a tiny call, from
  ``torch.utils.benchmark.Timer.blocked_autorange`` (``stylegan-fast bench --overhead``).

Memory is measured on CUDA only.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..errors import UserError

COPY_BUFFER_MIB = {"cuda": 256, "cpu": 64}

# Kernel time: a CUDA graph of KERNEL_GRAPH_CALLS back-to-back calls (fewer, at least
# KERNEL_MIN_CALLS, where that many would take longer than KERNEL_GRAPH_MS at the call time),
# replayed KERNEL_REPLAYS times after one untimed replay; KERNEL_WARMUP untimed rounds of every
# input set on a side stream before capture. The input sets together hold at least
# KERNEL_COLD_L2_FACTOR times the device's L2 cache (DEFAULT_L2_BYTES where CUDA does not say),
# at most one set per call.
KERNEL_GRAPH_CALLS = 20
KERNEL_MIN_CALLS = 2
KERNEL_GRAPH_MS = 50.0
KERNEL_REPLAYS = 10
KERNEL_WARMUP = 3
KERNEL_COLD_L2_FACTOR = 2
DEFAULT_L2_BYTES = 50 * 2**20


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


# ---------------------------------------------------------------- kernel time (CUDA graphs)
@dataclass(frozen=True)
class KernelTime:
    """Device time per call (``ms``), from a graph of ``calls`` calls over ``input_sets`` sets."""
    ms: float
    calls: int
    input_sets: int


def graph_calls(call_ms: Optional[float], calls: int = KERNEL_GRAPH_CALLS,
                graph_ms: float = KERNEL_GRAPH_MS, minimum: int = KERNEL_MIN_CALLS) -> int:
    """How many calls one graph holds: ``calls``, fewer where they would take more than
    ``graph_ms`` at the call time ``call_ms`` (an upper bound of the kernel time), at least
    ``minimum``."""
    if not call_ms or call_ms <= 0:
        return calls
    return max(minimum, min(calls, int(graph_ms // call_ms)))


def l2_cache_bytes(device: str) -> int:
    """The L2 cache of a CUDA ``device`` in bytes (``DEFAULT_L2_BYTES`` where CUDA says none)."""
    try:
        size = int(getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0) or 0)
    except Exception:
        size = 0
    return size or DEFAULT_L2_BYTES


def input_copies(set_bytes: int, calls: int, cold_bytes: int) -> int:
    """How many input sets the ``calls`` of a graph cycle through: enough that together they hold
    ``cold_bytes``, at least 1, at most one per call."""
    if set_bytes <= 0:
        return calls
    return max(1, min(calls, math.ceil(cold_bytes / set_bytes)))


def graph_replay_ms(steps: list, calls: int, device: str, replays: int = KERNEL_REPLAYS,
                    warmup: int = KERNEL_WARMUP) -> list:
    """Milliseconds of each of ``replays`` replays of one CUDA graph that holds ``calls`` calls,
    ``steps[i % len(steps)]()`` for the i-th. Before capture, ``warmup`` rounds of every step run
    on a side stream (lazy initialization, Triton compilation and autotuning, cuBLAS workspaces
    happen there, not in the graph); one untimed replay uploads the graph; then the replays are
    queued back to back, each between two CUDA events, and read after one synchronization.
    Raises whatever capture raises (a host sync such as ``.item()`` in a step, an op that cannot
    be captured)."""
    with torch.cuda.device(torch.device(device)):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                for step in steps:
                    step()
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for i in range(calls):
                steps[i % len(steps)]()
        graph.replay()
        torch.cuda.synchronize()
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(replays)]
        for start, end in events:
            start.record()
            graph.replay()
            end.record()
        torch.cuda.synchronize()
        return [start.elapsed_time(end) for start, end in events]


def kernel_time_ms(make_step: Callable[[int], tuple], device: str,
                   calls: int = KERNEL_GRAPH_CALLS, cold_bytes: Optional[int] = None,
                   replays: int = KERNEL_REPLAYS) -> KernelTime:
    """Device time per call of a step, without the host: ``make_step(i)`` returns one call on
    the i-th set of inputs and the bytes of that set, ``(step, bytes)``. As many sets as
    :func:`input_copies` says for ``cold_bytes`` (default: ``KERNEL_COLD_L2_FACTOR`` times the
    L2 cache) are made, :func:`graph_replay_ms` times a graph of ``calls`` calls cycling through
    them, and the median replay over ``calls`` is the answer. CUDA only; raises on failure."""
    if torch.device(device).type != "cuda":
        raise ValueError(f"kernel time needs a CUDA device, got {device}")
    if cold_bytes is None:
        cold_bytes = KERNEL_COLD_L2_FACTOR * l2_cache_bytes(device)
    first, set_bytes = make_step(0)
    copies = input_copies(set_bytes, calls, cold_bytes)
    steps = [first] + [make_step(i)[0] for i in range(1, copies)]
    times = graph_replay_ms(steps, calls, device, replays=replays)
    return KernelTime(statistics.median(times) / calls, calls, copies)


# ---------------------------------------------------------------- host time
@dataclass(frozen=True)
class HostTimes:
    """Per-call times of the blocks of one ``blocked_autorange``, in microseconds: wall clock
    (``wall_us``), and the CPU time of the calling thread over the same blocks (``cpu_us``)."""
    wall_us: list
    cpu_us: list


def host_times_us(stmt: str, globals: dict, min_run_time: float) -> HostTimes:
    """Time per execution of ``stmt`` (with ``globals``), one per block of
    ``torch.utils.benchmark.Timer(...).blocked_autorange(min_run_time)``: blocks of many
    executions back to back, each block timed as a whole by ``torch.utils.benchmark``'s clock
    (which synchronizes an accelerator at the block's ends), with the process's current number of
    threads (Timer's default would be 1). The same clock notes ``time.thread_time()`` at each
    block's ends: the calling thread's CPU time, which time spent waiting for a core on a busy
    machine does not inflate (nor work done on other threads: OpenMP workers, or the autograd
    engine's thread for a CUDA backward)."""
    from torch.utils.benchmark import Timer
    from torch.utils.benchmark.utils.timer import timer as wall_clock

    marks = []

    def clock() -> float:
        wall = wall_clock()
        marks.append(time.thread_time())
        return wall

    timer = Timer(stmt=stmt, globals=globals, timer=clock, num_threads=torch.get_num_threads())
    measurement = timer.blocked_autorange(min_run_time=min_run_time)
    blocks = len(measurement.raw_times)
    ends = marks[len(marks) - 2 * blocks:]  # the last blocks are the measured ones, two marks each
    per_call = 1e6 / measurement.number_per_run
    return HostTimes([t * 1e6 for t in measurement.times],
                     [(ends[2 * i + 1] - ends[2 * i]) * per_call for i in range(blocks)])
