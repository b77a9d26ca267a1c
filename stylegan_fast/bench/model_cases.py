"""The model benchmark's cases: training step or generation x backend x dtype x resolution.

``shape`` of a model case is ``[batch, resolution]``; ``networks`` the sizes of G and D (the
official StyleGAN1 configuration, or the smoke preset's tiny networks), or a trained generator
(``--ckpt``: our checkpoint or an official StyleGAN1 pickle; generation only). A training step
with lazy R1 (``r1_interval`` N > 1, mode ``train+r1/N``) runs N steps per call, the penalty on
the first; its time is reported per step. ``d_r1_step`` (D on reals with R1 only, mode ``d+r1``)
is not a case of ``bench --model``: the convolution census and ``benchmarks/r1_step.py`` run it.
"""
from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..models import Discriminator, Generator
from .baselines import BASELINES

MODEL_OPS = ("train_step", "generate")
MODES = {"train_step": "train", "generate": "infer", "d_r1_step": "d+r1"}
MODEL_DTYPES = ("float32", "bfloat16")  # float16 training would need a gradient scaler


@dataclass(frozen=True)
class Networks:
    """Sizes of G and D; the defaults are the official StyleGAN1 configuration."""
    channel_base: int = 8192
    channel_max: int = 512
    latent_dim: int = 512  # z and w
    mapping_layers: int = 8
    checkpoint: Optional[str] = None  # a trained G_ema instead (its own sizes)

    def generator(self, resolution: int) -> Generator:
        if self.checkpoint is not None:
            return copy.deepcopy(trained_generator(self.checkpoint))
        return Generator(resolution, z_dim=self.latent_dim, w_dim=self.latent_dim,
                         channel_base=self.channel_base, channel_max=self.channel_max,
                         mapping_layers=self.mapping_layers)

    def discriminator(self, resolution: int) -> Discriminator:
        return Discriminator(resolution, channel_base=self.channel_base,
                             channel_max=self.channel_max)

    def describe(self) -> str:
        if self.checkpoint is not None:
            return f"ckpt={Path(self.checkpoint).name}"
        return "official" if self == Networks() else (
            f"channel_base={self.channel_base},channel_max={self.channel_max},"
            f"latent_dim={self.latent_dim},mapping_layers={self.mapping_layers}")


@functools.lru_cache(maxsize=1)
def trained_generator(path: str) -> Generator:
    """G_ema of a checkpoint or official pickle, on the CPU (loaded once per benchmark run)."""
    from ..tools.loading import load_generator

    return load_generator(path, "cpu").G


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
    # small CPU, so `compile` runs there only when asked for (--backends eager,compile).
    "smoke": ModelPreset(resolutions=(8,), batch={8: 2}, dtypes=("float32",),
                         networks=Networks(channel_base=64, channel_max=16, latent_dim=16,
                                           mapping_layers=2),
                         reps=2, warmup=1, compile_by_default=False),
    # bfloat16 first (what AMP training runs), so that a time budget cuts float32 first.
    "gpu": ModelPreset(resolutions=(256, 1024), batch={256: 16, 1024: 4},
                       dtypes=("bfloat16", "float32")),
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
    r1_interval: int = 1  # train_step: R1 on every r1_interval-th step (lazy R1)

    @property
    def shape(self) -> tuple:
        return (self.batch, self.resolution)

    @property
    def steps_per_call(self) -> int:
        """Training steps one call runs: ``r1_interval`` for a training step (so that every
        call holds one R1 step), else 1."""
        return self.r1_interval if self.op == "train_step" else 1

    @property
    def mode(self) -> str:
        if self.steps_per_call > 1:
            return f"{MODES[self.op]}+r1/{self.r1_interval}"
        return MODES[self.op]

    @property
    def group(self) -> tuple:
        """Cases that differ only in backend share a group (for speedups)."""
        return (self.op, self.dtype, self.shape, self.mode, self.device, self.networks)

    @property
    def name(self) -> str:
        lazy = f"-r1every{self.r1_interval}" if self.steps_per_call > 1 else ""
        return f"{self.op}-{self.backend}-{self.dtype}-{self.batch}x{self.resolution}px{lazy}"


def make_model_cases(op_names, backends, dtypes, resolutions, batch: dict, device: str,
                     networks: Networks, r1_intervals=(1,)) -> list[ModelCase]:
    """Every combination, by resolution, dtype and op (a training step once per R1 interval),
    ``eager`` first in each group; ``compile`` after all the others: compiling the models takes
    minutes, so a time budget cuts it first (the model benchmark prints the others' speedups over
    it at the end)."""
    eager, compile_ = BASELINES
    in_order = [eager] * (eager in backends) + [b for b in dict.fromkeys(backends)
                                                if b not in BASELINES]
    variants = [(op, interval) for op in op_names
                for interval in (r1_intervals if op == "train_step" else (1,))]
    return [ModelCase(op, backend, dtype, res, batch[res], device, networks, interval)
            for at_end in (False, True) for res in resolutions for dtype in dtypes
            for op, interval in variants
            for backend in ([compile_] * (compile_ in backends) if at_end else in_order)]
