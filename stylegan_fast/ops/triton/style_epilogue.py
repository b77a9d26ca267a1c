"""Triton kernels for style_epilogue (and adain, its special case without noise/bias/activation).

The math is in ``stylegan_fast/ops/style_epilogue.py``. Work is split over programs that each own
a tile of BLOCK_C planes (n, c) and one of SPLITS ranges of the H*W pixels:

forward   stats:  per (plane, split) count, mean and M2 of a = lrelu(x + noise*s + bias) * gain
                  (chunk-wise two-pass, chunks merged with Chan's formula: never E[a^2] - E[a]^2)
          apply:  merge the splits' partials in a fixed order -> mean, rstd; y = modulate(a)
backward  stats:  per (plane, split) S1 = sum dy, S2 = sum dy * xhat
          input:  merge -> dstyle_bias = S1, dstyle_scale = S2; dx = dt; per (plane, split)
                  partial sums of dt and dt * noise for dbias / dnoise_strength
When one tile covers a whole plane (SPLITS == 1, BLOCK_HW >= H*W) the stats are computed in the
apply/input kernel itself: one read of x (and dy), one write of y (dx). Every partial is reduced
in a fixed order (no atomics), so results are deterministic.

Larger planes (NCHW: over WHOLE_PLANE_ELEMENTS = 16K pixels; channels_last: over 4096 / C
pixels, C rounded up to a power of two) take two sweeps, reading x twice in forward and x and dy
twice in backward: 1.50x and 1.67x the op's minimum traffic (``stylegan-fast bench --traffic``).
That is the ceiling of this Triton design; DESIGN.md section 6 has the way past it on Hopper.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .. import backends
from .._common import compute_dtype, like
from ..noise_inject import noise_grad
from ..style_epilogue import Reference as EpilogueReference
from ._common import (
    TARGET_PROGRAMS,
    accumulator,
    check_noise_size,
    noise_at,
    num_warps,
    plane_layout,
    plane_tiles,
    scalar,
    scalar_args,
    seed_value,
)


@triton.jit
def _pixel_range(pid, HW, hw_per_split, SPLITS: tl.constexpr):
    """Program pid's split and its pixel range [start, end) of the H*W plane."""
    split = pid % SPLITS
    start = split * hw_per_split
    return split, start, tl.minimum(start + hw_per_split, HW)


@triton.jit
def _tile_offsets(pid, C, HW, s_n, s_c, s_hw, hw0, SPLITS: tl.constexpr,
                  BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr):
    """Program pid's plane tile: (n, channels [BLOCK_C], pixels [BLOCK_HW], offsets, mask)."""
    c_blocks = tl.cdiv(C, BLOCK_C)
    plane_block = pid // SPLITS
    n = plane_block // c_blocks
    c = (plane_block % c_blocks) * BLOCK_C + tl.arange(0, BLOCK_C)
    hw = hw0 + tl.arange(0, BLOCK_HW)
    offsets = (n.to(tl.int64) * s_n + c.to(tl.int64)[:, None] * s_c
               + hw.to(tl.int64)[None, :] * s_hw)
    return n, c, hw, offsets


@triton.jit
def _pre_activation(x_ptr, bias_ptr, strength_ptr, noise_ptr, seed, noise_s_n, n, c, hw, offsets,
                    valid, C, HW, alpha, gain, HAS_BIAS: tl.constexpr, HAS_NOISE: tl.constexpr,
                    NOISE_FROM_SEED: tl.constexpr, HAS_ACT: tl.constexpr, ACC: tl.constexpr):
    """(t, a, noise) of a tile: t = x + noise * strength + bias, a = lrelu(t, alpha) * gain."""
    t = tl.load(x_ptr + offsets, mask=valid, other=0.0).to(ACC)
    noise = tl.zeros_like(hw).to(ACC)
    if HAS_NOISE:
        if NOISE_FROM_SEED:
            noise = noise_at(seed, n, hw, HW).to(ACC)
        else:
            noise = tl.load(noise_ptr + n * noise_s_n + hw, mask=hw < HW, other=0.0).to(ACC)
        strength = tl.load(strength_ptr + c, mask=c < C, other=0.0).to(ACC)
        t += noise[None, :] * strength[:, None]
    if HAS_BIAS:
        t += tl.load(bias_ptr + c, mask=c < C, other=0.0).to(ACC)[:, None]
    a = t
    if HAS_ACT:
        a = tl.where(t > 0, t, t * alpha) * gain
    return t, a, noise


