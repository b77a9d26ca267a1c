"""The style-mixing figure: which layers' styles carry which aspects of an image.

For row seed r and column seed c, the cell's ws take the chosen layers from r and every other
layer from c::

    ws_cell[i] = ws_r[i] if i in layers else ws_c[i]

Layer groups as in the StyleGAN paper (two layers per resolution): ``coarse`` = layers 0-3
(4-8 px: pose, face shape), ``middle`` = 4-7 (16-32 px: features, hair style), ``fine`` = 8 and up
(64 px and up: colours, micro structure).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import torch

from ..train.images import save_grid, to_uint8
from .generation import latents_from_seeds
from .loading import as_trained
from .seeds import SpecError, parse_int_list, parse_seeds

LAYER_GROUPS = {"coarse": (0, 4), "middle": (4, 8), "fine": (8, None)}  # [first, end)
MIN_CELL_SIZE = 64  # px: small generators' images are scaled up (nearest) to stay visible


def style_layers(spec: Union[str, list, tuple], num_ws: int) -> list[int]:
    """``coarse``, ``middle``, ``fine`` or an index spec (``0-3``, ``0,2,4``) -> sorted layer
    indices, each < ``num_ws``."""
    if isinstance(spec, str) and spec.strip().lower() in LAYER_GROUPS:
        name = spec.strip().lower()
        first, end = LAYER_GROUPS[name]
        layers = list(range(first, num_ws if end is None else min(end, num_ws)))
        if not layers:
            raise SpecError(f"styles {name!r} are layers {first}+, but this generator has "
                            f"{num_ws} layers (0-{num_ws - 1}); use coarse/middle or indices")
        return layers
    layers = parse_int_list(spec, "styles") if isinstance(spec, str) else list(spec)
    if not layers:
        raise SpecError("no style layers given")
    bad = [i for i in layers if isinstance(i, bool) or not isinstance(i, int)
           or not 0 <= i < num_ws]
    if bad:
        shown = str(bad) if len(bad) <= 5 else f"{str(bad[:5])[:-1]}, ...] ({len(bad)} in all)"
        raise SpecError(f"styles {spec!r}: layer(s) {shown} do not exist; this generator has "
                        f"{num_ws} layers (0-{num_ws - 1}); or use coarse, middle, fine")
    return sorted(set(layers))


def style_mixing_images(generator, row_seeds, col_seeds, styles="coarse",
                        truncation_psi: float = 1.0, truncation_cutoff: Optional[int] = 8,
                        noise_mode: str = "const", device="auto") -> torch.Tensor:
    """uint8 images [(rows + 1) * (cols + 1), C, R, R] in grid order: a blank corner, the column
    images across the top, then per row seed its own image followed by its mixes with each
    column (chosen layers from the row, the rest from the column)."""
    trained = as_trained(generator, device)
    G = trained.G
    rows, cols = parse_seeds(row_seeds), parse_seeds(col_seeds)
    layers = style_layers(styles, G.num_ws)
    ws = trained.map(latents_from_seeds(rows + cols, G.z_dim), truncation_psi, truncation_cutoff)
    row_ws, col_ws = ws[:len(rows)], ws[len(rows):]
    from_row = torch.zeros(G.num_ws, dtype=torch.bool, device=ws.device)
    from_row[layers] = True
    mixed = torch.where(from_row[None, None, :, None], row_ws[:, None], col_ws[None, :])
    sources = to_uint8(trained.synthesize(ws, noise_mode)).cpu()
    cells = to_uint8(trained.synthesize(mixed.flatten(0, 1), noise_mode)).cpu()
    blank = torch.zeros_like(sources[:1])
    figure = [blank, sources[len(rows):]]
    for r in range(len(rows)):
        figure += [sources[r:r + 1], cells[r * len(cols):(r + 1) * len(cols)]]
    return torch.cat(figure)


def mix(generator, row_seeds, col_seeds, out: Union[str, Path], styles="coarse",
        truncation_psi: float = 1.0, truncation_cutoff: Optional[int] = 8,
        noise_mode: str = "const", cell_size: Optional[int] = None, device="auto") -> Path:
    """Write the style-mixing figure (:func:`style_mixing_images`) as one PNG; each cell is
    ``cell_size`` px (default: the image size, at least 64)."""
    images = style_mixing_images(generator, row_seeds, col_seeds, styles, truncation_psi,
                                 truncation_cutoff, noise_mode, device)
    columns = len(parse_seeds(col_seeds)) + 1
    return save_grid(images, out, columns, cell_size or max(images.shape[-1], MIN_CELL_SIZE))
