"""Interpolation loops: the images morph from seed to seed and back to the first (GIF or MP4).

Between consecutive seeds a and b (the last one followed by the first) ``frames`` frames are made
at ``t = ease(j / frames)``, j = 0 .. frames - 1, with ``ease(t) = (1 - cos(pi t)) / 2`` so that
the motion slows down at each seed and never jumps in speed. The latents follow either

- ``space='z'``: ``z_t = slerp(z_a, z_b, t)``, then mapping (and truncation) per frame, or
- ``space='w'``: ``ws_t = lerp(ws_a, ws_b, t)`` of the mapped (and truncated) latents.

Noise defaults to ``const``: random noise would flicker from frame to frame.
"""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Optional, Union

import torch
from PIL import Image

from ..errors import UserError
from ..files import replaced_atomically
from ..train.images import grid, to_uint8
from .generation import latents_from_seeds
from .loading import as_trained
from .mixing import MIN_CELL_SIZE
from .seeds import SpecError, parse_seeds

SPACES = ("z", "w")
FORMATS = (".gif", ".mp4")
BATCH = 16


class VideoBackendError(UserError, RuntimeError):
    """MP4 asked for, but no ffmpeg backend for imageio is installed."""


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical linear interpolation along the last dimension::

        theta = arccos(<a, b> / (|a| |b|))
        slerp(a, b, t) = sin((1 - t) theta) / sin(theta) * a + sin(t theta) / sin(theta) * b

    It follows the great circle between a and b (for Gaussian latents: the shell where their
    mass lies) instead of cutting through the low-norm interior as ``lerp`` does; it falls back
    to ``lerp`` where a and b are (anti)parallel (sin(theta) ~ 0)."""
    a64, b64 = a.double(), b.double()
    cos = (a64 * b64).sum(-1, keepdim=True) / (a64.norm(dim=-1, keepdim=True)
                                               * b64.norm(dim=-1, keepdim=True))
    theta = torch.arccos(cos.clamp(-1, 1))
    sin = torch.sin(theta)
    safe = sin.abs() > 1e-6
    sin = torch.where(safe, sin, torch.ones_like(sin))
    spherical = (torch.sin((1 - t) * theta) * a64 + torch.sin(t * theta) * b64) / sin
    return torch.where(safe, spherical, torch.lerp(a64, b64, t)).to(a.dtype)


def loop_positions(num_seeds: int, frames: int) -> list[tuple[int, int, float]]:
    """(from seed index, to seed index, eased t) for every frame of the loop."""
    return [(i, (i + 1) % num_seeds, (1 - math.cos(math.pi * j / frames)) / 2)
            for i in range(num_seeds) for j in range(frames)]


def interpolation_frames(generator, seeds, frames: int = 16, space: str = "z",
                         truncation_psi: float = 1.0, truncation_cutoff: Optional[int] = 8,
                         noise_mode: str = "const", device="auto") -> torch.Tensor:
    """uint8 frames [len(seeds) * frames, C, R, R] of a loop through ``seeds`` (module doc)."""
    if space not in SPACES:
        raise UserError(f"space must be one of {', '.join(SPACES)}, got {space!r}")
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise UserError(f"frames must be a positive integer, got {frames!r}")
    seeds = parse_seeds(seeds)
    if len(seeds) < 2:
        raise SpecError(f"an interpolation needs at least 2 seeds, got {seeds}")
    trained = as_trained(generator, device)
    z = latents_from_seeds(seeds, trained.G.z_dim)
    positions = loop_positions(len(seeds), frames)
    key_ws = trained.map(z, truncation_psi, truncation_cutoff) if space == "w" else None
    images = []
    for start in range(0, len(positions), BATCH):
        chunk = positions[start:start + BATCH]
        if space == "z":
            z_t = torch.stack([slerp(z[a], z[b], t) for a, b, t in chunk])
            ws = trained.map(z_t, truncation_psi, truncation_cutoff)
        else:
            ws = torch.stack([torch.lerp(key_ws[a], key_ws[b], t) for a, b, t in chunk])
        images.append(to_uint8(trained.synthesize(ws, noise_mode)).cpu())
    return torch.cat(images)


def mp4_backend_available() -> bool:
    """imageio with an ffmpeg backend (imageio-ffmpeg, or PyAV) is installed."""
    return importlib.util.find_spec("imageio") is not None and any(
        importlib.util.find_spec(name) is not None for name in ("imageio_ffmpeg", "av"))


def check_video_path(out: Union[str, Path]) -> str:
    """The suffix of ``out`` (.gif or .mp4) once it is known that it can be written."""
    suffix = Path(out).suffix.lower()
    if suffix not in FORMATS:
        raise UserError(f"output {str(out)!r}: the suffix must be one of {', '.join(FORMATS)}")
    if suffix == ".mp4" and not mp4_backend_available():
        raise VideoBackendError("writing .mp4 needs imageio with an ffmpeg backend: pip install "
                                "imageio imageio-ffmpeg (or write a .gif: it needs nothing more)")
    return suffix


def write_video(frames: torch.Tensor, out: Union[str, Path], fps: float = 20,
                size: Optional[int] = None) -> Path:
    """uint8 frames [N, C, R, R] -> an endlessly looping GIF (Pillow) or an MP4 (imageio +
    ffmpeg), chosen by ``out``'s suffix; each frame scaled to ``size`` px (nearest)."""
    suffix, out = check_video_path(out), Path(out)
    if not fps > 0:
        raise UserError(f"fps must be > 0, got {fps!r}")
    size = size or max(frames.shape[-1], MIN_CELL_SIZE)
    arrays = [grid(frame[None], 1, size) for frame in frames]
    out.parent.mkdir(parents=True, exist_ok=True)
    with replaced_atomically(out) as temp:  # a killed write leaves no half video
        if suffix == ".gif":
            first, *rest = [Image.fromarray(a) for a in arrays]
            first.save(temp, save_all=True, append_images=rest, duration=round(1000 / fps),
                       loop=0)
        else:
            import imageio.v2 as imageio

            rgb = [a if a.ndim == 3 else a[..., None].repeat(3, axis=-1) for a in arrays]
            imageio.mimwrite(temp, rgb, fps=fps)
    return out


def interpolate(generator, seeds, out: Union[str, Path], frames: int = 16, space: str = "z",
                truncation_psi: float = 1.0, truncation_cutoff: Optional[int] = 8,
                noise_mode: str = "const", fps: float = 20, size: Optional[int] = None,
                device="auto") -> Path:
    """Write the loop of :func:`interpolation_frames` to ``out`` (.gif or .mp4)."""
    check_video_path(out)  # before the frames are made
    return write_video(interpolation_frames(generator, seeds, frames, space, truncation_psi,
                                            truncation_cutoff, noise_mode, device),
                       out, fps, size)
