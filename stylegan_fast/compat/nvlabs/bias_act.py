"""``torch_utils.ops.bias_act`` of NVIDIA's StyleGAN2-ADA / StyleGAN3, on stylegan_fast's op.

``bias_act(x, b=None, dim=1, act='linear', alpha=None, gain=None, clamp=None, impl='cuda')``:
``clamp(act(x + b) * gain, -clamp, clamp)`` with NVIDIA's argument semantics and defaults (the
table of :mod:`stylegan_fast.ops.bias_act`). ``impl='cuda'`` runs stylegan_fast's best available
backend (cuda, else triton, else ref; ``STYLEGAN_FAST_BACKEND`` and ``use_backend`` apply),
``impl='ref'`` its ``ref`` backend. A bias of another dtype than x is cast to x's (float32 is kept
for a half-precision x). Forward, backward and double backward of all nine activations.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ... import ops
from ...ops.bias_act import ACTIVATIONS, activate

IMPLS = ("cuda", "ref")


@dataclass(frozen=True)
class ActivationFunc:
    """An entry of :data:`activation_funcs` (NVIDIA's field names)."""
    func: Callable        # func(x, alpha) -> act(x), plain PyTorch
    def_alpha: float      # alpha when None is passed
    def_gain: float       # gain when None is passed
    has_2nd_grad: bool    # whether the second derivative is nonzero (smooth activations)


def _func(name: str) -> Callable:
    return lambda x, alpha=0.0, **_: activate(name, x, alpha)


activation_funcs = {name: ActivationFunc(_func(name), spec.def_alpha, spec.def_gain, spec.smooth)
                    for name, spec in ACTIVATIONS.items()}


def bias_act(x: torch.Tensor, b: Optional[torch.Tensor] = None, dim: int = 1,
             act: str = "linear", alpha: Optional[float] = None, gain: Optional[float] = None,
             clamp: Optional[float] = None, impl: str = "cuda") -> torch.Tensor:
    """Fused bias and activation, NVIDIA's signature (see the module docstring)."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {', '.join(IMPLS)}, got {impl!r}")
    if isinstance(b, torch.Tensor) and isinstance(x, torch.Tensor) and b.dtype != x.dtype:
        half_x = x.dtype in (torch.float16, torch.bfloat16)
        if not (half_x and b.dtype == torch.float32):
            b = b.to(x.dtype)
    if impl == "ref":
        with ops.use_backend("ref"):
            return ops.bias_act(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)
    return ops.bias_act(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)


__all__ = ["activation_funcs", "bias_act"]
