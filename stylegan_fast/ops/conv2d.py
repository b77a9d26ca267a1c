"""conv2d and conv_transpose2d with a cheap derivative of every order (R1 at full speed).

``F.conv2d`` / ``F.conv_transpose2d``'s forward and semantics, with an autograd in which every
derivative, of any order, is again an ordinary convolution with the layer's own kernel or
PyTorch's weight-gradient kernel. For y = conv(x, w) + b (``conv`` a plain or transposed
convolution with stride s, padding p, dilation d, groups g, and for a transposed one output
padding q)::

    dx = conv*(dy, w)            the opposite kind (plain <-> transposed), same w, s, p, d, g;
                                 a plain conv's adjoint takes the output padding
                                 q = in - (out - 1) s + 2 p - d (k - 1) - 1 per axis (< s),
                                 a transposed conv's adjoint (a plain conv) gives
                                 in + floor(q / s) rows and columns, the first in are dx
    dw = wgrad(dy, x)            aten.convolution_backward with only the weight in its mask
    db = sum of dy over N, H, W

``conv*`` is this same op, so its own backward follows the rules above. ``wgrad`` is bilinear,
and its backward is again made of this op::

    d<wgrad(dy, x), g>/d dy = conv(x, g)        d<wgrad(dy, x), g>/dx = conv*(dy, g)

A backward that builds no graph (no ``create_graph``, the usual first-order step) computes dx, dw
and db at once with one ``aten.convolution_backward`` call (the kernels ``F.conv2d``'s own
backward runs); when w needs no gradient (x is then not saved), dx = conv*(dy, w) and db the
sum.

PyTorch's own double backward of a convolution forms the weight-gradient terms as a convolution
whose *kernel is the whole feature map* ([C, N, H, W] "kernels"): on an H200 those took 76% of a
256 px training step with R1 (benchmarks/results/2026-11-30-h200-run2). NVIDIA's
``conv2d_gradfix`` solved this the same way but switches itself off on torch >= 1.11.

R1's first pass (``autograd.grad(D(x).sum(), x, create_graph=True)``) needs no weight gradient:
inside :func:`no_weight_gradients` the backward returns none (a custom autograd function cannot
tell on its own that only the input gradient was asked for), and the penalty's own backward still
reaches every weight through the graph of dx = conv*(dy, w).

Under ``torch.autocast`` the operands are cast as autocast casts ``F.conv2d``'s. Arguments that
``F.conv2d`` rejects go to it unchanged (its own error; arguments left at their defaults are not
passed, so the message reads as for a call with keywords); a weight or bias of another dtype than
x raises a TypeError naming both. ``torch.compile(fullgraph=True)`` traces first-order use (its
backward is the one-call path). Eager reads the weight-gradient switch when the backward runs; a
compiled function when its forward runs (dynamo traces the backward with the forward, and
recompiles when the switch changes).
"""
from __future__ import annotations

import contextlib
import numbers
from typing import Iterator, NamedTuple, Optional

import torch
import torch.nn.functional as F

_weight_gradients_disabled = 0  # > 0 inside no_weight_gradients() (global: autograd runs
#                                 CUDA backward passes on its own threads)


@contextlib.contextmanager
def no_weight_gradients(disable: bool = True) -> Iterator[None]:
    """While active (and ``disable``), this module's convolutions return no weight gradient from
    backward: wrap R1's (or path length's) ``autograd.grad(..., create_graph=True)`` w.r.t. the
    images in it. Nests; NVIDIA's ``no_weight_gradients`` semantics."""
    global _weight_gradients_disabled
    if not disable:
        yield
        return
    _weight_gradients_disabled += 1
    try:
        yield
    finally:
        _weight_gradients_disabled -= 1


def weight_gradients_disabled() -> bool:
    """Whether a :func:`no_weight_gradients` block is active."""
    return _weight_gradients_disabled > 0


