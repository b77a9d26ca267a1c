"""The eager fast path of the fused ops (``stylegan_fast.ops._dispatch``, issue 32 items 1 and 5).

Outside tracing every fused op runs through a plain ``torch.autograd.Function`` (or directly when
no gradient is wanted); under tracing (torch.compile, dispatch modes, fake/meta tensors, ...) and
inside ``custom_ops_only()`` it goes through the ``torch.library`` custom op. These tests check:

* both paths give bitwise identical outputs, gradients (and bias_act's second derivative), save
  the same tensors (shapes, dtypes, strides, bytes, which input they alias, values), and raise the
  same errors for bad input, on every backend but ``eager`` (which has no custom op);
* an eager call never dispatches a ``stylegan_fast::`` op (the profiler sees none) while
  ``custom_ops_only()``, torch.compile (forward and AOTAutograd backward graphs), FakeTensorMode,
  dispatch modes and meta tensors do;
* autocast and ``nn.Parameter`` inputs keep these properties;
* ``torch.library.opcheck`` passes on every custom op;
* (CUDA only) CUDA-graph capture of forward + backward reproduces eager results.
"""
from __future__ import annotations

import contextlib
import importlib
import math

import pytest
import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode

from stylegan_fast import ops
from stylegan_fast.ops import _dispatch

from .helpers import DEVICE_BACKENDS, backends_for, rand, saved_bytes

# the op modules (stylegan_fast.ops re-exports functions of the same names)
adain_module = importlib.import_module("stylegan_fast.ops.adain")
bias_act_module = importlib.import_module("stylegan_fast.ops.bias_act")
filtered_lrelu_module = importlib.import_module("stylegan_fast.ops.filtered_lrelu")
noise_inject_module = importlib.import_module("stylegan_fast.ops.noise_inject")
style_epilogue_module = importlib.import_module("stylegan_fast.ops.style_epilogue")
upfirdn2d_module = importlib.import_module("stylegan_fast.ops.upfirdn2d")

NAMESPACE = "stylegan_fast"
SEED = 1234  # torch.manual_seed before every forward: noise=None draws the same seed each time
FIR = [1.0, 3.0, 3.0, 1.0]
LONG_FIR = [1.0, 2.0, 4.0, 6.0, 7.0, 6.0, 4.0, 2.0, 1.0]  # 9 taps: two 1-D passes

# The backends that have custom ops (eager calls each op's plain PyTorch definition instead).
FUSED_BACKENDS = [p for p in DEVICE_BACKENDS if p.values[1] != "eager"]
parametrize_fused = pytest.mark.parametrize("device,backend", FUSED_BACKENDS)


def _fir(taps=FIR, device="cpu", **kwargs):
    return ops.setup_filter(taps, device=device, **kwargs)


