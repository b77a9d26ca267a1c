"""The op benchmark (``stylegan-fast bench``): each op per backend, dtype, shape and mode.

Each case is timed after warm-up (:mod:`.timing`) and reported as the median call time (the call
as a user makes it), the effective GB/s of its minimum memory traffic, that as a percentage of
the copy bandwidth measured in the same run, the peak memory of one rep (CUDA only), and its
speedup over the ``eager`` and ``compile`` baselines of the same op, dtype, shape and mode. On
CUDA each case also gets its kernel time (``kernel_ms``: device time per call from the replay of
a CUDA graph of back-to-back calls, :func:`.timing.kernel_time_ms`) with its own GB/s and % of
copy bandwidth; ``None`` on CPU, or with ``kernel_error`` where capture failed (the case itself
stands). docs/benchmarks.md describes every number.
"""
from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import UserError
from .baselines import check_available, default_backends, known_backends
from .op_cases import (
    MODES,
    OP_GROUPS,
    OPS,
    PRESETS,
    Case,
    expand_ops,
    make_cases,
    make_inputs,
    min_bytes,
    op_function,
    output_shape,
)
from .records import error_summary, measure_or_error, new_record
from .runner import (
    default_preset,
    exit_status,
    print_run_header,
    reps_and_warmup,
    run_cases,
    select,
)
from .table import CASE_COLUMNS, SPEEDUP_COLUMNS, Column
from .timing import (
    KERNEL_COLD_L2_FACTOR,
    KERNEL_GRAPH_CALLS,
    KERNEL_REPLAYS,
    copy_bandwidth_gbps,
    graph_calls,
    kernel_time_ms,
    l2_cache_bytes,
    peak_memory_mib,
    time_reps_ms,
)

COLUMNS = CASE_COLUMNS + (Column("ms", 9, "median_ms", ".4f"), Column("GB/s", 8, "gbps", ".1f"),
                          Column("%peak", 6, "pct_peak_bw", ".1f"),
                          Column("kern ms", 9, "kernel_ms", ".4f"),
                          Column("k%peak", 6, "kernel_pct_peak_bw", ".1f"),
                          Column("MiB", 8, "peak_mem_mb", ".1f")) + SPEEDUP_COLUMNS
# What kernel time adds to an op record (all None on CPU, or where it could not be measured).
KERNEL_FIELDS = ("kernel_ms", "kernel_gbps", "kernel_pct_peak_bw", "kernel_graph_calls",
                 "kernel_input_sets", "kernel_error")


@dataclass
class Runner:
    """One prepared case: ``step`` runs one rep, ``reset`` clears gradients between reps."""
    step: Callable[[], None]
    reset: Callable[[], None]
    bytes: int


def prepare(case: Case) -> Runner:
    """Inputs, the op on the case's backend, and for fwd+bwd a fixed random upstream gradient."""
    inputs = make_inputs(case)
    fn = op_function(case.op, case.backend)
    kwargs = inputs.kwargs
    if case.mode == "fwd":
        def step():
            fn(**kwargs)
    else:
        x = inputs.x
        dy = torch.randn(output_shape(case.op, tuple(x.shape)), dtype=x.dtype, device=x.device)

        def step():
            fn(**kwargs).backward(dy)

    def reset():
        for t in inputs.grad_inputs.values():
            t.grad = None
    return Runner(step, reset, min_bytes(inputs, case.mode))


def graph_step(case: Case, seed: int) -> tuple[Callable[[], None], int]:
    """One call of the case on its own inputs (``seed``), for a CUDA graph, and the bytes of
    those inputs (every tensor argument, and dy): ``fwd``, the op; ``fwd+bwd``, the op and
    ``torch.autograd.grad`` of its output with a fixed dy over the inputs that take gradients
    (nothing accumulates in ``.grad``, so no reset is needed between calls)."""
    inputs = make_inputs(case, seed=seed)
    fn = op_function(case.op, case.backend)
    kwargs = inputs.kwargs
    size = sum(t.numel() * t.element_size() for t in kwargs.values()
               if isinstance(t, torch.Tensor))
    if case.mode == "fwd":
        def step():
            fn(**kwargs)
        return step, size
    x = inputs.x
    dy = torch.randn(output_shape(case.op, tuple(x.shape)), dtype=x.dtype, device=x.device)
    wanted = list(inputs.grad_inputs.values())

    def step():
        torch.autograd.grad(fn(**kwargs), wanted, dy, allow_unused=True)
    return step, size + dy.numel() * dy.element_size()


