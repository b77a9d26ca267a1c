"""``stylegan-fast bench``: time the ops per backend and print a table (DESIGN.md section 6).

Each case is timed after warm-up (CUDA events on a GPU, ``time.perf_counter`` on CPU) and reported
as the median, the effective GB/s of its minimum memory traffic, that as a percentage of the copy
bandwidth measured in the same run, the peak memory of one rep (CUDA only), and its speedup over
the ``ref`` and ``compile`` baselines of the same op, dtype, shape and mode.

The timing, record, JSONL and table helpers here serve the model level too: ``--model`` and
``--max-batch`` run :mod:`.bench_models` / :mod:`.bench_max_batch`, ``--plot`` :mod:`.bench_plot`.
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from . import environment
from .bench_cases import (
    BASELINES,
    MODES,
    OPS,
    PRESETS,
    Case,
    canonical_dtype,
    default_backends,
    default_device,
    default_preset,
    known_backends,
    make_cases,
    make_inputs,
    min_bytes,
    op_function,
    parse_shape,
)
from .bench_table import CASE_COLUMNS, SPEEDUP_COLUMNS, Column, table_header, table_row

COPY_BUFFER_MIB = {"cuda": 256, "cpu": 64}
COLUMNS = CASE_COLUMNS + (Column("ms", 9, "median_ms", ".4f"), Column("GB/s", 8, "gbps", ".1f"),
                          Column("%peak", 6, "pct_peak_bw", ".1f"),
                          Column("MiB", 8, "peak_mem_mb", ".1f")) + SPEEDUP_COLUMNS


def synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


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
        dy = torch.randn_like(inputs.x)

        def step():
            fn(**kwargs).backward(dy)

    def reset():
        for t in inputs.grad_inputs.values():
            t.grad = None
    return Runner(step, reset, min_bytes(inputs, case.mode))


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


def new_record(case) -> dict:
    """The result record of ``case`` (anything with op, backend, dtype, shape, mode and device:
    an op :class:`Case` or a model case) with nothing measured yet."""
    facts = environment.versions()
    on_gpu = torch.device(case.device).type == "cuda"
    return {
        "op": case.op, "backend": case.backend, "dtype": case.dtype, "shape": list(case.shape),
        "mode": case.mode, "median_ms": None, "gbps": None, "pct_peak_bw": None,
        "peak_mem_mb": None, "speedup_vs_ref": None, "speedup_vs_compile": None,
        "device": case.device, "gpu": facts["gpu"] if on_gpu else None, "torch": facts["torch"],
        "triton": facts["triton"], "cuda": facts["cuda"],
        "date": datetime.datetime.now(datetime.timezone.utc).date().isoformat(), "error": None,
    }


def measure(case: Case, runner: Runner, reps: int, warmup: int, copy_gbps: float) -> dict:
    """Time ``runner`` and return the case's record (raises if the case fails)."""
    median_ms = statistics.median(time_reps_ms(runner.step, runner.reset, case.device,
                                               warmup, reps))
    gbps = runner.bytes / (median_ms * 1e-3) / 1e9
    record = new_record(case)
    record.update(median_ms=median_ms, gbps=gbps, pct_peak_bw=100 * gbps / copy_gbps,
                  peak_mem_mb=peak_memory_mib(runner.step, runner.reset, case.device))
    return record


def error_summary(exc: BaseException) -> str:
    """``'TypeName: first line of the message'``, at most 300 characters."""
    lines = str(exc).strip().splitlines() or [""]
    return f"{type(exc).__name__}: {lines[0]}"[:300]


def measure_or_error(case, measure_case: Callable[[], dict]) -> dict:
    """``measure_case()``, or if it raises (e.g. out of memory), the case's record with
    ``error`` set: one failing case must not end the run."""
    try:
        return measure_case()
    except Exception as exc:
        message = error_summary(exc)
    if torch.device(case.device).type == "cuda":
        torch.cuda.empty_cache()
    record = new_record(case)
    record["error"] = message
    return record


def run_case(case: Case, reps: int, warmup: int, copy_gbps: float) -> dict:
    """Like :func:`measure`, but a failing case comes back with ``error``."""
    return measure_or_error(case, lambda: measure(case, prepare(case), reps, warmup, copy_gbps))


def fill_speedups(record: dict, case, baseline_ms: dict) -> None:
    """Set the record's speedups over the baselines of its group measured so far (and remember
    its median if it is a baseline)."""
    median = record["median_ms"]
    if case.backend in BASELINES and median is not None:
        baseline_ms[(case.group, case.backend)] = median
    for baseline in BASELINES:
        base = baseline_ms.get((case.group, baseline))
        record[f"speedup_vs_{baseline}"] = base / median if base and median else None


