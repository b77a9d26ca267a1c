"""StyleGAN1's losses: non-saturating logistic G loss, logistic D loss with the R1 penalty.

For D's scores s = D(x) (logits), per sample::

    G loss   softplus(-D(G(z)))                         (= -log sigmoid(D(G(z))))
    D loss   softplus(D(G(z))) + softplus(-D(x_real))   (+ R1 below)
    R1       gamma / 2 * ||d D(x_real) / d x_real||^2   (squared L2 over C, H, W)

R1 is a gradient penalty, so its own gradient needs D's second derivative (``create_graph``):
it flows through the fused ops' double backward. The first pass (the gradient w.r.t. the images)
runs inside :func:`stylegan_fast.ops.no_weight_gradients`: its convolutions compute no weight
gradient there, and the penalty's backward still reaches every weight (``tests/train/
test_loss.py`` compares it with PyTorch's own double backward). Lazy R1 evaluates the penalty on
every ``interval``-th D step only and multiplies it by ``interval``, keeping its average weight.
Every function returns per-sample values [N] in float32 (float64 for float64 scores).
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Callable, Union

import torch
import torch.nn.functional as F

from ..ops import no_weight_gradients


def _wide(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32, or float64 if it is."""
    return t if t.dtype == torch.float64 else t.float()


def generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """Non-saturating logistic loss ``softplus(-D(G(z)))`` [N]."""
    return F.softplus(-_wide(fake_scores)).flatten()


def discriminator_loss(fake_scores: torch.Tensor, real_scores: torch.Tensor) -> torch.Tensor:
    """Logistic loss ``softplus(D(fake)) + softplus(-D(real))`` [N]."""
    return (F.softplus(_wide(fake_scores)) + F.softplus(-_wide(real_scores))).flatten()


def r1_penalty(D: Callable[[torch.Tensor], torch.Tensor], reals: torch.Tensor,
               autocast: AbstractContextManager,
               loss_scale: Union[float, torch.Tensor] = 1.0
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(D(reals) [N, 1], ||grad_x D(reals)||^2 [N]), the gradient kept differentiable.

    ``reals`` must not require grad; a leaf copy that does is made here. With a gradient scaler
    (fp16), the scores' sum is multiplied by ``loss_scale`` before differentiating and the
    gradient divided by it, so that small fp16 gradients do not flush to zero: a number, or a
    float32 scalar tensor on the device (the scaler's current scale, which is not read on the
    host then).
    """
    reals = reals.detach().requires_grad_(True)
    with autocast:
        scores = D(reals)
    with no_weight_gradients():
        (grad,) = torch.autograd.grad(_wide(scores).sum() * loss_scale, reals,
                                      create_graph=True)
    grad = _wide(grad) / loss_scale
    return scores, grad.square().sum(dim=[1, 2, 3])


def r1_weight(gamma: float, interval: int, step: int) -> float:
    """The multiplier of ||grad||^2 on D step ``step``: ``gamma / 2 * interval`` on every
    ``interval``-th step (lazy R1), else 0."""
    if gamma == 0 or step % interval:
        return 0.0
    return gamma / 2 * interval
