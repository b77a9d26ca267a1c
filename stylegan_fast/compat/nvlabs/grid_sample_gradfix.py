"""``torch_utils.ops.grid_sample_gradfix`` of NVIDIA's StyleGAN2-ADA / StyleGAN3, on our op.

``grid_sample(input, grid)``: bilinear, zeros padding, align_corners=False, 4-D
(:func:`stylegan_fast.ops.grid_sample`), whose input gradient is differentiable to any order,
which ADA's geometric augment in front of the discriminator needs for R1.

``enabled`` is NVIDIA's module flag (default False; their training loop sets it True). Ours
ignores it: NVIDIA's custom op switches itself off outside the torch versions it was written for
(StyleGAN2-ADA: 1.7 to 1.9), falling back to ``F.grid_sample``, whose double backward older
torch 2.x lacks ("derivative for aten::grid_sampler_2d_backward is not implemented"); ours works
on any torch 2.x, so there is nothing to switch. Written from the public description of NVIDIA's
API; none of its code is used.
"""
from __future__ import annotations

import torch

from ... import ops

enabled = False  # NVIDIA's flag; read by nothing here (see the module docstring)


def grid_sample(input: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """``F.grid_sample(input, grid, mode='bilinear', padding_mode='zeros', align_corners=False)``
    with an input gradient differentiable to any order (NVIDIA's signature)."""
    return ops.grid_sample(input, grid)


__all__ = ["enabled", "grid_sample"]
