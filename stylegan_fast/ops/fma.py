"""fma: a * b + c in one kernel (``torch.addcmul``), StyleGAN2/3's modulated-conv epilogue.

``fma(a, b, c)`` is ``torch.addcmul(c, a, b)``: one pass over memory instead of a product and a
sum. Operands broadcast against each other (e.g. x [N, C, H, W] times dcoefs [N, C, 1, 1] plus
noise [N, 1, H, W]); the result has the broadcast shape and PyTorch's promoted dtype. Gradients,
for an output gradient dy, each summed over the dimensions its operand was broadcast along
(reduced to the operand's own shape) and returned in the operand's dtype::

    da = sum(dy * b)        db = sum(dy * a)        dc = sum(dy)

These are autograd's derivatives of ``addcmul``, so every order is differentiable (d2/da db =
dy; nothing else is nonlinear). Arguments: three floating tensors on one device, of shapes that
broadcast (one that ``torch.addcmul`` takes, e.g. a 0-dim CPU tensor beside CUDA ones, is
taken); anything else is a TypeError or ValueError naming the argument.
"""
from __future__ import annotations

import torch

from ._common import FLOAT_DTYPES


def _check(a, b, c) -> None:
    for name, t in (("a", a), ("b", b), ("c", c)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"fma: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype not in FLOAT_DTYPES:
            raise TypeError(f"fma: {name} must be float16, bfloat16, float32 or float64, got "
                            f"{t.dtype}")
    for name, t in (("b", b), ("c", c)):
        if t.device != a.device:
            raise ValueError(f"fma: {name} is on {t.device} but a is on {a.device}")
    try:
        torch.broadcast_shapes(a.shape, b.shape, c.shape)
    except RuntimeError:
        raise ValueError(f"fma: the shapes of a {tuple(a.shape)}, b {tuple(b.shape)} and c "
                         f"{tuple(c.shape)} do not broadcast together") from None


def fma(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """a * b + c as one ``torch.addcmul`` (see the module docstring); NVIDIA's ``fma.fma``."""
    if (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and isinstance(c, torch.Tensor)
            and a.dtype.is_floating_point and b.dtype.is_floating_point
            and c.dtype.is_floating_point):
        try:  # the full checks (broadcast_shapes: ~10x addcmul's host time) only on failure
            return torch.addcmul(c, a, b)
        except RuntimeError:
            _check(a, b, c)  # raises the error naming the argument, where it is one of ours
            raise
    _check(a, b, c)
    raise AssertionError("unreachable: _check raises for these arguments")


__all__ = ["fma"]
