"""Triton kernels for bias_act (math and mask format in ``stylegan_fast/ops/bias_act.py``).

A dense tensor whose bias runs along ``dim`` is, in memory, [outer, C, inner] with inner =
stride(dim). The kernels tile it as a 2-D [rows, K] array, either

* channel in the columns (inner == 1, e.g. channels_last or [N, C]): rows = outer, K = C; or
* channel in the rows (inner > 1, e.g. NCHW): rows = outer * C, K = inner, channel = row % C.

The backward writes per-program partial sums of dz for db, summed afterwards in a fixed order.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .. import backends
from .._common import compute_dtype, like
from ..bias_act import MASK_CLAMPED, MASK_POSITIVE, empty_mask, negative_slope
from ._common import (
    TILE_ELEMENTS,
    accumulator,
    dense,
    num_warps,
    pow2,
    scalar,
    scalar_args,
)


@triton.jit
def _tile(pid, rows, K, row_stride, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr):
    k_blocks = tl.cdiv(K, BLOCK_K)
    r = (pid // k_blocks) * BLOCK_R + tl.arange(0, BLOCK_R)
    k = (pid % k_blocks) * BLOCK_K + tl.arange(0, BLOCK_K)
    offsets = r.to(tl.int64)[:, None] * row_stride + k[None, :]
    return r, k, offsets, (r < rows)[:, None] & (k < K)[None, :]


@triton.jit
def _forward_kernel(
    x_ptr,           # input, dense, viewed as [rows, K] with row stride row_stride
    b_ptr,           # [C] bias (if HAS_BIAS)
    y_ptr,           # out, same layout as x
    mask_ptr,        # out (if WRITE_MASK): uint8, same layout; bit 0: z > 0, bit 1: clamped
    rows, K, row_stride, C,
    slope, slope_lo,  # act's slope for z <= 0 (1 linear, 0 relu, alpha lrelu): scalar_args
    gain, gain_lo,   # gain after the activation: scalar_args
    clamp, clamp_lo,  # |y| bound (if HAS_CLAMP): scalar_args
    CHANNEL_IS_COL: tl.constexpr, HAS_BIAS: tl.constexpr, WRITE_MASK: tl.constexpr,
    SIGN_BIT: tl.constexpr, HAS_CLAMP: tl.constexpr, BLOCK_R: tl.constexpr,
    BLOCK_K: tl.constexpr, ACC: tl.constexpr,
):
    r, k, offsets, valid = _tile(tl.program_id(0), rows, K, row_stride, BLOCK_R, BLOCK_K)
    slope, gain = scalar(slope, slope_lo, ACC), scalar(gain, gain_lo, ACC)
    clamp = scalar(clamp, clamp_lo, ACC)
    z = tl.load(x_ptr + offsets, mask=valid, other=0.0).to(ACC)
    if HAS_BIAS:
        if CHANNEL_IS_COL:
            z += tl.load(b_ptr + k, mask=k < K, other=0.0).to(ACC)[None, :]
        else:
            z += tl.load(b_ptr + r % C, mask=r < rows, other=0.0).to(ACC)[:, None]
    positive = z > 0
    y = tl.where(positive, z, z * slope) * gain
    code = tl.zeros_like(offsets).to(tl.uint8)
    if SIGN_BIT:
        code = positive.to(tl.uint8)
    if HAS_CLAMP:
        code = code | ((tl.abs(y) > clamp).to(tl.uint8) * 2)
        y = tl.minimum(tl.maximum(y, -clamp), clamp)
    tl.store(y_ptr + offsets, y.to(y_ptr.dtype.element_ty), mask=valid)
    if WRITE_MASK:
        tl.store(mask_ptr + offsets, code, mask=valid)


@triton.jit
def _backward_kernel(
    dy_ptr,          # upstream gradient, dense, same [rows, K] view as the mask
    mask_ptr,        # uint8 mask from the forward (if HAS_MASK)
    dx_ptr,          # out, same layout as dy
    part_ptr,        # out (if COMPUTE_DB): [row blocks, C] or [rows, K blocks] partial sums of dx
    rows, K, row_stride,
    slope, slope_lo, gain, gain_lo,  # as in _forward_kernel: scalar_args
    CHANNEL_IS_COL: tl.constexpr, HAS_MASK: tl.constexpr, HAS_CLAMP: tl.constexpr,
    COMPUTE_DB: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr, ACC: tl.constexpr,
):
    pid = tl.program_id(0)
    r, k, offsets, valid = _tile(pid, rows, K, row_stride, BLOCK_R, BLOCK_K)
    slope, gain = scalar(slope, slope_lo, ACC), scalar(gain, gain_lo, ACC)
    dz = tl.load(dy_ptr + offsets, mask=valid, other=0.0).to(ACC) * gain
    if HAS_MASK:
        code = tl.load(mask_ptr + offsets, mask=valid, other=0)
        dz = tl.where((code & 1) != 0, dz, dz * slope)
        if HAS_CLAMP:
            dz = tl.where((code & 2) != 0, 0.0, dz)
    tl.store(dx_ptr + offsets, dz.to(dx_ptr.dtype.element_ty), mask=valid)
    if COMPUTE_DB:
        dz = tl.where(valid, dz, 0.0)
        k_blocks = tl.cdiv(K, BLOCK_K)
        if CHANNEL_IS_COL:
            tl.store(part_ptr + (pid // k_blocks).to(tl.int64) * K + k, tl.sum(dz, axis=0),
                     mask=k < K)
        else:
            tl.store(part_ptr + r.to(tl.int64) * k_blocks + pid % k_blocks, tl.sum(dz, axis=1),
                     mask=r < rows)


class _Geometry:
    """The [rows, K] view of a dense tensor t whose channel runs along ``dim``."""

    def __init__(self, t: torch.Tensor, dim: int, has_bias: bool):
        numel = t.numel()
        self.channels = t.shape[dim] if has_bias else 1
        inner = t.stride(dim) if self.channels > 1 else numel
        self.channel_is_col = inner == 1
        if self.channel_is_col:
            self.rows, self.k = numel // self.channels, self.channels
            block_k = min(pow2(self.k), 256, TILE_ELEMENTS)
        else:
            self.rows, self.k = numel // inner, inner
            block_k = min(pow2(self.k), 1024, TILE_ELEMENTS)
        self.block_k = block_k
        self.block_r = min(pow2(self.rows), max(1, TILE_ELEMENTS // block_k))
        self.row_blocks = triton.cdiv(self.rows, self.block_r)
        self.k_blocks = triton.cdiv(self.k, self.block_k)
        self.grid = (self.row_blocks * self.k_blocks,)
        self.args = (self.rows, self.k, self.k)  # rows, K, row_stride (= K: dense)
        self.flags = dict(CHANNEL_IS_COL=self.channel_is_col, BLOCK_R=self.block_r,
                          BLOCK_K=block_k, ACC=accumulator(t.dtype),
                          num_warps=num_warps(self.block_r * block_k))

    def partial_shape(self):
        if self.channel_is_col:
            return (self.row_blocks, self.channels)
        return (self.rows, self.k_blocks)

    def reduce_partials(self, part: torch.Tensor) -> torch.Tensor:
        if self.channel_is_col:
            return part.sum(0)
        return part.sum(1).view(-1, self.channels).sum(0)


class BiasActTriton:
    @staticmethod
    def forward(x, b, dim, act, alpha, gain, clamp, save_mask):
        if x.numel() == 0:
            mask = torch.empty_like(x, dtype=torch.uint8) if save_mask else empty_mask(x)
            return torch.empty_like(x), mask
        xd = dense(x)
        geometry = _Geometry(xd, dim, b is not None)
        y = torch.empty_like(xd)
        mask = torch.empty_like(xd, dtype=torch.uint8) if save_mask else empty_mask(x)
        _forward_kernel[geometry.grid](
            xd, b.contiguous() if b is not None else xd, y, mask if save_mask else y,
            *geometry.args, geometry.channels,
            *scalar_args(negative_slope(act, alpha), gain, clamp if clamp is not None else 0.0),
            HAS_BIAS=b is not None, WRITE_MASK=save_mask,
            SIGN_BIT=act != "linear", HAS_CLAMP=clamp is not None, **geometry.flags)
        return like(x, y), (like(x, mask, torch.uint8) if save_mask else mask)

    @staticmethod
    def backward(dy, mask, dim, act, alpha, gain, clamp, compute_db):
        ct = compute_dtype(dy)
        if dy.numel() == 0:
            db = torch.zeros(dy.shape[dim] if compute_db else 0, device=dy.device, dtype=ct)
            return torch.empty_like(dy), db
        has_mask = mask.numel() > 0
        dyd = like(mask, dy, dy.dtype) if has_mask else dense(dy)
        geometry = _Geometry(dyd, dim, compute_db)
        dx = torch.empty_like(dyd)
        part = torch.empty(geometry.partial_shape() if compute_db else (0,), device=dy.device,
                           dtype=ct)
        _backward_kernel[geometry.grid](
            dyd, mask if has_mask else dyd, dx, part, *geometry.args,
            *scalar_args(negative_slope(act, alpha), gain), HAS_MASK=has_mask,
            HAS_CLAMP=clamp is not None, COMPUTE_DB=compute_db,
            **geometry.flags)
        db = geometry.reduce_partials(part) if compute_db else dy.new_empty(0, dtype=ct)
        return like(dy, dx), db


assert (MASK_POSITIVE, MASK_CLAMPED) == (1, 2), "the kernels hard-code the mask bits"
backends.register_impl("bias_act", "triton", BiasActTriton)
