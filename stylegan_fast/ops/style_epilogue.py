"""style_epilogue: StyleGAN's whole layer epilogue in one op.

Forward, for x [N, C, H, W]; bias, noise_strength [C]; style_scale, style_bias [N, C];
noise [N or 1, 1, H, W] (drawn in the op when None)::

    t = x + noise * noise_strength[c] + bias[c]          (each term only when given)
    a = lrelu(t, alpha) * gain
    mean, rstd = instance statistics of a over H, W      (two-pass, float32; rstd = 0 for
                                                          H*W == 1, see adain)
    y = (a - mean) * rstd * (style_scale + scale_offset) + style_bias

Backward: the adain backward gives da (and the style gradients), then::

    dt = da * gain * (1 if t > 0 else alpha)
    dx = dt,  dbias[c] = sum_{n,h,w} dt,  dnoise_strength[c] = sum_{n,h,w} dt * noise,
    dnoise = sum_c dt * noise_strength[c]

Saved for backward: x, the float32 mean/rstd [N, C] and the small tensors (plus the noise seed,
or the noise given); t, a and xhat are recomputed.

Backend interface (``register_impl("style_epilogue", name, impl)``)::

    impl.forward(x, bias, style_scale, style_bias, noise_strength, noise, seed,
                 alpha, gain, eps, scale_offset) -> (y, mean, rstd)
    impl.backward(dy, x, bias, style_scale, noise_strength, noise, seed, mean, rstd,
                  alpha, gain, scale_offset, compute_dnoise)
        -> (dx, dbias, dstyle_scale, dstyle_bias, dnoise_strength, dnoise)
        reductions in float32 (float64 for float64 x); dbias / dnoise_strength empty when that
        input is None, dnoise empty unless compute_dnoise

Double backward is not supported (it raises a clear error), except on the ``eager`` backend,
where autograd differentiates ``style_epilogue_reference`` like any PyTorch code.
"""
from __future__ import annotations

from typing import Optional

import torch

from . import backends
from ._common import (
    as_dtype,
    channel_view,
    check_input,
    check_param,
    check_scalar,
    compute_dtype,
    draw_noise_seed,
    like,
    param_fits,
    scalar_tensor,
)
from ._dispatch import fused_op, no_double_backward
from .adain import (
    adain_forward,
    adain_reference,
    check_styles,
    fake_stats,
    grouped,
    modulate_backward,
    normalized_backward,
    offset_scale,
)
from .noise_inject import check_noise, noise_grad, noise_values, strength_grad

_leaky_relu = torch._C._nn.leaky_relu
_leaky_relu_backward = torch.ops.aten.leaky_relu_backward.default


def style_epilogue(x: torch.Tensor, bias: Optional[torch.Tensor], style_scale: torch.Tensor,
                   style_bias: torch.Tensor, noise_strength: Optional[torch.Tensor] = None,
                   noise: Optional[torch.Tensor] = None, alpha: float = 0.2, gain: float = 1.0,
                   eps: float = 1e-8, scale_offset: float = 1.0) -> torch.Tensor:
    """Noise, bias, leaky ReLU, instance norm and style modulation in one op.

    Args:
        x: [N, C, H, W], float16/bfloat16/float32/float64, NCHW or channels_last.
        bias: [C] or None.  noise_strength: [C] or None (None: no noise at all).
        style_scale, style_bias: [N, C].
        noise: [N, 1, H, W] or [1, 1, H, W], or None to draw N(0, 1) noise in the op.
        alpha: leaky ReLU slope.  gain: multiplier after the activation.
        eps: added to the variance (finite, >= 0).  scale_offset: added to style_scale.
    Small tensors take x's dtype, or float32 for half x.
    """
    check_input("x", x, rank=4, layout="[N, C, H, W]")
    c = x.shape[1]
    if bias is not None and not param_fits(bias, x, (c,)):
        check_param("bias", bias, x, [(c,)], f"[C] = [{c}]")
    check_styles(style_scale, style_bias, x)
    if noise_strength is not None:
        check_noise(noise_strength, noise, x, "noise_strength")
    elif noise is not None:
        raise ValueError("noise was given but noise_strength is None; pass noise_strength too")
    alpha = check_scalar("alpha", alpha)
    gain = check_scalar("gain", gain)
    eps = check_scalar("eps", eps, minimum=0.0)
    scale_offset = check_scalar("scale_offset", scale_offset)
    backend = backends.resolve_backend("style_epilogue", x.device)
    if backend == backends.EAGER:
        return style_epilogue_reference(x, bias, style_scale, style_bias, noise_strength, noise,
                                        alpha, gain, eps, scale_offset)
    seed = draw_noise_seed(x) if noise_strength is not None and noise is None else None
    return _style_epilogue_op(x, bias, style_scale, style_bias, noise_strength, noise, seed,
                              alpha, gain, eps, scale_offset, backend)[0]


