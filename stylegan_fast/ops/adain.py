"""adain: instance normalization over H, W per (n, c), then style modulation.

Forward, for x [N, C, H, W] and style_scale, style_bias [N, C]; means over the H*W plane::

    mean = E[x],  rstd = 1 / sqrt(E[(x - mean)^2] + eps)        (two-pass, float32)
                  (rstd = 0 for H*W == 1, where x - mean is identically 0)
    xhat = (x - mean) * rstd
    y = xhat * (style_scale + scale_offset) + style_bias

Backward, with g = dy * (style_scale + scale_offset)::

    dx = rstd * (g - E[g] - xhat * E[g * xhat])
    dstyle_scale = sum_{h,w} dy * xhat,     dstyle_bias = sum_{h,w} dy

Saved for backward: x, the float32 mean and rstd [N, C], and style_scale; xhat is recomputed.

Backend interface (``register_impl("adain", name, impl)``)::

    impl.forward(x, style_scale, style_bias, eps, scale_offset) -> (y, mean, rstd)
    impl.backward(dy, x, mean, rstd, style_scale, scale_offset) -> (dx, dstyle_scale, dstyle_bias)
        mean, rstd, dstyle_*: [N, C] float32 (float64 for float64 x)

Double backward is not supported (it raises a clear error), except on the ``eager`` backend,
where autograd differentiates ``adain_reference`` like any PyTorch code.
"""
from __future__ import annotations

import torch

from . import backends
from ._common import (
    as_dtype,
    check_input,
    check_param,
    check_scalar,
    compute_dtype,
    like,
    param_fits,
    scalar_tensor,
)
from ._dispatch import fused_op, no_double_backward

NCHW = "[N, C, H, W]"


def check_styles(style_scale, style_bias, x: torch.Tensor) -> None:
    n, c = x.shape[:2]
    if param_fits(style_scale, x, (n, c)) and param_fits(style_bias, x, (n, c)):
        return
    for name, t in (("style_scale", style_scale), ("style_bias", style_bias)):
        check_param(name, t, x, [(n, c)], f"[N, C] = [{n}, {c}]")


def adain(x: torch.Tensor, style_scale: torch.Tensor, style_bias: torch.Tensor,
          eps: float = 1e-8, scale_offset: float = 1.0) -> torch.Tensor:
    """``instance_norm(x) * (style_scale + scale_offset) + style_bias``; see the module docstring.

    Args:
        x: [N, C, H, W], float16/bfloat16/float32/float64, NCHW or channels_last.
        style_scale, style_bias: [N, C] (x's dtype, or float32 for half x).
        eps: added to the variance, finite and >= 0.
        scale_offset: added to style_scale (StyleGAN's ``y_s + 1``).
    """
    check_input("x", x, rank=4, layout=NCHW)
    check_styles(style_scale, style_bias, x)
    eps = check_scalar("eps", eps, minimum=0.0)
    scale_offset = check_scalar("scale_offset", scale_offset)
    backend = backends.resolve_backend("adain", x.device)
    if backend == backends.EAGER:
        return adain_reference(x, style_scale, style_bias, eps, scale_offset)
    return _adain_op(x, style_scale, style_bias, eps, scale_offset, backend)[0]


def adain_reference(x, style_scale, style_bias, eps=1e-8, scale_offset=1.0):
    """The definition of adain in plain differentiable PyTorch."""
    ct = compute_dtype(x)
    xf = x.to(ct)
    var, mean = torch.var_mean(xf, dim=(2, 3), correction=0, keepdim=True)
    xhat = (xf - mean) * torch.rsqrt(var + eps)
    scale = style_scale.to(ct)[:, :, None, None] + scale_offset
    return (xhat * scale + style_bias.to(ct)[:, :, None, None]).to(x.dtype)


# ---------------------------------------------------------------- reference backend
def _plane_mean(t: torch.Tensor) -> torch.Tensor:
    """Mean over H, W as [N, C, 1, 1]; 0 for empty planes (instead of NaN)."""
    return t.sum((2, 3), keepdim=True) / max(t.shape[2] * t.shape[3], 1)


