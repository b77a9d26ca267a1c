"""ops.conv2d / ops.conv_transpose2d against F.conv2d / F.conv_transpose2d: values, gradients and
second derivatives (gradcheck and gradgradcheck in float64) for every convolution StyleGAN runs and
beyond, every dtype and layout, 'same'/'valid' and unbatched input, autocast, torch.compile,
argument errors, no_weight_gradients with R1, and the census of the convolutions a double backward
runs (no kernel larger than the layer's)."""
from __future__ import annotations

from typing import NamedTuple

import pytest
import torch
import torch.nn.functional as F

from stylegan_fast import ops
from stylegan_fast.bench.conv_census import ConvRecorder

from .helpers import (
    ALL_DTYPES,
    DEVICES,
    assert_close_to_reference,
    rand,
    saved_bytes,
)

# F.conv2d (the reference) warns about an even kernel with padding='same'; ops.conv2d does not
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(2024)


class Case(NamedTuple):
    """One convolution: ops.conv2d (or conv_transpose2d) against F.conv2d (F.conv_transpose2d)
    with these shapes and keyword arguments."""
    name: str
    transposed: bool
    x_shape: tuple
    w_shape: tuple
    bias: bool
    kwargs: dict

    def ops_and_reference(self):
        if self.transposed:
            return ops.conv_transpose2d, F.conv_transpose2d
        return ops.conv2d, F.conv2d

    def functions(self):
        """(ours, reference), each f(x, w[, b])."""
        ours, reference = self.ops_and_reference()
        kwargs = self.kwargs
        return (lambda x, w, b=None: ours(x, w, b, **kwargs),
                lambda x, w, b=None: reference(x, w, b, **kwargs))

    def inputs(self, dtype=torch.float64, device="cpu", channels_last_x=False,
               channels_last_w=False):
        """Fresh leaves [x, w] or [x, w, b] (bias of the output's channel count)."""
        x = rand(self.x_shape, dtype, device, channels_last_x and len(self.x_shape) == 4)
        w = rand(self.w_shape, dtype, device, channels_last_w)
        if not self.bias:
            return [x, w]
        out_channels = self.w_shape[1] * self.kwargs.get("groups", 1) if self.transposed \
            else self.w_shape[0]
        return [x, w, rand((out_channels,), dtype, device)]


