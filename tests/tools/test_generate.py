import numpy as np
import pytest
import torch
from PIL import Image

import stylegan_fast
from stylegan_fast.tools import generate, generate_images, load_generator


def test_load_generator_rebuilds_g_ema(tiny_checkpoint):
    path, G = tiny_checkpoint
    for where in (path, path.parent):  # a file, or a run folder (its newest checkpoint)
        trained = load_generator(where, device="cpu")
        assert trained.path == path and trained.lod == 0 and trained.nimg == 64
        assert not trained.G.training
        for key, value in G.state_dict().items():
            assert torch.equal(trained.G.state_dict()[key], value), key


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_generator(tmp_path / "missing.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_generator(tmp_path)
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a stylegan_fast checkpoint"):
        load_generator(tmp_path / "other.pt")


def test_images_depend_on_the_seed_only(tiny_checkpoint):
    path, G = tiny_checkpoint
    images = generate_images(path, "0-4", batch=2, device="cpu")
    assert images.dtype == torch.uint8 and images.shape == (5, 3, 16, 16)
    again = generate_images(G, [3, 0], device="cpu")  # another batch split, a bare Generator
    assert torch.equal(again[0], images[3]) and torch.equal(again[1], images[0])
    assert not torch.equal(images[0], images[1])


def test_truncation(tiny_checkpoint):
    _, G = tiny_checkpoint
    # psi 0 on every layer: every seed gives the image of w_avg
    mean_images = generate_images(G, "0-2", truncation_psi=0, truncation_cutoff=None)
    assert torch.equal(mean_images[0], mean_images[1]) and torch.equal(mean_images[0],
                                                                       mean_images[2])
    ws = G.w_avg.expand(1, G.num_ws, -1)
    expected = ((G.synthesis(ws, "const") + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    assert torch.equal(mean_images[0], expected[0])
    # a cutoff of 2 truncates only the first two layers: the seeds still differ
    cut = generate_images(G, "0-1", truncation_psi=0, truncation_cutoff=2)
    assert not torch.equal(cut[0], cut[1])


def test_generate_writes_one_png_per_seed(tiny_checkpoint, tmp_path):
    path, _ = tiny_checkpoint
    paths = stylegan_fast.generate(path, "1-2,7", tmp_path / "out", truncation_psi=0.7,
                                   device="cpu")
    assert [p.name for p in paths] == ["seed0001.png", "seed0002.png", "seed0007.png"]
    expected = generate_images(path, [7], truncation_psi=0.7, device="cpu")[0]
    with Image.open(paths[2]) as image:
        assert image.size == (16, 16) and image.mode == "RGB"
        assert np.array_equal(np.asarray(image), expected.permute(1, 2, 0).numpy())


def test_random_noise_mode_changes_details(tiny_checkpoint):
    _, G = tiny_checkpoint
    a, b = generate_images(G, [0, 0], noise_mode="random")
    assert not torch.equal(a, b)
    with pytest.raises(ValueError, match="noise_mode"):
        generate(G, "0", "unused", noise_mode="loud")
