"""Adam as StyleGAN1 trains with it, stepping without reading anything on the host.

:func:`make_adam` builds PyTorch's fused Adam (one kernel per step on CPU and CUDA). A fused
optimizer takes a ``found_inf`` tensor and skips its step on the device when it is set (without
counting it in its step counter): :func:`step_unless_non_finite` sets it when the loss or a
gradient is not finite, so that such a step is skipped with no device -> host copy; with a
gradient scaler (fp16) the scaler does the same and lowers its scale. The skipped flag comes back
as a device tensor, to be counted when the run next reads its statistics.

Checkpoints written before fused Adam hold the plain implementation's state (the same tensors,
``step`` on the CPU): :func:`load_optimizer` loads either into the fused optimizer.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch

ADAM_BETAS, ADAM_EPS = (0.0, 0.99), 1e-8
# Optimizer settings that choose the implementation, not the math: kept when loading a state.
IMPLEMENTATION_KEYS = ("fused", "foreach", "capturable", "differentiable")


def make_adam(params: Iterable[torch.nn.Parameter], lr: float) -> torch.optim.Adam:
    """StyleGAN1's Adam (betas 0, 0.99, eps 1e-8), fused."""
    return torch.optim.Adam(params, lr=lr, betas=ADAM_BETAS, eps=ADAM_EPS, fused=True)


def load_optimizer(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load ``state`` (saved by any Adam implementation: plain or fused) into ``optimizer``,
    keeping ``optimizer``'s implementation (a state dict's groups would otherwise replace it);
    ``step`` counters move to where the implementation keeps them."""
    groups = [{**saved, **{key: group[key] for key in IMPLEMENTATION_KEYS if key in group}}
              for saved, group in zip(state["param_groups"], optimizer.param_groups)]
    optimizer.load_state_dict({**state, "param_groups": groups})


def non_finite(tensors: list[torch.Tensor]) -> torch.Tensor:
    """1.0 if any element of ``tensors`` is NaN or infinite, else 0.0: a float32 scalar on their
    device, computed there (the check that :class:`torch.amp.GradScaler` makes)."""
    device = tensors[0].device
    found = torch.zeros((), device=device)
    torch._amp_foreach_non_finite_check_and_unscale_(tensors, found,
                                                     torch.ones((), device=device))
    return found


def step_unless_non_finite(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                           loss: torch.Tensor) -> torch.Tensor:
    """Step ``optimizer`` (through ``scaler`` when it is enabled, which then updates its scale)
    unless ``loss`` or one of the gradients is not finite; reads nothing on the host.

    ``optimizer`` must be fused (:func:`make_adam`), ``loss`` a scalar on the gradients' device.
    A non-finite loss is folded into the gradients first (one gradient is multiplied by 1, or
    by NaN: exact either way), since the scaler checks gradients only: an fp16 score that
    overflowed makes the loss infinite while every gradient may stay finite. Returns the
    skipped flag (1.0 or 0.0) as a device scalar."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"]
             if p.grad is not None]
    smallest = min(grads, key=torch.Tensor.numel)
    smallest.mul_(torch.where(loss.isfinite(), 1.0, math.nan).to(smallest.dtype))
    skipped = non_finite(grads)
    if scaler.is_enabled():
        scaler.step(optimizer)  # fused: the scaler hands the optimizer its own found_inf
        scaler.update()
    else:
        optimizer.found_inf = skipped
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf
    return skipped
