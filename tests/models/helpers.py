"""Tiny StyleGAN models for tests, with every parameter made non-trivial."""
from __future__ import annotations

import torch

from stylegan_fast.models import Discriminator, Generator

TINY = dict(channel_base=64, channel_max=16)
Z_DIM = W_DIM = 32


def randomize_zero_inits_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give the zero-initialised parameters (biases, noise strengths) random values, so that a
    test sees every one of them act."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith(("bias", "noise_strength")):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return module


def tiny_generator(resolution: int = 16, seed: int = 0, **kwargs) -> Generator:
    torch.manual_seed(seed)
    G = Generator(resolution, z_dim=Z_DIM, w_dim=W_DIM, **{**TINY, **kwargs})
    randomize_zero_inits_(G, seed)
    with torch.no_grad():
        G.w_avg.copy_(torch.randn(W_DIM))
    return G.eval()


def tiny_discriminator(resolution: int = 16, seed: int = 0, **kwargs) -> Discriminator:
    torch.manual_seed(seed)
    return randomize_zero_inits_(Discriminator(resolution, **{**TINY, **kwargs}), seed)
