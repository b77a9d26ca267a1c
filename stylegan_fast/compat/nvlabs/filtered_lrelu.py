"""``torch_utils.ops.filtered_lrelu`` of NVIDIA's StyleGAN3, on stylegan_fast's op.

``filtered_lrelu(x, fu=None, fd=None, b=None, up=1, down=1, padding=0, gain=np.sqrt(2),
slope=0.2, clamp=None, flip_filter=False, impl='cuda')``: add the bias b, upsample by ``up`` (zero
insertion), pad, filter with fu, leaky ReLU, multiply by gain, clamp, filter with fd, keep every
``down``-th pixel, with NVIDIA's argument semantics (:func:`stylegan_fast.ops.filtered_lrelu`).
``impl='cuda'`` runs stylegan_fast's best available backend (cuda, else triton, else ref;
``STYLEGAN_FAST_BACKEND`` and ``use_backend`` apply), ``impl='ref'`` its ``ref`` backend, as in
:mod:`.upfirdn2d`. StyleGAN2-ADA has no such module. Written from the public description of
NVIDIA's API; none of its code is used.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ...ops.filtered_lrelu import filtered_lrelu as _filtered_lrelu  # the function
from .upfirdn2d import _backend


def filtered_lrelu(x: torch.Tensor, fu: Optional[torch.Tensor] = None,
                   fd: Optional[torch.Tensor] = None, b: Optional[torch.Tensor] = None,
                   up: int = 1, down: int = 1, padding=0, gain: float = np.sqrt(2),
                   slope: float = 0.2, clamp: Optional[float] = None,
                   flip_filter: bool = False, impl: str = "cuda") -> torch.Tensor:
    """Bias, upsample, FIR filter, leaky ReLU, clamp, FIR filter, downsample (NVIDIA's
    signature; see the module docstring)."""
    with _backend(impl):
        return _filtered_lrelu(x, fu=fu, fd=fd, b=b, up=up, down=down, padding=padding,
                               gain=gain, slope=slope, clamp=clamp, flip_filter=flip_filter)


__all__ = ["filtered_lrelu"]