CASES = [
    # the convolutions StyleGAN runs
    Case("3x3-pad1", False, (2, 3, 7, 5), (4, 3, 3, 3), True, dict(padding=1)),
    Case("1x1-bias", False, (2, 5, 6, 7), (3, 5, 1, 1), True, dict()),
    Case("down-4x4-s2-p1", False, (2, 3, 8, 6), (4, 3, 4, 4), True, dict(stride=2, padding=1)),
    Case("down-4x4-s2-p1-odd-7x5", False, (2, 3, 7, 5), (4, 3, 4, 4), False,
         dict(stride=2, padding=1)),
    Case("3x3-s2-p1-odd-7x5", False, (1, 3, 7, 5), (4, 3, 3, 3), True, dict(stride=2, padding=1)),
    Case("up-4x4-s2-p1", True, (2, 4, 5, 3), (4, 3, 4, 4), True, dict(stride=2, padding=1)),
    # beyond: modulated (batch folded into groups), dilated, rectangular, padding past the kernel
    Case("grouped-modulated", False, (1, 6, 7, 5), (8, 3, 3, 3), False, dict(padding=1, groups=2)),
    Case("dilated-2x3", False, (2, 3, 9, 8), (4, 3, 3, 3), True,
         dict(padding=(2, 1), dilation=(2, 3))),
    Case("rect-3x2-stride-3x2", False, (2, 3, 10, 7), (4, 3, 3, 2), True,
         dict(stride=(3, 2), padding=(1, 0))),
    Case("1x1-pad2-s2", False, (1, 3, 4, 5), (2, 3, 1, 1), False, dict(stride=2, padding=2)),
    Case("transposed-3x3-s2-op1", True, (2, 4, 4, 5), (4, 3, 3, 3), True,
         dict(stride=2, padding=1, output_padding=1)),
    Case("transposed-grouped", True, (2, 4, 4, 3), (4, 3, 3, 3), True,
         dict(stride=2, padding=1, output_padding=(1, 0), groups=2)),
    # output_padding >= stride (allowed below the dilation): the adjoint conv overshoots
    Case("transposed-dilated-op2", True, (1, 3, 4, 5), (3, 2, 3, 3), False,
         dict(stride=2, padding=1, output_padding=2, dilation=3)),
    Case("transposed-rect-stride-1x2", True, (1, 3, 5, 4), (3, 2, 2, 3), True,
         dict(stride=(1, 2), padding=(0, 1), output_padding=(0, 1))),
    # padding strings and unbatched [C, H, W] input
    Case("same-3x3", False, (2, 3, 7, 5), (4, 3, 3, 3), True, dict(padding="same")),
    Case("same-even-4x2-dilated", False, (1, 3, 7, 8), (4, 3, 4, 2), True,
         dict(padding="same", dilation=(1, 3))),
    Case("valid", False, (2, 3, 7, 5), (4, 3, 3, 2), False, dict(padding="valid")),
    Case("unbatched-3x3-pad1", False, (3, 7, 5), (4, 3, 3, 3), True, dict(padding=1)),
    Case("unbatched-same-even", False, (3, 6, 5), (4, 3, 2, 2), False, dict(padding="same")),
    Case("unbatched-up", True, (4, 5, 3), (4, 3, 4, 4), True, dict(stride=2, padding=1)),
]
BY_NAME = {case.name: case for case in CASES}
parametrize_cases = pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])


def output_gradient(reference, args):
    with torch.no_grad():
        return torch.randn_like(reference(*args))


@parametrize_cases
def test_gradcheck_and_gradgradcheck(case):
    ours, _ = case.functions()
    args = case.inputs(torch.float64)
    assert torch.autograd.gradcheck(ours, args)
    assert torch.autograd.gradgradcheck(ours, args)


@parametrize_cases
def test_values_and_gradients_match_torch(case):
    """float32 output and first-order gradients within 1e-5 of F.conv2d in float64."""
    ours, reference = case.functions()
    args = case.inputs(torch.float32)
    assert_close_to_reference(ours, reference, args, "ref", dy=output_gradient(reference, args))


def second_derivatives(fn, args, dy, v):
    """The gradients w.r.t. args and dy of <d<fn(*args), dy>/d args, v>: every second derivative
    R1 (and a gradgradcheck) takes; None for the bias (a conv is linear in it)."""
    y = fn(*args)
    firsts = torch.autograd.grad(y, args, dy, create_graph=True)
    total = sum((g * vi).sum() for g, vi in zip(firsts, v))
    return torch.autograd.grad(total, [*args, dy], allow_unused=True)


@parametrize_cases
def test_second_derivatives_match_torch(case):
    ours, reference = case.functions()
    args = case.inputs(torch.float64)
    dy = output_gradient(reference, args).requires_grad_()
    v = [torch.randn_like(a) for a in args]
    got = second_derivatives(ours, args, dy, v)
    want = second_derivatives(reference, args, dy, v)
    bias_is_none = [True] if case.bias else []  # of x, w[, b], dy
    assert [g is None for g in got] == [w is None for w in want] == [False, False,
                                                                     *bias_is_none, False]
    for g, w in zip(got, want):
        if w is not None:
            assert w.abs().max() > 0
            torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10)


