"""upfirdn2d: upsample, FIR filter, downsample, with NVIDIA's StyleGAN2/3 semantics.

For x [N, C, H, W] and a float32 filter f, per axis (x first, then y)::

    1. insert up - 1 zeros after each pixel         (size H * up)
    2. pad by (pad0, pad1), negative values crop     (size H * up + pad0 + pad1)
    3. convolve with f (correlate with f flipped; with ``flip_filter``, with f itself)
    4. keep every down-th pixel                      (size (H * up + pad0 + pad1 - K) // down + 1)

and the result is multiplied by ``gain``. A 1-D f [K] is separable, applied along both axes (the
2-D filter is f (x) f); a 2-D f is [KH, KW]; None is the identity [[1]]. NVIDIA folds the gain into
the filter as gain ** (f.ndim / 2): the same total factor ``gain``.

As the kernels see it (one *pass*: the op runs one, or two for long 1-D filters: along x with f
viewed [1, K] and gain ** 0.5, then along y with [K, 1], the intermediate in float32)::

    y[n, c, oy, ox] = gain * sum_{ky < KH, kx < KW} u[n, c, oy * down_y + ky - pad_y,
                                                      ox * down_x + kx - pad_x] * w[ky, kx]
    u[n, c, t, s]   = x[n, c, t / up_y, s / up_x]  if up_y | t, up_x | s and inside x, else 0
    w[ky, kx]       = g[ky, kx] if flip else g[KH - 1 - ky, KW - 1 - kx]
    g               = outer(f, f) if separable (f 1-D, KH = KW = K) else f (2-D [KH, KW])

Backward: the op is linear in x, and its adjoint is a pass of the same kind on dy, with the filter
flipped (``flip`` toggled), up and down swapped and the leading padding K - 1 - pad per axis, to x's
size::

    dx = pass(dy, f, up=down, down=up, pad=(KW - 1 - pad_x, KH - 1 - pad_y), out=(H, W), not flip)

Nothing is saved for backward but the (tiny, constant) filter. Double backward is the backward's
own backward (R1 in StyleGAN2 runs through it). The filter gets no gradient.

Backend interface (``register_impl("upfirdn2d", name, impl)``)::

    impl.forward(x, f, separable, up, down, pad, out_size, flip, gain, out_dtype) -> y
        x: [N, C, H, W], non-empty (the op handles empty x), any strides,
           float16/bfloat16/float32/float64
        f: contiguous float32 filter on x's device: [K] if separable, else [KH, KW]
        up, down: (x, y) ints >= 1; pad: (pad_x, pad_y), the leading padding (negative crops)
        out_size: (OH, OW) >= 1; flip: bool; gain: float
        y: [N, C, OH, OW] of dtype out_dtype, in ``output_layout(x)``; float32 math (float64
        for a float64 x)
"""
from __future__ import annotations

import math
import numbers
from typing import Optional

import torch
import torch.nn.functional as F

from . import backends
from ._common import check_input, check_scalar, compute_dtype
from ._dispatch import fused_op

SEPARABLE_ONE_PASS_TAPS = 8  # 1-D filters up to this length run as one pass with f (x) f


# ---------------------------------------------------------------- arguments
def _int_pair(name: str, value, minimum: int) -> tuple[int, int]:
    """An int or a 2-sequence [x, y] of ints, each >= minimum, as (x, y)."""
    if type(value) is int and value >= minimum:  # the common case, without the checks below
        return value, value
    values = [value] * 2 if _is_int(value) else list(value) if isinstance(value, (list, tuple)) \
        else None
    if values is None or len(values) != 2 or not all(_is_int(v) for v in values):
        raise TypeError(f"{name} must be an int or a pair [x, y] of ints, got {value!r}")
    if min(values) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(values[0]), int(values[1])


def _is_int(v) -> bool:
    return type(v) is int or (isinstance(v, numbers.Integral) and not isinstance(v, bool))


def parse_padding(padding) -> tuple[int, int, int, int]:
    """NVIDIA's padding forms: an int, [x, y] or [x0, x1, y0, y1] -> (x0, x1, y0, y1)."""
    if type(padding) is int:
        return padding, padding, padding, padding
    if _is_int(padding):
        return (int(padding),) * 4
    if isinstance(padding, (list, tuple)) and all(_is_int(p) for p in padding):
        if len(padding) == 2:
            return int(padding[0]), int(padding[0]), int(padding[1]), int(padding[1])
        if len(padding) == 4:
            return tuple(int(p) for p in padding)
    raise ValueError(f"padding must be an int, [x, y] or [x0, x1, y0, y1] of ints, "
                     f"got {padding!r}")


