"""Activation checkpointing of the highest-resolution blocks (``--checkpoint-blocks N``).

A checkpointed block keeps only its inputs during the forward pass and runs its forward again
during backward to rebuild the activations it needs (``torch.utils.checkpoint``, non-reentrant,
so second derivatives for R1 work; the RNG state is restored for the rerun, so G's random noise
is the same both times). The top blocks hold most of the activation memory at 512-1024 px, so a
few of them save most of it, at the cost of one more forward pass through them.

A D pass with R1 gains nothing: its second derivative keeps the recomputed activations for the
penalty's own backward. Measured at 256 px (official channels, 2 images per pass, float32, ref
backend; ``python benchmarks/saved_memory.py --checkpoint-blocks N``): the G step (G, then D on
its images) keeps 605 MiB for backward, 464 / 388 / 325 MiB with 1 / 2 / 3 checkpointed blocks
(749 and 543 / 435 / 341 MiB while the blurs kept their inputs, before upfirdn2d).

Only the instance's ``forward`` is replaced: parameter names, state dicts and checkpoints are
unchanged. Apply it to the training networks after copying G into G_ema.
"""
from __future__ import annotations

import functools
from typing import Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def saved_bytes(fn: Callable):
    """(fn(), the bytes of the storages autograd keeps for backward while it runs, each once)."""
    seen = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(seen.values())


def _checkpointed(forward, *args, **kwargs):
    return checkpoint(forward, *args, use_reentrant=False, **kwargs)


def checkpoint_module(module: nn.Module) -> None:
    module.forward = functools.partial(_checkpointed, module.forward)


def top_blocks(G: nn.Module, D: nn.Module, count: int) -> list[nn.Module]:
    """The ``count`` highest-resolution blocks of G's synthesis network and of D."""
    if count <= 0:
        return []
    d_blocks = sorted(D.blocks.items(), key=lambda item: int(item[0][1:]))
    return list(G.synthesis.blocks)[-count:] + [block for _, block in d_blocks[-count:]]


def checkpoint_top_blocks(G: nn.Module, D: nn.Module, count: int) -> int:
    """Checkpoint the top ``count`` blocks of G and of D; returns how many blocks in all."""
    blocks = top_blocks(G, D, count)
    for block in blocks:
        checkpoint_module(block)
    return len(blocks)
