"""Equalized-learning-rate dense and convolution layers (Karras et al., ProGAN / StyleGAN).

Parameters are stored at unit scale and scaled at run time, so that Adam's per-parameter step
size acts equally on every layer::

    weight ~ N(0, 1 / lrmul^2)  (stored)        w = weight * gain / sqrt(fan_in) * lrmul
    bias   = 0                  (stored)        b = bias * lrmul
    y = act(x @ w^T + b)  or  act(conv(x, w) + b)

``fan_in`` is in_features, or in_channels * k * k. The bias and activation go through
:func:`stylegan_fast.ops.bias_act` (dim 1, leaky-ReLU slope 0.2, no output gain), so second
derivatives (R1) flow through the fused op; the convolutions run as
:func:`stylegan_fast.nn.resample.conv2d` (cheap derivatives of every order, see there).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import bias_act
from .resample import conv2d, downconv2d, upconv2d

LRELU_SLOPE = 0.2
SQRT2 = math.sqrt(2.0)


def apply_bias_act(y: torch.Tensor, bias: Optional[torch.Tensor], lrmul: float,
                   act: str) -> torch.Tensor:
    """``act(y + bias * lrmul)`` along dim 1 through :func:`bias_act`; nothing for a linear
    layer without bias."""
    if bias is None and act == "linear":
        return y
    return bias_act(y, None if bias is None else bias * lrmul, dim=1, act=act, alpha=LRELU_SLOPE,
                    gain=1.0)


class Linear(nn.Module):
    """Equalized-lr dense layer ``act(x @ (weight * weight_scale)^T + bias * lrmul)``.

    Args:
        in_features, out_features: sizes of x [N, in_features] and y [N, out_features].
        bias: learn a bias (stored zero).
        act: 'linear', 'relu' or 'lrelu' (slope 0.2).
        gain: sqrt(2) for layers followed by leaky ReLU, 1 for linear outputs.
        lrmul: learning-rate multiplier (0.01 in StyleGAN's mapping network).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 act: str = "linear", gain: float = SQRT2, lrmul: float = 1.0):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.act, self.lrmul = act, lrmul
        self.weight_scale = gain / math.sqrt(in_features) * lrmul
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lrmul)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight * self.weight_scale)
        return apply_bias_act(y, self.bias, self.lrmul, self.act)

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, bias={self.bias is not None}, "
                f"act={self.act}, weight_scale={self.weight_scale:.4g}, lrmul={self.lrmul}")


class Conv2d(nn.Module):
    """Equalized-lr k x k convolution (stride 1, same padding), optionally resampling by 2.

    ``up``: nearest x2 upsampling before the conv; ``down``: 2x2 box averaging after it. With
    ``fused_resample`` the pair runs as one stride-2 (transposed) conv with a (k+1) x (k+1) kernel
    built from the same weight (:mod:`.resample`), which gives the same result. Bias and
    activation as in :class:`Linear`; ``fan_in = in_channels * k * k`` in every mode.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 act: str = "linear", gain: float = SQRT2, lrmul: float = 1.0, up: bool = False,
                 down: bool = False, fused_resample: bool = False):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        if up and down:
            raise ValueError("a Conv2d resamples up or down, not both")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = kernel_size
        self.act, self.lrmul = act, lrmul
        self.up, self.down, self.fused_resample = up, down, fused_resample
        self.weight_scale = gain / math.sqrt(in_channels * kernel_size ** 2) * lrmul
        self.weight = nn.Parameter(
            torch.randn(out_channels, in_channels, kernel_size, kernel_size) / lrmul)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.weight_scale
        if self.up:
            y = upconv2d(x, w, self.fused_resample)
        elif self.down:
            y = downconv2d(x, w, self.fused_resample)
        else:
            y = conv2d(x, w, padding=self.kernel_size // 2)
        return apply_bias_act(y, self.bias, self.lrmul, self.act)

    def extra_repr(self) -> str:
        resample = "up" if self.up else "down" if self.down else "none"
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"bias={self.bias is not None}, act={self.act}, resample={resample}, "
                f"fused={self.fused_resample}, weight_scale={self.weight_scale:.4g}")
