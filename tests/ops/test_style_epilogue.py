import pytest
import torch
from torch.autograd import gradcheck

from stylegan_fast import ops
from stylegan_fast.ops import noise_inject, style_epilogue, style_epilogue_reference

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

GAIN = 2 ** 0.5


def make_args(shape, dtype=torch.float32, device="cpu", channels_last=False, noise="per-sample",
              small=None):
    """[x, bias, style_scale, style_bias, noise_strength, noise] with fresh random values."""
    n, c, h, w = shape
    small = small or (torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype)
    noise_map = {"per-sample": rand((n, 1, h, w), small, device),
                 "shared": rand((1, 1, h, w), small, device), None: None}[noise]
    return [rand(shape, dtype, device, channels_last), rand((c,), small, device),
            rand((n, c), small, device), rand((n, c), small, device), rand((c,), small, device),
            noise_map]


def epilogue(*args):
    return style_epilogue(*args, alpha=0.2, gain=GAIN)


def epilogue_reference(*args):
    return style_epilogue_reference(*args, alpha=0.2, gain=GAIN)


@parametrize_backends
@pytest.mark.parametrize("noise", ["per-sample", "shared"])
def test_gradcheck(device, backend, noise):
    args = make_args((2, 3, 4, 5), torch.float64, device, noise=noise)
    with ops.use_backend(backend):
        assert gradcheck(lambda *a: style_epilogue(*a, eps=1e-5, gain=GAIN), args,
                         **gradcheck_options(backend))


@parametrize_backends
def test_gradcheck_with_generated_noise_and_no_bias(device, backend):
    x, _, s, b, strength, _ = make_args((2, 3, 4, 5), torch.float64, device)

    def fn(x, s, b, strength):
        torch.manual_seed(11)
        return style_epilogue(x, None, s, b, strength, eps=1e-5)

    with ops.use_backend(backend):
        assert gradcheck(fn, (x, s, b, strength), **gradcheck_options(backend))


@parametrize_backends
def test_double_backward_raises_clearly_except_on_eager(device, backend):
    args = make_args((2, 3, 4, 5), torch.float64, device)
    with ops.use_backend(backend):
        assert_double_backward_raises(epilogue, args, "style_epilogue", backend)


@parametrize_backends
@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
@pytest.mark.parametrize("shape", ODD_SHAPES, ids=str)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_matches_reference(device, backend, dtype, shape, channels_last):
    args = make_args(shape, dtype, device, channels_last)
    assert_close_to_reference(epilogue, epilogue_reference, args, backend)


@parametrize_backends
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_half_input_with_same_dtype_small_tensors(device, backend, dtype):
    args = make_args((2, 6, 5, 3), dtype, device, noise="shared", small=dtype)
    ours = assert_close_to_reference(epilogue, epilogue_reference, args, backend)
    assert all(g.dtype == dtype for g in ours)


@parametrize_backends
def test_without_noise(device, backend):
    x, bias, s, b, _, _ = make_args((2, 5, 6, 7), torch.float32, device)
    assert_close_to_reference(lambda *a: style_epilogue(*a), style_epilogue_reference,
                              [x, bias, s, b], backend)


@parametrize_backends
def test_generated_noise_is_the_noise_inject_noise(device, backend):
    """With noise=None the epilogue draws the map noise_inject draws for the same seed, and its
    backward regenerates exactly that map (checked against an explicit-noise run)."""
    x, bias, s, b, strength, _ = make_args((3, 4, 6, 5), torch.float32, device)
    dy = torch.randn_like(x)
    with ops.use_backend(backend):
        torch.manual_seed(5)
        injected = noise_inject(x.detach(), strength.detach())
        noise = ((injected - x) / strength[None, :, None, None]).detach()[:, :1]
        torch.manual_seed(5)
        generated = torch.autograd.grad(style_epilogue(x, bias, s, b, strength), [x, strength], dy)
        explicit = torch.autograd.grad(style_epilogue(x, bias, s, b, strength, noise),
                                       [x, strength], dy)
    for got, want in zip(generated, explicit):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@parametrize_backends
@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (2, 3, 0, 5), (2, 0, 4, 4)])
def test_empty(device, backend, shape):
    args = make_args(shape, torch.float32, device, noise=None)
    with ops.use_backend(backend):
        y = epilogue(*args)
        y.backward(torch.ones_like(y))
    assert y.shape == args[0].shape
    assert all(torch.isfinite(a.grad).all() for a in args[1:5])


def test_saves_x_stats_and_small_tensors_only():
    x, bias, s, b, strength, _ = make_args((4, 8, 16, 16), torch.bfloat16)
    x_bytes = x.numel() * x.element_size()
    small_bytes = (4 * 8 * 2 + 8 * 2 + 4 * 8 * 2) * 4 + 8  # styles, bias+strength, stats, seed
    assert saved_bytes(style_epilogue, x, bias, s, b, strength) <= x_bytes + small_bytes


