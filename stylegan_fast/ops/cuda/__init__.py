"""The ``cuda`` backend: the hand-written CUDA kernels of ``csrc/`` behind each op's backend
interface (see the op modules' docstrings; each class here mirrors that op's ``Reference``).

The registry imports this package only after :func:`.build.probe` found the extension loadable
(built ahead of time, cached, or JIT-compiled because ``cuda`` was requested explicitly); importing
it compiles nothing. The wrappers below only bring tensors into a layout the kernels take:

* 4-D ops run natively on NCHW-contiguous and channels_last tensors; any other strides are made
  contiguous first and the result copied back into ``torch.empty_like(x)``'s layout (``like``);
* ``bias_act`` runs natively on any dense tensor (its channel is ``(offset // x.stride(dim)) % C``);
* ``upfirdn2d`` reads x through its strides (any layout, no copy) and writes a y allocated in
  ``upfirdn2d.output_layout(x)`` (NCHW or channels_last) and the requested dtype;
* ``filtered_lrelu`` likewise reads x (dy, and the signs in the masked pass) through their strides
  and writes y (and the forward's signs) allocated here in ``output_layout(x)``;
* small tensors (bias, strengths, styles, noise) go in the math dtype (float32, float64 for
  float64 x), contiguous; the generated noise map comes from the extension's Philox generator, a
  pure function of (seed, n, h, w), so forward and backward of both ops draw the same values.
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import backends
from .._common import compute_dtype, like
from ..bias_act import ACTIVATIONS, negative_slope
from ..filtered_lrelu import empty_signs, no_signs
from ..upfirdn2d import empty_output
from . import build

__all__ = ["AdainCuda", "BiasActCuda", "FilteredLReluCuda", "NoiseInjectCuda", "StyleEpilogueCuda",
           "UpFirDn2dCuda", "build"]


def _ext():
    """The loaded extension (the probe loaded it before selecting this backend)."""
    return build.load()


def _dense(t: torch.Tensor) -> bool:
    """Non-overlapping and dense (then ``empty_like`` keeps its strides)."""
    if t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last):
        return True
    return t.stride() == torch.empty_like(t, device="meta").stride()


def _layout4(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """(x in a layout the kernels take, whether that is channels_last)."""
    if x.is_contiguous():
        return x, False
    if x.is_contiguous(memory_format=torch.channels_last):
        return x, True
    return x.contiguous(), False


def _as_layout(t: torch.Tensor, nhwc: bool) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last if nhwc else torch.contiguous_format)


def _small(t: Optional[torch.Tensor], x: torch.Tensor) -> Optional[torch.Tensor]:
    return None if t is None else t.to(compute_dtype(x)).contiguous()


def _noise_map(x: torch.Tensor, noise: Optional[torch.Tensor], seed: Optional[torch.Tensor]):
    """The given noise in the math dtype, or the map [N, 1, H, W] that ``seed`` generates."""
    if noise is not None:
        return _small(noise, x)
    return _ext().generate_noise(int(seed.reshape(-1)[0]), x)


class BiasActCuda:
    @staticmethod
    def forward(x, b, dim, act, alpha, gain, clamp, save_mask):
        xd = x if _dense(x) else x.contiguous()
        channels = x.shape[dim] if b is not None else 1
        inner = xd.stride(dim) if channels > 1 else 1
        y, mask = _ext().bias_act_forward(
            xd, _small(b, x), channels, inner, ACTIVATIONS[act].code, negative_slope(act, alpha),
            gain, -1.0 if clamp is None else clamp, save_mask)
        if xd is not x:
            y = like(x, y)
            if save_mask:
                mask = like(x, mask, torch.uint8)
        return y, mask

    @staticmethod
    def backward(dy, mask, dim, act, alpha, gain, clamp, compute_db):
        if mask.numel() > 0:  # work in the mask's (x's) layout
            dyd = dy if dy.stride() == mask.stride() else \
                torch.empty_like(mask, dtype=dy.dtype).copy_(dy)
        else:
            dyd = dy if _dense(dy) else dy.contiguous()
        channels = dyd.shape[dim] if compute_db else 1
        inner = dyd.stride(dim) if channels > 1 else 1
        dx, db = _ext().bias_act_backward(dyd, mask, channels, inner,
                                          negative_slope(act, alpha), gain, compute_db)
        return like(dy, dx), db

    @staticmethod
    def backward_smooth(dy, x, b, dim, act, gain, clamp, compute_db):
        xd = x if _dense(x) else x.contiguous()
        # work in x's layout (and dtype): dx comes back in it
        dyd = dy if dy.stride() == xd.stride() and dy.dtype == xd.dtype else \
            torch.empty_like(xd).copy_(dy)
        channels = x.shape[dim] if b is not None or compute_db else 1
        inner = xd.stride(dim) if channels > 1 else 1
        dx, db = _ext().bias_act_backward_smooth(
            dyd, xd, _small(b, x), channels, inner, ACTIVATIONS[act].code, gain,
            -1.0 if clamp is None else clamp, compute_db)
        return like(dy, dx), db


class NoiseInjectCuda:
    @staticmethod
    def forward(x, strength, noise, seed):
        xd, nhwc = _layout4(x)
        y = _ext().noise_inject_forward(xd, _small(strength, x), _noise_map(x, noise, seed), nhwc)
        return like(x, y)

    @staticmethod
    def backward(dy, strength, noise, seed, compute_dnoise):
        dyd, nhwc = _layout4(dy)
        return _ext().noise_inject_backward(dyd, _small(strength, dy),
                                            _noise_map(dy, noise, seed), nhwc, compute_dnoise)


class AdainCuda:
    @staticmethod
    def forward(x, style_scale, style_bias, eps, scale_offset):
        xd, nhwc = _layout4(x)
        y, mean, rstd = _ext().adain_forward(xd, _small(style_scale, x), _small(style_bias, x),
                                             eps, scale_offset, nhwc)
        return like(x, y), mean, rstd

    @staticmethod
    def backward(dy, x, mean, rstd, style_scale, scale_offset):
        xd, nhwc = _layout4(x)
        dx, dscale, dbias = _ext().adain_backward(
            _as_layout(dy, nhwc), xd, _small(mean, x), _small(rstd, x), _small(style_scale, x),
            scale_offset, nhwc)
        return like(x, dx), dscale, dbias


class StyleEpilogueCuda:
    @staticmethod
    def forward(x, bias, style_scale, style_bias, noise_strength, noise, seed, alpha, gain, eps,
                scale_offset):
        xd, nhwc = _layout4(x)
        noise_map = _noise_map(x, noise, seed) if noise_strength is not None else None
        y, mean, rstd = _ext().style_epilogue_forward(
            xd, _small(bias, x), _small(style_scale, x), _small(style_bias, x),
            _small(noise_strength, x), noise_map, alpha, gain, eps, scale_offset, nhwc)
        return like(x, y), mean, rstd

    @staticmethod
    def backward(dy, x, bias, style_scale, noise_strength, noise, seed, mean, rstd, alpha, gain,
                 scale_offset, compute_dnoise):
        if compute_dnoise and x.dtype in (torch.float16, torch.bfloat16):
            # dnoise sums dt over the channels: from float32 dt, as ref does, not from the dx the
            # kernel rounds to x's dtype. The float32 kernel does the same float32 arithmetic on
            # the same values; dx is rounded once. Costs a copy, only when noise needs a grad.
            dx, *grads = StyleEpilogueCuda.backward(
                dy.float(), x.float(), bias, style_scale, noise_strength, noise, seed, mean, rstd,
                alpha, gain, scale_offset, compute_dnoise)
            return (dx.to(x.dtype), *grads)
        xd, nhwc = _layout4(x)
        noise_map = _noise_map(x, noise, seed) if noise_strength is not None else None
        dx, dbias, dscale, dsbias, dstrength, dnoise = _ext().style_epilogue_backward(
            _as_layout(dy, nhwc), xd, _small(bias, x), _small(style_scale, x),
            _small(noise_strength, x), noise_map, _small(mean, x), _small(rstd, x), alpha, gain,
            scale_offset, nhwc, compute_dnoise)
        return like(x, dx), dbias, dscale, dsbias, dstrength, dnoise


class UpFirDn2dCuda:
    @staticmethod
    def forward(x, f, separable, up, down, pad, out_size, flip, gain, out_dtype):
        """One pass (``stylegan_fast/ops/upfirdn2d.py``'s docstring); ``Reference.forward``'s
        interface. x is read through its strides (no copy); y is allocated here in the op's
        output layout and dtype."""
        y = empty_output(x, out_size, out_dtype)
        _ext().upfirdn2d_forward(x, f.contiguous(), y, separable, tuple(up), tuple(down),
                                 tuple(pad), flip, float(gain))
        return y


class FilteredLReluCuda:
    """Both passes of ``stylegan_fast/ops/filtered_lrelu.py`` in one fused kernel each
    (``csrc/filtered_lrelu.cu``); ``Reference``'s interface. Inputs are read through their strides
    (no copy); y and the signs are allocated here in ``output_layout`` of the input."""

    @staticmethod
    def forward(x, fu, fd, b, up, down, pad, region, out_size, gain, slope, clamp, flip,
                out_dtype, save_signs):
        y = empty_output(x, out_size, out_dtype)
        signs = empty_signs(x, region) if save_signs else no_signs(x)
        _ext().filtered_lrelu_forward(x, fu.contiguous(), fd.contiguous(), _small(b, x), y, signs,
                                      int(up), int(down), tuple(pad), tuple(region), float(gain),
                                      float(slope), float(clamp), bool(flip))
        return y, signs

    @staticmethod
    def masked(z, f1, f2, signs, up, down, pad1, pad2, region, out_size, gain, slope, scale,
               flip, out_dtype):
        y = empty_output(z, out_size, out_dtype)
        _ext().filtered_lrelu_masked(z, f1.contiguous(), f2.contiguous(), signs, y, int(up),
                                     int(down), tuple(pad1), tuple(pad2), tuple(region),
                                     float(gain), float(slope), float(scale), bool(flip))
        return y


backends.register_impl("bias_act", "cuda", BiasActCuda)
backends.register_impl("noise_inject", "cuda", NoiseInjectCuda)
backends.register_impl("adain", "cuda", AdainCuda)
backends.register_impl("style_epilogue", "cuda", StyleEpilogueCuda)
backends.register_impl("upfirdn2d", "cuda", UpFirDn2dCuda)
backends.register_impl("filtered_lrelu", "cuda", FilteredLReluCuda)