def style_epilogue_reference(x, bias, style_scale, style_bias, noise_strength=None, noise=None,
                             alpha=0.2, gain=1.0, eps=1e-8, scale_offset=1.0):
    """The definition of style_epilogue in plain differentiable PyTorch."""
    ct = compute_dtype(x)
    t = x.to(ct)
    if noise_strength is not None:
        if noise is None:
            noise = torch.randn((x.shape[0], 1, *x.shape[2:]), device=x.device, dtype=ct)
        t = t + noise.to(ct) * channel_view(noise_strength.to(ct), 4)
    if bias is not None:
        t = t + channel_view(bias.to(ct), 4)
    a = torch.nn.functional.leaky_relu(t, alpha) * gain
    return adain_reference(a, style_scale, style_bias, eps, scale_offset).to(x.dtype)


# ---------------------------------------------------------------- reference backend
def _pre_activation(x, bias, noise_strength, noise, seed):
    """t = x + noise * noise_strength + bias in the compute dtype, and the noise map used."""
    ct = compute_dtype(x)
    t = as_dtype(x, ct)
    noise_map = None
    if noise_strength is not None:
        noise_map = noise_values(x, noise, seed)
        t = torch.addcmul(t, noise_map, as_dtype(noise_strength, ct).view(-1, 1, 1))
    if bias is not None:
        t = t + as_dtype(bias, ct).view(-1, 1, 1)
    return t, noise_map


def _activation(t, alpha, gain):
    """a = lrelu(t, alpha) * gain (leaky_relu is t > 0 ? t : t * alpha, one op)."""
    a = _leaky_relu(t, alpha)
    return a if gain == 1.0 else a.mul_(scalar_tensor(gain, a.dtype))


class Reference:
    @staticmethod
    def forward(x, bias, style_scale, style_bias, noise_strength, noise, seed, alpha, gain, eps,
                scale_offset):
        t, _ = _pre_activation(x, bias, noise_strength, noise, seed)
        y, mean, rstd = adain_forward(_activation(t, alpha, gain), style_scale, style_bias, eps,
                                      scale_offset)
        return like(x, y), mean, rstd

    @staticmethod
    def backward(dy, x, bias, style_scale, noise_strength, noise, seed, mean, rstd, alpha, gain,
                 scale_offset, compute_dnoise):
        t, noise_map = _pre_activation(x, bias, noise_strength, noise, seed)
        a = _activation(t, alpha, gain)
        if not grouped(a):
            da, dscale, dsbias = modulate_backward(dy, a, mean, rstd, style_scale, scale_offset)
            if gain != 1.0:
                da = da * gain
        else:
            # da * gain straight from the norm's backward: the gain joins its per-plane scale
            # (which dscale and dsbias do not depend on)
            scale = offset_scale(style_scale, scale_offset, a.dtype)
            if gain != 1.0:
                scale = scale.mul_(scalar_tensor(gain, a.dtype))
            da, dscale, dsbias = normalized_backward(dy, a, mean, rstd, scale)
        dt = _leaky_relu_backward(da, t, alpha, False)  # t > 0 ? da : da * alpha
        dbias = dt.sum((0, 2, 3)) if bias is not None else dt.new_empty(0)
        dstrength = (strength_grad(dt, noise_map) if noise_strength is not None
                     else dt.new_empty(0))
        dnoise = (noise_grad(dt, noise_strength, noise.shape) if compute_dnoise
                  else dt.new_empty(0))
        return like(x, dt), dbias, dscale, dsbias, dstrength, dnoise


