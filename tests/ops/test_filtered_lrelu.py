"""filtered_lrelu on every backend against a definition written here (NVIDIA's four steps on the
tests' own upfirdn2d definition), its saved signs, its geometry and its bad input."""
import importlib
import math

import pytest
import torch
import torch.nn.functional as F

from stylegan_fast import ops

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
    upfirdn2d_definition,
)

module = importlib.import_module("stylegan_fast.ops.filtered_lrelu")  # ops.filtered_lrelu: the op


def definition(x, fu=None, fd=None, b=None, up=1, down=1, padding=0, gain=math.sqrt(2),
               slope=0.2, clamp=None, flip_filter=False):
    """bias; upsample by up with fu and gain up ** 2; leaky ReLU times gain; clamp; filter with
    fd and keep every down-th pixel. In x's dtype."""
    if b is not None:
        x = x + b.to(x.dtype).view(1, -1, 1, 1)
    v = upfirdn2d_definition(x, fu, up=up, padding=padding, flip_filter=flip_filter,
                             gain=up * up)
    a = F.leaky_relu(v, slope) * gain
    if clamp is not None:
        a = a.clamp(-clamp, clamp)
    return upfirdn2d_definition(a, fd, down=down, flip_filter=flip_filter)


def lowpass(taps: int, seed: int = 0) -> torch.Tensor:
    """A normalized 1-D filter of random positive taps."""
    f = torch.rand(taps, generator=torch.Generator().manual_seed(seed)) + 0.1
    return f / f.sum()


def radial(taps: int) -> torch.Tensor:
    """A normalized 2-D radially symmetric filter (StyleGAN3-R's down filters are radial)."""
    r = torch.arange(taps, dtype=torch.float32) - (taps - 1) / 2
    f = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (taps / 3) ** 2)
    return f / f.sum()


def plane(kh: int, kw: int, seed: int = 1) -> torch.Tensor:
    f = torch.rand(kh, kw, generator=torch.Generator().manual_seed(seed)) + 0.1
    return f / f.sum()


# (id, fu, fd, kwargs): every argument form; StyleGAN3's shapes (12-tap x2, radial down, ToRGB).
CASES = [
    ("sg3-up2-down2-12tap", lambda: lowpass(12), lambda: lowpass(12, 1),
     dict(up=2, down=2, padding=[11, 10, 11, 10], clamp=0.8)),
    ("up4-down2-24tap", lambda: lowpass(24), lambda: lowpass(6, 1),
     dict(up=4, down=2, padding=[20, 19, 21, 18])),
    ("radial-down2", lambda: lowpass(6), lambda: radial(7),
     dict(up=2, down=2, padding=[4, 3, 5, 2], slope=0.1, gain=1.3)),
    ("torgb-bias-clamp", lambda: None, lambda: None, dict(gain=1, slope=1, clamp=0.5)),
    ("2d-mixed-crop-flip", lambda: plane(3, 5), lambda: plane(4, 2, 2),
     dict(up=3, down=1, padding=[-1, 2, 3, -2], flip_filter=True, clamp=1.0)),
    ("only-fd-down4", lambda: None, lambda: lowpass(5),
     dict(down=4, padding=[2, 3], slope=0.0)),
    ("only-fu-xy-pad", lambda: lowpass(3), lambda: None, dict(up=2, padding=[2, 1])),
    ("defaults", lambda: None, lambda: None, dict()),
]
CASE_IDS = [case[0] for case in CASES]


def case_args(case, device):
    _, make_fu, make_fd, kwargs = case
    fu, fd = make_fu(), make_fd()
    return (None if fu is None else fu.to(device)), (None if fd is None else fd.to(device)), \
        kwargs


def call(fu, fd, kwargs):
    return (lambda x, b: ops.filtered_lrelu(x, fu, fd, b, **kwargs),
            lambda x, b: definition(x, fu, fd, b, **kwargs))


def check(op, reference, x, b, backend):
    """assert_close_to_reference with an output gradient of the output's shape."""
    with torch.no_grad():
        dy = torch.randn_like(reference(x.detach().double(), b.detach().double())).to(x.dtype)
    return assert_close_to_reference(op, reference, [x, b], backend, dy=dy)


def bias(c, device, dtype=torch.float32):
    return rand((c,), dtype, device)


