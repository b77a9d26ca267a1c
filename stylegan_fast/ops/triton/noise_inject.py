"""Triton kernels for noise_inject (math in ``stylegan_fast/ops/noise_inject.py``).

One program per (n, block of BLOCK_HW pixels) loops over the channels in blocks of BLOCK_C, so the
noise of its pixels is drawn (or loaded) once and, in backward, dnoise = sum_c dy * strength[c]
is complete in the program. dstrength is reduced per program and summed over programs in a fixed
order (deterministic).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .. import backends
from .._common import compute_dtype, like
from ..noise_inject import Reference as NoiseReference
from ._common import (
    accumulator,
    check_noise_size,
    noise_at,
    num_warps,
    plane_layout,
    plane_tiles,
    seed_value,
)


@triton.jit
def _pixel_noise(noise_ptr, seed, noise_s_n, n, hw, HW, NOISE_FROM_SEED: tl.constexpr,
                 ACC: tl.constexpr):
    if NOISE_FROM_SEED:
        return noise_at(seed, n, hw, HW).to(ACC)
    return tl.load(noise_ptr + n * noise_s_n + hw, mask=hw < HW, other=0.0).to(ACC)


@triton.jit
def _forward_kernel(
    x_ptr,           # [N, C, H, W] input (NCHW or channels_last, strides s_*)
    strength_ptr,    # [C] noise strength
    noise_ptr,       # [N or 1, 1, H, W] contiguous noise (unless NOISE_FROM_SEED)
    y_ptr,           # [N, C, H, W] out, same strides as x
    seed, noise_s_n, C, HW, s_n, s_c, s_hw,
    NOISE_FROM_SEED: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr,
    ACC: tl.constexpr,
):
    pid = tl.program_id(0)
    hw_blocks = tl.cdiv(HW, BLOCK_HW)
    n = pid // hw_blocks
    hw = (pid % hw_blocks) * BLOCK_HW + tl.arange(0, BLOCK_HW)
    noise = _pixel_noise(noise_ptr, seed, noise_s_n, n, hw, HW, NOISE_FROM_SEED, ACC)
    for c0 in range(0, C, BLOCK_C):
        c = c0 + tl.arange(0, BLOCK_C)
        offsets = (n.to(tl.int64) * s_n + c.to(tl.int64)[:, None] * s_c
                   + hw.to(tl.int64)[None, :] * s_hw)
        valid = (c < C)[:, None] & (hw < HW)[None, :]
        x = tl.load(x_ptr + offsets, mask=valid, other=0.0).to(ACC)
        strength = tl.load(strength_ptr + c, mask=c < C, other=0.0).to(ACC)
        y = x + noise[None, :] * strength[:, None]
        tl.store(y_ptr + offsets, y.to(y_ptr.dtype.element_ty), mask=valid)


@triton.jit
def _backward_kernel(
    dy_ptr,          # [N, C, H, W] upstream gradient (strides s_*)
    strength_ptr,    # [C] noise strength
    noise_ptr,       # [N or 1, 1, H, W] contiguous noise (unless NOISE_FROM_SEED)
    strength_part_ptr,  # [programs, C] out: sum over the program's pixels of dy * noise
    dnoise_ptr,      # [N, H*W] out: sum_c dy * strength[c] (if COMPUTE_DNOISE)
    seed, noise_s_n, C, HW, s_n, s_c, s_hw,
    NOISE_FROM_SEED: tl.constexpr, COMPUTE_DNOISE: tl.constexpr, BLOCK_C: tl.constexpr,
    BLOCK_HW: tl.constexpr, ACC: tl.constexpr,
):
    pid = tl.program_id(0)
    hw_blocks = tl.cdiv(HW, BLOCK_HW)
    n = pid // hw_blocks
    hw = (pid % hw_blocks) * BLOCK_HW + tl.arange(0, BLOCK_HW)
    noise = _pixel_noise(noise_ptr, seed, noise_s_n, n, hw, HW, NOISE_FROM_SEED, ACC)
    dnoise = tl.zeros([BLOCK_HW], dtype=ACC)
    for c0 in range(0, C, BLOCK_C):
        c = c0 + tl.arange(0, BLOCK_C)
        offsets = (n.to(tl.int64) * s_n + c.to(tl.int64)[:, None] * s_c
                   + hw.to(tl.int64)[None, :] * s_hw)
        valid = (c < C)[:, None] & (hw < HW)[None, :]
        dy = tl.load(dy_ptr + offsets, mask=valid, other=0.0).to(ACC)
        tl.store(strength_part_ptr + pid.to(tl.int64) * C + c,
                 tl.sum(dy * noise[None, :], axis=1), mask=c < C)
        if COMPUTE_DNOISE:
            strength = tl.load(strength_ptr + c, mask=c < C, other=0.0).to(ACC)
            dnoise += tl.sum(dy * strength[:, None], axis=0)
    if COMPUTE_DNOISE:
        tl.store(dnoise_ptr + n.to(tl.int64) * HW + hw, dnoise, mask=hw < HW)


def _launch_geometry(x, noise, seed):
    x, strides, channels_last = plane_layout(x)
    n, c, h, w = x.shape
    block_c, block_hw = plane_tiles(c, h * w, channels_last)
    if noise is None:
        check_noise_size(n, h * w)
    noise_s_n = 0 if noise is None or noise.shape[0] == 1 else h * w
    grid = (n * triton.cdiv(h * w, block_hw),)
    args = (seed_value(seed), noise_s_n, c, h * w, *strides)
    flags = dict(NOISE_FROM_SEED=noise is None, BLOCK_C=block_c, BLOCK_HW=block_hw,
                 ACC=accumulator(x.dtype), num_warps=num_warps(block_c * block_hw))
    return x, grid, args, flags


class NoiseInjectTriton:
    @staticmethod
    def forward(x, strength, noise, seed):
        if x.numel() == 0:
            return NoiseReference.forward(x, strength, noise, seed)
        planes, grid, args, flags = _launch_geometry(x, noise, seed)
        noise_arg = noise.contiguous() if noise is not None else planes
        y = torch.empty_like(planes)
        _forward_kernel[grid](planes, strength.contiguous(), noise_arg, y, *args, **flags)
        return like(x, y)

    @staticmethod
    def backward(dy, strength, noise, seed, compute_dnoise):
        if dy.numel() == 0:
            return NoiseReference.backward(dy, strength, noise, seed, compute_dnoise)
        planes, grid, args, flags = _launch_geometry(dy, noise, seed)
        noise_arg = noise.contiguous() if noise is not None else planes
        n, c, h, w = dy.shape
        ct = compute_dtype(dy)
        strength_part = torch.empty((grid[0], c), device=dy.device, dtype=ct)
        dnoise = (torch.empty((n, 1, h, w), device=dy.device, dtype=ct) if compute_dnoise
                  else dy.new_empty(0, dtype=ct))
        _backward_kernel[grid](planes, strength.contiguous(), noise_arg, strength_part, dnoise, *args,
                               COMPUTE_DNOISE=compute_dnoise, **flags)
        if compute_dnoise and noise.shape[0] == 1 and n != 1:
            dnoise = dnoise.sum(0, keepdim=True)
        return strength_part.sum(0), dnoise


backends.register_impl("noise_inject", "triton", NoiseInjectTriton)
