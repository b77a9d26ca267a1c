"""Images from seeds: seed -> z ~ N(0, I) -> G_ema (optionally truncated) -> PNG per seed."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional, Union

import torch

from ..train.images import save_grid, to_uint8
from .loading import as_trained
from .seeds import parse_seeds

BATCH = 16


def latents_from_seeds(seeds: Iterable[int], z_dim: int) -> torch.Tensor:
    """z [len(seeds), z_dim] (CPU, float32): row i is ``torch.randn`` of a CPU generator seeded
    with seeds[i], so a seed names the same latent on every machine and in every batch."""
    return torch.stack([torch.randn(z_dim, generator=torch.Generator().manual_seed(seed))
                        for seed in seeds])


def generate_images(generator, seeds, truncation_psi: float = 1.0,
                    truncation_cutoff: Optional[int] = 8, noise_mode: str = "const",
                    batch: int = BATCH, device="auto") -> torch.Tensor:
    """uint8 images [len(seeds), C, R, R] of G_ema for ``seeds`` (spec string or ints).

    ``generator``: a checkpoint path or run folder, a :class:`TrainedGenerator` or a Generator.
    Truncation: ``w = w_avg + psi * (w - w_avg)`` in the first ``truncation_cutoff`` layers
    (None: all). ``noise_mode='const'`` (default) makes each seed's image fully reproducible.
    """
    trained = as_trained(generator, device)
    seeds = parse_seeds(seeds)
    z = latents_from_seeds(seeds, trained.G.z_dim)
    images = []
    for start in range(0, len(seeds), batch):
        ws = trained.map(z[start:start + batch], truncation_psi, truncation_cutoff)
        images.append(to_uint8(trained.synthesize(ws, noise_mode)).cpu())
    return torch.cat(images)


def generate(generator, seeds, out: Union[str, Path], truncation_psi: float = 1.0,
             truncation_cutoff: Optional[int] = 8, noise_mode: str = "const",
             batch: int = BATCH, device="auto") -> list[Path]:
    """Write ``out/seed<NNNN>.png`` for each seed (see :func:`generate_images`); returns the
    paths."""
    seeds = parse_seeds(seeds)
    images = generate_images(generator, seeds, truncation_psi, truncation_cutoff, noise_mode,
                             batch, device)
    out = Path(out)
    return [save_grid(image[None], out / f"seed{seed:04d}.png", columns=1, size=image.shape[-1])
            for seed, image in zip(seeds, images)]
