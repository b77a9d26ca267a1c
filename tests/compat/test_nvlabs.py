"""stylegan_fast.compat.nvlabs: NVIDIA's torch_utils.ops API on our kernels, and install()."""
import collections
import importlib
import inspect
import sys
import textwrap

import pytest
import torch

from stylegan_fast import ops
from stylegan_fast.bench.conv_census import ConvRecorder
from stylegan_fast.compat import nvlabs
from stylegan_fast.compat.nvlabs.bias_act import activation_funcs, bias_act

from ..ops.helpers import rand
from ..ops.test_bias_act import DEFINITIONS, definition
from ..ops.test_grid_sample import NOT_IMPLEMENTED, torch_differentiates_grid_sampler_backward
from ..ops.test_grid_sample import definition as grid_sample_definition

# A stand-in for NVIDIA's torch_utils package (same module names and signatures; written here,
# plain PyTorch; conv2d_gradfix and grid_sample_gradfix as theirs behave on torch 2.x: F.conv2d
# and F.grid_sample whatever `enabled` says; filtered_lrelu as StyleGAN3's reference: bias,
# upfirdn2d up, leaky ReLU, clamp, upfirdn2d down; conv2d_resample calling upfirdn2d and
# conv2d_gradfix through the modules, as theirs) and StyleGAN2/3-style networks that call it
# through the modules, as NVIDIA's do: a synthesis layer (modulated, demodulated 3x3 convolution,
# optionally upsampling by a transposed one, then bias_act with lrelu and clamp), a StyleGAN3-style
# layer (modulated conv, demodulation and noise through fma, then filtered_lrelu), a resampling
# block, a residual discriminator (its down path: blur, then a strided conv), ADA's geometric
# augment (grid_sample with a random affine grid) and an R1 penalty whose first pass runs inside
# no_weight_gradients().
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
            # integer up / down, padding an int or [x0, x1, y0, y1] >= 0, 1-D (separable) or 2-D
            # filters or None: what the networks below use
            pad = [padding] * 4 if isinstance(padding, int) else list(padding)
            f = (torch.ones(1, 1) if f is None else f).to(x.dtype)
            f = torch.outer(f, f) if f.ndim == 1 else f
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
    "torch_utils/ops/conv2d_gradfix.py": '''
        import contextlib
        import torch.nn.functional as F

        enabled = False                    # their training loop sets it True
        weight_gradients_disabled = False  # their custom backward (off on torch 2.x) reads it

        def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
            return F.conv2d(input, weight, bias, stride, padding, dilation, groups)

        def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                             groups=1, dilation=1):
            return F.conv_transpose2d(input, weight, bias, stride, padding, output_padding,
                                      groups, dilation)

        @contextlib.contextmanager
        def no_weight_gradients(disable=True):
            global weight_gradients_disabled
            previous = weight_gradients_disabled
            weight_gradients_disabled = weight_gradients_disabled or disable
            try:
                yield
            finally:
                weight_gradients_disabled = previous
    ''',
    "torch_utils/ops/grid_sample_gradfix.py": '''
        import torch

        enabled = False  # their training loop sets it True; outside torch 1.7-1.9 it is ignored

        def grid_sample(input, grid):
            return torch.nn.functional.grid_sample(input=input, grid=grid, mode="bilinear",
                                                   padding_mode="zeros", align_corners=False)
    ''',
    "torch_utils/ops/fma.py": '''
        def fma(a, b, c):
            return a * b + c
    ''',
    "torch_utils/ops/filtered_lrelu.py": '''
        import numpy as np
        import torch
        from . import upfirdn2d

        def filtered_lrelu(x, fu=None, fd=None, b=None, up=1, down=1, padding=0, gain=np.sqrt(2),
                           slope=0.2, clamp=None, flip_filter=False, impl="cuda"):
            if b is not None:
                x = x + b.to(x.dtype).reshape(1, -1, 1, 1)
            x = upfirdn2d.upfirdn2d(x, fu, up=up, padding=padding, flip_filter=flip_filter,
                                    gain=up ** 2)
            x = torch.nn.functional.leaky_relu(x, slope) * gain
            if clamp is not None:
                x = x.clamp(-clamp, clamp)
            return upfirdn2d.upfirdn2d(x, fd, down=down, flip_filter=flip_filter)
    ''',
    "torch_utils/ops/conv2d_resample.py": '''
        from . import conv2d_gradfix, upfirdn2d

        def conv2d_resample(x, w, f, up=1, down=1, groups=1):
            """A 3x3 or 1x1 convolution keeping the size, doubling it (3x3: transposed conv,
            then blur) or halving it (blur, then strided conv), as NVIDIA's conv2d_resample."""
            k = w.shape[-1]
            if up == 2:
                o, i = w.shape[0] // groups, w.shape[1]
                w = w.reshape(groups, o, i, k, k).transpose(1, 2).reshape(groups * i, o, k, k)
                y = conv2d_gradfix.conv_transpose2d(x, w, stride=2, groups=groups)
                return upfirdn2d.upfirdn2d(y, f, padding=(k - 1) // 2, gain=4)
            if down == 2 and k == 1:
                return conv2d_gradfix.conv2d(upfirdn2d.downsample2d(x, f), w, groups=groups)
            if down == 2:
                blurred = upfirdn2d.upfirdn2d(x, f, padding=(k + 1) // 2)
                return conv2d_gradfix.conv2d(blurred, w, stride=2, groups=groups)
            return conv2d_gradfix.conv2d(x, w, padding=k // 2, groups=groups)
    ''',
    "stand_in_networks.py": '''
        import numpy as np
        import torch
        import torch.nn.functional as F
        from torch_utils.ops import (bias_act, conv2d_gradfix, conv2d_resample, filtered_lrelu,
                                     fma, grid_sample_gradfix, upfirdn2d)

        class SynthesisLayer(torch.nn.Module):
            def __init__(self, in_channels, out_channels, w_dim, up=1):
                super().__init__()
                self.up = up
                self.affine = torch.nn.Linear(w_dim, in_channels)
                self.weight = torch.nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
                self.bias = torch.nn.Parameter(torch.randn(out_channels))
                self.f = upfirdn2d.setup_filter([1, 3, 3, 1])  # float32 after .double() too

            def forward(self, x, w):
                styles = self.affine(w)                                     # [N, I]
                weight = self.weight[None] * styles[:, None, :, None, None]  # [N, O, I, 3, 3]
                weight = weight * (weight.square().sum([2, 3, 4], keepdim=True) + 1e-8).rsqrt()
                n, i, h, w_ = x.shape
                y = conv2d_resample.conv2d_resample(x.reshape(1, n * i, h, w_),
                                                    weight.reshape(-1, i, 3, 3), self.f,
                                                    up=self.up, groups=n)
                y = y.reshape(n, -1, *y.shape[2:])
                return bias_act.bias_act(y, self.bias.to(y.dtype), act="lrelu", clamp=256)

        class Conv(torch.nn.Module):
            def __init__(self, in_channels, out_channels, kernel, down=1, bias=True):
                super().__init__()
                self.down = down
                self.weight = torch.nn.Parameter(torch.randn(out_channels, in_channels, kernel,
                                                             kernel))
                self.bias = torch.nn.Parameter(torch.randn(out_channels)) if bias else None
                self.f = upfirdn2d.setup_filter([1, 3, 3, 1])  # float32 after .double() too

            def forward(self, x):
                weight = self.weight * self.weight[0].numel() ** -0.5
                y = conv2d_resample.conv2d_resample(x, weight, self.f, down=self.down)
                return y if self.bias is None else bias_act.bias_act(y, self.bias, act="lrelu")

        class Discriminator(torch.nn.Module):
            """fromrgb, a residual block halving the size, a 3x3 conv, two dense layers."""
            def __init__(self, resolution=16, channels=4):
                super().__init__()
                c = channels
                self.fromrgb = Conv(3, c, 1)
                self.conv0, self.conv1 = Conv(c, c, 3), Conv(c, 2 * c, 3, down=2)
                self.skip = Conv(c, 2 * c, 1, down=2, bias=False)
                self.conv = Conv(2 * c, 2 * c, 3)
                self.fc = torch.nn.Linear(2 * c * (resolution // 2) ** 2, c)
                self.out = torch.nn.Linear(c, 1)

            def forward(self, img):
                x = self.fromrgb(img)
                x = (self.skip(x) + self.conv1(self.conv0(x))) * 0.5 ** 0.5
                x = self.conv(x)
                return self.out(bias_act.bias_act(self.fc(x.flatten(1)), act="lrelu"))

        def r1_penalty(D, real_img, augment_pipe=None):
            """||d D(real_img).sum() / d real_img||^2 per sample, differentiable (R1); D sees
            augment_pipe(real_img) where one is given, as in NVIDIA's loss."""
            real_img = real_img.detach().requires_grad_(True)
            logits = D(real_img if augment_pipe is None else augment_pipe(real_img))
            with conv2d_gradfix.no_weight_gradients():
                (grad,) = torch.autograd.grad([logits.sum()], [real_img], create_graph=True,
                                              only_inputs=True)
            return grad.square().sum([1, 2, 3])

        class ResampleBlock(torch.nn.Module):
            """A StyleGAN2-style skip path: upsample, blur, downsample with a [1, 3, 3, 1] FIR."""
            def __init__(self):
                super().__init__()
                self.register_buffer("f", upfirdn2d.setup_filter([1, 3, 3, 1]))

            def forward(self, x):
                y = upfirdn2d.upsample2d(x, self.f)
                y = upfirdn2d.filter2d(torch.tanh(y), self.f)
                return upfirdn2d.downsample2d(y, self.f)

        def augment(images, seed=0):
            """ADA's geometric augment, its last step: a random rotation, isotropic scale and
            translation per image, resampled by grid_sample_gradfix.grid_sample."""
            gen = torch.Generator().manual_seed(seed)
            n = images.shape[0]
            angle = torch.rand(n, generator=gen, dtype=torch.float64) * 2 * np.pi
            scale = 2 ** (0.2 * torch.randn(n, generator=gen, dtype=torch.float64))
            shift = 0.125 * torch.randn(n, 2, generator=gen, dtype=torch.float64)
            cos, sin = angle.cos() * scale, angle.sin() * scale
            theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1),
                                 torch.stack([sin, cos, shift[:, 1]], 1)], 1)
            grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
            return grid_sample_gradfix.grid_sample(images, grid)

        def lowpass_filter(taps, cutoff, radial=False, beta=8.0):
            """A Kaiser-windowed low-pass filter (cutoff in cycles per sample) summing to 1:
            1-D (separable) sinc, or 2-D radial jinc-like (StyleGAN3-R's down filters)."""
            t = np.arange(taps) - (taps - 1) / 2
            if not radial:
                f = np.sinc(2 * cutoff * t) * np.kaiser(taps, beta)
            else:
                r = np.hypot(*np.meshgrid(t, t))
                window = np.i0(beta * np.sqrt(np.clip(1 - (r / (taps / 2)) ** 2, 0, 1)))
                f = np.sinc(2 * cutoff * r) * window
            return torch.as_tensor(f / f.sum(), dtype=torch.float32)

        class SynthesisLayer3(torch.nn.Module):
            """A StyleGAN3-style layer: a modulated 3x3 conv (StyleGAN2's non-fused path: scale
            the input by the styles, convolve, then demodulate and add noise in one fma), then
            filtered_lrelu: bias, up x2 through a 12-tap filter, lrelu, clamp, a 12-tap (1-D or
            radial 2-D) filter and down x2."""
            def __init__(self, channels, w_dim, radial=False, clamp=1.0):
                super().__init__()
                self.clamp = clamp
                self.affine = torch.nn.Linear(w_dim, channels)
                self.weight = torch.nn.Parameter(torch.randn(channels, channels, 3, 3))
                self.bias = torch.nn.Parameter(0.3 * torch.randn(channels))
                self.noise_strength = torch.nn.Parameter(torch.tensor(0.5))
                self.register_buffer("up_filter", lowpass_filter(12, 0.25))
                self.register_buffer("down_filter", lowpass_filter(12, 0.25, radial))
                self.padding = [11, 10, 11, 10]  # keeps the size: (2 W + 21 - 22 + 1) // 2 = W

            def forward(self, x, w, noise):
                styles = self.affine(w)                                          # [N, I]
                weight = self.weight * self.weight[0].numel() ** -0.5
                dcoefs = ((weight[None] * styles[:, None, :, None, None]).square().sum([2, 3, 4])
                          + 1e-8).rsqrt()                                        # [N, O]
                x = conv2d_gradfix.conv2d(x * styles[:, :, None, None], weight, padding=1)
                x = fma.fma(x, dcoefs[:, :, None, None], noise * self.noise_strength)
                return filtered_lrelu.filtered_lrelu(x, self.up_filter, self.down_filter,
                                                     self.bias, up=2, down=2,
                                                     padding=self.padding, clamp=self.clamp)
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
        assert nvidia.bias_act is bias_act
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


NVIDIA_FUNCTIONS = {
    "torch_utils.ops.bias_act": ("bias_act",),
    "torch_utils.ops.upfirdn2d": ("upfirdn2d", "filter2d", "upsample2d", "downsample2d"),
    "torch_utils.ops.conv2d_gradfix": ("conv2d", "conv_transpose2d", "no_weight_gradients"),
    "torch_utils.ops.grid_sample_gradfix": ("grid_sample",),
    "torch_utils.ops.fma": ("fma",),
    "torch_utils.ops.filtered_lrelu": ("filtered_lrelu",),  # StyleGAN3 only
}


def nvidia_functions(module_names=tuple(NVIDIA_FUNCTIONS)) -> dict:
    """{"module.function": the function there now} for the functions install() replaces in
    ``module_names`` (imported here)."""
    return {f"{module_name}.{name}": getattr(importlib.import_module(module_name), name)
            for module_name in module_names for name in NVIDIA_FUNCTIONS[module_name]}


@pytest.mark.parametrize("missing", ["torch_utils.ops.upfirdn2d", "torch_utils.ops.conv2d_gradfix",
                                     "torch_utils.ops.grid_sample_gradfix", "torch_utils.ops.fma"])
def test_install_is_all_or_nothing(stand_in, monkeypatch, missing):
    present = [module_name for module_name in NVIDIA_FUNCTIONS if module_name != missing]
    originals = nvidia_functions(present)
    monkeypatch.setitem(sys.modules, missing, None)  # a missing module
    with pytest.raises(ImportError, match=missing):
        nvlabs.install()
    assert nvidia_functions(present) == originals


def test_a_checkout_without_filtered_lrelu_installs_the_rest(stand_in):
    """StyleGAN2-ADA's torch_utils has no filtered_lrelu module: install() skips it."""
    (stand_in / "torch_utils/ops/filtered_lrelu.py").unlink()
    importlib.invalidate_caches()
    present = [name for name in NVIDIA_FUNCTIONS if name != "torch_utils.ops.filtered_lrelu"]
    originals = nvidia_functions(present)
    replaced = nvlabs.install()
    try:
        assert replaced == originals  # the other ten
        assert "torch_utils.ops.filtered_lrelu" not in sys.modules
    finally:
        nvlabs.uninstall(replaced)
    assert nvidia_functions(present) == originals


def test_an_optional_module_that_fails_to_import_fails_install(stand_in):
    """Only a module that is absent is skipped: one that is there but cannot be imported (here
    for a package it needs) fails install(), which then replaces nothing."""
    (stand_in / "torch_utils/ops/filtered_lrelu.py").write_text(
        "import a_package_that_is_not_installed\n")
    importlib.invalidate_caches()
    present = [name for name in NVIDIA_FUNCTIONS if name != "torch_utils.ops.filtered_lrelu"]
    originals = nvidia_functions(present)
    with pytest.raises(ImportError, match="torch_utils.ops.filtered_lrelu.*a_package_that_is_not"):
        nvlabs.install()
    assert nvidia_functions(present) == originals


def test_install_without_torch_utils_says_what_to_put_on_the_path(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_utils", None)  # import torch_utils -> ImportError
    with pytest.raises(ImportError, match="holding torch_utils/, on sys.path"):
        nvlabs.install()


# ------------------------------------------------------------------------------ conv2d_gradfix
def test_install_replaces_the_eleven_functions_once_and_uninstall_restores_them(stand_in):
    import torch_utils.ops.conv2d_gradfix as nvidia_gradfix

    originals = nvidia_functions()
    assert len(originals) == 11
    replaced = nvlabs.install()
    try:
        assert replaced == originals  # all eleven, each mapped to NVIDIA's
        installed = nvidia_functions()
        assert nvlabs.install() == {}  # already installed: nothing more replaced
        assert nvidia_functions() == installed
    finally:
        nvlabs.uninstall(replaced)
    assert nvidia_functions() == originals
    assert installed["torch_utils.ops.upfirdn2d.upsample2d"] is nvlabs.upfirdn2d.upsample2d
    assert installed["torch_utils.ops.grid_sample_gradfix.grid_sample"] is \
        nvlabs.grid_sample_gradfix.grid_sample
    assert installed["torch_utils.ops.fma.fma"] is nvlabs.fma.fma
    assert installed["torch_utils.ops.filtered_lrelu.filtered_lrelu"] is \
        nvlabs.filtered_lrelu.filtered_lrelu
    # conv2d_gradfix's are bound to NVIDIA's module (its flags), not to ours
    bound = nvlabs.conv2d_gradfix.functions_reading(nvidia_gradfix)
    for name in NVIDIA_FUNCTIONS["torch_utils.ops.conv2d_gradfix"]:
        assert installed[f"torch_utils.ops.conv2d_gradfix.{name}"] is getattr(bound, name)
        assert getattr(bound, name) is not getattr(nvlabs.conv2d_gradfix, name)


def input_gradient_kinds(conv, transposed: bool) -> set:
    """The kinds of convolution (ConvCall.kind) the input gradient of ``conv`` runs: PyTorch's
    F.conv2d / F.conv_transpose2d run aten.convolution_backward ("backward"), ours the
    opposite-kind convolution with the layer's kernel."""
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(*((3, 4) if transposed else (4, 3)), 3, 3, dtype=torch.float64)
    y = conv(input=x, weight=weight, stride=2, padding=1)  # no weight gradient wanted
    with ConvRecorder() as recorder:
        torch.autograd.grad(y.sum(), x)
    return {call.kind for call in recorder.calls}


@pytest.mark.parametrize("flags", ["nvidia", "ours"])
def test_conv2d_gradfix_follows_its_modules_enabled_flag_at_each_call(stand_in, monkeypatch,
                                                                      flags):
    import torch_utils.ops.conv2d_gradfix as nvidia_gradfix

    replaced = nvlabs.install()
    try:
        module = nvidia_gradfix if flags == "nvidia" else nvlabs.conv2d_gradfix
        assert module.enabled is False  # NVIDIA's default, kept by ours
        assert input_gradient_kinds(module.conv2d, False) == {"backward"}
        assert input_gradient_kinds(module.conv_transpose2d, True) == {"backward"}
        monkeypatch.setattr(module, "enabled", True)  # what NVIDIA's training loop does
        assert input_gradient_kinds(module.conv2d, False) == {"conv_transpose"}
        assert input_gradient_kinds(module.conv_transpose2d, True) == {"conv"}
        other = nvlabs.conv2d_gradfix if flags == "nvidia" else nvidia_gradfix
        assert other.enabled is False  # each module's flag switches its own functions only
        assert input_gradient_kinds(other.conv2d, False) == {"backward"}
    finally:
        nvlabs.uninstall(replaced)


def parameters_of(signature: inspect.Signature) -> list:
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


def test_conv2d_gradfix_has_nvidias_signatures_and_keywords(stand_in, monkeypatch):
    import torch_utils.ops.conv2d_gradfix as nvidia_gradfix

    installed = nvlabs.conv2d_gradfix.functions_reading(nvidia_gradfix)
    for name in ("conv2d", "conv_transpose2d", "no_weight_gradients"):
        want = parameters_of(inspect.signature(getattr(nvidia_gradfix, name)))
        assert parameters_of(inspect.signature(getattr(nvlabs.conv2d_gradfix, name))) == want
        assert parameters_of(inspect.signature(getattr(installed, name))) == want
    x, weight, bias = (rand(shape, torch.float64) for shape in ((2, 4, 7, 6), (6, 2, 3, 3), (6,)))
    weight_transposed = weight.transpose(0, 1).reshape(4, 3, 3, 3)
    for enabled in (False, True):
        monkeypatch.setattr(nvlabs.conv2d_gradfix, "enabled", enabled)
        torch.testing.assert_close(
            nvlabs.conv2d_gradfix.conv2d(input=x, weight=weight, bias=bias, stride=2, padding=1,
                                         dilation=1, groups=2),
            torch.nn.functional.conv2d(x, weight, bias, 2, 1, 1, 2))
        torch.testing.assert_close(
            nvlabs.conv2d_gradfix.conv_transpose2d(input=x, weight=weight_transposed, bias=bias,
                                                   stride=2, padding=1, output_padding=1,
                                                   groups=2, dilation=1),
            torch.nn.functional.conv_transpose2d(x, weight_transposed, bias, 2, 1, 1, 2, 1))


@pytest.mark.parametrize("call", ["()", "(True)", "(disable=True)", "(False)"])
def test_no_weight_gradients_as_both_repos_call_it(stand_in, call):
    """StyleGAN2-ADA: ``no_weight_gradients()``; StyleGAN3: ``no_weight_gradients(disable)``."""
    import torch_utils.ops.conv2d_gradfix as nvidia_gradfix

    disable = call != "(False)"
    replaced = nvlabs.install()
    try:
        for module in (nvidia_gradfix, nvlabs.conv2d_gradfix):
            with eval(f"module.no_weight_gradients{call}"):
                assert module.weight_gradients_disabled is disable
                assert ops.weight_gradients_disabled() is disable
                with module.no_weight_gradients(False):  # nests: leaves it as it was
                    assert ops.weight_gradients_disabled() is disable
            assert module.weight_gradients_disabled is False
            assert ops.weight_gradients_disabled() is False
    finally:
        nvlabs.uninstall(replaced)


def r1_gradients_and_census(D, reals):
    """The gradient of R1's penalty w.r.t. every parameter of D, and the convolutions R1 ran
    (its first pass and the penalty's backward)."""
    import stand_in_networks

    with ConvRecorder() as recorder:
        penalty = stand_in_networks.r1_penalty(D, reals).sum()
        grads = torch.autograd.grad(penalty, list(D.parameters()), allow_unused=True,
                                    materialize_grads=True)  # lrelu: none for biases
    return grads, recorder.calls


def test_r1_of_nvidias_discriminator_through_install_equals_eager_on_layer_sized_kernels(
        stand_in, monkeypatch):
    import stand_in_networks
    import torch_utils.ops.conv2d_gradfix as nvidia_gradfix

    torch.manual_seed(0)
    D = stand_in_networks.Discriminator(resolution=16).double()
    reals = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    with ConvRecorder() as recorder:
        D(reals)
    largest = max(max(call.kernel) for call in recorder.calls)  # the layers' and the FIR's: 4
    eager, eager_calls = r1_gradients_and_census(D, reals)
    assert max(max(call.kernel) for call in eager_calls) > largest  # feature-map-sized kernels

    replaced = nvlabs.install()
    try:
        _, disabled_calls = r1_gradients_and_census(D, reals)  # NVIDIA's enabled = False
        monkeypatch.setattr(nvidia_gradfix, "enabled", True)
        ours, our_calls = r1_gradients_and_census(D, reals)
    finally:
        nvlabs.uninstall(replaced)
    assert max(max(call.kernel) for call in disabled_calls) > largest  # F.conv2d's double backward
    assert max(max(call.kernel) for call in our_calls) <= largest
    assert all(g.abs().sum() > 0 for g in ours if g.dim() > 1)  # every weight gets a gradient
    for (name, _), got, want in zip(D.named_parameters(), ours, eager):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10, msg=name)


def test_path_length_through_a_transposed_modulated_conv_equals_eager(stand_in, monkeypatch):
    """StyleGAN3's ``no_weight_gradients(pl_no_weight_grad)`` with False: the gradient w.r.t. w
    keeps the path through the modulated weights, to second order, as eager."""
    import stand_in_networks
    import torch_utils.ops.conv2d_gradfix as nvidia_gradfix

    torch.manual_seed(0)
    layer = stand_in_networks.SynthesisLayer(4, 3, 8, up=2).double()
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    noise = torch.randn(2, 3, 10, 10, dtype=torch.float64)

    def path_length_gradients():
        ws = torch.randn(2, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1),
                         requires_grad=True)
        with nvidia_gradfix.no_weight_gradients(False):
            (pl_grads,) = torch.autograd.grad([(layer(x, ws) * noise).sum()], [ws],
                                              create_graph=True)
        penalty = pl_grads.square().sum(1).sqrt().sum()
        return torch.autograd.grad(penalty, [ws, *layer.parameters()], allow_unused=True,
                                   materialize_grads=True)

    eager = path_length_gradients()
    replaced = nvlabs.install()
    try:
        monkeypatch.setattr(nvidia_gradfix, "enabled", True)
        with ConvRecorder() as recorder:
            ours = path_length_gradients()
    finally:
        nvlabs.uninstall(replaced)
    assert "conv_transpose" in {call.kind for call in recorder.calls}
    assert max(max(call.kernel) for call in recorder.calls) <= 4  # the 3x3 and the FIR only
    for got, want in zip(ours, eager):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


# ------------------------------------------------ conv2d_resample, grid_sample, fma, filtered_lrelu
def counting(monkeypatch, module, names) -> collections.Counter:
    """Wrap ``module.name`` for each name so that the Counter returned counts its calls."""
    calls = collections.Counter()
    for name in names:
        original = getattr(module, name)

        def wrapper(*args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)
        monkeypatch.setattr(module, name, wrapper)
    return calls


def test_nvidias_conv2d_resample_needs_no_replacement_and_runs_on_ours(stand_in, monkeypatch):
    import torch_utils.ops.conv2d_gradfix as nvidia_gradfix
    import torch_utils.ops.conv2d_resample as nvidia_resample

    torch.manual_seed(0)
    f = torch.tensor([[1.0, 3, 3, 1]]).T @ torch.tensor([[1.0, 3, 3, 1]]) / 64
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64, requires_grad=True)
    weights = {k: torch.randn(6, 4, k, k, dtype=torch.float64) for k in (1, 3)}
    cases = [(3, 1, 1), (3, 2, 1), (3, 1, 2), (1, 1, 2)]  # (kernel, up, down)

    def run():
        outs = [nvidia_resample.conv2d_resample(x, weights[k], f, up=up, down=down)
                for k, up, down in cases]
        return outs, torch.autograd.grad(sum(o.square().sum() for o in outs), x)

    eager = run()
    functions = dict(vars(nvidia_resample))
    calls = counting(monkeypatch, ops, ["upfirdn2d", "downsample2d", "conv2d",
                                        "conv_transpose2d"])
    replaced = nvlabs.install()
    try:
        monkeypatch.setattr(nvidia_gradfix, "enabled", True)  # as their training loop sets it
        ours = run()
    finally:
        nvlabs.uninstall(replaced)
    assert not [key for key in replaced if ".conv2d_resample." in key]
    assert dict(vars(nvidia_resample)) == functions  # nothing of it replaced
    # up: a transposed conv, then upfirdn2d; down 3x3: upfirdn2d, then a strided conv; down 1x1:
    # downsample2d, then a conv; backward of ours runs ops internally, not these entry points
    assert calls == {"upfirdn2d": 2, "downsample2d": 1, "conv2d": 3, "conv_transpose2d": 1}
    for got, want in zip([*ours[0], *ours[1]], [*eager[0], *eager[1]]):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_grid_sample_and_fma_have_nvidias_signatures(stand_in):
    import torch_utils.ops.fma as nvidia_fma
    import torch_utils.ops.grid_sample_gradfix as nvidia_gs

    for ours, theirs in ((nvlabs.grid_sample_gradfix.grid_sample, nvidia_gs.grid_sample),
                         (nvlabs.fma.fma, nvidia_fma.fma)):
        assert parameters_of(inspect.signature(ours)) == parameters_of(inspect.signature(theirs))
    assert nvlabs.grid_sample_gradfix.enabled is False
    x, grid = rand((2, 3, 5, 6), torch.float64), rand((2, 4, 3, 2), torch.float64) * 1.2
    torch.testing.assert_close(nvlabs.grid_sample_gradfix.grid_sample(input=x, grid=grid),
                               nvidia_gs.grid_sample(input=x, grid=grid), rtol=0, atol=0)
    a, b, c = rand((2, 3, 4, 4)), rand((2, 3, 1, 1)), rand((2, 1, 4, 4))
    torch.testing.assert_close(nvlabs.fma.fma(a=a, b=b, c=c), a * b + c)


def ada_r1_gradients(D, reals):
    """The gradient of R1 (through ADA's augment) w.r.t. every parameter of D."""
    import stand_in_networks

    penalty = stand_in_networks.r1_penalty(D, reals, stand_in_networks.augment).sum()
    return torch.autograd.grad(penalty, list(D.parameters()), allow_unused=True,
                               materialize_grads=True)  # lrelu: none for the last biases


def test_ada_augment_with_r1_runs_on_our_grid_sample_and_equals_the_definition(stand_in,
                                                                               monkeypatch):
    """StyleGAN2-ADA on torch 2.x: the augment's F.grid_sample, differentiated twice by R1, raised
    NOT_IMPLEMENTED where torch has no derivative for grid_sampler_2d_backward (where this torch
    has one, it runs, and agrees). After install() it runs on ours and equals an eager definition
    (a bilinear gather that plain autograd differentiates)."""
    import stand_in_networks
    import torch_utils.ops.grid_sample_gradfix as nvidia_gs

    torch.manual_seed(0)
    D = stand_in_networks.Discriminator(resolution=16).double()
    reals = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    if torch_differentiates_grid_sampler_backward():
        plain = ada_r1_gradients(D, reals)
    else:
        plain = None
        with pytest.raises(RuntimeError, match=NOT_IMPLEMENTED):
            ada_r1_gradients(D, reals)
    with monkeypatch.context() as patch:
        patch.setattr(nvidia_gs, "grid_sample", grid_sample_definition)
        eager = ada_r1_gradients(D, reals)

    calls = counting(monkeypatch, ops, ["grid_sample"])
    replaced = nvlabs.install()
    try:
        monkeypatch.setattr(nvidia_gs, "enabled", True)  # ignored by ours, as documented
        ours = ada_r1_gradients(D, reals)
    finally:
        nvlabs.uninstall(replaced)
    assert calls == {"grid_sample": 1}
    assert all(g.abs().sum() > 0 for g in ours if g.dim() > 1)  # every weight gets a gradient
    for (name, _), got, want in zip(D.named_parameters(), ours, eager):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10, msg=name)
    for got, want in zip(ours, plain or ()):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("radial", [False, True], ids=["1d-fd", "radial-fd"])
def test_stylegan3_layer_through_install_equals_the_stand_in(stand_in, monkeypatch, radial):
    """A StyleGAN3-style layer (fma, then filtered_lrelu: 12-tap fu up 2, 1-D or radial 12x12
    fd down 2, bias, clamp) in float32: output and every gradient as NVIDIA's reference gives."""
    import stand_in_networks
    import torch_utils.ops.filtered_lrelu as nvidia_flrelu

    torch.manual_seed(0)
    layer = stand_in_networks.SynthesisLayer3(4, 8, radial=radial, clamp=1.0)
    assert layer.down_filter.dim() == (2 if radial else 1)
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    w, noise = torch.randn(2, 8), torch.randn(2, 1, 8, 8)
    dy = torch.randn(2, 4, 8, 8)

    def run():
        y = layer(x, w, noise)
        return [y, *torch.autograd.grad(y, [x, *layer.parameters()], dy)]

    before = run()
    calls = counting(monkeypatch, ops, ["fma"])
    flrelu_calls = counting(monkeypatch, nvlabs.filtered_lrelu, ["_filtered_lrelu"])
    replaced = nvlabs.install()
    try:
        assert nvidia_flrelu.filtered_lrelu is nvlabs.filtered_lrelu.filtered_lrelu
        after = run()
    finally:
        nvlabs.uninstall(replaced)
    assert calls == {"fma": 1} and flrelu_calls == {"_filtered_lrelu": 1}
    assert before[0].shape == (2, 4, 8, 8)
    layer.clamp = None
    assert not torch.allclose(layer(x, w, noise), before[0])  # the clamp is reached
    names = ["output", "x", *(name for name, _ in layer.named_parameters())]
    for name, got, want in zip(names, after, before):
        scale = want.abs().max().item()
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * max(scale, 1.0), msg=name)


def test_filtered_lrelu_has_nvidias_signature_and_impls(stand_in, monkeypatch):
    import torch_utils.ops.filtered_lrelu as nvidia_flrelu

    ours = nvlabs.filtered_lrelu.filtered_lrelu
    assert parameters_of(inspect.signature(ours)) == \
        parameters_of(inspect.signature(nvidia_flrelu.filtered_lrelu))
    torch.manual_seed(0)
    x, b = torch.randn(2, 3, 7, 6, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    fu, fd = torch.rand(6), torch.rand(4, 4)
    args = dict(fu=fu, fd=fd, b=b, up=2, down=2, padding=[4, 3, 5, 2], gain=1.5, slope=0.1,
                clamp=0.8, flip_filter=True)
    want = nvidia_flrelu.filtered_lrelu(x, **args)
    reference = ops.backends.get_impl("filtered_lrelu", "ref")
    forward = reference.forward
    calls = []
    monkeypatch.setattr(reference, "forward",
                        lambda *a, **k: calls.append(1) or forward(*a, **k))
    for impl in ("cuda", "ref"):
        torch.testing.assert_close(ours(x, impl=impl, **args), want, rtol=1e-10, atol=1e-10)
    assert len(calls) == 2  # on CPU, impl='cuda' runs the best backend there: ref
    # ToRGB's call: no filters, gain 1, slope 1 (bias and clamp only)
    torch.testing.assert_close(ours(x, b=b, gain=1, slope=1, clamp=0.5),
                               (x + b[:, None, None]).clamp(-0.5, 0.5))
    with pytest.raises(ValueError, match="impl must be one of cuda, ref"):
        ours(x, impl="triton")
