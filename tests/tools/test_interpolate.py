import math

import pytest
import torch
from PIL import Image

import stylegan_fast
from stylegan_fast.tools import (
    SpecError,
    generate_images,
    interpolation,
    interpolation_frames,
    slerp,
)


def test_slerp():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    assert torch.allclose(slerp(a, b, 0.0), a) and torch.allclose(slerp(a, b, 1.0), b)
    # halfway along the quarter circle: the 45 degree direction, weights sin(pi/4) / sin(pi/2)
    half = math.sin(math.pi / 4)
    assert torch.allclose(slerp(a, b, 0.5), torch.tensor([half, 2 * half]))
    unit = slerp(torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 1.0]), 0.3)
    assert torch.allclose(unit.norm(), torch.tensor(1.0))
    # parallel vectors: plain lerp, no division by sin(0)
    assert torch.allclose(slerp(a, 3 * a, 0.5), 2 * a)
    batch = slerp(torch.randn(4, 8), torch.randn(4, 8), 0.25)
    assert batch.shape == (4, 8) and batch.isfinite().all()


@pytest.mark.parametrize("space", ["z", "w"])
def test_the_loop_passes_through_each_seed(tiny_checkpoint, space):
    _, G = tiny_checkpoint
    frames = interpolation_frames(G, "3,0,5", frames=4, space=space, truncation_psi=0.8)
    assert frames.shape == (12, 3, 16, 16)
    keys = generate_images(G, [3, 0, 5], truncation_psi=0.8)
    # t=0 frames are the seeds' own images; numerically the path differs by round-off only
    for k in range(3):
        assert (frames[4 * k].int() - keys[k].int()).abs().max() <= 1
    assert not torch.equal(frames[1], frames[0])


def test_interpolate_writes_a_looping_gif(tiny_checkpoint, tmp_path):
    path, _ = tiny_checkpoint
    out = stylegan_fast.interpolate(path, "0,1", tmp_path / "loop.gif", frames=3, device="cpu")
    with Image.open(out) as gif:
        assert gif.n_frames == 6 and gif.size == (64, 64) and gif.info.get("loop") == 0


def test_mp4_without_an_ffmpeg_backend_is_a_clear_error(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(interpolation, "mp4_backend_available", lambda: False)
    with pytest.raises(interpolation.VideoBackendError, match="pip install imageio imageio-ffmpeg"):
        stylegan_fast.interpolate(tiny_checkpoint[0], "0,1", tmp_path / "loop.mp4")


def test_mp4(tiny_checkpoint, tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    out = stylegan_fast.interpolate(tiny_checkpoint[1], "0,1", tmp_path / "loop.mp4", frames=2)
    assert out.stat().st_size > 0


def test_bad_input(tiny_checkpoint, tmp_path):
    _, G = tiny_checkpoint
    with pytest.raises(SpecError, match="at least 2 seeds"):
        interpolation_frames(G, "4")
    with pytest.raises(ValueError, match="suffix"):
        stylegan_fast.interpolate(G, "0,1", tmp_path / "loop.avi")
    with pytest.raises(ValueError, match="space"):
        interpolation_frames(G, "0,1", space="x")
    with pytest.raises(ValueError, match="frames"):
        interpolation_frames(G, "0,1", frames=0)
