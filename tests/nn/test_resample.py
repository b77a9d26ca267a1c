import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from stylegan_fast.nn import (
    Blur,
    Downsample,
    Upsample,
    blur2d,
    downconv2d,
    downsample2d,
    fused_downconv_weight,
    fused_upconv_weight,
    upconv2d,
    upsample2d,
)
from stylegan_fast.nn.resample import blur_filter
from stylegan_fast.ops import use_backend

from ..ops.helpers import saved_bytes


def test_blur_of_a_delta_is_the_normalized_121_filter_per_channel():
    x = torch.zeros(1, 2, 5, 5, dtype=torch.float64)
    x[0, 0, 2, 2] = 1.0
    x[0, 1, 2, 2] = 3.0
    expected = torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=torch.float64) / 16
    y = Blur()(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y[0, 0, 1:4, 1:4], expected)
    torch.testing.assert_close(y[0, 1, 1:4, 1:4], 3 * expected)
    assert y[0, :, 0].abs().sum() == 0 and y[0, :, :, 4].abs().sum() == 0


def test_blur_keeps_a_constant_interior_and_zero_pads_the_border():
    y = blur2d(torch.ones(1, 1, 4, 4))
    torch.testing.assert_close(y[0, 0, 1:3, 1:3], torch.ones(2, 2))
    torch.testing.assert_close(y[0, 0, 0, 0], torch.tensor(9 / 16))


class _OpCounter(TorchDispatchMode):
    """Counts the dispatched convolutions and upfirdn2d calls (what each runs inside is not
    dispatched again)."""

    def __init__(self):
        super().__init__()
        self.convolutions = self.upfirdn2d = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.convolutions += "convolution" in func.__name__
        self.upfirdn2d += "upfirdn2d" in func.__name__
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_blur_matches_the_depthwise_convolution_to_second_order(channels_last):
    x = torch.randn(2, 5, 7, 6, dtype=torch.float64)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_(True)
    depthwise = F.conv2d(x, blur_filter(5, dtype=x.dtype), padding=1, groups=5)
    y = blur2d(x)
    torch.testing.assert_close(y, depthwise)
    dy = torch.randn_like(y)
    (gx,) = torch.autograd.grad(y, x, dy, create_graph=True)
    (gx_ref,) = torch.autograd.grad(depthwise, x, dy, create_graph=True)
    torch.testing.assert_close(gx, gx_ref)
    assert torch.autograd.gradgradcheck(blur2d, (x,))


@pytest.mark.parametrize("backend", ["eager", "ref"])
def test_blur_double_backward_runs_a_few_convolutions_whatever_the_channels(backend):
    """R1 differentiates D's blurs twice; a grouped convolution's double backward in PyTorch runs
    one convolution per group (measured on an H200: 97% of a training step). eager: a few
    single-channel convolutions; the other backends: a few upfirdn2d calls, no convolution."""
    x = torch.randn(2, 64, 8, 8, requires_grad=True)
    with use_backend(backend), _OpCounter() as counter:
        (gx,) = torch.autograd.grad(blur2d(x).square().sum(), x, create_graph=True)
        gx.square().sum().backward()
    if backend == "eager":
        assert 0 < counter.convolutions <= 8 and counter.upfirdn2d == 0
    else:
        assert 0 < counter.upfirdn2d <= 4 and counter.convolutions == 0


@pytest.mark.parametrize("backend", ["eager", "ref"])
def test_blur_and_box_downsampling_save_nothing_but_on_eager(backend):
    x = torch.randn(2, 8, 16, 16, requires_grad=True)
    with use_backend(backend):
        blur_saved = saved_bytes(lambda t: Blur()(t), x)
        down_saved = saved_bytes(downsample2d, x)
    if backend == "eager":  # the convolution and avg_pool2d keep their input
        assert blur_saved >= x.numel() * 4 and down_saved >= x.numel() * 4
    else:  # upfirdn2d keeps its 3x3 or 2x2 filter
        assert blur_saved <= 9 * 4 and down_saved <= 4 * 4


def test_upsample_is_nearest_and_downsample_is_the_2x2_mean():
    x = torch.randn(2, 3, 4, 5)
    up = Upsample()(x)
    torch.testing.assert_close(up, x.repeat_interleave(2, 2).repeat_interleave(2, 3))
    down = Downsample()(up)
    torch.testing.assert_close(down, x)
    y = torch.arange(16.0).reshape(1, 1, 4, 4)
    torch.testing.assert_close(downsample2d(y)[0, 0], torch.tensor([[2.5, 4.5], [10.5, 12.5]]))


@pytest.mark.parametrize("kernel_size", [1, 3, 5])
def test_fused_upconv_equals_upsample_then_conv(kernel_size):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    w = torch.randn(4, 3, kernel_size, kernel_size, dtype=torch.float64)
    unfused = F.conv2d(x.repeat_interleave(2, 2).repeat_interleave(2, 3), w,
                       padding=kernel_size // 2)
    assert fused_upconv_weight(w).shape == (3, 4, kernel_size + 1, kernel_size + 1)
    torch.testing.assert_close(upconv2d(x, w, fused=False), unfused)
    torch.testing.assert_close(upconv2d(x, w, fused=True), unfused)


@pytest.mark.parametrize("kernel_size", [1, 3, 5])
def test_fused_downconv_equals_conv_then_box_downsample(kernel_size):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 6, dtype=torch.float64)
    w = torch.randn(4, 3, kernel_size, kernel_size, dtype=torch.float64)
    unfused = F.avg_pool2d(F.conv2d(x, w, padding=kernel_size // 2), 2)
    assert fused_downconv_weight(w).shape == (4, 3, kernel_size + 1, kernel_size + 1)
    torch.testing.assert_close(downconv2d(x, w, fused=False), unfused)
    torch.testing.assert_close(downconv2d(x, w, fused=True), unfused)


def test_fused_weights_for_a_3x3_kernel_by_hand():
    w = torch.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    padded = F.pad(w[0, 0], (1, 1, 1, 1))
    shifts = padded[1:, 1:] + padded[:-1, 1:] + padded[1:, :-1] + padded[:-1, :-1]
    torch.testing.assert_close(fused_downconv_weight(w)[0, 0], shifts / 4)
    flipped = F.pad(w[0, 0].flip(0, 1), (1, 1, 1, 1))
    torch.testing.assert_close(fused_upconv_weight(w)[0, 0], flipped[1:, 1:] + flipped[:-1, 1:]
                               + flipped[1:, :-1] + flipped[:-1, :-1])


@pytest.mark.parametrize("backend", ["eager", "ref"])
def test_resampling_keeps_channels_last(backend):
    x = torch.randn(2, 4, 6, 6).to(memory_format=torch.channels_last)
    with use_backend(backend):
        for y in (blur2d(x), upsample2d(x), downsample2d(x)):
            assert y.is_contiguous(memory_format=torch.channels_last)
