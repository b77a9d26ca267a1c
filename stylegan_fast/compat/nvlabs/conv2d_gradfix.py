"""``torch_utils.ops.conv2d_gradfix`` of NVIDIA's StyleGAN2-ADA / StyleGAN3, on stylegan_fast's ops.

``conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1)``,
``conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
dilation=1)`` and ``no_weight_gradients(disable=True)`` (callable as StyleGAN2-ADA's
``no_weight_gradients()`` and as StyleGAN3's ``no_weight_gradients(disable)``), with NVIDIA's
module flags:

``enabled`` (default False, as theirs; their training loop sets it True)
    read at each call: while False the convolutions are plain ``F.conv2d`` /
    ``F.conv_transpose2d``; while True they are :func:`stylegan_fast.ops.conv2d` /
    :func:`~stylegan_fast.ops.conv_transpose2d`, whose derivatives of every order are ordinary
    convolutions with the layer's own kernel, on any device. That is what NVIDIA's custom op did
    before it switched itself off on torch >= 1.11, leaving R1 on PyTorch's double backward, which
    convolves with feature-map-sized kernels.
``weight_gradients_disabled``
    True inside ``no_weight_gradients()``. The context also enters
    :func:`stylegan_fast.ops.no_weight_gradients`, which is what makes the backward of our
    convolutions return no weight gradient (setting the flag by hand does not).

:func:`functions_reading` makes the three functions for any module holding those flags: this
module's own are bound to this module, and :func:`stylegan_fast.compat.nvlabs.install` binds them
to NVIDIA's ``torch_utils.ops.conv2d_gradfix``, so its ``enabled``, set by NVIDIA's training loop,
stays the switch. Written from the public description of NVIDIA's API; none of its code is used.
"""
from __future__ import annotations

import contextlib
import functools
import sys
import types
from typing import Callable, Iterator, NamedTuple, Optional

import torch
import torch.nn.functional as F

from ... import ops

enabled = False                     # NVIDIA's default: the plain convolutions until set True
weight_gradients_disabled = False   # True inside no_weight_gradients()


class GradfixFunctions(NamedTuple):
    """conv2d_gradfix's three functions, bound to one module's flags."""
    conv2d: Callable
    conv_transpose2d: Callable
    no_weight_gradients: Callable


@functools.lru_cache(maxsize=None)  # one set per module: install() twice finds them in place
def functions_reading(flags: types.ModuleType) -> GradfixFunctions:
    """conv2d, conv_transpose2d and no_weight_gradients with NVIDIA's signatures that read (and,
    for no_weight_gradients, set) ``flags.enabled`` and ``flags.weight_gradients_disabled``."""

    def conv2d(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
               stride=1, padding=0, dilation=1, groups: int = 1) -> torch.Tensor:
        """``F.conv2d``; while ``enabled``, with derivatives of every order that convolve with
        the layer's own kernel (:func:`stylegan_fast.ops.conv2d`)."""
        conv = ops.conv2d if flags.enabled else F.conv2d
        return conv(input, weight, bias, stride, padding, dilation, groups)

    def conv_transpose2d(input: torch.Tensor, weight: torch.Tensor,
                         bias: Optional[torch.Tensor] = None, stride=1, padding=0,
                         output_padding=0, groups: int = 1, dilation=1) -> torch.Tensor:
        """``F.conv_transpose2d``; while ``enabled``, with derivatives of every order that
        convolve with the layer's own kernel (:func:`stylegan_fast.ops.conv_transpose2d`)."""
        conv = ops.conv_transpose2d if flags.enabled else F.conv_transpose2d
        return conv(input, weight, bias, stride, padding, output_padding, groups, dilation)

    @contextlib.contextmanager
    def no_weight_gradients(disable: bool = True) -> Iterator[None]:
        """While active (and ``disable``), the backward of these convolutions returns no weight
        gradient: NVIDIA wraps R1's and path length's ``autograd.grad(..., create_graph=True)``
        in it. Sets ``weight_gradients_disabled`` meanwhile; nests."""
        previous = flags.weight_gradients_disabled
        if disable:
            flags.weight_gradients_disabled = True
        try:
            with ops.no_weight_gradients(bool(disable)):
                yield
        finally:
            flags.weight_gradients_disabled = previous

    return GradfixFunctions(conv2d, conv_transpose2d, no_weight_gradients)


conv2d, conv_transpose2d, no_weight_gradients = functions_reading(sys.modules[__name__])

__all__ = ["GradfixFunctions", "conv2d", "conv_transpose2d", "enabled", "functions_reading",
           "no_weight_gradients", "weight_gradients_disabled"]
