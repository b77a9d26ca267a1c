"""Triton-only paths: tilings that the small shapes of the op suite do not reach, determinism."""
import importlib

import pytest
import torch

from stylegan_fast import ops
from stylegan_fast.ops import (
    adain,
    adain_reference,
    bias_act,
    bias_act_reference,
    noise_inject,
    noise_inject_reference,
)

from .helpers import DEVICES, assert_close_to_reference, backends_for, rand
from .test_style_epilogue import epilogue, epilogue_reference, make_args

TRITON_DEVICES = [d for d in DEVICES if "triton" in backends_for(d)]
pytestmark = pytest.mark.skipif(not TRITON_DEVICES, reason="triton is not installed")


@pytest.fixture(params=["default", "tiny-tiles"])
def tiling(request, monkeypatch):
    """Default tiles, or tiles so small that every loop, split and partial reduction runs."""
    if request.param == "tiny-tiles":
        common = importlib.import_module("stylegan_fast.ops.triton._common")
        monkeypatch.setattr(common, "TILE_ELEMENTS", 32)
        monkeypatch.setattr(common, "WHOLE_PLANE_ELEMENTS", 32)
        for name in ("bias_act", "style_epilogue"):
            module = importlib.import_module(f"stylegan_fast.ops.triton.{name}")
            monkeypatch.setattr(module, "TILE_ELEMENTS", 32, raising=False)
            monkeypatch.setattr(module, "TARGET_PROGRAMS", 8, raising=False)
    return request.param


@pytest.mark.parametrize("device", TRITON_DEVICES)
@pytest.mark.parametrize("shape", [(1, 3, 20, 17), (2, 19, 5, 9), (1, 2, 40, 37)], ids=str)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_style_epilogue_and_adain_in_every_tiling(device, shape, channels_last, tiling):
    args = make_args(shape, torch.float32, device, channels_last, noise="shared")
    assert_close_to_reference(epilogue, epilogue_reference, args, "triton")
    x, _, s, b, _, _ = args
    assert_close_to_reference(adain, adain_reference, [x, s, b], "triton")


@pytest.mark.parametrize("device", TRITON_DEVICES)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_noise_inject_and_bias_act_in_every_tiling(device, channels_last, tiling):
    shape = (2, 37, 6, 7)
    x = rand(shape, torch.float32, device, channels_last)
    strength, noise = rand((37,), torch.float32, device), rand((2, 1, 6, 7), torch.float32, device)
    assert_close_to_reference(noise_inject, noise_inject_reference, [x, strength, noise], "triton")
    b = rand((37,), torch.float32, device)
    assert_close_to_reference(lambda x, b: bias_act(x, b, clamp=0.8),
                              lambda x, b: bias_act_reference(x, b, clamp=0.8), [x, b], "triton")


@pytest.mark.parametrize("device", TRITON_DEVICES)
def test_reductions_are_deterministic(device, monkeypatch):
    module = importlib.import_module("stylegan_fast.ops.triton.style_epilogue")
    monkeypatch.setattr(module, "TARGET_PROGRAMS", 64)      # several splits per plane
    args = make_args((2, 5, 33, 31), torch.float32, device)
    dy = torch.randn_like(args[0])

    def grads():
        with ops.use_backend("triton"):
            return torch.autograd.grad(epilogue(*args), [a for a in args if a is not None], dy)

    for first, second in zip(grads(), grads()):
        assert torch.equal(first, second)


SCALARS = [2 ** 0.5, 0.2, 1e-8, 1 / 3, -7.1, 0.0, 1.0, 1e30]


def test_scalar_args_split_float64_values_into_two_float32_parts():
    """Triton passes Python floats as float32; scalar_args' (hi, lo) keep ~48 bits for float64
    kernels, and hi alone is the float32 rounding (what float32 kernels used before)."""
    from stylegan_fast.ops.triton._common import scalar_args

    parts = scalar_args(*SCALARS, float("inf"))
    for value, hi, lo in zip(SCALARS, parts[0::2], parts[1::2]):
        assert hi == torch.tensor(value, dtype=torch.float32).item()
        rebuilt = hi + torch.tensor(lo, dtype=torch.float32).item()
        assert abs(rebuilt - value) <= 2 ** -47 * abs(value), value
    assert parts[-2:] == (float("inf"), 0.0)


@pytest.mark.parametrize("device", TRITON_DEVICES)
def test_kernels_rebuild_float64_scalars(device):
    """A kernel reading scalar(hi, lo, float64) gets the float64 value, not its float32 rounding;
    with float32 it gets exactly the float32 rounding."""
    import triton.language as tl

    from stylegan_fast.ops.triton._common import scalar_args

    for value in SCALARS:
        out64 = torch.empty(1, dtype=torch.float64, device=device)
        _read_scalar[(1,)](out64, *scalar_args(value), ACC=tl.float64)
        assert abs(out64.item() - value) <= 2 ** -47 * abs(value), value
        out32 = torch.empty(1, dtype=torch.float32, device=device)
        _read_scalar[(1,)](out32, *scalar_args(value), ACC=tl.float32)
        assert out32.item() == torch.tensor(value, dtype=torch.float32).item(), value


if TRITON_DEVICES:
    import triton
    import triton.language as tl

    from stylegan_fast.ops.triton._common import scalar

    @triton.jit
    def _read_scalar(out_ptr, hi, lo, ACC: tl.constexpr):
        tl.store(out_ptr, scalar(hi, lo, ACC))
