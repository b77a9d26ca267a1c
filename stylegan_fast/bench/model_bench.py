"""The model benchmark (``stylegan-fast bench --model``): StyleGAN's training step and inference.

Cases (:mod:`.model_cases`, run as :mod:`.model_steps` describes):

* ``train_step`` (mode ``train``): one training step of G and D with R1, Adam and G_ema;
  with ``--r1-interval N`` (lazy R1, mode ``train+r1/N``) N steps per timed call, R1 on the first
  (weighted by N), reported per step: ms = the call's median / N, images/s = N * batch / median;
* ``generate`` (mode ``infer``): one batch of ``G(z)`` in eval mode.

Reported: the median time of ``reps`` steps after ``warmup`` (CUDA events on a GPU; a lazy-R1
case times ceil(reps / N) calls of N steps), images/s = batch / median, and on CUDA the peak
memory of one call (lazy R1: over its N steps) beyond what was allocated before the case
built its networks (so weights, optimizer state, EMA and activations all count). ``compile``
runs after all other backends: compiling the networks takes minutes, so a time budget cuts it
first; the other backends' speedups over it are printed at the end. ``--conv-census`` records
the convolutions of one more call of each training case (:mod:`.conv_census`): its table is
printed at the end, and its ``conv_census_*`` fields go into the record.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import statistics
from typing import Optional

import torch

from ..errors import UserError
from ..models import num_levels
from .baselines import check_available, default_backends, known_backends
from .conv_census import census, census_fields, format_census, layer_kernel
from .model_cases import (
    MODEL_DTYPES,
    MODEL_OPS,
    PRESETS,
    ModelCase,
    Networks,
    make_model_cases,
    trained_generator,
)
from .model_steps import prepare_step
from .records import measure_or_error, new_record
from .runner import (
    default_preset,
    exit_status,
    print_run_header,
    reps_and_warmup,
    run_cases,
    select,
)
from .table import CASE_COLUMNS, SPEEDUP_COLUMNS, Column, with_widths
from .timing import allocated_bytes, peak_memory_mib, time_reps_ms

COLUMNS = with_widths(CASE_COLUMNS, mode=11) + (  # mode: up to "train+r1/16"
    Column("ms", 10, "median_ms", ".2f"), Column("img/s", 9, "images_per_s", ".1f"),
    Column("MiB", 9, "peak_mem_mb", ".0f")) + SPEEDUP_COLUMNS


def speedups_over_compile(records: list) -> list[str]:
    """One line per record of another backend in a group where ``compile`` was measured: its
    speedup over compile (from the medians)."""
    def group(record):
        return json.dumps([record[k] for k in ("op", "dtype", "shape", "mode", "networks")])
    compile_ms = {group(r): r["median_ms"] for r in records
                  if r["backend"] == "compile" and r["median_ms"]}
    return [f"{r['op']:<14} {r['backend']:<8} {r['dtype']:<8} {r['shape'][0]}x{r['shape'][1]}px"
            f"  {compile_ms[group(r)] / r['median_ms']:.2f}x" for r in records
            if r["backend"] != "compile" and r["median_ms"] and group(r) in compile_ms]


def release_memory(device: str, compiled_models: bool) -> None:
    """Free what a finished case left behind (compiled graphs hold on to their models)."""
    if compiled_models:
        torch._dynamo.reset()
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


def calls_for(steps: int, case: ModelCase) -> int:
    """Calls of a case's step that run at least ``steps`` steps (a lazy-R1 call runs N)."""
    return math.ceil(steps / case.steps_per_call)


def measure_model(case: ModelCase, run, reps: int, warmup: int,
                  baseline_bytes: Optional[int] = None) -> dict:
    """Time ``run`` (a step of :mod:`.model_steps`) over at least ``reps`` steps after
    ``warmup`` and return the record, with the time per step (a call's median /
    ``case.steps_per_call``); raises if its outputs are not finite."""
    times = time_reps_ms(run, lambda: None, case.device, calls_for(warmup, case),
                         calls_for(reps, case))
    peak = peak_memory_mib(run, lambda: None, case.device, baseline_bytes)
    run.check()
    median_ms = statistics.median(times) / case.steps_per_call
    record = new_record(case)
    record.update(median_ms=median_ms, images_per_s=case.batch / (median_ms * 1e-3),
                  peak_mem_mb=peak, networks=case.networks.describe())
    return record


