import numpy as np
import pytest
import torch
from PIL import Image

import stylegan_fast
from stylegan_fast.tools import SpecError, generate_images, style_mixing_images


def test_figure_layout_and_cells(tiny_checkpoint):
    path, G = tiny_checkpoint
    rows, cols = [0, 1], [2, 3, 4]
    figure = style_mixing_images(path, rows, cols, styles="0-1", device="cpu")
    assert figure.shape == (3 * 4, 3, 16, 16)
    grid = figure.view(3, 4, 3, 16, 16)
    sources = generate_images(G, rows + cols)
    assert grid[0, 0].eq(0).all()                          # blank corner
    assert torch.equal(grid[0, 1:], sources[2:])          # column images across the top
    assert torch.equal(grid[1:, 0], sources[:2])          # row images down the left
    # the cell (r, c) is the synthesis of row r's ws at layers 0-1 and column c's elsewhere
    z = torch.stack([torch.randn(16, generator=torch.Generator().manual_seed(s)) for s in (1, 4)])
    ws = G.mapping(z)
    mixed = torch.cat([ws[:1, :2], ws[1:, 2:]], dim=1)
    expected = ((G.synthesis(mixed, "const") + 1) * 127.5).round().clamp(0, 255).byte()
    assert torch.equal(grid[2, 3], expected[0])


def test_taking_every_layer_from_the_row_gives_the_row_image(tiny_checkpoint):
    _, G = tiny_checkpoint
    grid = style_mixing_images(G, [5], [6, 7], styles=f"0-{G.num_ws - 1}").view(2, 3, 3, 16, 16)
    assert torch.equal(grid[1, 1], grid[1, 0]) and torch.equal(grid[1, 2], grid[1, 0])


def test_mix_writes_the_figure(tiny_checkpoint, tmp_path):
    path, _ = tiny_checkpoint
    out = stylegan_fast.mix(path, "0-2", "3-5", tmp_path / "mix.png", styles="coarse",
                            device="cpu")
    with Image.open(out) as image:
        assert image.size == (4 * 64, 4 * 64)  # 16 px cells scaled up to 64 px
        assert np.asarray(image)[:64, :64].max() == 0


def test_bad_styles_and_seeds(tiny_checkpoint, tmp_path):
    path, _ = tiny_checkpoint
    with pytest.raises(SpecError, match="this generator has 6 layers"):
        stylegan_fast.mix(path, "0", "1", tmp_path / "m.png", styles="fine")
    with pytest.raises(SpecError, match="bad seed spec"):
        stylegan_fast.mix(path, "0-", "1", tmp_path / "m.png")
    assert not (tmp_path / "m.png").exists()