# ------------------------------------------------------------------------------------ cases
# name -> builder(dtype, device) -> (fn, args): fn(*args) calls one public op; the tensors among
# args are fresh leaves requiring grad (or None). Shapes are small and odd (the Triton
# interpreter runs a few ms to a few s per launch).
def _half_param(dtype):
    """Small tensors beside a half x are float32 (AMP's master weights)."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _resampling(op, f, x, **kwargs):
    return (lambda x: op(x, f, **kwargs)), [x]


CASES = {
    "bias_act-lrelu": lambda dt, dev: (
        lambda x, b: ops.bias_act(x, b, act="lrelu"),
        [rand((2, 5, 3, 7), dt, dev), rand((5,), _half_param(dt), dev)]),
    "bias_act-lrelu-clamp": lambda dt, dev: (
        lambda x, b: ops.bias_act(x, b, act="lrelu", alpha=0.3, gain=1.5, clamp=0.6),
        [rand((2, 5, 3, 7), dt, dev), rand((5,), _half_param(dt), dev)]),
    "bias_act-linear-nobias": lambda dt, dev: (
        lambda x: ops.bias_act(x, None, act="linear", gain=0.5),
        [rand((3, 5, 7), dt, dev)]),
    "bias_act-swish-clamp": lambda dt, dev: (
        lambda x, b: ops.bias_act(x, b, dim=1, act="swish", clamp=0.8),
        [rand((7, 5), dt, dev), rand((5,), _half_param(dt), dev)]),
    "bias_act-tanh-dim": lambda dt, dev: (
        lambda x, b: ops.bias_act(x, b, dim=-1, act="tanh"),
        [rand((3, 4, 5), dt, dev), rand((5,), _half_param(dt), dev)]),
    "noise_inject-given": lambda dt, dev: (
        lambda x, s, n: ops.noise_inject(x, s, n),
        [rand((2, 3, 5, 7), dt, dev), rand((3,), _half_param(dt), dev),
         rand((2, 1, 5, 7), dt, dev)]),
    "noise_inject-shared": lambda dt, dev: (
        lambda x, s, n: ops.noise_inject(x, s, n),
        [rand((3, 3, 5, 5), dt, dev), rand((3,), _half_param(dt), dev),
         rand((1, 1, 5, 5), dt, dev)]),
    "noise_inject-drawn": lambda dt, dev: (
        lambda x, s: ops.noise_inject(x, s),
        [rand((2, 3, 5, 7), dt, dev, channels_last=True), rand((3,), _half_param(dt), dev)]),
    "adain": lambda dt, dev: (
        lambda x, s, b: ops.adain(x, s, b, eps=1e-5),
        [rand((2, 3, 5, 7), dt, dev), rand((2, 3), _half_param(dt), dev),
         rand((2, 3), _half_param(dt), dev)]),
    "style_epilogue-noise": lambda dt, dev: (
        lambda x, b, s, sb, ns, n: ops.style_epilogue(x, b, s, sb, ns, n, alpha=0.3, gain=1.5),
        [rand((2, 3, 5, 7), dt, dev), rand((3,), _half_param(dt), dev),
         rand((2, 3), _half_param(dt), dev), rand((2, 3), _half_param(dt), dev),
         rand((3,), _half_param(dt), dev), rand((2, 1, 5, 7), dt, dev)]),
    "style_epilogue-drawn-nobias": lambda dt, dev: (
        lambda x, s, sb, ns: ops.style_epilogue(x, None, s, sb, ns),
        [rand((2, 3, 5, 7), dt, dev, channels_last=True), rand((2, 3), _half_param(dt), dev),
         rand((2, 3), _half_param(dt), dev), rand((3,), _half_param(dt), dev)]),
    "style_epilogue-nonoise": lambda dt, dev: (
        lambda x, b, s, sb: ops.style_epilogue(x, b, s, sb),
        [rand((2, 3, 5, 7), dt, dev), rand((3,), _half_param(dt), dev),
         rand((2, 3), _half_param(dt), dev), rand((2, 3), _half_param(dt), dev)]),
    # the filters are made when the case is built, not per call (a host-to-device copy inside
    # a CUDA-graph capture is not allowed)
    "upfirdn2d": lambda dt, dev: _resampling(
        ops.upfirdn2d, _fir(device=dev), rand((1, 2, 5, 7), dt, dev), up=2, down=1,
        padding=[1, 2, 2, 1], gain=2.0),
    "upfirdn2d-long": lambda dt, dev: _resampling(
        ops.upfirdn2d, _fir(LONG_FIR, device=dev), rand((1, 2, 9, 7), dt, dev), down=2,
        padding=4),
    "upsample2d": lambda dt, dev: _resampling(
        ops.upsample2d, _fir(device=dev), rand((1, 2, 5, 7), dt, dev, channels_last=True)),
    "downsample2d": lambda dt, dev: _resampling(
        ops.downsample2d, _fir(device=dev), rand((1, 2, 7, 9), dt, dev)),
    "filter2d": lambda dt, dev: _resampling(
        ops.filter2d, _fir(device=dev), rand((1, 2, 5, 7), dt, dev), padding=1),
    "filtered_lrelu": lambda dt, dev: (
        (lambda fu, fd: lambda x, b: ops.filtered_lrelu(
            x, fu, fd, b, up=2, down=2, padding=[4, 3, 4, 3], clamp=0.8))(
            _fir(LONG_FIR, device=dev), _fir(device=dev)),
        [rand((1, 2, 5, 7), dt, dev), rand((2,), _half_param(dt), dev)]),
}
# a cheap half-precision case per op
HALF_CASES = [("bias_act-lrelu-clamp", torch.float16), ("bias_act-swish-clamp", torch.bfloat16),
              ("noise_inject-drawn", torch.float16), ("adain", torch.bfloat16),
              ("style_epilogue-noise", torch.float16), ("upsample2d", torch.bfloat16)]
CASE_PARAMS = ([pytest.param(name, torch.float32, id=name) for name in CASES]
               + [pytest.param(name, dt, id=f"{name}-{str(dt)[6:]}") for name, dt in HALF_CASES])
DRAWN_NOISE = ("noise_inject-drawn", "style_epilogue-drawn-nobias")
SMOOTH_OR_PIECEWISE = ("bias_act-lrelu", "bias_act-lrelu-clamp", "bias_act-linear-nobias",
                       "bias_act-swish-clamp", "bias_act-tanh-dim")
NO_DOUBLE_BACKWARD = {"noise_inject-given": "noise_inject", "adain": "adain",
                      "style_epilogue-noise": "style_epilogue"}


def make_case(name, dtype=torch.float32, device="cpu"):
    torch.manual_seed(0)  # the same input values whichever path runs next
    return CASES[name](dtype, device)


def leaves_of(args):
    return [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]


def fresh_copy(args):
    return [a.detach().clone().requires_grad_(a.requires_grad) if isinstance(a, torch.Tensor)
            else a for a in args]


# ------------------------------------------------------------------------------------ a run
class SavedTensors:
    """Records every tensor autograd saves inside the block: its shape, dtype, strides, bytes of
    its storage and which input (if any) it aliases, and its value."""

    def __init__(self, inputs):
        self.inputs = [a for a in inputs if isinstance(a, torch.Tensor)]
        self.records = []
        self.values = []

    def _alias(self, t):
        ptr = t.untyped_storage().data_ptr()
        for i, a in enumerate(self.inputs):
            if a.untyped_storage().data_ptr() == ptr:
                return i
        return None

    def pack(self, t):
        self.records.append((tuple(t.shape), t.dtype, t.stride(), t.storage_offset(),
                             t.untyped_storage().nbytes(), self._alias(t)))
        self.values.append(t.detach().clone())
        return t

    def hooks(self):
        return torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)

    def total_bytes(self):
        return sum(r[4] for r in self.records)


def run(fn, args, *, double=False, custom=False, backend=None):
    """fn(*args) (seeded), its gradients w.r.t. every leaf for a fixed dy, optionally the
    gradient of sum(grad ** 2) (R1-style double backward), and what autograd saved, each step
    through the fast path (``custom=False``) or the custom ops."""
    leaves = leaves_of(args)
    saved = SavedTensors(args)
    with _dispatch.custom_ops_only(custom), \
            ops.use_backend(backend) if backend else contextlib.nullcontext():
        torch.manual_seed(SEED)
        with saved.hooks():
            y = fn(*args)
        gen = torch.Generator().manual_seed(7)
        dy = torch.randn(y.shape, generator=gen).to(y.device, y.dtype)
        second = ()
        with saved.hooks():
            if not double:
                grads = torch.autograd.grad(y, leaves, dy)
            else:
                # R1-style: a loss nonlinear in y (so the incoming gradient depends on the
                # inputs), its gradient with create_graph, then the gradient of its square
                loss = (y.float().square() * dy.float()).sum()
                grads = torch.autograd.grad(loss, leaves, create_graph=True)
                total = sum(g.float().square().sum() for g in grads)
                second = torch.autograd.grad(total, leaves, allow_unused=True)
    return {"y": y.detach(), "grads": [g.detach() for g in grads],
            "second": [None if g is None else g.detach() for g in second],
            "saved": saved.records, "saved_values": saved.values, "y_stride": y.stride()}


def assert_identical(fast, custom):
    assert fast["y"].dtype == custom["y"].dtype
    assert fast["y_stride"] == custom["y_stride"], "output layouts differ"
    assert torch.equal(fast["y"], custom["y"]), "outputs differ"
    assert len(fast["grads"]) == len(custom["grads"])
    for i, (a, b) in enumerate(zip(fast["grads"], custom["grads"])):
        assert a.dtype == b.dtype and a.stride() == b.stride(), f"grad[{i}] dtype/layout differ"
        assert torch.equal(a, b), f"grad[{i}] differs"
    for i, (a, b) in enumerate(zip(fast["second"], custom["second"])):
        assert (a is None) == (b is None), f"second derivative [{i}]: None on one path only"
        if a is not None:
            assert torch.equal(a, b), f"second derivative [{i}] differs"
    assert fast["saved"] == custom["saved"], (
        f"saved tensors differ:\n fast:   {fast['saved']}\n custom: {custom['saved']}")
    for i, (a, b) in enumerate(zip(fast["saved_values"], custom["saved_values"])):
        assert torch.equal(a, b), f"saved tensor [{i}] values differ"


# ------------------------------------------------------------------------------------ 1. equality
@parametrize_fused
@pytest.mark.parametrize("name,dtype", CASE_PARAMS)
def test_fast_path_matches_custom_op(device, backend, name, dtype):
    """Same output, gradients of every input, and saved tensors (shapes, dtypes, strides, storage
    bytes, aliasing of inputs, values) on the fast path and through the custom ops."""
    fn, args = make_case(name, dtype, device)
    fast = run(fn, args, backend=backend)
    custom = run(fn, args, custom=True, backend=backend)
    assert fast["saved"], "nothing saved: the hooks saw no autograd node"
    assert_identical(fast, custom)


@parametrize_fused
@pytest.mark.parametrize("name", SMOOTH_OR_PIECEWISE + ("upfirdn2d", "upsample2d"))
def test_double_backward_matches_custom_op(device, backend, name):
    """R1-style second derivative (create_graph=True, then the gradient of sum(grad ** 2)) of the
    ops that support it: identical on both paths, backward's saved tensors included."""
    fn, args = make_case(name, torch.float32, device)
    fast = run(fn, args, double=True, backend=backend)
    custom = run(fn, args, double=True, custom=True, backend=backend)
    assert_identical(fast, custom)
    assert all(g is not None for g in fast["second"])
    assert any(g.abs().max() > 0 for g in fast["second"]), "the second derivative is all zero"