def kernel_fields(case: Case, min_bytes: int, call_ms: float, copy_gbps: float) -> dict:
    """The :data:`KERNEL_FIELDS` of the case's record: its kernel time (:func:`graph_step` in a
    CUDA graph, :func:`.timing.kernel_time_ms`) and GB/s and % of copy bandwidth from it. All
    None on CPU (not tried); where the graph cannot be captured or replayed, None with
    ``kernel_error`` saying why. Never raises for a failed measurement."""
    fields = dict.fromkeys(KERNEL_FIELDS)
    if torch.device(case.device).type != "cuda":
        return fields
    try:
        kernel = kernel_time_ms(lambda seed: graph_step(case, seed), case.device,
                                calls=graph_calls(call_ms))
    except Exception as exc:
        fields["kernel_error"] = error_summary(exc)
        return fields
    finally:
        torch.cuda.empty_cache()
    gbps = min_bytes / (kernel.ms * 1e-3) / 1e9
    fields.update(kernel_ms=kernel.ms, kernel_gbps=gbps, kernel_pct_peak_bw=100 * gbps / copy_gbps,
                  kernel_graph_calls=kernel.calls, kernel_input_sets=kernel.input_sets)
    return fields


def measure(case: Case, runner: Runner, reps: int, warmup: int, copy_gbps: float) -> dict:
    """Time ``runner`` (and on CUDA the kernels, :func:`kernel_fields`) and return the case's
    record (raises if the case fails; a failed kernel time does not fail it)."""
    median_ms = statistics.median(time_reps_ms(runner.step, runner.reset, case.device,
                                               warmup, reps))
    gbps = runner.bytes / (median_ms * 1e-3) / 1e9
    record = new_record(case)
    record.update(median_ms=median_ms, gbps=gbps, pct_peak_bw=100 * gbps / copy_gbps,
                  peak_mem_mb=peak_memory_mib(runner.step, runner.reset, case.device))
    runner.reset()
    record.update(kernel_fields(case, runner.bytes, median_ms, copy_gbps))
    return record


def run_case(case: Case, reps: int, warmup: int, copy_gbps: float) -> dict:
    """Like :func:`measure`, but a failing case comes back with ``error`` (and the kernel
    fields, None)."""
    record = measure_or_error(case, lambda: measure(case, prepare(case), reps, warmup, copy_gbps))
    for key in KERNEL_FIELDS:
        record.setdefault(key, None)
    return record


def _selection(args: argparse.Namespace, device: str):
    """(cases, reps, warmup) from the preset and the flags; raises UserError on bad values."""
    preset = PRESETS[args.preset or default_preset(device)]
    op_names = expand_ops(args.ops) if args.ops else list(OPS)  # a group: its ops
    modes = args.modes or list(preset.modes)
    backends = args.backends or default_backends(device)
    for flag, chosen, allowed in (("ops", op_names, OPS + tuple(OP_GROUPS)),
                                  ("modes", modes, MODES),
                                  ("backends", backends, known_backends(device))):
        unknown = [c for c in chosen if c not in allowed]
        if unknown:
            raise UserError(f"--{flag}: unknown {', '.join(unknown)}; choose from "
                             f"{', '.join(allowed)}")
    check_available(backends, device)
    reps, warmup = reps_and_warmup(args, preset)
    cases = make_cases(op_names, backends, args.dtypes or list(preset.dtypes),
                       args.shapes or preset.shapes_for, modes, device)
    if not cases:
        raise UserError(f"nothing to run: no backend of {', '.join(backends)} implements "
                        f"{', '.join(op_names)}")
    return cases, reps, warmup


def main(args: argparse.Namespace) -> int:
    """``stylegan-fast bench`` (the ops)."""
    device, cases, reps, warmup = select(args, _selection)
    print_run_header(device, f"{len(cases)} cases, {reps} reps after {warmup} warm-up")
    copy_gbps = copy_bandwidth_gbps(device)
    print(f"copy bandwidth (dst.copy_(src), read + write): {copy_gbps:.1f} GB/s")
    if torch.device(device).type == "cuda":
        print(f"kern ms: device time per call, the median of {KERNEL_REPLAYS} replays of a CUDA "
              f"graph of up to {KERNEL_GRAPH_CALLS} back-to-back calls over input sets holding "
              f">= {KERNEL_COLD_L2_FACTOR}x the L2 cache ({l2_cache_bytes(device) / 2**20:.0f} "
              f"MiB); ms: the call as made, CUDA events (docs/benchmarks.md)")
    print()
    return exit_status(run_cases(cases, lambda case: run_case(case, reps, warmup, copy_gbps),
                                 args, COLUMNS))
