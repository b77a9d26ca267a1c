"""The Triton filtered_lrelu kernel in tilings that the op suite's small shapes do not reach:
many tiles with halos that overlap (the same sign bytes stored by several tiles), several
steps per phase, a persistent loop that reuses each program's scratch slot."""
import importlib
import math

import pytest
import torch

from .helpers import DEVICES, backends_for

TRITON_DEVICES = [d for d in DEVICES if "triton" in backends_for(d)]
pytestmark = pytest.mark.skipif(not TRITON_DEVICES, reason="triton is not available")

op = importlib.import_module("stylegan_fast.ops.filtered_lrelu")


def lowpass(*shape, seed=0):
    f = torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) + 0.1
    return f / f.sum()


# (id, fu, fd, up, down, padding (x0, x1, y0, y1), clamp, flip)
CASES = [
    ("separable-up2-down2", lowpass(4), lowpass(3, seed=1), 2, 2, (3, 2, 2, 3), 0.7, False),
    ("2d-up3-crop-flip", lowpass(2, 3), lowpass(3, 2, seed=1), 3, 2, (-1, 2, 3, -2), 1.0, True),
    ("2d-down-separable-up", lowpass(6), lowpass(5, 5, seed=1), 2, 3, (4, 3, 5, 2), None, False),
]


@pytest.fixture
def tiling(monkeypatch):
    """Output tiles of 2 x 3 (channels_last: 3 x 2 x 2 channels), 64-element steps and 3
    programs for all tiles."""
    kernel = importlib.import_module("stylegan_fast.ops.triton.filtered_lrelu")
    monkeypatch.setattr(kernel, "NCHW_TILE", (2, 3))
    monkeypatch.setattr(kernel, "CHANNELS_LAST_TILE", (3, 2))
    monkeypatch.setattr(kernel, "CHANNELS_LAST_BLOCK_C", 2)
    monkeypatch.setattr(kernel, "TILE_ELEMENTS", 4)
    monkeypatch.setattr(kernel, "BLOCK", 64)
    monkeypatch.setattr(kernel, "MAX_PROGRAMS", 3)
    return kernel


@pytest.mark.parametrize("device", TRITON_DEVICES)
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "strided"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_both_passes_match_the_reference_in_tiny_tiles(device, layout, case, tiling):
    check_both_passes(tiling, device, layout, case)


@pytest.mark.parametrize("device", TRITON_DEVICES)
def test_one_program_loops_over_every_tile(device, tiling, monkeypatch):
    monkeypatch.setattr(tiling, "SCRATCH_BYTES", 1)  # room for one slot: one program
    check_both_passes(tiling, device, "nchw", CASES[0])


def check_both_passes(kernel, device, layout, case):
    """Forward (y and the sign bytes) and the masked pass of its backward, against ref."""
    _, fu, fd, up, down, padding, clamp, flip = case
    fu, fd = fu.to(device), fd.to(device)
    gen = torch.Generator().manual_seed(2)
    n, c, h, w = 2, 3, 4, 5
    x = torch.randn(n, c, h, w, dtype=torch.float64, generator=gen)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    elif layout == "strided":
        x = x.transpose(2, 3).contiguous().transpose(2, 3)
    x, b = x.to(device), torch.randn(c, dtype=torch.float64, generator=gen).to(device)
    geo = op.geometry(h, w, fu, fd, up, down, padding)
    region, out = (geo.region_h, geo.region_w), (geo.out_h, geo.out_w)
    args = (fu, fd, b, up, down, (padding[0], padding[2]), region, out, 1.3, 0.2,
            math.inf if clamp is None else clamp, flip, torch.float64, True)
    y, signs = kernel.FilteredLReluTriton.forward(x, *args)
    want_y, want_signs = op.Reference.forward(x, *args)
    torch.testing.assert_close(y, want_y, rtol=1e-12, atol=1e-12)
    assert torch.equal(signs, want_signs) and signs.stride() == want_signs.stride()

    (uw, uh), (dw, dh) = op.filter_taps(fu), op.filter_taps(fd)
    dy = torch.randn(n, c, *out, dtype=torch.float64, generator=gen).to(device)
    args = (fd, fu, want_signs, down, up, (dw - 1, dh - 1),
            (uw - 1 - padding[0], uh - 1 - padding[2]), region, (h, w), 1.3, 0.2,
            float(up * up), not flip, torch.float64)
    torch.testing.assert_close(kernel.FilteredLReluTriton.masked(dy, *args),
                               op.Reference.masked(dy, *args), rtol=1e-12, atol=1e-12)
