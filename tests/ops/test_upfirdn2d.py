"""upfirdn2d (and NVIDIA's helpers) on every backend against a definition written here: zero
insertion, pad/crop onto a canvas, a sum of shifted taps, stride."""
import math

import pytest
import torch
import torch.nn.functional as F

from stylegan_fast import ops
from stylegan_fast.ops.upfirdn2d import SEPARABLE_ONE_PASS_TAPS

from .helpers import (
    ALL_DTYPES,
    DEVICE_BACKENDS,
    LAYOUTS,
    assert_close_to_reference,
    bad_call_id,
    gradcheck_options,
    parametrize_backends,
    rand,
    rand_in_layout,
    saved_bytes,
    upfirdn2d_definition as definition,
)


def taps(*shape, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=gen) + 0.1


# (id, filter, kwargs): every argument form, short and long 1-D filters (one pass with f (x) f,
# and two passes), 2-D, None.
CASES = [
    ("upsample-4x4", lambda: ops.setup_filter([1, 3, 3, 1]), dict(up=2, padding=[2, 1])),
    ("sep4-down2", lambda: taps(4), dict(down=2, padding=[1, 1, 1, 1])),
    ("sep12-up2-two-pass", lambda: taps(12), dict(up=2, padding=[6, 5], gain=-0.7)),
    ("2d-3x5-mixed-crop", lambda: taps(3, 5),
     dict(up=[2, 1], down=[1, 3], padding=[3, -1, 2, 4], flip_filter=True, gain=1.7)),
    ("none-crop-down2", lambda: None, dict(down=2, padding=[-1, 0, 0, -2])),
    ("sep3-up3-down2", lambda: taps(3), dict(up=3, down=2, padding=2, gain=0.5)),
    ("2d-1x1", lambda: torch.tensor([[2.0]]), dict()),
]
CASE_IDS = [case[0] for case in CASES]


def call(f, kwargs):
    return lambda x: ops.upfirdn2d(x, f, **kwargs), lambda x: definition(x, f, **kwargs)


def check(op, reference, x, backend):
    """assert_close_to_reference with an output gradient of the output's shape."""
    with torch.no_grad():
        dy = torch.randn_like(reference(x.detach().float())).to(x.dtype)
    return assert_close_to_reference(op, reference, [x], backend, dy=dy)


@parametrize_backends
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_every_argument_form_matches_the_definition(device, backend, case):
    _, make_filter, kwargs = case
    f = make_filter()
    f = None if f is None else f.to(device)
    op, reference = call(f, kwargs)
    check(op, reference, rand((2, 3, 7, 9), device=device), backend)


@parametrize_backends
@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", [CASES[0], CASES[2], CASES[3]],
                         ids=[CASE_IDS[0], CASE_IDS[2], CASE_IDS[3]])
def test_dtypes_and_layouts(device, backend, dtype, layout, case):
    _, make_filter, kwargs = case
    f = make_filter().to(device)
    op, reference = call(f, kwargs)
    x = rand_in_layout((2, 5, 6, 7), dtype, device, layout)
    ours = check(op, reference, x, backend)
    if layout != "channels_last":
        assert ours[0].is_contiguous()


@parametrize_backends
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 1, 6), (1, 2, 5, 1), (3, 1, 2, 2)],
                         ids=str)
def test_tiny_and_one_pixel_planes(device, backend, shape):
    f = ops.setup_filter([1, 3, 3, 1]).to(device)
    for kwargs in (dict(up=2, padding=[2, 1]), dict(down=2, padding=[2, 2, 2, 1]),
                   dict(padding=2)):
        op, reference = call(f, kwargs)
        check(op, reference, rand(shape, device=device), backend)


@parametrize_backends
@pytest.mark.parametrize("case", [CASES[0], CASES[2], CASES[3], CASES[5]],
                         ids=[CASE_IDS[0], CASE_IDS[2], CASE_IDS[3], CASE_IDS[5]])
def test_gradcheck_and_gradgradcheck(device, backend, case):
    _, make_filter, kwargs = case
    f = make_filter().to(device)
    x = rand((1, 2, 4, 5), torch.float64, device)
    with ops.use_backend(backend):
        fn = lambda x: ops.upfirdn2d(x, f, **kwargs)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x,), **gradcheck_options(backend))
        assert torch.autograd.gradgradcheck(fn, (x,), **gradcheck_options(backend))


NOT_EAGER = [p for p in DEVICE_BACKENDS if p.values[1] != "eager"]


