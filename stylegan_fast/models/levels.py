"""Resolutions, channel counts and levels of detail shared by the generator and discriminator.

Level ``k`` (0 .. num_levels - 1) works at 4 * 2^k pixels; the network's own resolution is the
last level. ``lod`` (level of detail) counts down from the top during progressive growing: the
image is produced at level ``top = num_levels - 1 - floor(lod)``, and a fractional part fades the
new level in::

    fade_in = 1 - (lod - floor(lod))        1: only the top level; -> 0: the level below, x2
"""
from __future__ import annotations

import math

MIN_RESOLUTION, MAX_RESOLUTION = 8, 1024


def num_levels(resolution: int) -> int:
    """log2(resolution) - 1 levels (4, 8, ..., resolution px) for a power of two in 8..1024."""
    if (isinstance(resolution, bool) or not isinstance(resolution, int)
            or not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION
            or resolution & (resolution - 1)):
        raise ValueError(f"resolution must be a power of two from {MIN_RESOLUTION} to "
                         f"{MAX_RESOLUTION}, got {resolution!r}")
    return int(math.log2(resolution)) - 1


def level_resolution(level: int) -> int:
    return 4 * 2 ** level


def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
    """Feature maps at ``resolution``: min(channel_base / 2^(log2(resolution) - 1), channel_max)."""
    channels = min(channel_base * 2 // resolution, channel_max)
    if channels < 1:
        raise ValueError(f"channel_base={channel_base} gives no channels at {resolution} px")
    return channels


def split_lod(lod: float, levels: int) -> tuple[int, float]:
    """(top level, fade_in weight of that level) for ``lod`` in [0, levels - 1]."""
    if isinstance(lod, bool) or not isinstance(lod, (int, float)) or not 0 <= lod <= levels - 1:
        raise ValueError(f"lod must be a number in [0, {levels - 1}], got {lod!r}")
    whole = math.floor(lod)
    return levels - 1 - whole, 1.0 - (lod - whole)
