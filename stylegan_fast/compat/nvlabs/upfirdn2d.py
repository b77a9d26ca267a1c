"""``torch_utils.ops.upfirdn2d`` of NVIDIA's StyleGAN2-ADA / StyleGAN3, on stylegan_fast's op.

``upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1, impl='cuda')`` and the
helpers ``setup_filter``, ``filter2d``, ``upsample2d``, ``downsample2d`` with NVIDIA's signatures
and padding conventions (:mod:`stylegan_fast.ops.upfirdn2d`). ``impl='cuda'`` runs stylegan_fast's
best available backend (cuda, else triton, else ref; ``STYLEGAN_FAST_BACKEND`` and ``use_backend``
apply), ``impl='ref'`` its ``ref`` backend. Forward, backward and double backward.
"""
from __future__ import annotations

import contextlib
from typing import Optional

import torch

from ... import ops
from ...ops.upfirdn2d import setup_filter

IMPLS = ("cuda", "ref")


def _backend(impl: str):
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {', '.join(IMPLS)}, got {impl!r}")
    return ops.use_backend("ref") if impl == "ref" else contextlib.nullcontext()


def upfirdn2d(x: torch.Tensor, f: Optional[torch.Tensor], up=1, down=1, padding=0,
              flip_filter: bool = False, gain: float = 1, impl: str = "cuda") -> torch.Tensor:
    """Upsample, FIR-filter, downsample (NVIDIA's signature; see the module docstring)."""
    with _backend(impl):
        return ops.upfirdn2d(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter,
                             gain=gain)


def filter2d(x: torch.Tensor, f: Optional[torch.Tensor], padding=0, flip_filter: bool = False,
             gain: float = 1, impl: str = "cuda") -> torch.Tensor:
    """Filter keeping the size (NVIDIA's signature)."""
    with _backend(impl):
        return ops.filter2d(x, f, padding=padding, flip_filter=flip_filter, gain=gain)


def upsample2d(x: torch.Tensor, f: Optional[torch.Tensor], up=2, padding=0,
               flip_filter: bool = False, gain: float = 1, impl: str = "cuda") -> torch.Tensor:
    """Upsample by ``up`` with filter f (NVIDIA's signature)."""
    with _backend(impl):
        return ops.upsample2d(x, f, up=up, padding=padding, flip_filter=flip_filter, gain=gain)


def downsample2d(x: torch.Tensor, f: Optional[torch.Tensor], down=2, padding=0,
                 flip_filter: bool = False, gain: float = 1, impl: str = "cuda") -> torch.Tensor:
    """Filter with f and downsample by ``down`` (NVIDIA's signature)."""
    with _backend(impl):
        return ops.downsample2d(x, f, down=down, padding=padding, flip_filter=flip_filter,
                                gain=gain)


__all__ = ["downsample2d", "filter2d", "setup_filter", "upfirdn2d", "upsample2d"]