@parametrize_backends
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_every_argument_form_matches_the_definition(device, backend, case):
    fu, fd, kwargs = case_args(case, device)
    op, reference = call(fu, fd, kwargs)
    check(op, reference, rand((2, 3, 7, 9), device=device), bias(3, device), backend)


@parametrize_backends
@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", [CASES[0], CASES[4]], ids=[CASE_IDS[0], CASE_IDS[4]])
def test_dtypes_and_layouts(device, backend, dtype, layout, case):
    fu, fd, kwargs = case_args(case, device)
    op, reference = call(fu, fd, kwargs)
    x = rand_in_layout((2, 5, 6, 7), dtype, device, layout)
    # a float32 bias beside a half x, as AMP keeps it
    ours = check(op, reference, x, bias(5, device), backend)
    if layout != "channels_last":
        assert ours[0].is_contiguous()


@parametrize_backends
@pytest.mark.parametrize("case", [CASES[0], CASES[2], CASES[4], CASES[5]],
                         ids=[CASE_IDS[0], CASE_IDS[2], CASE_IDS[4], CASE_IDS[5]])
def test_gradcheck_and_gradgradcheck(device, backend, case):
    fu, fd, kwargs = case_args(case, device)
    x = rand((1, 2, 5, 4), torch.float64, device)
    b = rand((2,), torch.float64, device)
    with ops.use_backend(backend):
        fn = lambda x, b: ops.filtered_lrelu(x, fu, fd, b, **kwargs)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x, b), **gradcheck_options(backend))
        assert torch.autograd.gradgradcheck(fn, (x, b), **gradcheck_options(backend))


NOT_EAGER = [p for p in DEVICE_BACKENDS if p.values[1] != "eager"]


