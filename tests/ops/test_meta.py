"""Shape inference without data: every public op (and NVIDIA's resampling helpers) on meta
tensors and under FakeTensorMode, forward and backward, gives outputs and gradients of exactly
the shapes, dtypes and strides that real CPU tensors give; models build and run on the meta
device; torch.export captures the ops."""
import warnings

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

from stylegan_fast import ops
from stylegan_fast.models import Discriminator, Generator

from .helpers import rand

F16, BF16 = torch.float16, torch.bfloat16


def case(fn, *args, **kwargs):
    return fn, list(args), kwargs


def fir(taps=(1, 3, 3, 1), **kwargs):
    return ops.setup_filter(list(taps), **kwargs)


def transposed(shape):
    """A non-contiguous [N, C, H, W] view (H and W swapped) of a fresh tensor."""
    n, c, h, w = shape
    return rand((n, c, w, h), grad=False).transpose(2, 3).requires_grad_()


# name -> a function returning (op, CPU args, kwargs); fresh CPU tensors on every call
CASES = {
    "bias_act-lrelu-clamp": lambda: case(ops.bias_act, rand((2, 5, 7, 9)), rand((5,)),
                                         act="lrelu", clamp=0.5),
    "bias_act-tanh-nhwc": lambda: case(ops.bias_act, rand((2, 5, 3, 4), channels_last=True),
                                       rand((5,)), act="tanh"),
    "bias_act-fp16-rank2": lambda: case(ops.bias_act, rand((7, 33), F16), rand((33,)),
                                        act="swish", clamp=1.0),
    "bias_act-nobias-view": lambda: case(ops.bias_act, transposed((2, 3, 4, 5)), None,
                                         act="linear"),
    "noise_inject-given": lambda: case(ops.noise_inject, rand((2, 5, 4, 6)), rand((5,)),
                                       rand((2, 1, 4, 6))),
    "noise_inject-shared-bf16": lambda: case(ops.noise_inject, rand((3, 4, 5, 5), BF16),
                                             rand((4,)), rand((1, 1, 5, 5))),
    "noise_inject-drawn": lambda: case(ops.noise_inject, rand((2, 5, 4, 6), channels_last=True),
                                       rand((5,))),
    "adain": lambda: case(ops.adain, rand((2, 5, 7, 3)), rand((2, 5)), rand((2, 5)), eps=1e-5),
    "adain-fp16-nhwc": lambda: case(ops.adain, rand((2, 5, 4, 4), F16, channels_last=True),
                                    rand((2, 5)), rand((2, 5))),
    "style_epilogue-all": lambda: case(ops.style_epilogue, rand((2, 5, 4, 6)), rand((5,)),
                                       rand((2, 5)), rand((2, 5)), rand((5,)),
                                       rand((2, 1, 4, 6)), alpha=0.3, gain=1.5),
    "style_epilogue-drawn-nhwc": lambda: case(ops.style_epilogue,
                                              rand((2, 5, 4, 4), channels_last=True), None,
                                              rand((2, 5)), rand((2, 5)), rand((5,))),
    "style_epilogue-no-noise": lambda: case(ops.style_epilogue, rand((2, 5, 3, 3), BF16),
                                            rand((5,)), rand((2, 5)), rand((2, 5))),
    "upfirdn2d-up-pad": lambda: case(ops.upfirdn2d, rand((2, 3, 5, 6)), fir(), up=2,
                                     padding=[2, 1, 1, 2]),
    "upfirdn2d-long-crop": lambda: case(ops.upfirdn2d, rand((2, 3, 12, 13), channels_last=True),
                                        fir(range(1, 10), separable=True), down=[2, 1],
                                        padding=[3, -1, 4, 4], gain=2.0),
    "upfirdn2d-identity-view": lambda: case(ops.upfirdn2d, transposed((1, 2, 5, 4)), None,
                                            flip_filter=True),
    "upsample2d": lambda: case(ops.upsample2d, rand((2, 3, 4, 5)), fir()),
    "downsample2d-fp16": lambda: case(ops.downsample2d, rand((2, 3, 8, 6), F16), fir()),
    "filter2d": lambda: case(ops.filter2d, rand((2, 3, 4, 5)), fir([1, 2, 1]), padding=1),
    "filtered_lrelu-sg3": lambda: case(ops.filtered_lrelu, rand((2, 3, 5, 6), channels_last=True),
                                       fir(range(1, 13), separable=True), fir(), rand((3,)),
                                       up=2, down=2, padding=[11, 10, 9, 10], clamp=1.0),
    "filtered_lrelu-bf16-crop": lambda: case(ops.filtered_lrelu, rand((2, 3, 7, 6), BF16), None,
                                             fir([1, 2, 1]), None, down=2,
                                             padding=[-1, 0, 2, 1]),
    "conv2d-down": lambda: case(ops.conv2d, rand((2, 3, 7, 5)), rand((4, 3, 4, 4)), rand((4,)),
                                stride=2, padding=1),
    "conv2d-same-unbatched": lambda: case(ops.conv2d, rand((3, 6, 5)), rand((4, 3, 2, 2)),
                                          padding="same"),
    "conv_transpose2d-up-bf16": lambda: case(ops.conv_transpose2d, rand((2, 4, 5, 3), BF16),
                                             rand((4, 3, 4, 4), BF16), None, stride=2,
                                             padding=1, output_padding=1),
}


