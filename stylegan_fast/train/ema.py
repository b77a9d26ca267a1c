"""Exponential moving average of the generator's weights (G_ema), used for samples and release.

After each step, with ``beta = 0.5 ** (batch / (ema_kimg * 1000))``::

    p_ema = lerp(p, p_ema, beta) = p + beta * (p_ema - p)     for every parameter
    b_ema = b                                                 for every buffer (e.g. w_avg)
"""
from __future__ import annotations

import copy

import torch
from torch import nn


def make_ema(G: nn.Module) -> nn.Module:
    """A frozen copy of G in eval mode."""
    return copy.deepcopy(G).eval().requires_grad_(False)


@torch.no_grad()
def update_ema(G_ema: nn.Module, G: nn.Module, beta: float) -> None:
    for p_ema, p in zip(G_ema.parameters(), G.parameters()):
        p_ema.copy_(torch.lerp(p, p_ema, beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)