@pytest.mark.parametrize("device,backend", NOT_EAGER, ids=[p.id for p in NOT_EAGER])
def test_second_derivative_through_a_layer_equals_eager(device, backend):
    """d/dw |d L / dx|^2 through a modulated 1x1 layer and filtered_lrelu (a path-length or R1
    style penalty): the backward of the fused backward, against autograd of the definition."""
    fu, fd = lowpass(6).to(device), radial(5).to(device)
    x = rand((2, 3, 6, 6), torch.float64, device)
    weight = rand((3, 1, 1, 1), torch.float64, device)
    b = rand((3,), torch.float64, device)

    def penalty():
        h = ops.filtered_lrelu(x * weight.view(1, 3, 1, 1), fu, fd, b, up=2, down=2,
                               padding=[4, 3, 4, 3], clamp=1.5)
        (grad,) = torch.autograd.grad((h * h).sum(), x, create_graph=True)
        return torch.autograd.grad(grad.square().sum(), [weight, b])

    with ops.use_backend(backend):
        ours = penalty()
    with ops.use_backend("eager"):
        want = penalty()
    assert all(w.abs().max() > 0 for w in want)
    for o, w in zip(ours, want):
        torch.testing.assert_close(o, w, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("device,backend", NOT_EAGER, ids=[p.id for p in NOT_EAGER])
@pytest.mark.parametrize("case", [CASES[0], CASES[1]], ids=[CASE_IDS[0], CASE_IDS[1]])
def test_saves_two_bits_per_element_of_the_region_fd_reads(device, backend, case):
    fu, fd, kwargs = case_args(case, device)
    x = rand((2, 3, 8, 8), device=device)
    b = bias(3, device)
    with ops.use_backend(backend):
        saved = saved_bytes(lambda x, b: ops.filtered_lrelu(x, fu, fd, b, **kwargs), x, b)
    geo = module.geometry(8, 8, fu, fd, kwargs["up"], kwargs["down"], kwargs["padding"])
    region = 2 * 3 * geo.region_h * geo.region_w
    nvidia = 2 * 3 * geo.region_h * math.ceil(geo.region_w / 16) * 4  # 2 bits, 32-bit words
    filters = fu.numel() * 4 + fd.numel() * 4
    assert saved == 2 * 3 * geo.sign_bytes + filters
    assert 2 * 3 * geo.sign_bytes * 4 <= region + 2 * 3 * geo.region_h * 3  # 4 per byte
    assert 2 * 3 * geo.sign_bytes <= nvidia


@parametrize_backends
def test_no_grad_runs_without_signs_and_agrees(device, backend):
    fu, fd, kwargs = case_args(CASES[0], device)
    x = rand((2, 3, 7, 9), device=device)
    b = bias(3, device)
    with ops.use_backend(backend):
        with torch.no_grad():
            y0 = ops.filtered_lrelu(x, fu, fd, b, **kwargs)
        y1 = ops.filtered_lrelu(x, fu, fd, b, **kwargs)
    torch.testing.assert_close(y0, y1.detach(), rtol=0, atol=0)


@pytest.mark.parametrize("device,backend", NOT_EAGER, ids=[p.id for p in NOT_EAGER])
def test_signs_are_the_codes_of_the_definition(device, backend):
    """The saved bytes hold, 4 to a byte, each region element's code: NEGATIVE where v <= 0,
    CLAMPED where |leaky_relu(v) * gain| > clamp (v from the definition in float64)."""
    fu, fd = lowpass(4).to(device), lowpass(3, 1).to(device)
    x = rand((2, 3, 5, 9), torch.float64, device)
    b = rand((3,), torch.float64, device)
    kwargs = dict(up=2, down=2, padding=[3, 2, 2, 3], clamp=0.7)
    with ops.use_backend(backend):
        _, signs = module._filtered_lrelu_op(
            x, fu, fd, b, 2, 2, [3, 2], *_region_and_out(x, fu, fd, kwargs), math.sqrt(2), 0.2,
            0.7, False, True, backend)
    v = upfirdn2d_definition(x.detach() + b.detach().view(1, -1, 1, 1), fu, up=2,
                             padding=kwargs["padding"], gain=4)
    geo = module.geometry(5, 9, fu, fd, 2, 2, kwargs["padding"])
    v = v[:, :, :geo.region_h, :geo.region_w]
    a = F.leaky_relu(v, 0.2) * math.sqrt(2)
    codes = (v <= 0).to(torch.uint8) | ((a.abs() > 0.7).to(torch.uint8) << 1)
    assert signs.shape == (2, 3, geo.region_h, (geo.region_w + 3) // 4)
    assert torch.equal(module.unpack_signs(signs, geo.region_w), codes)
    if geo.region_w % 4:  # the last byte's bits past the region are 0
        assert not (signs[..., -1] >> (2 * (geo.region_w % 4))).any()


def _region_and_out(x, fu, fd, kwargs):
    geo = module.geometry(x.shape[2], x.shape[3], fu, fd, kwargs["up"], kwargs["down"],
                          kwargs["padding"])
    return [geo.region_h, geo.region_w], [geo.out_h, geo.out_w]


def test_pack_and_unpack_are_inverse_and_leave_unused_bits_zero():
    codes = torch.randint(0, 4, (2, 3, 5, 7), dtype=torch.uint8)
    packed = module.pack_signs(codes)
    assert packed.shape == (2, 3, 5, 2)
    assert torch.equal(module.unpack_signs(packed, 7), codes)
    assert torch.equal(packed[..., 1] >> 6, torch.zeros_like(packed[..., 1]))  # column 7: none
    one = module.pack_signs(torch.tensor([[[[1, 2, 3, 0]]]], dtype=torch.uint8))
    assert one.item() == 1 | 2 << 2 | 3 << 4


def test_ref_never_holds_the_whole_buffer(monkeypatch):
    """The ref backend's v comes a sample at a time when the region is large (chunk forced
    small here): the same values as in one piece."""
    fu, fd, kwargs = case_args(CASES[0], "cpu")
    x, b = rand((3, 2, 6, 5)), bias(2, "cpu")
    with ops.use_backend("ref"):
        whole = torch.autograd.grad(ops.filtered_lrelu(x, fu, fd, b, **kwargs).square().sum(),
                                    [x, b])
        monkeypatch.setattr(module, "REF_CHUNK_ELEMENTS", 1)
        parts = torch.autograd.grad(ops.filtered_lrelu(x, fu, fd, b, **kwargs).square().sum(),
                                    [x, b])
    for w, p in zip(whole, parts):
        torch.testing.assert_close(p, w, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("h,w,fu_taps,fd_taps,up,down,padding", [
    (36, 36, 12, 12, 2, 2, [11, 10, 11, 10]), (16, 16, 24, 24, 4, 2, [33, 32, 33, 32]),
    (5, 7, 3, 4, 3, 1, [-1, 2, 3, -2]), (9, 9, 1, 5, 1, 4, [2, 3, 2, 3]), (4, 4, 1, 1, 1, 1, 0),
])
def test_output_size_is_nvidias(h, w, fu_taps, fd_taps, up, down, padding):
    fu, fd = torch.ones(fu_taps), torch.ones(fd_taps)
    geo = module.geometry(h, w, fu, fd, up, down, padding)
    px0, px1, py0, py1 = module.parse_padding(padding)
    assert geo.out_w == (w * up + px0 + px1 - (fu_taps - 1) - (fd_taps - 1) + down - 1) // down
    assert geo.out_h == (h * up + py0 + py1 - (fu_taps - 1) - (fd_taps - 1) + down - 1) // down
    y = ops.filtered_lrelu(torch.randn(1, 2, h, w), fu / fu_taps, fd / fd_taps, up=up,
                           down=down, padding=padding)
    assert y.shape == (1, 2, geo.out_h, geo.out_w)


@parametrize_backends
def test_empty_batch(device, backend):
    x = rand((0, 3, 5, 4), device=device)
    with ops.use_backend(backend):
        y = ops.filtered_lrelu(x, lowpass(4).to(device), None, up=2, padding=2)
        y.sum().backward()
    assert y.shape == (0, 3, 11, 9) and x.grad.shape == x.shape


# ---------------------------------------------------------------- bad input
F12 = lowpass(12)
BAD_CALLS = [
    (lambda x: ops.filtered_lrelu(x, F12.double()), TypeError, "fu must be float32"),
    (lambda x: ops.filtered_lrelu(x, None, F12.half()), TypeError, "fd must be float32"),
    (lambda x: ops.filtered_lrelu(x, F12[None, None]), ValueError, "fu must be a non-empty 1-D or 2-D filter of at most 32 taps"),
    (lambda x: ops.filtered_lrelu(x, torch.ones(33)), ValueError, "fu must be .* at most 32 taps per axis, got shape .33,."),
    (lambda x: ops.filtered_lrelu(x, None, torch.ones(2, 40)), ValueError, "fd must be .* at most 32 taps"),
    (lambda x: ops.filtered_lrelu(x, [1.0, 2.0]), TypeError, "fu must be a torch.Tensor"),
    (lambda x: ops.filtered_lrelu(x, F12.clone().requires_grad_()), ValueError,
     "fu requires grad"),
    (lambda x: ops.filtered_lrelu(x, up=0), ValueError, "up must be >= 1"),
    (lambda x: ops.filtered_lrelu(x, down=-2), ValueError, "down must be >= 1"),
    (lambda x: ops.filtered_lrelu(x, up=2.0), TypeError, "up must be an int"),
    (lambda x: ops.filtered_lrelu(x, padding=[1, 2, 3]), ValueError, "padding must be an int"),
    (lambda x: ops.filtered_lrelu(x, F12, padding=0), ValueError,
     "padding 0 leaves an output of 0 x 0"),
    (lambda x: ops.filtered_lrelu(x, padding=[-6, -6, 0, 0]), ValueError, "padding"),
    (lambda x: ops.filtered_lrelu(x, gain=0), ValueError, "gain must be > 0"),
    (lambda x: ops.filtered_lrelu(x, gain=-1.0), ValueError, "gain must be > 0"),
    (lambda x: ops.filtered_lrelu(x, slope=-0.2), ValueError, "slope must be >= 0"),
    (lambda x: ops.filtered_lrelu(x, clamp=-1), ValueError, "clamp must be >= 0"),
    (lambda x: ops.filtered_lrelu(x, clamp=float("nan")), ValueError, "clamp must be finite"),
    (lambda x: ops.filtered_lrelu(x, b=torch.zeros(4)), ValueError, "b must have shape"),
    (lambda x: ops.filtered_lrelu(x, b=torch.zeros(3, dtype=torch.int64)), TypeError, "b has"),
    (lambda x: ops.filtered_lrelu(x[0]), ValueError, "x must be 4-D"),
    (lambda x: ops.filtered_lrelu(x.long()), TypeError, "x must be float16"),
    (lambda x: ops.filtered_lrelu(x, flip_filter=1), TypeError, "flip_filter must be a bool"),
]


@pytest.mark.parametrize("call,error,message", BAD_CALLS, ids=bad_call_id)
def test_bad_input_names_the_argument(call, error, message):
    with pytest.raises(error, match=message):
        call(rand((2, 3, 5, 6)))
