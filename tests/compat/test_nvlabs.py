"""stylegan_fast.compat.nvlabs: NVIDIA's torch_utils.ops API on our kernels, and install()."""
import sys
import textwrap

import pytest
import torch

from stylegan_fast import ops
from stylegan_fast.compat import nvlabs
from stylegan_fast.compat.nvlabs.bias_act import activation_funcs, bias_act

from ..ops.helpers import rand
from ..ops.test_bias_act import DEFINITIONS, definition

# A stand-in for NVIDIA's torch_utils package (same module names and bias_act signature; written
# here, plain PyTorch) and a StyleGAN2-style synthesis layer that calls it through the module, as
# NVIDIA's networks do: modulated, demodulated 3x3 convolution, then bias_act (lrelu, clamp).
STAND_IN = {
    "torch_utils/__init__.py": "",
    "torch_utils/ops/__init__.py": "",
    "torch_utils/ops/bias_act.py": '''
        import torch
        GAINS = {"linear": 1.0, "relu": 2 ** 0.5, "lrelu": 2 ** 0.5}

        def bias_act(x, b=None, dim=1, act="linear", alpha=None, gain=None, clamp=None,
                     impl="cuda"):
            alpha = 0.2 if alpha is None else alpha
            gain = GAINS[act] if gain is None else gain
            if b is not None:
                x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
            if act == "relu":
                x = torch.relu(x)
            elif act == "lrelu":
                x = torch.nn.functional.leaky_relu(x, alpha)
            x = x * gain
            return x if clamp is None else x.clamp(-clamp, clamp)
    ''',
    "torch_utils/ops/upfirdn2d.py": '''
        import torch
        import torch.nn.functional as F

        def setup_filter(f, device=torch.device("cpu"), normalize=True):
            f = torch.as_tensor(f, dtype=torch.float32)
            f = torch.outer(f, f) if f.ndim == 1 and f.numel() < 8 else f
            return (f / f.sum() if normalize else f).to(device)

        def upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1, impl="cuda"):
            # integer up / down, padding an int or [x0, x1, y0, y1] >= 0, 2-D filters: what the
            # networks below use
            pad = [padding] * 4 if isinstance(padding, int) else list(padding)
            n, c, h, w = x.shape
            u = x.new_zeros(n, c, h * up, w * up)
            u[:, :, ::up, ::up] = x
            u = F.pad(u, pad)
            g = (f if flip_filter else f.flip(0, 1)).to(x.dtype) * gain
            y = F.conv2d(u.reshape(n * c, 1, *u.shape[2:]), g[None, None])[:, :, ::down, ::down]
            return y.reshape(n, c, *y.shape[2:])

        def filter2d(x, f, padding=0, flip_filter=False, gain=1, impl="cuda"):
            k = f.shape[-1]
            return upfirdn2d(x, f, padding=[k // 2, (k - 1) // 2] * 2, flip_filter=flip_filter,
                             gain=gain)

        def upsample2d(x, f, up=2, padding=0, flip_filter=False, gain=1, impl="cuda"):
            k = f.shape[-1]
            return upfirdn2d(x, f, up=up, padding=[(k + up - 1) // 2, (k - up) // 2] * 2,
                             flip_filter=flip_filter, gain=gain * up * up)

        def downsample2d(x, f, down=2, padding=0, flip_filter=False, gain=1, impl="cuda"):
            k = f.shape[-1]
            return upfirdn2d(x, f, down=down, padding=[(k - down + 1) // 2, (k - down) // 2] * 2,
                             flip_filter=flip_filter, gain=gain)
    ''',
    "stand_in_networks.py": '''
        import torch
        from torch_utils.ops import bias_act, upfirdn2d

        class SynthesisLayer(torch.nn.Module):
            def __init__(self, in_channels, out_channels, w_dim):
                super().__init__()
                self.affine = torch.nn.Linear(w_dim, in_channels)
                self.weight = torch.nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
                self.bias = torch.nn.Parameter(torch.randn(out_channels))

            def forward(self, x, w):
                styles = self.affine(w)                                     # [N, I]
                weight = self.weight[None] * styles[:, None, :, None, None]  # [N, O, I, 3, 3]
                weight = weight * (weight.square().sum([2, 3, 4], keepdim=True) + 1e-8).rsqrt()
                n, i, h, w_ = x.shape
                y = torch.nn.functional.conv2d(x.reshape(1, n * i, h, w_),
                                               weight.reshape(-1, i, 3, 3), padding=1, groups=n)
                y = y.reshape(n, -1, h, w_)
                return bias_act.bias_act(y, self.bias.to(y.dtype), act="lrelu", clamp=256)

        class ResampleBlock(torch.nn.Module):
            """A StyleGAN2-style skip path: upsample, blur, downsample with a [1, 3, 3, 1] FIR."""
            def __init__(self):
                super().__init__()
                self.register_buffer("f", upfirdn2d.setup_filter([1, 3, 3, 1]))

            def forward(self, x):
                y = upfirdn2d.upsample2d(x, self.f)
                y = upfirdn2d.filter2d(torch.tanh(y), self.f)
                return upfirdn2d.downsample2d(y, self.f)
    ''',
}


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    for name, text in STAND_IN.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for module in [m for m in sys.modules if m.split(".")[0] in ("torch_utils",
                                                                  "stand_in_networks")]:
        del sys.modules[module]


