"""bias_act: fused bias + activation (+ gain, clamp), with double backward.

Forward, with z = x + b (b broadcast along ``dim``)::

    y = clamp(act(z) * gain, -clamp, clamp)

The nine activations of NVIDIA's StyleGAN2/3 ``bias_act``, same definitions and defaults
(``alpha=None`` / ``gain=None`` take the activation's default)::

    act       act(z)                                   alpha  gain     saved for backward
    linear    z                                        0      1        nothing (mask with clamp)
    relu      max(z, 0)                                0      sqrt 2   uint8 mask
    lrelu     z if z > 0 else alpha * z                0.2    sqrt 2   uint8 mask
    tanh      tanh(z)                                  0      1        x and b
    sigmoid   1 / (1 + exp(-z))                        0      1        x and b
    elu       z if z > 0 else exp(z) - 1               0      1        x and b
    selu      s * (z if z > 0 else a * (exp(z) - 1))   0      1        x and b
    softplus  log(1 + exp(z)), z above 20              0      1        x and b
    swish     z * sigmoid(z)                           0      sqrt 2   x and b

(selu: a = 1.6732632423543772848, s = 1.0507009873554804934, as torch.nn.functional.selu;
softplus: PyTorch's, linear above 20.) alpha is used by lrelu only.

Backward::

    dx = dy * gain * act'(z) * [|act(z) * gain| <= clamp]
    db = sum of dx over every dim but ``dim``

Piecewise-linear activations (linear, relu, lrelu): act'(z) is 1 for z > 0 and alpha' (1 / 0 /
alpha) otherwise, so a uint8 ``mask`` with x's shape and layout (bit 0: z > 0, bit 1: the output
was clamped) is all the backward needs, or nothing for ``linear`` without clamp. dx is linear in dy
with a factor that is constant almost everywhere: the second derivative w.r.t. x is zero, and
double backward (R1) runs the same backward kernel on the incoming gradient.

Smooth activations (tanh ... swish): the op saves x and b (references, nothing written) and the
backward recomputes z = x + b and act'(z) in the kernel. Their double backward is not zero::

    d/d(dy) <g, dx> = the backward above applied to g (same kernel)
    d/dz    <g, dx> = g * dy * gain * act''(z) * [not clamped]          (PyTorch ops)

with g = ggx + ggb broadcast along ``dim``; d/dz goes to x and (summed) to b.

When no gradient is wanted (``torch.no_grad()``, inference, or neither x nor b requiring grad)
nothing is written but y: the forward moves one read of x and one write of y.

Backend interface (``register_impl("bias_act", name, impl)``)::

    impl.forward(x, b, dim, act, alpha, gain, clamp, save_mask) -> (y, mask)
        mask: written only when save_mask (the op sets it to needs_mask(act, clamp) and a
        gradient being wanted; never for smooth activations), else an empty uint8 tensor
    impl.backward(dy, mask, dim, act, alpha, gain, clamp, compute_db) -> (dx, db)
        piecewise-linear activations; db: float32 (float64 for float64 dy) of shape
        [x.shape[dim]], or empty if not compute_db
    impl.backward_smooth(dy, x, b, dim, act, gain, clamp, compute_db) -> (dx, db)
        smooth activations, from the forward's x and b; dx in dy's dtype and layout, db as above
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from . import backends
from ._common import channel_view, check_input, check_param, check_scalar, compute_dtype, like
from ._dispatch import fused_op

MASK_POSITIVE = 1
MASK_CLAMPED = 2
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
SOFTPLUS_THRESHOLD = 20.0  # PyTorch's softplus: z itself above it


@dataclass(frozen=True)
class Activation:
    code: int          # the kernels' compile-time activation number
    def_alpha: float   # alpha when the caller passes None (used by lrelu only)
    def_gain: float    # gain when the caller passes None
    smooth: bool       # True: the backward reads x and b; False: piecewise linear (mask)


ACTIVATIONS = {
    "linear": Activation(0, 0.0, 1.0, False),
    "relu": Activation(1, 0.0, math.sqrt(2), False),
    "lrelu": Activation(2, 0.2, math.sqrt(2), False),
    "tanh": Activation(3, 0.0, 1.0, True),
    "sigmoid": Activation(4, 0.0, 1.0, True),
    "elu": Activation(5, 0.0, 1.0, True),
    "selu": Activation(6, 0.0, 1.0, True),
    "softplus": Activation(7, 0.0, 1.0, True),
    "swish": Activation(8, 0.0, math.sqrt(2), True),
}


def activate(act: str, z: torch.Tensor, alpha: float) -> torch.Tensor:
    """act(z) in plain differentiable PyTorch (the table in the module docstring)."""
    if act == "linear":
        return z
    if act == "relu":
        return torch.relu(z)
    if act == "lrelu":
        return F.leaky_relu(z, alpha)
    if act == "tanh":
        return torch.tanh(z)
    if act == "sigmoid":
        return torch.sigmoid(z)
    if act == "elu":
        return F.elu(z)
    if act == "selu":
        return F.selu(z)
    if act == "softplus":
        return F.softplus(z, threshold=SOFTPLUS_THRESHOLD)
    if act == "swish":
        return z * torch.sigmoid(z)
    raise ValueError(f"act must be one of {', '.join(ACTIVATIONS)}, got {act!r}")


def smooth_derivative(act: str, z: torch.Tensor) -> torch.Tensor:
    """act'(z) of a smooth activation, elementwise, a fresh tensor (the backward's few ops;
    :func:`smooth_derivatives` has the same d1 beside act''(z))."""
    if act == "swish":
        s = torch.sigmoid(z)
        return (1 - s).mul_(z).add_(1).mul_(s)  # s * (1 + z * (1 - s))
    if act == "sigmoid":
        s = torch.sigmoid(z)
        return (1 - s).mul_(s)
    if act == "tanh":
        return torch.tanh(z).square_().neg_().add_(1)
    if act == "softplus":
        return torch.sigmoid(z).masked_fill_(z > SOFTPLUS_THRESHOLD, 1.0)
    negative = torch.exp(z.clamp(max=0.0))  # exp(z) where z <= 0 (never overflows)
    if act == "elu":
        return negative.masked_fill_(z > 0, 1.0)
    if act == "selu":
        return negative.mul_(SELU_SCALE * SELU_ALPHA).masked_fill_(z > 0, SELU_SCALE)
    raise ValueError(f"{act!r} is not a smooth activation")


def smooth_derivatives(act: str, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(act'(z), act''(z)) of a smooth activation, elementwise."""
    negative = torch.exp(z.clamp(max=0.0))  # exp(z) where z <= 0 (never overflows)
    if act == "tanh":
        t = torch.tanh(z)
        d1 = 1 - t * t
        return d1, -2 * t * d1
    if act == "elu":
        return torch.where(z > 0, 1.0, negative), torch.where(z > 0, 0.0, negative)
    if act == "selu":
        d2 = torch.where(z > 0, 0.0, SELU_SCALE * SELU_ALPHA * negative)
        return torch.where(z > 0, SELU_SCALE, d2), d2
    s = torch.sigmoid(z)
    ds = s * (1 - s)
    if act == "sigmoid":
        return ds, ds * (1 - 2 * s)
    if act == "softplus":
        linear = z > SOFTPLUS_THRESHOLD
        return torch.where(linear, 1.0, s), torch.where(linear, 0.0, ds)
    if act == "swish":
        return s * (1 + z * (1 - s)), ds * (2 + z * (1 - 2 * s))
    raise ValueError(f"{act!r} is not a smooth activation")


