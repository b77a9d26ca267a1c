"""noise_inject: per-pixel noise scaled per channel.

Forward, for x [N, C, H, W], strength [C], noise [N or 1, 1, H, W]::

    y = x + noise * strength[c]

Backward::

    dx = dy
    dstrength[c] = sum_{n,h,w} dy * noise
    dnoise[n, 0, h, w] = sum_c dy * strength[c]      (also summed over n for a [1, 1, H, W] noise)

With ``noise=None`` a fresh N(0, 1) map [N, 1, H, W] is drawn inside the op from a seed taken
from torch's default generator (``torch.manual_seed`` reproduces it), and regenerated from the
same seed in backward instead of being stored.

Backend interface (``register_impl("noise_inject", name, impl)``)::

    impl.forward(x, strength, noise, seed) -> y          noise None: draw it from ``seed``
    impl.backward(dy, strength, noise, seed, compute_dnoise) -> (dstrength, dnoise)
        float32 (float64 for float64 dy); dnoise has noise's shape, or is empty

Double backward is not supported (it raises a clear error), except on the ``eager`` backend,
where autograd differentiates ``noise_inject_reference`` like any PyTorch code.
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
    compute_dtype,
    draw_noise_seed,
    like,
    param_fits,
    seeded_normal,
)
from ._dispatch import fused_op, no_double_backward

NCHW = "[N, C, H, W]"


def check_noise(strength, noise, x: torch.Tensor, strength_name: str) -> None:
    """Check a per-channel noise strength [C] and an optional noise map [N or 1, 1, H, W]."""
    n, c, h, w = x.shape
    if not param_fits(strength, x, (c,)):
        check_param(strength_name, strength, x, [(c,)], f"[C] = [{c}]")
    if noise is not None and not (param_fits(noise, x, (n, 1, h, w))
                                  or param_fits(noise, x, (1, 1, h, w))):
        check_param("noise", noise, x, [(n, 1, h, w), (1, 1, h, w)],
                    f"[N, 1, H, W] = [{n}, 1, {h}, {w}] or [1, 1, {h}, {w}]")


def noise_values(x: torch.Tensor, noise: Optional[torch.Tensor], seed: Optional[torch.Tensor]):
    """The noise map in the compute dtype: the given one, or the one ``seed`` generates."""
    if noise is not None:
        return as_dtype(noise, compute_dtype(x))
    n, _, h, w = x.shape
    return seeded_normal(seed, (n, 1, h, w), x)


def strength_grad(dt: torch.Tensor, noise_map: torch.Tensor) -> torch.Tensor:
    """dstrength[c] = sum_{n,h,w} dt * noise_map (noise_map [N or 1, 1, H, W], same dtype)."""
    n, c, h, w = dt.shape
    if n == 1 and dt.is_contiguous():  # one matrix-vector product: [C, H*W] @ [H*W]
        return torch.mv(dt.view(c, h * w), noise_map.reshape(h * w))
    return (dt * noise_map).sum((0, 2, 3))


def noise_grad(dt: torch.Tensor, strength: torch.Tensor, noise_shape) -> torch.Tensor:
    """dnoise = sum_c dt * strength[c], reduced to the noise's shape ([N or 1, 1, H, W])."""
    dnoise = (dt * as_dtype(strength, dt.dtype).view(-1, 1, 1)).sum(1, keepdim=True)
    if noise_shape[0] == 1 and dt.shape[0] != 1:
        dnoise = dnoise.sum(0, keepdim=True)
    return dnoise


