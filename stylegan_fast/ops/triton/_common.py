"""Helpers shared by the Triton kernels: layouts, block shapes, dtypes, in-kernel noise."""
from __future__ import annotations

import inspect
import math
import os
import re
import struct

import torch
import triton
import triton.language as tl

from .._common import like

INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"


def _backport_interpreter_index_fix() -> bool:
    """Make Triton < 3.7's interpreter run loops with runtime bounds under numpy >= 2.4.

    The interpreter holds a kernel's scalar (an int argument, ``pid * chunk``) as a 1-element
    array, and ``range(0, C, BLOCK_C)`` calls its ``__index__``, which Triton < 3.7 defines as
    ``int(data)``: numpy 2.4 made that a TypeError ("only 0-dimensional arrays can be converted
    to Python scalars"; a DeprecationWarning since numpy 1.25). Triton 3.7 reads
    ``int(data.squeeze())``; this adds that same method to the interpreter's patch of the
    language (Triton 3.4-3.6). Interpreter only: compiled kernels are untouched. True when
    installed."""
    version = re.match(r"(\d+)\.(\d+)", triton.__version__)
    if not INTERPRETED or version is None or tuple(map(int, version.groups())) >= (3, 7):
        return False
    from triton.runtime import interpreter

    patch_tensor = getattr(interpreter, "_patch_lang_tensor", None)
    if patch_tensor is None:
        return False
    if getattr(patch_tensor, "_stylegan_fast_fix", False):
        return True

    def index(self):
        return int(self.handle.data.squeeze())

    params = list(inspect.signature(patch_tensor).parameters)
    if params == ["tensor", "scope"]:  # Triton 3.6: patched per launch, restored after
        def patched(tensor, scope):
            patch_tensor(tensor, scope)
            # after Triton's own: the scope restores in reverse order, leaving tensor as it was
            scope.set_attr(tensor, "__index__", index)
    elif params == ["tensor"]:  # Triton 3.4-3.5: patched for good
        def patched(tensor):
            patch_tensor(tensor)
            tensor.__index__ = index
    else:  # a shape this was not written against: leave Triton alone
        return False

    patched._stylegan_fast_fix = True
    interpreter._patch_lang_tensor = patched
    return True


INTERPRETER_INDEX_FIX = _backport_interpreter_index_fix()

# Elements per program tile, and how many programs a launch aims for (a GPU wants several waves
# of its SMs; the interpreter on CPU pays ~5-10 ms per program, so it wants as few as possible).
TILE_ELEMENTS = 4096
# A plane of up to this many pixels is held by one program (NCHW): its statistics and output come
# from one read of x (the 128x128 layers' 16K-pixel planes still fit in registers with 16 warps).
WHOLE_PLANE_ELEMENTS = 16384
TARGET_PROGRAMS = 8 if INTERPRETED else 1024

ACCUMULATOR = {torch.float64: tl.float64}  # everything else accumulates in float32


def accumulator(dtype: torch.dtype):
    return ACCUMULATOR.get(dtype, tl.float32)


def pow2(n: int) -> int:
    return triton.next_power_of_2(max(int(n), 1))


def num_warps(tile: int) -> int:
    return 16 if tile >= 16384 else 8 if tile >= 4096 else 4


def dense(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself when its memory is dense (any dim order), else a dense copy in the layout
    ``torch.empty_like(t)`` gives: what the kernels index as flat memory."""
    return like(t, t)


def plane_layout(x: torch.Tensor):
    """View a 4-D x as planes [N, C, HW]: returns (x, (stride_n, stride_c, stride_hw),
    channels_last). NCHW and channels_last are used in place; other layouts are copied to NCHW
    (the caller then returns its output through ``like``)."""
    n, c, h, w = x.shape
    if x.is_contiguous():
        return x, (c * h * w, h * w, 1), False
    if x.is_contiguous(memory_format=torch.channels_last):
        return x, (h * w * c, 1, c), True
    return x.contiguous(), (c * h * w, h * w, 1), False


def plane_tiles(c: int, hw: int, channels_last: bool):
    """(BLOCK_C, BLOCK_HW) for a tile of planes: wide along the dimension contiguous in memory."""
    if channels_last:
        block_c = min(pow2(c), 128)
        return block_c, min(pow2(hw), max(1, TILE_ELEMENTS // block_c))
    block_hw = pow2(hw) if pow2(hw) <= WHOLE_PLANE_ELEMENTS else min(1024, TILE_ELEMENTS)
    return min(pow2(c), max(1, TILE_ELEMENTS // block_hw)), block_hw


FLOAT32_MAX = 3.4028234663852886e38


def scalar_args(*values: float) -> tuple:
    """Each value as two kernel arguments (hi, lo), read back in the kernel with
    :func:`scalar`. Triton passes a Python float as float32, which would round the float64
    kernels' alpha, gain, eps, ... to 24 bits; hi is that float32 rounding and lo the rest
    (rounded to float32 in turn), so hi + lo keeps about 48 bits. Float32 kernels get hi."""
    args = []
    for value in values:
        value = float(value)
        if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
            args += [value, 0.0]
            continue
        hi = struct.unpack("f", struct.pack("f", value))[0]
        args += [hi, value - hi]
    return tuple(args)


@triton.jit
def scalar(hi, lo, ACC: tl.constexpr):
    """A scalar argument passed as ``scalar_args``: hi + lo in ACC (float32 ACC: hi itself)."""
    return tl.cast(hi, ACC) + tl.cast(lo, ACC)


def seed_value(seed) -> int:
    """The int seed of the in-kernel RNG (the op passes a 1-element CPU tensor)."""
    return int(seed.reshape(-1)[0]) if seed is not None else 0


def check_noise_size(n: int, hw: int) -> None:
    if n * hw >= 2**31:
        raise ValueError(f"the triton backend draws noise with 32-bit counters: N*H*W = {n * hw} "
                         f"must be < 2**31 (use the cuda or ref backend)")


@triton.jit
def noise_at(seed, n, hw, HW):
    """N(0, 1) noise of pixel (n, hw): a pure function of (seed, n * HW + hw), shared by every
    op so that noise_inject and style_epilogue draw the same map for the same seed."""
    return tl.randn(seed, n * HW + hw)