@triton.jit
def _chunk_moments(a, valid, count):
    """Per-row mean and M2 (sum of squared deviations) of the valid part of a chunk."""
    mean = tl.sum(tl.where(valid, a, 0.0), axis=1) / count
    deviation = tl.where(valid, a - mean[:, None], 0.0)
    return mean, tl.sum(deviation * deviation, axis=1)


@triton.jit
def _merge_moments(count, mean, m2, count_b, mean_b, m2_b):
    """Chan et al.'s merge of two (count, mean, M2) summaries."""
    total = count + count_b
    delta = mean_b - mean
    weight = tl.where(total > 0, count_b / tl.maximum(total, 1.0), 0.0)
    return total, mean + delta * weight, m2 + m2_b + delta * delta * count * weight


@triton.jit
def _stats_kernel(
    x_ptr,           # [N, C, H, W] input (NCHW or channels_last, strides s_*)
    bias_ptr,        # [C] bias (if HAS_BIAS)
    strength_ptr,    # [C] noise strength (if HAS_NOISE)
    noise_ptr,       # [N or 1, 1, H, W] contiguous noise (if HAS_NOISE and not NOISE_FROM_SEED)
    part_ptr,        # [3, N*C, SPLITS] out: count, mean, M2 of a per plane and pixel range
    seed, noise_s_n, C, HW, s_n, s_c, s_hw, hw_per_split, part_stride,
    alpha, alpha_lo, gain, gain_lo,  # lrelu slope and gain: scalar_args
    HAS_BIAS: tl.constexpr, HAS_NOISE: tl.constexpr, NOISE_FROM_SEED: tl.constexpr,
    HAS_ACT: tl.constexpr, SPLITS: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr,
    ACC: tl.constexpr,
):
    pid = tl.program_id(0)
    alpha, gain = scalar(alpha, alpha_lo, ACC), scalar(gain, gain_lo, ACC)
    split, start, end = _pixel_range(pid, HW, hw_per_split, SPLITS)
    count = tl.zeros([BLOCK_C], dtype=ACC)
    mean = tl.zeros([BLOCK_C], dtype=ACC)
    m2 = tl.zeros([BLOCK_C], dtype=ACC)
    for hw0 in range(start, end, BLOCK_HW):
        n, c, hw, offsets = _tile_offsets(pid, C, HW, s_n, s_c, s_hw, hw0, SPLITS, BLOCK_C,
                                          BLOCK_HW)
        valid = (c < C)[:, None] & (hw < end)[None, :]
        t, a, noise = _pre_activation(x_ptr, bias_ptr, strength_ptr, noise_ptr, seed, noise_s_n,
                                      n, c, hw, offsets, valid, C, HW, alpha, gain, HAS_BIAS,
                                      HAS_NOISE, NOISE_FROM_SEED, HAS_ACT, ACC)
        chunk = tl.zeros_like(count) + tl.minimum(end - hw0, BLOCK_HW)
        chunk_mean, chunk_m2 = _chunk_moments(a, valid, chunk)
        count, mean, m2 = _merge_moments(count, mean, m2, chunk, chunk_mean, chunk_m2)
    n, c, hw, offsets = _tile_offsets(pid, C, HW, s_n, s_c, s_hw, 0, SPLITS, BLOCK_C, BLOCK_HW)
    rows = (n * C + c).to(tl.int64) * SPLITS + split
    tl.store(part_ptr + rows, count, mask=c < C)
    tl.store(part_ptr + part_stride + rows, mean, mask=c < C)
    tl.store(part_ptr + 2 * part_stride + rows, m2, mask=c < C)