@pytest.mark.parametrize("device,backend", NOT_EAGER, ids=[p.id for p in NOT_EAGER])
def test_r1_penalty_through_down_and_upsampling(device, backend):
    """A second derivative as StyleGAN2's R1 takes it: d/dw |d D(x) / dx|^2, D built on the op."""
    f = ops.setup_filter([1, 3, 3, 1]).to(device)
    x = rand((2, 3, 8, 8), torch.float64, device)
    weight = rand((3, 1, 1, 1), torch.float64, device)

    def penalty():
        h = ops.downsample2d(x * weight.view(1, 3, 1, 1), f)
        h = torch.nn.functional.leaky_relu(h, 0.2) * h
        score = ops.upsample2d(h, f, padding=[1, 0]).sum()
        (grad,) = torch.autograd.grad(score, x, create_graph=True)
        return torch.autograd.grad(grad.square().sum(), weight)[0]

    with ops.use_backend(backend):
        ours = penalty()
    with ops.use_backend("eager"):
        want = penalty()
    assert want.abs().max() > 0
    torch.testing.assert_close(ours, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("device,backend", NOT_EAGER, ids=[p.id for p in NOT_EAGER])
def test_saves_nothing_but_the_filter(device, backend):
    f = ops.setup_filter([1, 3, 3, 1]).to(device)
    x = rand((2, 3, 8, 8), device=device)
    with ops.use_backend(backend):
        saved = saved_bytes(lambda t: ops.upsample2d(t, f), x)
    assert saved <= f.numel() * f.element_size()


@parametrize_backends
def test_empty_batch(device, backend):
    x = rand((0, 3, 5, 4), device=device)
    with ops.use_backend(backend):
        y = ops.upfirdn2d(x, ops.setup_filter([1, 2, 1]).to(device), up=2, padding=1)
        y.sum().backward()
    assert y.shape == (0, 3, 10, 8) and x.grad.shape == x.shape


def test_two_pass_threshold_is_covered():
    assert CASES[1][1]().numel() <= SEPARABLE_ONE_PASS_TAPS < CASES[2][1]().numel()


# ---------------------------------------------------------------- NVIDIA's helpers
def test_setup_filter_conventions():
    torch.testing.assert_close(ops.setup_filter([1, 3, 3, 1]),
                               torch.outer(torch.tensor([1., 3, 3, 1]), torch.tensor([1., 3, 3, 1]))
                               / 64)
    long = ops.setup_filter(list(range(1, 9)))  # 8 taps and more stay 1-D (separable)
    assert long.shape == (8,) and math.isclose(long.sum().item(), 1.0, rel_tol=1e-6)
    assert ops.setup_filter([1, 2], separable=True).shape == (2,)
    assert ops.setup_filter(None).shape == (1, 1) and ops.setup_filter(2.0).item() == 1.0
    torch.testing.assert_close(ops.setup_filter([1, 2, 4], normalize=False, flip_filter=True,
                                                gain=4),
                               torch.outer(torch.tensor([4., 2, 1]), torch.tensor([4., 2, 1])) * 4)
    torch.testing.assert_close(ops.setup_filter([1., 2.], normalize=False, separable=True,
                                                gain=4), torch.tensor([2., 4.]))
    assert ops.setup_filter([1, 2]).dtype == torch.float32


@parametrize_backends
def test_helpers_keep_nvidias_sizes_and_meaning(device, backend):
    x = rand((2, 3, 6, 8), device=device)
    box = ops.setup_filter([1, 1]).to(device)
    odd = taps(3, 5).to(device)
    with ops.use_backend(backend):
        # a 2-tap box: upsample2d is nearest-neighbour, downsample2d is 2x2 averaging
        torch.testing.assert_close(ops.upsample2d(x, box), F.interpolate(x, scale_factor=2.0))
        torch.testing.assert_close(ops.downsample2d(x, box), F.avg_pool2d(x, 2))
        # filter2d of an odd filter: a 'same' convolution (correlation with the flipped filter)
        torch.testing.assert_close(ops.filter2d(x, odd),
                                   F.conv2d(x.reshape(6, 1, 6, 8), odd.flip(0, 1)[None, None],
                                            padding=(1, 2)).view(2, 3, 6, 8),
                                   rtol=1e-5, atol=1e-5)
        four = ops.setup_filter([1, 3, 3, 1]).to(device)
        assert ops.upsample2d(x, four, up=[2, 3]).shape == (2, 3, 18, 16)
        assert ops.downsample2d(x, four, down=2, padding=[1, 1, 0, 0]).shape == (2, 3, 3, 5)
        assert ops.filter2d(x, four, padding=[1, 2, 0, 1]).shape == (2, 3, 7, 11)
        # a constant image keeps its value away from the borders (normalized filters)
        ones = torch.ones(1, 1, 8, 8, device=device)
        for y in (ops.upsample2d(ones, four), ops.downsample2d(ones, four),
                  ops.filter2d(ones, four)):
            inner = y[..., 2:-2, 2:-2]
            torch.testing.assert_close(inner, torch.ones_like(inner))


# ---------------------------------------------------------------- bad input
F4 = ops.setup_filter([1, 3, 3, 1])
BAD_CALLS = [
    (lambda x: ops.upfirdn2d(x, F4.double()), TypeError, "f must be float32"),
    (lambda x: ops.upfirdn2d(x, F4[None]), ValueError, "f must be a non-empty 1-D or 2-D"),
    (lambda x: ops.upfirdn2d(x, [1.0, 2.0]), TypeError, "f must be a torch.Tensor or None"),
    (lambda x: ops.upfirdn2d(x, F4.to("meta")), ValueError, "f is on meta"),
    (lambda x: ops.upfirdn2d(x, F4.clone().requires_grad_()), ValueError, "f requires grad"),
    (lambda x: ops.upfirdn2d(x, F4, up=0), ValueError, "up must be >= 1"),
    (lambda x: ops.upfirdn2d(x, F4, down=[1, 0]), ValueError, "down must be >= 1"),
    (lambda x: ops.upfirdn2d(x, F4, up=[1, 2, 3]), TypeError, "up must be an int or a pair"),
    (lambda x: ops.upfirdn2d(x, F4, up=1.5), TypeError, "up must be an int or a pair"),
    (lambda x: ops.upfirdn2d(x, F4, padding=[1, 2, 3]), ValueError, "padding must be an int"),
    (lambda x: ops.upfirdn2d(x, F4, padding=[-3, -3, 0, 0]), ValueError,
     "crop is larger than the input"),
    (lambda x: ops.upfirdn2d(x, F4, padding=-1), ValueError, "crop is larger than the input"),
    (lambda x: ops.upfirdn2d(x[:, :, :1, :1], F4, padding=1), ValueError,
     "leaves 3 pixels along x .width. .input 1 x up 1., fewer than the filter's 4 taps$"),
    (lambda x: ops.upfirdn2d(x[0], F4), ValueError, "x must be 4-D"),
    (lambda x: ops.upfirdn2d(x, F4, flip_filter=1), TypeError, "flip_filter must be a bool"),
    (lambda x: ops.upfirdn2d(x, F4, gain=float("nan")), ValueError, "gain must be finite"),
    (lambda x: ops.upsample2d(x, F4, up=0), ValueError, "up must be >= 1"),
    (lambda x: ops.setup_filter([]), ValueError, "non-empty 1-D or 2-D"),
]


@pytest.mark.parametrize("call,error,message", BAD_CALLS, ids=bad_call_id)
def test_bad_input_names_the_argument(call, error, message):
    with pytest.raises(error, match=message):
        call(rand((2, 3, 5, 6)))


TRITON_ON_CPU = [p for p in DEVICE_BACKENDS if p.values == ("cpu", "triton")]


@pytest.mark.parametrize("device,backend", TRITON_ON_CPU, ids=[p.id for p in TRITON_ON_CPU])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("case", [CASES[0], CASES[3], CASES[5]],
                         ids=[CASE_IDS[0], CASE_IDS[3], CASE_IDS[5]])
def test_triton_multi_program_tilings(device, backend, layout, case, monkeypatch):
    """Tiles of a few elements (interpreter): several channel, row and column blocks, each
    program's edges masked, phases split across blocks."""
    from stylegan_fast.ops.triton import upfirdn2d as kernels

    monkeypatch.setattr(kernels, "TILE_ELEMENTS", 16)
    monkeypatch.setattr(kernels, "MIN_TILE_ELEMENTS", 16)
    monkeypatch.setattr(kernels, "CHANNELS_LAST_BLOCK_C", 2)
    x = rand_in_layout((2, 5, 7, 9), torch.float32, device, layout)
    block_c, block_y, block_x, programs = kernels._tile_shape(
        2, 5, 7, 9, layout == "channels_last")
    assert block_c < 5 and programs >= 2 * 3 * 2
    _, make_filter, kwargs = case
    op, reference = call(make_filter(), kwargs)
    check(op, reference, x, backend)