def to_meta(t):
    return t.detach().to("meta").requires_grad_(t.requires_grad)


def convert(args, to):
    return [to(a) if isinstance(a, torch.Tensor) else a for a in args]


def forward_backward(fn, args, kwargs):
    """fn(*args, **kwargs) and the gradients of y.sum() w.r.t. the args that require grad."""
    y = fn(*args, **kwargs)
    leaves = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
    return [y, *torch.autograd.grad(y, leaves, torch.ones_like(y))]


def signature(tensors):
    return [(tuple(t.shape), t.dtype, t.stride()) for t in tensors]


def real_signature(name, backend="ref"):
    fn, args, kwargs = CASES[name]()
    with ops.use_backend(backend):
        return signature(forward_backward(fn, args, kwargs))


@pytest.mark.parametrize("backend", ["auto", "ref", "eager", "triton", "cuda"])
@pytest.mark.parametrize("name", CASES)
def test_meta_forward_backward_matches_real_shapes(name, backend):
    """On meta tensors, whichever backend is requested (even one that cannot run here), the op
    neither fails nor warns, and output and gradients match a real CPU call (eager: the real
    eager call; the others: ref) in shape, dtype and strides."""
    fn, args, kwargs = CASES[name]()
    with warnings.catch_warnings(), ops.use_backend(backend):
        warnings.simplefilter("error")
        outs = forward_backward(fn, convert(args, to_meta), kwargs)
    assert all(t.device.type == "meta" for t in outs)
    assert signature(outs) == real_signature(name, "eager" if backend == "eager" else "ref")


@pytest.mark.parametrize("name", CASES)
def test_fake_tensor_forward_backward_matches_real_shapes(name):
    """Under FakeTensorMode (what torch.compile and torch.export trace with) forward and backward
    give FakeTensors of the real call's shapes, dtypes and strides."""
    fn, args, kwargs = CASES[name]()
    mode = FakeTensorMode()
    fake_args = convert(args, mode.from_tensor)
    with mode:
        outs = forward_backward(fn, fake_args, kwargs)
    assert all(isinstance(t, FakeTensor) for t in outs)
    assert signature(outs) == real_signature(name)


def test_setup_filter_on_meta():
    """setup_filter places the filter on the meta device, and takes meta taps."""
    f = ops.setup_filter([1, 3, 3, 1], device="meta")
    assert (f.device.type, f.shape, f.dtype) == ("meta", (4, 4), torch.float32)
    g = ops.setup_filter(torch.ones(9, device="meta"), device="meta")
    assert (g.device.type, g.shape) == ("meta", (9,))


