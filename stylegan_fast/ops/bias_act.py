"""bias_act: fused bias + activation (+ gain, clamp), with double backward.

Forward, with z = x + b (b broadcast along ``dim``)::

    y = clamp(act(z) * gain, -clamp, clamp)          act in {linear, relu, lrelu}

Backward (act is piecewise linear, so the derivative is a per-element factor)::

    dx = dy * gain * slope(z) * [|act(z) * gain| <= clamp]      slope = 1 if z > 0 else alpha'
    db = sum of dx over every dim but ``dim``                    alpha' = 1 / 0 / alpha

dx is linear in dy with a factor that is constant almost everywhere, so the second derivative
w.r.t. x is zero and the derivative of (dx, db) w.r.t. dy is the same factor: double backward
(R1) runs the same backward kernel on the incoming gradient.

Saved for backward: only a uint8 ``mask`` with x's shape and layout (bit 0: z > 0, bit 1: the
output was clamped), or nothing (an empty tensor) for ``linear`` without clamp. When no gradient
is wanted (``torch.no_grad()``, inference, or neither x nor b requiring grad) the mask is not
written at all: the forward then moves one read of x and one write of y.

Backend interface (``register_impl("bias_act", name, impl)``)::

    impl.forward(x, b, dim, act, alpha, gain, clamp, save_mask) -> (y, mask)
        mask: written only when save_mask (the op sets it to needs_mask(act, clamp) and a
        gradient being wanted), else an empty uint8 tensor
    impl.backward(dy, mask, dim, act, alpha, gain, clamp, compute_db) -> (dx, db)
        db: float32 (float64 for float64 dy) of shape [x.shape[dim]], or empty if not compute_db
"""
from __future__ import annotations

from typing import Optional

import torch

from . import backends
from ._common import channel_view, check_input, check_param, check_scalar, compute_dtype, like

ACTIVATIONS = ("linear", "relu", "lrelu")
MASK_POSITIVE = 1
MASK_CLAMPED = 2


def negative_slope(act: str, alpha: float) -> float:
    """Slope of ``act`` for z <= 0."""
    return {"linear": 1.0, "relu": 0.0, "lrelu": alpha}[act]


def needs_mask(act: str, clamp: Optional[float]) -> bool:
    """Whether the backward of ``act`` with ``clamp`` needs the mask (linear without clamp: no)."""
    return act != "linear" or clamp is not None


def grad_wanted(*tensors: Optional[torch.Tensor]) -> bool:
    """Whether autograd will record an op on ``tensors`` (grad mode on, one requires grad)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def empty_mask(x: torch.Tensor) -> torch.Tensor:
    """The mask when none is saved: an empty uint8 tensor on x's device."""
    return x.new_empty(0, dtype=torch.uint8)


def bias_act(x: torch.Tensor, b: Optional[torch.Tensor] = None, dim: int = 1, act: str = "lrelu",
             alpha: float = 0.2, gain: float = 1.0, clamp: Optional[float] = None) -> torch.Tensor:
    """``clamp(act(x + b) * gain, -clamp, clamp)`` in one pass; see the module docstring.

    Args:
        x: input of any shape, float16/bfloat16/float32/float64, any layout.
        b: bias of shape [x.shape[dim]] (x's dtype, or float32 for half x), or None.
        dim: the dimension of x that ``b`` runs along (negative counts from the end).
        act: 'linear', 'relu' or 'lrelu'.
        alpha: negative slope of 'lrelu' (unused by the others).
        gain: output multiplier, applied before the clamp.
        clamp: clamp the output to [-clamp, clamp] (>= 0), or None for no clamp.
    """
    check_input("x", x)
    if not isinstance(act, str) or act not in ACTIVATIONS:
        raise ValueError(f"act must be one of {', '.join(ACTIVATIONS)}, got {act!r}")
    alpha = check_scalar("alpha", alpha)
    gain = check_scalar("gain", gain)
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


def bias_act_reference(x, b=None, dim=1, act="lrelu", alpha=0.2, gain=1.0, clamp=None):
    """The definition of bias_act in plain differentiable PyTorch (autograd does the backward)."""
    z = x.to(compute_dtype(x))
    if b is not None:
        z = z + channel_view(b.to(z.dtype), x.dim(), dim % x.dim())
    if act == "relu":
        z = torch.relu(z)
    elif act == "lrelu":
        z = torch.nn.functional.leaky_relu(z, alpha)
    z = z * gain
    if clamp is not None:
        z = z.clamp(-clamp, clamp)
    return z.to(x.dtype)


