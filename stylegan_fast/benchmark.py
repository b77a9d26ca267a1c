"""``stylegan-fast bench``: time the ops per backend and print a table (DESIGN.md section 6).

Each case is timed after warm-up (CUDA events on a GPU, ``time.perf_counter`` on CPU) and reported
as the median, the effective GB/s of its minimum memory traffic, that as a percentage of the copy
bandwidth measured in the same run, the peak memory of one rep (CUDA only), and its speedup over
the ``ref`` and ``compile`` baselines of the same op, dtype, shape and mode.
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
from .bench_cases import (BASELINES, MODES, OPS, PRESETS, Case, canonical_dtype, default_backends,
                          default_device, default_preset, format_shape, known_backends,
                          make_cases, make_inputs, min_bytes, op_function, parse_shape)

COPY_BUFFER_MIB = {"cuda": 256, "cpu": 64}
COLUMNS = (("op", 14), ("backend", 8), ("dtype", 8), ("shape", 16), ("mode", 7), ("ms", 9),
           ("GB/s", 8), ("%peak", 6), ("MiB", 8), ("x ref", 6), ("x compile", 9))


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


def peak_memory_mib(runner: Runner, device: str) -> Optional[float]:
    """Memory allocated at peak by one rep beyond what was allocated before it (CUDA only)."""
    if torch.device(device).type != "cuda":
        return None
    runner.reset()
    synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    runner.step()
    synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def copy_bandwidth_gbps(device: str, reps: int = 10) -> float:
    """Device-to-device ``dst.copy_(src)`` bandwidth in GB/s, counting the read and the write."""
    numel = COPY_BUFFER_MIB.get(torch.device(device).type, 64) * 2**20 // 4
    src = torch.rand(numel, device=device)
    dst = torch.empty_like(src)
    times = time_reps_ms(lambda: dst.copy_(src), lambda: None, device, warmup=3, reps=reps)
    return 2 * src.numel() * src.element_size() / (statistics.median(times) * 1e-3) / 1e9


def new_record(case: Case) -> dict:
    """The result record of ``case`` with nothing measured yet."""
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
                  peak_mem_mb=peak_memory_mib(runner, case.device))
    return record


def run_case(case: Case, reps: int, warmup: int, copy_gbps: float) -> dict:
    """Like :func:`measure`, but a failing case (e.g. out of memory) comes back with ``error``."""
    try:
        return measure(case, prepare(case), reps, warmup, copy_gbps)
    except Exception as exc:  # one failing case must not end the run
        lines = str(exc).strip().splitlines() or [""]
        message = f"{type(exc).__name__}: {lines[0]}"
    if torch.device(case.device).type == "cuda":
        torch.cuda.empty_cache()
    record = new_record(case)
    record["error"] = message[:300]
    return record


def fill_speedups(record: dict, case: Case, baseline_ms: dict) -> None:
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


def _cell(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _join(cells: list) -> str:
    """Cells padded to the column widths: the first 5 columns left-aligned, numbers right."""
    return " ".join(f"{cell:<{width}}" if i < 5 else f"{cell:>{width}}"
                    for i, (cell, (_, width)) in enumerate(zip(cells, COLUMNS)))


def table_header() -> str:
    return _join([name for name, _ in COLUMNS])


def table_row(record: dict) -> str:
    cells = [record["op"], record["backend"], record["dtype"], format_shape(record["shape"]),
             record["mode"]]
    if record["error"]:
        return f"{_join(cells)} ERROR {record['error']}"
    return _join(cells + [_cell(record["median_ms"], ".4f"), _cell(record["gbps"], ".1f"),
                          _cell(record["pct_peak_bw"], ".1f"), _cell(record["peak_mem_mb"], ".1f"),
                          _cell(record["speedup_vs_ref"], ".2f"),
                          _cell(record["speedup_vs_compile"], ".2f")])


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
    device = args.device or default_device()
    try:
        if torch.device(device).type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {device}, but CUDA is not available")
        cases, reps, warmup = _selection(args, device)
    except (ValueError, RuntimeError) as exc:  # RuntimeError: torch.device of a bad name
        print(f"stylegan-fast bench: {exc}")
        return 2
    facts = environment.versions()
    print(f"stylegan-fast bench on {device} ({facts['gpu'] or 'no GPU'}): torch {facts['torch']},"
          f" CUDA {facts['cuda']}, triton {facts['triton']}; {len(cases)} cases, {reps} reps "
          f"after {warmup} warm-up")
    if torch.device(device).type == "cpu":
        print("NOTE: running on CPU. Times are CPU times and say nothing about GPU kernels.")
    copy_gbps = copy_bandwidth_gbps(device)
    print(f"copy bandwidth (dst.copy_(src), read + write): {copy_gbps:.1f} GB/s\n")
    print(table_header(), flush=True)
    start = time.monotonic()
    baseline_ms, records = {}, []
    for case in cases:
        if args.budget_seconds is not None and time.monotonic() - start > args.budget_seconds:
            break
        record = run_case(case, reps, warmup, copy_gbps)
        fill_speedups(record, case, baseline_ms)
        records.append(record)
        print(table_row(record), flush=True)
        if args.jsonl:
            append_jsonl(args.jsonl, record)
    errors = sum(r["error"] is not None for r in records)
    print(f"\n{len(records)} cases in {time.monotonic() - start:.1f} s, {errors} failed")
    if len(records) < len(cases):
        print(f"budget of {args.budget_seconds:g} s exceeded: skipped {len(cases) - len(records)}"
              f" of {len(cases)} cases")
    if args.jsonl:
        print(f"records appended to {args.jsonl}")
    return 1 if errors else 0