def r1_grads(fn, x, b, w):
    """Gradients w.r.t. (x, b, w) of an R1-style penalty ||d fn(x * w, b) / dx||^2."""
    y = fn(x * w[:, None, None], b)
    (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    return torch.autograd.grad(gx.square().sum(), (x, b, w))


DOUBLE_BACKWARD = {
    "bias_act-lrelu": lambda x, b: ops.bias_act(x, b, act="lrelu", clamp=1.5),
    "bias_act-swish": lambda x, b: ops.bias_act(x, b, act="swish"),
    "upfirdn2d": lambda x, b: ops.upsample2d(x, fir(device=x.device)) * b[:, None, None],
    "filtered_lrelu": lambda x, b: ops.filtered_lrelu(x, fir(device=x.device), None, b, up=2,
                                                      padding=[2, 1, 2, 1], clamp=2.0),
    "conv2d": lambda x, b: ops.conv2d(x, b.view(3, 1, 1, 1) * fir(device=x.device), b,
                                      stride=2, padding=1, groups=3),
    "conv_transpose2d": lambda x, b: ops.conv_transpose2d(
        x, b.view(3, 1, 1, 1) * fir(device=x.device), b, stride=2, padding=1, groups=3),
}


@pytest.mark.parametrize("name", DOUBLE_BACKWARD)
def test_meta_double_backward(name):
    """The ops with a double backward infer the shapes of an R1 penalty's gradients on meta."""
    x, b, w = rand((2, 3, 4, 5)), rand((3,)), rand((3,))
    want = signature(r1_grads(DOUBLE_BACKWARD[name], x, b, w))
    got = r1_grads(DOUBLE_BACKWARD[name], *map(to_meta, (x, b, w)))
    assert signature(got) == want


SMALL = dict(channel_base=64, channel_max=16)


def generator_step(device, training):
    """Build a small Generator under torch.device(device), run it forward (style mixing in
    training, truncation in eval) and backward; the image's signature and the grads' shapes."""
    with torch.device(device):
        G = Generator(64, z_dim=16, w_dim=16, **SMALL).train(training)
        z = torch.randn(3, 16)
        img = G(z) if training else G(z, truncation_psi=0.7)
        img.sum().backward()
    assert all(t.device.type == device for t in G.state_dict().values())
    grads = {n: None if p.grad is None else (p.grad.device.type, p.grad.shape)
             for n, p in G.named_parameters()}
    return (img.device.type, *signature([img])), grads


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_meta_generator(training):
    """A Generator built under torch.device('meta') runs forward and backward on meta z: the
    image and every parameter's gradient (None for layers unused at lod 0) as on the CPU."""
    (device, *img), grads = generator_step("meta", training)
    (_, *real_img), real_grads = generator_step("cpu", training)
    assert device == "meta" and img == real_img
    assert grads == {n: None if g is None else ("meta", g[1]) for n, g in real_grads.items()}


@pytest.mark.parametrize("lod", [0.0, 0.5])
def test_meta_discriminator(lod):
    """A Discriminator built on meta scores meta images (also during a fade-in) and
    back-propagates to the image."""
    with torch.device("meta"):
        D = Discriminator(64, **SMALL)
        img = torch.randn(4, 3, 64, 64, requires_grad=True)
        score = D(img, lod=lod)
        score.sum().backward()
    assert (score.device.type, score.shape) == ("meta", (4, 1))
    assert img.grad.shape == img.shape


def test_fake_tensor_models():
    """Generator and Discriminator run forward and backward under FakeTensorMode."""
    with FakeTensorMode():
        G = Generator(32, z_dim=16, w_dim=16, **SMALL)
        D = Discriminator(32, **SMALL)
        img = G(torch.randn(2, 16))
        score = D(img)
        score.sum().backward()
    assert isinstance(score, FakeTensor) and score.shape == (2, 1)
    assert G.synthesis.const.grad.shape == G.synthesis.const.shape


class AllOps(torch.nn.Module):
    """Every op in a row; noise drawn in the op (its seed becomes an aten.randint node)."""

    def __init__(self, channels=3):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.randn(channels))
        self.register_buffer("f", fir())

    def forward(self, x, style_scale, style_bias, noise):
        y = ops.bias_act(x, self.bias, clamp=256.0)
        y = ops.noise_inject(y, self.bias, noise)
        y = ops.adain(y, style_scale, style_bias)
        y = ops.style_epilogue(y, self.bias, style_scale, style_bias, self.bias)
        y = ops.upsample2d(y, self.f)
        return ops.downsample2d(y, self.f)


def export_inputs(n=2, c=3, h=4, w=5):
    return (torch.randn(n, c, h, w), torch.randn(n, c), torch.randn(n, c),
            torch.randn(n, 1, h, w))


def test_export_bias_act():
    """torch.export captures bias_act as one stylegan_fast node; the program computes the same."""
    class BiasAct(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.b = torch.nn.Parameter(torch.randn(3))

        def forward(self, x):
            return ops.bias_act(x, self.b, act="lrelu", clamp=1.0)

    module, x = BiasAct(), torch.randn(2, 3, 4, 5)
    program = torch.export.export(module, (x,))
    targets = [str(n.target) for n in program.graph.nodes if n.op == "call_function"]
    assert "stylegan_fast.bias_act.default" in targets
    torch.testing.assert_close(program.module()(x), module(x), rtol=0, atol=0)


def test_export_every_op_with_dynamic_shapes():
    """An exported module using every op, with dynamic batch, height and width, runs on other
    sizes and matches the eager module (same seed for the drawn noise)."""
    batch, h, w = (torch.export.Dim(n, min=2, max=64) for n in ("batch", "h", "w"))
    shapes = ({0: batch, 2: h, 3: w}, {0: batch}, {0: batch}, {0: batch, 2: h, 3: w})
    module = AllOps()
    program = torch.export.export(module, export_inputs(), dynamic_shapes=shapes)
    inputs = export_inputs(3, 3, 6, 7)
    torch.manual_seed(0)
    got = program.module()(*inputs)
    torch.manual_seed(0)
    torch.testing.assert_close(got, module(*inputs))
    assert got.shape == (3, 3, 6, 7)
