import math

import pytest
import torch

from stylegan_fast.nn import MinibatchStdDev, PixelNorm, minibatch_stddev, stddev_group_size


def test_pixel_norm_gives_unit_mean_square_per_sample():
    x = torch.randn(4, 16) * 7
    y = PixelNorm()(x)
    torch.testing.assert_close(y.square().mean(1), torch.ones(4))
    torch.testing.assert_close(y * x.square().mean(1, keepdim=True).sqrt(), x)


def test_pixel_norm_computes_in_float32_for_half_inputs():
    x = (torch.randn(3, 64) * 100).to(torch.float16)  # x^2 overflows in fp16
    y = PixelNorm()(x)
    assert y.dtype == torch.float16 and torch.isfinite(y).all()
    torch.testing.assert_close(y.float().square().mean(1), torch.ones(3), rtol=0, atol=2e-3)


@pytest.mark.parametrize("batch,expected", [(8, 4), (4, 4), (12, 4), (6, 3), (2, 2), (3, 3),
                                            (1, 1), (5, 1), (10, 2)])
def test_group_size_is_the_largest_divisor_up_to_four(batch, expected):
    assert stddev_group_size(batch, 4) == expected


def stddev_by_hand(x, group, num_features, eps=1e-8):
    """Loops over groups and feature slices; groups are strided: {i, i + M, i + 2M, ...}."""
    n, c, h, w = x.shape
    m = n // group
    x = x.double()
    feature = torch.empty(n, num_features, dtype=torch.float64)
    for first in range(m):
        members = list(range(first, n, m))
        for f in range(num_features):
            part = x[members][:, f * c // num_features:(f + 1) * c // num_features]
            std = torch.sqrt(((part - part.mean(0)) ** 2).mean(0) + eps)
            feature[members, f] = std.mean()
    return feature


@pytest.mark.parametrize("batch,num_features", [(8, 1), (6, 1), (8, 2), (2, 1)])
def test_minibatch_stddev_matches_a_hand_computation(batch, num_features):
    torch.manual_seed(batch)
    x = torch.randn(batch, 6, 3, 5)
    x[: batch // 2] *= 3  # different spread per group
    y = MinibatchStdDev(4, num_features)(x)
    assert y.shape == (batch, 6 + num_features, 3, 5)
    torch.testing.assert_close(y[:, :6], x)
    want = stddev_by_hand(x, stddev_group_size(batch, 4), num_features)
    torch.testing.assert_close(y[:, 6:].double(), want[:, :, None, None].expand(-1, -1, 3, 5))
    assert y[:, 6].unique().numel() == batch // stddev_group_size(batch, 4)


def test_groups_of_one_give_the_constant_sqrt_eps():
    y = minibatch_stddev(torch.randn(5, 4, 2, 2))
    torch.testing.assert_close(y[:, 4], torch.full((5, 2, 2), math.sqrt(1e-8)))


def test_minibatch_stddev_statistics_in_float32_and_layout_kept():
    x = (torch.randn(4, 8, 3, 3) * 300).to(torch.bfloat16).to(memory_format=torch.channels_last)
    y = minibatch_stddev(x)
    assert y.dtype == torch.bfloat16 and y.is_contiguous(memory_format=torch.channels_last)
    want = stddev_by_hand(x.float(), 4, 1)[:, :, None, None].expand(-1, -1, 3, 3)
    torch.testing.assert_close(y[:, 8:].double(), want.to(torch.bfloat16).double())


def test_minibatch_stddev_rejects_indivisible_features():
    with pytest.raises(ValueError, match="num_features"):
        minibatch_stddev(torch.randn(4, 5, 2, 2), num_features=2)