@triton.jit
def _merged_stats(part_ptr, n, c, C, part_stride, SPLITS: tl.constexpr, BLOCK_C: tl.constexpr,
                  ACC: tl.constexpr):
    """Merge the SPLITS partial (count, mean, M2) of planes (n, c) in split order."""
    count = tl.zeros([BLOCK_C], dtype=ACC)
    mean = tl.zeros([BLOCK_C], dtype=ACC)
    m2 = tl.zeros([BLOCK_C], dtype=ACC)
    rows = (n * C + c).to(tl.int64) * SPLITS
    for s in range(SPLITS):
        count, mean, m2 = _merge_moments(
            count, mean, m2, tl.load(part_ptr + rows + s, mask=c < C, other=0.0),
            tl.load(part_ptr + part_stride + rows + s, mask=c < C, other=0.0),
            tl.load(part_ptr + 2 * part_stride + rows + s, mask=c < C, other=0.0))
    return mean, m2


@triton.jit
def _apply_kernel(
    x_ptr,           # [N, C, H, W] input (strides s_*)
    bias_ptr, strength_ptr, noise_ptr,   # as in _stats_kernel
    scale_ptr,       # [N, C] contiguous style_scale
    shift_ptr,       # [N, C] contiguous style_bias
    part_ptr,        # [3, N*C, SPLITS] partial moments from _stats_kernel (unless SINGLE_PASS)
    y_ptr,           # [N, C, H, W] out, same strides as x
    mean_ptr,        # [N, C] out: mean of a
    rstd_ptr,        # [N, C] out: 1 / sqrt(var(a) + eps); 0 for one-pixel planes
    seed, noise_s_n, C, HW, s_n, s_c, s_hw, hw_per_split, part_stride,
    alpha, alpha_lo, gain, gain_lo, eps, eps_lo, scale_offset, scale_offset_lo,  # scalar_args
    HAS_BIAS: tl.constexpr, HAS_NOISE: tl.constexpr, NOISE_FROM_SEED: tl.constexpr,
    HAS_ACT: tl.constexpr, SINGLE_PASS: tl.constexpr, SPLITS: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr, ACC: tl.constexpr,
):
    pid = tl.program_id(0)
    alpha, gain = scalar(alpha, alpha_lo, ACC), scalar(gain, gain_lo, ACC)
    eps, scale_offset = scalar(eps, eps_lo, ACC), scalar(scale_offset, scale_offset_lo, ACC)
    split, start, end = _pixel_range(pid, HW, hw_per_split, SPLITS)
    n, c, hw, offsets = _tile_offsets(pid, C, HW, s_n, s_c, s_hw, start, SPLITS, BLOCK_C,
                                      BLOCK_HW)
    if SINGLE_PASS:
        valid = (c < C)[:, None] & (hw < HW)[None, :]
        t, a, noise = _pre_activation(x_ptr, bias_ptr, strength_ptr, noise_ptr, seed, noise_s_n,
                                      n, c, hw, offsets, valid, C, HW, alpha, gain, HAS_BIAS,
                                      HAS_NOISE, NOISE_FROM_SEED, HAS_ACT, ACC)
        mean, m2 = _chunk_moments(a, valid, tl.zeros([BLOCK_C], dtype=ACC) + HW)
    else:
        mean, m2 = _merged_stats(part_ptr, n, c, C, part_stride, SPLITS, BLOCK_C, ACC)
    # A one-pixel plane's a - mean is identically 0: rstd = 0 keeps its xhat and gradient exactly
    # 0 (1 / sqrt(eps) would multiply the rounding of a - mean and of dy - mean(dy) by ~1e4).
    rstd = tl.where(HW > 1, 1.0 / tl.sqrt(m2 / HW + eps), 0.0)
    stat_offsets = n * C + c
    if split == 0:
        tl.store(mean_ptr + stat_offsets, mean, mask=c < C)
        tl.store(rstd_ptr + stat_offsets, rstd, mask=c < C)
    # (a - mean) * scale, not a * scale - mean * scale: rstd can be 1/sqrt(eps) (flat planes)
    scale = (tl.load(scale_ptr + stat_offsets, mask=c < C, other=0.0).to(ACC) + scale_offset) * rstd
    shift = tl.load(shift_ptr + stat_offsets, mask=c < C, other=0.0).to(ACC)
    if SINGLE_PASS:
        y = (a - mean[:, None]) * scale[:, None] + shift[:, None]
        tl.store(y_ptr + offsets, y.to(y_ptr.dtype.element_ty), mask=valid)
    else:
        for hw0 in range(start, end, BLOCK_HW):
            n, c, hw, offsets = _tile_offsets(pid, C, HW, s_n, s_c, s_hw, hw0, SPLITS, BLOCK_C,
                                              BLOCK_HW)
            valid = (c < C)[:, None] & (hw < end)[None, :]
            t, a, noise = _pre_activation(x_ptr, bias_ptr, strength_ptr, noise_ptr, seed,
                                          noise_s_n, n, c, hw, offsets, valid, C, HW, alpha, gain,
                                          HAS_BIAS, HAS_NOISE, NOISE_FROM_SEED, HAS_ACT, ACC)
            y = (a - mean[:, None]) * scale[:, None] + shift[:, None]
            tl.store(y_ptr + offsets, y.to(y_ptr.dtype.element_ty), mask=valid)


