import numpy as np
import torch
from PIL import Image

from stylegan_fast.train.images import save_grid, to_uint8


def test_to_uint8_range():
    assert to_uint8(torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0])).tolist() == [0, 0, 128, 255, 255]


def test_grid_layout_and_upscaling(tmp_path):
    images = torch.stack([torch.full((3, 2, 2), i, dtype=torch.uint8) for i in (10, 20, 30)])
    images[1, 0] = 200  # red channel of image 1
    path = save_grid(images, tmp_path / "g.png", columns=2, size=4)
    grid = np.asarray(Image.open(path))
    assert grid.shape == (8, 8, 3)
    assert (grid[:4, :4] == 10).all() and (grid[:4, 4:, 0] == 200).all()
    assert (grid[4:, :4] == 30).all() and (grid[4:, 4:] == 0).all()  # empty cell is black
    gray = save_grid(torch.zeros(2, 1, 4, 4), tmp_path / "gray.png", columns=2, size=4)
    assert Image.open(gray).mode == "L"
