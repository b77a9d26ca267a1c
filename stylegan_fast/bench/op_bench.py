"""The op benchmark (``stylegan-fast bench``): each op per backend, dtype, shape and mode.

Each case is timed after warm-up (:mod:`.timing`) and reported as the median, the effective GB/s
of its minimum memory traffic, that as a percentage of the copy bandwidth measured in the same
run, the peak memory of one rep (CUDA only), and its speedup over the ``eager`` and ``compile``
baselines of the same op, dtype, shape and mode.
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
    OPS,
    PRESETS,
    Case,
    make_cases,
    make_inputs,
    min_bytes,
    op_function,
    output_shape,
)
from .records import measure_or_error, new_record
from .runner import (
    default_preset,
    exit_status,
    print_run_header,
    reps_and_warmup,
    run_cases,
    select,
)
from .table import CASE_COLUMNS, SPEEDUP_COLUMNS, Column
from .timing import copy_bandwidth_gbps, peak_memory_mib, time_reps_ms

COLUMNS = CASE_COLUMNS + (Column("ms", 9, "median_ms", ".4f"), Column("GB/s", 8, "gbps", ".1f"),
                          Column("%peak", 6, "pct_peak_bw", ".1f"),
                          Column("MiB", 8, "peak_mem_mb", ".1f")) + SPEEDUP_COLUMNS


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


def measure(case: Case, runner: Runner, reps: int, warmup: int, copy_gbps: float) -> dict:
    """Time ``runner`` and return the case's record (raises if the case fails)."""
    median_ms = statistics.median(time_reps_ms(runner.step, runner.reset, case.device,
                                               warmup, reps))
    gbps = runner.bytes / (median_ms * 1e-3) / 1e9
    record = new_record(case)
    record.update(median_ms=median_ms, gbps=gbps, pct_peak_bw=100 * gbps / copy_gbps,
                  peak_mem_mb=peak_memory_mib(runner.step, runner.reset, case.device))
    return record


def run_case(case: Case, reps: int, warmup: int, copy_gbps: float) -> dict:
    """Like :func:`measure`, but a failing case comes back with ``error``."""
    return measure_or_error(case, lambda: measure(case, prepare(case), reps, warmup, copy_gbps))


def _selection(args: argparse.Namespace, device: str):
    """(cases, reps, warmup) from the preset and the flags; raises UserError on bad values."""
    preset = PRESETS[args.preset or default_preset(device)]
    op_names = args.ops or list(OPS)
    modes = args.modes or list(preset.modes)
    backends = args.backends or default_backends(device)
    for flag, chosen, allowed in (("ops", op_names, OPS), ("modes", modes, MODES),
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
    print(f"copy bandwidth (dst.copy_(src), read + write): {copy_gbps:.1f} GB/s\n")
    return exit_status(run_cases(cases, lambda case: run_case(case, reps, warmup, copy_gbps),
                                 args, COLUMNS))