@triton.jit
def _grad_stats_kernel(
    x_ptr,           # [N, C, H, W] forward input (strides s_*)
    dy_ptr,          # [N, C, H, W] upstream gradient, same strides as x
    bias_ptr, strength_ptr, noise_ptr,   # as in _stats_kernel
    mean_ptr,        # [N, C] forward mean of a
    rstd_ptr,        # [N, C] forward rstd of a
    part_ptr,        # [2, N*C, SPLITS] out: S1 = sum dy, S2 = sum dy * xhat per plane and range
    seed, noise_s_n, C, HW, s_n, s_c, s_hw, hw_per_split, part_stride,
    alpha, alpha_lo, gain, gain_lo,  # lrelu slope and gain: scalar_args
    HAS_BIAS: tl.constexpr, HAS_NOISE: tl.constexpr, NOISE_FROM_SEED: tl.constexpr,
    HAS_ACT: tl.constexpr, SPLITS: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr,
    ACC: tl.constexpr,
):
    pid = tl.program_id(0)
    alpha, gain = scalar(alpha, alpha_lo, ACC), scalar(gain, gain_lo, ACC)
    split, start, end = _pixel_range(pid, HW, hw_per_split, SPLITS)
    n, c, hw, offsets = _tile_offsets(pid, C, HW, s_n, s_c, s_hw, start, SPLITS, BLOCK_C,
                                      BLOCK_HW)
    mean = tl.load(mean_ptr + n * C + c, mask=c < C, other=0.0)
    rstd = tl.load(rstd_ptr + n * C + c, mask=c < C, other=0.0)
    sum_dy = tl.zeros([BLOCK_C], dtype=ACC)
    sum_dy_xhat = tl.zeros([BLOCK_C], dtype=ACC)
    for hw0 in range(start, end, BLOCK_HW):
        n, c, hw, offsets = _tile_offsets(pid, C, HW, s_n, s_c, s_hw, hw0, SPLITS, BLOCK_C,
                                          BLOCK_HW)
        valid = (c < C)[:, None] & (hw < end)[None, :]
        t, a, noise = _pre_activation(x_ptr, bias_ptr, strength_ptr, noise_ptr, seed, noise_s_n,
                                      n, c, hw, offsets, valid, C, HW, alpha, gain, HAS_BIAS,
                                      HAS_NOISE, NOISE_FROM_SEED, HAS_ACT, ACC)
        dy = tl.load(dy_ptr + offsets, mask=valid, other=0.0).to(ACC)
        sum_dy += tl.sum(dy, axis=1)
        sum_dy_xhat += tl.sum(dy * (a - mean[:, None]), axis=1) * rstd
    rows = (n * C + c).to(tl.int64) * SPLITS + split
    tl.store(part_ptr + rows, sum_dy, mask=c < C)
    tl.store(part_ptr + part_stride + rows, sum_dy_xhat, mask=c < C)


