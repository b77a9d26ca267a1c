"""Triton kernels for bias_act (math and mask format in ``stylegan_fast/ops/bias_act.py``).

A dense tensor whose bias runs along ``dim`` is, in memory, [outer, C, inner] with inner =
stride(dim). The kernels tile it as a 2-D [rows, K] array, either

* channel in the columns (inner == 1, e.g. channels_last or [N, C]): rows = outer, K = C; or
* channel in the rows (inner > 1, e.g. NCHW): rows = outer * C, K = inner, channel = row % C.

The activation is a constexpr ``ACT`` (its code in ``ACTIVATIONS``), so each launch compiles one
activation's math and no element branches on it. With z = x + b in the accumulator dtype::

    linear z      relu max(z, 0)      lrelu z if z > 0 else alpha z
    tanh tanh(z)  sigmoid 1 / (1 + exp(-z))      elu z if z > 0 else exp(z) - 1
    selu SCALE (z if z > 0 else ALPHA (exp(z) - 1))    swish z sigmoid(z)
    softplus z if z > 20 else log(1 + exp(z))          (PyTorch's, threshold 20)

The piecewise-linear ones (linear, relu, lrelu) are one formula with a runtime slope for z <= 0,
and their backward reads only the forward's mask. The smooth ones' backward (``backward_smooth``)
reads x and b again and evaluates act'(z). Both backward kernels write per-program partial sums
of dz for db, summed afterwards in a fixed order.

The math uses tl.exp only (no tl.log, tl.tanh or libdevice calls): exp(z) - 1 and log(1 + u)
near their zeros come from short series, so float64 keeps full precision, interpreted or compiled.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .. import backends
from .._common import compute_dtype, like
from ..bias_act import ACTIVATIONS, MASK_CLAMPED, MASK_POSITIVE, empty_mask, negative_slope
from ._common import (
    TILE_ELEMENTS,
    accumulator,
    dense,
    num_warps,
    pow2,
    scalar,
    scalar_args,
)

# Activation codes (``ACTIVATIONS[name].code``, checked at the bottom): the kernels' ACT.
_LINEAR, _RELU, _LRELU = tl.constexpr(0), tl.constexpr(1), tl.constexpr(2)  # piecewise linear
_TANH, _SIGMOID, _ELU = tl.constexpr(3), tl.constexpr(4), tl.constexpr(5)
_SELU, _SOFTPLUS, _SWISH = tl.constexpr(6), tl.constexpr(7), tl.constexpr(8)
_SELU_ALPHA = tl.constexpr(1.6732632423543772848170429916717)
_SELU_SCALE = tl.constexpr(1.0507009873554804934193349852946)
_SOFTPLUS_THRESHOLD = tl.constexpr(20.0)


@triton.jit
def _tile(pid, rows, K, row_stride, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr):
    k_blocks = tl.cdiv(K, BLOCK_K)
    r = (pid // k_blocks) * BLOCK_R + tl.arange(0, BLOCK_R)
    k = (pid % k_blocks) * BLOCK_K + tl.arange(0, BLOCK_K)
    offsets = r.to(tl.int64)[:, None] * row_stride + k[None, :]
    return r, k, offsets, (r < rows)[:, None] & (k < K)[None, :]


@triton.jit
def _load_z(x_ptr, b_ptr, r, k, offsets, valid, rows, K, C, CHANNEL_IS_COL: tl.constexpr,
            HAS_BIAS: tl.constexpr, ACC: tl.constexpr):
    """z = x + b[channel] in ACC (0 outside ``valid``)."""
    z = tl.load(x_ptr + offsets, mask=valid, other=0.0).to(ACC)
    if HAS_BIAS:
        if CHANNEL_IS_COL:
            z += tl.load(b_ptr + k, mask=k < K, other=0.0).to(ACC)[None, :]
        else:
            z += tl.load(b_ptr + r % C, mask=r < rows, other=0.0).to(ACC)[:, None]
    return z


@triton.jit
def _store_partials(part_ptr, dz, valid, pid, r, k, rows, K, CHANNEL_IS_COL: tl.constexpr,
                    BLOCK_K: tl.constexpr):
    """This program's partial sums of dz for db: its column sums into row pid // k_blocks of a
    [row blocks, C] array (channel in the columns), or its row sums into column pid % k_blocks of
    a [rows, K blocks] array (channel in the rows)."""
    dz = tl.where(valid, dz, 0.0)
    k_blocks = tl.cdiv(K, BLOCK_K)
    if CHANNEL_IS_COL:
        tl.store(part_ptr + (pid // k_blocks).to(tl.int64) * K + k, tl.sum(dz, axis=0),
                 mask=k < K)
    else:
        tl.store(part_ptr + r.to(tl.int64) * k_blocks + pid % k_blocks, tl.sum(dz, axis=1),
                 mask=r < rows)


@triton.jit
def _sigmoid(z):
    """1 / (1 + exp(-z)), as e / (1 + e) for z < 0 (e = exp(-|z|) never overflows)."""
    e = tl.exp(-tl.abs(z))
    return tl.where(z < 0, e, 1.0) / (1.0 + e)


@triton.jit
def _expm1(z):
    """exp(z) - 1 for z <= 0 (callers pass min(z, 0): no overflow in the unused lanes). For
    |z| < 1/2 the Taylor series z (1 + z/2 (1 + z/3 (1 + ... z/N))), whose first omitted term is
    below 2^-53 |z| for N = 16 (2^-24 for N = 8), instead of exp(z) - 1, which cancels there."""
    N: tl.constexpr = 16 if z.dtype == tl.float64 else 8  # terms
    p = tl.full(z.shape, 1.0, z.dtype)
    for i in tl.static_range(N, 1, -1):
        p = 1.0 + p * z * (1.0 / i)
    return tl.where(z > -0.5, z * p, tl.exp(z) - 1.0)


@triton.jit
def _softplus(z):
    """log(1 + exp(z)) = max(z, 0) + log(1 + u), u = exp(-|z|) in (0, 1], with log(1 + u) =
    2 atanh(w) = 2 (w + w^3/3 + w^5/5 + ...), w = u / (2 + u) <= 1/3: N terms leave a relative
    error below 9^-N / (2N + 1) (2^-53 for N = 16, 2^-24 for N = 8). z itself above 20."""
    N: tl.constexpr = 16 if z.dtype == tl.float64 else 8  # terms
    u = tl.exp(-tl.abs(z))
    w = u / (2.0 + u)
    w2 = w * w
    p = tl.full(z.shape, 1.0 / (2 * N - 1), z.dtype)
    for i in tl.static_range(N - 2, -1, -1):
        p = (1.0 / (2 * i + 1)) + w2 * p
    return tl.where(z > _SOFTPLUS_THRESHOLD, z, tl.maximum(z, 0.0) + 2.0 * w * p)


@triton.jit
def _activation(z, slope, ACT: tl.constexpr):
    """act(z) (see the module docstring); ``slope`` is the piecewise-linear ones' slope for
    z <= 0 (1 linear, 0 relu, alpha lrelu), unused by the smooth ones."""
    if ACT <= _LRELU:
        y = tl.where(z > 0, z, z * slope)
    elif ACT == _TANH:  # sign(z) (1 - e) / (1 + e), e = exp(-2|z|): -m / (2 + m), m = e - 1
        m = _expm1(-2.0 * tl.abs(z))
        y = -m / (2.0 + m)
        y = tl.where(z < 0, -y, y)
    elif ACT == _SIGMOID:
        y = _sigmoid(z)
    elif ACT == _ELU:
        y = tl.where(z > 0, z, _expm1(tl.minimum(z, 0.0)))
    elif ACT == _SELU:
        y = _SELU_SCALE * tl.where(z > 0, z, _SELU_ALPHA * _expm1(tl.minimum(z, 0.0)))
    elif ACT == _SOFTPLUS:
        y = _softplus(z)
    else:
        tl.static_assert(ACT == _SWISH, "unknown activation code")
        y = z * _sigmoid(z)
    return y


@triton.jit
def _smooth_derivative(z, y, ACT: tl.constexpr):
    """act'(z) of a smooth activation, given y = act(z)::

        tanh 1 - y^2     sigmoid y (1 - y)    elu 1 if z > 0 else exp(z)
        selu SCALE if z > 0 else SCALE ALPHA exp(z)    softplus 1 if z > 20 else sigmoid(z)
        swish s (1 + z (1 - s)), s = sigmoid(z)
    """
    if ACT == _TANH:
        d = 1.0 - y * y
    elif ACT == _SIGMOID:
        d = y * (1.0 - y)
    elif ACT == _ELU:
        d = tl.where(z > 0, 1.0, tl.exp(tl.minimum(z, 0.0)))
    elif ACT == _SELU:
        d = tl.where(z > 0, _SELU_SCALE, (_SELU_SCALE * _SELU_ALPHA) * tl.exp(tl.minimum(z, 0.0)))
    elif ACT == _SOFTPLUS:
        d = tl.where(z > _SOFTPLUS_THRESHOLD, 1.0, _sigmoid(z))
    else:
        tl.static_assert(ACT == _SWISH, "backward_smooth: not a smooth activation code")
        s = _sigmoid(z)
        d = s * (1.0 + z * (1.0 - s))
    return d


@triton.jit
def _forward_kernel(
    x_ptr,           # input, dense, viewed as [rows, K] with row stride row_stride
    b_ptr,           # [C] bias (if HAS_BIAS)
    y_ptr,           # out, same layout as x
    mask_ptr,        # out (if WRITE_MASK): uint8, same layout; bit 0: z > 0, bit 1: clamped
    rows, K, row_stride, C,
    slope, slope_lo,  # slope for z <= 0 (linear 1, relu 0, lrelu alpha; else unused): scalar_args
    gain, gain_lo,   # gain after the activation: scalar_args
    clamp, clamp_lo,  # |y| bound (if HAS_CLAMP): scalar_args
    ACT: tl.constexpr,  # activation code (module docstring); bit 0 of the mask unless linear
    CHANNEL_IS_COL: tl.constexpr, HAS_BIAS: tl.constexpr, WRITE_MASK: tl.constexpr,
    HAS_CLAMP: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr, ACC: tl.constexpr,
):
    """y = clamp(act(z) * gain, -clamp, clamp), z = x + b."""
    r, k, offsets, valid = _tile(tl.program_id(0), rows, K, row_stride, BLOCK_R, BLOCK_K)
    slope, gain = scalar(slope, slope_lo, ACC), scalar(gain, gain_lo, ACC)
    clamp = scalar(clamp, clamp_lo, ACC)
    z = _load_z(x_ptr, b_ptr, r, k, offsets, valid, rows, K, C, CHANNEL_IS_COL, HAS_BIAS, ACC)
    y = _activation(z, slope, ACT) * gain
    code = tl.zeros_like(offsets).to(tl.uint8)
    if ACT != _LINEAR:
        code = (z > 0).to(tl.uint8)
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
    """Piecewise-linear act: dx = dy * gain * (1 if z > 0 else slope) * (0 if clamped), from
    the mask's bits."""
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
        _store_partials(part_ptr, dz, valid, pid, r, k, rows, K, CHANNEL_IS_COL, BLOCK_K)


