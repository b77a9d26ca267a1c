"""Where training is, from the image counter: level of detail, resolution, batch, learning rate.

Progressive growing (ProGAN / StyleGAN1) starts at ``start_resolution`` and adds one level per
phase. With ``stable`` and ``fade`` images per phase, ``L = log2(resolution / start_resolution)``
and ``k = nimg / 1000`` (kimg)::

    phase = floor(k / (stable + fade)),   t = k - phase * (stable + fade)
    lod   = max(L - phase - max(t - stable, 0) / fade, 0)

so each phase trains ``stable`` kimg at an integer lod, then fades the next level in over ``fade``
kimg (lod falls linearly to the next integer); after the last fade lod stays 0. The networks'
image resolution at ``lod`` is ``resolution / 2^floor(lod)`` (the new, fading-in level).
Without progressive growing lod is always 0.

Learning rate and total batch are looked up by that resolution: an entry of the schedule dict if
there is one, else the default. The EMA of G has a half-life of ``ema_kimg`` thousand images:
``beta = 0.5 ** (batch / (ema_kimg * 1000))`` per step of ``batch`` images.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional

# StyleGAN1's learning rates at high resolution (DESIGN.md section 2); 0.001 below 128 px.
DEFAULT_LR_SCHEDULE = {128: 0.0015, 256: 0.002, 512: 0.003, 1024: 0.003}


@dataclass(frozen=True)
class Phase:
    """What one training step at a given image count uses."""
    lod: float
    resolution: int      # of the images G makes and D sees at this lod
    batch: int           # total images per step, over all ranks
    batch_gpu: int       # images per forward pass on one rank
    accumulation: int    # forward passes per step on one rank
    lr: float


def lod_at(nimg: int, resolution: int, start_resolution: int, stable_kimg: float,
           fade_kimg: float) -> float:
    """The level of detail after ``nimg`` images (module docstring); 0 without growing."""
    levels_to_grow = int(math.log2(resolution // start_resolution))
    if levels_to_grow == 0:
        return 0.0
    kimg = nimg / 1000
    phase = math.floor(kimg / (stable_kimg + fade_kimg))
    into_phase = kimg - phase * (stable_kimg + fade_kimg)
    return max(levels_to_grow - phase - max(into_phase - stable_kimg, 0.0) / fade_kimg, 0.0)


def resolution_at(lod: float, resolution: int) -> int:
    return resolution >> math.floor(lod)


def ema_beta(batch: int, ema_kimg: float) -> float:
    """Per-step EMA decay for a half-life of ``ema_kimg`` thousand images."""
    return 0.5 ** (batch / (ema_kimg * 1000))


@dataclass(frozen=True)
class Schedule:
    """The whole run's schedule (see the module docstring)."""
    resolution: int
    start_resolution: int
    stable_kimg: float
    fade_kimg: float
    batch: int
    batch_gpu: Optional[int]
    world_size: int
    lr: float
    batch_schedule: Mapping[int, int]
    lr_schedule: Mapping[int, float]

    def __post_init__(self):
        if self.start_resolution > self.resolution or self.start_resolution < 4 or (
                self.start_resolution & (self.start_resolution - 1)):
            raise ValueError(f"start resolution {self.start_resolution} must be a power of two "
                             f"from 4 to the resolution {self.resolution}")
        if self.start_resolution < self.resolution and (self.stable_kimg < 0
                                                        or self.fade_kimg <= 0):
            raise ValueError("progressive growing needs stable kimg >= 0 and fade kimg > 0")
        for res in self.resolutions():
            self.phase_at_resolution(res, 0.0)  # raises on an impossible batch split

    def resolutions(self) -> list[int]:
        """Every resolution the run trains at."""
        res, out = self.start_resolution, []
        while res <= self.resolution:
            out.append(res)
            res *= 2
        return out

    def phase_at_resolution(self, resolution: int, lod: float) -> Phase:
        batch = self.batch_schedule.get(resolution, self.batch)
        batch_gpu = min(self.batch_gpu or batch, batch // self.world_size)
        if batch_gpu < 1 or batch % (batch_gpu * self.world_size):
            raise ValueError(
                f"batch {batch} at {resolution} px must be a multiple of batch-gpu "
                f"({self.batch_gpu or batch}) x processes ({self.world_size})")
        return Phase(lod, resolution, batch, batch_gpu, batch // (batch_gpu * self.world_size),
                     self.lr_schedule.get(resolution, self.lr))

    def at(self, nimg: int) -> Phase:
        lod = lod_at(nimg, self.resolution, self.start_resolution, self.stable_kimg,
                     self.fade_kimg)
        return self.phase_at_resolution(resolution_at(lod, self.resolution), lod)