@triton.jit
def _input_grad(t, a, noise, dy, valid, dx_ptr, offsets, alpha, gain, mean, rstd, scale, mean_dy,
                mean_dy_xhat, HAS_ACT: tl.constexpr):
    """Write dx = dt of one tile whose t, a, noise and dy are loaded; return its per-channel sums
    of dt and dt * noise. da = rstd * scale * (dy - E[dy] - xhat * E[dy * xhat])."""
    xhat = (a - mean[:, None]) * rstd[:, None]
    dt = (rstd * scale)[:, None] * (dy - mean_dy[:, None] - xhat * mean_dy_xhat[:, None])
    if HAS_ACT:
        dt = tl.where(t > 0, dt, dt * alpha) * gain
    dt = tl.where(valid, dt, 0.0)
    tl.store(dx_ptr + offsets, dt.to(dx_ptr.dtype.element_ty), mask=valid)
    return tl.sum(dt, axis=1), tl.sum(dt * noise[None, :], axis=1)


@triton.jit
def _grad_input_kernel(
    x_ptr, dy_ptr,   # [N, C, H, W] forward input and upstream gradient (strides s_*)
    bias_ptr, strength_ptr, noise_ptr,   # as in _stats_kernel
    scale_ptr,       # [N, C] contiguous style_scale
    mean_ptr, rstd_ptr,   # [N, C] forward statistics of a
    part_ptr,        # [2, N*C, SPLITS] S1, S2 partials from _grad_stats_kernel (unless SINGLE_PASS)
    dx_ptr,          # [N, C, H, W] out, same strides as x
    dshift_ptr,      # [N, C] out: dstyle_bias = S1
    dscale_ptr,      # [N, C] out: dstyle_scale = S2
    channel_part_ptr,  # [2, N*C, SPLITS] out: sums of dt and dt * noise per plane and range
    seed, noise_s_n, C, HW, s_n, s_c, s_hw, hw_per_split, part_stride,
    alpha, alpha_lo, gain, gain_lo, scale_offset, scale_offset_lo,  # scalar_args
    HAS_BIAS: tl.constexpr, HAS_NOISE: tl.constexpr, NOISE_FROM_SEED: tl.constexpr,
    HAS_ACT: tl.constexpr, SINGLE_PASS: tl.constexpr, SPLITS: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr, ACC: tl.constexpr,
):
    pid = tl.program_id(0)
    alpha, gain = scalar(alpha, alpha_lo, ACC), scalar(gain, gain_lo, ACC)
    scale_offset = scalar(scale_offset, scale_offset_lo, ACC)
    split, start, end = _pixel_range(pid, HW, hw_per_split, SPLITS)
    n, c, hw, offsets = _tile_offsets(pid, C, HW, s_n, s_c, s_hw, start, SPLITS, BLOCK_C,
                                      BLOCK_HW)
    stat_offsets = n * C + c
    mean = tl.load(mean_ptr + stat_offsets, mask=c < C, other=0.0)
    rstd = tl.load(rstd_ptr + stat_offsets, mask=c < C, other=0.0)
    scale = tl.load(scale_ptr + stat_offsets, mask=c < C, other=0.0).to(ACC) + scale_offset
    rows = (n * C + c).to(tl.int64) * SPLITS
    if SINGLE_PASS:
        valid = (c < C)[:, None] & (hw < HW)[None, :]
        t, a, noise = _pre_activation(x_ptr, bias_ptr, strength_ptr, noise_ptr, seed, noise_s_n,
                                      n, c, hw, offsets, valid, C, HW, alpha, gain, HAS_BIAS,
                                      HAS_NOISE, NOISE_FROM_SEED, HAS_ACT, ACC)
        dy = tl.load(dy_ptr + offsets, mask=valid, other=0.0).to(ACC)
        sum_dy = tl.sum(dy, axis=1)
        sum_dy_xhat = tl.sum(dy * (a - mean[:, None]), axis=1) * rstd
    else:
        sum_dy = tl.zeros([BLOCK_C], dtype=ACC)
        sum_dy_xhat = tl.zeros([BLOCK_C], dtype=ACC)
        for s in range(SPLITS):
            sum_dy += tl.load(part_ptr + rows + s, mask=c < C, other=0.0)
            sum_dy_xhat += tl.load(part_ptr + part_stride + rows + s, mask=c < C, other=0.0)
    if split == 0:
        tl.store(dshift_ptr + stat_offsets, sum_dy, mask=c < C)
        tl.store(dscale_ptr + stat_offsets, sum_dy_xhat, mask=c < C)
    mean_dy = sum_dy / HW
    mean_dy_xhat = sum_dy_xhat / HW
    if SINGLE_PASS:  # the plane is still in registers: one read of x and dy in all
        sum_dt, sum_dt_noise = _input_grad(t, a, noise, dy, valid, dx_ptr, offsets, alpha, gain,
                                           mean, rstd, scale, mean_dy, mean_dy_xhat, HAS_ACT)
    else:
        sum_dt = tl.zeros([BLOCK_C], dtype=ACC)
        sum_dt_noise = tl.zeros([BLOCK_C], dtype=ACC)
        for hw0 in range(start, end, BLOCK_HW):
            n, c, hw, offsets = _tile_offsets(pid, C, HW, s_n, s_c, s_hw, hw0, SPLITS, BLOCK_C,
                                              BLOCK_HW)
            valid = (c < C)[:, None] & (hw < end)[None, :]
            t, a, noise = _pre_activation(x_ptr, bias_ptr, strength_ptr, noise_ptr, seed,
                                          noise_s_n, n, c, hw, offsets, valid, C, HW, alpha, gain,
                                          HAS_BIAS, HAS_NOISE, NOISE_FROM_SEED, HAS_ACT, ACC)
            dy = tl.load(dy_ptr + offsets, mask=valid, other=0.0).to(ACC)
            tile_dt, tile_dt_noise = _input_grad(t, a, noise, dy, valid, dx_ptr, offsets, alpha,
                                                 gain, mean, rstd, scale, mean_dy, mean_dy_xhat,
                                                 HAS_ACT)
            sum_dt += tile_dt
            sum_dt_noise += tile_dt_noise
    tl.store(channel_part_ptr + rows + split, sum_dt, mask=c < C)
    tl.store(channel_part_ptr + part_stride + rows + split, sum_dt_noise, mask=c < C)