def test_activation_funcs_has_the_nine_with_their_defaults():
    assert sorted(activation_funcs) == sorted(DEFINITIONS)
    z = torch.linspace(-3, 3, 13, dtype=torch.float64)
    for act, spec in activation_funcs.items():
        func, def_alpha, def_gain = DEFINITIONS[act]
        assert (spec.def_alpha, spec.def_gain) == pytest.approx((def_alpha, def_gain))
        assert spec.has_2nd_grad == (act not in ("linear", "relu", "lrelu"))
        torch.testing.assert_close(spec.func(z, alpha=def_alpha), func(z, def_alpha))


@pytest.mark.parametrize("impl", ["cuda", "ref"])
@pytest.mark.parametrize("act", list(DEFINITIONS))
def test_bias_act_has_nvidias_defaults(impl, act):
    x, b = rand((2, 3, 4, 5)), rand((3,))
    torch.testing.assert_close(bias_act(x, b, act=act, impl=impl), definition(x, b, act=act))
    torch.testing.assert_close(bias_act(x, b, impl=impl), x + b[:, None, None])  # act='linear'
    torch.testing.assert_close(bias_act(x, b, dim=1, act=act, alpha=0.1, gain=0.5, clamp=0.3,
                                        impl=impl),
                               definition(x, b, act=act, alpha=0.1, gain=0.5, clamp=0.3))


FORWARD = ops.backends.get_impl("bias_act", "ref").forward


def test_ref_impl_runs_the_ref_backend(monkeypatch):
    calls = []
    reference = ops.backends.get_impl("bias_act", "ref")
    monkeypatch.setattr(reference, "forward",
                        lambda *args, **kwargs: calls.append(1) or FORWARD(*args, **kwargs))
    bias_act(rand((2, 3, 4)), rand((3,)), act="tanh", impl="ref")
    assert calls == [1]


def test_bias_of_another_dtype_is_cast_and_bad_impl_is_named():
    x, b = rand((2, 3, 4), torch.float64), rand((3,), torch.float32)
    torch.testing.assert_close(bias_act(x, b, act="swish"), definition(x, b.double(), act="swish"))
    with pytest.raises(ValueError, match="impl must be one of cuda, ref"):
        bias_act(x, b, impl="triton")