@triton.jit
def _backward_smooth_kernel(
    dy_ptr,          # upstream gradient, dense, same [rows, K] view as x
    x_ptr,           # the forward's input, dense
    b_ptr,           # [C] bias (if HAS_BIAS)
    dx_ptr,          # out, same layout as dy
    part_ptr,        # out (if COMPUTE_DB): [row blocks, C] or [rows, K blocks] partial sums of dx
    rows, K, row_stride, C,
    gain, gain_lo,   # gain after the activation: scalar_args
    clamp, clamp_lo,  # |act(z) * gain| bound (if HAS_CLAMP): scalar_args
    ACT: tl.constexpr,  # smooth activation code (module docstring)
    CHANNEL_IS_COL: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_CLAMP: tl.constexpr,
    COMPUTE_DB: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr, ACC: tl.constexpr,
):
    """Smooth act: dx = dy * gain * act'(z) * (0 if |act(z) * gain| > clamp), z = x + b."""
    pid = tl.program_id(0)
    r, k, offsets, valid = _tile(pid, rows, K, row_stride, BLOCK_R, BLOCK_K)
    gain, clamp = scalar(gain, gain_lo, ACC), scalar(clamp, clamp_lo, ACC)
    z = _load_z(x_ptr, b_ptr, r, k, offsets, valid, rows, K, C, CHANNEL_IS_COL, HAS_BIAS, ACC)
    y = _activation(z, 0.0, ACT)
    dz = tl.load(dy_ptr + offsets, mask=valid, other=0.0).to(ACC) * gain
    dz *= _smooth_derivative(z, y, ACT)
    if HAS_CLAMP:
        dz = tl.where(tl.abs(y * gain) > clamp, 0.0, dz)
    tl.store(dx_ptr + offsets, dz.to(dx_ptr.dtype.element_ty), mask=valid)
    if COMPUTE_DB:
        _store_partials(part_ptr, dz, valid, pid, r, k, rows, K, CHANNEL_IS_COL, BLOCK_K)


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
            ACT=ACTIVATIONS[act].code, HAS_BIAS=b is not None, WRITE_MASK=save_mask,
            HAS_CLAMP=clamp is not None, **geometry.flags)
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

    @staticmethod
    def backward_smooth(dy, x, b, dim, act, gain, clamp, compute_db):
        if not ACTIVATIONS[act].smooth:
            raise ValueError(f"backward_smooth: {act!r} is piecewise linear (use backward)")
        dtype = torch.promote_types(x.dtype, dy.dtype)  # float64 math if either is float64
        ct = torch.float64 if dtype == torch.float64 else torch.float32
        if dy.numel() == 0:
            db = torch.zeros(dy.shape[dim] if compute_db else 0, device=dy.device, dtype=ct)
            return torch.empty_like(dy), db
        xd = dense(x)
        dyd = like(xd, dy, dy.dtype)
        geometry = _Geometry(xd, dim, b is not None or compute_db)
        dx = torch.empty_like(dyd)
        part = torch.empty(geometry.partial_shape() if compute_db else (0,), device=dy.device,
                           dtype=ct)
        _backward_smooth_kernel[geometry.grid](
            dyd, xd, b.contiguous() if b is not None else xd, dx, part,
            *geometry.args, geometry.channels,
            *scalar_args(gain, clamp if clamp is not None else 0.0),
            ACT=ACTIVATIONS[act].code, HAS_BIAS=b is not None, HAS_CLAMP=clamp is not None,
            COMPUTE_DB=compute_db, **{**geometry.flags, "ACC": accumulator(dtype)})
        db = geometry.reduce_partials(part) if compute_db else dy.new_empty(0, dtype=ct)
        return like(dy, dx), db


assert (MASK_POSITIVE, MASK_CLAMPED) == (1, 2), "the kernels hard-code the mask bits"
assert [ACTIVATIONS[name].code for name in (
    "linear", "relu", "lrelu", "tanh", "sigmoid", "elu", "selu", "softplus", "swish")
] == list(range(9)), "the kernels hard-code the activation codes"
backends.register_impl("bias_act", "triton", BiasActTriton)
