"""``stylegan-fast bench --model``: StyleGAN's training step and inference per backend.

Cases (``shape`` is ``[batch, resolution]``), run as :mod:`.bench_model_steps` describes (which
also says what the ``ref``, ``compile``, ``triton`` and ``cuda`` backends mean at model level):

* ``train_step`` (mode ``train``): one training step of G and D with R1, Adam and G_ema;
* ``generate`` (mode ``infer``): one batch of ``G(z)`` in eval mode.

Reported: the median time of ``reps`` steps after ``warmup`` (CUDA events on a GPU), images/s =
batch / median, and on CUDA the peak memory of one step beyond what was allocated before the case
built its networks (so weights, optimizer state, EMA and activations all count). ``compile``
runs after all other backends: compiling the networks takes minutes, so a time budget cuts it
first; the other backends' speedups over it are printed at the end.
"""
from __future__ import annotations

import argparse
import gc
import json
import statistics
from dataclasses import dataclass, field
from typing import Optional

import torch

from . import benchmark
from .bench_cases import BASELINES, default_backends, default_device, default_preset, known_backends
from .bench_model_steps import MODEL_DTYPES, Generation, TrainingStep
from .bench_table import CASE_COLUMNS, SPEEDUP_COLUMNS, Column
from .models import Discriminator, Generator, num_levels

MODEL_OPS = ("train_step", "generate")
MODES = {"train_step": "train", "generate": "infer"}
COLUMNS = CASE_COLUMNS + (Column("ms", 10, "median_ms", ".2f"),
                          Column("img/s", 9, "images_per_s", ".1f"),
                          Column("MiB", 9, "peak_mem_mb", ".0f")) + SPEEDUP_COLUMNS


@dataclass(frozen=True)
class Networks:
    """Sizes of G and D; the defaults are the official StyleGAN1 configuration."""
    channel_base: int = 8192
    channel_max: int = 512
    latent_dim: int = 512  # z and w
    mapping_layers: int = 8

    def generator(self, resolution: int) -> Generator:
        return Generator(resolution, z_dim=self.latent_dim, w_dim=self.latent_dim,
                         channel_base=self.channel_base, channel_max=self.channel_max,
                         mapping_layers=self.mapping_layers)

    def discriminator(self, resolution: int) -> Discriminator:
        return Discriminator(resolution, channel_base=self.channel_base,
                             channel_max=self.channel_max)

    def describe(self) -> str:
        return "official" if self == Networks() else (
            f"channel_base={self.channel_base},channel_max={self.channel_max},"
            f"latent_dim={self.latent_dim},mapping_layers={self.mapping_layers}")


@dataclass(frozen=True)
class ModelPreset:
    resolutions: tuple
    batch: dict  # resolution -> batch per step
    dtypes: tuple
    networks: Networks = field(default_factory=Networks)
    reps: int = 8
    warmup: int = 3
    compile_by_default: bool = True


PRESETS = {
    # Seconds on a CPU. Inductor needs about a minute to compile even these tiny models on a
    # small CPU, so `compile` runs there only when asked for (--backends ref,compile).
    "smoke": ModelPreset(resolutions=(8,), batch={8: 2}, dtypes=("float32",),
                         networks=Networks(channel_base=64, channel_max=16, latent_dim=16,
                                           mapping_layers=2),
                         reps=2, warmup=1, compile_by_default=False),
    "gpu": ModelPreset(resolutions=(256, 1024), batch={256: 16, 1024: 4},
                       dtypes=("float32", "bfloat16")),
}


@dataclass(frozen=True)
class ModelCase:
    op: str
    backend: str
    dtype: str
    resolution: int
    batch: int
    device: str
    networks: Networks = field(default_factory=Networks)

    @property
    def shape(self) -> tuple:
        return (self.batch, self.resolution)

    @property
    def mode(self) -> str:
        return MODES[self.op]

    @property
    def group(self) -> tuple:
        """Cases that differ only in backend share a group (for speedups)."""
        return (self.op, self.dtype, self.shape, self.mode, self.device, self.networks)

    @property
    def name(self) -> str:
        return f"{self.op}-{self.backend}-{self.dtype}-{self.batch}x{self.resolution}px"


def make_model_cases(op_names, backends, dtypes, resolutions, batch: dict, device: str,
                     networks: Networks) -> list[ModelCase]:
    """Every combination, by resolution, dtype and op, ``ref`` first in each group; ``compile``
    after all the others: compiling the models takes minutes, so a time budget cuts it first
    (the fused backends' speedups over it come in :func:`speedups_over_compile`)."""
    eager = ["ref"] * ("ref" in backends) + [b for b in dict.fromkeys(backends)
                                             if b not in BASELINES]
    return [ModelCase(op, backend, dtype, res, batch[res], device, networks)
            for last in (False, True) for res in resolutions for dtype in dtypes
            for op in op_names for backend in (["compile"] * ("compile" in backends) if last
                                               else eager)]


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