# ---------------------------------------------------------------- reference backend
class Reference:
    @staticmethod
    def forward(x, b, dim, act, alpha, gain, clamp, save_mask):
        ct = compute_dtype(x)
        z = x.to(ct)
        if b is not None:
            z = z + channel_view(b.to(ct), x.dim(), dim)
        y = torch.where(z > 0, z, z * negative_slope(act, alpha)) * gain
        if not save_mask:
            if clamp is not None:
                y = y.clamp(-clamp, clamp)
            return like(x, y), empty_mask(x)
        mask = (z > 0).to(torch.uint8) if act != "linear" else torch.zeros_like(z, dtype=torch.uint8)
        if clamp is not None:
            mask |= (y.abs() > clamp).to(torch.uint8) * MASK_CLAMPED
            y = y.clamp(-clamp, clamp)
        return like(x, y), like(x, mask, torch.uint8)

    @staticmethod
    def backward(dy, mask, dim, act, alpha, gain, clamp, compute_db):
        ct = compute_dtype(dy)
        dz = dy.to(ct) * gain
        if mask.numel() > 0:
            dz = torch.where((mask & MASK_POSITIVE) > 0, dz, dz * negative_slope(act, alpha))
            if clamp is not None:
                dz = dz.masked_fill((mask & MASK_CLAMPED) > 0, 0.0)
        db = dy.new_empty(0, dtype=ct)
        if compute_db:
            other_dims = [d for d in range(dy.dim()) if d != dim]
            db = dz.sum(other_dims) if other_dims else dz.clone()  # sum([]) would sum all
        return like(dy, dz), db


# ---------------------------------------------------------------- custom ops and autograd
@torch.library.custom_op("stylegan_fast::bias_act", mutates_args=())
def _bias_act_op(x: torch.Tensor, b: Optional[torch.Tensor], dim: int, act: str, alpha: float,
                 gain: float, clamp: Optional[float], save_mask: bool, backend: str
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    return backends.get_impl("bias_act", backend).forward(x, b, dim, act, alpha, gain, clamp,
                                                          save_mask)


@_bias_act_op.register_fake
def _(x, b, dim, act, alpha, gain, clamp, save_mask, backend):
    mask = torch.empty_like(x, dtype=torch.uint8) if save_mask else empty_mask(x)
    return torch.empty_like(x), mask


@torch.library.custom_op("stylegan_fast::bias_act_backward", mutates_args=())
def _bias_act_backward_op(dy: torch.Tensor, mask: torch.Tensor, dim: int, act: str, alpha: float,
                          gain: float, clamp: Optional[float], compute_db: bool, backend: str
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    return backends.get_impl("bias_act", backend).backward(
        dy, mask, dim, act, alpha, gain, clamp, compute_db)


@_bias_act_backward_op.register_fake
def _(dy, mask, dim, act, alpha, gain, clamp, compute_db, backend):
    db_shape = (dy.shape[dim],) if compute_db else (0,)
    return torch.empty_like(dy), dy.new_empty(db_shape, dtype=compute_dtype(dy))


def _setup_forward(ctx, inputs, output):
    x, b, dim, act, alpha, gain, clamp, save_mask, backend = inputs
    ctx.save_for_backward(output[1])
    ctx.args = (dim, act, alpha, gain, clamp)
    ctx.backend = backend
    ctx.b_dtype = None if b is None else b.dtype


def _backward(ctx, dy, _dmask):
    (mask,) = ctx.saved_tensors
    if mask.numel() == 0 and needs_mask(ctx.args[1], ctx.args[4]) and dy.numel() > 0:
        raise RuntimeError("stylegan_fast.ops.bias_act: the forward ran without a gradient "
                           "wanted (no mask saved) but a backward was requested")
    compute_db = ctx.b_dtype is not None and ctx.needs_input_grad[1]
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


_bias_act_op.register_autograd(_backward, setup_context=_setup_forward)
_bias_act_backward_op.register_autograd(_double_backward, setup_context=_setup_backward)
backends.register_impl("bias_act", "ref", Reference)
backends.register_impl("bias_act", backends.EAGER, bias_act_reference)
