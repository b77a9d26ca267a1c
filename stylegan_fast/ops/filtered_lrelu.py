"""filtered_lrelu: StyleGAN3's bias, upsample, FIR, leaky ReLU, clamp, FIR, downsample, fused.

For x [N, C, H, W], with NVIDIA's semantics (DESIGN.md section 10)::

    t = x + b                                  (per channel, before anything else)
    v = upfirdn2d(t, fu, up=up, padding=padding, gain=up ** 2, flip_filter)    [HV, WV]
    a = clamp(leaky_relu(v, slope) * gain, -clamp, clamp)
    y = upfirdn2d(a, fd, down=down, flip_filter)                               [OH, OW]

with OW = (W * up + x0 + x1 - (fu_w - 1) - (fd_w - 1) + down - 1) // down (likewise OH). Filters
are float32, 1-D (separable) or 2-D, up to :data:`MAX_TAPS` taps per axis; None is [[1]].

The *region* is the part of v that fd reads: RH = (OH - 1) * down + fd_h rows, RW likewise
(at most HV x WV). Backward needs of the activation only which of three cases each element of the
region was in: positive (derivative gain), not positive (gain * slope; leaky_relu's derivative at 0
is the slope's, as PyTorch's), or clamped (0: |a| > clamp). Forward saves these as 2 bits per
element, packed 4 to a byte along x (:func:`pack_signs`), NVIDIA's budget; nothing else but the
filters. No backend keeps v at full size in memory (kernels: a tile at a time; ref: a few samples
at a time).

Backward is a *masked pass*, the adjoint of the linearized forward, linear in its input::

    dx = masked(dy; f1 = fd, up1 = down, pad1 = fd - 1;  f2 = fu, down2 = up, pad2 = fu - 1 - p0;
                flip = not flip_filter, scale = up ** 2)          db = dx summed over N, H, W
    masked(z) = scale * S2(m * S1(z)),  m = gain * (1 | slope | 0) from the signs

where S1 inserts up1 - 1 zeros after each pixel of z, pads by pad1 (leading, per axis) and
filters to the region [RH, RW]; S2 filters the region (zero outside it) at leading padding pad2
and keeps every down2-th pixel. The masked pass's own adjoint is the masked pass with the stages
swapped (f1 <-> f2, up1 <-> down2, pad1 <-> K - 1 - pad, flip toggled), so backward is
differentiable to any order (the second derivative w.r.t. x is zero almost everywhere).

Backend interface (``register_impl("filtered_lrelu", name, impl)``), shared by both passes::

    v[r, s] = gain1 * sum_{ky, kx} u[r + ky - pad1_y, s + kx - pad1_x] * w1[ky, kx]
    u[i, j] = z[i / up1, j / up1] (+ b[c] in forward) if up1 | i, up1 | j and inside z, else 0
    y[o, p] = gain2 * sum_{ky, kx} a[o * down2 + ky - pad2_y, p * down2 + kx - pad2_x] * w2[ky, kx]
    a = act(v) (forward) or v * m (masked), and a = 0 outside [0, RH) x [0, RW)
    w[ky, kx] = g[ky, kx] if flip else g[KH - 1 - ky, KW - 1 - kx],  g = f (x) f for a 1-D f

    impl.forward(x, fu, fd, b, up, down, pad, region, out_size, gain, slope, clamp, flip,
                 out_dtype, save_signs) -> (y, signs)
        the pass with gain1 = up ** 2, gain2 = 1, pad2 = (0, 0), act: clamp(leaky_relu(v) * gain)
        x: [N, C, H, W], non-empty, any strides, float16/bfloat16/float32/float64
        fu, fd: contiguous float32 on x's device, [K] (separable) or [KH, KW], K <= MAX_TAPS
        b: [C] in the compute dtype, contiguous, or None; up, down: ints >= 1
        pad: (pad_x, pad_y) leading; region: (RH, RW); out_size: (OH, OW)
        gain > 0, slope >= 0, clamp >= 0 or math.inf (none); flip: bool
        y: [N, C, OH, OW] of out_dtype in ``output_layout(x)``; signs (save_signs): uint8
        [N, C, RH, ceil(RW / 4)] in ``output_layout(x)`` as :func:`pack_signs` packs them, else
        an empty uint8 tensor [0]
    impl.masked(z, f1, f2, signs, up, down, pad1, pad2, region, out_size, gain, slope, scale,
                flip, out_dtype) -> y
        the pass with gain1 = 1, gain2 = scale, up1 = up, down2 = down, act: v * m
        z: [N, C, *, *] any strides; signs: as forward wrote them (any strides);
        pad1, pad2: (x, y) leading paddings (pad2 may be > 0: reads outside the region are 0)

Math in float32 (float64 for float64 x).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F

from . import backends
from ._common import check_input, check_param, check_scalar, compute_dtype
from ._dispatch import fused_op
from .upfirdn2d import (
    SEPARABLE_ONE_PASS_TAPS,
    check_filter,
    empty_output,
    output_layout,
    parse_padding,
    upfirdn2d_reference,
)
from .upfirdn2d import Reference as UpFirDn2dReference

MAX_TAPS = 32  # filter taps per axis that every backend supports
SQRT2 = math.sqrt(2)
NEGATIVE, CLAMPED = 1, 2  # the two bits of an element's sign code (0: positive, derivative gain)
REF_CHUNK_ELEMENTS = 1 << 24  # the ref backend's v holds at most this many elements at a time


# ---------------------------------------------------------------- geometry
class Geometry(NamedTuple):
    out_h: int     # output height OH
    out_w: int     # output width OW
    region_h: int  # rows of v that fd reads: RH = (OH - 1) * down + fd_h
    region_w: int  # columns of v that fd reads: RW = (OW - 1) * down + fd_w

    @property
    def sign_bytes(self) -> int:
        """Bytes of saved signs per (sample, channel) plane: 2 bits per region element."""
        return self.region_h * ((self.region_w + 3) // 4)


def filter_taps(f: Optional[torch.Tensor]) -> tuple[int, int]:
    """(width, height) in taps of a filter (a 1-D filter is separable; None: 1 x 1)."""
    if f is None:
        return 1, 1
    return int(f.shape[-1]), int(f.shape[0])


def geometry(h: int, w: int, fu: Optional[torch.Tensor], fd: Optional[torch.Tensor], up: int,
             down: int, padding) -> Geometry:
    """Output size and saved region of :func:`filtered_lrelu` on an [*, *, h, w] input; raises
    naming ``padding`` when the output would be empty."""
    px0, px1, py0, py1 = parse_padding(padding)
    (uw, uh), (dw, dh) = filter_taps(fu), filter_taps(fd)
    vw, vh = w * up + px0 + px1 - (uw - 1), h * up + py0 + py1 - (uh - 1)
    ow, oh = (vw - (dw - 1) + down - 1) // down, (vh - (dh - 1) + down - 1) // down
    if ow < 1 or oh < 1 or max(-px0, 0) + max(-px1, 0) > w * up \
            or max(-py0, 0) + max(-py1, 0) > h * up:
        raise ValueError(
            f"padding {padding!r} leaves an output of {max(oh, 0)} x {max(ow, 0)} (input {h} x "
            f"{w}, up {up}, fu {uh} x {uw} taps, fd {dh} x {dw} taps, down {down}): it must be "
            f"at least 1 x 1, and a crop no larger than the upsampled input")
    return Geometry(oh, ow, (oh - 1) * down + dh, (ow - 1) * down + dw)


# ---------------------------------------------------------------- arguments
def _check_fir(name: str, f, x: torch.Tensor) -> torch.Tensor:
    """A filter as given (upfirdn2d's checks, at most MAX_TAPS per axis), contiguous; None
    becomes [[1]]."""
    return check_filter(f, x, name, MAX_TAPS).contiguous()


def _check_factor(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def _check_scalars(gain, slope, clamp) -> tuple[float, float, float]:
    gain = check_scalar("gain", gain)
    if gain <= 0:
        raise ValueError(f"gain must be > 0, got {gain}")
    slope = check_scalar("slope", slope, minimum=0)
    clamp = math.inf if clamp is None else check_scalar("clamp", clamp, minimum=0)
    return gain, slope, clamp


# ---------------------------------------------------------------- public entry points
def filtered_lrelu(x: torch.Tensor, fu: Optional[torch.Tensor] = None,
                   fd: Optional[torch.Tensor] = None, b: Optional[torch.Tensor] = None,
                   up: int = 1, down: int = 1, padding=0, gain: float = SQRT2,
                   slope: float = 0.2, clamp: Optional[float] = None,
                   flip_filter: bool = False) -> torch.Tensor:
    """Bias, upsample, FIR filter, leaky ReLU, clamp, FIR filter, downsample; see the module
    docstring.

    Args:
        x: [N, C, H, W], float16/bfloat16/float32/float64, NCHW, channels_last or any strides.
        fu: upsampling filter, float32 [K] (separable) or [KH, KW], K <= 32, or None ([[1]]).
        fd: downsampling filter, likewise.
        b: bias [C] or None.
        up, down: ints >= 1.
        padding: int, [x, y] or [x0, x1, y0, y1] around the upsampled x (negative crops).
        gain: > 0, multiplies the activation; slope: >= 0, leaky ReLU's negative slope.
        clamp: None or >= 0, clamps the activation to [-clamp, clamp].
        flip_filter: correlate with the filters instead of convolving.
    Returns [N, C, OH, OW] in x's dtype and layout.
    """
    check_input("x", x, rank=4, layout="[N, C, H, W]")
    fu, fd = _check_fir("fu", fu, x), _check_fir("fd", fd, x)
    if b is not None:
        check_param("b", b, x, [(x.shape[1],)], f"[C] = [{x.shape[1]}]")
    up, down = _check_factor("up", up), _check_factor("down", down)
    px0, _, py0, _ = parse_padding(padding)
    gain, slope, clamp = _check_scalars(gain, slope, clamp)
    if not isinstance(flip_filter, bool):
        raise TypeError(f"flip_filter must be a bool, got {type(flip_filter).__name__}")
    geo = geometry(x.shape[2], x.shape[3], fu, fd, up, down, padding)
    backend = backends.resolve_backend("filtered_lrelu", x.device)
    if backend == backends.EAGER:
        return filtered_lrelu_reference(x, fu, fd, b, up, down, padding, gain, slope,
                                        None if clamp == math.inf else clamp, flip_filter)
    save_signs = torch.is_grad_enabled() and (x.requires_grad or (b is not None
                                                                  and b.requires_grad))
    y, _ = _filtered_lrelu_op(x, fu, fd, b, up, down, [px0, py0], [geo.region_h, geo.region_w],
                              [geo.out_h, geo.out_w], gain, slope, clamp, flip_filter,
                              save_signs, backend)
    return y


def filtered_lrelu_reference(x, fu=None, fd=None, b=None, up=1, down=1, padding=0, gain=SQRT2,
                             slope=0.2, clamp=None, flip_filter=False):
    """The definition in plain differentiable PyTorch (NVIDIA's four steps, the upsampled buffer
    at full size); autograd does the backward. Math in float32 (float64 for float64 x)."""
    t = x.to(compute_dtype(x))
    if b is not None:
        t = t + b.to(t.dtype).view(1, -1, 1, 1)
    v = upfirdn2d_reference(t, fu, up=up, padding=padding, flip_filter=flip_filter,
                            gain=up * up)
    a = F.leaky_relu(v, slope) * gain
    if clamp is not None:
        a = a.clamp(-clamp, clamp)
    y = upfirdn2d_reference(a, fd, down=down, flip_filter=flip_filter)
    return y.to(x.dtype).contiguous(memory_format=output_layout(x))


# ---------------------------------------------------------------- signs
def sign_codes(v: torch.Tensor, a: torch.Tensor, clamp: float) -> torch.Tensor:
    """Each element's code (uint8) from v and a = leaky_relu(v) * gain before the clamp:
    NEGATIVE if not v > 0, plus CLAMPED if |a| > clamp."""
    code = (v <= 0).to(torch.uint8)
    if clamp != math.inf:
        code |= (a.abs() > clamp).to(torch.uint8) << 1
    return code


def pack_signs(code: torch.Tensor) -> torch.Tensor:
    """Codes [N, C, RH, RW] (values 0..3) -> bytes [N, C, RH, ceil(RW / 4)]: the code of column s
    is bits 2 * (s % 4) and 2 * (s % 4) + 1 of byte s // 4 (unused bits 0)."""
    rw = code.shape[3]
    code = F.pad(code, [0, (-rw) % 4]) if rw % 4 else code
    n, c, rh, w4 = code.shape
    parts = code.reshape(n, c, rh, w4 // 4, 4).to(torch.int32)
    packed = parts[..., 0] | parts[..., 1] << 2 | parts[..., 2] << 4 | parts[..., 3] << 6
    return packed.to(torch.uint8)


def unpack_signs(signs: torch.Tensor, region_w: int) -> torch.Tensor:
    """The inverse of :func:`pack_signs`: codes [N, C, RH, region_w]."""
    s = signs.to(torch.int32).unsqueeze(-1)
    shifts = torch.arange(0, 8, 2, dtype=torch.int32, device=signs.device)
    codes = ((s >> shifts) & 3).flatten(3)
    return codes[..., :region_w].to(torch.uint8)


def sign_multiplier(code: torch.Tensor, gain: float, slope: float, dtype) -> torch.Tensor:
    """m = gain * (1 if positive, slope if not positive, 0 if clamped) from the codes."""
    m = torch.full(code.shape, gain, dtype=dtype, device=code.device)
    m.masked_fill_((code & NEGATIVE) != 0, gain * slope)
    return m.masked_fill_((code & CLAMPED) != 0, 0)


def empty_signs(x: torch.Tensor, region) -> torch.Tensor:
    n, c = x.shape[0], x.shape[1]
    return torch.empty((n, c, region[0], (region[1] + 3) // 4), dtype=torch.uint8,
                       device=x.device, memory_format=output_layout(x))


def no_signs(x: torch.Tensor) -> torch.Tensor:
    return torch.empty(0, dtype=torch.uint8, device=x.device)


# ---------------------------------------------------------------- reference backend
def _stage(z, f, up, down, pad, out_size, flip, gain, out_dtype):
    """One upfirdn2d pass (its ``Reference.forward``) with square factors and a leading pad; a
    long 1-D filter along x, then along y (K + K taps per pixel instead of K * K)."""
    if f.dim() == 2 or f.shape[0] <= SEPARABLE_ONE_PASS_TAPS:
        return UpFirDn2dReference.forward(z, f, f.dim() == 1, (up, up), (down, down), tuple(pad),
                                          tuple(out_size), flip, gain, out_dtype)
    t = UpFirDn2dReference.forward(z, f.view(1, -1), False, (up, 1), (down, 1), (pad[0], 0),
                                   (z.shape[2], out_size[1]), flip, 1.0, compute_dtype(z))
    return UpFirDn2dReference.forward(t, f.view(-1, 1), False, (1, up), (1, down), (0, pad[1]),
                                      tuple(out_size), flip, gain, out_dtype)


def _sample_chunks(n: int, plane_elements: int):
    """Slices of samples whose share of the region holds at most REF_CHUNK_ELEMENTS elements."""
    step = max(1, REF_CHUNK_ELEMENTS // max(plane_elements, 1))
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]


class Reference:
    @staticmethod
    def forward(x, fu, fd, b, up, down, pad, region, out_size, gain, slope, clamp, flip,
                out_dtype, save_signs):
        """The forward pass in plain PyTorch, a few samples at a time."""
        ct = compute_dtype(x)
        n, c = x.shape[0], x.shape[1]
        y = empty_output(x, out_size, out_dtype)
        signs = empty_signs(x, region) if save_signs else no_signs(x)
        for part in _sample_chunks(n, c * region[0] * region[1]):
            t = x[part].to(ct)
            if b is not None:
                t = t + b.to(ct).view(1, -1, 1, 1)
            v = _stage(t, fu, up, 1, pad, region, flip, float(up * up), ct)
            a = F.leaky_relu(v, slope) * gain
            if save_signs:
                signs[part] = pack_signs(sign_codes(v, a, clamp))
            if clamp != math.inf:
                a = a.clamp(-clamp, clamp)
            y[part] = _stage(a, fd, 1, down, (0, 0), out_size, flip, 1.0, out_dtype)
        return y, signs

    @staticmethod
    def masked(z, f1, f2, signs, up, down, pad1, pad2, region, out_size, gain, slope, scale,
               flip, out_dtype):
        """The masked pass in plain PyTorch, a few samples at a time."""
        ct = compute_dtype(z)
        n, c = z.shape[0], z.shape[1]
        y = empty_output(z, out_size, out_dtype)
        for part in _sample_chunks(n, c * region[0] * region[1]):
            v = _stage(z[part], f1, up, 1, pad1, region, flip, 1.0, ct)
            v = v * sign_multiplier(unpack_signs(signs[part], region[1]), gain, slope, ct)
            y[part] = _stage(v, f2, 1, down, pad2, out_size, flip, scale, out_dtype)
        return y


# ---------------------------------------------------------------- custom ops and autograd
@fused_op("filtered_lrelu")
def _filtered_lrelu_op(x: torch.Tensor, fu: torch.Tensor, fd: torch.Tensor,
                       b: Optional[torch.Tensor], up: int, down: int, pad: list[int],
                       region: list[int], out_size: list[int], gain: float, slope: float,
                       clamp: float, flip: bool, save_signs: bool,
                       backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    if x.numel() == 0:
        y = torch.zeros((x.shape[0], x.shape[1], *out_size), dtype=x.dtype, device=x.device)
        signs = empty_signs(x, region).zero_() if save_signs else no_signs(x)
        return y.contiguous(memory_format=output_layout(x)), signs
    bias = None if b is None else b.to(compute_dtype(x)).contiguous()
    return backends.get_impl("filtered_lrelu", backend).forward(
        x, fu, fd, bias, up, down, tuple(pad), tuple(region), tuple(out_size), gain, slope, clamp,
        flip, x.dtype, save_signs)


@_filtered_lrelu_op.register_fake
def _(x, fu, fd, b, up, down, pad, region, out_size, gain, slope, clamp, flip, save_signs,
      backend):
    return empty_output(x, out_size, x.dtype), empty_signs(x, region) if save_signs else no_signs(x)


def _setup_context(ctx, inputs, output):
    x, fu, fd, b, up, down, pad, region, out_size, gain, slope, clamp, flip, save_signs, \
        backend = inputs
    ctx.save_for_backward(fu, fd, output[1])
    ctx.args = (up, down, pad, region, gain, slope, flip, backend)
    ctx.in_size = [x.shape[2], x.shape[3]]
    ctx.in_dtype = x.dtype
    ctx.bias_dtype = None if b is None else b.dtype


def _backward(ctx, dy, _dsigns):
    fu, fd, signs = ctx.saved_tensors
    up, down, pad, region, gain, slope, flip, backend = ctx.args
    if signs.numel() == 0 and dy.numel() != 0:
        raise RuntimeError("filtered_lrelu: backward without saved signs (the forward ran "
                           "with save_signs=False)")
    (uw, uh), (dw, dh) = filter_taps(fu), filter_taps(fd)
    need_db = ctx.bias_dtype is not None and ctx.needs_input_grad[3]
    dx = _masked_op(dy, fd, fu, signs, down, up, [dw - 1, dh - 1],
                    [uw - 1 - pad[0], uh - 1 - pad[1]], region, ctx.in_size, gain, slope,
                    float(up * up), not flip, compute_dtype(dy) if need_db else ctx.in_dtype,
                    backend)
    db = dx.sum([0, 2, 3]).to(ctx.bias_dtype) if need_db else None
    if need_db:
        dx = dx.to(ctx.in_dtype)
    return (dx if ctx.needs_input_grad[0] else None, None, None, db) + (None,) * 11


_filtered_lrelu_op.register_autograd(_backward, setup_context=_setup_context)


@fused_op("filtered_lrelu_masked")
def _masked_op(z: torch.Tensor, f1: torch.Tensor, f2: torch.Tensor, signs: torch.Tensor,
               up: int, down: int, pad1: list[int], pad2: list[int], region: list[int],
               out_size: list[int], gain: float, slope: float, scale: float, flip: bool,
               out_dtype: torch.dtype, backend: str) -> torch.Tensor:
    if z.numel() == 0:
        return torch.zeros((z.shape[0], z.shape[1], *out_size), dtype=out_dtype,
                           device=z.device).contiguous(memory_format=output_layout(z))
    return backends.get_impl("filtered_lrelu", backend).masked(
        z, f1, f2, signs, up, down, tuple(pad1), tuple(pad2), tuple(region), tuple(out_size),
        gain, slope, scale, flip, out_dtype)


@_masked_op.register_fake
def _(z, f1, f2, signs, up, down, pad1, pad2, region, out_size, gain, slope, scale, flip,
      out_dtype, backend):
    return empty_output(z, out_size, out_dtype)


def _masked_setup_context(ctx, inputs, output):
    z, f1, f2, signs, up, down, pad1, pad2, region, out_size, gain, slope, scale, flip, \
        out_dtype, backend = inputs
    ctx.save_for_backward(f1, f2, signs)
    ctx.args = (up, down, pad1, pad2, region, gain, slope, scale, flip, backend)
    ctx.in_size = [z.shape[2], z.shape[3]]
    ctx.in_dtype = z.dtype


def _masked_backward(ctx, dy):
    """The adjoint: the masked pass with its stages swapped (module docstring)."""
    f1, f2, signs = ctx.saved_tensors
    up, down, pad1, pad2, region, gain, slope, scale, flip, backend = ctx.args
    (w1, h1), (w2, h2) = filter_taps(f1), filter_taps(f2)
    dz = _masked_op(dy, f2, f1, signs, down, up, [w2 - 1 - pad2[0], h2 - 1 - pad2[1]],
                    [w1 - 1 - pad1[0], h1 - 1 - pad1[1]], region, ctx.in_size, gain, slope,
                    scale, not flip, ctx.in_dtype, backend)
    return (dz,) + (None,) * 15


_masked_op.register_autograd(_masked_backward, setup_context=_masked_setup_context)
backends.register_impl("filtered_lrelu", "ref", Reference)
backends.register_impl("filtered_lrelu", backends.EAGER, filtered_lrelu_reference)
