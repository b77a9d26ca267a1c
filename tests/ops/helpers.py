"""Shared machinery for the op tests: devices x backends, fresh inputs, comparisons to ref."""
from __future__ import annotations

import contextlib
import importlib
import math
from typing import Callable, Sequence

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from stylegan_fast import ops
from stylegan_fast.train import memory

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
LOW_PRECISION = (torch.float16, torch.bfloat16)
ALL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
ODD_SHAPES = [(2, 5, 7, 9), (3, 16, 4, 4), (1, 3, 13, 11), (2, 4, 1, 1), (2, 3, 1, 6)]


def backends_for(device: str) -> list[str]:
    return [name for name, status in ops.available_backends(device).items() if status.available]


DEVICE_BACKENDS = [pytest.param(d, b, id=f"{d}-{b}") for d in DEVICES for b in backends_for(d)]
parametrize_backends = pytest.mark.parametrize("device,backend", DEVICE_BACKENDS)


def rand(shape, dtype=torch.float32, device="cpu", channels_last=False, grad=True):
    """Fresh N(0, 1) values (never all zero), optionally channels_last, as a leaf tensor."""
    t = torch.randn(shape, dtype=torch.float32, device=device).to(dtype)
    if channels_last:
        t = t.to(memory_format=torch.channels_last)
    return t.requires_grad_(grad)


LAYOUTS = ["nchw", "channels_last", "strided"]


def rand_in_layout(shape, dtype, device, layout: str):
    """:func:`rand` of a 4-D ``shape`` as NCHW, channels_last, or ``strided``: a transposed view,
    neither of the two."""
    if layout == "strided":
        n, c, h, w = shape
        return rand((n, c, w, h), dtype, device).detach().transpose(2, 3).requires_grad_()
    return rand(shape, dtype, device, channels_last=layout == "channels_last")


def forward_backward(fn: Callable, args: Sequence, dy: torch.Tensor):
    """fn(*args) and the gradients of <y, dy> w.r.t. every tensor arg that requires grad."""
    y = fn(*args)
    leaves = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
    grads = torch.autograd.grad(y, leaves, dy) if leaves else ()
    return [y.detach(), *grads]


def as_float64(args):
    return [a.detach().double().requires_grad_(a.requires_grad) if isinstance(a, torch.Tensor)
            else a for a in args]


def as_compute_in_input_dtype(args):
    """The args for PyTorch's own low-precision evaluation: everything in x's dtype."""
    dtype = args[0].dtype
    return [a.detach().to(dtype).requires_grad_(a.requires_grad) if isinstance(a, torch.Tensor)
            else a for a in args]


@contextlib.contextmanager
def reference_math_in_input_dtype():
    """Make the *_reference functions compute in the input's dtype (no float32 upcast): what
    plain PyTorch does in low precision, the yardstick for fp16/bf16 tolerances."""
    mp = pytest.MonkeyPatch()
    for name in ("adain", "bias_act", "noise_inject", "style_epilogue"):
        module = importlib.import_module(f"stylegan_fast.ops.{name}")
        mp.setattr(module, "compute_dtype", lambda x: x.dtype)
    try:
        yield
    finally:
        mp.undo()


def assert_close_to_reference(op: Callable, reference: Callable, args: Sequence, backend: str,
                              dy: torch.Tensor | None = None):
    """Compare op (on ``backend``) with ``reference``: output and every gradient.

    float32: within 1e-5 relative of a float64 evaluation of the reference. float16/bfloat16: an
    error against the float64 reference at most twice PyTorch's own low-precision error (plus one
    unit in the last place of the output's magnitude, for stores that truncate).
    """
    x = args[0]
    dy = torch.randn_like(x) if dy is None else dy
    with ops.use_backend(backend):
        ours = forward_backward(op, args, dy)
    expected = forward_backward(reference, as_float64(args), dy.double())
    assert ours[0].dtype == x.dtype
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        assert ours[0].is_contiguous(memory_format=torch.channels_last), "layout not kept"
    if x.dtype in LOW_PRECISION:
        with reference_math_in_input_dtype():
            lowp = forward_backward(reference, as_compute_in_input_dtype(args), dy)
    names = ["output"] + [f"grad[{i}]" for i in range(len(ours) - 1)]
    for i, (name, got, want) in enumerate(zip(names, ours, expected)):
        assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
        if got.numel() == 0:
            continue
        scale = want.abs().max().item()
        err = (got.double() - want).abs().max().item()
        if x.dtype in (torch.float32, torch.float64):
            tol = 1e-5 * max(scale, 1.0) if x.dtype == torch.float32 else 1e-10 * max(scale, 1.0)
            assert err <= tol, f"{name}: max error {err:.3g} > {tol:.3g} (scale {scale:.3g})"
        else:
            torch_err = (lowp[i].double() - want).abs().max().item()
            ulp = torch.finfo(got.dtype).eps * scale
            # where PyTorch's own low-precision math overflows (e.g. eps=1e-8 is 0 in fp16),
            # hold a half result to one ulp of its scale alone, and a float32 one (the gradient
            # of a float32 parameter) to the float32 rule above: one float32 ulp is stricter than
            # any float32 sum can be (it failed the ref backend, old and new, on a 20-term sum)
            if math.isfinite(torch_err):
                tol = 2 * torch_err + ulp
            elif got.dtype in LOW_PRECISION:
                tol = ulp
            else:
                tol = 1e-5 * max(scale, 1.0)
            assert err <= tol, (f"{name}: max error {err:.3g} > 2 x torch's {x.dtype} error "
                                f"{torch_err:.3g} + 1 ulp (scale {scale:.3g})")
    return ours