@parametrize_cases
def test_first_order_backward_is_torchs_and_equals_the_differentiable_one(case):
    """Without create_graph the backward is one aten.convolution_backward (F.conv2d's own
    kernels, bit for bit); with it, the differentiable path gives the same gradients."""
    ours, reference = case.functions()
    args = case.inputs(torch.float64)
    dy = output_gradient(reference, args)
    with ConvRecorder() as rec:
        y = ours(*args)
        fast = torch.autograd.grad(y, args, dy)
    assert [call.op for call in rec.calls] == ["convolution", "convolution_backward"]
    want = torch.autograd.grad(reference(*args), args, dy)
    for g, w in zip(fast, want):
        assert torch.equal(g, w)
    slow = torch.autograd.grad(ours(*args), args, dy, create_graph=True)
    for g, w in zip(slow, fast):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", [BY_NAME["down-4x4-s2-p1-odd-7x5"], BY_NAME["up-4x4-s2-p1"],
                                  BY_NAME["transposed-dilated-op2"]], ids=lambda c: c.name)
def test_frozen_weight_saves_no_input_and_gives_the_input_gradient(case):
    """With a weight that needs no gradient (D during G's step) x is not saved (F.conv2d saves
    it), and dx = conv*(dy, w) alone, equal to F.conv2d's."""
    ours, reference = case.functions()
    x, w, *b = case.inputs(torch.float64)
    w.requires_grad_(False)
    assert saved_bytes(lambda t: ours(t, w, *b), x) == w.numel() * w.element_size()
    assert saved_bytes(lambda t: reference(t, w, *b), x) > w.numel() * w.element_size()
    dy = output_gradient(reference, [x, w, *b])
    got = torch.autograd.grad(ours(x, w, *b), [x, *b], dy)
    want = torch.autograd.grad(reference(x, w, *b), [x, *b], dy)
    for g, v in zip(got, want):
        torch.testing.assert_close(g, v, rtol=1e-12, atol=1e-12)


LAYOUTS = {"nchw": (False, False), "channels_last": (True, True), "x-channels_last": (True, False)}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", (*ALL_DTYPES, torch.float64), ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", [BY_NAME["3x3-pad1"], BY_NAME["down-4x4-s2-p1-odd-7x5"],
                                  BY_NAME["up-4x4-s2-p1"]], ids=lambda c: c.name)
def test_dtypes_and_layouts(case, layout, dtype, device):
    """Output and gradients as close to float64 as PyTorch's own (fp16/bf16: twice its error),
    in the dtype and with the strides F.conv2d gives."""
    ours, reference = case.functions()
    args = case.inputs(dtype, device, *LAYOUTS[layout])
    dy = output_gradient(reference, args)
    got = assert_close_to_reference(ours, reference, args, "ref", dy=dy)
    y = reference(*args)
    want = [y, *torch.autograd.grad(y, args, dy)]
    assert [(t.dtype, t.stride()) for t in got] == [(t.dtype, t.stride()) for t in want]


@pytest.mark.parametrize("case", [BY_NAME["down-4x4-s2-p1"], BY_NAME["up-4x4-s2-p1"]],
                         ids=lambda c: c.name)
def test_autocast_casts_as_torch_does(case):
    """Under CPU autocast (bfloat16) output and float32 weight/input gradients equal F's."""
    ours, reference = case.functions()
    args = case.inputs(torch.float32)
    results = []
    for fn in (ours, reference):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = fn(*args)
        results.append([y, *torch.autograd.grad(y.float().square().sum(), args)])
    got, want = results
    assert got[0].dtype == torch.bfloat16 and [g.dtype for g in got[1:]] == [torch.float32] * 3
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=0, atol=0)


def derivatives_of_every_order(fn, args):
    """[fn(*args), its gradients] and [the gradients again (create_graph), the gradients of
    their squared norm]."""
    y = fn(*args)
    firsts = torch.autograd.grad(y.square().sum(), args, retain_graph=True)
    differentiable = torch.autograd.grad(y.square().sum(), args, create_graph=True)
    seconds = torch.autograd.grad(sum(g.square().sum() for g in differentiable), args)
    return [y, *firsts], [*differentiable, *seconds]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", [BY_NAME["down-4x4-s2-p1-odd-7x5"], BY_NAME["up-4x4-s2-p1"],
                                  BY_NAME["transposed-dilated-op2"],
                                  BY_NAME["same-even-4x2-dilated"], BY_NAME["unbatched-up"]],
                         ids=lambda c: c.name)
