"""The largest batch that trains within 16 or 24 GB of GPU memory (``bench --max-batch``).

For each memory cap, backend and dtype: the largest batch per GPU (at 1024 px unless
``--resolutions`` says otherwise) for which two training steps of
:class:`.model_steps.TrainingStep` run without running out of memory. The cap
(16 or 24 GiB, what such cards have) is emulated on the bigger GPU at hand with
``torch.cuda.set_per_process_memory_fraction``: it limits what PyTorch's caching allocator may
reserve, while on a real card the CUDA context (~0.5 GiB) also takes its share. Compile is left
out by default (static shapes: it would recompile for every batch tried). Search: double the
batch until a step runs out of memory, then bisect. GPU only.

Records: ``op: "max_batch"``, ``shape: [max_batch, resolution]``, ``mode: "<cap>GB"``,
``max_batch``, ``memory_cap_gb``, and ``peak_mem_mb`` of the largest batch that fitted.
"""
from __future__ import annotations

import argparse
import gc
import time
from dataclasses import dataclass, replace
from typing import Callable

import torch

from ..errors import UserError
from .baselines import default_backends
from .model_cases import MODEL_DTYPES, PRESETS, ModelCase
from .model_steps import TrainingStep
from .records import measure_or_error, new_record
from .runner import exit_status, print_run_header, run_cases
from .table import CASE_COLUMNS, Column
from .timing import allocated_bytes, default_device, synchronize

MEMORY_CAPS_GB = (16, 24)
RESOLUTION = 1024
BATCH_LIMIT = 256
STEPS_PER_TRY = 2  # the second step runs with Adam's state allocated
COLUMNS = CASE_COLUMNS + (Column("max batch", 9, "max_batch", "d"),
                          Column("MiB", 9, "peak_mem_mb", ".0f"))


@dataclass(frozen=True)
class CappedCase(ModelCase):
    """Training steps (``op`` is ``max_batch``) under a memory cap of ``cap_gb``."""
    cap_gb: float = 16

    @property
    def mode(self) -> str:
        return f"{self.cap_gb:g}GB"


def largest_batch(fits: Callable[[int], bool], limit: int = BATCH_LIMIT,
                  out_of_time: Callable[[], bool] = lambda: False) -> int:
    """The largest batch in [1, limit] for which ``fits(batch)``, assuming that a batch fits when
    a larger one does; 0 if even 1 does not. Doubling, then bisection (stops early, keeping the
    largest batch known to fit, once ``out_of_time()``)."""
    if not fits(1):
        return 0
    fitted, failed = 1, limit + 1
    while fitted * 2 < failed and not out_of_time():
        if fits(fitted * 2):
            fitted *= 2
        else:
            failed = fitted * 2
    failed = min(failed, limit + 1)
    while failed - fitted > 1 and not out_of_time():
        middle = (fitted + failed) // 2
        if fits(middle):
            fitted = middle
        else:
            failed = middle
    return fitted


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def trains(case: ModelCase, peaks: dict) -> bool:
    """Whether ``STEPS_PER_TRY`` training steps of ``case`` run within memory; on success the
    peak (MiB) goes to ``peaks[case.batch]``. Other errors propagate."""
    step = None
    out_of_memory = False
    try:
        gc.collect()
        torch.cuda.empty_cache()
        baseline = allocated_bytes(case.device)
        torch.cuda.reset_peak_memory_stats(case.device)
        step = TrainingStep(case)
        for _ in range(STEPS_PER_TRY):
            step()
        synchronize(case.device)
        step.check()
        peaks[case.batch] = (torch.cuda.max_memory_allocated(case.device) - baseline) / 2**20
    except (torch.cuda.OutOfMemoryError, RuntimeError) as exc:
        if not is_out_of_memory(exc):
            raise
        out_of_memory = True
    finally:
        del step  # the exception (with its frames) is gone by now: free everything
        gc.collect()
        torch.cuda.empty_cache()
    return not out_of_memory


def capped_max_batch(case: CappedCase, out_of_time: Callable[[], bool]) -> dict:
    """The record of the largest batch of ``case`` under its cap."""
    device = torch.device(case.device)
    if device.index is None:  # set_per_process_memory_fraction needs an index
        device = torch.device(device.type, torch.cuda.current_device())
    total = torch.cuda.get_device_properties(device).total_memory
    cap_bytes = case.cap_gb * 2**30  # a "16 GB" card has 16 GiB
    if cap_bytes > total:
        raise ValueError(f"the GPU has only {total / 2**30:.1f} GiB, less than the "
                         f"{case.cap_gb:g} GiB cap")
    peaks: dict = {}
    torch.cuda.set_per_process_memory_fraction(cap_bytes / total, device)
    try:
        best = largest_batch(lambda batch: trains(replace(case, batch=batch), peaks),
                             out_of_time=out_of_time)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)
    record = new_record(replace(case, batch=best))
    record.update(max_batch=best, memory_cap_gb=case.cap_gb, peak_mem_mb=peaks.get(best),
                  networks=case.networks.describe())
    return record


def main(args: argparse.Namespace) -> int:
    """``stylegan-fast bench --max-batch``."""
    device = args.device or default_device()
    if torch.device(device).type != "cuda" or not torch.cuda.is_available():
        print("stylegan-fast bench --max-batch: needs a CUDA GPU (it caps GPU memory with "
              "torch.cuda.set_per_process_memory_fraction); skipped on this machine.")
        return 0
    networks = PRESETS[args.preset or "gpu"].networks
    backends = args.backends or [b for b in default_backends(device) if b != "compile"]
    dtypes = args.dtypes or ["float32"]
    resolutions = args.resolutions or [RESOLUTION]
    unsupported = [d for d in dtypes if d not in MODEL_DTYPES]
    if unsupported:
        raise UserError(f"--max-batch: dtypes {', '.join(MODEL_DTYPES)} only, not "
                        f"{', '.join(unsupported)}")
    cases = [CappedCase("max_batch", backend, dtype, res, 1, device, networks, cap_gb=cap)
             for res in resolutions for dtype in dtypes for cap in MEMORY_CAPS_GB
             for backend in backends]
    caps = ", ".join(f"{cap:g}" for cap in MEMORY_CAPS_GB)
    print_run_header(device, f"largest training batch within {caps} GB at "
                             f"{', '.join(map(str, resolutions))} px")
    start = time.monotonic()

    def out_of_time() -> bool:
        return args.budget_seconds is not None and time.monotonic() - start > args.budget_seconds

    def run_one(case: CappedCase) -> dict:
        record = measure_or_error(case, lambda: capped_max_batch(case, out_of_time))
        record.setdefault("max_batch", None)
        record.setdefault("memory_cap_gb", case.cap_gb)
        return record

    return exit_status(run_cases(cases, run_one, args, COLUMNS))
