"""Triton kernel for upfirdn2d: one *pass* of ``stylegan_fast/ops/upfirdn2d.py``'s docstring::

    y[n, c, oy, ox] = gain * sum_{ky < KH, kx < KW} u[n, c, oy * down_y + ky - pad_y,
                                                      ox * down_x + kx - pad_x] * w[ky, kx]
    u[n, c, t, s]   = x[n, c, t / up_y, s / up_x]  if up_y | t, up_x | s and inside x, else 0
    w[ky, kx]       = g[ky, kx] if flip else g[KH - 1 - ky, KW - 1 - kx],  g = f (x) f or f

Polyphase: write pad = up * pad_q + PHASE (0 <= PHASE < up) and an output index o = up * j + r
(phase r < up) per axis. Then t = o * down + k - pad = up * (j * down - pad_q) + (r * down + k -
PHASE), so tap k of phase r hits a sample of x iff up | r * down + k - PHASE, known at compile time
(up, down, PHASE and the loop indices are constexprs), and that sample is at row/column
j * down - pad_q + (r * down + k - PHASE) / up. A program owns a tile of BLOCK_C channels x
BLOCK_Y x BLOCK_X phase pixels (jy, jx) and, for each of the up_y * up_x phases, sums only the taps
that hit samples (about KH * KW / (up_y * up_x) of them), with masked loads at the borders of x
(row and column masks are computed on the tile's rows and columns, then broadcast).

The tile's dimension contiguous in the output comes last: [BLOCK_Y, BLOCK_X, BLOCK_C] for a
channels_last output, [BLOCK_C, BLOCK_Y, BLOCK_X] for NCHW. x is read through its strides (any
layout, no copy); y is dense, NCHW or channels_last as ``output_layout(x)``. The grid is 1-D
(no 65535 limit). Float32 accumulation (float64 for float64 x, with gain in full precision).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .. import backends
from ..upfirdn2d import empty_output, output_layout
from ._common import (
    TARGET_PROGRAMS,
    TILE_ELEMENTS,
    accumulator,
    num_warps,
    pow2,
    scalar,
    scalar_args,
)

# Tiling knobs, module-level so that tests can monkeypatch them to force multi-program tilings:
# a program owns about TILE_ELEMENTS channels x phase pixels (fewer, down to MIN_TILE_ELEMENTS,
# while the launch has under TARGET_PROGRAMS programs); a channels_last tile holds at most
# CHANNELS_LAST_BLOCK_C channels. E.g. TILE_ELEMENTS = 16 on an NCHW x with C = 3 and 8 x 8 outputs
# (up 1) gives 3 channel blocks x 4 blocks of 2 x 8 pixels; CHANNELS_LAST_BLOCK_C = 1 then splits
# channels_last channels too.
MIN_TILE_ELEMENTS = 512
CHANNELS_LAST_BLOCK_C = 64


@triton.jit
def _upfirdn2d_kernel(
    x_ptr,           # [N, C, H, W] input, any strides (x_s_*)
    f_ptr,           # float32 filter: [KH] if SEPARABLE (2-D weight f (x) f), else [KH, KW]
    y_ptr,           # [N, C, OH, OW] out, dense: pixel oy * OW + ox at offset pixel * y_s_p
    C, H, W,         # channels, input height and width
    OH, OW,          # output height and width
    x_s_n, x_s_c, x_s_h, x_s_w,  # x's strides, in elements
    y_s_n, y_s_c, y_s_p,  # y's strides: sample, channel, pixel (1 for NCHW, C for channels_last)
    pad_qx, pad_qy,  # floor(pad / up) per axis: pad = up * pad_q + PHASE
    gain, gain_lo,   # factor on the sum: scalar_args(gain)
    KH: tl.constexpr, KW: tl.constexpr,  # filter taps (separable: KH = KW = K)
    UP_X: tl.constexpr, UP_Y: tl.constexpr,  # upsampling factors (zeros inserted)
    DOWN_X: tl.constexpr, DOWN_Y: tl.constexpr,  # downsampling factors (output stride on u)
    PHASE_X: tl.constexpr, PHASE_Y: tl.constexpr,  # pad mod up per axis, in [0, up)
    SEPARABLE: tl.constexpr,  # f is 1-D: w[ky, kx] = f[ky] * f[kx]
    FLIP: tl.constexpr,  # correlate with f itself (else with f flipped along both axes)
    CHANNELS_LAST: tl.constexpr,  # tile [BLOCK_Y, BLOCK_X, BLOCK_C], else [BLOCK_C, Y, X]
    BLOCK_C: tl.constexpr, BLOCK_Y: tl.constexpr, BLOCK_X: tl.constexpr,  # tile: channels, jy, jx
    ACC: tl.constexpr,  # accumulator dtype
):
    # phase pixels (jy, jx): oy = UP_Y * jy + ry, ox = UP_X * jx + rx
    x_blocks = tl.cdiv(tl.cdiv(OW, UP_X), BLOCK_X)
    y_blocks = tl.cdiv(tl.cdiv(OH, UP_Y), BLOCK_Y)
    c_blocks = tl.cdiv(C, BLOCK_C)
    pid = tl.program_id(0)  # ((n * c_blocks + c_block) * y_blocks + y_block) * x_blocks + x_block
    jx = (pid % x_blocks) * BLOCK_X + tl.arange(0, BLOCK_X)
    jy = (pid // x_blocks % y_blocks) * BLOCK_Y + tl.arange(0, BLOCK_Y)
    c = (pid // (x_blocks * y_blocks) % c_blocks) * BLOCK_C + tl.arange(0, BLOCK_C)
    n = pid // (x_blocks * y_blocks * c_blocks)
    if CHANNELS_LAST:
        c, jy, jx = c[None, None, :], jy[:, None, None], jx[None, :, None]
    else:
        c, jy, jx = c[:, None, None], jy[None, :, None], jx[None, None, :]
    # x_origin points at x[n, c, iy0, ix0] (maybe outside x); tap (ky, kx) of phase (ry, rx)
    # reads x[n, c, iy0 + dy, ix0 + dx], dy and dx constexprs (module docstring), if inside x.
    iy0, ix0 = jy * DOWN_Y - pad_qy, jx * DOWN_X - pad_qx
    x_origin = (x_ptr + n.to(tl.int64) * x_s_n + c.to(tl.int64) * x_s_c
                + iy0.to(tl.int64) * x_s_h + ix0.to(tl.int64) * x_s_w)
    y_planes = y_ptr + n.to(tl.int64) * y_s_n + c.to(tl.int64) * y_s_c
    row_step, col_step = tl.cast(x_s_h, tl.int64), tl.cast(x_s_w, tl.int64)
    g = scalar(gain, gain_lo, ACC)
    for ry in tl.static_range(UP_Y):
        for rx in tl.static_range(UP_X):
            oy, ox = jy * UP_Y + ry, jx * UP_X + rx
            out_ok = (c < C) & (oy < OH) & (ox < OW)
            acc = tl.zeros(out_ok.shape, dtype=ACC)
            for ky in tl.static_range(KH):
                if (ry * DOWN_Y + ky - PHASE_Y) % UP_Y == 0:  # tap row hits a row of x
                    dy = (ry * DOWN_Y + ky - PHASE_Y) // UP_Y
                    x_row = x_origin + dy * row_step
                    row_ok = out_ok & (iy0 >= -dy) & (iy0 < H - dy)
                    fy = ky if FLIP else KH - 1 - ky
                    for kx in tl.static_range(KW):
                        if (rx * DOWN_X + kx - PHASE_X) % UP_X == 0:
                            dx = (rx * DOWN_X + kx - PHASE_X) // UP_X
                            fx = kx if FLIP else KW - 1 - kx
                            if SEPARABLE:
                                w = tl.load(f_ptr + fy).to(ACC) * tl.load(f_ptr + fx).to(ACC)
                            else:
                                w = tl.load(f_ptr + fy * KW + fx).to(ACC)
                            v = tl.load(x_row + dx * col_step,
                                        mask=row_ok & ((ix0 >= -dx) & (ix0 < W - dx)), other=0.0)
                            acc += v.to(ACC) * w
            tl.store(y_planes + (oy * OW + ox).to(tl.int64) * y_s_p,
                     (acc * g).to(y_ptr.dtype.element_ty), mask=out_ok)


def _fit(size: int, limit: int, smallest: int) -> int:
    """A power-of-two block of at most ``limit``, halved (down to ``smallest``) until the blocks
    that cover ``size`` have at most 1/4 of their lanes past its end."""
    block = min(pow2(size), max(limit, 1))
    while block > smallest and triton.cdiv(size, block) * block * 3 > size * 4:
        block //= 2
    return block


def _tile_shape(n: int, c: int, phase_h: int, phase_w: int, channels_last: bool):
    """(BLOCK_C, BLOCK_Y, BLOCK_X, programs) of about TILE_ELEMENTS, halved while the launch has
    under TARGET_PROGRAMS programs; the block along the dimension contiguous in y is sized first."""
    tile = TILE_ELEMENTS
    while True:
        if channels_last:
            block_c = min(pow2(c), CHANNELS_LAST_BLOCK_C, tile)
            block_x = _fit(phase_w, tile // block_c, 1)
            block_y = _fit(phase_h, tile // (block_c * block_x), 1)
        else:
            block_x = _fit(phase_w, tile, 8)
            block_y = _fit(phase_h, tile // block_x, 1)
            block_c = min(pow2(c), max(1, tile // (block_x * block_y)))
        programs = (n * triton.cdiv(c, block_c) * triton.cdiv(phase_h, block_y)
                    * triton.cdiv(phase_w, block_x))
        if programs >= TARGET_PROGRAMS or tile // 2 < MIN_TILE_ELEMENTS:
            return block_c, block_y, block_x, programs
        tile //= 2


class UpFirDn2dTriton:
    @staticmethod
    def forward(x, f, separable, up, down, pad, out_size, flip, gain, out_dtype):
        """One pass (module docstring); the interface is ``Reference.forward``'s."""
        y = empty_output(x, out_size, out_dtype)
        n, c, h, w = x.shape
        (upx, upy), (downx, downy), (padx, pady), (oh, ow) = up, down, pad, out_size
        kh, kw = (f.shape[0], f.shape[0]) if separable else tuple(f.shape)
        channels_last = output_layout(x) == torch.channels_last
        block_c, block_y, block_x, programs = _tile_shape(
            n, c, triton.cdiv(oh, upy), triton.cdiv(ow, upx), channels_last)
        _upfirdn2d_kernel[(programs,)](
            x, f, y, c, h, w, oh, ow, *x.stride(), y.stride(0), y.stride(1), y.stride(3),
            padx // upx, pady // upy, *scalar_args(gain),
            KH=kh, KW=kw, UP_X=upx, UP_Y=upy, DOWN_X=downx, DOWN_Y=downy,
            PHASE_X=padx % upx, PHASE_Y=pady % upy, SEPARABLE=separable, FLIP=flip,
            CHANNELS_LAST=channels_last, BLOCK_C=block_c, BLOCK_Y=block_y, BLOCK_X=block_x,
            ACC=accumulator(x.dtype), num_warps=num_warps(block_c * block_y * block_x))
        return y


backends.register_impl("upfirdn2d", "triton", UpFirDn2dTriton)
