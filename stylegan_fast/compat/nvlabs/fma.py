"""``torch_utils.ops.fma`` of NVIDIA's StyleGAN2-ADA / StyleGAN3, on our op.

``fma(a, b, c)`` = a * b + c in one ``torch.addcmul``, with gradients reduced to each operand's
broadcast shape, differentiable to any order (:func:`stylegan_fast.ops.fma`). NVIDIA's
modulated convolution adds the noise with it. Written from the public description of NVIDIA's
API; none of its code is used.
"""
from __future__ import annotations

import torch

from ... import ops


def fma(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """a * b + c (NVIDIA's signature)."""
    return ops.fma(a, b, c)


__all__ = ["fma"]