def check_filter(f, x: torch.Tensor, name: str = "f",
                 max_taps: Optional[int] = None) -> torch.Tensor:
    """f as given (None: the identity [[1]]): a constant float32 tensor of 1 or 2 dims (at most
    ``max_taps`` per axis, when given) on x's device; errors name it ``name``."""
    if f is None:
        return torch.ones(1, 1, dtype=torch.float32, device=x.device)
    if not isinstance(f, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None, got {type(f).__name__}")
    if f.dtype != torch.float32:
        raise TypeError(f"{name} must be float32 (see setup_filter), got {f.dtype}")
    if f.dim() not in (1, 2) or f.numel() == 0 or (max_taps and max(f.shape) > max_taps):
        limit = f" of at most {max_taps} taps per axis" if max_taps else ""
        raise ValueError(f"{name} must be a non-empty 1-D or 2-D filter{limit}, got shape "
                         f"{tuple(f.shape)}")
    if f.device != x.device:
        raise ValueError(f"{name} is on {f.device} but x is on {x.device}")
    if f.requires_grad and torch.is_grad_enabled():
        raise ValueError(f"{name} requires grad, but the filter is a constant (no gradient flows "
                         f"to it): pass {name}.detach()")
    return f


def filter_size(f: Optional[torch.Tensor]) -> tuple[int, int]:
    """(width, height) of a filter as NVIDIA's helpers count them (None: 1 x 1)."""
    if f is None:
        return 1, 1
    return int(f.shape[-1]), int(f.shape[0])


def output_size(size: int, up: int, down: int, pad0: int, pad1: int, taps: int, axis: str,
                padding) -> int:
    """Output length along one axis; raises naming ``padding`` when the crop leaves nothing."""
    upsampled = size * up
    if upsampled + pad0 + pad1 < taps:
        crop = ": the crop is larger than the input" if min(pad0, pad1) < 0 else ""
        raise ValueError(f"padding {padding!r} leaves {upsampled + pad0 + pad1} pixels along "
                         f"{axis} (input {size} x up {up}), fewer than the filter's {taps} "
                         f"taps{crop}")
    if max(-pad0, 0) + max(-pad1, 0) > upsampled:
        raise ValueError(f"padding {padding!r} crops {max(-pad0, 0) + max(-pad1, 0)} pixels "
                         f"along {axis} from {upsampled} (input {size} x up {up}): the crop is "
                         f"larger than the input")
    return (upsampled + pad0 + pad1 - taps) // down + 1


def output_layout(x: torch.Tensor) -> torch.memory_format:
    """The memory format of the op's output: channels_last for a channels_last x, else NCHW."""
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def empty_output(x: torch.Tensor, out_size, dtype: torch.dtype) -> torch.Tensor:
    return torch.empty((x.shape[0], x.shape[1], *out_size), dtype=dtype, device=x.device,
                       memory_format=output_layout(x))


# ---------------------------------------------------------------- public entry points
def upfirdn2d(x: torch.Tensor, f: Optional[torch.Tensor], up=1, down=1, padding=0,
              flip_filter: bool = False, gain: float = 1) -> torch.Tensor:
    """Upsample by ``up``, FIR-filter with ``f``, downsample by ``down``; see the module docstring.

    Args:
        x: [N, C, H, W], float16/bfloat16/float32/float64, NCHW, channels_last or any strides.
        f: float32 filter: 1-D [K] (separable, both axes), 2-D [KH, KW], or None (identity).
        up, down: int or [x, y], >= 1.
        padding: int, [x, y] or [x0, x1, y0, y1] (negative values crop).
        flip_filter: correlate with f instead of convolving.
        gain: multiplies the result.
    Returns [N, C, OH, OW] in x's dtype and layout.
    """
    check_input("x", x, rank=4, layout="[N, C, H, W]")
    f = check_filter(f, x)
    upx, upy = _int_pair("up", up, 1)
    downx, downy = _int_pair("down", down, 1)
    return _upfirdn2d(x, f, upx, upy, downx, downy, parse_padding(padding), flip_filter, gain,
                      padding)


def _upfirdn2d(x, f, upx, upy, downx, downy, pad, flip_filter, gain, padding):
    """:func:`upfirdn2d` past the checks of x and f and the parsing of up, down and padding
    (``pad``: (x0, x1, y0, y1); ``padding``: as the caller gave it, for messages)."""
    px0, px1, py0, py1 = pad
    if not isinstance(flip_filter, bool):
        raise TypeError(f"flip_filter must be a bool, got {type(flip_filter).__name__}")
    if type(gain) is not float or not math.isfinite(gain):
        gain = check_scalar("gain", gain)
    kw, kh = filter_size(f)
    ow = output_size(x.shape[3], upx, downx, px0, px1, kw, "x (width)", padding)
    oh = output_size(x.shape[2], upy, downy, py0, py1, kh, "y (height)", padding)
    backend = backends.resolve_backend("upfirdn2d", x.device)
    if backend == backends.EAGER:
        return upfirdn2d_reference(x, f, (upx, upy), (downx, downy), (px0, px1, py0, py1),
                                   flip_filter, gain)
    f = f.contiguous()
    if f.dim() == 2 or f.shape[0] <= SEPARABLE_ONE_PASS_TAPS:
        return _upfirdn2d_op(x, f, f.dim() == 1, [upx, upy], [downx, downy], [px0, py0],
                             [oh, ow], flip_filter, gain, x.dtype, backend)
    # A long 1-D filter: along x, then along y (K + K taps per pixel instead of K * K).
    half_gain = math.sqrt(gain) if gain >= 0 else None
    gx, gy = (half_gain, half_gain) if half_gain is not None else (gain, 1.0)
    t = _upfirdn2d_op(x, f.view(1, -1), False, [upx, 1], [downx, 1], [px0, 0], [x.shape[2], ow],
                      flip_filter, gx, compute_dtype(x), backend)
    return _upfirdn2d_op(t, f.view(-1, 1), False, [1, upy], [1, downy], [0, py0], [oh, ow],
                         flip_filter, gy, x.dtype, backend)


def upfirdn2d_reference(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1):
    """The definition in plain differentiable PyTorch: zero insertion, pad/crop, a convolution
    per plane, stride. Autograd does the backward; math in float32 (float64 for float64 x)."""
    upx, upy = _int_pair("up", up, 1)
    downx, downy = _int_pair("down", down, 1)
    px0, px1, py0, py1 = parse_padding(padding)
    f = torch.ones(1, 1, dtype=torch.float32, device=x.device) if f is None else f
    n, c, h, w = x.shape
    ct = compute_dtype(x)
    t = x.to(ct).reshape(n * c, 1, h, 1, w, 1)
    t = F.pad(t, [0, upx - 1, 0, 0, 0, upy - 1]).reshape(n * c, 1, h * upy, w * upx)
    t = F.pad(t, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    t = t[:, :, max(-py0, 0):t.shape[2] - max(-py1, 0), max(-px0, 0):t.shape[3] - max(-px1, 0)]
    g = f.to(ct)
    if not flip_filter:
        g = g.flip(list(range(f.dim())))
    if f.dim() == 1:
        t = F.conv2d(t, g.view(1, 1, 1, -1))
        t = F.conv2d(t, g.view(1, 1, -1, 1))
    else:
        t = F.conv2d(t, g.view(1, 1, *g.shape))
    t = t[:, :, ::downy, ::downx] * gain  # NVIDIA folds gain ** (ndim / 2) into f: the same
    y = t.reshape(n, c, t.shape[2], t.shape[3]).to(x.dtype)
    return y.contiguous(memory_format=output_layout(x))


# ---------------------------------------------------------------- NVIDIA's helpers
def setup_filter(f, device=torch.device("cpu"), normalize: bool = True, flip_filter: bool = False,
                 gain: float = 1, separable: Optional[bool] = None) -> torch.Tensor:
    """A float32 filter for :func:`upfirdn2d` from taps (a list, array or tensor; None: [[1]]).

    Scalars become [1]-filters. A 1-D filter stays 1-D (separable) when ``separable``, or by default
    when it has at least 8 taps; otherwise it becomes the 2-D outer product f (x) f. ``normalize``
    divides by the sum, ``flip_filter`` flips every axis, and ``gain`` multiplies by
    gain ** (ndim / 2), NVIDIA's conventions."""
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.dim() == 0:
        f = f[None]
    if f.dim() not in (1, 2) or f.numel() == 0:
        raise ValueError(f"f must be a scalar or a non-empty 1-D or 2-D filter, got shape "
                         f"{tuple(f.shape)}")
    if separable is None:
        separable = f.dim() == 1 and f.numel() >= 8
    if f.dim() == 1 and not separable:
        f = torch.outer(f, f)
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.dim())))
    f = f * (check_scalar("gain", gain) ** (f.dim() / 2))
    return f.to(device=device)


