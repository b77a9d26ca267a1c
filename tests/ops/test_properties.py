"""Property-based tests (hypothesis) of every op on every backend that runs on the CPU (ref, the
Triton kernels under the interpreter, eager): random N, C, H, W (1, odd sizes, C = 512/513 with
tiny planes), dtypes, memory layouts (NCHW, channels_last, transposed and sliced views, expanded
inputs), argument values and which inputs require grad. Output and every gradient must be as close
to a float64 evaluation of the op's definition as tests/ops/helpers.assert_close_to_reference
demands (float32: 1e-5 relative; float16/bfloat16: twice PyTorch's own low-precision error).

Examples are drawn afresh on every run (``derandomize=False``); a failure prints the example and
a ``@reproduce_failure`` blob. Sizes and example counts are bounded so that the file runs in about
a minute on two CPU cores (the interpreter costs ~5-10 ms per program)."""
from __future__ import annotations

import functools
import math

import pytest
import torch
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from stylegan_fast import ops
from stylegan_fast.ops.bias_act import ACTIVATIONS

from .helpers import (
    ALL_DTYPES,
    assert_close_to_reference,
    backends_for,
    rand,
    upfirdn2d_definition,
)

BACKENDS = backends_for("cpu")  # triton (interpreted), ref, eager

# The interpreter evaluates a kernel's masked-off lanes too (channels past C in a padded block):
# with eps = 0 their zero variance gives 1 / sqrt(0) there, which numpy reports; nothing of it is
# stored, and every value the op returns is checked below.
pytestmark = [pytest.mark.filterwarnings("ignore:divide by zero encountered:RuntimeWarning"),
              pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")]


def budget(max_examples: int):
    """Hypothesis settings of these tests: ``max_examples`` fresh examples, no deadline (the
    interpreter's first launch of a kernel compiles nothing but is slow), no example database
    (hypothesis may still make an empty .hypothesis/, which .gitignore lists)."""
    return settings(max_examples=max_examples, deadline=None, derandomize=False, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


# ---------------------------------------------------------------- strategies and inputs
# Strategies draw specs (shapes, dtypes, layouts, flags, argument values and a seed), which
# hypothesis prints readably when an example fails; the tests build the tensors from them.
@st.composite
def nchw(draw, max_side: int = 9, max_batch: int = 3):
    """(N, C, H, W): small odd and even sizes down to 1; one draw in five a wide layer (C = 512
    or 513) with planes of at most 2 x 2, like StyleGAN's 4x4 and 8x8 layers but cheap."""
    if draw(st.integers(0, 4)) == 4:
        return (draw(st.integers(1, 2)), draw(st.sampled_from([512, 513])),
                draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    return (draw(st.integers(1, max_batch)), draw(st.integers(1, 9)),
            draw(st.integers(1, max_side)), draw(st.integers(1, max_side)))


LAYOUTS_4D = ["contiguous", "channels_last", "transposed", "sliced", "expanded"]
PARAM_LAYOUTS = ["contiguous", "expanded", "sliced"]  # per-channel [C] and noise maps
STYLE_LAYOUTS = ["contiguous", "expanded", "transposed"]  # per-sample [N, C]


def tensor(draw, shape, dtype, layouts=("contiguous",)):
    """A tensor spec: (shape, dtype, layout, requires_grad)."""
    return tuple(shape), dtype, draw(st.sampled_from(list(layouts))), draw(st.booleans())


def small_dtype(draw, dtype):
    """The dtype of per-channel / per-sample tensors: x's, or float32 beside a half x."""
    return dtype if dtype == torch.float32 else draw(st.sampled_from([torch.float32, dtype]))


def seed(draw):
    return draw(st.integers(0, 2**31 - 1))


def make(spec, planes=None, scale: float = 1.0) -> torch.Tensor | None:
    """The tensor of a spec (None for None): fresh N(0, 1) values (or ``planes`` of them, a
    function of a float64 tensor), times ``scale``, as a leaf in the spec's layout:

    contiguous; channels_last (4-D); transposed: the last two dims swapped in memory; sliced:
    every other element of the last dim; expanded: dim 0 broadcast from size 1 (stride 0)."""
    if spec is None:
        return None
    shape, dtype, layout, grad = spec
    if layout == "expanded":
        base = make(((1,) + shape[1:], dtype, "contiguous", False), planes, scale)
        return base.expand(shape).requires_grad_(grad)
    if layout in ("contiguous", "channels_last"):
        t = rand(shape, dtype, channels_last=layout == "channels_last", grad=False)
    elif layout == "transposed":
        t = rand(shape[:-2] + (shape[-1], shape[-2]), dtype, grad=False).transpose(-1, -2)
    elif layout == "sliced":
        t = rand(shape[:-1] + (2 * shape[-1],), dtype, grad=False)[..., ::2]
    else:
        raise ValueError(layout)
    if planes is not None or scale != 1.0:
        values = t.double() if planes is None else planes(t.double())
        t.copy_(values * scale)
    return t.requires_grad_(grad)


def conditioned(t: torch.Tensor) -> torch.Tensor:
    """Fresh [H, W] planes of ``t``'s shape with a std in [1, 2] and a mean in [-1, 1].

    Instance normalization of a plane whose values nearly coincide (std << |mean|, e.g. two
    pixels of nearly equal values) is ill-conditioned: float32 rounding of x - mean, amplified
    by rstd, makes every float32 evaluation (PyTorch's own var_mean included) miss the float64
    one by far more than the 1e-5 the float32 tolerance allows. Such planes say nothing about
    the kernels, so adain and style_epilogue get well-conditioned ones. (One-pixel planes stay:
    their xhat is 0 by definition.)"""
    if t.shape[-1] * t.shape[-2] == 1:
        return t
    t = torch.randn_like(t, dtype=torch.float64)  # t's values were rounded: some may coincide
    var, mean = torch.var_mean(t, dim=(-2, -1), correction=0, keepdim=True)
    std = 1 + torch.rand_like(mean)
    return (t - mean) / var.sqrt() * std + (2 * torch.rand_like(std) - 1)


def check_all_backends(op, reference, args, dy=None):
    """assert_close_to_reference on every CPU backend (forward and every gradient)."""
    for backend in BACKENDS:
        assert_close_to_reference(op, reference, args, backend, dy=dy)


# ---------------------------------------------------------------- bias_act
@st.composite
def bias_act_specs(draw):
    """x of any rank 1-4 and layout, b (one draw in four None) along a random dim, and the
    activation, alpha, gain and clamp (None: the activation's default / no clamp)."""
    dtype = draw(st.sampled_from(ALL_DTYPES))
    rank = draw(st.integers(1, 4))
    if rank == 4:
        shape, layouts = draw(nchw()), LAYOUTS_4D
    else:
        shape = tuple(draw(st.lists(st.integers(1, 9), min_size=rank, max_size=rank)))
        layouts = ["contiguous", "sliced", "expanded"] + (["transposed"] if rank >= 2 else [])
    dim = draw(st.integers(-rank, rank - 1))
    b = None
    if draw(st.integers(0, 3)) > 0:
        b = tensor(draw, (shape[dim],), small_dtype(draw, dtype), PARAM_LAYOUTS)
    return dict(seed=seed(draw), x=tensor(draw, shape, dtype, layouts), b=b,
                kwargs=dict(dim=dim, act=draw(st.sampled_from(list(ACTIVATIONS))),
                            alpha=draw(st.none() | st.just(0.0) | st.floats(0.01, 1.0)),
                            gain=draw(st.none() | signed(draw, st.floats(0.01, 2.0))),
                            clamp=draw(st.none() | st.just(0.0) | st.floats(0.01, 3.0))))


def signed(draw, magnitudes):
    """0 or +-a value of ``magnitudes``. (No tiny nonzero alpha, gain or clamp: they make
    subnormal outputs, which float32 kernels and PyTorch's half math round differently, while
    the half tolerance's one ulp is relative to a normal scale.)"""
    return st.just(0.0) | magnitudes | magnitudes.map(lambda v: -v)


@budget(100)
@given(bias_act_specs())
def test_bias_act(spec):
    """bias_act on every backend matches its float64 definition, for every activation, alpha,
    gain and clamp (None: the activation's defaults), any rank, dim and layout."""
    torch.manual_seed(spec["seed"])
    args = [make(spec["x"]), make(spec["b"])]
    kwargs = spec["kwargs"]
    if kwargs["clamp"] is not None:
        # no output exactly at +-clamp (half inputs and simple clamps reach it): the kink has no
        # derivative; the op keeps dy there (|y| <= clamp, as NVIDIA's), PyTorch's clamp gives 0
        unclamped = dict(kwargs, clamp=None)
        for dtype in (torch.float64, torch.float32):
            y = ops.bias_act_reference(*[a if a is None else a.detach().to(dtype) for a in args],
                                       **unclamped)
            assume(not (y.abs() == kwargs["clamp"]).any())
    check_all_backends(functools.partial(ops.bias_act, **spec["kwargs"]),
                       functools.partial(ops.bias_act_reference, **spec["kwargs"]), args)


# ---------------------------------------------------------------- noise_inject
@st.composite
def noise_inject_specs(draw):
    """x, strength and a noise map per sample or shared by the batch, in any layout."""
    dtype = draw(st.sampled_from(ALL_DTYPES))
    n, c, h, w = draw(nchw())
    small = small_dtype(draw, dtype)
    noise_shape = draw(st.sampled_from([(n, 1, h, w), (1, 1, h, w)]))
    return dict(seed=seed(draw), x=tensor(draw, (n, c, h, w), dtype, LAYOUTS_4D),
                strength=tensor(draw, (c,), small, PARAM_LAYOUTS),
                noise=tensor(draw, noise_shape, small, PARAM_LAYOUTS + ["transposed"]))


@budget(60)
@given(noise_inject_specs())
def test_noise_inject(spec):
    """noise_inject with a given noise map on every backend matches its float64 definition."""
    torch.manual_seed(spec["seed"])
    args = [make(spec[name]) for name in ("x", "strength", "noise")]
    check_all_backends(ops.noise_inject, ops.noise_inject_reference, args)


# ---------------------------------------------------------------- adain
def eps_values(dtype):
    """eps for adain and style_epilogue. Not 1e-8 beside a float16 x: it rounds to 0 there, so
    PyTorch's float16 evaluation (the yardstick) of a one-pixel plane is 0 / 0, and the helper
    then allows a single ulp of the (float32) gradients' scale."""
    return [1e-5, 0.1] + ([1e-8] if dtype != torch.float16 else [])


@st.composite
def adain_specs(draw):
    """x, style_scale, style_bias in any layout; eps and scale_offset."""
    dtype = draw(st.sampled_from(ALL_DTYPES))
    n, c, h, w = draw(nchw())
    small = small_dtype(draw, dtype)
    # eps = 0 only for planes of 2+ pixels (see conditioned); a one-pixel plane has rstd = 0 by
    # definition, where the float64 reference divides 0 by 0
    eps = draw(st.sampled_from(eps_values(dtype) + ([0.0] if h * w > 1 else [])))
    return dict(seed=seed(draw), x=tensor(draw, (n, c, h, w), dtype, LAYOUTS_4D),
                style_scale=tensor(draw, (n, c), small, STYLE_LAYOUTS),
                style_bias=tensor(draw, (n, c), small, STYLE_LAYOUTS),
                kwargs=dict(eps=eps, scale_offset=draw(st.floats(-2.0, 2.0))))


@budget(50)
@given(adain_specs())
def test_adain(spec):
    """adain on every backend matches its float64 definition for any eps and scale_offset."""
    torch.manual_seed(spec["seed"])
    args = [make(spec["x"], conditioned), make(spec["style_scale"]), make(spec["style_bias"])]
    check_all_backends(functools.partial(ops.adain, **spec["kwargs"]),
                       functools.partial(ops.adain_reference, **spec["kwargs"]), args)


# ---------------------------------------------------------------- style_epilogue
@st.composite
def style_epilogue_specs(draw):
    """x, bias (or None), styles, noise_strength and a noise map (or neither) in any layout;
    alpha, gain, eps, scale_offset."""
    dtype = draw(st.sampled_from(ALL_DTYPES))
    n, c, h, w = draw(nchw())
    # no two-pixel planes: they normalize to +-1 whatever their values, so every gradient is 0
    # up to eps and the comparison would measure rounding noise against a zero scale
    assume(h * w != 2)
    small = small_dtype(draw, dtype)
    strength = noise = None
    if draw(st.booleans()):
        strength = tensor(draw, (c,), small, PARAM_LAYOUTS)
        noise = tensor(draw, draw(st.sampled_from([(n, 1, h, w), (1, 1, h, w)])), small,
                       PARAM_LAYOUTS)
    # alpha >= 0.1 (StyleGAN's is 0.2): a smaller one squashes the negative values of a plane
    # towards a constant (0 for alpha = 0, then 0 / 0 with eps = 0), which makes its
    # normalization ill-conditioned (see conditioned) and its gradients vanish
    kwargs = dict(alpha=draw(st.floats(0.1, 1.0)), gain=draw(st.floats(0.1, 2.0)),
                  eps=draw(st.sampled_from(eps_values(dtype))),
                  scale_offset=draw(st.floats(-2.0, 2.0)))
    return dict(seed=seed(draw), x=tensor(draw, (n, c, h, w), dtype, LAYOUTS_4D),
                bias=tensor(draw, (c,), small, PARAM_LAYOUTS) if draw(st.booleans()) else None,
                style_scale=tensor(draw, (n, c), small, STYLE_LAYOUTS),
                style_bias=tensor(draw, (n, c), small, STYLE_LAYOUTS),
                noise_strength=strength, noise=noise, kwargs=kwargs)


def plane_std(t: torch.Tensor) -> torch.Tensor:
    return t.double().std(dim=(2, 3), correction=0)


@budget(50)
@given(style_epilogue_specs())
def test_style_epilogue(spec):
    """style_epilogue on every backend matches its float64 definition, with and without bias
    and noise, for any alpha, gain, eps and scale_offset."""
    torch.manual_seed(spec["seed"])
    # well-conditioned planes (see conditioned) for x + noise * noise_strength (small, as
    # StyleGAN's), which the op normalizes after the bias and leaky ReLU
    args = [make(spec["x"], conditioned), make(spec["bias"]), make(spec["style_scale"]),
            make(spec["style_bias"]), make(spec["noise_strength"], scale=0.1),
            make(spec["noise"])]
    x, _, _, _, strength, noise = args
    if noise is not None and x.shape[2] * x.shape[3] > 1:  # noise that undoes x's spread: rare
        assume(plane_std(x + noise * strength[:, None, None]).min() > 0.5)
    check_all_backends(functools.partial(ops.style_epilogue, **spec["kwargs"]),
                       functools.partial(ops.style_epilogue_reference, **spec["kwargs"]), args)


# ---------------------------------------------------------------- noise drawn in the op
@st.composite
def drawn_noise_specs(draw):
    """The op and float32 x (the noise drawn in the op is float32 whatever x's dtype)."""
    return dict(op=draw(st.sampled_from(["noise_inject", "style_epilogue"])), seed=seed(draw),
                x=tensor(draw, draw(nchw()), torch.float32, LAYOUTS_4D))


def run_seeded(fn, args, seed):
    """fn(*args) after torch.manual_seed(seed), and the gradients of its sum w.r.t. the args
    that require grad."""
    torch.manual_seed(seed)
    y = fn(*args)
    return [y, *torch.autograd.grad(y.sum(), [a for a in args if a.requires_grad])]


# eager draws with torch.randn directly, not from a seed the op passes on: not the same stream
@budget(15)
@given(drawn_noise_specs())
def test_drawn_noise_is_the_seeded_map(spec):
    """With noise=None, noise_inject and style_epilogue (ref and triton) draw the [N, 1, H, W]
    map that noise_inject(zeros, 1) draws after the same torch.manual_seed, in forward and again
    in backward: output and gradients equal those of the call given that map."""
    torch.manual_seed(spec["seed"])
    x = make(spec["x"], conditioned)
    n, c, h, w = x.shape
    args = [x, rand((c,))]
    if spec["op"] == "style_epilogue":
        args += [rand((n, c)), rand((n, c)), rand((c,))]
    op = getattr(ops, spec["op"])
    for backend in [b for b in BACKENDS if b != "eager"]:
        with ops.use_backend(backend):
            torch.manual_seed(spec["seed"])
            noise = ops.noise_inject(torch.zeros(n, 1, h, w), torch.ones(1))
            drawn = run_seeded(op, args, spec["seed"])
            given_map = run_seeded(lambda *a, noise=noise: op(*a, noise), args, spec["seed"])
        for got, want in zip(drawn, given_map):
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- upfirdn2d
def fits(size: int, up: int, pad0: int, pad1: int, taps: int) -> bool:
    """Whether upfirdn2d accepts the padding along an axis: it raises (naming the padding) when
    the padded input is shorter than the filter or the crop removes more than the input."""
    return size * up + pad0 + pad1 >= taps and max(-pad0, 0) + max(-pad1, 0) <= size * up


@st.composite
def filter_shapes(draw):
    """None (the identity), a 1-D filter of 1-4 taps (one pass, f (x) f) or 9-10 taps (two
    passes), or a 2-D [KH, KW] filter of 1-4 taps each."""
    kind = draw(st.sampled_from(["none", "short", "long", "2d"]))
    if kind == "none":
        return None
    if kind == "2d":
        return draw(st.integers(1, 4)), draw(st.integers(1, 4))
    return (draw(st.integers(1, 4) if kind == "short" else st.integers(9, 10)),)


def check_resampling(op, reference, x):
    """check_all_backends with an output gradient of the output's shape."""
    with torch.no_grad():
        dy = torch.randn_like(reference(x.detach().float())).to(x.dtype)
    check_all_backends(op, reference, [x], dy=dy)


@st.composite
def upfirdn2d_specs(draw):
    """x, the filter's shape, up, down, padding (only what the op accepts, see fits), flip and
    gain."""
    n, c, h, w = draw(nchw(max_side=6, max_batch=2))
    f = draw(filter_shapes())
    kw, kh = (1, 1) if f is None else (f[-1], f[0])
    up = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = [draw(st.integers(-2, 4)) for _ in range(4)]
    assume(fits(w, up[0], padding[0], padding[1], kw) and fits(h, up[1], *padding[2:], kh))
    down = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    return dict(seed=seed(draw), f=f, up=up, down=down,
                padding=padding, flip=draw(st.booleans()),
                gain=draw(signed(draw, st.floats(0.01, 2.0))),
                x=(n, c, h, w), dtype=draw(st.sampled_from(ALL_DTYPES)),
                layout=draw(st.sampled_from(LAYOUTS_4D)))


@budget(25)
@given(upfirdn2d_specs())
# found by hypothesis: the backward pass pads dy's one row by 2 and crops 2, longer than dy
# (the ref backend's F.pad raised "narrow(): length must be non-negative")
@example(dict(seed=0, f=None, up=(1, 2), down=(1, 1), padding=[0, 0, -2, 1], flip=False,
              gain=0.5, x=(1, 1, 1, 1), dtype=torch.float32, layout="contiguous"))
def test_upfirdn2d(spec):
    """upfirdn2d on every backend matches its definition for any filter (none, short and long
    separable, 2-D), up, down, padding (negative crops), flip and gain."""
    torch.manual_seed(spec["seed"])
    x = make((spec["x"], spec["dtype"], spec["layout"], True))
    f = None if spec["f"] is None else torch.rand(spec["f"]) + 0.1
    up, down, padding, flip, gain = (spec[k] for k in ("up", "down", "padding", "flip", "gain"))
    check_resampling(lambda x: ops.upfirdn2d(x, f, list(up), list(down), padding, flip, gain),
                     lambda x: upfirdn2d_definition(x, f, up, down, padding, flip, gain), x)


# NVIDIA's helpers: the padding that centres the filter, and the gain of upsample2d, restated
# from StyleGAN2-ADA's torch_utils/ops/upfirdn2d.py (fw, fh: the filter's width and height)
def nvidia_padding(helper, factor, fw, fh, padding):
    (fx, fy), (px0, px1, py0, py1) = factor, padding
    if helper == "upsample2d":
        return [px0 + (fw + fx - 1) // 2, px1 + (fw - fx) // 2,
                py0 + (fh + fy - 1) // 2, py1 + (fh - fy) // 2]
    if helper == "downsample2d":
        return [px0 + (fw - fx + 1) // 2, px1 + (fw - fx) // 2,
                py0 + (fh - fy + 1) // 2, py1 + (fh - fy) // 2]
    return [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]


@st.composite
def helper_specs(draw):
    """The helper, x, filter taps for setup_filter, its factor (x, y), padding, flip, gain."""
    n, c, h, w = draw(nchw(max_side=6, max_batch=2))
    taps = draw(st.lists(st.floats(0.1, 4.0), min_size=1, max_size=4))
    separable = draw(st.none() | st.booleans())
    f = ops.setup_filter(taps, separable=separable)
    helper = draw(st.sampled_from(["upsample2d", "downsample2d", "filter2d"]))
    factor = (1, 1) if helper == "filter2d" else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = [draw(st.integers(-1, 2)) for _ in range(4)] if draw(st.booleans()) else [0] * 4
    pad = nvidia_padding(helper, factor, f.shape[-1], f.shape[0], padding)
    up = factor if helper == "upsample2d" else (1, 1)
    assume(fits(w, up[0], pad[0], pad[1], f.shape[-1]) and fits(h, up[1], *pad[2:], f.shape[0]))
    return dict(helper=helper, seed=seed(draw), x=(n, c, h, w),
                dtype=draw(st.sampled_from(ALL_DTYPES)), layout=draw(st.sampled_from(LAYOUTS_4D)),
                taps=taps, separable=separable, factor=factor, padding=padding,
                flip=draw(st.booleans()), gain=draw(st.floats(0.1, 2.0)))


@budget(15)
@given(helper_specs())
def test_resampling_helpers(spec):
    """upsample2d, downsample2d and filter2d are upfirdn2d with NVIDIA's centring padding (and
    gain x up_x x up_y for upsample2d); without padding they scale the size by up, 1 / down
    (rounded down) and 1."""
    torch.manual_seed(spec["seed"])
    x = make((spec["x"], spec["dtype"], spec["layout"], True))
    helper, factor, padding, flip, gain = (spec[k] for k in
                                           ("helper", "factor", "padding", "flip", "gain"))
    f = ops.setup_filter(spec["taps"], separable=spec["separable"])
    pad = nvidia_padding(helper, factor, f.shape[-1], f.shape[0], padding)
    up = factor if helper == "upsample2d" else (1, 1)
    down = factor if helper == "downsample2d" else (1, 1)
    kwargs = {"upsample2d": dict(up=list(factor)), "downsample2d": dict(down=list(factor)),
              "filter2d": {}}[helper]

    def op(x):
        return getattr(ops, helper)(x, f, padding=padding, flip_filter=flip, gain=gain, **kwargs)

    check_resampling(op, lambda x: upfirdn2d_definition(x, f, up, down, pad, flip,
                                                        gain * up[0] * up[1]), x)
    if padding == [0] * 4:
        n, c, h, w = x.shape
        assert op(x.detach()).shape == (n, c, h * up[1] // down[1], w * up[0] // down[0])


@budget(40)
@given(taps=st.lists(st.floats(0.1, 4.0), min_size=1, max_size=12) | st.lists(
           st.lists(st.floats(0.1, 4.0), min_size=3, max_size=3), min_size=1, max_size=3),
       normalize=st.booleans(), flip=st.booleans(), gain=st.floats(0.1, 4.0),
       separable=st.none() | st.booleans())
def test_setup_filter(taps, normalize, flip, gain, separable):
    """setup_filter: a 1-D list stays 1-D when separable (by default from 8 taps), else becomes
    the outer product; normalize divides by the sum, flip flips, gain scales by gain**(ndim/2)."""
    f = ops.setup_filter(taps, normalize=normalize, flip_filter=flip, gain=gain,
                         separable=separable)
    t = torch.tensor(taps, dtype=torch.float64)
    one_d = t.dim() == 1 and (separable if separable is not None else len(taps) >= 8)
    want = t if one_d or t.dim() == 2 else torch.outer(t, t)
    if normalize:
        want = want / want.sum()
    if flip:
        want = want.flip(list(range(want.dim())))
    want = want * gain ** (want.dim() / 2)
    assert f.dtype == torch.float32 and f.shape == want.shape
    torch.testing.assert_close(f.double(), want, rtol=1e-5, atol=0)
    if normalize:
        assert math.isclose(f.double().sum().item(), gain ** (f.dim() / 2), rel_tol=1e-5)
