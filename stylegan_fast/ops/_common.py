"""Helpers shared by every op: argument checks, compute dtype, output layout, noise seeds."""
from __future__ import annotations

import math
import numbers
import threading
from typing import Optional, Sequence

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
HALF_DTYPES = (torch.float16, torch.bfloat16)
_MIXABLE = (torch.float32,) + HALF_DTYPES


def check_input(name: str, x, *, rank: Optional[int] = None, layout: str = "") -> None:
    """``x`` must be a floating tensor (of ``rank`` dims when given, described by ``layout``)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float16, bfloat16, float32 or float64, got {x.dtype}")
    if rank is not None and x.dim() != rank:
        raise ValueError(f"{name} must be {rank}-D {layout}, got shape {tuple(x.shape)}")


def param_fits(t, x: torch.Tensor, shape: tuple) -> bool:
    """Whether :func:`check_param` would accept ``t`` of exactly ``shape`` beside ``x``: a cheap
    test for the common case; callers run ``check_param`` (which raises the error) when it is
    False."""
    return (isinstance(t, torch.Tensor) and t.shape == shape
            and (t.dtype is x.dtype or (t.dtype in _MIXABLE and x.dtype in _MIXABLE))
            and t.device == x.device)


def check_param(name: str, t, x: torch.Tensor, shapes: Sequence[tuple], desc: str) -> None:
    """A per-channel/per-sample tensor: same device as ``x``, one of ``shapes`` (described by
    ``desc``), and float16, bfloat16 or float32 beside an x of those (the math is float32 anyway:
    AMP keeps float32 master weights beside half activations, and autocast makes half styles
    beside a float32 x); float64 only beside a float64 x. Its gradient comes back in its dtype."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.device != x.device:
        raise ValueError(f"{name} is on {t.device} but x is on {x.device}")
    if t.dtype != x.dtype and not (t.dtype in _MIXABLE and x.dtype in _MIXABLE):
        allowed = "float64" if x.dtype == torch.float64 else "float16, bfloat16 or float32"
        raise TypeError(f"{name} has dtype {t.dtype} but x has {x.dtype}; pass {allowed}")
    if tuple(t.shape) not in [tuple(s) for s in shapes]:
        raise ValueError(f"{name} must have shape {desc}, got {tuple(t.shape)}")


def check_scalar(name: str, value, *, minimum: Optional[float] = None) -> float:
    """A finite real Python number (not a bool), at least ``minimum`` when given."""
    if type(value) is not float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
        value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def as_dtype(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t.to(dtype)``, skipped (it costs a dispatch) when t already has that dtype."""
    return t if t.dtype is dtype else t.to(dtype)


_SCALARS: dict = {}  # (value, dtype) -> 0-dim CPU tensor: see scalar_tensor


def scalar_tensor(value: float, dtype: torch.dtype) -> torch.Tensor:
    """``value`` as a cached 0-dim CPU tensor of ``dtype``, for ``t + value`` and ``t * value``
    on tensors of that dtype (any device): the same result as the Python number, which every op
    would wrap in a new tensor."""
    key = (value, dtype)
    t = _SCALARS.get(key)
    if t is None:
        if len(_SCALARS) >= 64:
            _SCALARS.clear()
        t = _SCALARS[key] = torch.tensor(value, dtype=dtype)
    return t


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """Internal math and reductions run in float32 (float64 stays float64, for gradcheck)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def like(x: torch.Tensor, t: torch.Tensor, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """``t`` cast to ``dtype`` (default x's) with exactly the strides of ``torch.empty_like(x)``:
    the layout every backend returns and every fake kernel promises."""
    dtype = x.dtype if dtype is None else dtype
    if t.dtype == dtype:
        if t.stride() == x.stride() and x.is_contiguous():
            return t  # the common case, first
        if x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last):
            expected = x.stride()  # empty_like keeps a dense tensor's strides
        else:
            expected = torch.empty_like(x, device="meta").stride()
        if t.stride() == expected:
            return t
    out = torch.empty_like(x, dtype=dtype)
    out.copy_(t)
    return out


def draw_noise_seed(x: torch.Tensor) -> torch.Tensor:
    """A fresh seed for in-kernel noise, drawn from torch's default CPU generator (so
    ``torch.manual_seed`` reproduces it) as a 1-element int64 CPU tensor (no device sync)."""
    return torch.randint(0, 2**31 - 1, (1,), dtype=torch.int64)


_GENERATORS = threading.local()  # per thread: {device: torch.Generator}, reseeded on every use


def seeded_normal(seed: torch.Tensor, shape, like_tensor: torch.Tensor) -> torch.Tensor:
    """N(0, 1) noise of ``shape`` in the compute dtype of ``like_tensor``, a pure function of
    ``seed``: the reference backend's counter-based-RNG stand-in, regenerated in backward. One
    ``torch.Generator`` per thread and device, reseeded (``manual_seed`` resets its whole state),
    instead of a new one per call."""
    device = like_tensor.device
    generators = getattr(_GENERATORS, "by_device", None)
    if generators is None:
        generators = _GENERATORS.by_device = {}
    gen = generators.get(device)
    if gen is None:
        gen = generators[device] = torch.Generator(device=device)
    gen.manual_seed(seed.item())
    return torch.randn(shape, generator=gen, device=device, dtype=compute_dtype(like_tensor))


def channel_view(t: torch.Tensor, ndim: int, dim: int = 1) -> torch.Tensor:
    """A [C] tensor reshaped to broadcast along ``dim`` of an ``ndim``-D tensor."""
    return t.reshape((1,) * dim + (-1,) + (1,) * (ndim - 1 - dim))
