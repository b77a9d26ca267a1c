import contextlib

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck
from torch.utils._python_dispatch import TorchDispatchMode

from stylegan_fast import ops
from stylegan_fast.ops import bias_act, bias_act_reference

from .helpers import (
    ALL_DTYPES,
    DEVICE_BACKENDS,
    ODD_SHAPES,
    assert_close_to_reference,
    bad_call_id,
    gradcheck_options,
    parametrize_backends,
    rand,
    saved_bytes,
)

ACT_CONFIGS = [
    dict(act="lrelu", alpha=0.2, gain=1.0, clamp=None),
    dict(act="lrelu", alpha=0.3, gain=2 ** 0.5, clamp=0.7),
    dict(act="relu", alpha=0.2, gain=1.5, clamp=None),
    dict(act="linear", alpha=0.2, gain=0.5, clamp=None),
    dict(act="linear", alpha=0.2, gain=1.0, clamp=0.4),
]


@parametrize_backends
@pytest.mark.parametrize("config", ACT_CONFIGS, ids=lambda c: f"{c['act']}-clamp{c['clamp']}")
def test_gradcheck_and_gradgradcheck(device, backend, config):
    x = rand((2, 3, 4, 5), torch.float64, device)
    b = rand((3,), torch.float64, device)
    fn = lambda x, b: bias_act(x, b, **config)
    with ops.use_backend(backend):
        assert gradcheck(fn, (x, b), **gradcheck_options(backend))
        assert gradgradcheck(fn, (x, b), **gradcheck_options(backend))


@parametrize_backends
def test_double_backward_matches_reference(device, backend):
    """An R1-style penalty through bias_act: d/dparams of ||d out / d x||^2 equals ref's."""
    x = rand((3, 6, 5, 7), torch.float64, device)
    b = rand((6,), torch.float64, device)
    w = rand((6,), torch.float64, device)

    def penalty_grads(fn):
        y = fn(x * w[:, None, None], b, act="lrelu", alpha=0.2, gain=2 ** 0.5, clamp=1.5)
        (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
        return torch.autograd.grad(gx.square().sum(), (x, b, w))

    with ops.use_backend(backend):
        ours = penalty_grads(bias_act)
    for got, want in zip(ours, penalty_grads(bias_act_reference)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    assert any(g.abs().sum() > 0 for g in ours)


@parametrize_backends
@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
@pytest.mark.parametrize("shape", ODD_SHAPES, ids=str)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_matches_reference(device, backend, dtype, shape, channels_last):
    x = rand(shape, dtype, device, channels_last)
    b = rand(shape[1:2], torch.float32 if dtype != torch.float32 else dtype, device)
    config = ACT_CONFIGS[1]
    assert_close_to_reference(lambda x, b: bias_act(x, b, **config),
                              lambda x, b: bias_act_reference(x, b, **config), [x, b], backend)


@parametrize_backends
@pytest.mark.parametrize("shape,dim", [((7, 33), 1), ((5, 3, 2), -1), ((4, 6, 3, 2), 0), ((9,), 0)])
def test_any_rank_and_dim(device, backend, shape, dim):
    x = rand(shape, torch.float32, device)
    b = rand((shape[dim],), torch.float32, device)
    assert_close_to_reference(lambda x, b: bias_act(x, b, dim=dim, act="lrelu", clamp=1.0),
                              lambda x, b: bias_act_reference(x, b, dim, "lrelu", clamp=1.0),
                              [x, b], backend)


@parametrize_backends
def test_without_bias_and_non_contiguous_input(device, backend):
    x = rand((6, 10, 8), torch.float32, device).transpose(0, 2)
    assert_close_to_reference(lambda x: bias_act(x, act="relu"),
                              lambda x: bias_act_reference(x, act="relu"), [x], backend)


@parametrize_backends
@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (2, 3, 0, 5), (2, 0, 4, 4)])
def test_empty(device, backend, shape):
    x = rand(shape, torch.float32, device)
    b = rand(shape[1:2], torch.float32, device)
    with ops.use_backend(backend):
        y = bias_act(x, b)
        y.backward(torch.ones_like(y))
    assert y.shape == x.shape and x.grad.shape == x.shape
    assert torch.equal(b.grad, torch.zeros_like(b))


def test_saves_only_a_uint8_mask():
    x = rand((4, 8, 16, 16), torch.float32)
    b = rand((8,), torch.float32)
    assert saved_bytes(lambda: bias_act(x, b, clamp=1.0)) == x.numel()  # 1 byte per element
    assert saved_bytes(lambda: bias_act(x, b, act="linear")) == 0


KERNEL_BACKENDS = [p for p in DEVICE_BACKENDS if p.values[1] != "eager"]


class MaskRecorder(TorchDispatchMode):
    """The mask output of every stylegan_fast::bias_act forward dispatched inside it."""

    def __init__(self):
        super().__init__()
        self.masks = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.name() == "stylegan_fast::bias_act":
            self.masks.append(out[1])
        return out