def instance_stats(a: torch.Tensor, eps: float):
    """Two-pass mean and rstd of each (n, c) plane of ``a`` (already in the compute dtype).

    A one-pixel plane gets rstd = 0, as in every backend: its a - mean is identically 0, so its
    xhat and gradient are exactly 0 whatever rstd is, and 1 / sqrt(eps) would only scale the
    kernels' rounding of a - mean (fused multiply-adds) by ~1e4."""
    mean = _plane_mean(a)
    rstd = torch.rsqrt(_plane_mean((a - mean) ** 2) + eps)
    if a.shape[2] * a.shape[3] == 1:
        rstd = torch.zeros_like(rstd)
    return mean[:, :, 0, 0], rstd[:, :, 0, 0]


def modulate(a, mean, rstd, style_scale, style_bias, scale_offset):
    """(a - mean) * rstd * (style_scale + scale_offset) + style_bias, in a's dtype."""
    ct = a.dtype
    scale = (style_scale.to(ct) + scale_offset) * rstd
    return (a - mean[:, :, None, None]) * scale[:, :, None, None] + style_bias.to(ct)[:, :, None, None]


def modulate_backward(dy, a, mean, rstd, style_scale, scale_offset):
    """(da, dstyle_scale, dstyle_bias) of :func:`modulate`, in a's dtype."""
    ct = a.dtype
    g = dy.to(ct)
    xhat = (a - mean[:, :, None, None]) * rstd[:, :, None, None]
    dstyle_scale = (g * xhat).sum((2, 3))
    dstyle_bias = g.sum((2, 3))
    g = g * (style_scale.to(ct) + scale_offset)[:, :, None, None]
    da = rstd[:, :, None, None] * (g - _plane_mean(g) - xhat * _plane_mean(g * xhat))
    return da, dstyle_scale, dstyle_bias


_group_norm_backward = torch.ops.aten.native_group_norm_backward.default
def offset_scale(style_scale: torch.Tensor, scale_offset: float, dtype: torch.dtype):
    """style_scale + scale_offset in ``dtype`` (a new tensor)."""
    return torch.add(as_dtype(style_scale, dtype), scalar_tensor(scale_offset, dtype))


def grouped(a: torch.Tensor) -> bool:
    """Whether :func:`normalize` and :func:`normalized_backward` apply to ``a``: planes of at
    least two pixels (a one-pixel plane has rstd = 0, see :func:`instance_stats`), not empty."""
    n, c, h, w = a.shape
    return h * w > 1 and n * c > 0


def normalize(a: torch.Tensor, eps: float):
    """(xhat, mean [N, C], rstd [N, C]) of each (n, c) plane of ``a`` (in the compute dtype,
    :func:`grouped`): instance normalization is a group norm with one group per channel, one
    aten op (stable moments, rstd = 1 / sqrt(var + eps)). It runs on NCHW memory: its
    channels_last kernel sums in another order, and the reference gives the same bits for
    every layout."""
    n, c, h, w = a.shape
    return torch.native_group_norm(a.contiguous(), None, None, n, c, h * w, c, eps)


def modulate_normalized(xhat, style_scale, style_bias, scale_offset):
    """xhat * (style_scale + scale_offset) + style_bias, in xhat's dtype."""
    n, c = xhat.shape[:2]
    ct = xhat.dtype
    scale = offset_scale(style_scale, scale_offset, ct)
    return torch.addcmul(as_dtype(style_bias, ct).view(n, c, 1, 1), xhat, scale.view(n, c, 1, 1))