def test_meta_tensors_give_torchs_shapes_dtypes_and_strides(case, layout):
    """On meta tensors output and derivatives of every order have F.conv2d's shapes and dtypes,
    output and first-order gradients also its strides. (Of higher orders not: PyTorch's meta
    convolution returns NCHW for channels_last while its meta convolution_backward keeps x's
    layout, and its second derivatives have odd strides.)"""
    ours, reference = case.functions()
    args = case.inputs(torch.bfloat16, "meta", *LAYOUTS[layout])
    (got, got_higher), (want, want_higher) = (derivatives_of_every_order(fn, args)
                                              for fn in (ours, reference))
    assert all(t.device.type == "meta" for t in got + got_higher)
    assert [(t.shape, t.dtype, t.stride()) for t in got] == \
        [(t.shape, t.dtype, t.stride()) for t in want]
    assert [(t.shape, t.dtype) for t in got_higher] == [(t.shape, t.dtype) for t in want_higher]


def test_empty_batch():
    x, w, b = BY_NAME["down-4x4-s2-p1"]._replace(x_shape=(0, 3, 8, 6)).inputs(torch.float32)
    y = ops.conv2d(x, w, b, stride=2, padding=1)
    y.sum().backward()
    assert y.shape == (0, 4, 4, 3) and x.grad.shape == x.shape
    assert w.grad.abs().max() == 0 and b.grad.abs().max() == 0


# ---------------------------------------------------------------- torch.compile
def test_compile_fullgraph_first_order_matches_eager():
    """A down-conv, lrelu and up-conv block compiles with fullgraph=True (inductor; ~10 s on two
    CPU cores); output and first-order gradients equal eager's."""
    torch._dynamo.reset()

    def block(x, w, b, wt):
        h = F.leaky_relu(ops.conv2d(x, w, b, stride=2, padding=1), 0.2)
        return ops.conv_transpose2d(h, wt, stride=2, padding=1)

    args = [rand((2, 3, 7, 5), channels_last=True), rand((4, 3, 4, 4)), rand((4,)),
            rand((4, 3, 4, 4))]
    y = torch.compile(block, fullgraph=True)(*args)
    dy = torch.randn_like(y)
    grads = torch.autograd.grad(y, args, dy)
    y_eager = block(*args)
    assert y.shape == y_eager.shape == (2, 3, 6, 4)
    for got, want in zip([y, *grads], [y_eager, *torch.autograd.grad(y_eager, args, dy)]):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- errors
def bad(name, x_shape=(2, 3, 7, 5), w_shape=(4, 3, 3, 3), **kwargs):
    """A call that both ops and torch must reject: a test id, the shapes of x and w, kwargs."""
    return pytest.param(x_shape, w_shape, kwargs, id=name)


BAD_CONV2D = [
    bad("channels", (2, 2, 7, 5)),
    bad("kernel-larger-than-input", (2, 3, 2, 2)),
    bad("unbatched-kernel-larger", (3, 2, 2)),
    bad("x-rank-5", (1, 2, 3, 7, 5)),
    bad("x-rank-2", (7, 5)),
    bad("w-rank-3", w_shape=(4, 3, 3)),
    bad("groups-mismatch", groups=2),
    bad("groups-0", groups=0),
    bad("groups-float", groups=1.0),
    bad("groups-bool", groups=True),
    bad("stride-0", stride=0),
    bad("stride-float", stride=1.5),
    bad("stride-3", stride=[1, 1, 1]),
    bad("padding-negative", padding=-1),
    bad("padding-3", padding=(1, 1, 1)),
    bad("same-strided", padding="same", stride=2),
    bad("padding-full", padding="full"),
    bad("padding-tuple-of-str", padding=("same",)),
    bad("dilation-0", dilation=0),
    bad("bias-size", bias=torch.ones(5)),
    bad("bias-list", bias=[1.0] * 4),
]
BAD_CONV_TRANSPOSE2D = [
    bad("channels", (2, 5, 4, 3)),
    bad("output-padding-not-below-stride", (2, 4, 4, 3), stride=2, output_padding=2),
    bad("padding-same", (2, 4, 4, 3), padding="same"),
    bad("groups-mismatch", (2, 4, 4, 3), groups=3),
    bad("dilation-3", (2, 4, 4, 3), dilation=(1,) * 3),
]