def resolve_defaults(act: str, alpha, gain) -> tuple[float, float]:
    """alpha and gain checked, None replaced by the activation's default."""
    spec = ACTIVATIONS[act]
    alpha = spec.def_alpha if alpha is None else check_scalar("alpha", alpha)
    gain = spec.def_gain if gain is None else check_scalar("gain", gain)
    return alpha, gain


def negative_slope(act: str, alpha: float) -> float:
    """Slope of a piecewise-linear ``act`` for z <= 0 (smooth activations: unused, 1)."""
    return alpha if act == "lrelu" else 0.0 if act == "relu" else 1.0


def needs_mask(act: str, clamp: Optional[float]) -> bool:
    """Whether the backward of ``act`` with ``clamp`` needs the mask (linear without clamp and the
    smooth activations, which read x and b instead: no)."""
    return not ACTIVATIONS[act].smooth and (act != "linear" or clamp is not None)


def grad_wanted(*tensors: Optional[torch.Tensor]) -> bool:
    """Whether autograd will record an op on ``tensors`` (grad mode on, one requires grad)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def empty_mask(x: torch.Tensor) -> torch.Tensor:
    """The mask when none is saved: an empty uint8 tensor on x's device."""
    return x.new_empty(0, dtype=torch.uint8)


def bias_act(x: torch.Tensor, b: Optional[torch.Tensor] = None, dim: int = 1, act: str = "lrelu",
             alpha: Optional[float] = None, gain: Optional[float] = None,
             clamp: Optional[float] = None) -> torch.Tensor:
    """``clamp(act(x + b) * gain, -clamp, clamp)`` in one pass; see the module docstring.

    Args:
        x: input of any shape, float16/bfloat16/float32/float64, any layout.
        b: bias of shape [x.shape[dim]] (x's dtype, or float32 for half x), or None.
        dim: the dimension of x that ``b`` runs along (negative counts from the end).
        act: one of linear, relu, lrelu, tanh, sigmoid, elu, selu, softplus, swish.
        alpha: negative slope of 'lrelu' (unused by the others); None: the default, 0.2.
        gain: output multiplier, applied before the clamp; None: the activation's default
            (sqrt 2 for relu, lrelu and swish, else 1).
        clamp: clamp the output to [-clamp, clamp] (>= 0), or None for no clamp.
    """
    check_input("x", x)
    if not isinstance(act, str) or act not in ACTIVATIONS:
        raise ValueError(f"act must be one of {', '.join(ACTIVATIONS)}, got {act!r}")
    alpha, gain = resolve_defaults(act, alpha, gain)
    if clamp is not None:
        clamp = check_scalar("clamp", clamp, minimum=0.0)
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"dim must be an int, got {type(dim).__name__}")
    if b is not None:
        if not -x.dim() <= dim < x.dim():
            raise ValueError(f"dim={dim} is out of range for x with {x.dim()} dims")
        dim = dim % x.dim()
        check_param("b", b, x, [(x.shape[dim],)], f"[x.shape[{dim}]] = [{x.shape[dim]}]")
    else:
        dim = 0
    backend = backends.resolve_backend("bias_act", x.device)
    if backend == backends.EAGER:
        return bias_act_reference(x, b, dim, act, alpha, gain, clamp)
    save_mask = needs_mask(act, clamp) and grad_wanted(x, b)
    y, _ = _bias_act_op(x, b, dim, act, alpha, gain, clamp, save_mask, backend)
    return y


