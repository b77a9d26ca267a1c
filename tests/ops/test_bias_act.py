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
