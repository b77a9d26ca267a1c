"""The backends a benchmark compares: the ``eager`` and ``compile`` baselines and the others.

* ``eager``: the ops' plain differentiable PyTorch definitions (``use_backend("eager")``):
  StyleGAN as one would write it in PyTorch, autograd saving whatever it saves;
* ``compile``: ``torch.compile`` of that same eager code (inductor unless told otherwise, static
  shapes): what a compiler makes of the plain definitions;
* any other registered backend (``triton``, ``cuda``, ``ref``): the ops on that backend
  (``use_backend(name)``). ``ref`` (plain-PyTorch math behind the ops' memory-lean backward) runs
  only when asked for: it is the definition of correctness, not a contender.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Callable

import torch

from .. import ops
from ..errors import UserError
from ..ops.backends import EAGER

BASELINES = (EAGER, "compile")
ON_REQUEST = ("ref",)  # registered backends left out of the default set


def backend_context(backend: str) -> contextlib.AbstractContextManager:
    """The ``use_backend`` block that a benchmark backend runs its ops in (``compile``: eager)."""
    return ops.use_backend(EAGER if backend in BASELINES else backend)


def on_backend(fn: Callable, backend: str) -> Callable:
    """``fn`` called inside :func:`backend_context` of ``backend``."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        with backend_context(backend):
            return fn(*args, **kwargs)
    return run


def default_backends(device: str) -> list[str]:
    """The baselines and every other backend available on ``device`` (except ``ON_REQUEST``)."""
    extra = [name for name, status in ops.available_backends(device).items()
             if status.available and name not in BASELINES + ON_REQUEST]
    return list(BASELINES) + extra


def check_available(backends: list, device: str) -> None:
    """Raises UserError naming each of ``backends`` that cannot run on ``device``, and why."""
    statuses = ops.available_backends(device)
    missing = [f"{name} ({statuses[name].reason})" for name in backends
               if name not in BASELINES and name in statuses and not statuses[name].available]
    if missing:
        raise UserError(f"--backends: not available on {device}: {'; '.join(missing)}")


def known_backends(device: str) -> list[str]:
    """Every backend name the benchmarks accept, available here or not."""
    return list(BASELINES) + [n for n in ops.available_backends(device) if n not in BASELINES]


def enable_many_recompiles(limit: int = 4096) -> None:
    """Let ``torch.compile`` specialize on every shape/dtype/mode instead of silently falling
    back to eager after its default of 8 recompilations."""
    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit",
                 "accumulated_cache_size_limit"):
        if hasattr(config, name):
            setattr(config, name, max(getattr(config, name), limit))


def compiled(fn, compiler: str = "inductor"):
    """``torch.compile`` of a function or module with static shapes (run it under
    :func:`backend_context` of ``compile``, so that it traces the eager definitions)."""
    enable_many_recompiles()
    return torch.compile(fn, backend=compiler, dynamic=False)