def bias_act_reference(x, b=None, dim=1, act="lrelu", alpha=None, gain=None, clamp=None):
    """The definition of bias_act in plain differentiable PyTorch (autograd does the backward)."""
    alpha, gain = resolve_defaults(act, alpha, gain)
    z = x.to(compute_dtype(x))
    if b is not None:
        z = z + channel_view(b.to(z.dtype), x.dim(), dim % x.dim())
    z = activate(act, z, alpha) * gain
    if clamp is not None:
        z = z.clamp(-clamp, clamp)
    return z.to(x.dtype)


def _pre_activation(x, b, dim):
    """z = x + b in the compute dtype (b broadcast along dim)."""
    ct = compute_dtype(x)
    z = x if x.dtype == ct else x.to(ct)
    if b is None:
        return z
    return z + channel_view(b if b.dtype == ct else b.to(ct), x.dim(), dim)


def _unclamped(act, z, alpha, gain, clamp):
    """[|act(z) * gain| <= clamp] as z's dtype (1 everywhere without clamp)."""
    if clamp is None:
        return torch.ones((), dtype=z.dtype, device=z.device)
    return (activate(act, z, alpha).mul(gain).abs() <= clamp).to(z.dtype)


def _sum_but(t, dim):
    ndim = t.dim()
    if ndim == 1:
        return t.clone()  # sum(()) would sum all
    return t.sum(tuple(range(dim)) + tuple(range(dim + 1, ndim)))


def _fresh(t, source):
    """``t``, or a copy of it if it is ``source`` itself (an op never returns its input)."""
    return t.clone() if t is source else t