def normalized_backward(dy, a, mean, rstd, scale):
    """(da, dscale, dbias) of y = (a - mean) * rstd * scale + bias (scale, bias [N, C]; a in the
    compute dtype, :func:`grouped`): the backward of a group norm with a group (and an affine
    weight) per (n, c) plane, one aten op. It gets a - mean and a zero mean, so that it sums
    dy * (a - mean) instead of dy * a - mean * dy (which cancels for a large mean)."""
    n, c, h, w = a.shape
    planes = (1, n * c, h, w)
    centered = (a - mean.view(n, c, 1, 1)).reshape(planes)
    da, dscale, dbias = _group_norm_backward(
        as_dtype(dy, a.dtype).reshape(planes), centered, torch.zeros_like(mean), rstd,
        scale.reshape(-1), 1, n * c, h * w, n * c, [True, True, True])
    return da.view(n, c, h, w), dscale.view(n, c), dbias.view(n, c)


def adain_forward(a, style_scale, style_bias, eps, scale_offset):
    """(y, mean, rstd) of adain on ``a`` (in the compute dtype): one group norm and one addcmul
    where :func:`grouped`, else the plain statistics (one-pixel planes, empty tensors)."""
    if not grouped(a):
        mean, rstd = instance_stats(a, eps)
        return modulate(a, mean, rstd, style_scale, style_bias, scale_offset), mean, rstd
    xhat, mean, rstd = normalize(a, eps)
    return modulate_normalized(xhat, style_scale, style_bias, scale_offset), mean, rstd


class Reference:
    @staticmethod
    def forward(x, style_scale, style_bias, eps, scale_offset):
        y, mean, rstd = adain_forward(as_dtype(x, compute_dtype(x)), style_scale, style_bias, eps,
                                      scale_offset)
        return like(x, y), mean, rstd

    @staticmethod
    def backward(dy, x, mean, rstd, style_scale, scale_offset):
        a = as_dtype(x, compute_dtype(x))
        if not grouped(a):
            da, dscale, dbias = modulate_backward(dy, a, mean, rstd, style_scale, scale_offset)
        else:
            da, dscale, dbias = normalized_backward(
                dy, a, mean, rstd, offset_scale(style_scale, scale_offset, a.dtype))
        return like(x, da), dscale, dbias


# ---------------------------------------------------------------- custom ops and autograd
@fused_op("adain")
def _adain_op(x: torch.Tensor, style_scale: torch.Tensor, style_bias: torch.Tensor, eps: float,
              scale_offset: float, backend: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return backends.get_impl("adain", backend).forward(x, style_scale, style_bias, eps,
                                                       scale_offset)


def fake_stats(x: torch.Tensor):
    """Empty [N, C] mean and rstd in x's compute dtype (for fake kernels)."""
    shape = x.shape[:2]
    ct = compute_dtype(x)
    return x.new_empty(shape, dtype=ct), x.new_empty(shape, dtype=ct)


@_adain_op.register_fake
def _(x, style_scale, style_bias, eps, scale_offset, backend):
    return (torch.empty_like(x), *fake_stats(x))


@fused_op("adain_backward")
def _adain_backward_op(dy: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor,
                       style_scale: torch.Tensor, scale_offset: float, backend: str
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return backends.get_impl("adain", backend).backward(dy, x, mean, rstd, style_scale,
                                                        scale_offset)


@_adain_backward_op.register_fake
def _(dy, x, mean, rstd, style_scale, scale_offset, backend):
    return (torch.empty_like(x), *fake_stats(x))


def _setup_forward(ctx, inputs, output):
    x, style_scale, style_bias, eps, scale_offset, backend = inputs
    ctx.save_for_backward(x, output[1], output[2], style_scale)
    ctx.scale_offset, ctx.backend, ctx.bias_dtype = scale_offset, backend, style_bias.dtype


def _backward(ctx, dy, _dmean, _drstd):
    x, mean, rstd, style_scale = ctx.saved_tensors
    dx, dscale, dbias = _adain_backward_op(dy, x, mean, rstd, style_scale, ctx.scale_offset,
                                           ctx.backend)
    return (dx, as_dtype(dscale, style_scale.dtype), as_dtype(dbias, ctx.bias_dtype),
            None, None, None)


_adain_op.register_autograd(_backward, setup_context=_setup_forward)
no_double_backward(_adain_backward_op, "adain")
backends.register_impl("adain", "ref", Reference)
backends.register_impl("adain", backends.EAGER, adain_reference)