class ConvSpec(NamedTuple):
    """One convolution's hyper-parameters, each a pair (y, x) except ``transposed``/``groups``."""
    transposed: bool
    stride: tuple
    padding: tuple
    output_padding: tuple
    dilation: tuple
    groups: int

    def adjoint(self, in_size, out_size, weight_shape) -> "ConvSpec":
        """The conv of the opposite kind that maps out_size back to in_size with the same
        kernel: a plain conv's adjoint is a transposed conv with the output padding that
        restores in_size; a transposed conv's is a plain conv (its result may be longer than
        in_size when output_padding >= stride, see :func:`_fit`)."""
        if self.transposed:
            return self._replace(transposed=False, output_padding=(0, 0))
        kernel = weight_shape[2:]
        output_padding = tuple(
            i - (o - 1) * s + 2 * p - d * (k - 1) - 1
            for i, o, s, p, d, k in zip(in_size, out_size, self.stride, self.padding,
                                        self.dilation, kernel))
        return self._replace(transposed=True, output_padding=output_padding)

    def backward(self, dy, x, weight, output_mask, bias_size=None):
        """(dx, dw, db) of y = conv(x, weight) + b for output gradient dy, those in
        ``output_mask`` only: PyTorch's convolution backward (not differentiable cheaply)."""
        return torch.ops.aten.convolution_backward(
            dy, x, weight, bias_size, list(self.stride), list(self.padding),
            list(self.dilation), self.transposed, list(self.output_padding), self.groups,
            output_mask)


def _run(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
         spec: ConvSpec) -> torch.Tensor:
    if spec.transposed:
        return F.conv_transpose2d(x, weight, bias, spec.stride, spec.padding,
                                  spec.output_padding, spec.groups, spec.dilation)
    return F.conv2d(x, weight, bias, spec.stride, spec.padding, spec.dilation, spec.groups)


def _fit(t: torch.Tensor, size) -> torch.Tensor:
    """The first size[0] rows and size[1] columns of t [N, C, H, W] (the plain-conv adjoint of a
    transposed conv whose output padding reaches its stride overshoots; the rest is no pixel
    of the input)."""
    if tuple(t.shape[2:]) == tuple(size):
        return t
    return t[:, :, :size[0], :size[1]]


class _Conv(torch.autograd.Function):
    """y = conv(x, w) + b with the backward of the module docstring."""

    @staticmethod
    def forward(ctx, x, weight, bias, spec):
        ctx.spec = spec
        ctx.in_size = tuple(x.shape[2:])
        ctx.has_bias = bias is not None
        needs_x_grad, needs_weight_grad = ctx.needs_input_grad[:2]
        ctx.save_for_backward(x if needs_weight_grad else None,
                              weight if needs_x_grad or needs_weight_grad else None)
        return _run(x, weight, bias, spec)

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        spec = ctx.spec
        need_dx = ctx.needs_input_grad[0]
        need_dw = ctx.needs_input_grad[1] and not weight_gradients_disabled()
        need_db = ctx.has_bias and ctx.needs_input_grad[2]
        if not torch.is_grad_enabled() and x is not None:  # first order: F.conv2d's kernels
            dx, dw, db = spec.backward(dy, x, weight, [need_dx, need_dw, need_db],
                                       [dy.shape[1]] if need_db else None)
            return dx, dw, db, None
        dx = dw = db = None
        if need_dx:
            adjoint = spec.adjoint(ctx.in_size, dy.shape[2:], weight.shape)
            dx = _fit(_Conv.apply(dy, weight, None, adjoint), ctx.in_size)
        if need_dw:
            dw = _ConvWeightGrad.apply(dy, x, weight.detach(), spec)
        if need_db:
            db = dy.sum(dim=(0, 2, 3))
        return dx, dw, db, None


class _ConvWeightGrad(torch.autograd.Function):
    """dw = wgrad(dy, x): the weight gradient of conv(x, w) for output gradient dy; ``weight``
    gives only its shape and layout (no gradient flows to it)."""

    @staticmethod
    def forward(ctx, dy, x, weight, spec):
        ctx.spec = spec
        ctx.save_for_backward(dy, x)
        return spec.backward(dy, x, weight, [False, True, False])[1]

    @staticmethod
    def backward(ctx, ddw):
        dy, x = ctx.saved_tensors
        spec = ctx.spec
        d_dy = d_x = None
        if ctx.needs_input_grad[0]:
            d_dy = _Conv.apply(x, ddw, None, spec)
        if ctx.needs_input_grad[1]:
            adjoint = spec.adjoint(x.shape[2:], dy.shape[2:], ddw.shape)
            d_x = _fit(_Conv.apply(dy, ddw, None, adjoint), x.shape[2:])
        return d_dy, d_x, None, None


# ---------------------------------------------------------------- public entry points
def _int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _pair(value) -> Optional[tuple]:
    """An int or a 1-/2-sequence of ints as (y, x); None for anything else (F.conv2d then says
    what is wrong with it, or takes it)."""
    if _int(value):
        return (int(value),) * 2
    if isinstance(value, (list, tuple)) and len(value) in (1, 2) and all(map(_int, value)):
        return tuple(int(v) for v in value) * (3 - len(value))
    return None


_DEFAULTS = dict(bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1)