# ---------------------------------------------------------------- reference backend
class Reference:
    """Plain PyTorch, as few ops per call as the math allows (it is the default backend on CPU,
    where a call's cost is mostly per-op host time)."""

    @staticmethod
    def forward(x, b, dim, act, alpha, gain, clamp, save_mask):
        z = _pre_activation(x, b, dim)
        if ACTIVATIONS[act].smooth:
            y = activate(act, z, alpha) * gain
            return like(x, y if clamp is None else y.clamp(-clamp, clamp)), empty_mask(x)
        # z if z > 0 else z * slope (leaky_relu's own definition, for relu too)
        y = z if act == "linear" else F.leaky_relu(z, negative_slope(act, alpha))
        y = _fresh(y * gain if gain != 1 else y, x)
        if not save_mask:
            if clamp is not None:
                y = y.clamp_(-clamp, clamp)
            return like(x, y), empty_mask(x)
        if act == "linear":
            mask = torch.zeros_like(z, dtype=torch.uint8)
        else:
            mask = (z > 0).view(torch.uint8)  # bool is one byte, 0 or 1: bit 0 without a copy
        if clamp is not None:
            mask = mask | (y.abs() > clamp).view(torch.uint8) * MASK_CLAMPED
            y = y.clamp_(-clamp, clamp)
        return like(x, y), like(x, mask, torch.uint8)

    @staticmethod
    def backward(dy, mask, dim, act, alpha, gain, clamp, compute_db):
        ct = compute_dtype(dy)
        dz = dy if dy.dtype == ct else dy.to(ct)
        if gain != 1:
            dz = dz * gain
        slope = negative_slope(act, alpha)
        if mask.numel() > 0:
            if clamp is None:  # the mask is 0 or 1: a bool view of it
                if slope != 1:
                    dz = torch.where(mask.view(torch.bool), dz, dz * slope)
            else:
                dz = torch.where((mask & MASK_POSITIVE) > 0, dz, dz * slope)
                dz = dz.masked_fill((mask & MASK_CLAMPED) > 0, 0.0)
        dz = _fresh(dz, dy)
        db = _sum_but(dz, dim) if compute_db else dy.new_empty(0, dtype=ct)
        return like(dy, dz), db

    @staticmethod
    def backward_smooth(dy, x, b, dim, act, gain, clamp, compute_db):
        z = _pre_activation(x, b, dim)
        dz = smooth_derivative(act, z)  # fresh: scaled in place
        if gain != 1:
            dz.mul_(gain)
        if clamp is not None:
            dz.mul_(_unclamped(act, z, 0.0, gain, clamp))
        dz.mul_(dy)
        db = _sum_but(dz, dim) if compute_db else dy.new_empty(0, dtype=z.dtype)
        return like(dy, dz), db