# ---------------------------------------------------------------- custom ops and autograd
@fused_op("style_epilogue")
def _style_epilogue_op(x: torch.Tensor, bias: Optional[torch.Tensor], style_scale: torch.Tensor,
                       style_bias: torch.Tensor, noise_strength: Optional[torch.Tensor],
                       noise: Optional[torch.Tensor], seed: Optional[torch.Tensor], alpha: float,
                       gain: float, eps: float, scale_offset: float, backend: str
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return backends.get_impl("style_epilogue", backend).forward(
        x, bias, style_scale, style_bias, noise_strength, noise, seed, alpha, gain, eps,
        scale_offset)


@_style_epilogue_op.register_fake
def _(x, bias, style_scale, style_bias, noise_strength, noise, seed, alpha, gain, eps,
      scale_offset, backend):
    return (torch.empty_like(x), *fake_stats(x))


@fused_op("style_epilogue_backward")
def _style_epilogue_backward_op(
        dy: torch.Tensor, x: torch.Tensor, bias: Optional[torch.Tensor], style_scale: torch.Tensor,
        noise_strength: Optional[torch.Tensor], noise: Optional[torch.Tensor],
        seed: Optional[torch.Tensor], mean: torch.Tensor, rstd: torch.Tensor, alpha: float,
        gain: float, scale_offset: float, compute_dnoise: bool, backend: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return backends.get_impl("style_epilogue", backend).backward(
        dy, x, bias, style_scale, noise_strength, noise, seed, mean, rstd, alpha, gain,
        scale_offset, compute_dnoise)


@_style_epilogue_backward_op.register_fake
def _(dy, x, bias, style_scale, noise_strength, noise, seed, mean, rstd, alpha, gain,
      scale_offset, compute_dnoise, backend):
    ct = compute_dtype(x)
    c = x.shape[1]

    def per_channel(present):
        return x.new_empty((c,) if present else (0,), dtype=ct)

    return (torch.empty_like(x), per_channel(bias is not None), *fake_stats(x),
            per_channel(noise_strength is not None),
            noise.new_empty(noise.shape, dtype=ct) if compute_dnoise else x.new_empty(0, dtype=ct))


def _setup_forward(ctx, inputs, output):
    (x, bias, style_scale, style_bias, noise_strength, noise, seed, alpha, gain, eps,
     scale_offset, backend) = inputs
    ctx.save_for_backward(x, bias, style_scale, noise_strength, noise, seed, output[1], output[2])
    ctx.args = (alpha, gain, scale_offset)
    ctx.backend = backend
    ctx.style_bias_dtype = style_bias.dtype


def _backward(ctx, dy, _dmean, _drstd):
    x, bias, style_scale, noise_strength, noise, seed, mean, rstd = ctx.saved_tensors
    compute_dnoise = noise is not None and ctx.needs_input_grad[5]
    dx, dbias, dscale, dsbias, dstrength, dnoise = _style_epilogue_backward_op(
        dy, x, bias, style_scale, noise_strength, noise, seed, mean, rstd, *ctx.args,
        compute_dnoise, ctx.backend)

    needs = ctx.needs_input_grad
    return (dx, as_dtype(dbias, bias.dtype) if needs[1] else None,
            as_dtype(dscale, style_scale.dtype) if needs[2] else None,
            as_dtype(dsbias, ctx.style_bias_dtype) if needs[3] else None,
            as_dtype(dstrength, noise_strength.dtype) if needs[4] else None,
            as_dtype(dnoise, noise.dtype) if needs[5] else None,
            None, None, None, None, None, None)


_style_epilogue_op.register_autograd(_backward, setup_context=_setup_forward)
no_double_backward(_style_epilogue_backward_op, "style_epilogue")
backends.register_impl("style_epilogue", "ref", Reference)
backends.register_impl("style_epilogue", backends.EAGER, style_epilogue_reference)