# ---------------------------------------------------------------- launchers
class _Plan:
    """Tiles, splits and flags of one launch over the planes of x."""

    def __init__(self, x, bias, noise_strength, noise, seed, has_act):
        self.x, self.strides, channels_last = plane_layout(x)
        n, c, h, w = x.shape
        hw = h * w
        self.n, self.c, self.hw = n, c, hw
        self.block_c, self.block_hw = plane_tiles(c, hw, channels_last)
        plane_programs = n * triton.cdiv(c, self.block_c)
        chunks = triton.cdiv(hw, self.block_hw)
        splits = max(1, min(chunks, TARGET_PROGRAMS // max(plane_programs, 1)))
        self.hw_per_split = triton.cdiv(chunks, splits) * self.block_hw
        self.splits = triton.cdiv(hw, self.hw_per_split)
        self.single_pass = self.splits == 1 and self.block_hw >= hw
        self.grid = (plane_programs * self.splits,)
        self.acc = accumulator(x.dtype)
        self.ct = compute_dtype(x)
        has_noise = noise_strength is not None
        if has_noise and noise is None:
            check_noise_size(n, hw)
        if noise is not None:
            noise = noise.contiguous()
        dummy = self.x  # never read: its flag is off
        self.inputs = (bias.contiguous() if bias is not None else dummy,
                       noise_strength.contiguous() if has_noise else dummy,
                       noise if noise is not None else dummy)
        self.rng = (seed_value(seed), 0 if noise is None or noise.shape[0] == 1 else hw)
        self.flags = dict(HAS_BIAS=bias is not None, HAS_NOISE=has_noise,
                          NOISE_FROM_SEED=has_noise and noise is None, HAS_ACT=has_act,
                          SPLITS=self.splits, BLOCK_C=self.block_c, BLOCK_HW=self.block_hw,
                          ACC=self.acc, num_warps=num_warps(self.block_c * self.block_hw))
        self.part_stride = n * c * self.splits
        self.geometry = (c, hw, *self.strides, self.hw_per_split, self.part_stride)

    def parts(self, count):
        return torch.empty((count, self.part_stride), device=self.x.device, dtype=self.ct)


def forward(x, bias, style_scale, style_bias, noise_strength, noise, seed, alpha, gain, eps,
            scale_offset, has_act=True):
    if x.numel() == 0:
        return EpilogueReference.forward(x, bias, style_scale, style_bias, noise_strength, noise,
                                         seed, alpha, gain, eps, scale_offset)
    plan = _Plan(x, bias, noise_strength, noise, seed, has_act)
    y = torch.empty_like(plan.x)
    mean = torch.empty((plan.n, plan.c), device=x.device, dtype=plan.ct)
    rstd = torch.empty_like(mean)
    part = plan.x if plan.single_pass else plan.parts(3)
    if not plan.single_pass:
        _stats_kernel[plan.grid](plan.x, *plan.inputs, part, *plan.rng, *plan.geometry,
                                 *scalar_args(alpha, gain), **plan.flags)
    _apply_kernel[plan.grid](plan.x, *plan.inputs, style_scale.contiguous(),
                             style_bias.contiguous(), part, y, mean, rstd, *plan.rng,
                             *plan.geometry, *scalar_args(alpha, gain, eps, scale_offset),
                             SINGLE_PASS=plan.single_pass, **plan.flags)
    return like(x, y), mean, rstd


def backward(dy, x, bias, style_scale, noise_strength, noise, seed, mean, rstd, alpha, gain,
             scale_offset, compute_dnoise, has_act=True):
    if x.numel() == 0:
        return EpilogueReference.backward(dy, x, bias, style_scale, noise_strength, noise, seed,
                                          mean, rstd, alpha, gain, scale_offset, compute_dnoise)
    plan = _Plan(x, bias, noise_strength, noise, seed, has_act)
    dy = like(plan.x, dy)
    # dnoise sums dx * noise_strength over the channels: from dx in the compute dtype, not from
    # dx rounded to a 16-bit x's dtype (which made its error several times PyTorch's own)
    dx = torch.empty_like(plan.x, dtype=plan.ct if compute_dnoise else None)
    dshift = torch.empty_like(mean)
    dscale = torch.empty_like(mean)
    stat_part = plan.x if plan.single_pass else plan.parts(2)
    channel_part = plan.parts(2)
    if not plan.single_pass:
        _grad_stats_kernel[plan.grid](plan.x, dy, *plan.inputs, mean, rstd, stat_part, *plan.rng,
                                      *plan.geometry, *scalar_args(alpha, gain), **plan.flags)
    _grad_input_kernel[plan.grid](plan.x, dy, *plan.inputs, style_scale.contiguous(), mean, rstd,
                                  stat_part, dx, dshift, dscale, channel_part, *plan.rng,
                                  *plan.geometry, *scalar_args(alpha, gain, scale_offset),
                                  SINGLE_PASS=plan.single_pass, **plan.flags)
    sum_dt, sum_dt_noise = channel_part.view(2, plan.n, plan.c, plan.splits).sum((1, 3))
    dbias = sum_dt.clone() if bias is not None else dx.new_empty(0, dtype=plan.ct)
    dstrength = sum_dt_noise.clone() if noise_strength is not None else dx.new_empty(0, dtype=plan.ct)
    # dnoise reduces over channels, across the planes' programs: done from dx (rarely needed)
    dnoise = (noise_grad(dx, noise_strength, noise.shape) if compute_dnoise
              else dx.new_empty(0, dtype=plan.ct))
    return like(x, dx.to(x.dtype)), dbias, dscale, dshift, dstrength, dnoise


class StyleEpilogueTriton:
    forward = staticmethod(forward)
    backward = staticmethod(backward)


backends.register_impl("style_epilogue", "triton", StyleEpilogueTriton)