# ---------------------------------------------------------------- custom ops and autograd
@fused_op("bias_act")
def _bias_act_op(x: torch.Tensor, b: Optional[torch.Tensor], dim: int, act: str, alpha: float,
                 gain: float, clamp: Optional[float], save_mask: bool, backend: str
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    return backends.get_impl("bias_act", backend).forward(x, b, dim, act, alpha, gain, clamp,
                                                          save_mask)


@_bias_act_op.register_fake
def _(x, b, dim, act, alpha, gain, clamp, save_mask, backend):
    mask = torch.empty_like(x, dtype=torch.uint8) if save_mask else empty_mask(x)
    return torch.empty_like(x), mask


@fused_op("bias_act_backward")
def _bias_act_backward_op(dy: torch.Tensor, mask: torch.Tensor, dim: int, act: str, alpha: float,
                          gain: float, clamp: Optional[float], compute_db: bool, backend: str
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    return backends.get_impl("bias_act", backend).backward(
        dy, mask, dim, act, alpha, gain, clamp, compute_db)


@_bias_act_backward_op.register_fake
def _(dy, mask, dim, act, alpha, gain, clamp, compute_db, backend):
    db_shape = (dy.shape[dim],) if compute_db else (0,)
    return torch.empty_like(dy), dy.new_empty(db_shape, dtype=compute_dtype(dy))


@fused_op("bias_act_backward_smooth")
def _bias_act_backward_smooth_op(dy: torch.Tensor, x: torch.Tensor, b: Optional[torch.Tensor],
                                 dim: int, act: str, gain: float, clamp: Optional[float],
                                 compute_db: bool, backend: str
                                 ) -> tuple[torch.Tensor, torch.Tensor]:
    return backends.get_impl("bias_act", backend).backward_smooth(
        dy, x, b, dim, act, gain, clamp, compute_db)


@_bias_act_backward_smooth_op.register_fake
def _(dy, x, b, dim, act, gain, clamp, compute_db, backend):
    db_shape = (dy.shape[dim],) if compute_db else (0,)
    return torch.empty_like(dy), dy.new_empty(db_shape, dtype=compute_dtype(dy))


def _setup_forward(ctx, inputs, output):
    x, b, dim, act, alpha, gain, clamp, save_mask, backend = inputs
    ctx.smooth = ACTIVATIONS[act].smooth
    ctx.save_for_backward(*((x, b) if ctx.smooth else (output[1],)))
    ctx.args = (dim, act, alpha, gain, clamp)
    ctx.backend = backend
    ctx.b_dtype = None if b is None else b.dtype


def _backward(ctx, dy, _dmask):
    compute_db = ctx.b_dtype is not None and ctx.needs_input_grad[1]
    dim, act, alpha, gain, clamp = ctx.args
    if ctx.smooth:
        x, b = ctx.saved_tensors
        dx, db = _bias_act_backward_smooth_op(dy, x, b, dim, act, gain, clamp, compute_db,
                                              ctx.backend)
    else:
        (mask,) = ctx.saved_tensors
        if mask.numel() == 0 and needs_mask(act, clamp) and dy.numel() > 0:
            raise RuntimeError("stylegan_fast.ops.bias_act: the forward ran without a gradient "
                               "wanted (no mask saved) but a backward was requested")
        dx, db = _bias_act_backward_op(dy, mask, *ctx.args, compute_db, ctx.backend)
    return (dx, (db.to(ctx.b_dtype) if compute_db else None), None, None, None, None, None, None,
            None)


def _setup_backward(ctx, inputs, output):
    dy, mask, dim, act, alpha, gain, clamp, compute_db, backend = inputs
    ctx.save_for_backward(mask)
    ctx.args = (dim, act, alpha, gain, clamp)
    ctx.backend = backend


def _double_backward(ctx, ddx, ddb):
    # (dx, db) = (f * dy, sum f * dy): both linear in dy with the mask's factor f, so
    # d/d(dy) <ddx, dx> + <ddb, db> = f * (ddx + ddb broadcast); d/d(x) is zero a.e.
    (mask,) = ctx.saved_tensors
    dim = ctx.args[0]
    if ddb.numel() > 0:  # autograd materializes unused output grads as zeros
        ddx = ddx + channel_view(ddb, ddx.dim(), dim).to(ddx.dtype)
    ddy, _ = _bias_act_backward_op(ddx, mask, *ctx.args, False, ctx.backend)
    return ddy, None, None, None, None, None, None, None, None


def _setup_backward_smooth(ctx, inputs, output):
    dy, x, b, dim, act, gain, clamp, compute_db, backend = inputs
    ctx.save_for_backward(dy, x, b)
    ctx.args = (dim, act, gain, clamp)
    ctx.backend = backend


def _double_backward_smooth(ctx, ddx, ddb):
    # dx = dy * gain * act'(z) * u (u: not clamped), db = sum dx: for g = ddx + ddb broadcast,
    # d/d(dy) = the same backward applied to g; d/dz = g * dy * gain * act''(z) * u.
    dy, x, b = ctx.saved_tensors
    dim, act, gain, clamp = ctx.args
    if ddb.numel() > 0:
        ddx = ddx + channel_view(ddb, ddx.dim(), dim).to(ddx.dtype)
    ddy = None
    if ctx.needs_input_grad[0]:
        ddy, _ = _bias_act_backward_smooth_op(ddx, x, b, dim, act, gain, clamp, False,
                                              ctx.backend)
    dx = db = None
    if ctx.needs_input_grad[1] or (b is not None and ctx.needs_input_grad[2]):
        z = _pre_activation(x, b, dim)
        _, d2 = smooth_derivatives(act, z)
        dz = ddx.to(z.dtype) * dy.to(z.dtype) * (d2 * gain * _unclamped(act, z, 0.0, gain, clamp))
        dx = like(x, dz) if ctx.needs_input_grad[1] else None
        if b is not None and ctx.needs_input_grad[2]:
            db = _sum_but(dz, dim).to(b.dtype)
    return ddy, dx, db, None, None, None, None, None, None


_bias_act_op.register_autograd(_backward, setup_context=_setup_forward)
_bias_act_backward_op.register_autograd(_double_backward, setup_context=_setup_backward)
_bias_act_backward_smooth_op.register_autograd(_double_backward_smooth,
                                               setup_context=_setup_backward_smooth)
backends.register_impl("bias_act", "ref", Reference)
backends.register_impl("bias_act", backends.EAGER, bias_act_reference)