@parametrize_fused
@pytest.mark.parametrize("name", ["bias_act-lrelu", "noise_inject-drawn", "adain",
                                  "style_epilogue-noise", "upfirdn2d"])
def test_no_grad_matches_custom_op(device, backend, name):
    """With no gradient wanted the fast path calls the op's function directly (no autograd
    boundary): the same output as the custom op, and nothing saved."""
    fn, args = make_case(name, torch.float32, device)
    outs = []
    for custom in (False, True):
        saved = SavedTensors(args)
        with _dispatch.custom_ops_only(custom), ops.use_backend(backend), torch.no_grad(), \
                saved.hooks():
            torch.manual_seed(SEED)
            outs.append(fn(*args))
        assert saved.records == []
    assert not outs[0].requires_grad and not outs[1].requires_grad
    assert outs[0].stride() == outs[1].stride()
    assert torch.equal(outs[0], outs[1])


@parametrize_fused
def test_saved_bytes_match_on_every_op(device, backend):
    """The total bytes autograd keeps (helpers' saved-bytes measure) agree op by op."""
    for name in ("bias_act-lrelu-clamp", "bias_act-swish-clamp", "noise_inject-drawn", "adain",
                 "style_epilogue-noise", "upfirdn2d"):
        fn, args = make_case(name, torch.float32, device)
        sizes = []
        for custom in (False, True):
            with _dispatch.custom_ops_only(custom), ops.use_backend(backend):
                torch.manual_seed(SEED)
                sizes.append(saved_bytes(fn, *args))
        assert sizes[0] == sizes[1], f"{name}: fast path saves {sizes[0]} B, custom op {sizes[1]}"