def _torch_call(fn, x, weight, **kwargs) -> torch.Tensor:
    """fn(x, weight, **kwargs) without the arguments left at their defaults: F.conv2d's own
    result or error, the latter worded as for a call with keywords."""
    given = {name: value for name, value in kwargs.items()
             if not (value is None if _DEFAULTS[name] is None
                     else type(value) is int and value == _DEFAULTS[name])}
    return fn(x, weight, **given)


def _well_formed(x, weight, bias, groups) -> bool:
    """Tensors of conv2d's ranks and an int groups (their values are F.conv2d's to check)."""
    return (isinstance(x, torch.Tensor) and isinstance(weight, torch.Tensor)
            and (bias is None or isinstance(bias, torch.Tensor))
            and x.dim() in (3, 4) and weight.dim() == 4 and _int(groups))


def _autocast(x, weight, bias):
    """The operands as autocast would pass them to F.conv2d (unchanged outside autocast)."""
    device_type = x.device.type
    if (not torch.amp.is_autocast_available(device_type)
            or not torch.is_autocast_enabled(device_type)):
        return x, weight, bias
    dtype = torch.get_autocast_dtype(device_type)

    def cast(t):
        castable = (torch.float16, torch.bfloat16, torch.float32)
        return t.to(dtype) if t is not None and t.dtype in castable else t
    return cast(x), cast(weight), cast(bias)


def _check_dtypes(x, weight, bias, op: str) -> None:
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.dtype != x.dtype:
            raise TypeError(f"{op}: {name} has dtype {t.dtype} but x (input) has {x.dtype}; "
                            f"pass both in one dtype (torch.autocast casts both for you)")


def _apply(x, weight, bias, spec: ConvSpec, op: str) -> torch.Tensor:
    x, weight, bias = _autocast(x, weight, bias)
    _check_dtypes(x, weight, bias, op)
    if x.dim() == 3:  # unbatched [C, H, W], as F.conv2d takes it
        return _Conv.apply(x.unsqueeze(0), weight, bias, spec).squeeze(0)
    return _Conv.apply(x, weight, bias, spec)


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None, stride=1,
           padding=0, dilation=1, groups: int = 1) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, stride, padding, dilation, groups)`` with the cheap derivatives
    of the module docstring. x [N, C, H, W] or [C, H, W]; weight [O, C / groups, KH, KW];
    padding an int, a pair, 'valid' or 'same' (stride 1; an odd total d (k - 1) puts the extra
    pixel at the end, as F.conv2d does). The output's layout is F.conv2d's."""
    stride_, padding_, dilation_ = _pair(stride), _pair(padding), _pair(dilation)
    padding_string = padding if isinstance(padding, str) else None
    if padding_string == "valid":
        padding_ = (0, 0)
    elif (padding_string == "same" and stride_ == (1, 1) and dilation_ is not None
          and _well_formed(x, weight, bias, groups)):
        total = [d * (k - 1) for d, k in zip(dilation_, weight.shape[2:])]
        padding_ = tuple(t // 2 for t in total)
        if any(t % 2 for t in total):  # the extra pixel at the end, then no padding
            x = F.pad(x, [padding_[1], total[1] - padding_[1],
                          padding_[0], total[0] - padding_[0]])
            padding_ = (0, 0)
    if None in (stride_, padding_, dilation_) or not _well_formed(x, weight, bias, groups):
        return _torch_call(F.conv2d, x, weight, bias=bias, stride=stride, padding=padding,
                           dilation=dilation, groups=groups)
    spec = ConvSpec(False, stride_, padding_, (0, 0), dilation_, int(groups))
    return _apply(x, weight, bias, spec, "conv2d")


def conv_transpose2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
                     stride=1, padding=0, output_padding=0, groups: int = 1,
                     dilation=1) -> torch.Tensor:
    """``F.conv_transpose2d(x, weight, bias, stride, padding, output_padding, groups, dilation)``
    (its argument order) with the cheap derivatives of the module docstring. weight
    [C, O / groups, KH, KW]."""
    pairs = [_pair(v) for v in (stride, padding, output_padding, dilation)]
    if None in pairs or not _well_formed(x, weight, bias, groups):
        return _torch_call(F.conv_transpose2d, x, weight, bias=bias, stride=stride,
                           padding=padding, output_padding=output_padding, groups=groups,
                           dilation=dilation)
    stride_, padding_, output_padding_, dilation_ = pairs
    spec = ConvSpec(True, stride_, padding_, output_padding_, dilation_, int(groups))
    return _apply(x, weight, bias, spec, "conv_transpose2d")
