"""The model benchmark's cases: training step or generation x backend x dtype x resolution.

``shape`` of a model case is ``[batch, resolution]``; ``networks`` the sizes of G and D (the
official StyleGAN1 configuration, or the smoke preset's tiny networks), or a trained generator
(``--ckpt``: our checkpoint or an official StyleGAN1 pickle; generation only).
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
MODES = {"train_step": "train", "generate": "infer"}
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
    """Every combination, by resolution, dtype and op, ``eager`` first in each group;
    ``compile`` after all the others: compiling the models takes minutes, so a time budget cuts
    it first (the model benchmark prints the others' speedups over it at the end)."""
    eager, compile_ = BASELINES
    in_order = [eager] * (eager in backends) + [b for b in dict.fromkeys(backends)
                                                if b not in BASELINES]
    return [ModelCase(op, backend, dtype, res, batch[res], device, networks)
            for at_end in (False, True) for res in resolutions for dtype in dtypes
            for op in op_names for backend in ([compile_] * (compile_ in backends) if at_end
                                               else in_order)]