# ------------------------------------------------------------------------------------ 2. errors
def _bad_calls(grad=False):
    """name -> a call with bad input; ``grad``: the tensors require grad (the fast path then
    goes through its autograd.Function)."""
    x = torch.randn(2, 3, 4, 5).requires_grad_(grad)
    b = torch.randn(3).requires_grad_(grad)
    s = torch.randn(2, 3).requires_grad_(grad)
    f = _fir()
    return {
        "bias_act-bias-shape": lambda: ops.bias_act(x, torch.randn(4)),
        "bias_act-bias-dtype": lambda: ops.bias_act(x, b.double()),
        "bias_act-x-dtype": lambda: ops.bias_act(x.long(), b),
        "bias_act-act": lambda: ops.bias_act(x, b, act="gelu"),
        "bias_act-clamp": lambda: ops.bias_act(x, b, clamp=-1.0),
        "noise_inject-noise-shape": lambda: ops.noise_inject(x, b, torch.randn(2, 2, 4, 5)),
        "noise_inject-rank": lambda: ops.noise_inject(x[0], b),
        "adain-style-shape": lambda: ops.adain(x, s.t(), s),
        "style_epilogue-noise-without-strength": lambda: ops.style_epilogue(
            x, b, s, s, None, torch.randn(2, 1, 4, 5)),
        "upfirdn2d-filter-dtype": lambda: ops.upfirdn2d(x, f.double()),
        "upfirdn2d-crop": lambda: ops.upfirdn2d(x, f, padding=-4),
        # errors raised inside the op itself (past the public functions' checks)
        "op-unknown-backend": lambda: bias_act_module._bias_act_op(
            x, b, 1, "lrelu", 0.2, 1.0, None, False, "no_such_backend"),
        "op-bias-shape": lambda: bias_act_module._bias_act_op(
            x, torch.randn(4), 1, "lrelu", 0.2, 1.0, None, False, "ref"),
        "op-noise-shape": lambda: noise_inject_module._noise_inject_op(
            x, b, torch.randn(2, 1, 3, 3), None, "ref"),
    }


BAD_CALLS = list(_bad_calls())


@parametrize_fused
@pytest.mark.parametrize("bad", BAD_CALLS)
def test_same_errors_on_both_paths(device, backend, bad):
    """Bad input raises the same exception type and message on the fast path and through the
    custom op, with and without a gradient wanted (the ``op-*`` calls bypass the public checks
    and name the ref backend themselves)."""
    for grad in (False, True):
        errors = []
        for custom in (False, True):
            with _dispatch.custom_ops_only(custom), ops.use_backend(backend), \
                    pytest.raises(Exception) as info:
                _bad_calls(grad)[bad]()
            errors.append((type(info.value), str(info.value)))
        assert errors[0] == errors[1], f"grad={grad}: fast {errors[0]} != custom {errors[1]}"


@pytest.mark.parametrize("name,op_name", list(NO_DOUBLE_BACKWARD.items()))
def test_double_backward_raises_same_error(name, op_name):
    """noise_inject, adain and style_epilogue have no second derivative on fused backends: the
    same RuntimeError on the fast path and through the custom ops."""
    messages = []
    for custom in (False, True):
        fn, args = make_case(name)
        with _dispatch.custom_ops_only(custom), ops.use_backend("ref"):
            y = fn(*args)
            grads = torch.autograd.grad(y, leaves_of(args), torch.ones_like(y), create_graph=True)
            total = sum(g.square().sum() for g in grads if g.requires_grad)
            with pytest.raises(RuntimeError, match=f"{op_name} does not support double backward"
                               ) as info:
                total.backward()
        messages.append(str(info.value))
    assert messages[0] == messages[1]