BAD_CALLS = [
    (lambda x, bi, s, b, ns, z: style_epilogue(x[0], bi, s, b), ValueError, "x must be 4-D"),
    (lambda x, bi, s, b, ns, z: style_epilogue(x, bi[:1], s, b), ValueError, "bias must have"),
    (lambda x, bi, s, b, ns, z: style_epilogue(x, bi, s.t(), b), ValueError, "style_scale must"),
    (lambda x, bi, s, b, ns, z: style_epilogue(x, bi, s, b, ns[:2]), ValueError,
     "noise_strength must have shape"),
    (lambda x, bi, s, b, ns, z: style_epilogue(x, bi, s, b, None, z), ValueError,
     "noise was given but noise_strength is None"),
    (lambda x, bi, s, b, ns, z: style_epilogue(x, bi, s, b, ns, z[..., 1:]), ValueError,
     "noise must have shape"),
    (lambda x, bi, s, b, ns, z: style_epilogue(x, bi, s, b, eps=-1.0), ValueError, "eps must be"),
    (lambda x, bi, s, b, ns, z: style_epilogue(x, bi, s, b, alpha=float("inf")), ValueError,
     "alpha must be finite"),
    (lambda x, bi, s, b, ns, z: style_epilogue(x, bi, s, b, gain=None), TypeError, "gain must be"),
    (lambda x, bi, s, b, ns, z: style_epilogue(x, bi.double(), s, b), TypeError, "bias has dtype"),
    (lambda x, bi, s, b, ns, z: style_epilogue(x, bi, s, b.to("meta")), ValueError,
     "style_bias is on meta"),
]


@pytest.mark.parametrize("call,error,message", BAD_CALLS, ids=bad_call_id)
def test_bad_input_names_the_argument(call, error, message):
    with pytest.raises(error, match=message):
        call(*make_args((2, 3, 4, 4)))


@parametrize_backends
def test_saves_at_most_40_percent_of_what_autograd_of_the_reference_saves(device, backend):
    args = make_args((4, 32, 16, 16), torch.float32, device, noise=None)
    with ops.use_backend(backend):
        fused = saved_bytes(epilogue, *args)
    reference = saved_bytes(epilogue_reference, *args)
    if backend == "eager":  # autograd of the plain definition: exactly what it saves
        assert fused == reference
    else:
        assert fused <= 0.4 * reference, f"{fused} bytes saved vs {reference} by the reference"


@parametrize_backends
@pytest.mark.parametrize("small", [torch.bfloat16, torch.float16], ids=str)
def test_half_small_tensors_beside_a_float32_x(device, backend, small):
    """What autocast produces: a float32 x (e.g. a constant input) with half-precision styles."""
    args = make_args((2, 6, 5, 3), torch.float32, device, small=small)
    dy = torch.randn_like(args[0])
    with ops.use_backend(backend):
        ours = torch.autograd.grad(epilogue(*args), args, dy)
    want = torch.autograd.grad(epilogue_reference(*args), args, dy)
    assert ours[0].dtype == torch.float32 and all(g.dtype == small for g in ours[1:])
    for got, expected in zip(ours, want):
        torch.testing.assert_close(got.float(), expected.float(), rtol=1e-2, atol=1e-2)


@parametrize_backends
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_small_gradients_of_a_16_bit_x_are_accumulated_in_float32(device, backend, dtype):
    """dbias, dnoise_strength and dnoise (float32 like their inputs) sum dt in float32 as ref
    does, not a dt first rounded to x's 16-bit dtype (which made dnoise's error several times
    PyTorch's own low-precision error on some inputs)."""
    args = make_args((2, 3, 4, 6), dtype, device)
    dy = torch.randn_like(args[0])
    with ops.use_backend(backend):
        ours = torch.autograd.grad(epilogue(*args), args, dy)
    with ops.use_backend("ref"):
        want = torch.autograd.grad(epilogue(*args), args, dy)
    for i in (1, 4, 5):  # bias, noise_strength, noise
        assert ours[i].dtype == torch.float32
        torch.testing.assert_close(ours[i], want[i], rtol=1e-4, atol=1e-4 * want[i].abs().max())


def test_ref_gives_the_same_bits_in_every_layout():
    """As adain's: NCHW and channels_last give equal outputs and gradients on ref."""
    x = torch.randn(3, 5, 7, 6) * 3 + 1
    args = (torch.randn(5), torch.randn(3, 5), torch.randn(3, 5), torch.randn(5),
            torch.randn(3, 1, 7, 6))
    results = []
    for t in (x, x.to(memory_format=torch.channels_last)):
        t = t.clone().requires_grad_()
        with ops.use_backend("ref"):
            y = style_epilogue(t, *args)
        (dx,) = torch.autograd.grad(y, t, y.detach() * 0.5 + 0.25)
        results.append((y.contiguous(), dx.contiguous()))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