def noise_inject(x: torch.Tensor, strength: torch.Tensor,
                 noise: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``x + noise * strength[c]``; ``noise=None`` draws N(0, 1) noise [N, 1, H, W] in the op.

    Args:
        x: [N, C, H, W], float16/bfloat16/float32/float64, NCHW or channels_last.
        strength: [C] (x's dtype, or float32 for half x).
        noise: [N, 1, H, W] or [1, 1, H, W] (shared by the batch), or None.
    """
    check_input("x", x, rank=4, layout=NCHW)
    check_noise(strength, noise, x, "strength")
    backend = backends.resolve_backend("noise_inject", x.device)
    if backend == backends.EAGER:
        return noise_inject_reference(x, strength, noise)
    seed = draw_noise_seed(x) if noise is None else None
    return _noise_inject_op(x, strength, noise, seed, backend)


def noise_inject_reference(x, strength, noise=None):
    """The definition of noise_inject in plain differentiable PyTorch."""
    ct = compute_dtype(x)
    if noise is None:
        noise = torch.randn((x.shape[0], 1, x.shape[2], x.shape[3]), device=x.device, dtype=ct)
    return (x.to(ct) + noise.to(ct) * channel_view(strength.to(ct), 4)).to(x.dtype)


# ---------------------------------------------------------------- reference backend
class Reference:
    @staticmethod
    def forward(x, strength, noise, seed):
        ct = compute_dtype(x)
        # x + noise * strength[c] in one op ([C, 1, 1] broadcasts like [1, C, 1, 1])
        y = torch.addcmul(as_dtype(x, ct), noise_values(x, noise, seed),
                          as_dtype(strength, ct).view(-1, 1, 1))
        return like(x, y)

    @staticmethod
    def backward(dy, strength, noise, seed, compute_dnoise):
        g = as_dtype(dy, compute_dtype(dy))
        dstrength = strength_grad(g, noise_values(dy, noise, seed))
        dnoise = noise_grad(g, strength, noise.shape) if compute_dnoise else g.new_empty(0)
        return dstrength, dnoise


# ---------------------------------------------------------------- custom ops and autograd
@fused_op("noise_inject")
def _noise_inject_op(x: torch.Tensor, strength: torch.Tensor, noise: Optional[torch.Tensor],
                     seed: Optional[torch.Tensor], backend: str) -> torch.Tensor:
    return backends.get_impl("noise_inject", backend).forward(x, strength, noise, seed)


@_noise_inject_op.register_fake
def _(x, strength, noise, seed, backend):
    return torch.empty_like(x)


@fused_op("noise_inject_backward")
def _noise_inject_backward_op(dy: torch.Tensor, strength: torch.Tensor,
                              noise: Optional[torch.Tensor], seed: Optional[torch.Tensor],
                              compute_dnoise: bool, backend: str
                              ) -> tuple[torch.Tensor, torch.Tensor]:
    return backends.get_impl("noise_inject", backend).backward(
        dy, strength, noise, seed, compute_dnoise)


@_noise_inject_backward_op.register_fake
def _(dy, strength, noise, seed, compute_dnoise, backend):
    ct = compute_dtype(dy)
    dnoise = noise.new_empty(noise.shape, dtype=ct) if compute_dnoise else dy.new_empty(0, dtype=ct)
    return dy.new_empty(strength.shape, dtype=ct), dnoise


def _setup_forward(ctx, inputs, output):
    x, strength, noise, seed, backend = inputs
    ctx.save_for_backward(strength, noise, seed)
    ctx.backend = backend


def _backward(ctx, dy):
    strength, noise, seed = ctx.saved_tensors
    needs = ctx.needs_input_grad
    dstrength = dnoise = None
    compute_dnoise = noise is not None and needs[2]
    if needs[1] or compute_dnoise:
        dstrength, dnoise = _noise_inject_backward_op(dy, strength, noise, seed, compute_dnoise,
                                                      ctx.backend)
        dstrength = as_dtype(dstrength, strength.dtype) if needs[1] else None
        dnoise = as_dtype(dnoise, noise.dtype) if compute_dnoise else None
    return dy, dstrength, dnoise, None, None


_noise_inject_op.register_autograd(_backward, setup_context=_setup_forward)
no_double_backward(_noise_inject_backward_op, "noise_inject")
backends.register_impl("noise_inject", "ref", Reference)
backends.register_impl("noise_inject", backends.EAGER, noise_inject_reference)
