import pytest
import torch
import torch.nn.functional as F

from stylegan_fast.nn import StyleEpilogue
from stylegan_fast.ops import style_epilogue_reference


def make_epilogue(channels=5, w_dim=7, seed=0):
    torch.manual_seed(seed)
    layer = StyleEpilogue(channels, w_dim)
    assert torch.count_nonzero(layer.noise_strength) == 0 and torch.count_nonzero(layer.bias) == 0
    with torch.no_grad():
        layer.noise_strength.normal_()
        layer.bias.normal_()
        layer.style_affine.bias.normal_()
    return layer


def by_hand(layer, x, w, noise):
    """Noise, bias, lrelu(0.2) without gain, instance norm (eps 1e-8), x * (y_s + 1) + y_b."""
    affine = layer.style_affine
    style = F.linear(w, affine.weight * affine.weight_scale) + affine.bias  # gain 1, lrmul 1
    scale, shift = style[:, :layer.channels], style[:, layer.channels:]
    t = x + noise * layer.noise_strength[:, None, None] + layer.bias[:, None, None]
    a = F.leaky_relu(t, 0.2)
    a = (a - a.mean((2, 3), keepdim=True)) / torch.sqrt(a.var((2, 3), correction=0,
                                                               keepdim=True) + 1e-8)
    return a * (scale[:, :, None, None] + 1) + shift[:, :, None, None]


def test_style_affine_has_gain_one():
    layer = StyleEpilogue(5, 7)
    assert layer.style_affine.weight_scale == pytest.approx(7 ** -0.5)
    assert layer.style_affine.weight.shape == (10, 7)


def test_const_noise_epilogue_matches_the_math():
    layer = make_epilogue()
    x, w, noise = torch.randn(3, 5, 4, 6), torch.randn(3, 7), torch.randn(1, 1, 4, 6)
    torch.testing.assert_close(layer(x, w, "const", noise), by_hand(layer, x, w, noise),
                               rtol=1e-4, atol=1e-4)


def test_none_mode_adds_no_noise_and_random_mode_draws_it():
    layer = make_epilogue()
    x, w = torch.randn(2, 5, 4, 4), torch.randn(2, 7)
    zero_noise = torch.zeros(1, 1, 4, 4)
    torch.testing.assert_close(layer(x, w, "none"), layer(x, w, "const", zero_noise))
    torch.manual_seed(1)
    first = layer(x, w, "random")
    torch.manual_seed(1)
    torch.testing.assert_close(layer(x, w, "random"), first)
    assert not torch.allclose(layer(x, w, "random"), first)
    assert not torch.allclose(first, layer(x, w, "none"))


def test_every_parameter_gets_a_gradient():
    layer = make_epilogue()
    layer(torch.randn(2, 5, 4, 4), torch.randn(2, 7), "random").square().sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_float32_input_with_bfloat16_styles_under_autocast():
    layer = make_epilogue()
    x, w = torch.randn(2, 5, 4, 4), torch.randn(2, 7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x, w, "none")  # x float32 (like the constant input), styles bfloat16
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, layer(x, w, "none"), rtol=0.05, atol=0.05)


def test_bad_noise_mode_or_missing_const_noise_raise():
    layer = make_epilogue()
    x, w = torch.randn(2, 5, 4, 4), torch.randn(2, 7)
    with pytest.raises(ValueError, match="noise_mode"):
        layer(x, w, "fixed")
    with pytest.raises(ValueError, match="const"):
        layer(x, w, "const")


def test_matches_the_op_reference_with_the_layer_styles():
    layer = make_epilogue()
    x, w, noise = torch.randn(2, 5, 3, 3), torch.randn(2, 7), torch.randn(2, 1, 3, 3)
    scale, shift = layer.styles(w)
    want = style_epilogue_reference(x, layer.bias, scale, shift, layer.noise_strength, noise)
    torch.testing.assert_close(layer(x, w, "const", noise), want)
