"""Running a list of cases in a time budget, printing a table row and saving a record for each."""
from __future__ import annotations

import argparse
import time
from typing import Callable

import torch

from .. import environment
from .records import append_jsonl, fill_speedups
from .table import table_header, table_row
from .timing import check_device, default_device


def default_preset(device: str) -> str:
    """``gpu`` (the real shapes and networks) on CUDA, else ``smoke`` (tiny, seconds)."""
    return "gpu" if torch.device(device).type == "cuda" else "smoke"


def reps_and_warmup(args: argparse.Namespace, preset) -> tuple[int, int]:
    """``--reps`` and ``--warmup``, else the preset's (the flags' types check their ranges)."""
    reps = preset.reps if args.reps is None else args.reps
    warmup = preset.warmup if args.warmup is None else args.warmup
    return reps, warmup


def select(args: argparse.Namespace, selection: Callable) -> tuple:
    """``(device, *selection(args, device))`` for ``--device`` (default: the GPU if any); flags
    that cannot be run raise :class:`~stylegan_fast.errors.UserError`."""
    device = args.device or default_device()
    check_device(device)
    return (device, *selection(args, device))


def print_run_header(device: str, what: str) -> None:
    facts = environment.versions()
    print(f"stylegan-fast bench on {device} ({facts['gpu'] or 'no GPU'}): torch {facts['torch']},"
          f" CUDA {facts['cuda']}, triton {facts['triton']}; {what}")
    if torch.device(device).type == "cpu":
        print("NOTE: running on CPU. Times are CPU times and say nothing about GPU kernels.")


def run_cases(cases: list, run_one: Callable[[object], dict], args: argparse.Namespace,
              columns) -> list[dict]:
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
