import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from stylegan_fast.nn import Conv2d, Linear
from stylegan_fast.ops import use_backend


def test_linear_stores_unit_scale_weights_and_scales_them_at_run_time():
    torch.manual_seed(0)
    lrmul = 0.01
    layer = Linear(400, 300, act="lrelu", gain=math.sqrt(2), lrmul=lrmul)
    assert layer.weight_scale == pytest.approx(math.sqrt(2) / math.sqrt(400) * lrmul)
    assert layer.weight.std().item() == pytest.approx(1 / lrmul, rel=0.02)
    assert torch.count_nonzero(layer.bias) == 0
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(5, 400)
    expected = F.leaky_relu(x @ (layer.weight * layer.weight_scale).T + layer.bias * lrmul, 0.2)
    torch.testing.assert_close(layer(x), expected)


def test_conv_runtime_scale_uses_in_channels_times_kernel_area():
    conv = Conv2d(6, 5, 3, gain=1.0)
    assert conv.weight_scale == pytest.approx(1 / math.sqrt(6 * 9))
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(2, 6, 7, 7)
    expected = F.conv2d(x, conv.weight * conv.weight_scale, conv.bias, padding=1)
    torch.testing.assert_close(conv(x), expected)  # act='linear': no leaky ReLU


def test_gradients_of_stored_parameters_carry_the_runtime_scales():
    """dL/dweight = weight_scale * dL/dw_runtime and dL/dbias = lrmul * dL/db_runtime."""
    torch.manual_seed(0)
    layer = Linear(8, 6, act="lrelu", lrmul=0.1)
    x, dy = torch.randn(4, 8), torch.randn(4, 6)
    w_runtime = (layer.weight * layer.weight_scale).detach().requires_grad_()
    b_runtime = (layer.bias * layer.lrmul).detach().requires_grad_()
    F.leaky_relu(F.linear(x, w_runtime, b_runtime), 0.2).backward(dy)
    layer(x).backward(dy)
    torch.testing.assert_close(layer.weight.grad, w_runtime.grad * layer.weight_scale)
    torch.testing.assert_close(layer.bias.grad, b_runtime.grad * layer.lrmul)


@pytest.mark.parametrize("resample", [dict(), dict(up=True), dict(down=True),
                                      dict(up=True, fused_resample=True),
                                      dict(down=True, fused_resample=True)])
def test_conv_gradcheck_and_gradgradcheck_in_float64(resample):
    """First and second derivatives w.r.t. input, weight and bias (R1 needs the second)."""
    torch.manual_seed(0)
    conv = Conv2d(2, 3, 3, act="lrelu", **resample).double()
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    params = {n: p.detach().clone().requires_grad_() for n, p in conv.named_parameters()}
    params["bias"] = torch.randn(3, dtype=torch.float64, requires_grad=True)

    def fn(x, weight, bias):
        return functional_call(conv, {"weight": weight, "bias": bias}, (x,))

    inputs = (x, params["weight"], params["bias"])
    with use_backend("ref"):  # fast mode: random projections of the Jacobians
        assert torch.autograd.gradcheck(fn, inputs, fast_mode=True)
        assert torch.autograd.gradgradcheck(fn, inputs, fast_mode=True)


def test_layers_without_bias_or_activation_skip_bias_act():
    conv = Conv2d(3, 4, 1, bias=False)
    assert conv.bias is None
    x = torch.randn(1, 3, 2, 2)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight * conv.weight_scale))


def test_invalid_conv_configurations_raise():
    with pytest.raises(ValueError, match="odd"):
        Conv2d(3, 4, 2)
    with pytest.raises(ValueError, match="up or down"):
        Conv2d(3, 4, 3, up=True, down=True)