def filter2d(x: torch.Tensor, f: Optional[torch.Tensor], padding=0, flip_filter: bool = False,
             gain: float = 1) -> torch.Tensor:
    """Filter x with f keeping its size (plus ``padding``): upfirdn2d with the filter centred."""
    fw, fh = filter_size(f)
    px0, px1, py0, py1 = parse_padding(padding)
    pad = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    check_input("x", x, rank=4, layout="[N, C, H, W]")
    return _upfirdn2d(x, check_filter(f, x), 1, 1, 1, 1, pad, flip_filter, gain, pad)


def upsample2d(x: torch.Tensor, f: Optional[torch.Tensor], up=2, padding=0,
               flip_filter: bool = False, gain: float = 1) -> torch.Tensor:
    """Upsample x by ``up`` with the interpolation filter f: output up x the input's size (plus
    ``padding``), gain scaled by the number of inserted pixels (up_x * up_y) so that a
    normalized filter keeps the mean."""
    upx, upy = _int_pair("up", up, 1)
    fw, fh = filter_size(f)
    px0, px1, py0, py1 = parse_padding(padding)
    pad = [px0 + (fw + upx - 1) // 2, px1 + (fw - upx) // 2,
           py0 + (fh + upy - 1) // 2, py1 + (fh - upy) // 2]
    gain = check_scalar("gain", gain) * upx * upy
    check_input("x", x, rank=4, layout="[N, C, H, W]")
    return _upfirdn2d(x, check_filter(f, x), upx, upy, 1, 1, pad, flip_filter, gain, pad)


def downsample2d(x: torch.Tensor, f: Optional[torch.Tensor], down=2, padding=0,
                 flip_filter: bool = False, gain: float = 1) -> torch.Tensor:
    """Filter x with f and keep every ``down``-th pixel: output the input's size / down (plus
    ``padding``)."""
    downx, downy = _int_pair("down", down, 1)
    fw, fh = filter_size(f)
    px0, px1, py0, py1 = parse_padding(padding)
    pad = [px0 + (fw - downx + 1) // 2, px1 + (fw - downx) // 2,
           py0 + (fh - downy + 1) // 2, py1 + (fh - downy) // 2]
    check_input("x", x, rank=4, layout="[N, C, H, W]")
    return _upfirdn2d(x, check_filter(f, x), 1, 1, downx, downy, pad, flip_filter, gain, pad)


# ---------------------------------------------------------------- reference backend
WINDOWS_MAX_ELEMENTS = 1 << 20  # outputs x taps up to this: one product with the gathered windows


class Reference:
    @staticmethod
    def forward(x, f, separable, up, down, pad, out_size, flip, gain, out_dtype):
        """One pass of the module docstring in plain PyTorch: zero insertion and pad (or crop)
        onto a canvas of what the outputs cover (none when x already is it), then the sum over
        the taps of strided views of the canvas: for small outputs one product of the filter with
        the gathered windows (a few ops: a convolution per plane costs tens of microseconds
        on a CPU), else tap by tap (several times faster than a convolution per plane)."""
        n, c, h, w = x.shape
        (upx, upy), (downx, downy), (padx, pady), (oh, ow) = up, down, pad, out_size
        ct = compute_dtype(x)
        g = f if f.dtype == ct else f.to(ct)
        if separable:
            g = torch.outer(g, g)
        kh, kw = g.shape
        if not flip:
            g = g.flip(0, 1)  # a new tensor: scaled in place below
            if gain != 1:
                g.mul_(gain)
        elif gain != 1:
            g = g * gain
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and \
            not x.is_contiguous()
        need_h, need_w = (oh - 1) * downy + kh, (ow - 1) * downx + kw
        right, bottom = need_w - w * upx - padx, need_h - h * upy - pady
        if upx == 1 and upy == 1 and min(padx, pady, right, bottom) >= 0:
            u = x if x.dtype == ct else x.to(ct)
            if padx or pady or right or bottom:
                u = F.pad(u, [padx, right, pady, bottom])
        else:
            # a zero canvas [need_h, need_w] in x's layout; x's pixel (i, j) lands at
            # (i * up_y + pad_y, j * up_x + pad_x), where that is inside
            if channels_last:
                u = x.new_zeros((n, need_h, need_w, c), dtype=ct).permute(0, 3, 1, 2)
            else:
                u = x.new_zeros((n, c, need_h, need_w), dtype=ct)
            i0, j0 = (max(-pady, 0) + upy - 1) // upy, (max(-padx, 0) + upx - 1) // upx
            i1 = min(h, (need_h - pady + upy - 1) // upy)
            j1 = min(w, (need_w - padx + upx - 1) // upx)
            if i1 > i0 and j1 > j0:
                s0, s1, s2, s3 = u.stride()
                u.as_strided((n, c, i1 - i0, j1 - j0), (s0, s1, s2 * upy, s3 * upx),
                             (i0 * upy + pady) * s2 + (j0 * upx + padx) * s3).copy_(
                    x if (i0, j0, i1, j1) == (0, 0, h, w) else x[:, :, i0:i1, j0:j1])
        s0, s1, s2, s3 = u.stride()
        offset = u.storage_offset()
        if n * c * oh * ow * kh * kw <= WINDOWS_MAX_ELEMENTS:
            # the windows [KH * KW, outputs], gathered in the output's memory order
            if channels_last:
                windows = u.as_strided((kh, kw, n, oh, ow, c),
                                       (s2, s3, s0, s2 * downy, s3 * downx, s1), offset)
                y = (g.reshape(-1) @ windows.reshape(kh * kw, -1)).view(n, oh, ow, c)
                y = y.permute(0, 3, 1, 2)
            else:
                windows = u.as_strided((kh, kw, n, c, oh, ow),
                                       (s2, s3, s0, s1, s2 * downy, s3 * downx), offset)
                y = (g.reshape(-1) @ windows.reshape(kh * kw, -1)).view(n, c, oh, ow)
            return y if out_dtype == ct else y.to(out_dtype)
        y = None
        for ky in range(kh):
            for kx in range(kw):
                tap = u.as_strided((n, c, oh, ow), (s0, s1, s2 * downy, s3 * downx),
                                   offset + ky * s2 + kx * s3)
                y = tap * g[ky, kx] if y is None else y.addcmul_(tap, g[ky, kx])
        out = empty_output(x, out_size, out_dtype)
        out.copy_(y)
        return out


# ---------------------------------------------------------------- custom op and autograd
@fused_op("upfirdn2d")
def _upfirdn2d_op(x: torch.Tensor, f: torch.Tensor, separable: bool, up: list[int],
                  down: list[int], pad: list[int], out_size: list[int], flip: bool, gain: float,
                  out_dtype: torch.dtype, backend: str) -> torch.Tensor:
    if x.numel() == 0:
        return torch.zeros((x.shape[0], x.shape[1], *out_size), dtype=out_dtype,
                           device=x.device).contiguous(memory_format=output_layout(x))
    return backends.get_impl("upfirdn2d", backend).forward(
        x, f, separable, tuple(up), tuple(down), tuple(pad), tuple(out_size), flip, gain,
        out_dtype)


@_upfirdn2d_op.register_fake
def _(x, f, separable, up, down, pad, out_size, flip, gain, out_dtype, backend):
    return empty_output(x, out_size, out_dtype)


def _setup_context(ctx, inputs, output):
    x, f, separable, up, down, pad, out_size, flip, gain, out_dtype, backend = inputs
    ctx.save_for_backward(f)
    ctx.args = (separable, up, down, pad, flip, gain, backend)
    ctx.in_size = [x.shape[2], x.shape[3]]
    ctx.in_dtype = x.dtype


def _backward(ctx, dy):
    (f,) = ctx.saved_tensors
    separable, up, down, pad, flip, gain, backend = ctx.args
    kh, kw = (f.shape[0], f.shape[0]) if separable else tuple(f.shape)
    dx = _upfirdn2d_op(dy, f, separable, list(down), list(up), [kw - 1 - pad[0], kh - 1 - pad[1]],
                       ctx.in_size, not flip, gain, ctx.in_dtype, backend)
    return dx, None, None, None, None, None, None, None, None, None, None


_upfirdn2d_op.register_autograd(_backward, setup_context=_setup_context)
backends.register_impl("upfirdn2d", "ref", Reference)
backends.register_impl("upfirdn2d", backends.EAGER, upfirdn2d_reference)