def raised(fn, *args, **kwargs) -> tuple:
    with pytest.raises(Exception) as info:
        fn(*args, **kwargs)
    return type(info.value), str(info.value)


@pytest.mark.parametrize("x_shape,w_shape,kwargs", BAD_CONV2D)
def test_conv2d_argument_errors_are_torchs(x_shape, w_shape, kwargs):
    for grad in (False, True):
        x, w = rand(x_shape, grad=grad), rand(w_shape, grad=grad)
        assert raised(ops.conv2d, x, w, **kwargs) == raised(F.conv2d, x, w, **kwargs)


@pytest.mark.parametrize("x_shape,w_shape,kwargs", BAD_CONV_TRANSPOSE2D)
def test_conv_transpose2d_argument_errors_are_torchs(x_shape, w_shape, kwargs):
    for grad in (False, True):
        x, w = rand(x_shape, grad=grad), rand(w_shape, grad=grad)
        assert raised(ops.conv_transpose2d, x, w, **kwargs) == \
            raised(F.conv_transpose2d, x, w, **kwargs)


@pytest.mark.parametrize("op", [ops.conv2d, ops.conv_transpose2d], ids=["conv2d", "transposed"])
def test_a_weight_or_bias_of_another_dtype_names_both(op):
    x, w, b = torch.randn(2, 3, 5, 5), torch.randn(3, 3, 3, 3), torch.randn(3)
    with pytest.raises(TypeError, match=r"weight has dtype torch\.float64 .*torch\.float32"):
        op(x, w.double(), b)
    with pytest.raises(TypeError, match=r"bias has dtype torch\.float16 .*torch\.float32"):
        op(x, w, b.half())


# ---------------------------------------------------------------- no_weight_gradients and R1
def test_no_weight_gradients_nests_and_disable_false_is_a_no_op():
    assert not ops.weight_gradients_disabled()
    with ops.no_weight_gradients(disable=False):
        assert not ops.weight_gradients_disabled()
    with ops.no_weight_gradients():
        with ops.no_weight_gradients():
            assert ops.weight_gradients_disabled()
        assert ops.weight_gradients_disabled()
        with ops.no_weight_gradients(disable=False):
            assert ops.weight_gradients_disabled()
    assert not ops.weight_gradients_disabled()
    with pytest.raises(KeyError), ops.no_weight_gradients():
        raise KeyError
    assert not ops.weight_gradients_disabled()


@pytest.mark.parametrize("create_graph", [False, True], ids=["first-order", "create-graph"])
@pytest.mark.parametrize("disable", [True, False])
def test_no_weight_gradient_while_active(disable, create_graph):
    case = BY_NAME["down-4x4-s2-p1"]
    ours, reference = case.functions()
    x, w, b = case.inputs(torch.float64)
    dy = output_gradient(reference, [x, w, b])
    with ops.no_weight_gradients(disable):
        gx, gw, gb = torch.autograd.grad(ours(x, w, b), [x, w, b], dy,
                                         create_graph=create_graph, allow_unused=True)
    want = torch.autograd.grad(reference(x, w, b), [x, w, b], dy)
    assert (gw is None) == disable
    for got, expected in zip([gx, gw, gb], want):
        if got is not None:
            torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def discriminator(conv2d, conv_transpose2d, x, w1, b1, w2, w3, w4):
    """A small D of the convolutions StyleGAN's runs (and an up-conv), with lrelu between."""
    h = F.leaky_relu(conv2d(x, w1, b1, padding=1), 0.2)
    h = F.leaky_relu(conv2d(h, w2, stride=2, padding=1), 0.2)
    h = F.leaky_relu(conv_transpose2d(h, w3, stride=2, padding=1), 0.2)
    return conv2d(h, w4)