def prepare_model(case: ModelCase, compiler: str = "inductor"):
    return (TrainingStep if case.op == "train_step" else Generation)(case, compiler)


def release_memory(device: str, compiled_models: bool) -> None:
    """Free what a finished case left behind (compiled graphs hold on to their models)."""
    if compiled_models:
        torch._dynamo.reset()
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


def allocated_bytes(device: str) -> Optional[int]:
    return torch.cuda.memory_allocated(device) if torch.device(device).type == "cuda" else None


def measure_model(case: ModelCase, run, reps: int, warmup: int,
                  baseline_bytes: Optional[int] = None) -> dict:
    """Time ``run`` (a :class:`TrainingStep` or :class:`Generation`) and return the record;
    raises if its outputs are not finite."""
    times = benchmark.time_reps_ms(run, lambda: None, case.device, warmup, reps)
    peak = benchmark.peak_memory_mib(run, lambda: None, case.device, baseline_bytes)
    run.check()
    median_ms = statistics.median(times)
    record = benchmark.new_record(case)
    record.update(median_ms=median_ms, images_per_s=case.batch / (median_ms * 1e-3),
                  peak_mem_mb=peak, networks=case.networks.describe())
    return record


def run_model_case(case: ModelCase, reps: int, warmup: int) -> dict:
    """Prepare, measure and release one case; a failing case comes back with ``error``."""
    def prepare_and_measure():
        baseline = allocated_bytes(case.device)
        return measure_model(case, prepare_model(case), reps, warmup, baseline)
    try:
        record = benchmark.measure_or_error(case, prepare_and_measure)
    finally:
        release_memory(case.device, case.backend == "compile")
    record.setdefault("images_per_s", None)
    record.setdefault("networks", case.networks.describe())
    return record


# ---------------------------------------------------------------- command line
def _selection(args: argparse.Namespace, device: str):
    """(cases, reps, warmup) from the preset and the flags; raises ValueError on bad values."""
    preset = PRESETS[args.preset or default_preset(device)]
    for flag in ("ops", "shapes", "modes"):
        if getattr(args, flag):
            raise ValueError(f"--{flag} is for the op benchmark; with --model use --resolutions "
                             f"and --batch")
    backends = args.backends or [b for b in default_backends(device)
                                 if b != "compile" or preset.compile_by_default]
    unknown = [b for b in backends if b not in known_backends(device)]
    dtypes = args.dtypes or list(preset.dtypes)
    unknown += [d for d in dtypes if d not in MODEL_DTYPES]
    if unknown:
        raise ValueError(f"unknown or unsupported: {', '.join(unknown)}; backends: "
                         f"{', '.join(known_backends(device))}; dtypes: {', '.join(MODEL_DTYPES)}")
    resolutions = args.resolutions or list(preset.resolutions)
    for res in resolutions:
        num_levels(res)  # raises ValueError for a resolution the models do not support
    batch = {res: args.batch if args.batch is not None else preset.batch.get(res, 4)
             for res in resolutions}
    if min(batch.values()) < 1:
        raise ValueError(f"--batch must be >= 1, got {args.batch}")
    reps = preset.reps if args.reps is None else args.reps
    warmup = preset.warmup if args.warmup is None else args.warmup
    if reps < 1 or warmup < 0:
        raise ValueError(f"--reps must be >= 1 and --warmup >= 0, got {reps} and {warmup}")
    cases = make_model_cases(MODEL_OPS, backends, dtypes, resolutions, batch, device,
                             preset.networks)
    return cases, reps, warmup


def main(args: argparse.Namespace) -> int:
    """``stylegan-fast bench --model`` (and ``--max-batch``, see :mod:`.bench_max_batch`)."""
    device = args.device or default_device()
    status = 0
    if args.model:
        try:
            benchmark.check_device(device)
            cases, reps, warmup = _selection(args, device)
        except (ValueError, RuntimeError) as exc:
            print(f"stylegan-fast bench --model: {exc}")
            return 2
        benchmark.print_run_header(device, f"model benchmark: {len(cases)} cases, {reps} steps "
                                           f"after {warmup} warm-up")
        if not args.backends and not any(case.backend == "compile" for case in cases):
            print("note: `compile` is not in this preset's default backends (inductor takes "
                  "about a minute to compile the models on a small CPU): add --backends "
                  "ref,compile")
        records = benchmark.run_cases(cases, lambda case: run_model_case(case, reps, warmup),
                                      args, COLUMNS)
        lines = speedups_over_compile(records)
        if lines:
            print("\nspeedup over compile (measured after the other backends):")
            print("\n".join(lines))
        status = benchmark.exit_status(records)
    if args.max_batch:
        from . import bench_max_batch

        status = max(status, bench_max_batch.main(args, device))
    return status