def test_install_swaps_nvidias_bias_act_and_the_layer_output_agrees(stand_in):
    import stand_in_networks
    import torch_utils.ops.bias_act as nvidia

    torch.manual_seed(0)
    layer = stand_in_networks.SynthesisLayer(4, 6, 8).double()
    x = torch.randn(2, 4, 9, 7, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 8, dtype=torch.float64)
    original = nvidia.bias_act
    before = layer(x, w)
    (grad_before,) = torch.autograd.grad(before.square().sum(), x)

    replaced = nvlabs.install()
    try:
        assert replaced["torch_utils.ops.bias_act.bias_act"] is original
        assert sorted(replaced) == sorted(
            ["torch_utils.ops.bias_act.bias_act"] + [f"torch_utils.ops.upfirdn2d.{name}" for name
                                                     in ("upfirdn2d", "filter2d", "upsample2d",
                                                         "downsample2d")])
        assert nvidia.bias_act is bias_act
        assert nvlabs.install() == {}  # already installed: nothing more replaced
        after = layer(x, w)
        (grad_after,) = torch.autograd.grad(after.square().sum(), x)
    finally:
        nvlabs.uninstall(replaced)
    assert nvidia.bias_act is original
    torch.testing.assert_close(after, before)
    torch.testing.assert_close(grad_after, grad_before)


def test_install_swaps_upfirdn2d_and_a_resampling_block_agrees_to_second_order(stand_in):
    import stand_in_networks
    import torch_utils.ops.upfirdn2d as nvidia

    block = stand_in_networks.ResampleBlock()  # its filter stays float32, as NVIDIA requires
    x = torch.randn(2, 3, 8, 6, dtype=torch.float64, requires_grad=True)

    def r1():  # the block's output, and the gradient of |d out / dx|^2 w.r.t. x (R1-style)
        y = block(x)
        (g,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
        return y, torch.autograd.grad(g.square().sum(), x)[0]

    before = r1()
    originals = {name: getattr(nvidia, name) for name in ("upfirdn2d", "upsample2d")}
    replaced = nvlabs.install()
    try:
        assert nvidia.upsample2d is nvlabs.upfirdn2d.upsample2d
        assert nvidia.upfirdn2d is nvlabs.upfirdn2d.upfirdn2d
        after = r1()
    finally:
        nvlabs.uninstall(replaced)
    assert all(getattr(nvidia, name) is f for name, f in originals.items())
    assert before[0].shape == (2, 3, 8, 6)
    for got, want in zip(after, before):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("impl", ["cuda", "ref"])
def test_upfirdn2d_functions_take_nvidias_arguments(impl):
    f = nvlabs.upfirdn2d.setup_filter([1, 3, 3, 1])
    x = rand((2, 3, 6, 5))
    with ops.use_backend("ref"):
        want = ops.upfirdn2d(x, f, up=2, down=1, padding=[2, 1, 1, 2], flip_filter=True, gain=3)
    torch.testing.assert_close(nvlabs.upfirdn2d.upfirdn2d(x, f, 2, 1, [2, 1, 1, 2], True, 3,
                                                          impl=impl), want)
    assert nvlabs.upfirdn2d.upsample2d(x, f, impl=impl).shape == (2, 3, 12, 10)
    assert nvlabs.upfirdn2d.downsample2d(x, f, impl=impl).shape == (2, 3, 3, 2)
    assert nvlabs.upfirdn2d.filter2d(x, f, impl=impl).shape == (2, 3, 6, 5)
    with pytest.raises(ValueError, match="impl must be one of cuda, ref"):
        nvlabs.upfirdn2d.upsample2d(x, f, impl="triton")


def test_install_is_all_or_nothing(stand_in, monkeypatch):
    import torch_utils.ops.bias_act as nvidia_bias_act

    original = nvidia_bias_act.bias_act
    monkeypatch.setitem(sys.modules, "torch_utils.ops.upfirdn2d", None)  # missing module
    with pytest.raises(ImportError, match="torch_utils.ops.upfirdn2d"):
        nvlabs.install()
    assert nvidia_bias_act.bias_act is original


def test_install_without_torch_utils_says_what_to_put_on_the_path(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_utils", None)  # import torch_utils -> ImportError
    with pytest.raises(ImportError, match="holding torch_utils/, on sys.path"):
        nvlabs.install()