def discriminator_weights():
    return [rand(shape, torch.float64) for shape in
            [(4, 3, 3, 3), (4,), (5, 4, 4, 4), (5, 3, 4, 4), (1, 3, 1, 1)]]


def r1_weight_gradients(conv2d, conv_transpose2d, x, weights, context):
    """R1 as StyleGAN trains it: |d D(x) / dx|^2, its first pass inside ``context``."""
    with context:
        score = discriminator(conv2d, conv_transpose2d, x, *weights)
        (grad,) = torch.autograd.grad(score.sum(), x, create_graph=True)
    grad.square().sum().backward()
    return [w.grad for w in weights]


def test_r1_weight_gradients_equal_torchs():
    x, weights = rand((2, 3, 9, 7), torch.float64), discriminator_weights()
    copies = [w.detach().clone().requires_grad_() for w in weights]
    ours = r1_weight_gradients(ops.conv2d, ops.conv_transpose2d, x, weights,
                               ops.no_weight_gradients())
    want = r1_weight_gradients(F.conv2d, F.conv_transpose2d, x, copies,
                               ops.no_weight_gradients(disable=False))
    assert ours[1].abs().max() == 0  # R1 of lrelu(conv + b) does not depend on b: zero, not None
    for got, expected in zip(ours, want):
        assert got is not None
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    assert all(w.abs().max() > 0 for i, w in enumerate(want) if i != 1)


def all_second_derivatives(conv2d, conv_transpose2d, x, weights, context):
    """The gradients of |d D(x) / d(x, weights)|^2 (path length's and gradgradcheck's kind:
    the weight gradient's own derivatives too); ``context`` is unused."""
    score = discriminator(conv2d, conv_transpose2d, x, *weights)
    grads = torch.autograd.grad(score.sum(), [x, *weights], create_graph=True)
    sum(g.square().sum() for g in grads).backward()


@pytest.mark.parametrize("conv", ["ops", "torch"])
@pytest.mark.parametrize("penalty", [r1_weight_gradients, all_second_derivatives],
                         ids=["r1", "all-second-derivatives"])
def test_double_backward_runs_no_kernel_larger_than_the_layers(penalty, conv):
    """Every convolution a penalty's two passes run has a kernel no larger than its layer's (3x3,
    4x4, 1x1); PyTorch's own double backward runs feature-map-sized ones (9x7)."""
    x = rand((2, 3, 9, 7), torch.float64)
    fns = (ops.conv2d, ops.conv_transpose2d) if conv == "ops" else (F.conv2d, F.conv_transpose2d)
    with ConvRecorder() as rec:
        penalty(*fns, x, discriminator_weights(), ops.no_weight_gradients())
    largest = max(call.kernel[0] * call.kernel[1] for call in rec.calls)
    assert len(rec.calls) >= 8
    if conv == "ops":
        assert largest <= 4 * 4
        assert {call.kernel for call in rec.calls} == {(3, 3), (4, 4), (1, 1)}
    else:
        assert largest >= 9 * 7


def test_compiled_no_weight_gradients_follows_the_switch():
    """Under torch.compile the switch is read when the forward runs (dynamo recompiles)."""
    torch._dynamo.reset()
    conv = torch.compile(lambda x, w: ops.conv2d(x, w, padding=1), fullgraph=True,
                         backend="aot_eager")
    x, w = rand((1, 2, 5, 4)), rand((3, 2, 3, 3))
    with ops.no_weight_gradients():
        y = conv(x, w)
    assert torch.autograd.grad(y.sum(), [x, w], allow_unused=True)[1] is None
    assert torch.autograd.grad(conv(x, w).sum(), [x, w])[1] is not None