def append_jsonl(path, record: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def _comma_list(text: str) -> list:
    return [item.strip() for item in text.split(",") if item.strip()]


def _dtype_list(text: str) -> list:
    try:
        return [canonical_dtype(item) for item in _comma_list(text)]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _shape_list(text: str) -> list:
    try:
        return [parse_shape(item) for item in _comma_list(text)]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _int_list(text: str) -> list:
    try:
        return [int(item) for item in _comma_list(text)]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="case set (default: gpu when CUDA is available, else smoke)")
    parser.add_argument("--ops", type=_comma_list, help=f"comma list of {', '.join(OPS)}")
    parser.add_argument("--backends", type=_comma_list,
                        help="comma list (default: ref, compile and every available backend)")
    parser.add_argument("--dtypes", type=_dtype_list,
                        help="comma list of float32, bfloat16, float16")
    parser.add_argument("--shapes", type=_shape_list,
                        help="comma list of NxCxHxW, e.g. 4x16x64x64,2x8x9x7")
    parser.add_argument("--modes", type=_comma_list, help="comma list of fwd, fwd+bwd")
    parser.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda if available)")
    parser.add_argument("--reps", type=int, help="timed reps per case (median reported)")
    parser.add_argument("--warmup", type=int, help="untimed reps before timing")
    parser.add_argument("--jsonl", help="append one JSON record per case to this file")
    parser.add_argument("--budget-seconds", type=float,
                        help="start no new case once this many seconds have passed")
    models = parser.add_argument_group(
        "model level (stylegan_fast/bench_models.py, bench_max_batch.py, bench_plot.py)")
    models.add_argument("--model", action="store_true",
                        help="time a full training step (G and D with R1, Adam, EMA) and "
                             "generator inference per backend instead of the ops")
    models.add_argument("--max-batch", action="store_true",
                        help="GPU only: the largest batch that trains within 16 and 24 GB caps")
    models.add_argument("--resolutions", type=_int_list,
                        help="comma list of px for --model / --max-batch (e.g. 256,1024)")
    models.add_argument("--batch", type=int, help="batch per step for --model (default: preset's)")
    models.add_argument("--plot", metavar="FILE.png",
                        help="draw speedup and memory bar charts from result files, run nothing")
    models.add_argument("--results", metavar="FILE.jsonl", action="append",
                        help="a results file for --plot (repeatable; default: --jsonl)")


def check_device(device: str) -> None:
    """Raises ValueError for a CUDA device without CUDA (RuntimeError: a bad device name)."""
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}, but CUDA is not available")


def print_run_header(device: str, what: str) -> None:
    facts = environment.versions()
    print(f"stylegan-fast bench on {device} ({facts['gpu'] or 'no GPU'}): torch {facts['torch']},"
          f" CUDA {facts['cuda']}, triton {facts['triton']}; {what}")
    if torch.device(device).type == "cpu":
        print("NOTE: running on CPU. Times are CPU times and say nothing about GPU kernels.")


def run_cases(cases: list, run_one: Callable[[object], dict], args: argparse.Namespace,
              columns=COLUMNS) -> list[dict]:
    """Run the cases in order (none started after ``--budget-seconds``), printing a table row
    and appending a record to ``--jsonl`` per case; returns the records."""
    print(table_header(columns), flush=True)
    start = time.monotonic()
    baseline_ms, records = {}, []
    for case in cases:
        if args.budget_seconds is not None and time.monotonic() - start > args.budget_seconds:
            break
        record = run_one(case)
        fill_speedups(record, case, baseline_ms)
        records.append(record)
        print(table_row(record, columns), flush=True)
        if args.jsonl:
            append_jsonl(args.jsonl, record)
    errors = sum(r["error"] is not None for r in records)
    print(f"\n{len(records)} cases in {time.monotonic() - start:.1f} s, {errors} failed")
    if len(records) < len(cases):
        print(f"budget of {args.budget_seconds:g} s exceeded: skipped {len(cases) - len(records)}"
              f" of {len(cases)} cases")
    if args.jsonl:
        print(f"records appended to {args.jsonl}")
    return records


def exit_status(records: list) -> int:
    """1 if any case failed, else 0."""
    return 1 if any(r["error"] is not None for r in records) else 0


def _selection(args: argparse.Namespace, device: str):
    """(cases, reps, warmup) from the preset and the flags; raises ValueError on bad values."""
    preset = PRESETS[args.preset or default_preset(device)]
    op_names = args.ops or list(OPS)
    modes = args.modes or list(preset.modes)
    backends = args.backends or default_backends(device)
    for flag, chosen, allowed in (("ops", op_names, OPS), ("modes", modes, MODES),
                                  ("backends", backends, known_backends(device))):
        unknown = [c for c in chosen if c not in allowed]
        if unknown:
            raise ValueError(f"--{flag}: unknown {', '.join(unknown)}; choose from "
                             f"{', '.join(allowed)}")
    reps = preset.reps if args.reps is None else args.reps
    warmup = preset.warmup if args.warmup is None else args.warmup
    if reps < 1 or warmup < 0:
        raise ValueError(f"--reps must be >= 1 and --warmup >= 0, got {reps} and {warmup}")
    cases = make_cases(op_names, backends, args.dtypes or list(preset.dtypes),
                       args.shapes or list(preset.shapes), modes, device)
    return cases, reps, warmup


def main(args: argparse.Namespace) -> int:
    if args.plot:
        from . import bench_plot

        return bench_plot.main(args)
    if args.model or args.max_batch:
        from . import bench_models

        return bench_models.main(args)
    device = args.device or default_device()
    try:
        check_device(device)
        cases, reps, warmup = _selection(args, device)
    except (ValueError, RuntimeError) as exc:  # RuntimeError: torch.device of a bad name
        print(f"stylegan-fast bench: {exc}")
        return 2
    print_run_header(device, f"{len(cases)} cases, {reps} reps after {warmup} warm-up")
    copy_gbps = copy_bandwidth_gbps(device)
    print(f"copy bandwidth (dst.copy_(src), read + write): {copy_gbps:.1f} GB/s\n")
    return exit_status(run_cases(cases, lambda case: run_case(case, reps, warmup, copy_gbps), args))