@pytest.mark.parametrize("device,backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("clamp", [None, 0.6], ids=["noclamp", "clamp"])
def test_writes_no_mask_when_no_gradient_is_wanted(device, backend, clamp):
    """Inference moves one read of x and one write of y: no mask without a gradient to come.
    (Every backend but eager, which runs no custom op: autograd there saves what PyTorch saves.)"""
    x = rand((2, 5, 7, 9), torch.float32, device)
    b = rand((5,), torch.float32, device)
    want = bias_act_reference(x, b, clamp=clamp).detach()
    cases = {
        "no_grad": (torch.no_grad, x, b),
        "inference_mode": (torch.inference_mode, x, b),
        "no input requires grad": (contextlib.nullcontext, x.detach(), b.detach()),
    }
    with ops.use_backend(backend):
        for name, (context, xi, bi) in cases.items():
            with MaskRecorder() as recorder, context():
                y = bias_act(xi, bi, clamp=clamp)
            assert [m.numel() for m in recorder.masks] == [0], name
            torch.testing.assert_close(y, want, rtol=1e-6, atol=1e-6, msg=name)
        # a gradient wanted through x or b alone: the mask is written, and the gradient is right
        for xi, bi in ((x, b.detach()), (x.detach(), b)):
            with MaskRecorder() as recorder:
                y = bias_act(xi, bi, clamp=clamp)
            assert [m.numel() for m in recorder.masks] == [x.numel()]
            leaf = xi if xi.requires_grad else bi
            dy = torch.randn_like(y)
            (got,) = torch.autograd.grad(y, leaf, dy)
            ref_leaf = leaf.detach().requires_grad_()
            ref_y = bias_act_reference(ref_leaf if leaf is xi else xi,
                                       ref_leaf if leaf is bi else bi, clamp=clamp)
            (expected,) = torch.autograd.grad(ref_y, ref_leaf, dy)
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_respects_alpha_and_gain():
    x = torch.tensor([-2.0, -0.5, 0.5, 3.0])
    torch.testing.assert_close(bias_act(x, dim=0, alpha=0.1, gain=2.0),
                               torch.tensor([-0.4, -0.1, 1.0, 6.0]))
    torch.testing.assert_close(bias_act(x, dim=0, act="lrelu", alpha=0.1, gain=2.0, clamp=1.0),
                               torch.tensor([-0.4, -0.1, 1.0, 1.0]))


BAD_CALLS = [
    (lambda x, b: bias_act("x", b), TypeError, "x must be a torch.Tensor"),
    (lambda x, b: bias_act(x.long(), b), TypeError, "x must be float16"),
    (lambda x, b: bias_act(x, b[:2]), ValueError, "b must have shape"),
    (lambda x, b: bias_act(x, b.double()), TypeError, "b has dtype"),
    (lambda x, b: bias_act(x.half(), b.double()), TypeError, "b has dtype"),
    (lambda x, b: bias_act(x, b, act="gelu"), ValueError, "act must be one of"),
    (lambda x, b: bias_act(x, b, alpha=float("nan")), ValueError, "alpha must be finite"),
    (lambda x, b: bias_act(x, b, gain="2"), TypeError, "gain must be a real number"),
    (lambda x, b: bias_act(x, b, clamp=-1.0), ValueError, "clamp must be >= 0"),
    (lambda x, b: bias_act(x, b, clamp=float("inf")), ValueError, "clamp must be finite"),
    (lambda x, b: bias_act(x, b, dim=4), ValueError, "dim=4 is out of range"),
    (lambda x, b: bias_act(x, b, dim=1.0), TypeError, "dim must be an int"),
    (lambda x, b: bias_act(x, b.to("meta")), ValueError, "b is on meta"),
]


@pytest.mark.parametrize("call,error,message", BAD_CALLS, ids=bad_call_id)
def test_bad_input_names_the_argument(call, error, message):
    with pytest.raises(error, match=message):
        call(rand((2, 3, 4, 4)), rand((3,)))


def test_half_input_with_float32_bias_keeps_dtypes():
    x = rand((2, 3, 4, 4), torch.bfloat16)
    b = rand((3,), torch.float32)
    y = bias_act(x, b)
    y.sum().backward()
    assert y.dtype == torch.bfloat16 and x.grad.dtype == torch.bfloat16
    assert b.grad.dtype == torch.float32


# ---------------------------------------------------------------- the nine activations
SQRT2 = 2 ** 0.5
SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
# act -> (act(z, alpha) in plain PyTorch, written here from the public definitions; default
# alpha; default gain)
DEFINITIONS = {
    "linear": (lambda z, a: z, 0.0, 1.0),
    "relu": (lambda z, a: torch.clamp(z, min=0), 0.0, SQRT2),
    "lrelu": (lambda z, a: torch.where(z > 0, z, a * z), 0.2, SQRT2),
    "tanh": (lambda z, a: torch.tanh(z), 0.0, 1.0),
    "sigmoid": (lambda z, a: 1 / (1 + torch.exp(-z)), 0.0, 1.0),
    "elu": (lambda z, a: torch.where(z > 0, z, torch.expm1(z)), 0.0, 1.0),
    "selu": (lambda z, a: SELU_SCALE * torch.where(z > 0, z, SELU_ALPHA * torch.expm1(z)), 0.0,
             1.0),
    "softplus": (lambda z, a: torch.where(z > 20, z, torch.log1p(torch.exp(z))), 0.0, 1.0),
    "swish": (lambda z, a: z / (1 + torch.exp(-z)), 0.0, SQRT2),
}
SMOOTH = ("tanh", "sigmoid", "elu", "selu", "softplus", "swish")


def definition(x, b=None, dim=1, act="linear", alpha=None, gain=None, clamp=None):
    """bias_act written out for the tests, in x's own dtype (autograd differentiates it)."""
    func, def_alpha, def_gain = DEFINITIONS[act]
    z = x if b is None else x + b.to(x.dtype).reshape([-1 if d == dim % x.dim() else 1
                                                         for d in range(x.dim())])
    y = func(z, def_alpha if alpha is None else alpha) * (def_gain if gain is None else gain)
    return y if clamp is None else y.clamp(-clamp, clamp)


@parametrize_backends
@pytest.mark.parametrize("act", list(DEFINITIONS))
@pytest.mark.parametrize("dtype", (*ALL_DTYPES, torch.float64), ids=str)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_every_activation_matches_its_definition(device, backend, act, dtype, channels_last):
    """Defaults (alpha=None, gain=None) included: each activation's own."""
    x = rand((2, 5, 3, 7), dtype, device, channels_last)
    b = rand((5,), torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype, device)
    assert_close_to_reference(lambda x, b: bias_act(x, b, act=act),
                              lambda x, b: definition(x, b, act=act), [x, b], backend)


@parametrize_backends
@pytest.mark.parametrize("act", SMOOTH)
def test_smooth_activations_with_clamp_gain_and_another_dim(device, backend, act):
    x = rand((3, 4, 6), torch.float32, device) * 3
    b = rand((6,), torch.float32, device)
    config = dict(dim=-1, act=act, gain=1.7, clamp=0.8)
    assert_close_to_reference(lambda x, b: bias_act(x, b, **config),
                              lambda x, b: definition(x, b, **config), [x, b], backend)


@parametrize_backends
@pytest.mark.parametrize("act", SMOOTH)
@pytest.mark.parametrize("clamp", [None, 0.6])
def test_smooth_activations_gradcheck_and_gradgradcheck(device, backend, act, clamp):
    x = rand((2, 3, 4, 5), torch.float64, device)
    b = rand((3,), torch.float64, device)

    def fn(x, b):
        return bias_act(x, b, act=act, clamp=clamp)

    with ops.use_backend(backend):
        assert gradcheck(fn, (x, b), **gradcheck_options(backend))
        assert gradgradcheck(fn, (x, b), **gradcheck_options(backend))


@parametrize_backends
@pytest.mark.parametrize("act", ["swish", "selu", "softplus", "tanh"])
def test_smooth_double_backward_matches_the_definition(device, backend, act):
    """An R1-style penalty: d/dparams of ||d out / d x||^2, where act'' is not zero."""
    x = rand((3, 6, 5, 7), torch.float64, device)
    b = rand((6,), torch.float64, device)
    w = rand((6,), torch.float64, device)

    def penalty_grads(fn):
        y = fn(x * w[:, None, None], b, act=act, clamp=1.5)
        (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
        return torch.autograd.grad(gx.square().sum(), (x, b, w))

    with ops.use_backend(backend):
        ours = penalty_grads(bias_act)
    for got, want in zip(ours, penalty_grads(definition)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    assert all(g.abs().sum() > 0 for g in ours)


def test_none_means_the_activation_default_and_explicit_values_are_kept():
    x, b = rand((2, 3, 4, 4)), rand((3,))
    for act, (_, def_alpha, def_gain) in DEFINITIONS.items():
        torch.testing.assert_close(bias_act(x, b, act=act, alpha=None, gain=None),
                                   bias_act(x, b, act=act, alpha=def_alpha, gain=def_gain))
    torch.testing.assert_close(bias_act(x, b, act="lrelu", alpha=0.3, gain=1.0),
                               definition(x, b, act="lrelu", alpha=0.3, gain=1.0))


@pytest.mark.parametrize("act", SMOOTH)
def test_smooth_activations_save_x_and_b_and_write_nothing(act):
    x = rand((4, 8, 16, 16), torch.float32)
    b = rand((8,), torch.float32)
    assert saved_bytes(lambda: bias_act(x, b, act=act)) == 4 * (x.numel() + b.numel())


def test_unknown_activation_names_all_nine():
    with pytest.raises(ValueError, match="linear, relu, lrelu, tanh, sigmoid, elu, selu, "
                                         "softplus, swish"):
        bias_act(rand((2, 3)), act="gelu")
