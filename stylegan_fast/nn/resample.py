"""Blur, nearest x2 upsampling, 2x2 box downsampling, and the fused resampling convolutions.

Blur filter: f = [1, 2, 1]^T [1, 2, 1] / 16, applied depthwise with zero padding 1::

    blur(x)[n, c] = x[n, c] * f          (same size)

The blur and the box downsampling run on :func:`stylegan_fast.ops.upfirdn2d` (a linear op with a
constant filter: its backward saves nothing, where a convolution or ``avg_pool2d`` keeps its whole
input), except on the ``eager`` backend, which keeps their plain-PyTorch formulation (a
single-channel convolution, ``avg_pool2d``) as the baseline. Nearest upsampling stays
``F.interpolate`` on every backend: it saves nothing either, and is one cheap kernel.

Fused up-conv: nearest x2 upsampling followed by a k x k convolution (zero padding k // 2) equals a
stride-2 transposed convolution with the (k+1) x (k+1) kernel obtained by flipping w, padding it by
one on every side and summing its four 1-pixel shifts. Fused down-conv: a k x k convolution (padding
k // 2) followed by 2x2 box averaging equals a stride-2 convolution with the (k+1) x (k+1) kernel
obtained by padding w and summing its four shifts, times 0.25. Both hold exactly for odd k.

Every convolution runs as :func:`stylegan_fast.ops.conv2d` / ``conv_transpose2d`` (the same
function, with derivatives of every order built from convolutions with the layer's own kernel:
R1's double backward without PyTorch's feature-map-sized kernels), except on the ``eager``
backend, which keeps ``F.conv2d`` / ``F.conv_transpose2d`` as the baseline.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from ..ops.backends import EAGER, eager_requested, resolve_backend

BLUR_TAPS = (1.0, 2.0, 1.0)


def blur_filter(channels: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """The normalized [1, 2, 1] x [1, 2, 1] filter as a depthwise weight [channels, 1, 3, 3]."""
    taps = torch.tensor(BLUR_TAPS, dtype=dtype, device=device)
    kernel = torch.outer(taps, taps)
    kernel = kernel / kernel.sum()
    return kernel.expand(channels, 1, 3, 3)


def blur2d(x: torch.Tensor, fir: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Depthwise [1, 2, 1] x [1, 2, 1] / 16 blur of x [N, C, H, W], zero padding, same size.

    ``fir``: the [3, 3] filter (``blur_filter(1)[0, 0]``) already on x's device, as :class:`Blur`
    keeps it; made here when None. Runs as ``upfirdn2d`` (see the module docstring); on the
    ``eager`` backend as one single-channel convolution over the N*C planes, not a grouped
    convolution: PyTorch differentiates a grouped convolution twice (R1's gradient penalty) with
    one convolution per group, which made ~2000 cuDNN calls and 97% of the GPU time of a 256 px
    training step (H200, benchmarks/results/). The layout of x is kept."""
    if fir is None:
        fir = blur_filter(1, device=x.device)[0, 0]
    if resolve_backend("upfirdn2d", x.device) != EAGER:
        return ops.upfirdn2d(x, fir.float(), padding=1)
    n, c, h, w = x.shape
    kernel = fir.to(x.dtype).view(1, 1, 3, 3)
    y = F.conv2d(x.reshape(n * c, 1, h, w), kernel, padding=1).view(n, c, h, w)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        y = y.contiguous(memory_format=torch.channels_last)
    return y


def upsample2d(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour x2 upsampling: out[..., i, j] = x[..., i // 2, j // 2]."""
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


def downsample2d(x: torch.Tensor) -> torch.Tensor:
    """2x2 box averaging (stride 2): out[..., i, j] = mean of x[..., 2i:2i+2, 2j:2j+2] (an odd
    last row or column is dropped). ``upfirdn2d`` with a 2x2 box filter, ``avg_pool2d`` on the
    ``eager`` backend."""
    if resolve_backend("upfirdn2d", x.device) != EAGER:
        box = torch.full((2, 2), 0.25, dtype=torch.float32, device=x.device)
        return ops.upfirdn2d(x, box, down=2)
    return F.avg_pool2d(x, 2)


def conv2d(x: torch.Tensor, weight: torch.Tensor, **kwargs) -> torch.Tensor:
    """:func:`stylegan_fast.ops.conv2d` (``F.conv2d`` on the ``eager`` backend)."""
    return (F.conv2d if eager_requested() else ops.conv2d)(x, weight, **kwargs)


def conv_transpose2d(x: torch.Tensor, weight: torch.Tensor, **kwargs) -> torch.Tensor:
    """:func:`stylegan_fast.ops.conv_transpose2d` (``F.conv_transpose2d`` on ``eager``)."""
    return (F.conv_transpose2d if eager_requested() else ops.conv_transpose2d)(x, weight,
                                                                               **kwargs)


def _sum_of_shifts(weight: torch.Tensor) -> torch.Tensor:
    """Pad [.., k, k] by one on every side and sum its four 1-pixel shifts -> [.., k+1, k+1]."""
    w = F.pad(weight, (1, 1, 1, 1))
    return w[..., 1:, 1:] + w[..., :-1, 1:] + w[..., 1:, :-1] + w[..., :-1, :-1]


def fused_upconv_weight(weight: torch.Tensor) -> torch.Tensor:
    """The transposed-conv weight [in, out, k+1, k+1] equal to nearest x2 upsampling followed by
    conv2d with ``weight`` [out, in, k, k] (padding k // 2); see the module docstring."""
    return _sum_of_shifts(weight.flip(-1, -2)).transpose(0, 1)


def fused_downconv_weight(weight: torch.Tensor) -> torch.Tensor:
    """The stride-2 conv weight [out, in, k+1, k+1] equal to conv2d with ``weight`` (padding
    k // 2) followed by 2x2 box averaging; see the module docstring."""
    return _sum_of_shifts(weight) * 0.25


def upconv2d(x: torch.Tensor, weight: torch.Tensor, fused: bool) -> torch.Tensor:
    """conv2d(upsample2d(x), weight, padding=k // 2), as one transposed conv when ``fused``."""
    k = weight.shape[-1]
    if fused:
        return conv_transpose2d(x, fused_upconv_weight(weight), stride=2, padding=k // 2)
    return conv2d(upsample2d(x), weight, padding=k // 2)


def downconv2d(x: torch.Tensor, weight: torch.Tensor, fused: bool) -> torch.Tensor:
    """downsample2d(conv2d(x, weight, padding=k // 2)), as one stride-2 conv when ``fused``."""
    k = weight.shape[-1]
    if fused:
        return conv2d(x, fused_downconv_weight(weight), stride=2, padding=k // 2)
    return downsample2d(conv2d(x, weight, padding=k // 2))


class Blur(nn.Module):
    """:func:`blur2d` as a module (no parameters; the filter is a buffer outside the state dict,
    so that it moves with the module and is made once)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("fir", blur_filter(1)[0, 0].clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return blur2d(x, self.fir)


class Upsample(nn.Module):
    """:func:`upsample2d` as a module (no parameters)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upsample2d(x)


class Downsample(nn.Module):
    """:func:`downsample2d` as a module (no parameters)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return downsample2d(x)
