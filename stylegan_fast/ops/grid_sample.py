"""grid_sample with an input gradient that is differentiable to any order (ADA's augment + R1).

``grid_sample(input, grid)`` is ``F.grid_sample(input, grid, mode='bilinear',
padding_mode='zeros', align_corners=False)`` for input [N, C, H, W] and grid [N, OH, OW, 2]
(x, y in [-1, 1] span the input's pixel *edges*; samples outside read zeros). Write S(grid) for
the linear map it applies to the input, y = S(grid) x. Then::

    dx    = S(grid)^T dy          aten.grid_sampler_2d_backward, output_mask [True, False]
    dgrid = G(dy, x, grid)        aten.grid_sampler_2d_backward, output_mask [False, True]

Without ``create_graph`` (a first-order step) one ``grid_sampler_2d_backward`` call returns
both, each only when asked for (the kernels ``F.grid_sample``'s own backward runs). With
``create_graph`` dx is this module's :class:`_GridSampleInputGrad`, linear in dy, whose backward
for an incoming gradient g (shaped like x) is, from <S^T dy, g> = <dy, S g>::

    d/d dy   = S(grid) g = grid_sample(g, grid)           this same op: any order again
    d/d grid = G(dy, g, grid)                             (the grid gradient of grid_sample(g,
                                                           grid) for output gradient dy)
    d/d x    = 0                                          (dx does not depend on x's values)

so R1 through an ADA augment (``autograd.grad(D(grid_sample(x, grid)).sum(), x,
create_graph=True)``, then a backward of the penalty) costs one more grid_sample per pass.
dgrid is recorded as PyTorch's own ``grid_sampler_2d_backward``: its derivatives (the second
order w.r.t. the grid) are PyTorch's, which recent torch implements (a composite of gathers and
scatters) and older torch refuses ("derivative for aten::grid_sampler_2d_backward is not
implemented").

NVIDIA's ``grid_sample_gradfix`` had the same d/d dy; it returned no d/d grid (and asserted that the
grid needs none) in its double backward and dropped the grid gradient's part there. This op gives
the exact d/d grid of dx and leaves dgrid's derivatives to PyTorch: where NVIDIA's ran it agrees,
and where NVIDIA's stopped (a grid that requires grad) this one is right.

Why not PyTorch's own double backward: torch had none from 1.9 until pytorch/pytorch#177487
(merged April 2026), which is why StyleGAN2-ADA's augment with R1 fails on torch 2.x releases
before it ("derivative for aten::grid_sampler_2d_backward is not implemented"). torch 2.14 (the
version these notes were checked on) has one; for R1's case (a grid that needs no gradient) it
runs the same ``grid_sampler_2d`` as this op, with which it agrees (tests/ops/
test_grid_sample.py); its grid terms are a composite of gathers, scatters and stacks of
[N, OH, OW]-sized temporaries.

Input checks: both floating tensors of one dtype on one device, input 4-D, grid 4-D with last
dimension 2 and input's batch size (a ValueError or TypeError naming the argument). Under
``torch.autocast`` the two are promoted to the wider dtype, as autocast does for
``F.grid_sample``. Without a graph to build (no grad mode, or neither tensor requiring grad) it is
``F.grid_sample`` itself. Works under ``torch.compile`` (first order: the one-call backward).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._common import FLOAT_DTYPES

_BILINEAR, _ZEROS, _ALIGN_CORNERS = 0, 0, False  # aten's interpolation / padding mode codes


def _grid_sample(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _aten_backward(dy, x, grid, need_x: bool, need_grid: bool):
    """(dx, dgrid) of y = grid_sample(x, grid) for output gradient dy, None where not asked."""
    dx, dgrid = torch.ops.aten.grid_sampler_2d_backward(
        dy, x, grid, _BILINEAR, _ZEROS, _ALIGN_CORNERS, [need_x, need_grid])
    return (dx if need_x else None), (dgrid if need_grid else None)


class _GridSample(torch.autograd.Function):
    """y = grid_sample(x, grid) = S(grid) x.

    backward(dy): dx = S(grid)^T dy (:class:`_GridSampleInputGrad` when a graph is built, so that
    dx is differentiable again), dgrid = G(dy, x, grid) (PyTorch's ``grid_sampler_2d_backward``;
    once differentiable, or as often as this torch's own derivative of it allows)."""

    @staticmethod
    def forward(ctx, x, grid):
        ctx.save_for_backward(x, grid)  # what F.grid_sample's own autograd saves
        return _grid_sample(x, grid)

    @staticmethod
    def backward(ctx, dy):
        x, grid = ctx.saved_tensors
        need_x, need_grid = ctx.needs_input_grad[:2]
        if not torch.is_grad_enabled():  # first order: one kernel for both
            return _aten_backward(dy, x, grid, need_x, need_grid)
        dx = dgrid = None
        if need_x:
            dx = _GridSampleInputGrad.apply(dy, x.detach(), grid)
        if need_grid:
            dgrid = _aten_backward(dy, x, grid, False, True)[1]
        return dx, dgrid


class _GridSampleInputGrad(torch.autograd.Function):
    """dx = S(grid)^T dy, the input gradient of grid_sample; ``x_like`` gives only its shape,
    dtype and device (no gradient flows to it).

    backward(g): d/d dy = S(grid) g = grid_sample(g, grid) (:class:`_GridSample`: any order);
    d/d grid = G(dy, g, grid), from <S(grid)^T dy, g> = <dy, S(grid) g>."""

    @staticmethod
    def forward(ctx, dy, x_like, grid):
        need_grid = ctx.needs_input_grad[2]
        ctx.save_for_backward(dy if need_grid else None, grid)
        return _aten_backward(dy, x_like, grid, True, False)[0]

    @staticmethod
    def backward(ctx, g):
        dy, grid = ctx.saved_tensors
        d_dy = d_grid = None
        if ctx.needs_input_grad[0]:
            d_dy = _GridSample.apply(g, grid)
        if ctx.needs_input_grad[2]:
            d_grid = _aten_backward(dy, g, grid, False, True)[1]
        return d_dy, None, d_grid


def _autocast(x: torch.Tensor, grid: torch.Tensor):
    """x and grid promoted to the wider dtype under torch.autocast (as autocast promotes
    ``F.grid_sample``'s operands), unchanged outside it."""
    device_type = x.device.type
    if (x.dtype is grid.dtype or not torch.amp.is_autocast_available(device_type)
            or not torch.is_autocast_enabled(device_type)):
        return x, grid
    dtype = torch.promote_types(x.dtype, grid.dtype)
    return x.to(dtype), grid.to(dtype)


def _check(x, grid) -> None:
    for name, t in (("input", x), ("grid", grid)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"grid_sample: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype not in FLOAT_DTYPES:
            raise TypeError(f"grid_sample: {name} must be float16, bfloat16, float32 or "
                            f"float64, got {t.dtype}")
    if x.dim() != 4:
        raise ValueError(f"grid_sample: input must be 4-D [N, C, H, W], got shape "
                         f"{tuple(x.shape)}")
    if grid.dim() != 4 or grid.shape[3] != 2:
        raise ValueError(f"grid_sample: grid must be 4-D [N, OH, OW, 2] (x, y per output "
                         f"pixel), got shape {tuple(grid.shape)}")
    if grid.shape[0] != x.shape[0]:
        raise ValueError(f"grid_sample: grid has batch size {grid.shape[0]} but input has "
                         f"{x.shape[0]}")
    if grid.device != x.device:
        raise ValueError(f"grid_sample: grid is on {grid.device} but input is on {x.device}")


def grid_sample(input: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """``F.grid_sample(input, grid, mode='bilinear', padding_mode='zeros',
    align_corners=False)`` with the derivatives of the module docstring. input [N, C, H, W],
    grid [N, OH, OW, 2] of input's dtype (x, y in [-1, 1]); returns [N, C, OH, OW]."""
    _check(input, grid)
    input, grid = _autocast(input, grid)
    if input.dtype is not grid.dtype:
        raise TypeError(f"grid_sample: grid has dtype {grid.dtype} but input has {input.dtype}; "
                        f"pass both in one dtype (torch.autocast promotes them for you)")
    if not (torch.is_grad_enabled() and (input.requires_grad or grid.requires_grad)):
        return _grid_sample(input, grid)  # no graph: the autograd.Function's cost saved
    return _GridSample.apply(input, grid)


__all__ = ["grid_sample"]
