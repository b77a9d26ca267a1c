import pytest
import torch
from torch.autograd import gradcheck

from stylegan_fast import ops
from stylegan_fast.ops import adain, adain_reference

from .helpers import (
    ALL_DTYPES,
    ODD_SHAPES,
    assert_close_to_reference,
    assert_double_backward_raises,
    bad_call_id,
    gradcheck_options,
    parametrize_backends,
    rand,
    saved_bytes,
)


def styles(n, c, dtype, device):
    return rand((n, c), dtype, device), rand((n, c), dtype, device)


@parametrize_backends
@pytest.mark.parametrize("scale_offset", [1.0, 0.0])
def test_gradcheck(device, backend, scale_offset):
    x = rand((2, 3, 4, 5), torch.float64, device)
    fn = lambda x, s, b: adain(x, s, b, eps=1e-5, scale_offset=scale_offset)
    with ops.use_backend(backend):
        assert gradcheck(fn, (x, *styles(2, 3, torch.float64, device)),
                         **gradcheck_options(backend))


@parametrize_backends
def test_double_backward_raises_clearly_except_on_eager(device, backend):
    args = (rand((2, 3, 4, 5), torch.float64, device), *styles(2, 3, torch.float64, device))
    with ops.use_backend(backend):
        assert_double_backward_raises(adain, args, "adain", backend)


@parametrize_backends
@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
@pytest.mark.parametrize("shape", ODD_SHAPES, ids=str)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_matches_reference(device, backend, dtype, shape, channels_last):
    small = torch.float32 if dtype != torch.float32 else dtype
    args = [rand(shape, dtype, device, channels_last), *styles(*shape[:2], small, device)]
    assert_close_to_reference(adain, adain_reference, args, backend)


@parametrize_backends
def test_stable_variance_for_large_mean(device, backend):
    """E[x^2] - E[x]^2 would lose every digit here; a stable variance keeps them."""
    x = (300.0 + 0.1 * torch.randn(2, 3, 16, 16, device=device)).requires_grad_()
    s, b = styles(2, 3, torch.float32, device)
    with ops.use_backend(backend):
        y = adain(x, s, b)
    want = adain_reference(x.double(), s.double(), b.double())
    # two-pass float32 is off by ~6e-4 here; E[x^2] - E[x]^2 by ~1e3
    assert (y.double() - want).abs().max().item() < 5e-3


@parametrize_backends
@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (2, 3, 0, 5), (2, 0, 4, 4)])
def test_empty(device, backend, shape):
    x = rand(shape, torch.float32, device)
    s, b = styles(*shape[:2], torch.float32, device)
    with ops.use_backend(backend):
        y = adain(x, s, b)
        y.backward(torch.ones_like(y))
    assert y.shape == x.shape and torch.equal(b.grad, torch.zeros_like(b))
    assert torch.isfinite(s.grad).all()


def test_saves_x_and_small_tensors_only():
    x = rand((4, 8, 16, 16), torch.bfloat16)
    s, b = styles(4, 8, torch.float32, "cpu")
    x_bytes = x.numel() * x.element_size()
    assert saved_bytes(adain, x, s, b) <= x_bytes + 3 * 4 * 8 * 4


BAD_CALLS = [
    (lambda x, s, b: adain(x.flatten(2), s, b), ValueError, "x must be 4-D"),
    (lambda x, s, b: adain(x, s[:, :2], b), ValueError, "style_scale must have shape"),
    (lambda x, s, b: adain(x, s, b[:1]), ValueError, "style_bias must have shape"),
    (lambda x, s, b: adain(x, s, b.double()), TypeError, "style_bias has dtype"),
    (lambda x, s, b: adain(x.double(), s, b), TypeError, "style_scale has dtype .* pass float64"),
    (lambda x, s, b: adain(x, s, b, eps=-1e-5), ValueError, "eps must be >= 0"),
    (lambda x, s, b: adain(x, s, b, eps=float("nan")), ValueError, "eps must be finite"),
    (lambda x, s, b: adain(x, s, b, scale_offset=float("inf")), ValueError, "scale_offset must"),
    (lambda x, s, b: adain(x.int(), s, b), TypeError, "x must be float16"),
]


@pytest.mark.parametrize("call,error,message", BAD_CALLS, ids=bad_call_id)
def test_bad_input_names_the_argument(call, error, message):
    with pytest.raises(error, match=message):
        call(rand((2, 3, 4, 4)), *styles(2, 3, torch.float32, "cpu"))


def test_ref_gives_the_same_bits_in_every_layout():
    """The definition of correctness does not depend on memory layout: NCHW and channels_last
    give equal outputs and gradients (a channels_last reduction order would differ in the last
    bits and add up across a network's layers)."""
    x = torch.randn(3, 5, 7, 6) * 3 + 1
    style_scale, style_bias = torch.randn(3, 5), torch.randn(3, 5)
    results = []
    for t in (x, x.to(memory_format=torch.channels_last)):
        t = t.clone().requires_grad_()
        with ops.use_backend("ref"):
            y = adain(t, style_scale, style_bias)
        (dx,) = torch.autograd.grad(y, t, y.detach() * 0.5 + 0.25)
        results.append((y.contiguous(), dx.contiguous()))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
