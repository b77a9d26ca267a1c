"""Pixel norm (StyleGAN's mapping input) and the minibatch standard deviation feature (ProGAN D)."""
from __future__ import annotations

import torch
from torch import nn

from ..ops._common import compute_dtype


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``x / sqrt(mean_c(x^2) + eps)`` over dim 1 (the features), in float32."""
    xf = x.to(compute_dtype(x))
    return (xf * torch.rsqrt(xf.square().mean(dim=1, keepdim=True) + eps)).to(x.dtype)


class PixelNorm(nn.Module):
    """:func:`pixel_norm` as a module."""

    def __init__(self, eps: float = 1e-8):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_norm(x, self.eps)


def stddev_group_size(batch: int, group_size: int) -> int:
    """The group size actually used: the largest divisor of ``batch`` that is <= ``group_size``
    (``batch`` itself when smaller). E.g. 4 for a batch of 8, 3 for 6, 2 for 2, and 1 for a
    prime batch above ``group_size`` -- whose groups of one give the constant feature sqrt(eps)."""
    return max(g for g in range(1, min(group_size, batch) + 1) if batch % g == 0)


def minibatch_stddev(x: torch.Tensor, group_size: int = 4, num_features: int = 1,
                     eps: float = 1e-8) -> torch.Tensor:
    """Append ``num_features`` channels holding the minibatch standard deviation.

    With G = :func:`stddev_group_size` and M = N / G, sample i is in group i mod M (samples
    i, i + M, i + 2M, ...). The C channels are split into ``num_features`` consecutive slices;
    for each group and slice, in float32::

        s = mean over (channels of the slice, H, W) of sqrt(var_group(x) + eps)

    where var_group is the population variance over the G samples of the group. s is broadcast
    to [H, W] and concatenated after x's channels: the output is [N, C + num_features, H, W].
    """
    n, c, h, w = x.shape
    if c % num_features != 0:
        raise ValueError(f"channels ({c}) must be divisible by num_features ({num_features})")
    g = stddev_group_size(n, group_size)
    y = x.to(compute_dtype(x)).reshape(g, n // g, num_features, c // num_features, h, w)
    y = torch.sqrt(y.var(dim=0, correction=0) + eps)            # [M, F, C/F, H, W]
    y = y.mean(dim=(2, 3, 4))                                    # [M, F]
    y = y.repeat(g, 1)[:, :, None, None].expand(n, num_features, h, w)  # sample i -> row i mod M
    out = torch.cat([x, y.to(x.dtype)], dim=1)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        out = out.contiguous(memory_format=torch.channels_last)  # keep x's layout
    return out


class MinibatchStdDev(nn.Module):
    """:func:`minibatch_stddev` as a module (ProGAN/StyleGAN: group size 4, 1 feature)."""

    def __init__(self, group_size: int = 4, num_features: int = 1, eps: float = 1e-8):
        super().__init__()
        self.group_size, self.num_features, self.eps = group_size, num_features, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return minibatch_stddev(x, self.group_size, self.num_features, self.eps)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_features={self.num_features}"