def take_census(case: ModelCase, run, record: dict, tables: list) -> None:
    """The convolutions of one more call of ``run``: their fields into ``record``, their table
    onto ``tables``."""
    calls = census(run)
    bound = layer_kernel(*run.models)
    record.update(census_fields(calls, bound))
    steps = f"{case.steps_per_call} steps" if case.steps_per_call > 1 else "one step"
    tables.append(format_census(calls, bound, f"{case.name}: {len(calls)} convolutions in "
                                               f"{steps}"))


def run_model_case(case: ModelCase, reps: int, warmup: int,
                   census_tables: Optional[list] = None) -> dict:
    """Prepare, measure and release one case; a failing case comes back with ``error``. With
    ``census_tables`` (a list), a training case also gets its convolution census."""
    def prepare_and_measure():
        baseline = allocated_bytes(case.device)
        run = prepare_step(case)
        record = measure_model(case, run, reps, warmup, baseline)
        if census_tables is not None and case.op == "train_step":
            take_census(case, run, record, census_tables)
        return record
    try:
        record = measure_or_error(case, prepare_and_measure)
    finally:
        release_memory(case.device, case.backend == "compile")
    record.setdefault("images_per_s", None)
    record.setdefault("networks", case.networks.describe())
    return record


def _selection(args: argparse.Namespace, device: str):
    """(cases, reps, warmup) from the preset and the flags; raises UserError on bad values."""
    preset = PRESETS[args.preset or default_preset(device)]
    for flag in ("ops", "shapes", "modes"):
        if getattr(args, flag):
            raise UserError(f"--{flag} is for the op benchmark; with --model use --resolutions "
                             f"and --batch")
    r1_intervals = getattr(args, "r1_interval", None) or [1]
    backends = args.backends or [b for b in default_backends(device)
                                 if b != "compile" or preset.compile_by_default]
    unknown = [b for b in backends if b not in known_backends(device)]
    dtypes = args.dtypes or list(preset.dtypes)
    unknown += [d for d in dtypes if d not in MODEL_DTYPES]
    if unknown:
        raise UserError(f"unknown or unsupported: {', '.join(unknown)}; backends: "
                         f"{', '.join(known_backends(device))}; dtypes: {', '.join(MODEL_DTYPES)}")
    check_available(backends, device)
    op_names, networks = MODEL_OPS, preset.networks
    resolutions = args.resolutions or list(preset.resolutions)
    if getattr(args, "ckpt", None):  # inference of a trained generator at its resolution
        G = trained_generator(args.ckpt)
        if args.resolutions and args.resolutions != [G.resolution]:
            raise UserError(f"--ckpt {args.ckpt} is a {G.resolution} px generator; drop "
                             f"--resolutions")
        if r1_intervals != [1] or getattr(args, "conv_census", False):
            raise UserError("--ckpt times inference only: --r1-interval and --conv-census are "
                             "for the training step")
        op_names, resolutions = ("generate",), [G.resolution]
        networks = Networks(latent_dim=G.z_dim, checkpoint=args.ckpt)
    for res in resolutions:
        try:
            num_levels(res)  # raises ValueError for a resolution the models do not support
        except ValueError as exc:
            raise UserError(f"--resolutions: {exc}") from None
    batch = {res: args.batch if args.batch is not None else preset.batch.get(res, 4)
             for res in resolutions}
    reps, warmup = reps_and_warmup(args, preset)
    cases = make_model_cases(op_names, backends, dtypes, resolutions, batch, device, networks,
                             list(dict.fromkeys(r1_intervals)))
    return cases, reps, warmup


def main(args: argparse.Namespace) -> int:
    """``stylegan-fast bench --model``."""
    device, cases, reps, warmup = select(args, _selection)
    print_run_header(device, f"model benchmark: {len(cases)} cases, {reps} steps after "
                             f"{warmup} warm-up")
    if not args.backends and not any(case.backend == "compile" for case in cases):
        print("note: `compile` is not in this preset's default backends (inductor takes "
              "about a minute to compile the models on a small CPU): add --backends "
              "eager,compile")
    census_tables = [] if getattr(args, "conv_census", False) else None
    records = run_cases(cases, lambda case: run_model_case(case, reps, warmup, census_tables),
                        args, COLUMNS)
    lines = speedups_over_compile(records)
    if lines:
        print("\nspeedup over compile (measured after the other backends):")
        print("\n".join(lines))
    if census_tables:
        print("\nconvolution census: every convolution of one more call of each training case "
              "(stylegan_fast/bench/conv_census.py)")
        print("\n\n".join(census_tables))
    return exit_status(records)