def saved_bytes(fn: Callable, *args) -> int:
    """Bytes of the storages autograd saves for backward while running fn(*args), each once."""
    return memory.saved_bytes(lambda: fn(*args))[1]


def gradcheck_options(backend: str) -> dict:
    """Full Jacobians for ref (the definition of the math); gradcheck's fast mode (random
    projections of the Jacobian) for kernel backends, which the interpreter runs slowly and whose
    every gradient is also compared with float64 autograd in the matches-reference tests."""
    return {} if backend == "ref" else {"fast_mode": True}


def assert_double_backward_raises(fn: Callable, args: Sequence, op_name: str,
                                  backend: str) -> None:
    """A second derivative through the op raises a clear error, except on the ``eager`` backend:
    there autograd differentiates the plain definition, and the second derivative must be right
    (``args`` are float64)."""
    if backend == "eager":
        assert torch.autograd.gradgradcheck(fn, args)
        return
    y = fn(*args)
    leaves = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
    grads = torch.autograd.grad(y, leaves, torch.randn_like(y), create_graph=True)
    total = sum(g.sum() for g in grads if g.requires_grad)
    with pytest.raises(RuntimeError, match=f"{op_name} does not support double backward.*"
                                           f"use_backend\\('eager'\\)"):
        total.backward()


class OpNamespaces(TorchDispatchMode):
    """Records the namespace of every operator dispatched inside it (``aten``, ``stylegan_fast``
    for our custom ops, ...), backward included when it runs inside the block."""

    def __init__(self):
        super().__init__()
        self.namespaces = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.namespaces.add(func.namespace)
        return func(*args, **(kwargs or {}))


def bad_call_id(value) -> str:
    """A stable test id for a BAD_CALLS entry: a lambda's str holds its address, which differs
    between processes (pytest-xdist workers must collect the same ids), so it becomes 'call'."""
    if getattr(value, "__name__", None) == "<lambda>":
        return "call"
    return getattr(value, "__name__", None) or str(value)[:30]


def upfirdn2d_definition(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1):
    """NVIDIA's upfirdn2d in x's dtype, written out (zero insertion, pad/crop onto a canvas, a sum
    of shifted taps, stride): the yardstick of the upfirdn2d tests."""
    upx, upy = (up, up) if isinstance(up, int) else up
    downx, downy = (down, down) if isinstance(down, int) else down
    if isinstance(padding, int):
        padding = [padding] * 4
    elif len(padding) == 2:
        padding = [padding[0], padding[0], padding[1], padding[1]]
    px0, px1, py0, py1 = padding
    n, c, h, w = x.shape
    f = torch.ones(1, 1) if f is None else f
    g = f.to(x.dtype)
    g = (torch.outer(g, g) if g.dim() == 1 else g) * gain
    if not flip_filter:
        g = g.flip(0, 1)
    u = x.new_zeros(n, c, h * upy, w * upx)
    u[:, :, ::upy, ::upx] = x
    src = u[:, :, max(-py0, 0):h * upy - max(-py1, 0), max(-px0, 0):w * upx - max(-px1, 0)]
    canvas = x.new_zeros(n, c, h * upy + py0 + py1, w * upx + px0 + px1)
    canvas[:, :, max(py0, 0):max(py0, 0) + src.shape[2],
           max(px0, 0):max(px0, 0) + src.shape[3]] = src
    kh, kw = g.shape
    oh, ow = (canvas.shape[2] - kh) // downy + 1, (canvas.shape[3] - kw) // downx + 1
    out = x.new_zeros(n, c, oh, ow)
    for ky in range(kh):
        for kx in range(kw):
            out = out + canvas[:, :, ky:ky + (oh - 1) * downy + 1:downy,
                               kx:kx + (ow - 1) * downx + 1:downx] * g[ky, kx]
    return out
