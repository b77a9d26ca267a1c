"""Triton kernel for filtered_lrelu: both passes of the backend interface in
``stylegan_fast/ops/filtered_lrelu.py``'s docstring, in one fused kernel::

    v[r, s] = gain1 * sum_{ky, kx} u[r + ky - pad1_y, s + kx - pad1_x] * w1[ky, kx]  (region)
    u[i, j] = z[i / up, j / up] (+ b[c] in forward) if up | i, up | j and inside z, else 0
    a       = act(v) in [0, RH) x [0, RW), else 0
              forward: clamp(leaky_relu(v, slope) * gain, +-clamp), code NEGATIVE | CLAMPED
              masked:  v * m, m = gain * (1 | slope | 0) from the saved 2-bit code
    y[o, p] = gain2 * sum_{ky, kx} a[o * down + ky - pad2_y, p * down + kx - pad2_x] * w2[ky, kx]

with gain1 = up ** 2, gain2 = 1, pad2 = 0 (forward) or gain1 = 1, gain2 = scale (masked): the
constexpr MASKED switches act and the sign traffic (forward writes, masked reads).

Tiling: a program owns a tile of BC channels x TY x TX outputs of one sample at a time
(persistent: it loops over tiles with a stride of the grid size). For a tile it computes the part
of a that the tile's outputs read, SA_H x SA_W region elements from (r0, s0), into its own *slot*
of a global scratch buffer (about 40 KB for an NCHW tile of a StyleGAN3 layer, 130 KB for a
channels_last one; L1/L2-resident; the grid is capped so that all slots fit in SCRATCH_BYTES),
then reads that slot for stage 2: v is never stored at full size. Phases of a tile, separated by
``tl.debug_barrier()`` (a slot is shared by its program's threads only):

1. stage 1, polyphase as in upfirdn2d: r0 and s0 are multiples of up, so that region element
   (r0 + up * jy + ry, s0 + up * jx + rx) of phase (ry, rx) gets taps k = k0 + up * m of input
   pixel (r0 / up - padq + jy + d0 + m, ...), k0 and d0 constexprs of the phase (pad1 = up *
   padq + PHASE). A 1-D f1 runs separably: along x into a t slot (input rows x region
   columns), barrier, then along y. Then act, and a (and the codes, forward) go to the slots.
2. forward with signs: each byte of the tile's codes (4 region columns; s0 is a multiple of 4
   too) is packed from the code slot and stored, if inside [RH, ceil(RW / 4)). Tiles overlap by
   the halo fd needs, and then store the same bytes (the same arithmetic on the same inputs).
   The masked pass instead reads each element's byte in phase 1.
3. stage 2 from the a slot: a 1-D f2 runs separably (along y into the t slot, barrier, along
   x), a 2-D f2 directly; y is stored. A last barrier frees the slot for the next tile.

Every phase walks its BC x D1 x D2 domain flattened, BLOCK elements at a time (channels
fastest for channels_last, columns fastest for NCHW, and the slots are laid out likewise), so
odd tile sizes waste no lanes but the last block's; taps are runtime loops (a 32 x 32 filter
does not unroll). x, z and the signs are read through their strides (any layout, no copy); y
and the signs are written in ``output_layout(x)``. Float32 math (float64 for float64 input),
int64 offsets into tensors.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .. import backends
from ..filtered_lrelu import empty_signs, filter_taps, no_signs
from ..upfirdn2d import empty_output, output_layout
from ._common import TARGET_PROGRAMS, accumulator, scalar, scalar_args

# Tiling knobs, module-level so that tests can monkeypatch them to force multi-tile launches:
# output tile of NCHW_TILE (rows, columns) and as many channels as fill TILE_ELEMENTS outputs
# (NCHW), or of CHANNELS_LAST_TILE and up to CHANNELS_LAST_BLOCK_C channels (channels_last);
# BLOCK elements per step of a phase; at most MAX_PROGRAMS programs and SCRATCH_BYTES of slots.
NCHW_TILE = (32, 32)
CHANNELS_LAST_TILE = (16, 16)
CHANNELS_LAST_BLOCK_C = 8
TILE_ELEMENTS = 1024
BLOCK = 1024
NUM_WARPS = 8
MAX_PROGRAMS = TARGET_PROGRAMS
SCRATCH_BYTES = 64 << 20


@triton.jit
def _split(e, D1, D2, BC: tl.constexpr, CL: tl.constexpr):
    """Flat index e of a BC x D1 x D2 domain -> (c, i, j); channels fastest if CL."""
    if CL:
        c = e % BC
        i = e // BC // D2
        j = e // BC % D2
    else:
        c = e // D2 // D1
        i = e // D2 % D1
        j = e % D2
    return c, i, j


@triton.jit
def _at(c, i, j, ROWS, COLS, BC: tl.constexpr, CL: tl.constexpr):
    """Offset of (c, i, j) in a slot of BC x ROWS x COLS, laid out as _split walks it."""
    if CL:
        off = (i * COLS + j) * BC + c
    else:
        off = (c * ROWS + i) * COLS + j
    return off


@triton.jit
def _activate(v, r, s, ok, byte_ptr, RH, RW, gain, gain_slope, slope, clamp,
              MASKED: tl.constexpr):
    """(a, code) of region element (r, s) from v: both 0 outside the region. Masked: the code
    is read from the byte at byte_ptr."""
    inside = ok & (r >= 0) & (r < RH) & (s >= 0) & (s < RW)
    if MASKED:
        byte = tl.load(byte_ptr, mask=inside, other=0).to(tl.int32)
        code = (byte >> ((s & 3) * 2)) & 3
        a = v * tl.where((code & 2) != 0, 0.0, tl.where((code & 1) != 0, gain_slope, gain))
    else:
        a = tl.where(v > 0, v, v * slope) * gain
        code = (v <= 0).to(tl.int32) | ((tl.abs(a) > clamp).to(tl.int32) << 1)
        a = tl.where(a > clamp, clamp, tl.where(a < -clamp, -clamp, a))
    return tl.where(inside, a, 0.0), tl.where(inside, code, 0)


@triton.jit
def _filtered_lrelu_kernel(
    x_ptr,          # [N, C, H, W] input (forward: x, masked: z), any strides (x_s_*)
    b_ptr,          # [C] bias in the ACC dtype (read if HAS_BIAS)
    f1_ptr,         # float32 stage-1 filter: [K1H] if SEP1 (weight f (x) f), else [K1H, K1W]
    f2_ptr,         # float32 stage-2 filter: [K2H] if SEP2, else [K2H, K2W]
    signs_ptr,      # uint8 [N, C, RH, ceil(RW / 4)], any strides: SAVE_SIGNS writes, MASKED reads
    y_ptr,          # [N, C, OH, OW] output, any strides (y_s_*)
    a_ptr,          # ACC scratch: a slot of BC x SA_H x SA_W per program (the tile's a)
    code_ptr,       # uint8 scratch, slots like a's (the tile's codes, if SAVE_SIGNS)
    t_ptr,          # ACC scratch: a slot of BC x TR x SA_W per program (separable half sums)
    C, H, W,        # channels, input height and width
    OH, OW,         # output height and width
    RH, RW,         # region height and width
    x_s_n, x_s_c, x_s_h, x_s_w,  # x's strides, in elements
    s_s_n, s_s_c, s_s_h, s_s_w,  # the signs' strides (bytes)
    y_s_n, y_s_c, y_s_h, y_s_w,  # y's strides
    padq_x, padq_y,  # floor(pad1 / UP) per axis: pad1 = UP * padq + PHASE
    pad2_x, pad2_y,  # stage 2's leading padding
    TY, TX,         # output tile rows and columns
    JY, JX,         # region tile per phase: SA_H = UP_Y * JY rows, SA_W = UP_X * JX columns
    IY,             # input rows of a tile's separable stage 1 (JY + the taps' reach)
    TR,             # rows of a t slot: max(IY if SEP1, TY if SEP2)
    ALIGN_X,        # s0 is a multiple of this (UP_X, and 4 if SAVE_SIGNS)
    OFF_X, OFF_Y,   # multiples of ALIGN_X / UP_Y >= pad2: keep the alignment's % non-negative
    tiles_x, tiles_y, c_blocks, num_tiles,  # tiles: columns, rows, channel blocks; total
    gain1, gain1_lo, gain2, gain2_lo,  # stage gains: scalar_args(gain1, gain2)
    gain, gain_lo, gs, gs_lo,  # act: scalar_args(gain, gs = gain * slope)
    slope, slope_lo, clamp, clamp_lo,  # act: scalar_args(slope, clamp)
    K1H: tl.constexpr, K1W: tl.constexpr,  # stage-1 taps (separable: K1H = K1W)
    K2H: tl.constexpr, K2W: tl.constexpr,  # stage-2 taps
    UP_X: tl.constexpr, UP_Y: tl.constexpr,  # stage-1 zero insertion
    DOWN_X: tl.constexpr, DOWN_Y: tl.constexpr,  # stage-2 stride
    PHASE_X: tl.constexpr, PHASE_Y: tl.constexpr,  # pad1 mod UP per axis
    SEP1: tl.constexpr, SEP2: tl.constexpr,  # the filter is 1-D (runs separably)
    FLIP: tl.constexpr,  # correlate with the filters (else with them flipped)
    MASKED: tl.constexpr,  # the masked pass (else forward)
    HAS_BIAS: tl.constexpr, SAVE_SIGNS: tl.constexpr,  # forward: add b; store the signs
    CL: tl.constexpr,  # channels fastest in the domains and slots (channels_last)
    BC: tl.constexpr,  # channels per tile
    BLOCK: tl.constexpr,  # elements per step
    ACC: tl.constexpr,  # accumulator dtype
):
    pid = tl.program_id(0)
    SA_H = UP_Y * JY
    SA_W = UP_X * JX
    a_slot = a_ptr + pid * (BC * SA_H * SA_W)
    code_slot = code_ptr + pid * (BC * SA_H * SA_W)
    t_slot = t_ptr + pid * (BC * TR * SA_W)
    srow = SA_W * BC if CL else SA_W  # slot steps of a row and a column (a and t slots)
    scol = BC if CL else 1
    row_step, col_step = tl.cast(x_s_h, tl.int64), tl.cast(x_s_w, tl.int64)
    g1, g2 = scalar(gain1, gain1_lo, ACC), scalar(gain2, gain2_lo, ACC)
    g, g_s = scalar(gain, gain_lo, ACC), scalar(gs, gs_lo, ACC)
    sl, cl = scalar(slope, slope_lo, ACC), scalar(clamp, clamp_lo, ACC)
    lanes = tl.arange(0, BLOCK)
    for tile in range(pid, num_tiles, tl.num_programs(0)):
        ox0 = tile % tiles_x * TX
        oy0 = tile // tiles_x % tiles_y * TY
        c0 = tile // (tiles_x * tiles_y) % c_blocks * BC
        n = tile // (tiles_x * tiles_y * c_blocks)
        u0, u1 = oy0 * DOWN_Y - pad2_y, ox0 * DOWN_X - pad2_x  # first region row/column read
        r0, s0 = u0 - (u0 + OFF_Y) % UP_Y, u1 - (u1 + OFF_X) % ALIGN_X  # the slot's origin
        iy0, ix0 = r0 // UP_Y - padq_y, s0 // UP_X - padq_x  # exact divisions
        x_n = x_ptr + n.to(tl.int64) * x_s_n
        s_n = signs_ptr + n.to(tl.int64) * s_s_n
        # ---- phase 1: stage 1 and act into the a slot
        if SEP1:
            for rx in tl.static_range(UP_X):  # along x: t[c, i, s] for input rows i
                k0 = (PHASE_X - rx + UP_X) % UP_X
                d0 = (rx + k0 - PHASE_X) // UP_X
                total = BC * IY * JX
                for e0 in range(0, total, BLOCK):
                    e = e0 + lanes
                    c, i, j = _split(e, IY, JX, BC, CL)
                    ok = (e < total) & (c0 + c < C)
                    iy, ix = iy0 + i, ix0 + j + d0
                    ok = ok & (iy >= 0) & (iy < H)
                    src = (x_n + (c0 + c).to(tl.int64) * x_s_c + iy.to(tl.int64) * row_step
                           + ix.to(tl.int64) * col_step)
                    if HAS_BIAS:
                        bias = tl.load(b_ptr + c0 + c, mask=ok, other=0.0)
                    acc = tl.zeros([BLOCK], ACC)
                    for m in range((K1W - k0 + UP_X - 1) // UP_X):
                        k = k0 + m * UP_X
                        w = tl.load(f1_ptr + (k if FLIP else K1W - 1 - k)).to(ACC)
                        hit = ok & (ix >= -m) & (ix < W - m)
                        v = tl.load(src + m * col_step, mask=hit, other=0.0).to(ACC)
                        if HAS_BIAS:
                            v = tl.where(hit, v + bias, 0.0)
                        acc += v * w
                    tl.store(t_slot + _at(c, i, UP_X * j + rx, TR, SA_W, BC, CL), acc,
                             mask=e < total)
            tl.debug_barrier()
            for ry in tl.static_range(UP_Y):  # along y
                k0 = (PHASE_Y - ry + UP_Y) % UP_Y
                d0 = (ry + k0 - PHASE_Y) // UP_Y
                total = BC * JY * SA_W
                for e0 in range(0, total, BLOCK):
                    e = e0 + lanes
                    c, j, s = _split(e, JY, SA_W, BC, CL)
                    src = t_slot + _at(c, j + d0, s, TR, SA_W, BC, CL)
                    acc = tl.zeros([BLOCK], ACC)
                    for m in range((K1H - k0 + UP_Y - 1) // UP_Y):
                        k = k0 + m * UP_Y
                        w = tl.load(f1_ptr + (k if FLIP else K1H - 1 - k)).to(ACC)
                        acc += tl.load(src + m * srow, mask=e < total, other=0.0) * w
                    r = UP_Y * j + ry
                    byte_ptr = (s_n + (c0 + c).to(tl.int64) * s_s_c
                                + (r0 + r).to(tl.int64) * s_s_h
                                + ((s0 + s) >> 2).to(tl.int64) * s_s_w)
                    a, code = _activate(acc * g1, r0 + r, s0 + s, (e < total) & (c0 + c < C),
                                        byte_ptr, RH, RW, g, g_s, sl, cl, MASKED)
                    tl.store(a_slot + _at(c, r, s, SA_H, SA_W, BC, CL), a, mask=e < total)
                    if SAVE_SIGNS:
                        tl.store(code_slot + _at(c, r, s, SA_H, SA_W, BC, CL), code.to(tl.uint8),
                                 mask=e < total)
        else:
            for ry in tl.static_range(UP_Y):
                for rx in tl.static_range(UP_X):
                    ky0 = (PHASE_Y - ry + UP_Y) % UP_Y
                    kx0 = (PHASE_X - rx + UP_X) % UP_X
                    total = BC * JY * JX
                    for e0 in range(0, total, BLOCK):
                        e = e0 + lanes
                        c, j, i = _split(e, JY, JX, BC, CL)
                        ok = (e < total) & (c0 + c < C)
                        iy = iy0 + j + (ry + ky0 - PHASE_Y) // UP_Y
                        ix = ix0 + i + (rx + kx0 - PHASE_X) // UP_X
                        src = (x_n + (c0 + c).to(tl.int64) * x_s_c
                               + iy.to(tl.int64) * row_step + ix.to(tl.int64) * col_step)
                        if HAS_BIAS:
                            bias = tl.load(b_ptr + c0 + c, mask=ok, other=0.0)
                        acc = tl.zeros([BLOCK], ACC)
                        for my in range((K1H - ky0 + UP_Y - 1) // UP_Y):
                            ky = ky0 + my * UP_Y
                            fy = ky if FLIP else K1H - 1 - ky
                            ok_y = ok & (iy >= -my) & (iy < H - my)
                            for mx in range((K1W - kx0 + UP_X - 1) // UP_X):
                                kx = kx0 + mx * UP_X
                                w = tl.load(f1_ptr + fy * K1W + (kx if FLIP else K1W - 1 - kx))
                                hit = ok_y & (ix >= -mx) & (ix < W - mx)
                                v = tl.load(src + my * row_step + mx * col_step, mask=hit,
                                            other=0.0).to(ACC)
                                if HAS_BIAS:
                                    v = tl.where(hit, v + bias, 0.0)
                                acc += v * w.to(ACC)
                        r, s = UP_Y * j + ry, UP_X * i + rx
                        byte_ptr = (s_n + (c0 + c).to(tl.int64) * s_s_c
                                    + (r0 + r).to(tl.int64) * s_s_h
                                    + ((s0 + s) >> 2).to(tl.int64) * s_s_w)
                        a, code = _activate(acc * g1, r0 + r, s0 + s, ok, byte_ptr, RH, RW, g,
                                            g_s, sl, cl, MASKED)
                        tl.store(a_slot + _at(c, r, s, SA_H, SA_W, BC, CL), a, mask=e < total)
                        if SAVE_SIGNS:
                            tl.store(code_slot + _at(c, r, s, SA_H, SA_W, BC, CL),
                                     code.to(tl.uint8), mask=e < total)
        tl.debug_barrier()
        # ---- phase 2: pack the tile's codes, 4 region columns to a byte
        if SAVE_SIGNS:
            total = BC * SA_H * (SA_W // 4)
            for e0 in range(0, total, BLOCK):
                e = e0 + lanes
                c, r, q = _split(e, SA_H, SA_W // 4, BC, CL)
                byte = tl.zeros([BLOCK], tl.int32)
                for t in tl.static_range(4):
                    code = tl.load(code_slot + _at(c, r, 4 * q + t, SA_H, SA_W, BC, CL),
                                   mask=e < total, other=0)
                    byte |= code.to(tl.int32) << (2 * t)
                row, q = r0 + r, s0 // 4 + q
                keep = ((e < total) & (c0 + c < C) & (row >= 0) & (row < RH) & (q >= 0)
                        & (q < (RW + 3) // 4))
                tl.store(s_n + (c0 + c).to(tl.int64) * s_s_c + row.to(tl.int64) * s_s_h
                         + q.to(tl.int64) * s_s_w, byte.to(tl.uint8), mask=keep)
        # ---- phase 3: stage 2 from the a slot
        ey, ex = u0 - r0, u1 - s0
        y_n = y_ptr + n.to(tl.int64) * y_s_n
        if SEP2:
            total = BC * TY * SA_W  # along y: t[c, o, s]
            for e0 in range(0, total, BLOCK):
                e = e0 + lanes
                c, o, s = _split(e, TY, SA_W, BC, CL)
                src = a_slot + _at(c, o * DOWN_Y + ey, s, SA_H, SA_W, BC, CL)
                acc = tl.zeros([BLOCK], ACC)
                for k in range(K2H):
                    w = tl.load(f2_ptr + (k if FLIP else K2H - 1 - k)).to(ACC)
                    acc += tl.load(src + k * srow, mask=e < total, other=0.0) * w
                tl.store(t_slot + _at(c, o, s, TR, SA_W, BC, CL), acc, mask=e < total)
            tl.debug_barrier()
        total = BC * TY * TX
        for e0 in range(0, total, BLOCK):
            e = e0 + lanes
            c, o, p = _split(e, TY, TX, BC, CL)
            acc = tl.zeros([BLOCK], ACC)
            if SEP2:  # along x
                src = t_slot + _at(c, o, p * DOWN_X + ex, TR, SA_W, BC, CL)
                for k in range(K2W):
                    w = tl.load(f2_ptr + (k if FLIP else K2W - 1 - k)).to(ACC)
                    acc += tl.load(src + k * scol, mask=e < total, other=0.0) * w
            else:
                src = a_slot + _at(c, o * DOWN_Y + ey, p * DOWN_X + ex, SA_H, SA_W, BC, CL)
                for ky in range(K2H):
                    fy = ky if FLIP else K2H - 1 - ky
                    for kx in range(K2W):
                        w = tl.load(f2_ptr + fy * K2W + (kx if FLIP else K2W - 1 - kx)).to(ACC)
                        acc += tl.load(src + ky * srow + kx * scol, mask=e < total,
                                       other=0.0) * w
            oy, ox = oy0 + o, ox0 + p
            keep = (e < total) & (c0 + c < C) & (oy < OH) & (ox < OW)
            tl.store(y_n + (c0 + c).to(tl.int64) * y_s_c + oy.to(tl.int64) * y_s_h
                     + ox.to(tl.int64) * y_s_w, (acc * g2).to(y_ptr.dtype.element_ty), mask=keep)
        tl.debug_barrier()  # the slot is free for the next tile


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def _tiles(c: int, oh: int, ow: int, channels_last: bool):
    """(BC, TY, TX, tiles_y, tiles_x): the output tile, split evenly over the output."""
    th, tw = CHANNELS_LAST_TILE if channels_last else NCHW_TILE
    tiles_y, tiles_x = triton.cdiv(oh, th), triton.cdiv(ow, tw)
    ty, tx = triton.cdiv(oh, tiles_y), triton.cdiv(ow, tiles_x)
    if channels_last:
        bc = min(c, CHANNELS_LAST_BLOCK_C)
    else:  # whole small planes: several channels to a tile, a power of two of them
        bc = min(c, 1 << max(0, (TILE_ELEMENTS // (ty * tx)).bit_length() - 1))
    return bc, ty, tx, tiles_y, tiles_x


def _launch(z, f1, f2, b, signs, y, up, down, pad1, pad2, region, gain1, gain2, gain, slope,
            clamp, flip, masked, save_signs):
    """One pass (module docstring) of z into y (and the signs, forward with save_signs)."""
    n, c, h, w = z.shape
    (oh, ow), (rh, rw) = y.shape[2:], region
    (k1w, k1h), (k2w, k2h) = filter_taps(f1), filter_taps(f2)
    sep1, sep2 = f1.dim() == 1, f2.dim() == 1
    channels_last = output_layout(z) == torch.channels_last
    bc, ty, tx, tiles_y, tiles_x = _tiles(c, oh, ow, channels_last)
    align_x = math.lcm(4, up) if save_signs else up
    sa_h = _round_up((ty - 1) * down + k2h + up - 1, up)
    sa_w = _round_up((tx - 1) * down + k2w + align_x - 1, align_x)
    iy = sa_h // up + (up + k1h - 2 - pad1[1] % up) // up
    tr = max(iy if sep1 else 1, ty if sep2 else 1)
    acc = accumulator(z.dtype)
    size = 8 if acc == tl.float64 else 4
    a_slot, t_slot = bc * sa_h * sa_w, bc * tr * sa_w if sep1 or sep2 else 0
    slot_bytes = a_slot * (size + save_signs) + t_slot * size
    num_tiles = n * triton.cdiv(c, bc) * tiles_y * tiles_x
    programs = max(1, min(num_tiles, MAX_PROGRAMS, SCRATCH_BYTES // slot_bytes))
    assert programs * max(a_slot, t_slot) < 2**31, "scratch offsets are 32-bit"
    scratch_dtype = torch.float64 if acc == tl.float64 else torch.float32
    a_scratch = torch.empty(programs * a_slot, dtype=scratch_dtype, device=z.device)
    t_scratch = torch.empty(max(programs * t_slot, 1), dtype=scratch_dtype, device=z.device)
    dummy = torch.empty(1, dtype=torch.uint8, device=z.device)
    codes = torch.empty(programs * a_slot, dtype=torch.uint8, device=z.device) \
        if save_signs else dummy
    if signs.numel() == 0:
        signs = dummy
    _filtered_lrelu_kernel[(programs,)](
        z, f1 if b is None else b, f1, f2, signs, y, a_scratch, codes, t_scratch,
        c, h, w, oh, ow, rh, rw, *z.stride(), *(signs.stride() if signs.dim() == 4 else
                                                (0, 0, 0, 0)), *y.stride(),
        pad1[0] // up, pad1[1] // up, pad2[0], pad2[1], ty, tx, sa_h // up, sa_w // up, iy, tr,
        align_x, _round_up(max(pad2[0], 0), align_x), _round_up(max(pad2[1], 0), up),
        tiles_x, tiles_y, triton.cdiv(c, bc), num_tiles,
        *scalar_args(gain1, gain2, gain, gain * slope, slope, clamp),
        K1H=k1h, K1W=k1w, K2H=k2h, K2W=k2w, UP_X=up, UP_Y=up, DOWN_X=down, DOWN_Y=down,
        PHASE_X=pad1[0] % up, PHASE_Y=pad1[1] % up, SEP1=sep1, SEP2=sep2, FLIP=flip,
        MASKED=masked, HAS_BIAS=b is not None, SAVE_SIGNS=save_signs, CL=channels_last,
        BC=bc, BLOCK=BLOCK, ACC=acc, num_warps=NUM_WARPS)


class FilteredLReluTriton:
    @staticmethod
    def forward(x, fu, fd, b, up, down, pad, region, out_size, gain, slope, clamp, flip,
                out_dtype, save_signs):
        """The forward pass; the interface is in ``filtered_lrelu``'s module docstring."""
        y = empty_output(x, out_size, out_dtype)
        signs = empty_signs(x, region) if save_signs else no_signs(x)
        _launch(x, fu, fd, b, signs, y, up, down, pad, (0, 0), region, float(up * up), 1.0,
                gain, slope, clamp, flip, False, save_signs)
        return y, signs

    @staticmethod
    def masked(z, f1, f2, signs, up, down, pad1, pad2, region, out_size, gain, slope, scale,
               flip, out_dtype):
        """The masked pass (backward); the interface is in the module docstring."""
        y = empty_output(z, out_size, out_dtype)
        _launch(z, f1, f2, None, signs, y, up, down, pad1, pad2, region, 1.0, scale, gain,
                slope, math.inf, flip, True, False)
        return y


backends.register_impl("filtered_lrelu", "triton", FilteredLReluTriton)
