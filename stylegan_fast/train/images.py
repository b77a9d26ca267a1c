"""Image grids written as PNG files."""
from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..files import replaced_atomically


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> uint8 [0, 255]: ``round((x + 1) * 127.5)``, clamped."""
    return ((images.detach().float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def grid(images: torch.Tensor, columns: int, size: int) -> np.ndarray:
    """uint8 [N, C, H, W] -> one [rows * size, columns * size(, C)] array, each image scaled to
    ``size`` px (nearest neighbour, so that low-resolution phases are shown pixel by pixel);
    empty cells are black."""
    n, c = images.shape[:2]
    if images.shape[-1] != size:
        images = F.interpolate(images.float(), size=(size, size), mode="nearest").to(torch.uint8)
    rows = -(-n // columns)
    canvas = torch.zeros(rows * columns, c, size, size, dtype=torch.uint8)
    canvas[:n] = images.cpu()
    canvas = canvas.view(rows, columns, c, size, size).permute(0, 3, 1, 4, 2)
    canvas = canvas.reshape(rows * size, columns * size, c).numpy()
    return canvas[..., 0] if c == 1 else canvas


def save_grid(images: torch.Tensor, path: Union[str, Path], columns: int, size: int) -> Path:
    """Write ``images`` ([-1, 1] floats or uint8, [N, C, H, W], C 1 or 3) as a PNG grid
    (atomically: complete or absent)."""
    if images.dtype != torch.uint8:
        images = to_uint8(images)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced_atomically(path) as temp:
        Image.fromarray(grid(images, columns, size)).save(temp)
    return path