# ------------------------------------------------------------------------------------ 3. dispatch
def custom_op_events(fn, leaves, *, double=False):
    """Names of the ``stylegan_fast::`` operators the profiler (RecordFunction callbacks: no
    dispatch mode) records during fn()'s forward and backward (and double backward) w.r.t.
    ``leaves``."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        y = fn()
        if not double:
            torch.autograd.grad(y, leaves, torch.ones_like(y))
        else:  # R1-style, as in run()
            grads = torch.autograd.grad(y.float().square().sum(), leaves, create_graph=True)
            torch.autograd.grad(sum(g.square().sum() for g in grads), leaves)
    return {e.name for e in prof.events() if e.name.startswith(f"{NAMESPACE}::")}


def _events(fn, args, *, custom=False, double=False):
    with _dispatch.custom_ops_only(custom):
        torch.manual_seed(SEED)
        return custom_op_events(lambda: fn(*args), leaves_of(args), double=double)


# op -> the custom ops its forward + backward run (through the custom op path)
EXPECTED_OPS = {
    "bias_act-lrelu-clamp": {"bias_act", "bias_act_backward"},
    "bias_act-swish-clamp": {"bias_act", "bias_act_backward_smooth"},
    "noise_inject-given": {"noise_inject", "noise_inject_backward"},
    "noise_inject-drawn": {"noise_inject", "noise_inject_backward"},
    "adain": {"adain", "adain_backward"},
    "style_epilogue-noise": {"style_epilogue", "style_epilogue_backward"},
    "style_epilogue-drawn-nobias": {"style_epilogue", "style_epilogue_backward"},
    "upfirdn2d": {"upfirdn2d"},
    "upfirdn2d-long": {"upfirdn2d"},
    "upsample2d": {"upfirdn2d"},
    "downsample2d": {"upfirdn2d"},
    "filter2d": {"upfirdn2d"},
    "filtered_lrelu": {"filtered_lrelu", "filtered_lrelu_masked"},
}


@pytest.mark.parametrize("name", list(EXPECTED_OPS))
def test_eager_call_dispatches_no_custom_op(name):
    """On the default backend, an eager forward + backward records no ``stylegan_fast::`` event;
    inside custom_ops_only() the same call records the op and its backward (so the test does see
    them when they run)."""
    fn, args = make_case(name)
    assert _events(fn, args) == set()
    expected = {f"{NAMESPACE}::{op}" for op in EXPECTED_OPS[name]}
    assert _events(fn, args, custom=True) == expected


@pytest.mark.parametrize("name", ["bias_act-lrelu-clamp", "bias_act-swish-clamp", "upsample2d"])
def test_eager_double_backward_dispatches_no_custom_op(name):
    fn, args = make_case(name)
    assert _events(fn, args, double=True) == set()
    assert _events(fn, args, custom=True, double=True)


def test_parameters_take_the_fast_path():
    """nn.Parameter inputs (weights, biases) are plain tensors to the dispatcher: no custom op,
    and the same result and gradients as through the custom op."""
    x = rand((2, 3, 5, 7))
    b = torch.nn.Parameter(torch.randn(3))
    s, sb = torch.nn.Parameter(torch.randn(2, 3)), torch.nn.Parameter(torch.randn(2, 3))
    strength = torch.nn.Parameter(torch.randn(3))

    def fn(x, b, s, sb, strength):
        y = ops.bias_act(x, b)
        y = ops.noise_inject(y, strength)
        y = ops.adain(y, s, sb)
        y = ops.style_epilogue(y, b, s, sb, strength)
        return ops.upsample2d(y, _fir())

    args = [x, b, s, sb, strength]
    assert not _dispatch.traced(args)
    assert _events(fn, args) == set()
    fast, custom = run(fn, args), run(fn, args, custom=True)
    assert_identical(fast, custom)
    # x itself a Parameter too
    args = [torch.nn.Parameter(x.detach().clone()), b, s, sb, strength]
    assert _events(fn, args) == set()


@pytest.mark.parametrize("name", ["bias_act-lrelu-clamp", "noise_inject-drawn", "adain",
                                  "style_epilogue-noise", "upfirdn2d"])
def test_autocast_matches_custom_op(name):
    """Under CPU autocast (bfloat16), with x coming out of an autocast matmul (bfloat16) and
    float32 parameters: the same result and gradients on both paths, and no custom op on the
    fast path."""
    fn, args = make_case(name)

    def under_autocast(*a):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            x = a[0] @ torch.eye(a[0].shape[-1])  # bfloat16 under autocast
            assert x.dtype == torch.bfloat16
            return fn(x, *a[1:])

    fast, custom = run(under_autocast, args), run(under_autocast, args, custom=True)
    assert fast["y"].dtype == torch.bfloat16
    assert_identical(fast, custom)
    assert _events(under_autocast, args) == set()


# ---- tracing goes through the custom ops
class FuncNames(TorchDispatchMode):
    """Records the name of every operator dispatched inside it."""

    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func))
        return func(*args, **(kwargs or {}))


def _ours(names):
    return {n for n in names if n.startswith(f"{NAMESPACE}.")}


@pytest.mark.parametrize("case,expected", [
    ("bias_act-swish-clamp", {"stylegan_fast.bias_act.default",
                              "stylegan_fast.bias_act_backward_smooth.default"}),
    ("style_epilogue-noise", {"stylegan_fast.style_epilogue.default",
                              "stylegan_fast.style_epilogue_backward.default"}),
])
def test_dispatch_mode_sees_custom_ops(case, expected):
    """Under a TorchDispatchMode the ops go through the custom ops: the mode sees one node per op
    (forward and backward)."""
    fn, args = make_case(case)
    with FuncNames() as mode:
        y = fn(*args)
        torch.autograd.grad(y, leaves_of(args), torch.ones_like(y))
    assert _ours(mode.names) == expected


def test_fake_tensor_mode_goes_through_custom_op():
    from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
    with FakeTensorMode(), FuncNames() as mode:
        x = torch.randn(2, 3, 5, 7, requires_grad=True)
        b = torch.randn(3, requires_grad=True)
        y = ops.bias_act(x, b, act="lrelu")
        (dx,) = torch.autograd.grad(y, [x], torch.ones_like(y))
        z = ops.upsample2d(x, _fir())
    assert isinstance(y, FakeTensor) and y.shape == x.shape and dx.shape == x.shape
    assert z.shape == (2, 3, 10, 14)
    assert {"stylegan_fast.bias_act.default", "stylegan_fast.bias_act_backward.default",
            "stylegan_fast.upfirdn2d.default"} <= _ours(mode.names)


def test_meta_tensors_go_through_custom_op():
    """Meta tensors take the custom op (its fake kernel): the profiler records it, with no
    dispatch mode involved."""
    x = torch.randn(2, 3, 5, 7, device="meta", requires_grad=True)
    b = torch.randn(3, device="meta", requires_grad=True)
    s = torch.randn(2, 3, device="meta", requires_grad=True)
    assert _dispatch.traced([x, b])
    names = custom_op_events(lambda: ops.style_epilogue(ops.bias_act(x, b), b, s, s, b),
                             [x, b, s])
    assert {"stylegan_fast::bias_act", "stylegan_fast::bias_act_backward",
            "stylegan_fast::style_epilogue", "stylegan_fast::style_epilogue_backward"} <= names


def test_compiled_graphs_contain_custom_ops():
    """torch.compile: the graph dynamo hands to the backend holds one
    ``torch.ops.stylegan_fast.<op>`` node per op call, and AOTAutograd's backward graph holds
    the backward ops; the compiled results equal the eager ones."""
    import torch._dynamo
    from torch._dynamo.backends.common import aot_autograd
    from torch._functorch.aot_autograd import make_boxed_func

    graphs = {"dynamo": [], "forward": [], "backward": []}

    def recorder(kind):
        def compiler(gm, example_inputs):
            graphs[kind].append(gm)
            return make_boxed_func(gm.forward)
        return compiler

    aot = aot_autograd(fw_compiler=recorder("forward"), bw_compiler=recorder("backward"))

    def backend(gm, example_inputs):
        graphs["dynamo"].append(gm)
        return aot(gm, example_inputs)

    def layer(x, b, s, sb, strength, noise):
        y = ops.bias_act(x, b, alpha=0.2, gain=2 ** 0.5)
        y = ops.bias_act(y, b, act="swish")
        y = ops.noise_inject(y, strength, noise)
        y = ops.adain(y, s, sb)
        y = ops.style_epilogue(y, b, s, sb, strength)
        return ops.upsample2d(y, _fir())

    torch._dynamo.reset()
    torch.manual_seed(0)
    n, c, h, w = 2, 3, 5, 7
    args = [rand((n, c, h, w)), rand((c,)), rand((n, c)), rand((n, c)), rand((c,)),
            rand((n, 1, h, w))]
    try:
        compiled = torch.compile(layer, backend=backend, fullgraph=True)
        torch.manual_seed(SEED)
        out = compiled(*args)
        grads = torch.autograd.grad(out, args, torch.ones_like(out))
    finally:
        torch._dynamo.reset()
    torch.manual_seed(SEED)
    eager_out = layer(*args)
    eager_grads = torch.autograd.grad(eager_out, args, torch.ones_like(eager_out))
    torch.testing.assert_close(out, eager_out)
    for got, want in zip(grads, eager_grads):
        torch.testing.assert_close(got, want)

    def targets(kind):
        return [str(node.target) for gm in graphs[kind] for node in gm.graph.nodes
                if node.op == "call_function" and NAMESPACE in str(node.target)]

    dynamo = targets("dynamo")
    assert sorted(t.split(".")[1] for t in dynamo) == sorted(
        ["bias_act", "bias_act", "noise_inject", "adain", "style_epilogue", "upfirdn2d"]), dynamo
    assert {t.split(".")[1] for t in targets("forward")} == {
        "bias_act", "noise_inject", "adain", "style_epilogue", "upfirdn2d"}
    assert {t.split(".")[1] for t in targets("backward")} == {
        "bias_act_backward", "bias_act_backward_smooth", "noise_inject_backward",
        "adain_backward", "style_epilogue_backward", "upfirdn2d"}


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::torch.jit.TracerWarning")
def test_jit_trace_and_vmap_go_through_custom_op():
    """torch.jit.trace records the custom op; vmap (a functorch transform) runs it (the
    profiler sees it, where the plain call records none)."""
    x, b = torch.randn(2, 3, 5), torch.randn(3)
    traced = torch.jit.trace(lambda x, b: ops.bias_act(x, b, act="relu"), (x, b))
    assert "stylegan_fast::bias_act" in str(traced.graph)
    assert torch.equal(traced(x, b), ops.bias_act(x, b, act="relu"))

    def per_sample(x):
        return ops.bias_act(x, b, act="swish", dim=0)

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        plain = per_sample(x[0])
    assert not [e for e in prof.events() if e.name.startswith(f"{NAMESPACE}::")]
    with pytest.warns(UserWarning, match="batching rule"), \
            profile(activities=[ProfilerActivity.CPU]) as prof:
        batched = torch.vmap(per_sample)(x)
    assert f"{NAMESPACE}::bias_act" in {e.name for e in prof.events()}
    assert torch.equal(batched[0], plain)


# ------------------------------------------------------------------------------------ opcheck
def _opcheck_args():
    """Valid ref-backend CPU arguments for every custom op, as the public functions build them."""
    torch.manual_seed(0)
    n, c, h, w = 2, 3, 4, 5
    x = torch.randn(n, c, h, w, requires_grad=True)
    dy = torch.randn(n, c, h, w)
    b = torch.randn(c, requires_grad=True)
    s = torch.randn(n, c, requires_grad=True)
    sb = torch.randn(n, c, requires_grad=True)
    noise = torch.randn(n, 1, h, w, requires_grad=True)
    seed = torch.tensor([123], dtype=torch.int64)
    mask = bias_act_module._bias_act_op.forward(x.detach(), b.detach(), 1, "lrelu", 0.2, 1.0,
                                                0.5, True, "ref")[1]
    _, mean, rstd = adain_module._adain_op.forward(x.detach(), s.detach(), sb.detach(), 1e-5,
                                                   1.0, "ref")
    f = _fir()
    signs = filtered_lrelu_module._filtered_lrelu_op.forward(
        x.detach(), _fir(LONG_FIR), f, b.detach(), 2, 2, [4, 4], [9, 11], [3, 4], 1.4, 0.2, 0.8,
        False, True, "ref")[1]
    return {
        "bias_act": [
            (bias_act_module._bias_act_op, (x, b, 1, "lrelu", 0.2, 1.0, 0.5, True, "ref")),
            (bias_act_module._bias_act_op, (x, None, 0, "linear", 0.0, 1.0, None, False, "ref")),
            (bias_act_module._bias_act_op, (x, b, 1, "swish", 0.0, 1.4, None, False, "ref"))],
        "bias_act_backward": [
            (bias_act_module._bias_act_backward_op,
             (dy.requires_grad_(), mask, 1, "lrelu", 0.2, 1.0, 0.5, True, "ref"))],
        "bias_act_backward_smooth": [
            (bias_act_module._bias_act_backward_smooth_op,
             (dy.clone().requires_grad_(), x, b, 1, "swish", 1.4, 0.8, True, "ref"))],
        "noise_inject": [
            (noise_inject_module._noise_inject_op, (x, b, noise, None, "ref")),
            (noise_inject_module._noise_inject_op, (x, b, None, seed, "ref"))],
        "noise_inject_backward": [
            (noise_inject_module._noise_inject_backward_op, (dy, b, noise, None, True, "ref")),
            (noise_inject_module._noise_inject_backward_op, (dy, b, None, seed, False, "ref"))],
        "adain": [(adain_module._adain_op, (x, s, sb, 1e-5, 1.0, "ref"))],
        "adain_backward": [
            (adain_module._adain_backward_op, (dy, x.detach(), mean, rstd, s.detach(), 1.0,
                                               "ref"))],
        "style_epilogue": [
            (style_epilogue_module._style_epilogue_op,
             (x, b, s, sb, b, noise, None, 0.2, 1.4, 1e-5, 1.0, "ref")),
            (style_epilogue_module._style_epilogue_op,
             (x, None, s, sb, b, None, seed, 0.2, 1.4, 1e-5, 1.0, "ref"))],
        "style_epilogue_backward": [
            (style_epilogue_module._style_epilogue_backward_op,
             (dy, x.detach(), b.detach(), s.detach(), b.detach(), noise.detach(), None, mean,
              rstd, 0.2, 1.4, 1.0, True, "ref"))],
        "upfirdn2d": [
            (upfirdn2d_module._upfirdn2d_op,
             (x, f, False, [2, 2], [1, 1], [2, 2], [9, 11], False, 1.0, torch.float32, "ref")),
            (upfirdn2d_module._upfirdn2d_op,
             (x, _fir(LONG_FIR).view(1, -1), False, [1, 1], [2, 1], [4, 0], [4, 3], True, 2.0,
              torch.float32, "ref"))],
        "filtered_lrelu": [
            (filtered_lrelu_module._filtered_lrelu_op,
             (x, _fir(LONG_FIR), f, b, 2, 2, [4, 4], [9, 11], [3, 4], 1.4, 0.2, 0.8, False, True,
              "ref")),
            (filtered_lrelu_module._filtered_lrelu_op,
             (x.detach(), f, torch.ones(1, 1), None, 1, 1, [1, 1], [4, 5], [4, 5], 1.0, 0.0,
              math.inf, True, False, "ref"))],
        "filtered_lrelu_masked": [
            (filtered_lrelu_module._masked_op,
             (dy.clone().requires_grad_(), f, _fir(LONG_FIR), signs, 2, 2, [3, 3], [4, 4],
              [9, 11], [2, 3], 1.4, 0.2, 4.0, True, torch.float32, "ref"))],
    }


OPCHECK_OPS = ["bias_act", "bias_act_backward", "bias_act_backward_smooth", "noise_inject",
               "noise_inject_backward", "adain", "adain_backward", "style_epilogue",
               "style_epilogue_backward", "upfirdn2d", "filtered_lrelu", "filtered_lrelu_masked"]


@pytest.mark.parametrize("op_name", OPCHECK_OPS)
def test_opcheck(op_name):
    """torch.library.opcheck on each custom op (schema, autograd registration, fake kernel,
    AOT dispatch with dynamic shapes) with ref-backend CPU arguments."""
    calls = _opcheck_args()[op_name]
    for fused, args in calls:
        assert isinstance(fused, _dispatch.FusedOp) and fused.name == op_name
        if op_name.endswith("_backward") and op_name[:-9] in NO_DOUBLE_BACKWARD.values():
            # Differentiating these backward ops is a double backward of noise_inject, adain or
            # style_epilogue, which raises by design (test_double_backward_raises_same_error):
            # test_aot_dispatch_dynamic differentiates the op whenever an input requires grad,
            # so it runs on detached inputs, and every other check on the grad-requiring ones.
            torch.library.opcheck(fused.custom_op, args, test_utils=[
                "test_schema", "test_autograd_registration", "test_faketensor"])
            args = [a.detach() if isinstance(a, torch.Tensor) else a for a in args]
        torch.library.opcheck(fused.custom_op, args)


def test_every_custom_op_is_covered():
    """The op names above are every FusedOp the op modules define."""
    found = set()
    for module in (adain_module, bias_act_module, filtered_lrelu_module, noise_inject_module,
                   style_epilogue_module, upfirdn2d_module):
        found |= {v.name for v in vars(module).values() if isinstance(v, _dispatch.FusedOp)}
    assert found == set(OPCHECK_OPS)


# ------------------------------------------------------------------------------------ CUDA graphs
CUDA_BACKENDS = ([b for b in backends_for("cuda") if b != "eager"]
                 if torch.cuda.is_available() else ["cuda", "triton", "ref"])
GRAPH_CASES = ["bias_act-lrelu-clamp", "bias_act-swish-clamp", "bias_act-linear-nobias",
               "noise_inject-given", "noise_inject-drawn", "adain", "style_epilogue-noise",
               "style_epilogue-drawn-nobias", "style_epilogue-nonoise", "upfirdn2d",
               "upfirdn2d-long", "upsample2d", "downsample2d", "filter2d", "filtered_lrelu"]


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="CUDA-graph capture needs a CUDA device (this machine has none)")
@pytest.mark.parametrize("backend", CUDA_BACKENDS)
@pytest.mark.parametrize("name", GRAPH_CASES)
def test_cuda_graph_capture_reproduces_eager(backend, name):
    """Capture forward + torch.autograd.grad of each op in a CUDA graph with static inputs,
    replay, and compare with an eager run on the same inputs.

    noise=None (``*-drawn``): the op draws its noise seed on the host, from torch's CPU
    generator, when the op is *called*, i.e. once, at capture time. A CUDA graph bakes host
    values (kernel arguments) in at capture, so every replay reproduces the SAME noise: two
    replays are equal, and equal an eager call made with the same CPU seed state
    (torch.manual_seed(SEED) before the capture and before the eager call). For fresh noise on
    each replay, pass ``noise`` explicitly as a static input and refill it before each replay.
    """
    if backend not in backends_for("cuda"):
        pytest.skip(f"backend {backend!r} is not available on cuda")
    fn, args = make_case(name, torch.float32, "cuda")
    leaves = leaves_of(args)

    def step():
        y = fn(*args)
        grads = torch.autograd.grad(y, leaves, static_dy)
        return [y, *grads]

    with ops.use_backend(backend):
        torch.manual_seed(SEED)
        static_dy = torch.randn_like(fn(*args)).detach()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up: Triton compiles, allocator settles
            for _ in range(2):
                torch.manual_seed(SEED)
                step()
        torch.cuda.current_stream().wait_stream(side)

        graph = torch.cuda.CUDAGraph()
        torch.manual_seed(SEED)
        with torch.cuda.graph(graph):
            static_out = step()
        graph.replay()
        first = [t.detach().clone() for t in static_out]
        graph.replay()
        second = [t.detach().clone() for t in static_out]
        torch.manual_seed(SEED)
        eager = [t.detach() for t in step()]
        for a, b in zip(first, second):
            assert torch.equal(a, b), "two replays differ"
        for i, (got, want) in enumerate(zip(first, eager)):
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6,
                                       msg=lambda m, i=i: f"[{i}] replay vs eager: {m}")

        if name in DRAWN_NOISE:
            # the noise is baked in: the same after a replay with another CPU seed state
            torch.manual_seed(SEED + 1)
            graph.replay()
            assert torch.equal(static_out[0], first[0]), "noise=None changed between replays"
            torch.manual_seed(SEED + 1)
            other = step()[0].detach()
            assert not torch.equal(other, first[0]), "another seed should draw other noise"
            return

        # new values in the static inputs: the replay computes on them
        with torch.no_grad():
            for a in leaves:
                a.copy_(torch.randn_like(a))
            static_dy.copy_(torch.randn_like(static_dy))
        graph.replay()
        torch.manual_seed(SEED)
        eager = [t.detach() for t in step()]
        for i, (got, want) in enumerate(zip(static_out, eager)):
            torch.testing.assert_close(got.detach(), want, rtol=1e-6, atol=1e-6,
                                       msg=lambda m, i=i: f"[{i}] refilled replay vs eager: {m}")
